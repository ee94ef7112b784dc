"""Training-step and inference time of the tuning methods, as ratios measured
in one process: to a frozen timm ViT (the reference) and to mmship's own
method-free backbone run the same way (eager, ``compile_blocks``,
``cuda_graph``, or both).

    python tools/benchmark/speed.py                     # ViT-B/16, GPU, bf16
    python tools/benchmark/speed.py --compile           # + compiled blocks
    python tools/benchmark/speed.py --cuda-graph        # + captured steps
    python tools/benchmark/speed.py --device cpu --tiny --iters 2   # smoke
    python tools/benchmark/speed.py --tasks segmentor   # whole segmentors

Training step = forward + backward to the input image (the frozen baseline
also back-propagates through every block, as prompts at block 0 need),
under bf16 autocast on the GPU.  Inference = forward in eval mode under
no_grad.  Memory = the peak one training step adds to what is resident
(not for ``cuda_graph`` rows, whose step memory stays resident in the
graph's pool).  Every row stays resident while the rounds interleave, so
graphed rows hold one step's activations each: at ViT-B batch 256 name a
few rows (``--methods``), not all of them.

``--tasks segmentor``: the whole segmentor's training step (data
preprocessor, backbone, neck, both heads and their losses, backward,
optimizer update: ``model.train_step`` with a bf16 AmpOptimWrapper) of
configs/vpt-deep_vit-b_ade20k.py (512x512, 150 classes, synthetic batches)
against stock mmseg's frozen-backbone ViT-B UperNet (mmseg's
VisionTransformer and EncoderDecoder with the same settings), at each
``--segmentor-batch``.  The first steps compile the heads of the
``fast_head`` rows (a minute or two per batch size).
"""
import argparse
import logging
import os.path as osp
import time

import torch

import mmship  # noqa: F401
from mmship.models import PromptedSegViT, PromptedViT

ViT_B = dict(embed_dims=768, num_layers=12, num_heads=12, mlp_ratio=4)
TINY = dict(embed_dims=64, num_layers=4, num_heads=2, mlp_ratio=2)
FROZEN = 'frozen (no method)'


def methods(dims) -> dict:
    """Row name -> the backbone's ``prompt`` config."""
    num_layers = dims['num_layers']
    step = max(1, num_layers // 6)
    starts = list(range(0, num_layers, step))[:6]
    protos = torch.randn(200, dims['embed_dims'])
    return {
        FROZEN: None,
        'VPT-deep 10': dict(type='Prompter', placements=[
            dict(kind='deep', num_tokens=10)]),
        'VPT-deep 50': dict(type='Prompter', placements=[
            dict(kind='deep', num_tokens=50)]),
        'SHIP K=10 (6 groups, SSP 10, AP 10, DA, PML)': dict(
            type='SHIPPrompter', starts=starts, num_tokens=10,
            prototypes=protos),
        'SHIP K=50': dict(type='SHIPPrompter', starts=starts, num_tokens=50,
                          prototypes=protos),
        'DA-VPT (10, 10 proxies)': dict(type='DAVPTPrompter', num_tokens=10,
                                        num_classes=10),
        'DA-VPT+ (paper preset, b_V)': dict(
            type='DAVPTPrompter', num_tokens=10, num_classes=10,
            plus='paper'),
        'LoRA r=8 (q, v)': dict(type='LoRA', rank=8),
    }


#: row mode -> backbone switches
MODES = {
    'eager': dict(),
    'compiled': dict(compile_blocks=True),
    'graphed': dict(cuda_graph=True),
    'compiled+graphed': dict(compile_blocks=True, cuda_graph=True),
}


def build(task, dims, prompt, img, mode):
    switches = MODES[mode]
    if task == 'seg':
        return PromptedSegViT(img_size=img, patch_size=16, out_indices=(
            dims['num_layers'] // 4 - 1, dims['num_layers'] // 2 - 1,
            3 * dims['num_layers'] // 4 - 1, dims['num_layers'] - 1),
            prompt=prompt, **switches, **dims)
    arch = dict(embed_dims=dims['embed_dims'], num_layers=dims['num_layers'],
                num_heads=dims['num_heads'],
                feedforward_channels=dims['embed_dims'] * dims['mlp_ratio'])
    return PromptedViT(arch=arch, img_size=img, patch_size=16,
                       out_type='cls_token', prompt=prompt, **switches)


def build_timm(dims, img):
    """The reference: timm's ViT with the same widths, frozen."""
    from timm.models.vision_transformer import VisionTransformer
    model = VisionTransformer(
        img_size=img, patch_size=16, embed_dim=dims['embed_dims'],
        depth=dims['num_layers'], num_heads=dims['num_heads'],
        mlp_ratio=dims['mlp_ratio'], num_classes=0)
    model.requires_grad_(False)
    return model


def sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def step_fns(model, batch, img, device, targets):
    """(train step, inference) closures for one model."""
    x = torch.randn(batch, 3, img, img, device=device, requires_grad=True)
    dtype = torch.bfloat16 if device == 'cuda' else torch.float32

    def outputs(m):
        out = m(x) if targets is None else m.forward_with_losses(x, targets)
        feats, losses = (out, {}) if targets is None else out
        feats = feats if isinstance(feats, (tuple, list)) else [feats]
        return feats, losses

    # Modes switch only between timed loops: mmship's train() walks the
    # module tree to keep frozen parts in eval mode, which a real run does
    # once per epoch, not per step.
    def train_step():
        if not model.training:
            model.train()
        with torch.autocast(device, dtype=dtype, enabled=device == 'cuda'):
            feats, losses = outputs(model)
            loss = sum(o.float().mean() for o in feats) + \
                sum(losses.values(), torch.zeros((), device=device))
        loss.backward()
        x.grad = None
        model.zero_grad(set_to_none=True)

    @torch.no_grad()
    def infer():
        if model.training:
            model.eval()
        with torch.autocast(device, dtype=dtype, enabled=device == 'cuda'):
            model(x)

    return train_step, infer


def _not_timed():
    """Stands in for the inference of ``--no-inference`` (times as 0)."""


def step_memory(fn, device) -> float:
    """Peak memory one call of ``fn`` adds on top of what is resident (every
    model of the table stays resident), in GiB."""
    if device != 'cuda':
        return float('nan')
    sync(device)
    resident = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    sync(device)
    return (torch.cuda.max_memory_allocated() - resident) / 2**30


def time_once(fn, iters, device):
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - start) / iters


def fake_targets(task, batch, img, device, num_classes=10):
    labels = torch.arange(batch, device=device) % num_classes
    if task == 'cls':
        return dict(labels=labels, num_classes=num_classes)
    seg = (torch.arange(img, device=device)[None, :, None] * num_classes //
           img).expand(batch, img, img).contiguous()
    return dict(seg_maps=seg, num_classes=num_classes, ignore_index=255,
                class_sets=torch.ones(batch, num_classes, dtype=torch.bool,
                                      device=device))


def measure(runs, args):
    """Rounds interleave the rows so that no row is favoured by clocks,
    caches or allocator state; each keeps its best round."""
    for _ in range(args.rounds):
        for run in runs.values():
            run['t_train'] = min(run['t_train'], time_once(
                run['train'], args.iters, args.device))
            run['t_infer'] = min(run['t_infer'], time_once(
                run['infer'], args.iters, args.device))


def print_table(runs, reference):
    """``reference``: the key of the row every ratio's first column is to."""
    ref, label = runs[reference], reference[0]
    print(f'| method | blocks | train step (ms) | x {label} | '
          f'x {FROZEN} (same blocks) | inference (ms) | x {label} | '
          f'x {FROZEN} (same blocks) | step memory (GiB) | x {FROZEN} |')
    print('| --- ' * 10 + '|')
    for (name, mode), run in runs.items():
        if mode == 'timm':
            base = run
        else:
            base = runs[(FROZEN, mode)]
        infer = '- | - | -' if run['infer'] is _not_timed else (
            f'{run["t_infer"] * 1e3:.1f} | '
            f'{run["t_infer"] / ref["t_infer"]:.3f} | '
            f'{run["t_infer"] / base["t_infer"]:.3f}')
        mem = '- | -' if run['mem'] is None else \
            f'{run["mem"]:.2f} | {run["mem"] / base["mem"]:.3f}'
        print(f'| {name} | {mode} | {run["t_train"] * 1e3:.1f} | '
              f'{run["t_train"] / ref["t_train"]:.3f} | '
              f'{run["t_train"] / base["t_train"]:.3f} | {infer} | '
              f'{mem} |', flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cuda' if torch.cuda.is_available()
                   else 'cpu')
    p.add_argument('--tiny', action='store_true', help='tiny ViT (smoke)')
    p.add_argument('--iters', type=int, default=20)
    p.add_argument('--tasks', nargs='+', default=['cls'],
                   choices=['cls', 'seg', 'segmentor'],
                   help='cls: 224 px ViT; seg: the backbone at 512 px; '
                   'segmentor: whole UperNet segmentors')
    p.add_argument('--seg-batch', type=int, default=8)
    p.add_argument('--cls-batch', type=int, nargs='+', default=[64, 256])
    p.add_argument('--segmentor-batch', type=int, nargs='+', default=[8, 32])
    p.add_argument('--segmentor-rows', nargs='+',
                   help='whole-segmentor rows to run besides stock mmseg and '
                   'mmship without prompts (default all)')
    p.add_argument('--compile-backend', default='inductor',
                   help="torch.compile backend of the segmentors' fast_head "
                   "(aot_eager: the CPU smoke test, no kernel build)")
    p.add_argument('--compile', action='store_true',
                   help='also every row with compile_blocks=True')
    p.add_argument('--cuda-graph', action='store_true',
                   help='also every row with cuda_graph=True (and with '
                   '--compile, with both)')
    p.add_argument('--no-eager', action='store_true',
                   help='without the eager rows (e.g. to fill inductor\'s '
                   'cache from parallel processes)')
    p.add_argument('--methods', nargs='+',
                   help='row names to run (default all)')
    p.add_argument('--no-inference', action='store_true',
                   help='time training steps only (halves what --compile '
                   'compiles)')
    p.add_argument('--warmup', type=int, default=10)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--profile', nargs='*', default=[],
                   help='row names to profile after timing (segmentor '
                   'rows: by kernel class, against their prompt-free row)')
    args = p.parse_args()
    dims = TINY if args.tiny else ViT_B
    settings = [('seg', args.seg_batch, 512)] + \
        [('cls', b, 224) for b in args.cls_batch]
    if args.tiny:
        settings = [('seg', 2, 64), ('cls', 4, 64)]
    device_name = torch.cuda.get_device_name() \
        if args.device == 'cuda' else 'cpu'
    print(f'device: {device_name}, torch {torch.__version__}, dims {dims}')
    if args.no_eager and not (args.compile or args.cuda_graph):
        p.error('--no-eager leaves no rows without --compile or --cuda-graph')
    if args.cuda_graph and args.device != 'cuda':
        p.error('--cuda-graph needs --device cuda')
    modes = [m for m in MODES
             if (m != 'eager' or not args.no_eager)
             and (args.compile or 'compiled' not in m)
             and (args.cuda_graph or 'graphed' not in m)]
    rows = methods(dims)
    if args.methods:
        unknown = sorted(set(args.methods) - set(rows))
        if unknown:
            p.error(f'unknown --methods {unknown}; rows: {sorted(rows)}')
        rows = {n: c for n, c in rows.items()
                if n in args.methods or n == FROZEN}
    for task, batch, img in settings:
        if task not in args.tasks:
            continue
        print(f'\n## {task}: batch {batch}, {img}x{img}, '
              f'{(img // 16) ** 2 + 1} instance tokens')
        runs = {}
        reference = None
        if task == 'cls':
            reference = 'timm ViT, frozen'
            runs[(reference, 'timm')] = build_timm(dims, img)
        for mode in modes:
            for name, prompt in rows.items():
                runs[(name, mode)] = build(task, dims, prompt, img, mode)
        for key, model in list(runs.items()):
            model = model.to(args.device)
            method = getattr(model, 'prompter', None)
            targets = fake_targets(task, batch, img, args.device) \
                if method is not None and method.needs_targets else None
            train, infer = step_fns(model, batch, img, args.device, targets)
            if args.no_inference:
                infer = _not_timed
            for _ in range(args.warmup):
                train()
                infer()
            # a graphed row's step memory stays resident in its pool
            runs[key] = dict(train=train, infer=infer, model=model,
                             mem=None if 'graphed' in key[1] else
                             step_memory(train, args.device),
                             t_train=float('inf'), t_infer=float('inf'))
        measure(runs, args)
        print_table(runs, (reference, 'timm') if reference else
                    (FROZEN, 'eager'))
        if args.profile:
            profile(runs, args.profile, args.device)
        runs.clear()
        if args.device == 'cuda':
            torch.cuda.empty_cache()
    if 'segmentor' in args.tasks:
        segmentor_tables(args)


def profile(runs, names, device):
    """The kernel tables of 5 training steps and of 5 inferences of each
    row."""
    from torch.profiler import ProfilerActivity, profile as torch_profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                     if device == 'cuda' else [])
    key = 'self_cuda_time_total' if device == 'cuda' \
        else 'self_cpu_time_total'
    for name in names:
        mode = next(m for m in MODES if (name, m) in runs)
        for task in ('train', 'infer'):
            run = runs[(name, mode)][task]
            if run is _not_timed:   # --no-inference
                continue
            with torch_profile(activities=acts) as prof:
                for _ in range(5):
                    run()
                sync(device)
            print(f'\n### profile ({task}, 5 calls, {mode}): {name}')
            print(prof.key_averages().table(sort_by=key, row_limit=40,
                                            max_name_column_width=60))


# -- whole segmentors -----------------------------------------------------
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
VPT_ADE20K = osp.join(ROOT, 'configs', 'vpt-deep_vit-b_ade20k.py')
SHIP_ADE20K = osp.join(ROOT, 'configs', 'ship_vit-b_ade20k.py')
DEMO = osp.join(ROOT, 'configs', 'demo.py')  # the same structure, tiny
STOCK = 'mmseg EncoderDecoder + VisionTransformer, frozen'
NO_PROMPTS = 'mmship, no prompts'
#: the prompt-free rows that also back-propagate to the image: the
#: backbone backward every prompt at block 0 needs, without prompts
BACKWARD = ', backward to the input'
#: row-name suffix -> the backbone switches (``MODES``) of those rows
BACKBONE_SWITCHES = {
    '': MODES['eager'],
    ', cuda_graph': MODES['graphed'],
    ', compile_blocks + cuda_graph': MODES['compiled+graphed'],
}


def segmentor_rows(num_layers: int) -> dict:
    """name -> model changes of the whole-segmentor rows.  Each switch set
    of ``BACKBONE_SWITCHES`` has its prompt-free row, the baseline of its
    prompted rows (``baseline``), and that row with a backward to the
    image (``floor``): prompts over the floor are the cost of their tokens,
    the floor over the baseline that of the backward they need."""
    from mmship.engine.launch import load_config
    ship = load_config(SHIP_ADE20K).model.backbone.prompt
    # 6 groups; 200 random prototypes stand in for ship_prototypes.py's
    ship.update(starts=list(range(0, num_layers, max(1, num_layers // 6)))
                [:6], prototypes=200, pml_block=-1)
    rows = {STOCK: dict(stock=True),
            NO_PROMPTS + ', fast_head=False': dict(
                prompt=None, fast_head=False, baseline=NO_PROMPTS)}
    for suffix, switches in BACKBONE_SWITCHES.items():
        baseline, floor = NO_PROMPTS + suffix, NO_PROMPTS + BACKWARD + suffix
        rows[baseline] = dict(prompt=None, fast_head=True, **switches)
        rows[floor] = dict(prompt=None, fast_head=True, input_grad=True,
                           baseline=baseline, **switches)
        for name, prompt in (('VPT-deep 10', {}),
                             ('SHIP (6 groups, SIP 50, SSP 10, AP 10, PML)',
                              dict(prompt=ship))):
            rows[name + suffix] = dict(fast_head=True, baseline=baseline,
                                       floor=floor, **prompt, **switches)
    return rows


def build_segmentor(config: str, row: dict, device: str):
    """(model, optim wrapper, cfg) of one row: the config's segmentor with
    the row's prompt and fast_head, 150 classes, no weights loaded; or, for
    the stock row, mmseg's own segmentor and ViT with the same settings and
    the backbone frozen.  SyncBN becomes BN, as mmengine's runner does on
    one GPU; bf16 AMP on GPU."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmship.engine.launch import build_model, load_config
    cfg = load_config(config)
    model_cfg = cfg.model
    model_cfg.backbone.init_cfg = None
    model_cfg.decode_head.num_classes = 150
    model_cfg.auxiliary_head.num_classes = 150
    if row.get('stock'):
        model_cfg.type = 'EncoderDecoder'
        model_cfg.backbone.type = 'VisionTransformer'
        for key in ('prompt', 'freeze_backbone'):
            model_cfg.backbone.pop(key)
        model_cfg.pop('fast_head', None)
    else:
        model_cfg.fast_head = row['fast_head']
        model_cfg.backbone.cuda_graph = row.get('cuda_graph', False)
        model_cfg.backbone.compile_blocks = row.get('compile_blocks', False)
        if 'prompt' in row:
            model_cfg.backbone.prompt = row['prompt']
    model = revert_sync_batchnorm(build_model(cfg)).to(device)
    if row.get('stock'):
        model.backbone.requires_grad_(False)
    if row.get('input_grad'):
        loss = model.loss   # the preprocessed batch: a leaf without grad
        model.loss = lambda inputs, data_samples: loss(
            inputs.requires_grad_(), data_samples)
    protos = getattr(getattr(model.backbone, 'prompter', None),
                     'prototypes', None)
    if protos is not None:
        protos.normal_()
    optim_cfg = cfg.optim_wrapper.copy()
    if device == 'cuda':
        optim_cfg.update(type='AmpOptimWrapper', dtype='bfloat16')
    return model, build_optim_wrapper(model, optim_cfg), cfg


def segmentor_tables(args):
    """One table per batch size: every row's whole training step, rounds
    interleaved across rows, each row's best round."""
    from mmengine.logging import MMLogger
    from step_time import synthetic_batch
    # no per-parameter optimizer notes of frozen weights between the tables
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    config = DEMO if args.tiny else VPT_ADE20K
    rows = segmentor_rows(6 if args.tiny else 12)
    if args.device != 'cuda':   # capture needs CUDA; on the CPU they are eager
        rows = {n: r for n, r in rows.items() if not r.get('cuda_graph')}
    if args.segmentor_rows:
        unknown = sorted(set(args.segmentor_rows) - set(rows))
        if unknown:
            raise SystemExit(f'unknown --segmentor-rows {unknown}; rows: '
                             f'{sorted(rows)}')
        kept = {STOCK, NO_PROMPTS}
        for name in args.segmentor_rows:
            kept.update([name] + [rows[name][k] for k in ('baseline', 'floor')
                                  if k in rows[name]])
        rows = {n: r for n, r in rows.items() if n in kept}
    for row in rows.values():
        if row.get('fast_head'):
            row['fast_head'] = dict(backend=args.compile_backend)
    built = {}
    for name, row in rows.items():
        model, optim, cfg = build_segmentor(config, row, args.device)
        built[name] = (model.train(), optim, cfg)
    torch.backends.cudnn.benchmark = cfg.env_cfg.get('cudnn_benchmark',
                                                     False)
    for batch in ([2] if args.tiny else args.segmentor_batch):
        runs = {}
        for name, (model, optim, cfg) in built.items():
            data = synthetic_batch(cfg, model, batch)
            step = (lambda m=model, o=optim, d=data: m.train_step(d, o))
            for _ in range(args.warmup):
                step()
            runs[name] = dict(step=step, mem=step_memory(step, args.device),
                              t=float('inf'))
        for _ in range(args.rounds):
            for run in runs.values():
                run['t'] = min(run['t'], time_once(run['step'], args.iters,
                                                   args.device))
        size = cfg.get('crop_size') or cfg.model.backbone.img_size
        print(f'\n## segmentor training step: batch {batch}, '
              f'{size[0]}x{size[1]}, 150 classes, {osp.relpath(config, ROOT)}'
              f' (best of {args.rounds} rounds of {args.iters} steps)')
        print('| model | train step (ms) | x mmseg | x mmship no prompts '
              '(same switches) | x no prompts, backward to the input | '
              'step memory (GiB) |')
        print('| --- ' * 6 + '|')
        stock = runs[STOCK]['t']
        for name, run in runs.items():
            ours = runs[rows[name].get('baseline', name)]['t']
            floor = rows[name].get('floor')
            over_floor = f'{run["t"] / runs[floor]["t"]:.3f}' \
                if floor else '-'
            mem = '-' if rows[name].get('cuda_graph') else f'{run["mem"]:.2f}'
            print(f'| {name} | {run["t"] * 1e3:.1f} | {run["t"] / stock:.3f} '
                  f'| {run["t"] / ours:.3f} | {over_floor} | {mem} |',
                  flush=True)
        for name in args.profile:
            if name in runs:
                profile_against_baseline(
                    name, rows[name].get('baseline', name), runs,
                    args.device)
        runs.clear()
        if args.device == 'cuda':
            torch.cuda.empty_cache()


#: kernel classes of ``profile_against_baseline``, first match wins: CUDA
#: kernel names on the GPU, aten op names on the CPU.
KERNEL_CLASSES = (
    ('attention backward', r'bprop|bwd|(attention|flash).*backward|'
                           r'compute_dot_do_o|convert_dq'),
    ('attention forward', r'flash|fmha|sdpa|attention'),
    ('GEMM', r'gemm|nvjet|xmma|cutlass|cublas|aten::(mm|addmm|bmm|linear)$'),
    ('layer norm', r'layer_norm'),
    ('copy, cat, transpose', r'copy|Copy|Cat|aten::(cat|clone|contiguous)$'),
    ('fused (inductor)', r'^triton_'),
    ('elementwise', r'elementwise|gelu|Gelu|aten::(add|mul|gelu)'),
    ('other', r'.'),
)


def kernel_classes(step, device, calls: int = 5):
    """Self time (ms a step) of ``step``'s kernels (CUDA) or aten ops
    (CPU), per ``KERNEL_CLASSES`` class and per name."""
    import re
    from collections import Counter
    from torch.profiler import ProfilerActivity, profile as torch_profile
    cuda = device == 'cuda'
    with torch_profile(activities=[ProfilerActivity.CUDA if cuda
                                   else ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            step()
        sync(device)
    by_class, by_name = Counter(), Counter()
    for event in prof.key_averages():
        us = event.self_device_time_total if cuda else \
            event.self_cpu_time_total
        if us <= 0 or (cuda and event.device_type.name != 'CUDA'):
            continue
        cls = next(c for c, pattern in KERNEL_CLASSES
                   if re.search(pattern, event.key))
        by_class[cls] += us / calls / 1e3
        by_name[event.key[:80]] += us / calls / 1e3
    return by_class, by_name


def profile_against_baseline(name, baseline, runs, device):
    """Where a row's step time goes, by kernel class, against its
    prompt-free row with the same switches: what the prompts add.  A row
    that is its own baseline (stock mmseg, no prompts) is profiled alone."""
    names = list(dict.fromkeys([baseline, name]))
    profiles = [kernel_classes(runs[n]['step'], device) for n in names]
    paired = len(names) == 2
    what = 'CUDA kernels' if device == 'cuda' else 'CPU ops'
    print(f'\n### profile: self time of the {what}, ms a step (5 steps)')
    header = names + ['difference'] * paired
    print('| class | ' + ' | '.join(header) + ' |')
    print('| --- ' * (len(header) + 1) + '|')
    for cls, _ in KERNEL_CLASSES + (('all', None), ):
        values = [sum(by_class.values()) if cls == 'all' else by_class[cls]
                  for by_class, _ in profiles]
        cells = [f'{v:.1f}' for v in values] + \
            [f'{values[1] - values[0]:+.1f}'] * paired
        print(f'| {cls} | ' + ' | '.join(cells) + ' |')
    if paired:
        (_, base), (_, row) = profiles
        extra = sorted(((t - base.get(k, 0.0), k) for k, t in row.items()),
                       reverse=True)[:15]
        print(f'\nLargest additions of {name!r}:')
        for ms, key in extra:
            print(f'  {ms:+7.2f} ms  {key}')


if __name__ == '__main__':
    main()
