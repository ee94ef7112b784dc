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


def methods(num_layers):
    last = num_layers - 1
    third = max(1, num_layers // 3)
    starts = [0, third, 2 * third]
    return {
        'frozen (no prompts)': None,
        'VPT-shallow 50': dict(type='Prompter', placements=[
            dict(kind='shallow', num_tokens=50)]),
        'VPT-deep 50': dict(type='Prompter', placements=[
            dict(kind='deep', num_tokens=50)]),
        'VPT-deep 10': dict(type='Prompter', placements=[
            dict(kind='deep', num_tokens=10)]),
        'SHIP (SIP50+SSP10+AP10, DA, PML)': dict(
            type='SHIPPrompter', starts=starts, sip_tokens=50),
        'DA-VPT (10, proxies 10)': dict(type='DAVPTPrompter', num_tokens=10),
        'DA-VPT+ (k/v bias)': dict(type='DAVPTPrompter', num_tokens=10,
                                   bias_tuning=['k', 'v']),
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


def timed(fn, iters, device):
    for _ in range(3):
        fn()
    if device == 'cuda':
        torch.cuda.synchronize()
    best = float('inf')
    for _ in range(3):  # best of three rounds
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        if device == 'cuda':
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / iters)
    return best


def measure(model, batch, img, device, iters, targets):
    model = model.to(device)
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

    t_train = timed(train_step, iters, device)
    t_infer = timed(infer, iters, device)
    mem = torch.cuda.max_memory_allocated() / 2**30 if device == 'cuda' \
        else float('nan')
    return t_train, t_infer, mem


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
    args = p.parse_args()
    dims = TINY if args.tiny else ViT_B
    settings = dict(seg=(8, 512), cls=(64, 224))
    if args.tiny:
        settings = dict(seg=(2, 64), cls=(4, 32))
    print(f'device: {torch.cuda.get_device_name() if args.device == "cuda" else "cpu"}'
          f', torch {torch.__version__}, dims {dims}')
    for task in args.tasks:
        batch, img = settings[task]
        print(f'\n## {task}: batch {batch}, {img}x{img}, '
              f'{(img // 16) ** 2 + 1} instance tokens')
        print('| method | train step (ms) | x frozen | inference (ms) | '
              'x frozen | peak mem (GiB) |')
        print('| --- | --- | --- | --- | --- | --- |')
        base = None
        for name, prompt in methods(dims['num_layers']).items():
            try:
                model = build(task, dims, prompt, img)
            except KeyError as exc:  # method not registered in this build
                print(f'| {name} | not available: {exc} | | | | |')
                continue
            if args.device == 'cuda':
                torch.cuda.reset_peak_memory_stats()
            needs = getattr(model.prompter, 'needs_targets', False)
            targets = fake_targets(task, batch, img, args.device) \
                if needs else None
            t_train, t_infer, mem = measure(model, batch, img, args.device,
                                            args.iters, targets)
            base = base or (t_train, t_infer)
            print(f'| {name} | {t_train * 1e3:.1f} | '
                  f'{t_train / base[0]:.3f} | {t_infer * 1e3:.1f} | '
                  f'{t_infer / base[1]:.3f} | {mem:.2f} |', flush=True)
            del model
            if args.device == 'cuda':
                torch.cuda.empty_cache()


if __name__ == '__main__':
    main()
