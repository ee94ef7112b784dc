"""Decoupled attention's two prompt attentions as Triton kernels (forward
and backward; ``attention.py`` calls them):

* ``prompt_branch``, the instance-to-prompt branch and its lerp,
  ``lerp(base, softmax(q k_p^T / sqrt(d)) v_p, w)``: ``base`` is the
  instance-to-instance attention (the host's SDPA), ``q`` the instance
  queries, ``k_p``, ``v_p`` the few prompt keys and values of the block;
* ``prompt_rows``, the kept prompts' rows (P2IP) of two-stream blocks: the
  prompt queries over the instance keys and the prompt keys,
  ``softmax(q_p [k, k_p]^T / sqrt(d)) [v, v_p]``, without concatenating
  the two key sets.

A flash kernel over a handful of keys, or for a handful of queries, spends
most of its time on per-block work it would share over hundreds: on an
H200 at batch 256 (ViT-B, 30 prompt keys) SDPA and the lerp add 0.84 ms to
the 1.67 ms forward and backward of the 197-key I2I, ``prompt_branch`` 0.42;
P2IP over the concatenated keys takes 1.90 ms, ``prompt_rows`` 1.36
(docs/performance.md, "The prompt kernels").

``prompt_branch``: each program holds all prompt keys on chip; the forward
reads q and base once and writes the output (the lerp included) and one
log-sum-exp per row; the backward recomputes the probabilities and writes
the gradients of q and base in one pass over the rows, so no branch output
is kept for it.  ``prompt_rows``: one program per batch and head holds the
prompt queries on chip and walks the key blocks of both sets (online
softmax forward; the backward writes every key block's gradients).

Both are custom operators (``torch.library.triton_op``): inductor sees the
kernels, so compiled blocks (``compile_blocks``) and captured steps run
them too.  CUDA only, head widths a power of two (16 to 128), no attention
dropout, at most ``MAX_PROMPTS`` prompt keys (``prompt_branch``) or prompt
rows (``prompt_rows``): ``usable``; eager blocks take them from
``GPU_BOUND_TOKENS`` instance tokens (``pays_off``).  The caller runs SDPA
otherwise.
"""
import contextlib
from typing import Tuple

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
    from torch.library import wrap_triton
except ImportError:   # CPU-only installs
    triton = None

#: prompt keys (``prompt_branch``) or prompt rows (``prompt_rows``) held on
#: chip by one program; more run through SDPA
MAX_PROMPTS = 128
#: key rows per step of ``prompt_rows``
BLOCK_N = 64
#: Instance tokens (batch x rows) from which an eager step is bound by the
#: GPU rather than by its kernel launches (H200, ViT-B/16: batch 64, 12.6k
#: tokens, is launch-bound; batch 256, 50k, is not).  From here blocks run
#: as two streams (``backbone.STREAMS_MIN_TOKENS``) and eager blocks take
#: the kernels.
GPU_BOUND_TOKENS = 32768


def usable(q: Tensor, prompts: int, dropout_p: float) -> bool:
    """Whether the kernels take queries ``q`` (B, heads, rows, head_dim)
    with ``prompts`` prompt keys (``prompt_branch``) or prompt rows
    (``prompt_rows``)."""
    d = q.shape[-1]
    return (triton is not None and q.is_cuda and not dropout_p
            and q.stride(-1) == 1 and 16 <= d <= 128 and d & (d - 1) == 0
            and 0 < prompts <= MAX_PROMPTS
            and q.dtype in (torch.float16, torch.bfloat16, torch.float32))


#: True while ``StepGraphs`` warms up and captures a step (``step_capture``)
_step_capture = False


@contextlib.contextmanager
def step_capture():
    """Within: blocks take the kernels as a captured step does, so that
    ``make_graphed_callables``' warm-up runs the path its capture records.
    Otherwise the warm-up runs SDPA and each kernel's first launch (Triton's
    compile and ``cuModuleLoadData``) falls inside the capture, where some
    drivers refuse module loading (vllm-project/vllm#36587; an H200 with
    driver 580 allowed it)."""
    global _step_capture
    outer, _step_capture = _step_capture, True
    try:
        yield
    finally:
        _step_capture = outer


def pays_off(q: Tensor) -> bool:
    """Whether the kernels pay for their launches, for instance queries
    ``q`` (B, heads, rows, head_dim).  Their host-side cost (custom-operator
    dispatch, Triton's launcher) exceeds SDPA's; steps captured by
    ``StepGraphs`` and compiled blocks pay it once, and from
    ``GPU_BOUND_TOKENS`` instance tokens the GPU is the bound (H200,
    ViT-B/16 SHIP K=10 at batch 64: eager 2.10x frozen timm with the
    kernels, captured 1.38x; SDPA's eager step 1.58x, captured 1.49x).
    A capture of the caller's own (``torch.cuda.graph``) follows its
    warm-up's size rule."""
    return q.is_cuda and (q.shape[0] * q.shape[2] >= GPU_BOUND_TOKENS
                          or torch.compiler.is_compiling() or _step_capture)


if triton is not None:

    @triton.jit
    def _dot(a, b, IEEE: tl.constexpr):
        """``tl.dot``; exact fp32 products for fp32 inputs (no TF32)."""
        if IEEE:
            return tl.dot(a, b, input_precision='ieee')
        return tl.dot(a, b)

    @triton.jit
    def _fp32(x):
        """A float argument as fp32: inductor passes Python floats as fp64,
        which would turn every product with them into fp64."""
        return tl.cast(x, tl.float32)

    @triton.jit
    def _load(X, stride, rows, mask, D: tl.constexpr):
        """The (rows, D) tile of rows ``rows`` at ``X`` (row stride
        ``stride``, dense columns); zeros where ``mask`` is off."""
        cols = tl.arange(0, D)
        return tl.load(X + rows[:, None] * stride + cols[None, :],
                       mask=mask[:, None], other=0.0)

    @triton.jit
    def _store(X, stride, rows, mask, tile, D: tl.constexpr):
        """``tile`` into the rows ``rows`` of ``X`` in ``X``'s dtype."""
        cols = tl.arange(0, D)
        tl.store(X + rows[:, None] * stride + cols[None, :],
                 tile.to(X.dtype.element_ty), mask=mask[:, None])

    @triton.jit
    def _scores(q, K, stride, keys, key_mask, scale, IEEE: tl.constexpr,
                D: tl.constexpr):
        """Scaled scores of ``q`` over the keys ``keys`` at ``K`` (-inf
        where masked), and the key tile."""
        k = _load(K, stride, keys, key_mask, D)
        s = _dot(q, tl.trans(k), IEEE)
        return tl.where(key_mask[None, :], s * scale, float('-inf')), k

    # -- prompt_branch: instance queries over the prompt keys -----------------
    @triton.jit
    def _branch_forward_kernel(
            Q, B_, KP, VP, O, LSE, N, P, H, scale, weight,
            sq_b, sq_h, sq_n, sb_b, sb_h, sb_n, sk_b, sk_h, sk_n,
            sv_b, sv_h, sv_n, so_b, so_h, so_n,
            D: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_M: tl.constexpr,
            IEEE: tl.constexpr):
        pid_m, bh = tl.program_id(0), tl.program_id(1)
        b, h = bh // H, bh % H
        scale, weight = _fp32(scale), _fp32(weight)
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        keys = tl.arange(0, BLOCK_P)
        row_mask, p_mask = rows < N, keys < P
        q = _load(Q + b * sq_b + h * sq_h, sq_n, rows, row_mask, D)
        s, _ = _scores(q, KP + b * sk_b + h * sk_h, sk_n, keys, p_mask,
                       scale, IEEE, D)
        m = tl.max(s, 1)
        e = tl.exp(s - m[:, None])
        total = tl.sum(e, 1)
        v = _load(VP + b * sv_b + h * sv_h, sv_n, keys, p_mask, D)
        o_p = _dot((e / total[:, None]).to(v.dtype), v, IEEE)
        base = _load(B_ + b * sb_b + h * sb_h, sb_n, rows, row_mask, D)
        _store(O + b * so_b + h * so_h, so_n, rows, row_mask,
               base + weight * (o_p - base.to(tl.float32)), D)
        tl.store(LSE + bh * N + rows, m + tl.log(total), mask=row_mask)

    @triton.jit
    def _branch_backward_kernel(
            Q, KP, VP, G, LSE, DQ, DB, DK, DV, N, P, H, scale, weight,
            sq_b, sq_h, sq_n, sk_b, sk_h, sk_n, sv_b, sv_h, sv_n,
            sg_b, sg_h, sg_n, so_b, so_h, so_n,
            D: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_M: tl.constexpr,
            IEEE: tl.constexpr, ROW_BLOCKS: tl.constexpr):
        # One program per (batch, head): the prompt-key gradients are sums
        # over every row, kept on chip and written once.
        bh = tl.program_id(0)
        b, h = bh // H, bh % H
        scale, weight = _fp32(scale), _fp32(weight)
        keys = tl.arange(0, BLOCK_P)
        p_mask = keys < P
        KP = KP + b * sk_b + h * sk_h
        v = _load(VP + b * sv_b + h * sv_h, sv_n, keys, p_mask, D)
        dk = tl.zeros((BLOCK_P, D), dtype=tl.float32)
        dv = tl.zeros((BLOCK_P, D), dtype=tl.float32)
        for i in range(ROW_BLOCKS):
            rows = i * BLOCK_M + tl.arange(0, BLOCK_M)
            row_mask = rows < N
            q = _load(Q + b * sq_b + h * sq_h, sq_n, rows, row_mask, D)
            g = _load(G + b * sg_b + h * sg_h, sg_n, rows, row_mask, D)
            lse = tl.load(LSE + bh * N + rows, mask=row_mask, other=0.0)
            s, k = _scores(q, KP, sk_n, keys, p_mask, scale, IEEE, D)
            probs = tl.exp(s - lse[:, None])
            g = g.to(tl.float32)
            g_p = (g * weight).to(v.dtype)
            dv += _dot(tl.trans(probs.to(v.dtype)), g_p, IEEE)
            dp = _dot(g_p, tl.trans(v), IEEE)
            ds = probs * (dp - tl.sum(probs * dp, 1)[:, None])
            ds = (ds * scale).to(q.dtype)
            dk += _dot(tl.trans(ds), q, IEEE)
            # dq and d_base share the output's layout
            _store(DQ + b * so_b + h * so_h, so_n, rows, row_mask,
                   _dot(ds, k, IEEE), D)
            _store(DB + b * so_b + h * so_h, so_n, rows, row_mask,
                   g * (1.0 - weight), D)
        _store(DK + bh * P * D, D, keys, p_mask, dk, D)
        _store(DV + bh * P * D, D, keys, p_mask, dv, D)

    # -- prompt_rows: prompt queries over both key sets -----------------------
    @triton.jit
    def _rows_attend(q, K, V, sk_n, sv_n, n_keys, m, total, acc, scale,
                     IEEE: tl.constexpr, D: tl.constexpr,
                     BLOCK_N: tl.constexpr, KEY_BLOCKS: tl.constexpr):
        """Online softmax of ``q`` over one key set, ``BLOCK_N`` keys a
        step: running row maxima ``m``, sums ``total``, outputs ``acc``.
        (The step count is a compile-time constant, as Triton's interpreter
        loops over constants only.)"""
        for i in range(KEY_BLOCKS):
            keys = i * BLOCK_N + tl.arange(0, BLOCK_N)
            key_mask = keys < n_keys
            s, _ = _scores(q, K, sk_n, keys, key_mask, scale, IEEE, D)
            m_new = tl.maximum(m, tl.max(s, 1))
            alpha = tl.exp(m - m_new)
            e = tl.exp(s - m_new[:, None])
            v = _load(V, sv_n, keys, key_mask, D)
            total = total * alpha + tl.sum(e, 1)
            acc = acc * alpha[:, None] + _dot(e.to(v.dtype), v, IEEE)
            m = m_new
        return m, total, acc

    @triton.jit
    def _rows_forward_kernel(
            QP, K, V, KP, VP, O, LSE, R, N, P, H, scale,
            sq_b, sq_h, sq_n, sk_b, sk_h, sk_n, sv_b, sv_h, sv_n,
            skp_b, skp_h, skp_n, svp_b, svp_h, svp_n, so_b, so_h, so_n,
            D: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr,
            IEEE: tl.constexpr, N_BLOCKS: tl.constexpr,
            P_BLOCKS: tl.constexpr):
        bh = tl.program_id(0)
        b, h = bh // H, bh % H
        scale = _fp32(scale)
        rows = tl.arange(0, BLOCK_R)
        row_mask = rows < R
        q = _load(QP + b * sq_b + h * sq_h, sq_n, rows, row_mask, D)
        m = tl.full((BLOCK_R, ), float('-inf'), tl.float32)
        total = tl.zeros((BLOCK_R, ), tl.float32)
        acc = tl.zeros((BLOCK_R, D), tl.float32)
        m, total, acc = _rows_attend(
            q, K + b * sk_b + h * sk_h, V + b * sv_b + h * sv_h, sk_n, sv_n,
            N, m, total, acc, scale, IEEE, D, BLOCK_N, N_BLOCKS)
        m, total, acc = _rows_attend(
            q, KP + b * skp_b + h * skp_h, VP + b * svp_b + h * svp_h, skp_n,
            svp_n, P, m, total, acc, scale, IEEE, D, BLOCK_N, P_BLOCKS)
        _store(O + b * so_b + h * so_h, so_n, rows, row_mask,
               acc / total[:, None], D)
        tl.store(LSE + bh * R + rows, m + tl.log(total), mask=row_mask)

    @triton.jit
    def _rows_key_grads(q, g, lse, delta, dq, K, V, DK, DV, sk_n, sv_n,
                        sd_n, n_keys, scale, IEEE: tl.constexpr,
                        D: tl.constexpr, BLOCK_N: tl.constexpr,
                        KEY_BLOCKS: tl.constexpr):
        """The gradients of one key set's keys and values, written block by
        block, and its part of the queries' gradient ``dq``."""
        for i in range(KEY_BLOCKS):
            keys = i * BLOCK_N + tl.arange(0, BLOCK_N)
            key_mask = keys < n_keys
            s, k = _scores(q, K, sk_n, keys, key_mask, scale, IEEE, D)
            probs = tl.exp(s - lse[:, None])
            v = _load(V, sv_n, keys, key_mask, D)
            dp = _dot(g, tl.trans(v), IEEE)
            ds = (probs * (dp - delta[:, None]) * scale).to(q.dtype)
            dq += _dot(ds, k, IEEE)
            _store(DK, sd_n, keys, key_mask, _dot(tl.trans(ds), q, IEEE), D)
            _store(DV, sd_n, keys, key_mask,
                   _dot(tl.trans(probs.to(g.dtype)), g, IEEE), D)
        return dq

    @triton.jit
    def _rows_backward_kernel(
            QP, K, V, KP, VP, O, G, LSE, DQ, DK, DV, DKP, DVP, R, N, P, H,
            scale, sq_b, sq_h, sq_n, sk_b, sk_h, sk_n, sv_b, sv_h, sv_n,
            skp_b, skp_h, skp_n, svp_b, svp_h, svp_n, so_b, so_h, so_n,
            sg_b, sg_h, sg_n, sd_b, sd_h, sd_n, sdp_b, sdp_h, sdp_n,
            D: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr,
            IEEE: tl.constexpr, N_BLOCKS: tl.constexpr,
            P_BLOCKS: tl.constexpr):
        # Rows past R load zero gradients and so add nothing to any key.
        bh = tl.program_id(0)
        b, h = bh // H, bh % H
        scale = _fp32(scale)
        rows = tl.arange(0, BLOCK_R)
        row_mask = rows < R
        q = _load(QP + b * sq_b + h * sq_h, sq_n, rows, row_mask, D)
        g = _load(G + b * sg_b + h * sg_h, sg_n, rows, row_mask, D)
        o = _load(O + b * so_b + h * so_h, so_n, rows, row_mask, D)
        lse = tl.load(LSE + bh * R + rows, mask=row_mask, other=0.0)
        delta = tl.sum(g.to(tl.float32) * o.to(tl.float32), 1)
        g = g.to(q.dtype)
        dq = tl.zeros((BLOCK_R, D), tl.float32)
        dq = _rows_key_grads(
            q, g, lse, delta, dq, K + b * sk_b + h * sk_h,
            V + b * sv_b + h * sv_h, DK + b * sd_b + h * sd_h,
            DV + b * sd_b + h * sd_h, sk_n, sv_n, sd_n, N, scale, IEEE, D,
            BLOCK_N, N_BLOCKS)
        dq = _rows_key_grads(
            q, g, lse, delta, dq, KP + b * skp_b + h * skp_h,
            VP + b * svp_b + h * svp_h, DKP + b * sdp_b + h * sdp_h,
            DVP + b * sdp_b + h * sdp_h, skp_n, svp_n, sdp_n, P, scale, IEEE,
            D, BLOCK_N, P_BLOCKS)
        # dq has the output's layout
        _store(DQ + b * so_b + h * so_h, so_n, rows, row_mask, dq, D)


def _sdpa_layout(q: Tensor, dtype: torch.dtype = None) -> Tensor:
    """An empty tensor shaped like ``q`` (B, H, N, d) over (B, N, H, d)
    memory, as SDPA returns, so that the block's head merge is a view."""
    B, H, N, d = q.shape
    return q.new_empty(B, N, H, d, dtype=dtype or q.dtype).transpose(1, 2)


def _pow2(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def _branch_meta(q: Tensor, k_p: Tensor) -> dict:
    """Compile-time sizes and launch shape of both ``prompt_branch``
    kernels.  More prompt keys hold more on chip: above 64, rows go in
    blocks of 32 (faster on an H200, docs/performance.md)."""
    block_p = _pow2(k_p.shape[2])
    return dict(D=q.shape[-1], BLOCK_P=block_p,
                BLOCK_M=64 if block_p <= 64 else 32,
                IEEE=q.dtype == torch.float32, num_warps=4)


def _rows_meta(q_p: Tensor, k: Tensor, k_p: Tensor) -> dict:
    block_r = _pow2(q_p.shape[2])
    return dict(D=q_p.shape[-1], BLOCK_R=block_r, BLOCK_N=BLOCK_N,
                IEEE=q_p.dtype == torch.float32,
                N_BLOCKS=triton.cdiv(k.shape[2], BLOCK_N),
                P_BLOCKS=triton.cdiv(k_p.shape[2], BLOCK_N),
                num_warps=4 if block_r <= 64 else 8)


def _strides(*tensors: Tensor) -> list:
    """Batch, head and row strides (the head dimension is dense)."""
    return [s for t in tensors for s in t.stride()[:3]]


def _dense(*tensors: Tensor) -> list:
    return [t if t.stride(-1) == 1 else t.contiguous() for t in tensors]


def _traceable(kernel):
    """``wrap_triton(kernel)``; Triton's interpreter (the CPU tests) makes
    no JIT function to wrap, and its kernels run as they are."""
    if isinstance(kernel, triton.runtime.JITFunction):
        return wrap_triton(kernel)
    return kernel


if triton is not None:
    # Triton launches on the current device, not the tensors' (-1 on CPU,
    # in Triton's interpreter: no device), hence ``torch.cuda.device``.

    @torch.library.triton_op('mmship::prompt_branch', mutates_args=())
    def _branch(base: Tensor, q: Tensor, k_p: Tensor, v_p: Tensor,
                weight: float) -> Tuple[Tensor, Tensor]:
        B, H, N, d = q.shape
        base, k_p, v_p = _dense(base, k_p, v_p)
        out = _sdpa_layout(q, base.dtype)
        lse = q.new_empty(B, H, N, dtype=torch.float32)
        meta = _branch_meta(q, k_p)
        with torch.cuda.device(q.get_device()):
            _traceable(_branch_forward_kernel)[
                (triton.cdiv(N, meta['BLOCK_M']), B * H)](
                q, base, k_p, v_p, out, lse, N, k_p.shape[2], H, d ** -0.5,
                weight, *_strides(q, base, k_p, v_p, out), **meta)
        return out, lse

    @torch.library.triton_op('mmship::prompt_branch_backward',
                             mutates_args=())
    def _branch_backward(grad: Tensor, q: Tensor, k_p: Tensor, v_p: Tensor,
                         lse: Tensor, weight: float
                         ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        B, H, N, d = q.shape
        P = k_p.shape[2]
        grad, k_p, v_p = _dense(grad, k_p, v_p)
        # the output, and so its gradient, has the dtype of base
        d_base, dq = _sdpa_layout(q, grad.dtype), _sdpa_layout(q)
        dk = k_p.new_empty(B, H, P, d)
        dv = torch.empty_like(dk)
        meta = _branch_meta(q, k_p)
        with torch.cuda.device(q.get_device()):
            _traceable(_branch_backward_kernel)[(B * H, )](
                q, k_p, v_p, grad, lse, dq, d_base, dk, dv, N, P, H,
                d ** -0.5, weight, *_strides(q, k_p, v_p, grad, dq),
                ROW_BLOCKS=triton.cdiv(N, meta['BLOCK_M']), **meta)
        return d_base, dq, dk, dv

    def _branch_setup(ctx, inputs, output):
        _, q, k_p, v_p, weight = inputs
        ctx.save_for_backward(q, k_p, v_p, output[1])
        ctx.weight = weight

    def _branch_grad(ctx, grad, _grad_lse):
        q, k_p, v_p, lse = ctx.saved_tensors
        return (*_branch_backward(grad, q, k_p, v_p, lse, ctx.weight), None)

    _branch.register_autograd(_branch_grad, setup_context=_branch_setup)

    @torch.library.triton_op('mmship::prompt_rows', mutates_args=())
    def _rows(q_p: Tensor, k: Tensor, v: Tensor, k_p: Tensor, v_p: Tensor
              ) -> Tuple[Tensor, Tensor]:
        B, H, R, d = q_p.shape
        k, v, k_p, v_p = _dense(k, v, k_p, v_p)
        out = _sdpa_layout(q_p)
        lse = q_p.new_empty(B, H, R, dtype=torch.float32)
        with torch.cuda.device(q_p.get_device()):
            _traceable(_rows_forward_kernel)[(B * H, )](
                q_p, k, v, k_p, v_p, out, lse, R, k.shape[2], k_p.shape[2],
                H, d ** -0.5, *_strides(q_p, k, v, k_p, v_p, out),
                **_rows_meta(q_p, k, k_p))
        return out, lse

    @torch.library.triton_op('mmship::prompt_rows_backward', mutates_args=())
    def _rows_backward(grad: Tensor, q_p: Tensor, k: Tensor, v: Tensor,
                       k_p: Tensor, v_p: Tensor, out: Tensor, lse: Tensor
                       ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        B, H, R, d = q_p.shape
        grad, k, v, k_p, v_p = _dense(grad, k, v, k_p, v_p)
        dq = torch.empty_like(out)
        # the gradients of each key set share one layout (one set of strides)
        dk, dv = _sdpa_layout(k), _sdpa_layout(k)
        dk_p, dv_p = _sdpa_layout(k_p), _sdpa_layout(k_p)
        with torch.cuda.device(q_p.get_device()):
            _traceable(_rows_backward_kernel)[(B * H, )](
                q_p, k, v, k_p, v_p, out, grad, lse, dq, dk, dv, dk_p, dv_p,
                R, k.shape[2], k_p.shape[2], H, d ** -0.5,
                *_strides(q_p, k, v, k_p, v_p, out, grad, dk, dk_p),
                **_rows_meta(q_p, k, k_p))
        return dq, dk, dv, dk_p, dv_p

    def _rows_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs, *output)

    def _rows_grad(ctx, grad, _grad_lse):
        return _rows_backward(grad, *ctx.saved_tensors)

    _rows.register_autograd(_rows_grad, setup_context=_rows_setup)


def prompt_branch(base: Tensor, q: Tensor, k_p: Tensor, v_p: Tensor,
                  weight: float) -> Tensor:
    """``torch.lerp(base, SDPA(q, k_p, v_p), weight)`` for (B, heads, rows,
    head_dim) tensors; check ``usable(q, k_p.shape[2], dropout_p)``."""
    return _branch(base, q, k_p, v_p, weight)[0]


def prompt_rows(q_p: Tensor, k: Tensor, v: Tensor, k_p: Tensor,
                v_p: Tensor) -> Tensor:
    """``SDPA(q_p, cat([k, k_p]), cat([v, v_p]))`` along the rows of (B,
    heads, rows, head_dim) tensors; check ``usable(q_p, q_p.shape[2],
    dropout_p)``."""
    return _rows(q_p, k, v, k_p, v_p)[0]


__all__ = ['prompt_branch', 'prompt_rows', 'usable', 'pays_off',
           'step_capture', 'MAX_PROMPTS']
