"""The frozen-feature layer shared by SHIP's and DA-VPT's offline steps: the
config's model with its pretrained weights, a deterministic sample of
training images through the model's own data preprocessor, and block
outputs through the backbone's tap (``forward_intermediates``)."""
import copy
import random
from functools import partial
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config
from torch import Tensor

from .backbone import PromptedBackboneMixin

SCOPES = ('mmseg', 'mmpretrain')


def config_scope(cfg: Config) -> str:
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ValueError(f'default_scope {scope!r} of the config is neither '
                         f'of {SCOPES}: cannot tell whether it is an mmseg or '
                         f'an mmpretrain config.')
    return scope


def _registries(scope: str):
    if scope == 'mmseg':
        from mmseg.registry import DATASETS, MODELS
    else:
        from mmpretrain.registry import DATASETS, MODELS
    return MODELS, DATASETS



def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_frozen_model(cfg: Config, device: str = 'cpu'):
    """The config's model without prompts, pretrained weights loaded by
    ``init_weights()``, in eval mode."""
    from mmengine.logging import print_log
    from mmengine.registry import init_default_scope
    scope = config_scope(cfg)
    init_default_scope(scope)
    MODELS, _ = _registries(scope)
    model_cfg = copy.deepcopy(cfg.model)
    # as mmengine's Runner does: a top-level data_preprocessor is the model's
    # unless the model names its own
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor',
                             copy.deepcopy(cfg.data_preprocessor))
    backbone = model_cfg.get('backbone')
    if backbone is None:
        raise ValueError('The config has no model.backbone.')
    # The frozen pretrained features; also lets the tools run before the
    # hierarchy / prototypes the prompter needs exist.
    if 'prompt' in backbone:
        backbone['prompt'] = None
    if not backbone.get('init_cfg'):
        print_log('model.backbone has no init_cfg: the backbone keeps its '
                  'random init, so the result describes no pretrained '
                  'model.', logger='current', level=30)
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.to(device).eval()
    check_prompted_host(model.backbone)
    return model


def _leaf_dataset_cfg(ds_cfg: dict) -> dict:
    """The innermost dataset config of wrappers (RepeatDataset, ...)."""
    while 'pipeline' not in ds_cfg and isinstance(ds_cfg.get('dataset'),
                                                  dict):
        ds_cfg = ds_cfg['dataset']
    return ds_cfg


def build_train_subset(cfg: Config, num_images: int, seed: int,
                       pipeline: str = 'train'):
    """The training set (``train_dataloader.dataset``) with the train or the
    test pipeline, and the indices of a seeded sample of ``num_images``
    (all images if there are fewer), sorted."""
    if pipeline not in ('train', 'test'):
        raise ValueError(f"pipeline must be 'train' or 'test', got "
                         f'{pipeline!r}.')
    from mmengine.registry import init_default_scope
    scope = config_scope(cfg)
    init_default_scope(scope)
    _, DATASETS = _registries(scope)
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    if pipeline == 'test':
        src = cfg.get('test_dataloader') or cfg.get('val_dataloader')
        if src is None:
            raise ValueError('--pipeline test needs a test_dataloader or '
                             'val_dataloader in the config.')
        _leaf_dataset_cfg(ds_cfg)['pipeline'] = copy.deepcopy(
            _leaf_dataset_cfg(copy.deepcopy(src.dataset))['pipeline'])
    dataset = DATASETS.build(ds_cfg)
    n = len(dataset)
    if n == 0:
        raise ValueError('The training set is empty.')
    if num_images is None or num_images >= n:
        indices = list(range(n))
    else:
        rng = np.random.default_rng(seed)
        indices = sorted(int(i) for i in rng.choice(n, num_images,
                                                    replace=False))
    return dataset, indices


def preprocessed_batches(model, dataset, indices: List[int],
                         batch_size: int = 8, num_workers: int = 2,
                         seed: Optional[int] = 0,
                         training_preprocess: bool = True,
                         device: str = 'cpu',
                         progress: Optional[str] = None,
                         with_samples: bool = False) -> Iterator:
    """Normalised image batches (B, 3, H, W) through the model's data
    preprocessor, with their data samples if ``with_samples``.
    ``training_preprocess``: pad/stack as in training, ground truth too
    (batch augments such as mixup are switched off); else as in testing (all
    images of a batch must have one size).  ``seed``: reseed the global
    random state first (offline tools); None leaves it alone (hooks inside a
    training run)."""
    from mmengine.dataset import pseudo_collate, worker_init_fn
    from torch.utils.data import DataLoader, Subset
    if seed is not None:
        seed_everything(seed)
    loader = DataLoader(
        Subset(dataset, indices), batch_size=batch_size, shuffle=False,
        num_workers=num_workers, collate_fn=pseudo_collate,
        worker_init_fn=partial(worker_init_fn, num_workers=num_workers,
                               rank=0, seed=seed or 0)
        if num_workers else None)
    if progress:
        from tqdm import tqdm
        loader = tqdm(loader, desc=progress, unit='batch')
    preprocessor = model.data_preprocessor
    for batch in loader:
        saved = getattr(preprocessor, 'batch_augments', None)
        if saved is not None:
            preprocessor.batch_augments = None
        try:
            with torch.no_grad():
                data = preprocessor(batch, training_preprocess)
        finally:
            if saved is not None:
                preprocessor.batch_augments = saved
        inputs = data['inputs'].to(device)
        yield (inputs, data['data_samples']) if with_samples else inputs


def default_device() -> str:
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def check_prompted_host(backbone):
    if not isinstance(backbone, PromptedBackboneMixin):
        raise TypeError(
            f'{type(backbone).__name__} is not a prompted host: use '
            f'PromptedSegViT or PromptedViT (same arguments and weights as '
            f"the stock ViTs) as the config's backbone.")


@torch.no_grad()
def block_tokens(backbone, inputs: Tensor,
                 indices: Optional[Sequence[int]] = None, norm: bool = False,
                 with_method: bool = False) -> List[Tensor]:
    """Float32 instance tokens (B, N, D) of the blocks ``indices`` (default
    all), of the frozen host unless ``with_method``."""
    check_prompted_host(backbone)
    outs = backbone.forward_intermediates(inputs, indices, norm=norm,
                                         with_method=with_method)
    return [x.float() for x in outs]


__all__ = ['config_scope', 'seed_everything', 'build_frozen_model',
           'build_train_subset', 'preprocessed_batches', 'default_device',
           'check_prompted_host', 'block_tokens']
