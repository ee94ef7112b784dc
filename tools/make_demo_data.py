"""Generate the demo segmentation set (ADE20K layout, procedurally drawn).

    python tools/make_demo_data.py [--out data/demo_shapes] [--seed 0]
"""
import argparse
import os.path as osp
import sys
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/demo_shapes',
                        help='output folder (default: data/demo_shapes)')
    parser.add_argument('--num-train', type=int, default=64)
    parser.add_argument('--num-val', type=int, default=16)
    parser.add_argument('--size', type=int, default=64,
                        help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--force', action='store_true',
                        help='write even if a complete set is already there')
    args = parser.parse_args()
    if min(args.num_train, args.num_val) < 1 or args.size < 16:
        parser.error('need --num-train, --num-val >= 1 and --size >= 16')
    return args


def main():
    args = parse_args()
    from mmship.datasets.demo import demo_shapes_ready, make_demo_shapes
    expected = dict(seed=args.seed, size=args.size, num_train=args.num_train,
                    num_val=args.num_val)
    if not args.force and demo_shapes_ready(args.out, **expected):
        print(f'Demo data already in {args.out} (use --force to rewrite).')
        return 0
    if osp.isfile(args.out):
        sys.exit(f'--out {args.out} is a file, not a folder.')
    start = time.time()
    meta = make_demo_shapes(args.out, **expected)
    print(f'Wrote {meta["num_train"]} training and {meta["num_val"]} '
          f'validation images ({args.size}x{args.size}, classes '
          f'{meta["classes"]}) to {args.out} in {time.time() - start:.1f}s.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
