"""Decoupled attention's prompt attentions, alone, as SDPA (the reference)
and as mmship's kernels (``mmship/core/attention_kernels.py``), at ViT
widths and a range of prompt keys:

* instance rows: I2I, and I2I with the instance-to-prompt branch and its
  lerp (``prompt_branch``);
* prompt rows (P2IP): the kept prompts' queries over the instance and the
  prompt keys, concatenated for SDPA, not for ``prompt_rows``.

Forward, forward + backward and the memory kept for the backward, ratios
within one run.  CUDA only (on CPU mmship runs SDPA).

    python tools/benchmark/attention.py                        # ViT-B, bf16
    python tools/benchmark/attention.py --batch 64 --prompts 10 30
"""
import argparse
import sys

import torch
import torch.nn.functional as F

from mmship.core.attention_kernels import (MAX_PROMPTS, prompt_branch,
                                           prompt_rows)

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


def _i2i(q, k, v, q_p, k_p, v_p):
    return F.scaled_dot_product_attention(q, k, v)


BRANCH = 'I2I + prompt_branch'
#: table -> variant -> the attention, of the instance and the prompts'
#: q, k, v (B, heads, rows, head_dim)
TABLES = {
    'instance rows': {
        'I2I only': _i2i,
        'I2I + SDPA + lerp': lambda q, k, v, q_p, k_p, v_p: torch.lerp(
            _i2i(q, k, v, q_p, k_p, v_p),
            F.scaled_dot_product_attention(q, k_p, v_p), WEIGHT),
        BRANCH: lambda q, k, v, q_p, k_p, v_p: prompt_branch(
            _i2i(q, k, v, q_p, k_p, v_p), q, k_p, v_p, WEIGHT),
    },
    'prompt rows (P2IP)': {
        'concatenate + SDPA': lambda q, k, v, q_p, k_p, v_p:
            F.scaled_dot_product_attention(q_p, torch.cat([k, k_p], 2),
                                           torch.cat([v, v_p], 2)),
        'prompt_rows': lambda q, k, v, q_p, k_p, v_p: prompt_rows(
            q_p, k, v, k_p, v_p),
    },
}


def measure(variant, batch, heads, rows, width, prompts, prompt_rows_,
            dtype, iters):
    # q, k, v as the blocks see them: views of one fused qkv output
    qkv = torch.randn(batch, rows, 3, heads, width, device='cuda',
                      dtype=dtype, requires_grad=True)
    pkv = torch.randn(batch, prompts, 3, heads, width, device='cuda',
                      dtype=dtype, requires_grad=True)

    def forward():
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q_p, k_p, v_p = pkv.permute(2, 0, 3, 1, 4).unbind(0)
        return variant(q, k, v, q_p[:, :, :prompt_rows_], k_p, v_p)

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
                   default=[10, 30, 60, MAX_PROMPTS, 150])
    p.add_argument('--prompt-rows', type=int, default=20,
                   help='kept prompts (P2IP queries; at most --prompts)')
    p.add_argument('--heads', type=int, default=12)
    p.add_argument('--rows', type=int, default=197,
                   help='instance tokens (CLS + patches)')
    p.add_argument('--width', type=int, default=64, help='head width')
    p.add_argument('--dtype', default='bfloat16',
                   choices=['bfloat16', 'float16', 'float32'])
    p.add_argument('--iters', type=int, default=20)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit('attention.py times the CUDA kernels of the prompt '
                 'attentions and needs a GPU; on CPU mmship runs SDPA (see '
                 'speed.py).')
    if min(args.prompts) < 1 or args.prompt_rows < 1:
        sys.exit('--prompts and --prompt-rows must be at least 1.')
    dtype = getattr(torch, args.dtype)
    print(f'device: {torch.cuda.get_device_name()}, {args.dtype}, '
          f'{args.heads} heads of width {args.width}, {args.rows} instance '
          f'rows, {args.prompt_rows} kept prompts')
    for batch in args.batch:
        for table, variants in TABLES.items():
            print(f'\n## {table}, batch {batch}\n')
            print('| prompt keys | variant | forward (ms) | forward + '
                  'backward (ms) | x first row | kept for backward (MiB) |')
            print('| --- ' * 6 + '|')
            for prompts in args.prompts:
                first = None
                for name, variant in variants.items():
                    if name == BRANCH and prompts > MAX_PROMPTS:
                        print(f'| {prompts} | {name} | - | - | - | - '
                              f'(above MAX_PROMPTS: SDPA) |')
                        continue
                    fwd, step, kept = measure(
                        variant, batch, args.heads, args.rows, args.width,
                        prompts, min(args.prompt_rows, prompts), dtype,
                        args.iters)
                    first = first or step
                    print(f'| {prompts} | {name} | {fwd:.3f} | {step:.3f} | '
                          f'{step / first:.3f} | {kept:.0f} |', flush=True)


if __name__ == '__main__':
    main()
