"""The prompt-branch kernel (``mmship/core/prompt_branch.py``) equals
``lerp(base, SDPA(q, k_p, v_p), w)`` in its output and in the gradients of
every input.  On CPU the kernel runs in Triton's interpreter (in a
subprocess: the switch is read when the kernels are defined); on CUDA it
runs compiled, in bf16 too (the interpreter has no bf16)."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mmship.core import prompt_branch as pb

triton = pytest.importorskip('triton')

#: (batch, heads, rows, head_dim, prompt keys): rows and prompt keys that
#: fill no block evenly, one prompt key, and the most prompt keys
SHAPES = [(2, 3, 70, 32, 5), (1, 2, 50, 16, 1), (1, 1, 70, 64, pb.MAX_PROMPTS)]


def compare(device, dtype, shapes=SHAPES, weight=0.3):
    """Largest error of the kernel's output and gradients against
    ``lerp(base, SDPA(q, k_p, v_p), weight)`` in fp32, relative to the
    reference's largest value (or 1: with one prompt key, the gradients of
    q and k_p are zero), over ``shapes``."""
    worst = 0.0
    for B, H, N, d, P in shapes:
        gen = torch.Generator().manual_seed(N + P)
        # q and the prompt keys are views of fused qkv outputs, base has
        # SDPA's output layout, as in the blocks
        leaves = [torch.randn(B, N, 3, H, d, generator=gen),
                  torch.randn(B, P, 3, H, d, generator=gen),
                  torch.randn(B, N, H, d, generator=gen)]
        grad = torch.randn(B, H, N, d, generator=gen).to(device)

        def run(branch, dtype):
            ins = [t.to(device, dtype).requires_grad_() for t in leaves]
            q = ins[0].permute(2, 0, 3, 1, 4)[0]
            _, k_p, v_p = ins[1].permute(2, 0, 3, 1, 4).unbind(0)
            out = branch(ins[2].transpose(1, 2), q, k_p, v_p)
            grads = torch.autograd.grad(out, ins, grad.to(dtype))
            return [t.float() for t in (out, ) + grads]

        ref = run(lambda b, q, k, v: torch.lerp(
            b, F.scaled_dot_product_attention(q, k, v), weight),
            torch.float32)
        new = run(lambda b, q, k, v: pb._PromptBranch.apply(b, q, k, v,
                                                            weight), dtype)
        for a, b in zip(new, ref):
            worst = max(worst, ((a - b).abs().max() /
                                b.abs().max().clamp(min=1)).item())
    return worst


def test_interpreted_kernel_equals_sdpa():
    code = ('import torch, sys; sys.path.insert(0, "tests/core"); '
            'from test_prompt_branch import compare; '
            'print(compare("cpu", torch.float32), '
            'compare("cpu", torch.float16))')
    env = dict(os.environ, TRITON_INTERPRET='1')
    done = subprocess.run([sys.executable, '-c', code], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    fp32, fp16 = map(float, done.stdout.split()[-2:])
    assert fp32 < 1e-5 and fp16 < 5e-3, (fp32, fp16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-5),
                                       (torch.float16, 5e-3),
                                       (torch.bfloat16, 2e-2)])
def test_cuda_kernel_equals_sdpa(dtype, tol):
    shapes = SHAPES + [(4, 12, 197, 64, 30)]
    assert compare('cuda', dtype, shapes) < tol


def test_usable_only_where_the_kernel_applies():
    q = torch.zeros(1, 2, 5, 64)
    k_p = torch.zeros(1, 2, 3, 64)
    assert not pb.usable(q, k_p, 0.0)                     # CPU tensors
    if torch.cuda.is_available():
        q, k_p = q.cuda(), k_p.cuda()
        assert pb.usable(q, k_p, 0.0)
        assert not pb.usable(q, k_p, 0.1)                 # dropout
        assert not pb.usable(q[..., :48], k_p[..., :48], 0.0)   # width 48
        many = torch.zeros(1, 2, pb.MAX_PROMPTS + 1, 64, device='cuda')
        assert not pb.usable(q, many, 0.0)
