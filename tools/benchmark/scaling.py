"""Images per second, speed-up and peak memory per GPU of
``tools/dist_train.sh`` on 1, 2, ... GPUs, as one Markdown table.

    python tools/benchmark/scaling.py configs/vpt-deep_vit-b_ade20k.py \
        configs/ship_vit-b_ade20k.py \
        configs/vpt/vpt-deep_vit-b16_8xb8-100e_cifar100-224px.py \
        --gpus 1 2 --iters 100 --warmup 20 --synthetic \
        --cfg-options model.backbone.init_cfg=None
    python tools/benchmark/scaling.py configs/demo.py --device cpu --gpus 1 \
        --iters 3 --warmup 1 --synthetic \
        --cfg-options train_dataloader.num_workers=0 \
                      train_dataloader.persistent_workers=False     # smoke

Each config and GPU count is one real ``bash tools/dist_train.sh CONFIG G``
run of ``--iters`` iterations.  It trains from a copy of the config written
into the run's folder, changed so that the log measures the steps and
nothing else: an IterBasedTrainLoop (an epoch-based config also gets an
InfiniteSampler, so no epoch ends inside the measurement), no validation,
no checkpoints, and mmengine's logger every iteration with a smoothing
window of 1.  ``vis_data/scalars.json`` then holds each iteration's own
``time`` and ``memory`` (rank 0's ``torch.cuda.max_memory_allocated`` in
MiB, reset at every log).  Images/s = global batch / mean iteration time
after the first ``--warmup`` iterations; peak memory = the largest
``memory`` of the run.  bf16 is mmengine's AmpOptimWrapper with dtype
bfloat16.

``--synthetic`` swaps the training set for generated images at the config's
crop size (segmentation) or image size (classification), read through the
config's own pipeline: the demo shapes of mmship/datasets/demo.py in
ADE20K's layout, or the same images in one folder per class.  SHIP configs
that leave the hierarchy and the attribute prototypes to the start of
training get fixed ones (6 groups, random prototypes): their search runs
once before training and is not part of the step.  Results and the loss
parity test: docs/performance.md, "Scaling: one and two GPUs".
"""
import argparse
import glob
import json
import math
import os
import os.path as osp
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time

import torch
from mmengine.config import DictAction

DIST_TRAIN = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                      'dist_train.sh')
#: generated training images per synthetic set (at least one per class)
SYNTHETIC_IMAGES = 32


class UsageError(Exception):
    """Bad input, found before any run is launched."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('configs', nargs='+')
    p.add_argument('--gpus', type=int, nargs='+', default=[1, 2],
                   help='GPU counts (with --device cpu: process counts)')
    p.add_argument('--iters', type=int, default=100,
                   help='training iterations per run')
    p.add_argument('--warmup', type=int, default=20,
                   help='first iterations left out of images/s')
    p.add_argument('--batch', type=int, help='images per GPU (default: the '
                   "config's train_dataloader.batch_size)")
    p.add_argument('--work-root', default='work_dirs/scaling',
                   help='each call writes a fresh <timestamp> folder here')
    p.add_argument('--device', choices=['cuda', 'cpu'],
                   default='cuda' if torch.cuda.is_available() else 'cpu',
                   help='cpu: processes on the CPU with gloo')
    p.add_argument('--precision', choices=['bf16', 'fp32'],
                   help='default: bf16 on cuda, fp32 on cpu')
    p.add_argument('--synthetic', action='store_true',
                   help='generated training images instead of the data set')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   default={}, help='applied to every config, as in '
                   'tools/train.py (e.g. data roots)')
    args = p.parse_args(argv)
    if args.precision is None:
        args.precision = 'bf16' if args.device == 'cuda' else 'fp32'
    return args


def check_args(args):
    """Every error that can be found before a run starts."""
    if args.iters < 1 or not 0 <= args.warmup < args.iters:
        raise UsageError(f'--warmup ({args.warmup}) must be at least 0 and '
                         f'below --iters ({args.iters}).')
    if args.batch is not None and args.batch < 1:
        raise UsageError(f'--batch must be at least 1, got {args.batch}.')
    if min(args.gpus) < 1:
        raise UsageError(f'--gpus must be positive, got {args.gpus}.')
    if args.device == 'cuda':
        have = torch.cuda.device_count()
        if max(args.gpus) > have:
            raise UsageError(
                f'--gpus {max(args.gpus)} asks for more GPUs than this '
                f'machine has: {have} visible'
                f'{" (use --device cpu)" if have == 0 else ""}.')
    elif args.precision == 'bf16':
        raise UsageError('--precision bf16 needs --device cuda (mmengine\'s '
                         'AmpOptimWrapper has no CPU mode).')
    missing = [c for c in args.configs if not osp.isfile(c)]
    if missing:
        raise UsageError(f'Config file(s) {", ".join(map(repr, missing))} do '
                         f'not exist.')
    names = [config_name(c) for c in args.configs]
    twins = sorted({n for n in names if names.count(n) > 1})
    if twins:
        raise UsageError(f'Configs share the file name {", ".join(twins)}; '
                         f'their run folders would collide.')
    if osp.exists(args.work_root) and not osp.isdir(args.work_root):
        raise UsageError(f'--work-root {args.work_root!r} is not a folder.')


def config_name(path: str) -> str:
    return osp.splitext(osp.basename(path))[0]


def fresh_folder(work_root: str) -> str:
    """A new ``<work_root>/<timestamp>[_N]`` folder: earlier runs are never
    written into."""
    stamp = time.strftime('%Y%m%d_%H%M%S')
    path, n = osp.join(work_root, stamp), 0
    while True:
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            n += 1
            path = osp.join(work_root, f'{stamp}_{n}')


def backbone_dims(cfg):
    """(num_layers, embed_dims) of the config's ViT backbone."""
    backbone = cfg.model.backbone
    arch = backbone.get('arch')
    if arch is None:  # mmseg's VisionTransformer arguments and defaults
        return backbone.get('num_layers', 12), backbone.get('embed_dims', 768)
    if isinstance(arch, str):
        from mmpretrain.models import VisionTransformer
        arch = VisionTransformer.arch_zoo[arch.lower()]
    return arch['num_layers'], arch['embed_dims']


def fix_ship_offline(cfg, folder: str) -> list:
    """Fixed SHIP hierarchy and random attribute prototypes where the config
    leaves them to the start of training; returns what was fixed."""
    import numpy as np

    from mmship.ship.offline import PROTOTYPE_OPTIONS, offline_needs
    needs = offline_needs(cfg)
    prompt = cfg.model.backbone.prompt
    layers, dims = backbone_dims(cfg)
    if 'hierarchy' in needs:
        prompt.starts = list(range(0, layers, max(1, layers // 6)))[:6]
    if 'prototypes' in needs:
        k = (cfg.get('ship_offline') or {}).get('k', PROTOTYPE_OPTIONS['k'])
        path = osp.join(folder, f'random_prototypes_k{k}.npy')
        rng = np.random.default_rng(0)
        np.save(path, rng.standard_normal((k, dims)).astype(np.float32))
        prompt.prototypes = path
    return needs


def _leaf_parent(loader):
    """(parent, key) of the innermost dataset config of a dataloader."""
    parent, key = loader, 'dataset'
    while isinstance(parent[key].get('dataset'), dict):
        parent = parent[key]
    if 'datasets' in parent[key]:
        raise UsageError('--synthetic does not replace a ConcatDataset.')
    return parent, key


def _side(size) -> int:
    """The side of the square images that cover ``size`` (int or (h, w))."""
    return max(size) if isinstance(size, (tuple, list)) else size


def synthetic_dataset(cfg, data_dir: str) -> str:
    """Point the training set at generated images (made once per size and
    class count in ``data_dir``); returns their folder."""
    import cv2
    import numpy as np

    from mmship.datasets.demo import draw_sample, make_demo_shapes
    parent, key = _leaf_parent(cfg.train_dataloader)
    leaf = parent[key]
    if cfg.default_scope == 'mmseg':
        size = _side(cfg.get('crop_size') or cfg.model.backbone.img_size)
        root = osp.join(data_dir, f'shapes_{size}px')
        if not osp.isdir(root):
            make_demo_shapes(root, num_train=SYNTHETIC_IMAGES, num_val=0,
                             size=size)
        leaf.update(data_root=root, ann_file='', img_suffix='.jpg',
                    seg_map_suffix='.png',
                    data_prefix=dict(img_path='images/training',
                                     seg_map_path='annotations/training'))
        return root
    size = _side(cfg.model.backbone.get('img_size', 224))
    num_classes = cfg.model.head.num_classes
    root = osp.join(data_dir, f'classes{num_classes}_{size}px')
    if not osp.isdir(root):
        per_class = math.ceil(SYNTHETIC_IMAGES / num_classes)
        for c in range(num_classes):
            folder = osp.join(root, 'train', f'class_{c:04d}')
            os.makedirs(folder)
            for i in range(per_class):
                image, _ = draw_sample(np.random.default_rng([c, i]), size)
                cv2.imwrite(osp.join(folder, f'{i}.jpg'),
                            cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    pipeline = list(leaf.pipeline)
    if not str(pipeline[0].get('type', '')).startswith('Load'):
        # data sets such as CIFAR100 hand over decoded arrays
        pipeline.insert(0, dict(type='LoadImageFromFile'))
    parent[key] = dict(type='CustomDataset', data_root=root,
                       data_prefix='train', pipeline=pipeline)
    return root


def bench_config(cfg, args, folder: str, data_dir: str) -> list:
    """Change ``cfg`` into the measured run; returns notes for the log."""
    notes = []
    loader = cfg.train_dataloader
    loop = cfg.train_cfg
    if loop.get('type', 'EpochBasedTrainLoop' if loop.get('by_epoch', True)
                else 'IterBasedTrainLoop') != 'IterBasedTrainLoop':
        loader.sampler = dict(type='InfiniteSampler', shuffle=True)
        notes.append('epoch-based config: IterBasedTrainLoop, '
                     'InfiniteSampler')
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=args.iters)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    hooks = cfg.setdefault('default_hooks', {})
    hooks['logger'] = dict(type='LoggerHook', interval=1,
                           log_metric_by_epoch=False)
    hooks['checkpoint'] = dict(type='CheckpointHook', by_epoch=False,
                               interval=-1, save_last=False)
    cfg.log_processor = dict(by_epoch=False, window_size=1)
    if args.batch is not None:
        loader.batch_size = args.batch
    wrapper = cfg.optim_wrapper
    if wrapper.get('type', 'OptimWrapper') not in ('OptimWrapper',
                                                   'AmpOptimWrapper'):
        raise UsageError(f'optim_wrapper type {wrapper.type!r}: cannot set '
                         f'--precision.')
    if args.precision == 'bf16':
        wrapper.type = 'AmpOptimWrapper'
        wrapper.dtype = 'bfloat16'
    else:
        wrapper.type = 'OptimWrapper'
        wrapper.pop('dtype', None)
        wrapper.pop('loss_scale', None)
    if args.synthetic:
        notes.append(f'synthetic images: {synthetic_dataset(cfg, data_dir)}')
    fixed = fix_ship_offline(cfg, folder)
    if fixed:
        notes.append(f'SHIP {" and ".join(fixed)} fixed: starts='
                     f'{cfg.model.backbone.prompt.starts}')
    return notes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch(config: str, gpus: int, work_dir: str, device: str) -> int:
    """One ``tools/dist_train.sh`` run; its output goes to
    ``work_dir/stdout.log``.  Returns the exit status."""
    env = dict(os.environ)
    env.setdefault('PYTHON', sys.executable)  # dist_train.sh's interpreter
    env.setdefault('PORT', str(free_port()))
    if device == 'cpu':
        env['CUDA_VISIBLE_DEVICES'] = ''  # tools/train.py then uses gloo
    os.makedirs(work_dir)
    with open(osp.join(work_dir, 'stdout.log'), 'w') as log:
        return subprocess.run(
            ['bash', DIST_TRAIN, config, str(gpus), '--work-dir', work_dir],
            env=env, stdout=log, stderr=subprocess.STDOUT).returncode


def error_lines(log: str) -> str:
    """The error messages of a failed run's output (torchrun's own summary
    left out), else its last lines."""
    with open(log) as f:
        lines = f.readlines()
    errors = [line for line in lines if re.search(
        r'(Error|Exception)\b: |: error: ', line)
        and 'ChildFailedError' not in line]
    return ''.join(errors[-5:] or lines[-15:])


def train_records(work_dir: str) -> dict:
    """{iteration: scalars} of a run's training log (rank 0)."""
    paths = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                      'scalars.json')))
    records = {}
    if paths:
        with open(paths[-1]) as f:
            for line in f:
                record = json.loads(line)
                if 'time' in record and 'loss' in record:
                    records[record['step']] = record
    return records


def measure(records: dict, iters: int, warmup: int, global_batch: int):
    """(images/s, peak memory in GiB or None), or None for a partial log."""
    steps = range(warmup + 1, iters + 1)
    if any(i not in records for i in steps):
        return None
    seconds = statistics.mean(records[i]['time'] for i in steps)
    memory = [r['memory'] for r in records.values() if 'memory' in r]
    return (global_batch / seconds,
            max(memory) / 1024 if memory else None)


def table(rows, unit: str) -> list:
    """Markdown lines; speed-up is against the smallest count of the same
    config."""
    lines = [f'| config | {unit} | batch / {unit[:-1]} | global batch | '
             f'images/s | speed-up | peak memory / {unit[:-1]} (GiB) |',
             '| --- | --- | --- | --- | --- | --- | --- |']
    base = {}
    for row in rows:
        if row['ips'] is not None:
            base.setdefault(row['name'], row['ips'])
    for row in rows:
        if row['ips'] is None:
            ips = speedup = 'failed'
        else:
            ips = f'{row["ips"]:.2f}'
            speedup = f'{row["ips"] / base[row["name"]]:.2f}x'
        mem = '-' if row['memory'] is None else f'{row["memory"]:.2f}'
        lines.append(f'| {row["name"]} | {row["gpus"]} | {row["batch"]} | '
                     f'{row["gpus"] * row["batch"]} | {ips} | {speedup} | '
                     f'{mem} |')
    return lines


def main(argv=None):
    args = parse_args(argv)
    try:
        check_args(args)
        from mmship.engine.launch import UsageError as ConfigError
        from mmship.engine.launch import load_config
        try:
            cfgs = [load_config(c, args.cfg_options) for c in args.configs]
        except ConfigError as err:
            raise UsageError(str(err)) from None
    except UsageError as err:
        sys.exit(f'scaling.py: error: {err}')

    # absolute: the runs start in this folder too, but their config and
    # work dir must not depend on it
    run_root = fresh_folder(osp.abspath(args.work_root))
    data_dir = osp.join(run_root, 'synthetic_data')
    print(f'runs in {run_root}', flush=True)
    benches = []  # every config is prepared before the first launch
    for path, cfg in zip(args.configs, cfgs):
        name = config_name(path)
        folder = osp.join(run_root, name)
        os.makedirs(folder)
        try:
            notes = bench_config(cfg, args, folder, data_dir)
        except UsageError as err:
            shutil.rmtree(run_root)
            sys.exit(f'scaling.py: error: {path}: {err}')
        for note in notes:
            print(f'{name}: {note}', flush=True)
        benches.append((name, osp.join(folder, f'{name}.py'),
                        cfg.train_dataloader.batch_size))
        cfg.dump(benches[-1][1])

    gpus = sorted(set(args.gpus))
    unit = 'GPUs' if args.device == 'cuda' else 'procs'
    rows, count = [], 0
    for name, bench, batch in benches:
        for g in gpus:
            count += 1
            work_dir = osp.join(run_root, name, f'{g}{unit[:-1].lower()}')
            print(f'[{count}/{len(gpus) * len(benches)}] {name}: {g} {unit}, '
                  f'batch {batch} each, {args.iters} iterations -> '
                  f'{work_dir}', flush=True)
            start = time.time()
            status = launch(bench, g, work_dir, args.device)
            result = measure(train_records(work_dir), args.iters,
                             args.warmup, g * batch) if status == 0 else None
            ips, memory = result or (None, None)
            if ips is None:
                why = f'exit {status}' if status else 'iterations missing ' \
                    'from vis_data/scalars.json'
                log = osp.join(work_dir, 'stdout.log')
                print(f'    FAILED ({why}); from {log}:\n'
                      f'{error_lines(log)}', flush=True)
            else:
                print(f'    {time.time() - start:.0f} s: {ips:.2f} images/s',
                      flush=True)
            rows.append(dict(name=name, gpus=g, batch=batch, ips=ips,
                             memory=memory))

    device = torch.cuda.get_device_name(0) if args.device == 'cuda' else \
        f'CPU ({os.cpu_count()} cores, gloo)'
    lines = [f'{device}, {args.precision}, {args.iters} iterations per run, '
             f'images/s over the last {args.iters - args.warmup}', ''] + \
        table(rows, unit)
    text = '\n'.join(lines)
    print(f'\n{text}')
    with open(osp.join(run_root, 'results.md'), 'w') as f:
        f.write(text + '\n')
    if any(row['ips'] is None for row in rows):
        sys.exit(1)


if __name__ == '__main__':
    main()
