"""SHIP's semantic hierarchy of a config's frozen backbone (docs/ship.md,
"Semantic hierarchy").

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
        [--threshold 0.95 | --num-groups G] [--descriptor cls|mean_patch]
        [--out-dir DIR] [--seed 0] [--cfg-options k=v ...]

It prints the adjacent-block affinities S[i, i+1] and warns when the search
degenerates (one group per block, or a single group).  --num-groups G picks
the threshold that yields G groups (and says which; if no threshold does,
it fails naming the achievable counts).  tools/train.py runs the same search
at the start of training when the config gives no hierarchy; the same
choice is ``ship_offline=dict(num_groups=G)`` there.
"""
import sys
import argparse
import os.path as osp

from mmengine.config import Config, DictAction

from mmship.ship.hierarchy import DESCRIPTORS
from mmship.ship.offline import (default_device, describe_hierarchy,
                                 resolve_options, search_hierarchy)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config')
    p.add_argument('--num-images', type=int, default=None,
                   help='default: ship_offline.num_images of the config, '
                   'else 1000')
    p.add_argument('--threshold', type=float, default=None,
                   help='default: ship_offline.threshold, else 0.95')
    p.add_argument('--num-groups', type=int, default=None,
                   help='pick the threshold that yields this many groups '
                   '(default: ship_offline.num_groups; then --threshold only '
                   'breaks ties between thresholds giving G groups)')
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


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    resolve_options(args, cfg, dict(num_images=1000, threshold=0.95,
                                    descriptor='cls', pipeline='train',
                                    num_groups=None))
    try:
        info = search_hierarchy(
            cfg, args.config, out_dir=args.out_dir,
            num_images=args.num_images, threshold=args.threshold,
            descriptor=args.descriptor, seed=args.seed,
            batch_size=args.batch_size, num_workers=args.num_workers,
            pipeline=args.pipeline, device=args.device or default_device(),
            num_groups=args.num_groups)
    except ValueError as err:
        if args.num_groups is None:
            raise
        sys.exit(f'ship_hierarchy.py: error: {err}')
    starts, json_path = info['starts'], info['path']
    print(f'\n{describe_hierarchy(info)}')
    for t, s in info['starts_by_threshold'].items():
        print(f'  threshold {t}: {len(s)} groups, starts={s}')
    if info['warning']:
        print(f'\nWARNING: {info["warning"]}')
    print(f'wrote {json_path}, affinity.png, affinity.npy, affinity_std.npy '
          f'in {osp.dirname(json_path)}')
    print('\nConfig snippet:\n'
          f'model.backbone.prompt.starts={starts}\n'
          f'(or --cfg-options model.backbone.prompt.starts="{starts}", or '
          f'starts={json_path!r})')
    return info


if __name__ == '__main__':
    main()
