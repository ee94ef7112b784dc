"""SHIP's offline steps on the frozen-feature layer (``core/features.py``):
the hierarchy search and the k-means prototypes.

Used by ``tools/analysis/ship_hierarchy.py``,
``tools/analysis/ship_prototypes.py`` and, for configs that leave the
hierarchy or the prototypes open, by ``tools/train.py`` at the start of
training (``prepare_ship_offline`` / ``apply_ship_offline``).
"""
import json
import logging
import os
import os.path as osp
from typing import List, Optional

import numpy as np
import torch
from mmengine.config import Config
from torch import Tensor

from mmship.core.features import (block_tokens, build_frozen_model,
                                  build_train_subset, config_scope,
                                  default_device, preprocessed_batches,
                                  seed_everything)
from mmship.core.kmeans import cluster_means, spherical_kmeans

def prompt_cfg(cfg: Config) -> dict:
    """The config's ``model.backbone.prompt`` (an empty dict if none)."""
    return dict(cfg.model.get('backbone', {}).get('prompt') or {})


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


def check_k(k: int, num_points: int):
    """Refuse K larger than the number of descriptors, before any work."""
    if k < 1:
        raise ValueError(f'--k must be at least 1, got {k}.')
    if k > num_points:
        raise ValueError(
            f'Asked for K={k} prototypes from only {num_points} descriptors: '
            f'use --k <= {num_points}, more --num-images, or --descriptor '
            f'patch.')


def kmeans_prototypes(x: Tensor, k: int, seed: int, n_init: int = 4
                      ) -> Tensor:
    """(K, D) prototypes: spherical k-means clusters of the descriptors (AP
    compares tokens with prototypes by cosine), each the mean of its
    members, so prototypes keep the scale of the tokens they are mixed
    into."""
    check_k(k, x.shape[0])
    assign, _ = spherical_kmeans(x, k, seed=seed, n_init=n_init)
    return cluster_means(x, assign, k)


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
    the means of spherical k-means clusters of last-block descriptors of a
    seeded sample of training images of the frozen backbone.  Writes
    ``out`` (.pth dict with metadata, or .npy) unless ``write=False``;
    returns the metadata with ``prototypes`` (a (K, D) tensor),
    ``num_descriptors`` and ``path``."""
    if descriptor not in PROTOTYPE_DESCRIPTORS:
        raise ValueError(f'descriptor {descriptor!r} is not one of '
                         f'{PROTOTYPE_DESCRIPTORS}.')
    scope = config_scope(cfg)
    seed_everything(seed)
    model = model if model is not None else build_frozen_model(cfg, device)
    extra = model.backbone.num_extra_tokens
    dataset, indices = build_train_subset(cfg, num_images, seed, pipeline)
    if descriptor != 'patch':
        # one descriptor per image: refuse before running the backbone
        check_k(k, len(indices))
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
        tokens, = block_tokens(model.backbone, inputs, indices=[-1])
        feats.append(prototype_descriptors(tokens, descriptor, extra,
                                           patches_per_image, gen).cpu())
    x = torch.cat(feats)
    centers = kmeans_prototypes(x, k, seed, n_init)
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
    from .method import load_prototypes
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

    from .method import SHIPPrompter
    if is_model_wrapper(model):
        model = model.module
    prompters = [m for m in model.modules() if isinstance(m, SHIPPrompter)]
    if len(prompters) != 1:
        raise RuntimeError(f'Expected one SHIP prompter in the model, found '
                           f'{len(prompters)}.')
    prompters[0].set_prototypes(result['prototypes'])
