"""tools/benchmark/speed.py on the CPU with tiny models: the method rows
against the frozen timm ViT, and the whole-segmentor rows (one step each;
aot_eager instead of inductor, whose CPU kernel build alone takes a
minute), and tools/benchmark/attention.py's refusal without a GPU."""
import importlib.util
import os.path as osp

import pytest
import torch
from conftest import REPO, run_tool

STOCK = 'mmseg EncoderDecoder + VisionTransformer, frozen'
NO_PROMPTS = 'mmship, no prompts'


def _tool(name):
    """tools/benchmark/<name>.py, imported in process."""
    path = osp.join(REPO, 'tools', 'benchmark', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'{name}_bench', path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_speed_segmentor_rows():
    out = run_tool(['python', 'tools/benchmark/speed.py', '--device', 'cpu',
                    '--tiny', '--tasks', 'segmentor', '--iters', '1',
                    '--warmup', '1', '--rounds', '1',
                    '--compile-backend', 'aot_eager',
                    '--profile', 'VPT-deep 10']).stdout
    assert '## segmentor training step: batch 2, 64x64, 150 classes' in out
    out, profile = out.split('### profile: self time of the CPU ops')
    # | class | no prompts | VPT-deep 10 | difference |; times are not
    # compared (a loaded CPU reorders them), only the table's arithmetic
    classes = {cells[0]: [float(c) for c in cells[1:]] for cells in (
        [c.strip() for c in line.strip('|').split('|')]
        for line in profile.splitlines() if line.startswith('| ')
        and not line.startswith(('| class', '| ---')))}
    assert f'| class | {NO_PROMPTS} | VPT-deep 10 | difference |' in profile
    assert list(classes) == [c for c, _ in _tool('speed').KERNEL_CLASSES
                             ] + ['all']
    assert all(t >= 0 for base, row, _ in classes.values()
               for t in (base, row))
    for base, row, diff in classes.values():
        assert diff == pytest.approx(row - base, abs=0.11)
    assert "Largest additions of 'VPT-deep 10':" in profile
    # | model | train step (ms) | x mmseg | x mmship no prompts | memory |
    rows = {cells[0]: cells[1:] for cells in (
        [c.strip() for c in line.strip('|').split('|')]
        for line in out.splitlines() if line.startswith('| ')
        and not line.startswith(('| model', '| ---')))}
    floor = NO_PROMPTS + ', backward to the input'
    assert list(rows)[:5] == [STOCK, NO_PROMPTS + ', fast_head=False',
                              NO_PROMPTS, floor, 'VPT-deep 10']
    assert list(rows)[5].startswith('SHIP (6 groups')
    assert rows[STOCK][1] == '1.000' and rows[NO_PROMPTS][2] == '1.000'
    assert all(float(r[0]) > 0 for r in rows.values())
    # prompted rows against the floor; the floor and baselines have none
    assert rows[floor][3] == rows[NO_PROMPTS][3] == '-'
    assert float(rows['VPT-deep 10'][3]) > 0


@pytest.mark.parametrize('backward', [False, True])
def test_speed_floor_rows_back_propagate_to_the_image(backward):
    """The prompt-free row with a backward to the input differs from its
    baseline in that only."""
    speed = _tool('speed')
    rows = speed.segmentor_rows(6)
    row = rows[speed.NO_PROMPTS + speed.BACKWARD * backward]
    assert row.get('input_grad', False) is backward
    model, optim, cfg = speed.build_segmentor(
        speed.DEMO, dict(row, fast_head=False), 'cpu')
    images = []
    model.backbone.patch_embed.register_forward_hook(
        lambda module, args, out: images.append(args[0]))
    step_time = _tool('step_time')
    model.train().train_step(step_time.synthetic_batch(cfg, model, 2), optim)
    image, = images
    assert image.requires_grad is backward
    assert (image.grad is not None) is backward


def _table(out):
    return {cells[0]: cells[1:] for cells in (
        [c.strip() for c in line.strip('|').split('|')]
        for line in out.splitlines() if line.startswith('| ')
        and not line.startswith(('| method', '| ---')))}


def test_speed_method_rows_against_timm():
    out = run_tool(['python', 'tools/benchmark/speed.py', '--device', 'cpu',
                    '--tiny', '--tasks', 'cls', '--iters', '1', '--warmup',
                    '1', '--rounds', '1']).stdout
    rows = _table(out)
    assert list(rows)[:2] == ['timm ViT, frozen', 'frozen (no method)']
    assert {'LoRA r=8 (q, v)', 'SHIP K=10 (6 groups, SSP 10, AP 10, DA, PML)',
            'DA-VPT (10, 10 proxies)'} <= set(rows)
    # | blocks | train ms | x timm | x frozen (same blocks) | ...
    assert rows['timm ViT, frozen'][2] == '1.000'
    assert rows['frozen (no method)'][3] == '1.000'
    assert all(float(r[1]) > 0 for r in rows.values())


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU refusal')
def test_attention_benchmark_names_what_it_needs():
    """tools/benchmark/attention.py times a CUDA kernel: on CPU it says so
    before doing anything (in process: a subprocess would spend 10 s on
    imports)."""
    tool = _tool('attention')
    with pytest.raises(SystemExit, match='needs a GPU'):
        tool.main([])
