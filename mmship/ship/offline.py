"""What SHIP's offline steps share: the config's frozen pretrained backbone
(no prompts), a deterministic sample of preprocessed training images, the
hierarchy search and the K-means prototypes.

Used by ``tools/analysis/ship_hierarchy.py``,
``tools/analysis/ship_prototypes.py`` and, for configs that leave the
hierarchy or the prototypes open, by ``tools/train.py`` at the start of
training (``prepare_ship_offline`` / ``apply_ship_offline``).
"""
import copy
import json
import logging
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
                     write: bool = True, num_groups: Optional[int] = None,
                     model=None) -> dict:
    """SHIP's hierarchy search (docs/ship.md, "Semantic hierarchy") for a
    config: the frozen pretrained backbone over a seeded sample of training
    images, the averaged affinity, the greedy groups.  ``num_groups``: the
    threshold is the one that yields that many groups (``threshold`` is then
    ignored; a ``ValueError`` names the achievable counts if none does).
    Writes hierarchy.json, affinity.npy, affinity_std.npy and affinity.png;
    returns the JSON's content plus ``path``, and ``warning`` (None or the
    message of a degenerate search)."""
    from .hierarchy import (DESCRIPTORS, adjacent_affinities,
                            compute_affinity, greedy_hierarchy, groups_of,
                            hierarchy_warning, plot_affinity,
                            threshold_for_groups)
    if num_groups is None and not 0.0 < threshold <= 1.0:
        raise ValueError(f'The hierarchy threshold must lie in (0, 1], got '
                         f'{threshold}.')
    if num_groups is not None and int(num_groups) < 1:
        raise ValueError(f'num_groups must be at least 1, got {num_groups}.')
    if descriptor not in DESCRIPTORS:
        raise ValueError(f'descriptor {descriptor!r} is not one of '
                         f'{DESCRIPTORS}.')
    seed_everything(seed)
    model = model if model is not None else build_frozen_model(cfg, device)
    dataset, indices = build_train_subset(cfg, num_images, seed, pipeline)
    if pipeline == 'test' and config_scope(cfg) == 'mmseg':
        batch_size = 1  # test images keep their own sizes
    batches = preprocessed_batches(
        model, dataset, indices, batch_size=batch_size,
        num_workers=num_workers, seed=seed,
        training_preprocess=pipeline == 'train', device=device,
        progress='affinity')
    mean, std, count = compute_affinity(model.backbone, batches, descriptor)
    interval = None
    if num_groups is not None:
        threshold, interval = threshold_for_groups(mean, int(num_groups),
                                                   prefer=threshold)
    starts = greedy_hierarchy(mean, threshold)
    num_layers = mean.shape[0]

    json_path = hierarchy_path(cfg, config_path, out_dir)
    info = dict(
        starts=starts, groups=groups_of(starts, num_layers),
        threshold=threshold, num_groups=None if num_groups is None
        else int(num_groups),
        threshold_interval=interval, descriptor=descriptor,
        num_images=count, num_layers=num_layers, seed=seed,
        pipeline=pipeline, config=config_path,
        checkpoint=(cfg.model.backbone.get('init_cfg') or {}).get(
            'checkpoint'),
        adjacent_affinity=[round(a, 6) for a in adjacent_affinities(mean)],
        warning=hierarchy_warning(starts, mean, threshold),
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
                  f'{count} images, lambda={threshold:g}')
    return dict(info, path=json_path)


def describe_hierarchy(info: dict) -> str:
    """Lines for logs / the tool's output: the adjacent affinities, the
    chosen threshold and groups."""
    adj = ', '.join(f'{i}-{i + 1}: {a:.3f}'
                    for i, a in enumerate(info['adjacent_affinity']))
    how = f'threshold {info["threshold"]:g}'
    if info.get('num_groups') is not None:
        lo, hi = info['threshold_interval']
        how += (f' (picked for num_groups={info["num_groups"]}: thresholds '
                f'in ({lo:.4f}, {hi:.4f}] give {info["num_groups"]} groups)')
    return (f'adjacent-block affinities S[i, i+1] ({info["descriptor"]}, '
            f'{info["num_images"]} images): {adj}\n'
            f'{how}: {len(info["starts"])} groups {info["groups"]}, '
            f'starts={info["starts"]}')


PROTOTYPE_DESCRIPTORS = ('cls', 'mean_patch', 'patch')


def kmeans(x: np.ndarray, k: int, seed: int, n_init: int = 4) -> np.ndarray:
    """(K, D) centroids; refuses K larger than the number of points."""
    if k < 1:
        raise ValueError(f'--k must be at least 1, got {k}.')
    if k > x.shape[0]:
        raise ValueError(
            f'Asked for K={k} prototypes from only {x.shape[0]} descriptors: '
            f'use --k <= {x.shape[0]}, more --num-images, or --descriptor '
            f'patch.')
    from sklearn.cluster import KMeans
    km = KMeans(n_clusters=k, random_state=seed, n_init=n_init)
    km.fit(x.astype(np.float64))
    return km.cluster_centers_.astype(np.float32)


def prototype_descriptors(tokens: Tensor, descriptor: str, extra: int,
                          per_image: int,
                          generator: torch.Generator) -> Tensor:
    """(B, N, D) last-block tokens -> (M, D) descriptors."""
    from .hierarchy import reduce_tokens
    if descriptor != 'patch':
        return reduce_tokens(tokens, descriptor, extra)
    patches = tokens[:, extra:]
    n = patches.shape[1]
    k = min(per_image, n)
    picks = torch.stack([torch.randperm(n, generator=generator)[:k]
                         for _ in range(patches.shape[0])])
    return patches.gather(
        1, picks.to(patches.device)[..., None].expand(-1, -1,
                                                      patches.shape[-1])
    ).flatten(0, 1)


def prototypes_path(cfg: Config, config_path: str, k: int) -> str:
    """The config's ``prompt.prototypes`` if it names a file, else
    work_dirs/ship_prototypes/<config>_k<K>.pth."""
    protos = prompt_cfg(cfg).get('prototypes')
    if isinstance(protos, str):
        return protos
    return osp.join('work_dirs', 'ship_prototypes',
                    f'{config_stem(config_path)}_k{k}.pth')


def compute_prototypes(cfg: Config, config_path: str,
                       out: Optional[str] = None, k: int = 200,
                       num_images: int = 1000, descriptor: str = 'cls',
                       patches_per_image: int = 16, seed: int = 0,
                       n_init: int = 4, batch_size: int = 8,
                       num_workers: int = 2, pipeline: str = 'train',
                       device: str = 'cpu', write: bool = True,
                       model=None) -> dict:
    """SHIP's attribute prototypes (docs/ship.md, "Attribute prompts"):
    K-means over last-block descriptors of a seeded sample of training
    images of the frozen backbone.  Writes ``out`` (.pth dict with metadata,
    or .npy) unless ``write=False``; returns the metadata with
    ``prototypes`` (a (K, D) tensor), ``num_descriptors`` and ``path``."""
    from .hierarchy import last_block_tokens, num_extra_tokens
    if descriptor not in PROTOTYPE_DESCRIPTORS:
        raise ValueError(f'descriptor {descriptor!r} is not one of '
                         f'{PROTOTYPE_DESCRIPTORS}.')
    scope = config_scope(cfg)
    seed_everything(seed)
    model = model if model is not None else build_frozen_model(cfg, device)
    extra = num_extra_tokens(model.backbone)
    dataset, indices = build_train_subset(cfg, num_images, seed, pipeline)
    if descriptor != 'patch' and k > len(indices):
        # one descriptor per image: refuse before running the backbone
        kmeans(np.zeros((len(indices), 1)), k, seed)
    if pipeline == 'test' and scope == 'mmseg':
        batch_size = 1
    batches = preprocessed_batches(
        model, dataset, indices, batch_size=batch_size,
        num_workers=num_workers, seed=seed,
        training_preprocess=pipeline == 'train', device=device,
        progress='last-block features')
    gen = torch.Generator().manual_seed(seed)
    feats = []
    for inputs in batches:
        tokens = last_block_tokens(model.backbone, inputs)
        feats.append(prototype_descriptors(tokens, descriptor, extra,
                                           patches_per_image, gen).cpu())
    x = torch.cat(feats).numpy()
    centers = torch.from_numpy(kmeans(x, k, seed, n_init))
    out = out or prototypes_path(cfg, config_path, k)
    meta = dict(descriptor=descriptor, num_images=len(indices),
                num_descriptors=int(x.shape[0]), k=k, seed=seed,
                pipeline=pipeline, config=config_path)
    if write:
        os.makedirs(osp.dirname(out) or '.', exist_ok=True)
        if out.endswith('.npy'):
            np.save(out, centers.numpy())
        else:
            torch.save(dict(prototypes=centers, **meta), out)
    return dict(meta, prototypes=centers, path=out)


# -- the start of training ----------------------------------------------------
#: ``ship_offline`` keys and defaults of the two computations
HIERARCHY_OPTIONS = dict(num_images=1000, threshold=0.95, descriptor='cls',
                         pipeline='train', num_groups=None, seed=0)
PROTOTYPE_OPTIONS = dict(k=200, num_images=1000, prototype_descriptor='cls',
                         pipeline='train', patches_per_image=16, seed=0)
#: the work dir's folder for what the start of training computes
OFFLINE_DIR = 'ship_offline'


def _ship_prompt(cfg: Config):
    prompt = cfg.model.get('backbone', {}).get('prompt') or {}
    if prompt.get('type') not in ('SHIPPrompter', 'mmship.SHIPPrompter'):
        return None
    return prompt


def _missing(source) -> bool:
    return source is None or (isinstance(source, str)
                              and not osp.isfile(source))


def offline_needs(cfg: Config) -> List[str]:
    """What a SHIP config leaves to the start of training: ``'hierarchy'``
    (SIP or AP on, ``starts`` None or a missing file) and / or
    ``'prototypes'`` (AP on, ``prototypes`` None or a missing file)."""
    prompt = _ship_prompt(cfg)
    if prompt is None:
        return []
    needs = []
    if (prompt.get('sip', True) or prompt.get('ap', True)) and \
            _missing(prompt.get('starts')):
        needs.append('hierarchy')
    if prompt.get('ap', True) and _missing(prompt.get('prototypes')):
        needs.append('prototypes')
    return needs


def _options(cfg: Config, defaults: dict) -> dict:
    offline = dict(cfg.get('ship_offline') or {})
    return {k: offline.get(k, v) for k, v in defaults.items()}


def _device() -> str:
    device = default_device()
    if device == 'cuda':
        device = f'cuda:{int(os.environ.get("LOCAL_RANK", 0))}'
    return device


def _compute_offline(cfg: Config, config_path: str, work_dir: str,
                     needs: List[str], reuse: bool = True) -> dict:
    """Rank 0's part: reuse the work dir's files, else compute them."""
    from mmengine.logging import print_log

    from .hierarchy import load_hierarchy
    from .prompter import load_prototypes
    summary = []

    def log(msg, level=logging.INFO):
        print_log(msg, logger='current', level=level)
        summary.append((level, msg))

    folder = osp.join(work_dir, OFFLINE_DIR)
    result = {}
    model = None
    device = _device()
    if 'hierarchy' in needs:
        saved = osp.join(folder, 'hierarchy.json')
        options = _options(cfg, HIERARCHY_OPTIONS)
        if reuse and osp.isfile(saved):
            result['starts'] = load_hierarchy(saved)
            log(f'SHIP hierarchy of this work dir reused: starts='
                f'{result["starts"]} ({saved})')
            with open(saved) as f:
                kept = json.load(f)
            changed = {k: (kept.get(k), v) for k, v in options.items()
                       if k in kept and kept[k] != v
                       and not (k == 'threshold' and options['num_groups'])}
            if changed:
                log(f'SHIP: the reused hierarchy was searched with other '
                    f'settings (saved, now): {changed}; delete {saved} (or '
                    f'use another work dir) to search again.',
                    logging.WARNING)
        else:
            log(f'SHIP: no hierarchy given; searching it with the frozen '
                f'backbone ({options}) ...')
            model = build_frozen_model(cfg, device)
            info = search_hierarchy(cfg, config_path, out_dir=folder,
                                    device=device, model=model, **options)
            result['starts'] = info['starts']
            log(f'SHIP hierarchy: {describe_hierarchy(info)}; saved to '
                f'{info["path"]}')
            if info['warning']:
                log(info['warning'], logging.WARNING)
    if 'prototypes' in needs:
        options = _options(cfg, PROTOTYPE_OPTIONS)
        saved = osp.join(folder, f'prototypes_k{options["k"]}.pth')
        if reuse and osp.isfile(saved):
            result['prototypes'] = load_prototypes(saved)
            log(f'SHIP attribute prototypes of this work dir reused: '
                f'{tuple(result["prototypes"].shape)} ({saved})')
        else:
            log(f'SHIP: no attribute prototypes given; computing them with '
                f'the frozen backbone ({options}) ...')
            if model is None:
                model = build_frozen_model(cfg, device)
            options['descriptor'] = options.pop('prototype_descriptor')
            info = compute_prototypes(cfg, config_path, out=saved,
                                      device=device, model=model, **options)
            result['prototypes'] = info['prototypes']
            log(f'SHIP attribute prototypes: K-means K={info["k"]} over '
                f'{info["num_descriptors"]} {info["descriptor"]!r} '
                f'descriptors of {info["num_images"]} images; saved to '
                f'{saved}')
    del model
    result['log'] = summary
    return result


def prepare_ship_offline(cfg: Config, config_path: str, work_dir: str,
                         reuse: bool = True) -> Optional[dict]:
    """The start-of-training step of SHIP configs that leave the hierarchy
    and / or the attribute prototypes open (None, or a file that does not
    exist): rank 0 reuses what this work dir's ``ship_offline/`` holds (a
    resumed run), else computes them with the code of the offline tools and
    the config's ``ship_offline`` settings and saves them there; under DDP
    the result is broadcast to the other ranks (torch.distributed, so rank
    0's files need not be visible to them).

    Puts the starts into the config (the prompt sets, and so the optimizer,
    depend on them) and sets ``prompt.prototypes`` to K (a buffer of that
    shape); ``apply_ship_offline`` fills it once the model is built.
    ``reuse=False`` (``tools/train.py --overwrite``) computes them again.
    Returns what was found (``starts``, ``prototypes``) or None: nothing to
    do."""
    needs = offline_needs(cfg)
    if not needs:
        return None
    import torch.distributed as dist
    if cfg.get('launcher', 'none') != 'none' and not dist.is_initialized():
        # the Runner would initialise it later; it skips that step when the
        # process group exists
        from mmengine.dist import init_dist
        init_dist(cfg.launcher, **(cfg.get('env_cfg', {}) or {}).get(
            'dist_cfg', {}))
    distributed = dist.is_initialized() and dist.get_world_size() > 1
    rank = dist.get_rank() if distributed else 0
    result = _compute_offline(cfg, config_path, work_dir, needs, reuse) \
        if rank == 0 else None
    if distributed:
        box = [result]
        dist.broadcast_object_list(box, src=0)
        result = box[0]
        if rank != 0:
            print(f'[rank {rank}] SHIP: {" and ".join(needs)} received from '
                  f'rank 0: starts={result.get("starts")}', flush=True)
    prompt = _ship_prompt(cfg)
    if 'starts' in result:
        prompt['starts'] = list(result['starts'])
    if 'prototypes' in result:
        prompt['prototypes'] = int(result['prototypes'].shape[0])
    return result


def use_work_dir_state(cfg: Config, work_dir: str) -> List[str]:
    """Point a config that leaves the hierarchy / prototypes open at what a
    run saved in ``work_dir/ship_offline`` (to build the model of that run
    without its checkpoint, e.g. to count its parameters).  Returns what was
    taken from there."""
    needs = offline_needs(cfg)
    folder = osp.join(work_dir, OFFLINE_DIR)
    taken = []
    prompt = _ship_prompt(cfg)
    saved = osp.join(folder, 'hierarchy.json')
    if 'hierarchy' in needs and osp.isfile(saved):
        prompt['starts'] = saved
        taken.append('hierarchy')
    k = _options(cfg, PROTOTYPE_OPTIONS)['k']
    saved = osp.join(folder, f'prototypes_k{k}.pth')
    if 'prototypes' in needs and osp.isfile(saved):
        prompt['prototypes'] = saved
        taken.append('prototypes')
    return taken


def apply_ship_offline(model, result: Optional[dict], logger=None) -> None:
    """Fill the prototypes found by ``prepare_ship_offline`` into the built
    model's SHIP prompter (in place: wrappers keep seeing the buffer), and
    repeat what was computed or reused into ``logger`` (the runner's, whose
    log file did not exist yet when it was computed)."""
    if not result:
        return
    if logger is not None:
        for level, msg in result.get('log', []):
            logger.log(level, msg)
    if 'prototypes' not in result:
        return
    from mmengine.model import is_model_wrapper

    from .prompter import SHIPPrompter
    if is_model_wrapper(model):
        model = model.module
    prompters = [m for m in model.modules() if isinstance(m, SHIPPrompter)]
    if len(prompters) != 1:
        raise RuntimeError(f'Expected one SHIP prompter in the model, found '
                           f'{len(prompters)}.')
    prompters[0].set_prototypes(result['prototypes'])
