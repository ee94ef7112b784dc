"""Loss parity of ``tools/dist_train.sh`` on the CPU with gloo: 2 processes
of batch B train exactly as 1 process of batch 2B.  And
``tools/benchmark/scaling.py`` on the CPU: its table, its early errors, its
fresh run folders."""
import importlib.util
import json
import math
import os
import os.path as osp
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torch.distributed as dist

from conftest import REPO, free_port, run_tool

HERE = osp.dirname(osp.abspath(__file__))
# the hook module on the path; the CPU (gloo) even where there are GPUs
ENV = dict(PYTHONPATH=os.pathsep.join([REPO, HERE]), CUDA_VISIBLE_DEVICES='')
ITERS = 4
PER_RANK = 2  # B

# No BN (its statistics would be per process) and no dropout; a fixed order
# (DefaultSampler, shuffle=False, hands rank r the images r, r+2, ...: each
# step's two halves are the 1-process batch) and a deterministic pipeline.
# SGD: the update is linear in the gradient, so that float32 rounding in
# DDP's all-reduce stays at rounding size (Adam would amplify it on
# near-zero gradients).
PARITY_CONFIG = """
_base_ = [{runtime!r}]
custom_imports = dict(imports=['mmship', 'rank_losses_hook'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='RankLossesHook')]
model = dict(
    type='PromptedImageClassifier',
    backbone=dict(
        type='PromptedViT',
        prompt=dict(type='Prompter',
                    placements=[dict(kind='deep', num_tokens=4)],
                    dropout=0.0),
        freeze_backbone=True,
        arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                  feedforward_channels=64),
        img_size=32, patch_size=8, out_type='cls_token', drop_rate=0.0,
        drop_path_rate=0.0),
    head=dict(type='LinearClsHead', num_classes=4, in_channels=32,
              loss=dict(type='CrossEntropyLoss')))
data_preprocessor = dict(num_classes=4, mean=[127.5] * 3, std=[127.5] * 3,
                         to_rgb=True)
train_dataloader = dict(
    batch_size={batch}, num_workers=0,
    dataset=dict(type='CustomDataset', data_root={data!r},
                 ann_file='train.txt', data_prefix='train',
                 pipeline=[dict(type='LoadImageFromFile'),
                           dict(type='PackInputs')]),
    sampler=dict(type='DefaultSampler', shuffle=False))
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9))
train_cfg = dict(type='IterBasedTrainLoop', max_iters={iters})
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=-1,
                    save_last=False))
log_processor = dict(by_epoch=False, window_size=1)
randomness = dict(seed=0)
"""


def _write_images(root, num_classes, per_class, size=32):
    """Random images, listed in train.txt with the classes interleaved (so
    that every batch mixes them)."""
    import cv2
    import numpy as np
    rng = np.random.default_rng(0)
    lines = []
    for i in range(per_class):
        for c in range(num_classes):
            os.makedirs(osp.join(root, 'train', str(c)), exist_ok=True)
            cv2.imwrite(osp.join(root, 'train', str(c), f'{i}.png'),
                        rng.integers(0, 255, (size, size, 3), np.uint8))
            lines.append(f'{c}/{i}.png {c}\n')
    with open(osp.join(root, 'train.txt'), 'w') as f:
        f.writelines(lines)


def _losses(work, rank):
    with open(osp.join(work, f'losses_rank{rank}.jsonl')) as f:
        rows = [json.loads(line) for line in f]
    assert [r['iter'] for r in rows] == list(range(1, ITERS + 1))
    return torch.tensor([r['loss'] for r in rows], dtype=torch.float64)


def _params(work, tag, rank):
    return torch.load(osp.join(work, f'params_{tag}_rank{rank}.pth'))


@pytest.mark.skipif(not dist.is_gloo_available(),
                    reason='torch.distributed without gloo')
def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    data = str(tmp_path / 'data')
    # exactly one epoch of the 1-process run: ITERS steps of 2B images
    _write_images(data, num_classes=4, per_class=ITERS * 2 * PER_RANK // 4)
    runtime = osp.join(REPO, 'configs/_base_/default_runtime_cls.py')
    configs = {}
    for name, batch in (('single', 2 * PER_RANK), ('ddp', PER_RANK)):
        configs[name] = str(tmp_path / f'parity_{name}.py')
        with open(configs[name], 'w') as f:
            f.write(PARITY_CONFIG.format(runtime=runtime, data=data,
                                         batch=batch, iters=ITERS))
    single, ddp = str(tmp_path / 'single'), str(tmp_path / 'ddp')
    commands = [
        (['python', 'tools/train.py', configs['single'], '--work-dir',
          single], ENV),
        (['bash', 'tools/dist_train.sh', configs['ddp'], '2', '--work-dir',
          ddp], dict(ENV, PORT=str(free_port())))]
    with ThreadPoolExecutor(2) as pool:  # overlaps their start-up
        procs = list(pool.map(lambda c: run_tool(c[0], env=c[1]), commands))
    assert "dist_cfg: {'backend': 'gloo'}" in procs[1].stdout

    one = _losses(single, 0)
    rank0, rank1 = _losses(ddp, 0), _losses(ddp, 1)
    # the 1-process loss is the mean over the batch of 2B; each rank's is
    # the mean over its B, so their mean is the same number
    torch.testing.assert_close((rank0 + rank1) / 2, one, rtol=0, atol=1e-5)
    # the check can fail: rank 0 alone is the loss of another global batch
    # (its B images), and it is off by far more than the tolerance
    assert (rank0 - one).abs().max() > 1e-3
    assert (one[1:] - one[0]).abs().max() > 1e-3  # the steps train

    # DDP averages the gradients: the same update on both ranks, and the
    # same as the 1-process update of the whole batch
    init, final = _params(single, 'init', 0), _params(single, 'final', 0)
    final0, final1 = _params(ddp, 'final', 0), _params(ddp, 'final', 1)
    assert set(final0) == set(final) and any('prompter' in k for k in final)
    for name, value in final.items():
        torch.testing.assert_close(_params(ddp, 'init', 0)[name],
                                   init[name], rtol=0, atol=0)
        assert torch.equal(final0[name], final1[name]), name
        torch.testing.assert_close(final0[name], value, rtol=0, atol=1e-6)
    moved = max((final[k] - init[k]).abs().max() for k in final)
    assert moved > 1e-2


# -- tools/benchmark/scaling.py -----------------------------------------------
def _tool():
    spec = importlib.util.spec_from_file_location(
        'scaling', osp.join(REPO, 'tools/benchmark/scaling.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scaling_tool_cpu(tmp_path):
    """A segmentation config (iteration-based) and an epoch-based
    classification config, each one process for 3 iterations on
    synthetic images."""
    from test_tools import CLS_CONFIG
    cls_config = tmp_path / 'tiny_cls.py'
    cls_config.write_text(CLS_CONFIG.format(
        runtime=osp.join(REPO, 'configs/_base_/default_runtime_cls.py'),
        data=str(tmp_path / 'no_data')))  # --synthetic replaces it
    root = tmp_path / 'scaling'
    proc = run_tool(['python', 'tools/benchmark/scaling.py', 'configs/demo.py',
                     str(cls_config), '--device', 'cpu', '--gpus', '1',
                     '--iters', '3', '--warmup', '1', '--synthetic',
                     '--work-root', str(root), '--cfg-options',
                     'train_dataloader.num_workers=0',
                     'train_dataloader.persistent_workers=False'])
    out = proc.stdout
    assert '[1/2] demo: 1 procs' in out and '[2/2] tiny_cls: 1 procs' in out
    assert 'tiny_cls: epoch-based config: IterBasedTrainLoop' in out
    rows = re.findall(r'^\| (demo|tiny_cls) \| 1 \| (\d+) \| (\d+) \| '
                      r'([\d.]+) \| 1\.00x \| - \|$', out, flags=re.M)
    assert [(r[0], r[1], r[2]) for r in rows] == [('demo', '8', '8'),
                                                  ('tiny_cls', '4', '4')]
    assert all(math.isfinite(float(r[3])) and float(r[3]) > 0 for r in rows)
    (run_dir, ) = os.listdir(root)
    assert (root / run_dir / 'results.md').read_text().count('| 1 |') == 2
    # what ran: 3 logged iterations, no checkpoint, no validation
    log = (root / run_dir / 'tiny_cls' / '1proc' / 'stdout.log').read_text()
    assert 'Iter(train) [3/3]' in log and 'Iter(val)' not in log
    assert not any(n.endswith('.pth') for n in
                   os.listdir(root / run_dir / 'tiny_cls' / '1proc'))


@pytest.mark.parametrize('args, message', [
    (['configs/nope.py'], "'configs/nope.py' do not exist"),
    (['configs/demo.py', '--device', 'cuda', '--gpus', '1', '999'],
     'asks for more GPUs than this machine has'),
    (['configs/demo.py', '--iters', '3', '--warmup', '3'],
     'must be at least 0 and below --iters'),
    (['configs/demo.py', '--device', 'cpu', '--precision', 'bf16'],
     'bf16 needs --device cuda'),
])
def test_scaling_tool_refuses_before_launching(tmp_path, args, message):
    root = tmp_path / 'scaling'
    proc = run_tool(['python', 'tools/benchmark/scaling.py', *args,
                     '--work-root', str(root)], check=False)
    assert proc.returncode != 0 and message in proc.stdout, proc.stdout
    assert not root.exists()


def test_scaling_runs_never_share_a_folder(tmp_path):
    tool = _tool()
    first, second = (tool.fresh_folder(str(tmp_path)) for _ in range(2))
    assert first != second and osp.isdir(first) and osp.isdir(second)
