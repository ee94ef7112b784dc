"""What SHIP's offline tools share: the config's frozen pretrained backbone
(no prompts) and a deterministic sample of preprocessed training images.

Used by ``tools/analysis/ship_hierarchy.py`` and
``tools/analysis/ship_prototypes.py``.
"""
import copy
import os.path as osp
import random
from functools import partial
from typing import Iterator, List, Optional

import numpy as np
import torch
from mmengine.config import Config
from torch import Tensor

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


def prompt_cfg(cfg: Config) -> dict:
    """The config's ``model.backbone.prompt`` (an empty dict if none)."""
    return dict(cfg.model.get('backbone', {}).get('prompt') or {})


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
    if not hasattr(model.backbone, '_run_blocks'):
        raise TypeError(f'{type(model.backbone).__name__} is not a prompted '
                        f'host: use PromptedSegViT / PromptedViT.')
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
                         seed: int = 0, training_preprocess: bool = True,
                         device: str = 'cpu',
                         progress: Optional[str] = None) -> Iterator[Tensor]:
    """Normalised image batches (B, 3, H, W) through the model's data
    preprocessor.  ``training_preprocess``: pad/stack as in training (batch
    augments such as mixup are switched off); else as in testing (all images
    of a batch must have one size)."""
    from mmengine.dataset import pseudo_collate, worker_init_fn
    from torch.utils.data import DataLoader, Subset
    seed_everything(seed)
    loader = DataLoader(
        Subset(dataset, indices), batch_size=batch_size, shuffle=False,
        num_workers=num_workers, collate_fn=pseudo_collate,
        worker_init_fn=partial(worker_init_fn, num_workers=num_workers,
                               rank=0, seed=seed) if num_workers else None)
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
        yield data['inputs'].to(device)


def default_device() -> str:
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def config_stem(path: str) -> str:
    return osp.splitext(osp.basename(path))[0]


def resolve_options(args, cfg: Config, builtin: dict, keys: dict = None):
    """Fill the ``None`` options of ``args``: from the config's
    ``ship_offline`` dict (``keys`` maps option -> key there), else from
    ``builtin``.  Options given on the command line win."""
    offline = dict(cfg.get('ship_offline') or {})
    keys = keys or {}
    for name, default in builtin.items():
        if getattr(args, name) is None:
            key = keys.get(name, name)
            setattr(args, name, offline.get(key, default))
    return args
