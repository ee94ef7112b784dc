"""The instance rows of decoupled attention, alone: I2I, and I2I with the
instance-to-prompt branch as SDPA + lerp (the reference) and as mmship's
kernel (``mmship/core/prompt_branch.py``), at ViT widths and a range of
prompt keys.  Forward, forward + backward and the memory kept for the
backward, ratios within one run.  CUDA only (on CPU mmship runs SDPA).

    python tools/benchmark/attention.py                        # ViT-B, bf16
    python tools/benchmark/attention.py --batch 64 --prompts 10 30
"""
import argparse
import sys

import torch
import torch.nn.functional as F

from mmship.core.prompt_branch import MAX_PROMPTS, prompt_branch

WEIGHT = 0.1   # SHIP's lambda_d


def timed(fn, iters: int, rounds: int = 3) -> float:
    """Best mean time of ``fn`` over ``rounds`` (ms), CUDA events."""
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(True), torch.cuda.Event(True)
    best = float('inf')
    for _ in range(rounds):
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / iters)
    return best


VARIANTS = {
    'I2I only': None,
    'I2I + SDPA + lerp': lambda base, q, k_p, v_p: torch.lerp(
        base, F.scaled_dot_product_attention(q, k_p, v_p), WEIGHT),
    'I2I + prompt_branch': lambda base, q, k_p, v_p: prompt_branch(
        base, q, k_p, v_p, WEIGHT),
}


def measure(variant, batch, heads, rows, width, prompts, dtype, iters):
    # q, k, v as the blocks see them: views of one fused qkv output
    qkv = torch.randn(batch, rows, 3, heads, width, device='cuda',
                      dtype=dtype, requires_grad=True)
    pkv = torch.randn(batch, prompts, 3, heads, width, device='cuda',
                      dtype=dtype, requires_grad=True)

    def forward():
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        _, k_p, v_p = pkv.permute(2, 0, 3, 1, 4).unbind(0)
        base = F.scaled_dot_product_attention(q, k, v)
        return base if variant is None else variant(base, q, k_p, v_p)

    grad = torch.randn_like(forward())
    torch.cuda.synchronize()
    resident = torch.cuda.memory_allocated()
    out = forward()
    kept = (torch.cuda.memory_allocated() - resident) / 2**20
    del out

    def inference():
        with torch.no_grad():
            forward()

    return (timed(inference, iters), timed(lambda: forward().backward(grad),
                                           iters), kept)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--batch', type=int, nargs='+', default=[256, 64])
    p.add_argument('--prompts', type=int, nargs='+',
                   default=[10, 30, 60, MAX_PROMPTS])
    p.add_argument('--heads', type=int, default=12)
    p.add_argument('--rows', type=int, default=197,
                   help='instance tokens (CLS + patches)')
    p.add_argument('--width', type=int, default=64, help='head width')
    p.add_argument('--dtype', default='bfloat16',
                   choices=['bfloat16', 'float16', 'float32'])
    p.add_argument('--iters', type=int, default=20)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit('attention.py times the CUDA kernel of the prompt branch and '
                 'needs a GPU; on CPU mmship runs SDPA (see speed.py).')
    too_many = [n for n in args.prompts if not 0 < n <= MAX_PROMPTS]
    if too_many:
        sys.exit(f'--prompts {too_many}: the kernel takes 1 to {MAX_PROMPTS} '
                 f'prompt keys (more run through SDPA).')
    dtype = getattr(torch, args.dtype)
    print(f'device: {torch.cuda.get_device_name()}, {args.dtype}, '
          f'{args.heads} heads of width {args.width}, {args.rows} rows')
    for batch in args.batch:
        print(f'\n## batch {batch}\n')
        print('| prompt keys | variant | forward (ms) | forward + backward '
              '(ms) | x I2I only | kept for backward (MiB) |')
        print('| --- ' * 6 + '|')
        for prompts in args.prompts:
            plain = None
            for name, variant in VARIANTS.items():
                fwd, step, kept = measure(variant, batch, args.heads,
                                          args.rows, args.width, prompts,
                                          dtype, args.iters)
                plain = plain or step
                print(f'| {prompts} | {name} | {fwd:.3f} | {step:.3f} | '
                      f'{step / plain:.3f} | {kept:.0f} |', flush=True)


if __name__ == '__main__':
    main()
