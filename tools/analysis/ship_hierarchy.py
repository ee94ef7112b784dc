"""SHIP's semantic hierarchy of a config's frozen backbone (METHODS.md 1.1).

Runs the pretrained backbone (no prompts) over a seeded sample of training
images, averages the per-image cosine Gram matrix of per-block descriptors,
groups the blocks greedily and writes

    affinity.npy, affinity_std.npy   (L, L) mean and per-pair std
    hierarchy.json                   starts, groups, threshold, descriptor, ...
    affinity.png                     heatmap with the groups outlined

into --out-dir (default: the folder of the config's
``model.backbone.prompt.starts`` if that names a hierarchy.json -- which is
then written at exactly that path -- else work_dirs/ship_hierarchy/<config>).

    python tools/analysis/ship_hierarchy.py CONFIG [--num-images 1000]
        [--threshold 0.95] [--descriptor cls|mean_patch] [--out-dir DIR]
        [--seed 0] [--cfg-options k=v ...]
"""
import argparse
import json
import os
import os.path as osp

import numpy as np
from mmengine.config import Config, DictAction

from mmship.ship.hierarchy import (DESCRIPTORS, compute_affinity,
                                   greedy_hierarchy, groups_of,
                                   plot_affinity)
from mmship.ship.offline import (build_frozen_model, build_train_subset,
                                 config_scope, config_stem, default_device,
                                 preprocessed_batches, prompt_cfg,
                                 resolve_options, seed_everything)

SWEEP = (0.90, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config')
    p.add_argument('--num-images', type=int, default=None,
                   help='default: ship_offline.num_images of the config, '
                   'else 1000')
    p.add_argument('--threshold', type=float, default=None,
                   help='default: ship_offline.threshold, else 0.95')
    p.add_argument('--descriptor', choices=DESCRIPTORS, default=None,
                   help="default: ship_offline.descriptor, else 'cls'")
    p.add_argument('--out-dir', default=None)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--num-workers', type=int, default=2)
    p.add_argument('--pipeline', choices=('train', 'test'), default=None,
                   help='transforms for the training images: the train '
                   'pipeline (seeded) or the test pipeline (default: '
                   "ship_offline.pipeline, else 'train')")
    p.add_argument('--device', default=None)
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def output_paths(cfg, config_path: str, out_dir: str = None):
    """(folder, hierarchy json path)."""
    starts = prompt_cfg(cfg).get('starts')
    if out_dir is None and isinstance(starts, str):
        return osp.dirname(starts) or '.', starts
    out_dir = out_dir or osp.join('work_dirs', 'ship_hierarchy',
                                  config_stem(config_path))
    return out_dir, osp.join(out_dir, 'hierarchy.json')


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    resolve_options(args, cfg, dict(num_images=1000, threshold=0.95,
                                    descriptor='cls', pipeline='train'))
    if not 0.0 < args.threshold <= 1.0:
        raise SystemExit(f'--threshold must lie in (0, 1], got '
                         f'{args.threshold}.')
    if args.descriptor not in DESCRIPTORS:
        raise SystemExit(f'descriptor {args.descriptor!r} is not one of '
                         f'{DESCRIPTORS}.')
    scope = config_scope(cfg)
    device = args.device or default_device()
    seed_everything(args.seed)

    model = build_frozen_model(cfg, device)
    dataset, indices = build_train_subset(cfg, args.num_images, args.seed,
                                          args.pipeline)
    batch_size = args.batch_size
    if args.pipeline == 'test' and scope == 'mmseg':
        batch_size = 1  # test images keep their own sizes
    batches = preprocessed_batches(
        model, dataset, indices, batch_size=batch_size,
        num_workers=args.num_workers, seed=args.seed,
        training_preprocess=args.pipeline == 'train', device=device,
        progress='affinity')
    mean, std, count = compute_affinity(model.backbone, batches,
                                        args.descriptor)
    starts = greedy_hierarchy(mean, args.threshold)
    num_layers = mean.shape[0]

    out_dir, json_path = output_paths(cfg, args.config, args.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    np.save(osp.join(out_dir, 'affinity.npy'), mean)
    np.save(osp.join(out_dir, 'affinity_std.npy'), std)
    info = dict(
        starts=starts,
        groups=groups_of(starts, num_layers),
        threshold=args.threshold,
        descriptor=args.descriptor,
        num_images=count,
        num_layers=num_layers,
        seed=args.seed,
        pipeline=args.pipeline,
        config=args.config,
        checkpoint=(cfg.model.backbone.get('init_cfg') or {}).get(
            'checkpoint'),
        starts_by_threshold={
            f'{t:.2f}': greedy_hierarchy(mean, t) for t in SWEEP},
    )
    with open(json_path, 'w') as f:
        json.dump(info, f, indent=2)
    png = osp.join(out_dir, 'affinity.png')
    plot_affinity(
        mean, starts, png,
        title=f'{config_stem(args.config)}: {args.descriptor}, '
        f'{count} images, lambda={args.threshold}')

    print(f'\n{count} images, descriptor {args.descriptor!r}, threshold '
          f'{args.threshold}: {len(starts)} groups {groups_of(starts, num_layers)}')
    for t, s in info['starts_by_threshold'].items():
        print(f'  threshold {t}: starts={s}')
    print(f'wrote {json_path}, {png}, affinity.npy, affinity_std.npy in '
          f'{out_dir}')
    print('\nConfig snippet:\n'
          f'model.backbone.prompt.starts={starts}\n'
          f'(or --cfg-options model.backbone.prompt.starts="{starts}", or '
          f'starts={json_path!r})')
    return info


if __name__ == '__main__':
    main()
