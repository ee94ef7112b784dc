"""Train several configs with the same budget and print one accuracy table.

    python tools/benchmark/accuracy.py configs/bench/*_cifar10-1k.py \
        --work-root work_dirs/bench --parallel 4 --seeds 0 1 \
        --cfg-options train_dataloader.dataset.ann_file=train1000.txt \
                      val_dataloader.dataset.ann_file=test.txt

Each config and seed runs ``tools/train.py`` in its own process
(``--parallel`` at a time, sharing the GPU; ``randomness.seed`` set per
seed).  The table reads the last validation metric of each run's log, the
trainable parameters of the built model, split into the backbone side
(prompts, tuned biases, unfrozen backbone weights) and the head side (neck,
heads), and the mean seconds per iteration of the log.  Runs share the GPU,
so those seconds compare runs of one call only; tools/benchmark/speed.py
measures steps alone.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

from mmengine.config import Config, DictAction

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def last_metrics(work_dir):
    """The last validation record of mmengine's scalars log."""
    logs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                     'scalars.json')))
    if not logs:
        return {}
    metrics = {}
    with open(logs[-1]) as f:
        for line in f:
            record = json.loads(line)
            if any(k in record for k in ('mIoU', 'accuracy/top1')):
                metrics = record
    return metrics


def seconds_per_iter(work_dir):
    """Mean training ``time`` (s/iter) of mmengine's scalars log."""
    logs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                     'scalars.json')))
    if not logs:
        return None
    times = []
    with open(logs[-1]) as f:
        for line in f:
            record = json.loads(line)
            if 'time' in record and 'loss' in record:
                times.append(record['time'])
    # the first log interval holds start-up (workers, cudnn autotuning)
    times = times[1:] or times
    return sum(times) / len(times) if times else None


def trainable_params(config, work_dir=None, cfg_options=()):
    import mmship  # noqa: F401
    from mmengine.registry import DefaultScope, init_default_scope
    from mmship.ship.offline import use_work_dir_state
    cfg = Config.fromfile(config)
    if cfg_options:  # as train.py gets them (they may change the model)
        cfg.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in (
            o.split('=', 1) for o in cfg_options)})
    if work_dir is not None:
        # SHIP: the hierarchy the run computed at its start
        use_work_dir_state(cfg, work_dir)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    scope = DefaultScope.get_current_instance().scope_name
    if scope == 'mmseg':
        from mmseg.registry import MODELS
    else:
        from mmpretrain.registry import MODELS
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    backbone = sum(p.numel() for p in model.backbone.parameters()
                   if p.requires_grad)
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return backbone, total - backbone


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('configs', nargs='+')
    p.add_argument('--work-root', default='work_dirs/bench')
    p.add_argument('--parallel', type=int, default=1)
    p.add_argument('--seeds', type=int, nargs='+', default=[0],
                   help='one run per config and seed (work dirs get _s<seed>'
                   ' when several are given)')
    p.add_argument('--cfg-options', nargs='+', default=[])
    p.add_argument('--tag', default='', help='suffix of the work dirs')
    p.add_argument('--table-only', action='store_true')
    args = p.parse_args()

    runs = []
    for config in args.configs:
        name = osp.splitext(osp.basename(config))[0] + args.tag
        for seed in args.seeds:
            suffix = f'_s{seed}' if len(args.seeds) > 1 else ''
            runs.append((config, seed, osp.join(args.work_root,
                                                name + suffix)))
    if not args.table_only:
        pending, active = list(runs), []
        while pending or active:
            while pending and len(active) < args.parallel:
                config, seed, work_dir = pending.pop(0)
                os.makedirs(work_dir, exist_ok=True)
                cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'),
                       config, '--work-dir', work_dir, '--cfg-options',
                       f'randomness.seed={seed}'] + args.cfg_options
                log = open(osp.join(work_dir, 'stdout.log'), 'w')
                print(f'start {work_dir}', flush=True)
                active.append((work_dir, subprocess.Popen(
                    cmd, stdout=log, stderr=subprocess.STDOUT), time.time()))
            for item in list(active):
                work_dir, proc, start = item
                if proc.poll() is not None:
                    active.remove(item)
                    print(f'done  {work_dir}: exit {proc.returncode} in '
                          f'{time.time() - start:.0f}s', flush=True)
            time.sleep(2)

    opts = ' '.join(args.cfg_options)
    print(f'\n{opts}' if opts else '')
    print('| run | seed | trainable: backbone side | head side | s/iter '
          '(shared GPU) | metric |')
    print('| --- | --- | --- | --- | --- | --- |')
    for config, seed, work_dir in runs:
        metrics = last_metrics(work_dir)
        value = metrics.get('mIoU', metrics.get('accuracy/top1', 'failed'))
        if isinstance(value, float):
            value = f'{value:.2f}'
        # per run: SHIP's group prompts depend on the hierarchy it computed
        backbone, head = trainable_params(config, work_dir,
                                          args.cfg_options)
        sec = seconds_per_iter(work_dir)
        sec = f'{sec:.3f}' if sec is not None else '-'
        print(f'| {osp.basename(work_dir)} | {seed} | {backbone / 1e6:.3f}M '
              f'| {head / 1e6:.3f}M | {sec} | {value} |')


if __name__ == '__main__':
    main()
