"""Train several configs with the same budget and print one accuracy table.

    python tools/benchmark/accuracy.py configs/bench/*_cifar10-1k.py \
        --work-root work_dirs/bench --parallel 4 \
        --cfg-options train_dataloader.dataset.ann_file=train1000.txt \
                      val_dataloader.dataset.ann_file=test.txt

Each config runs ``tools/train.py`` in its own process (``--parallel`` at a
time, sharing the GPU); the table reads the last validation metrics from each
run's log and the trainable-parameter count from the built model.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

from mmengine.config import Config

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


def trainable_params(config, work_dir=None):
    import mmship  # noqa: F401
    from mmengine.registry import DefaultScope, init_default_scope
    from mmship.engine.params import param_groups
    from mmship.ship.offline import use_work_dir_state
    cfg = Config.fromfile(config)
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
    groups = param_groups(model)
    prompt = groups.get('backbone.prompter', [0, 0])[0]
    return sum(t for t, _ in groups.values()), prompt


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('configs', nargs='+')
    p.add_argument('--work-root', default='work_dirs/bench')
    p.add_argument('--parallel', type=int, default=1)
    p.add_argument('--cfg-options', nargs='+', default=[])
    p.add_argument('--tag', default='', help='suffix of the work dirs')
    p.add_argument('--table-only', action='store_true')
    args = p.parse_args()

    runs = []
    for config in args.configs:
        name = osp.splitext(osp.basename(config))[0] + args.tag
        runs.append((config, osp.join(args.work_root, name)))
    if not args.table_only:
        pending, active = list(runs), []
        while pending or active:
            while pending and len(active) < args.parallel:
                config, work_dir = pending.pop(0)
                os.makedirs(work_dir, exist_ok=True)
                cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'),
                       config, '--work-dir', work_dir]
                if args.cfg_options:
                    cmd += ['--cfg-options'] + args.cfg_options
                log = open(osp.join(work_dir, 'stdout.log'), 'w')
                print(f'start {config}', flush=True)
                active.append((config, subprocess.Popen(
                    cmd, stdout=log, stderr=subprocess.STDOUT), time.time()))
            for item in list(active):
                config, proc, start = item
                if proc.poll() is not None:
                    active.remove(item)
                    print(f'done  {config}: exit {proc.returncode} in '
                          f'{time.time() - start:.0f}s', flush=True)
            time.sleep(2)

    opts = ' '.join(args.cfg_options)
    print(f'\n{opts}' if opts else '')
    print('| run | trainable params (prompts) | metric |')
    print('| --- | --- | --- |')
    for config, work_dir in runs:
        metrics = last_metrics(work_dir)
        value = metrics.get('mIoU', metrics.get('accuracy/top1', 'failed'))
        total, prompt = trainable_params(config, work_dir)
        print(f'| {osp.basename(work_dir)} | {total / 1e6:.3f}M '
              f'({prompt / 1e6:.3f}M) | {value} |')


if __name__ == '__main__':
    main()
