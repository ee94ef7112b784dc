"""The prompt kernels (``mmship/core/attention_kernels.py``) equal SDPA:
``prompt_branch`` equals ``lerp(base, SDPA(q, k_p, v_p), w)`` and
``prompt_rows`` equals ``SDPA(q_p, [k, k_p], [v, v_p])``, in their outputs
and in the gradients of every input.  On CPU the kernels run in Triton's
interpreter (in a subprocess: the switch is read when the kernels are
defined); on CUDA they run compiled, in bf16 too (the interpreter has no
bf16), and inside ``torch.compile``."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mmship.core import attention_kernels as ak

triton = pytest.importorskip('triton')

WEIGHT = 0.3
#: (batch, heads, instance rows, head_dim, prompt keys, kept prompt rows):
#: sizes that fill no block evenly, one prompt, the most prompts the
#: kernels take on chip, and more prompt keys than one block of rows
SHAPES = [(2, 3, 70, 32, 5, 3), (1, 2, 50, 16, 1, 1),
          (1, 1, 70, 64, ak.MAX_PROMPTS, ak.MAX_PROMPTS),
          (1, 2, 130, 64, 150, 60)]
VIT_B = (4, 12, 197, 64, 30, 20)


def _branch(base, q, k, v, k_p, v_p, q_p, kernel):
    if kernel:
        return ak.prompt_branch(base, q, k_p, v_p, WEIGHT)
    return torch.lerp(base, F.scaled_dot_product_attention(q, k_p, v_p),
                      WEIGHT)


def _rows(base, q, k, v, k_p, v_p, q_p, kernel):
    if kernel:
        return ak.prompt_rows(q_p, k, v, k_p, v_p)
    return F.scaled_dot_product_attention(
        q_p, torch.cat([k, k_p], 2), torch.cat([v, v_p], 2))


KERNELS = dict(branch=_branch, rows=_rows)


def compare(device, dtype, name, shapes=SHAPES):
    """Largest error of kernel ``name``'s output and gradients against
    SDPA in fp32, relative to the reference's largest value (or 1: with one
    prompt key, some gradients are zero), over ``shapes``."""
    worst = 0.0
    for B, H, N, d, P, R in shapes:
        if name == 'branch' and P > ak.MAX_PROMPTS:
            continue
        gen = torch.Generator().manual_seed(N + P)
        # q, k, v and the prompts' are views of fused qkv outputs, base has
        # SDPA's output layout, as in the blocks
        leaves = [torch.randn(B, N, 3, H, d, generator=gen),
                  torch.randn(B, P, 3, H, d, generator=gen),
                  torch.randn(B, N, H, d, generator=gen)]
        rows = R if name == 'rows' else N
        grad = torch.randn(B, H, rows, d, generator=gen).to(device)

        def run(kernel, dtype):
            ins = [t.to(device, dtype).requires_grad_() for t in leaves]
            q, k, v = ins[0].permute(2, 0, 3, 1, 4).unbind(0)
            q_p, k_p, v_p = ins[1].permute(2, 0, 3, 1, 4).unbind(0)
            out = KERNELS[name](ins[2].transpose(1, 2), q, k, v, k_p, v_p,
                                q_p.narrow(2, 0, R), kernel)
            grads = torch.autograd.grad(out, ins, grad.to(dtype),
                                        allow_unused=True)
            return [torch.zeros(1) if t is None else t.float().cpu()
                    for t in (out, ) + grads]

        ref, new = run(False, torch.float32), run(True, dtype)
        for a, b in zip(new, ref):
            worst = max(worst, ((a - b).abs().max() /
                                b.abs().max().clamp(min=1)).item())
    return worst


def test_interpreted_kernels_equal_sdpa():
    # one subprocess for both kernels: its imports take most of its time
    code = ('import torch, sys; sys.path.insert(0, "tests/core"); '
            'from test_attention_kernels import compare, KERNELS; '
            'print(*[compare("cpu", dtype, name) for name in sorted(KERNELS) '
            'for dtype in (torch.float32, torch.float16)])')
    env = dict(os.environ, TRITON_INTERPRET='1')
    done = subprocess.run([sys.executable, '-c', code], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    errors = list(map(float, done.stdout.split()[-4:]))
    # fp32 and fp16 of prompt_branch, then of prompt_rows
    assert max(errors[0::2]) < 1e-5 and max(errors[1::2]) < 5e-3, errors


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('name', sorted(KERNELS))
@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-5),
                                       (torch.float16, 5e-3),
                                       (torch.bfloat16, 2e-2)])
def test_cuda_kernel_equals_sdpa(name, dtype, tol):
    assert compare('cuda', dtype, name, SHAPES + [VIT_B]) < tol


def test_usable_only_where_the_kernel_applies():
    q = torch.zeros(1, 2, 5, 64)
    assert not ak.usable(q, 3, 0.0)                       # CPU tensors
    if torch.cuda.is_available():
        q = q.cuda()
        assert ak.usable(q, 3, 0.0)
        assert not ak.usable(q, 3, 0.1)                   # dropout
        assert not ak.usable(q[..., :48], 3, 0.0)         # width 48
        assert not ak.usable(q, ak.MAX_PROMPTS + 1, 0.0)
        assert not ak.usable(q.half()[..., ::2], 3, 0.0)  # strided width


def test_eager_blocks_launch_the_kernels_only_where_they_pay():
    """Eager blocks below ``GPU_BOUND_TOKENS`` instance tokens keep SDPA:
    there the kernels' host-side launch costs more than they save."""
    rows = 197
    big = ak.GPU_BOUND_TOKENS // rows + 1
    assert not ak.pays_off(torch.zeros(1, 1, 1, 64).expand(big, 12, rows, 64))
    if torch.cuda.is_available():
        q = torch.zeros(1, 1, 1, 64, device='cuda')
        assert ak.pays_off(q.expand(big, 12, rows, 64))
        assert not ak.pays_off(q.expand(big - 2, 12, rows, 64))
        with ak.step_capture():   # a captured step and its warm-up
            assert ak.pays_off(q.expand(1, 12, rows, 64))
        assert not ak.pays_off(q.expand(1, 12, rows, 64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('name', sorted(KERNELS))
def test_compiled_kernel_equals_eager(name):
    """Inductor runs the kernels inside compiled blocks
    (``compile_blocks``): outputs and gradients equal the eager kernels'."""
    def attend(*ins):
        q, k, v, k_p, v_p, base = ins
        return KERNELS[name](base, q, k, v, k_p, v_p, k_p[:, :, :20], True)

    gen = torch.Generator().manual_seed(0)
    ins = [torch.randn(2, 12, n, 64, generator=gen)
           for n in (197, 197, 197, 30, 30, 197)]
    rows = 20 if name == 'rows' else 197
    grad = torch.randn(2, 12, rows, 64, generator=gen).cuda()
    results = []
    for fn in (attend, torch.compile(attend, fullgraph=True)):
        leaves = [t.cuda().requires_grad_() for t in ins]
        out = fn(*leaves)
        results.append([out] + list(torch.autograd.grad(
            out, leaves, grad, allow_unused=True)))
    for eager, compiled in zip(*results):
        if eager is None:
            assert compiled is None
        else:
            torch.testing.assert_close(compiled, eager, rtol=1e-5,
                                       atol=1e-5)
