"""What SHIP's offline tools share: the config's frozen pretrained backbone
(no prompts) and a deterministic sample of preprocessed training images.

Used by ``tools/analysis/ship_hierarchy.py`` and
``tools/analysis/ship_prototypes.py``.
"""
import copy
import json
import os
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


#: thresholds whose hierarchies are recorded next to the chosen one
THRESHOLD_SWEEP = (0.90, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98)


def hierarchy_path(cfg: Config, config_path: str,
                   out_dir: Optional[str] = None) -> str:
    """Where the hierarchy JSON goes: ``out_dir``, else the path the config's
    ``prompt.starts`` names, else work_dirs/ship_hierarchy/<config>."""
    starts = prompt_cfg(cfg).get('starts')
    if out_dir is None and isinstance(starts, str):
        return starts
    out_dir = out_dir or osp.join('work_dirs', 'ship_hierarchy',
                                  config_stem(config_path))
    return osp.join(out_dir, 'hierarchy.json')


def search_hierarchy(cfg: Config, config_path: str,
                     out_dir: Optional[str] = None, num_images: int = 1000,
                     threshold: float = 0.95, descriptor: str = 'cls',
                     seed: int = 0, batch_size: int = 8, num_workers: int = 2,
                     pipeline: str = 'train', device: str = 'cpu',
                     write: bool = True) -> dict:
    """SHIP's hierarchy search (METHODS.md 1.1) for a config: the frozen
    pretrained backbone over a seeded sample of training images, the averaged
    affinity, the greedy groups.  Writes hierarchy.json, affinity.npy,
    affinity_std.npy and affinity.png; returns the JSON's content plus
    ``path``."""
    from .hierarchy import (DESCRIPTORS, compute_affinity, greedy_hierarchy,
                            groups_of, plot_affinity)
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f'The hierarchy threshold must lie in (0, 1], got '
                         f'{threshold}.')
    if descriptor not in DESCRIPTORS:
        raise ValueError(f'descriptor {descriptor!r} is not one of '
                         f'{DESCRIPTORS}.')
    seed_everything(seed)
    model = build_frozen_model(cfg, device)
    dataset, indices = build_train_subset(cfg, num_images, seed, pipeline)
    if pipeline == 'test' and config_scope(cfg) == 'mmseg':
        batch_size = 1  # test images keep their own sizes
    batches = preprocessed_batches(
        model, dataset, indices, batch_size=batch_size,
        num_workers=num_workers, seed=seed,
        training_preprocess=pipeline == 'train', device=device,
        progress='affinity')
    mean, std, count = compute_affinity(model.backbone, batches, descriptor)
    starts = greedy_hierarchy(mean, threshold)
    num_layers = mean.shape[0]

    json_path = hierarchy_path(cfg, config_path, out_dir)
    info = dict(
        starts=starts, groups=groups_of(starts, num_layers),
        threshold=threshold, descriptor=descriptor, num_images=count,
        num_layers=num_layers, seed=seed, pipeline=pipeline,
        config=config_path,
        checkpoint=(cfg.model.backbone.get('init_cfg') or {}).get(
            'checkpoint'),
        starts_by_threshold={f'{t:.2f}': greedy_hierarchy(mean, t)
                             for t in THRESHOLD_SWEEP})
    if not write:
        return dict(info, path=json_path)
    folder = osp.dirname(json_path) or '.'
    os.makedirs(folder, exist_ok=True)
    np.save(osp.join(folder, 'affinity.npy'), mean)
    np.save(osp.join(folder, 'affinity_std.npy'), std)
    with open(json_path, 'w') as f:
        json.dump(info, f, indent=2)
    plot_affinity(mean, starts, osp.join(folder, 'affinity.png'),
                  title=f'{config_stem(config_path)}: {descriptor}, '
                  f'{count} images, lambda={threshold}')
    return dict(info, path=json_path)


def fill_missing_hierarchy(cfg: Config, config_path: str,
                           work_dir: str) -> Optional[List[int]]:
    """The start-of-training step for SHIP configs without a hierarchy
    (``prompt.starts=None``): run the search of
    ``tools/analysis/ship_hierarchy.py`` with the config's ``ship_offline``
    settings, save it in ``work_dir/ship_hierarchy``, log it and put the
    starts into the config.  Deterministic, so every rank of a distributed
    run computes the same groups (rank 0 writes the files).  A resumed run
    reuses the hierarchy saved in its work dir.  Returns the starts (None:
    nothing to do)."""
    from .hierarchy import load_hierarchy
    from mmengine.logging import print_log
    prompt = cfg.model.get('backbone', {}).get('prompt') or {}
    if prompt.get('type') not in ('SHIPPrompter', 'mmship.SHIPPrompter') \
            or prompt.get('starts', None) is not None \
            or not (prompt.get('sip', True) or prompt.get('ap', True)):
        return None
    options = dict(num_images=1000, threshold=0.95, descriptor='cls',
                   pipeline='train')
    options.update({k: v for k, v in (cfg.get('ship_offline') or {}).items()
                    if k in options})
    saved = osp.join(work_dir, 'ship_hierarchy', 'hierarchy.json')
    if osp.isfile(saved):
        prompt['starts'] = load_hierarchy(saved)
        print_log(f'SHIP hierarchy of this work dir reused: starts='
                  f'{prompt["starts"]} ({saved})', logger='current')
        return prompt['starts']
    device = default_device()
    if device == 'cuda':
        device = f'cuda:{int(os.environ.get("LOCAL_RANK", 0))}'
    print_log(f'SHIP: model.backbone.prompt.starts is not set; searching the '
              f'semantic hierarchy ({options}) ...', logger='current')
    info = search_hierarchy(cfg, config_path,
                            out_dir=osp.dirname(saved), device=device,
                            write=int(os.environ.get('RANK', 0)) == 0,
                            **options)
    prompt['starts'] = info['starts']
    print_log(f'SHIP hierarchy: starts={info["starts"]}, groups '
              f'{info["groups"]}; saved to {info["path"]}', logger='current')
    return info['starts']
