"""SHIP's attribute prototypes (METHODS.md 1.4): K-means centroids of
last-block features of a seeded sample of training images, from the
config's frozen pretrained backbone (no prompts).

The (K, D) matrix is written to --out (default: the config's
``model.backbone.prompt.prototypes`` if it names a file, else
work_dirs/ship_prototypes/<config>_k<K>.pth), as a .pth dict
``{'prototypes': tensor, ...metadata}`` or a bare .npy array.

Descriptors (raw last-block outputs, before the final norm, like the patch
tokens AP compares them with):
    cls         the CLS token, one per image (default, as in the hierarchy)
    mean_patch  the mean of the patch tokens, one per image
    patch       --patches-per-image randomly chosen patch tokens per image

    python tools/analysis/ship_prototypes.py CONFIG [--k 200]
        [--num-images 1000] [--out FILE] [--seed 0]
"""
import argparse
import os
import os.path as osp

import numpy as np
import torch
from mmengine.config import Config, DictAction

from mmship.ship.hierarchy import (last_block_tokens, num_extra_tokens,
                                   reduce_tokens)
from mmship.ship.offline import (build_frozen_model, build_train_subset,
                                 config_scope, config_stem, default_device,
                                 preprocessed_batches, prompt_cfg,
                                 resolve_options, seed_everything)

DESCRIPTORS = ('cls', 'mean_patch', 'patch')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config')
    p.add_argument('--k', type=int, default=None,
                   help='default: ship_offline.k of the config, else 200')
    p.add_argument('--num-images', type=int, default=None,
                   help='default: ship_offline.num_images, else 1000')
    p.add_argument('--descriptor', choices=DESCRIPTORS, default=None,
                   help="default: ship_offline.prototype_descriptor, else "
                   "'cls'")
    p.add_argument('--patches-per-image', type=int, default=16)
    p.add_argument('--out', default=None)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--n-init', type=int, default=4,
                   help='K-means restarts (best inertia kept)')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--num-workers', type=int, default=2)
    p.add_argument('--pipeline', choices=('train', 'test'), default=None,
                   help="default: ship_offline.pipeline, else 'train'")
    p.add_argument('--device', default=None)
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def descriptors_of(tokens: torch.Tensor, descriptor: str, extra: int,
                   per_image: int, generator: torch.Generator) -> torch.Tensor:
    """(B, N, D) last-block tokens -> (M, D) descriptors."""
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


def default_out(cfg, config_path: str, k: int) -> str:
    protos = prompt_cfg(cfg).get('prototypes')
    if isinstance(protos, str):
        return protos
    return osp.join('work_dirs', 'ship_prototypes',
                    f'{config_stem(config_path)}_k{k}.pth')


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    resolve_options(args, cfg, dict(k=200, num_images=1000, descriptor='cls',
                                    pipeline='train'),
                    keys=dict(descriptor='prototype_descriptor'))
    if args.descriptor not in DESCRIPTORS:
        raise SystemExit(f'descriptor {args.descriptor!r} is not one of '
                         f'{DESCRIPTORS}.')
    scope = config_scope(cfg)
    device = args.device or default_device()
    seed_everything(args.seed)

    model = build_frozen_model(cfg, device)
    extra = num_extra_tokens(model.backbone)
    dataset, indices = build_train_subset(cfg, args.num_images, args.seed,
                                          args.pipeline)
    if args.descriptor != 'patch' and args.k > len(indices):
        # one descriptor per image: refuse before running the backbone
        kmeans(np.zeros((len(indices), 1)), args.k, args.seed)
    batch_size = 1 if args.pipeline == 'test' and scope == 'mmseg' \
        else args.batch_size
    batches = preprocessed_batches(
        model, dataset, indices, batch_size=batch_size,
        num_workers=args.num_workers, seed=args.seed,
        training_preprocess=args.pipeline == 'train', device=device,
        progress='last-block features')
    gen = torch.Generator().manual_seed(args.seed)
    feats = []
    for inputs in batches:
        tokens = last_block_tokens(model.backbone, inputs)
        feats.append(descriptors_of(tokens, args.descriptor, extra,
                                    args.patches_per_image, gen).cpu())
    x = torch.cat(feats).numpy()
    centers = kmeans(x, args.k, args.seed, args.n_init)

    out = args.out or default_out(cfg, args.config, args.k)
    os.makedirs(osp.dirname(out) or '.', exist_ok=True)
    if out.endswith('.npy'):
        np.save(out, centers)
    else:
        torch.save(
            dict(prototypes=torch.from_numpy(centers),
                 descriptor=args.descriptor, num_images=len(indices),
                 num_descriptors=int(x.shape[0]), k=args.k, seed=args.seed,
                 config=args.config), out)
    print(f'\nK-means K={args.k} over {x.shape[0]} {args.descriptor!r} '
          f'descriptors of {len(indices)} images -> {out} '
          f'{tuple(centers.shape)}')
    print(f'\nConfig snippet:\nmodel.backbone.prompt.prototypes={out!r}')
    return out


if __name__ == '__main__':
    main()
