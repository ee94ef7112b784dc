"""Training-step and inference time of prompted backbones, as ratios to the
same frozen backbone without prompts, measured in one process.

    python tools/benchmark/speed.py                # ViT-B/16, GPU, bf16
    python tools/benchmark/speed.py --device cpu --tiny --iters 3   # smoke

Training step = forward + backward to the input image (the frozen baseline
also back-propagates through every block, as prompts at block 0 need), under
bf16 autocast.  Inference = forward in eval mode under no_grad.
"""
import argparse
import time

import torch

import mmship  # noqa: F401
from mmship.models import PromptedSegViT, PromptedViT

ViT_B = dict(embed_dims=768, num_layers=12, num_heads=12, mlp_ratio=4)
TINY = dict(embed_dims=64, num_layers=4, num_heads=2, mlp_ratio=2)


def methods(num_layers, dims):
    step = max(1, num_layers // 6)
    starts = list(range(0, num_layers, step))[:6]
    protos = torch.randn(200, dims['embed_dims'])
    return {
        'frozen (no prompts)': None,
        'VPT-shallow 50': dict(type='Prompter', placements=[
            dict(kind='shallow', num_tokens=50)]),
        'VPT-deep 50': dict(type='Prompter', placements=[
            dict(kind='deep', num_tokens=50)]),
        'VPT-deep 10': dict(type='Prompter', placements=[
            dict(kind='deep', num_tokens=10)]),
        'SHIP K=10 (6 groups, SSP10, AP10, DA, PML)': dict(
            type='SHIPPrompter', starts=starts, num_tokens=10,
            prototypes=protos),
        'SHIP K=50': dict(type='SHIPPrompter', starts=starts, num_tokens=50,
                          prototypes=protos),
        'DA-VPT (10, proxies 10)': dict(type='DAVPTPrompter', num_tokens=10,
                                        num_classes=10),
        'DA-VPT+ (k/v bias)': dict(type='DAVPTPrompter', num_tokens=10,
                                   num_classes=10, bias_tuning=['k', 'v']),
    }


def build(task, dims, prompt, img):
    if task == 'seg':
        return PromptedSegViT(img_size=img, patch_size=16, out_indices=(
            dims['num_layers'] // 4 - 1, dims['num_layers'] // 2 - 1,
            3 * dims['num_layers'] // 4 - 1, dims['num_layers'] - 1),
            prompt=prompt, **dims)
    arch = dict(embed_dims=dims['embed_dims'], num_layers=dims['num_layers'],
                num_heads=dims['num_heads'],
                feedforward_channels=dims['embed_dims'] * dims['mlp_ratio'])
    return PromptedViT(arch=arch, img_size=img, patch_size=16,
                       out_type='cls_token', prompt=prompt)


def sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def step_fns(model, batch, img, device, targets):
    """(train step, inference) closures for one model."""
    x = torch.randn(batch, 3, img, img, device=device, requires_grad=True)
    dtype = torch.bfloat16 if device == 'cuda' else torch.float32

    def train_step():
        model.train()
        with torch.autocast(device, dtype=dtype, enabled=device == 'cuda'):
            if targets is None:
                outs, losses = model(x), {}
            else:
                outs, losses = model.forward_with_losses(x, targets)
            loss = sum(o.float().mean() for o in outs) + \
                sum(losses.values(), torch.zeros((), device=device))
        loss.backward()
        x.grad = None
        model.zero_grad(set_to_none=True)

    @torch.no_grad()
    def infer():
        model.eval()
        with torch.autocast(device, dtype=dtype, enabled=device == 'cuda'):
            model(x)

    return train_step, infer


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


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cuda' if torch.cuda.is_available()
                   else 'cpu')
    p.add_argument('--tiny', action='store_true', help='tiny ViT (smoke)')
    p.add_argument('--iters', type=int, default=20)
    p.add_argument('--tasks', nargs='+', default=['seg', 'cls'])
    p.add_argument('--seg-batch', type=int, default=8)
    p.add_argument('--cls-batch', type=int, nargs='+', default=[64])
    p.add_argument('--warmup', type=int, default=10)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--profile', nargs='*', default=[],
                   help='method names to profile after timing')
    args = p.parse_args()
    dims = TINY if args.tiny else ViT_B
    settings = [('seg', args.seg_batch, 512)] + \
        [('cls', b, 224) for b in args.cls_batch]
    if args.tiny:
        settings = [('seg', 2, 64), ('cls', 4, 64)]
    print(f'device: {torch.cuda.get_device_name() if args.device == "cuda" else "cpu"}'
          f', torch {torch.__version__}, dims {dims}')
    for task, batch, img in settings:
        if task not in args.tasks:
            continue
        print(f'\n## {task}: batch {batch}, {img}x{img}, '
              f'{(img // 16) ** 2 + 1} instance tokens')
        runs = {}
        for name, prompt in methods(dims['num_layers'], dims).items():
            try:
                model = build(task, dims, prompt, img).to(args.device)
            except (KeyError, TypeError, ValueError) as exc:
                print(f'{name}: not available ({exc})')
                continue
            needs = getattr(model.prompter, 'needs_targets', False)
            targets = fake_targets(task, batch, img, args.device) \
                if needs else None
            train, infer = step_fns(model, batch, img, args.device, targets)
            for _ in range(args.warmup):
                train()
                infer()
            mem = step_memory(train, args.device)
            runs[name] = dict(train=train, infer=infer, mem=mem,
                              t_train=float('inf'), t_infer=float('inf'))
        # Rounds interleave the methods so that no method is favoured by
        # clocks, caches or allocator state; each keeps its best round.
        for _ in range(args.rounds):
            for run in runs.values():
                run['t_train'] = min(run['t_train'], time_once(
                    run['train'], args.iters, args.device))
                run['t_infer'] = min(run['t_infer'], time_once(
                    run['infer'], args.iters, args.device))
        base = runs['frozen (no prompts)']
        print('| method | train step (ms) | x frozen | inference (ms) | '
              'x frozen | train step memory (GiB) | x frozen |')
        print('| --- | --- | --- | --- | --- | --- | --- |')
        for name, run in runs.items():
            print(f'| {name} | {run["t_train"] * 1e3:.1f} | '
                  f'{run["t_train"] / base["t_train"]:.3f} | '
                  f'{run["t_infer"] * 1e3:.1f} | '
                  f'{run["t_infer"] / base["t_infer"]:.3f} | '
                  f'{run["mem"]:.2f} | {run["mem"] / base["mem"]:.3f} |',
                  flush=True)
        if args.profile:
            profile(runs, args.profile, args.device)
        runs.clear()
        if args.device == 'cuda':
            torch.cuda.empty_cache()


def profile(runs, names, device):
    from torch.profiler import ProfilerActivity, profile as torch_profile
    for name in names:
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                         if device == 'cuda' else [])
        for step in ('train', 'infer'):
            with torch_profile(activities=acts) as prof:
                for _ in range(5):
                    runs[name][step]()
                sync(device)
            key = 'cuda_time_total' if device == 'cuda' else 'cpu_time_total'
            print(f'\n### profile ({step}, 5 calls): {name}')
            print(prof.key_averages().table(sort_by=key, row_limit=30,
                                            max_name_column_width=40))


if __name__ == '__main__':
    main()
