"""The end-to-end demo: make the demo data (if missing), train VPT-deep on a
tiny frozen ViT + UperNet for 300 iterations on the CPU with
`tools/train.py`, evaluate, and print the final mIoU.

    python tools/demo.py [--work-dir work_dirs/demo] [train.py arguments]
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join('configs', 'demo.py')
DATA_ROOT = osp.join('data', 'demo_shapes')


def final_metrics(work_dir: str, since: float) -> dict:
    """The last validation metrics logged by the run that started at
    ``since`` (mmengine's vis_data/scalars.json of its log folder)."""
    runs = [d for d in glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))
            if osp.getmtime(d) >= since]
    if not runs:
        return {}
    metrics = {}
    with open(max(runs, key=osp.getmtime)) as f:
        for line in f:
            record = json.loads(line)
            if 'mIoU' in record:
                metrics = record
    return metrics


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'demo'))
    args, train_args = parser.parse_known_args()
    os.chdir(ROOT)
    start = time.time()

    from mmship.datasets.demo import demo_shapes_ready, make_demo_shapes
    if demo_shapes_ready(DATA_ROOT):
        print(f'[demo] using the demo data in {DATA_ROOT}')
    else:
        meta = make_demo_shapes(DATA_ROOT)
        print(f'[demo] wrote {meta["num_train"]} + {meta["num_val"]} demo '
              f'images to {DATA_ROOT}')

    cmd = [sys.executable, osp.join('tools', 'train.py'), CONFIG,
           '--work-dir', args.work_dir, '--overwrite'] + train_args
    print('[demo] ' + ' '.join(cmd), flush=True)
    train_start = time.time()
    # One OpenMP thread: the demo model is tiny, and on a small CPU shared
    # with other work oversubscribed threads make it 10x slower.
    env = dict(os.environ)
    env.setdefault('OMP_NUM_THREADS', '1')
    result = subprocess.run(cmd, env=env)
    if result.returncode != 0:
        sys.exit(f'[demo] training failed (exit code {result.returncode}).')
    metrics = final_metrics(args.work_dir, train_start)
    if not metrics:
        sys.exit(f'[demo] no validation metrics found in {args.work_dir}.')
    print(f'[demo] done in {time.time() - start:.0f}s: mIoU {metrics["mIoU"]:.2f}'
          f' (aAcc {metrics.get("aAcc", float("nan")):.2f}, mAcc '
          f'{metrics.get("mAcc", float("nan")):.2f}) after '
          f'{metrics.get("step", "?")} iterations; logs and checkpoints in '
          f'{args.work_dir}')


if __name__ == '__main__':
    main()
