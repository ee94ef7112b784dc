"""The instance-to-prompt branch of decoupled attention as one Triton kernel
(forward and backward): ``lerp(base, softmax(q k_p^T / sqrt(d)) v_p, w)``.

``base`` is the instance-to-instance attention (the host's SDPA), ``q`` the
instance queries, ``k_p``, ``v_p`` the few prompt keys and values of the
block.  A flash kernel over a handful of keys spends most of its time on
per-query-block work it would share over hundreds of keys: on an H200 at
batch 256 (ViT-B, 30 prompt keys) SDPA and the lerp add 0.84 ms to the
1.67 ms forward and backward of the 197-key I2I, this kernel 0.44
(docs/performance.md "The prompt branch").  Here each
program holds all prompt keys on chip: the forward reads q and base once
and writes the output (the lerp included) and one log-sum-exp per row; the
backward recomputes the probabilities and writes the gradients of q and
base in one pass over the rows, so no prompt-branch output is kept for it.

CUDA only, eager blocks, head widths a power of two (16 to 128), at most
``MAX_PROMPTS`` prompt keys and no attention dropout (``usable``); the
caller runs SDPA otherwise.
"""
import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:   # CPU-only installs
    triton = None

#: prompt keys held on chip by one program (more run through SDPA)
MAX_PROMPTS = 128
BLOCK_M = 64


def usable(q: Tensor, k_p: Tensor, dropout_p: float) -> bool:
    d = q.shape[-1]
    # compiled blocks (``compile_blocks``) keep SDPA, which inductor knows
    return (triton is not None and q.is_cuda and not dropout_p
            and not torch.compiler.is_compiling() and q.stride(-1) == 1
            and 16 <= d <= 128 and d & (d - 1) == 0
            and 0 < k_p.shape[2] <= MAX_PROMPTS
            and q.dtype in (torch.float16, torch.bfloat16, torch.float32))


if triton is not None:

    @triton.jit
    def _dot(a, b, IEEE: tl.constexpr):
        """``tl.dot``; exact fp32 products for fp32 inputs (no TF32)."""
        if IEEE:
            return tl.dot(a, b, input_precision='ieee')
        return tl.dot(a, b)

    @triton.jit
    def _scores(q, k_ptrs, p_mask, scale, IEEE: tl.constexpr):
        k = tl.load(k_ptrs, mask=p_mask[:, None], other=0.0)
        s = _dot(q, tl.trans(k), IEEE)
        return tl.where(p_mask[None, :], s * scale, float('-inf')), k

    @triton.jit
    def _forward_kernel(Q, B_, KP, VP, O, LSE, N, P, H, scale, weight,
                        sq_b, sq_h, sq_n, sb_b, sb_h, sb_n, sk_b, sk_h, sk_n,
                        sv_b, sv_h, sv_n, so_b, so_h, so_n,
                        D: tl.constexpr, BLOCK_P: tl.constexpr,
                        BLOCK_M: tl.constexpr, IEEE: tl.constexpr):
        pid_m, bh = tl.program_id(0), tl.program_id(1)
        b, h = bh // H, bh % H
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.arange(0, D)
        keys = tl.arange(0, BLOCK_P)
        row_mask, p_mask = rows < N, keys < P
        q = tl.load(Q + b * sq_b + h * sq_h + rows[:, None] * sq_n +
                    cols[None, :], mask=row_mask[:, None], other=0.0)
        s, _ = _scores(q, KP + b * sk_b + h * sk_h + keys[:, None] * sk_n +
                       cols[None, :], p_mask, scale, IEEE)
        m = tl.max(s, 1)
        e = tl.exp(s - m[:, None])
        total = tl.sum(e, 1)
        v = tl.load(VP + b * sv_b + h * sv_h + keys[:, None] * sv_n +
                    cols[None, :], mask=p_mask[:, None], other=0.0)
        o_p = _dot((e / total[:, None]).to(v.dtype), v, IEEE)
        base = tl.load(B_ + b * sb_b + h * sb_h + rows[:, None] * sb_n +
                       cols[None, :], mask=row_mask[:, None], other=0.0)
        out = base + weight * (o_p - base.to(tl.float32))
        tl.store(O + b * so_b + h * so_h + rows[:, None] * so_n +
                 cols[None, :], out.to(O.dtype.element_ty),
                 mask=row_mask[:, None])
        tl.store(LSE + bh * N + rows, m + tl.log(total), mask=row_mask)

    @triton.jit
    def _backward_kernel(Q, KP, VP, G, LSE, DQ, DB, DK, DV, N, P, H, scale,
                         weight, sq_b, sq_h, sq_n, sk_b, sk_h, sk_n,
                         sv_b, sv_h, sv_n, sg_b, sg_h, sg_n, so_b, so_h, so_n,
                         D: tl.constexpr, BLOCK_P: tl.constexpr,
                         BLOCK_M: tl.constexpr, IEEE: tl.constexpr,
                         ROW_BLOCKS: tl.constexpr):
        # One program per (batch, head): the prompt-key gradients are sums
        # over every row, kept on chip and written once.
        bh = tl.program_id(0)
        b, h = bh // H, bh % H
        cols = tl.arange(0, D)
        keys = tl.arange(0, BLOCK_P)
        p_mask = keys < P
        k_ptrs = KP + b * sk_b + h * sk_h + keys[:, None] * sk_n + cols[None, :]
        v = tl.load(VP + b * sv_b + h * sv_h + keys[:, None] * sv_n +
                    cols[None, :], mask=p_mask[:, None], other=0.0)
        dk = tl.zeros((BLOCK_P, D), dtype=tl.float32)
        dv = tl.zeros((BLOCK_P, D), dtype=tl.float32)
        for i in range(ROW_BLOCKS):
            rows = i * BLOCK_M + tl.arange(0, BLOCK_M)
            row_mask = rows < N
            q = tl.load(Q + b * sq_b + h * sq_h + rows[:, None] * sq_n +
                        cols[None, :], mask=row_mask[:, None], other=0.0)
            g = tl.load(G + b * sg_b + h * sg_h + rows[:, None] * sg_n +
                        cols[None, :], mask=row_mask[:, None], other=0.0)
            lse = tl.load(LSE + bh * N + rows, mask=row_mask, other=0.0)
            s, k = _scores(q, k_ptrs, p_mask, scale, IEEE)
            probs = tl.exp(s - lse[:, None])
            g = g.to(tl.float32)
            g_p = (g * weight).to(v.dtype)
            dv += _dot(tl.trans(probs.to(v.dtype)), g_p, IEEE)
            dp = _dot(g_p, tl.trans(v), IEEE)
            ds = probs * (dp - tl.sum(probs * dp, 1)[:, None])
            ds = (ds * scale).to(q.dtype)
            dq = _dot(ds, k, IEEE)
            dk += _dot(tl.trans(ds), q, IEEE)
            out_off = b * so_b + h * so_h + rows[:, None] * so_n + cols[None, :]
            tl.store(DQ + out_off, dq.to(DQ.dtype.element_ty),
                     mask=row_mask[:, None])
            tl.store(DB + out_off, (g * (1.0 - weight))
                     .to(DB.dtype.element_ty), mask=row_mask[:, None])
        p_off = bh * P * D + keys[:, None] * D + cols[None, :]
        tl.store(DK + p_off, dk.to(DK.dtype.element_ty),
                 mask=p_mask[:, None])
        tl.store(DV + p_off, dv.to(DV.dtype.element_ty),
                 mask=p_mask[:, None])


def _sdpa_layout(q: Tensor, dtype: torch.dtype) -> Tensor:
    """An empty tensor shaped like ``q`` (B, H, N, d) over (B, N, H, d)
    memory, as SDPA returns, so that the block's head merge is a view."""
    B, H, N, d = q.shape
    return q.new_empty(B, N, H, d, dtype=dtype).transpose(1, 2)


def _meta(q: Tensor, k_p: Tensor) -> dict:
    P = k_p.shape[2]
    return dict(D=q.shape[-1], BLOCK_P=max(16, triton.next_power_of_2(P)),
                BLOCK_M=BLOCK_M, IEEE=q.dtype == torch.float32)


def _strides(*tensors: Tensor) -> list:
    """Batch, head and row strides (the head dimension is dense)."""
    return [s for t in tensors for s in t.stride()[:3]]


class _PromptBranch(torch.autograd.Function):

    @staticmethod
    def forward(ctx, base: Tensor, q: Tensor, k_p: Tensor, v_p: Tensor,
                weight: float):
        B, H, N, d = q.shape
        P = k_p.shape[2]
        k_p, v_p = (t if t.stride(-1) == 1 else t.contiguous()
                    for t in (k_p, v_p))
        if base.stride(-1) != 1:
            base = base.contiguous()
        out = _sdpa_layout(q, base.dtype)
        lse = q.new_empty(B, H, N, dtype=torch.float32)
        scale = d ** -0.5
        # Triton launches on the current device, not the tensors' (-1, on
        # CPU in Triton's interpreter: no device)
        with torch.cuda.device(q.get_device()):
            _forward_kernel[(triton.cdiv(N, BLOCK_M), B * H)](
                q, base, k_p, v_p, out, lse, N, P, H, scale, weight,
                *_strides(q, base, k_p, v_p, out), **_meta(q, k_p),
                num_warps=4)
        ctx.save_for_backward(q, k_p, v_p, lse)
        ctx.weight, ctx.scale, ctx.base_dtype = weight, scale, base.dtype
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        q, k_p, v_p, lse = ctx.saved_tensors
        B, H, N, d = q.shape
        P = k_p.shape[2]
        if grad.stride(-1) != 1:
            grad = grad.contiguous()
        dq = _sdpa_layout(q, q.dtype)
        d_base = _sdpa_layout(q, ctx.base_dtype)
        dk = k_p.new_empty(B, H, P, d)
        dv = torch.empty_like(dk)
        with torch.cuda.device(q.get_device()):
            _backward_kernel[(B * H, )](
                q, k_p, v_p, grad, lse, dq, d_base, dk, dv, N, P, H,
                ctx.scale, ctx.weight, *_strides(q, k_p, v_p, grad, dq),
                **_meta(q, k_p), ROW_BLOCKS=triton.cdiv(N, BLOCK_M),
                num_warps=4)
        return d_base, dq, dk, dv, None


def prompt_branch(base: Tensor, q: Tensor, k_p: Tensor, v_p: Tensor,
                  weight: float) -> Tensor:
    """``torch.lerp(base, SDPA(q, k_p, v_p), weight)`` for (B, heads, rows,
    head_dim) tensors; check ``usable`` first."""
    return _PromptBranch.apply(base, q, k_p, v_p, weight)


__all__ = ['prompt_branch', 'usable', 'MAX_PROMPTS']
