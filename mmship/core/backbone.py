"""The engine: runs a host ViT's blocks with a tuning method.

``PromptedBackboneMixin`` is shared by the mmseg and the mmpretrain hosts.
A host supplies, as its adapter (``mmship/models``):

* ``_embed(inputs) -> (tokens, grid)``: patch embedding, CLS token,
  position embedding and pre-norm;
* ``_final_norm(x)``: its norm after the last block (identity if none);
* ``_format(x, grid)``: one output in the host's ``out_type``;
* ``num_extra_tokens``: leading non-patch tokens inside the blocks;
* ``gradient_checkpointing``: whether blocks are checkpointed in training;
* ``host_format`` and its ``BlockOps`` view class (``block_ops.py``).

Per block the engine asks the method for one ``BlockPlan`` and hands it one
``BlockResult`` (``method.py``).  ``forward_intermediates`` is the one way
to read block outputs (offline tools, DA-VPT's features, SHIP's hierarchy).
"""
import fnmatch
import functools
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .attention import cls_attention
from .attention_kernels import GPU_BOUND_TOKENS
from .graphs import StepGraphs
from .method import (DELTA_TARGETS, PLAIN_SPEC, BlockPlan, BlockResult,
                     PromptContext, TuningMethod)
from .prompter import build_method


#: Instance tokens (batch x tokens) from which decoupled blocks run as two
#: streams (``block_core``): where the GPU, not the launch queue, is the
#: bound, the same size from which eager blocks take the prompt kernels.
STREAMS_MIN_TOKENS = GPU_BOUND_TOKENS


def prompted_block(ops, x: Tensor, plan: BlockPlan, compiled: bool = False):
    """One transformer block over the instance tokens ``x`` and the plan's
    prompts.

    Kept prompts (``plan.spec.kept``) go through the whole block; the other
    prompts only lend their keys and values: their attention outputs and
    FFN are never computed, nor their queries where no prompt is kept in a
    two-stream block (elsewhere they come out of the one qkv GEMM and are
    dropped).  ``compiled``: run the block's tensor work through
    ``torch.compile`` (``block_core``).

    Returns instance outputs, the kept prompt outputs (names -> tensors),
    the CLS attention over patches and the CLS query (each None unless the
    spec asks for it).
    """
    spec, prompts = plan.spec, plan.prompts
    kept = [name for name in spec.kept if name in prompts]
    lent = [name for name in prompts if name not in spec.kept]
    run = _compiled_block_core() if compiled else block_core
    x_out, kept_out, cls_attn, cls_query = run(
        ops.layer, type(ops), x, [prompts[n] for n in kept],
        [prompts[n] for n in lent], spec.attention,
        spec.record_cls_attention, spec.record_cls_query, plan.deltas)
    return x_out, dict(zip(kept, kept_out)), cls_attn, cls_query


def block_core(layer, ops_cls, x: Tensor, kept: List[Tensor],
               lent: List[Tensor], attention, record_cls_attention: bool,
               record_cls_query: bool, deltas: dict):
    """The tensor work of ``prompted_block``.  Prompts come as lists, not
    named, and the block as its layer module, so that ``torch.compile``
    makes one graph per block structure, not one per block.

    The layout (``attention.py``): one token tensor, or two streams for
    decoupled attention in blocks of at least ``STREAMS_MIN_TOKENS``
    instance tokens (batch x tokens).  Two streams move less memory but
    launch more small kernels, so they pay where the GPU, not the launch
    queue, is the bound (H200, ViT-B/16 SHIP K=10, bf16:
    docs/performance.md): at batch 256 (50k tokens) 93.8 against 107.3 ms
    a step, at batch 64 (12.6k) 53.9 against 36.4 ms."""
    ops = ops_cls(layer)
    # The block's own mode, not the backbone's: frozen blocks stay in eval
    # mode while a method trains, so their attention dropout is off like the
    # rest of their dropout.
    dropout_p = ops.attn_drop if layer.training else 0.0
    if attention.decoupled and (kept or lent) and \
            x.shape[0] * x.shape[1] >= STREAMS_MIN_TOKENS:
        return _two_streams(ops, x, kept, lent, attention, dropout_p,
                            record_cls_attention, record_cls_query, deltas)
    n = x.shape[1]
    tokens = torch.cat([x] + kept + lent, dim=1) if kept or lent else x
    normed = ops.norm1(tokens)
    q, k, v = ops.qkv(normed, deltas)
    rows = n + sum(p.shape[1] for p in kept)
    q, tokens = _leading(q, rows, 2), _leading(tokens, rows, 1)
    o = attention.joint(q, k, v, n, dropout_p, normed)
    cls_attn = cls_attention(q, k[:, :, :n]) if record_cls_attention else None
    cls_query = q[:, :, 0].flatten(1) if record_cls_query else None
    tokens = ops.ffn_residual(ops.attn_residual(tokens, o, deltas))
    if not kept:   # no slice: its backward would write a zero-filled copy
        return tokens, [], cls_attn, cls_query
    kept_out = list(tokens[:, n:].split([p.shape[1] for p in kept], 1))
    return tokens[:, :n], kept_out, cls_attn, cls_query


def _two_streams(ops, x: Tensor, kept: List[Tensor], lent: List[Tensor],
                 attention, dropout_p: float, record_cls_attention: bool,
                 record_cls_query: bool, deltas: dict):
    """The decoupled block.  The instance stream is the host block on the
    host's tensors (same kernels, same shapes); the prompts, a few tokens,
    get their own norm, qkv and (kept rows only) projection and FFN, and
    meet the instances only in the attention."""
    q, k, v = ops.qkv(ops.norm1(x), deltas)
    cls_attn = cls_attention(q, k) if record_cls_attention else None
    cls_query = q[:, :, 0].flatten(1) if record_cls_query else None
    prompts = kept + lent
    p = torch.cat(prompts, dim=1) if len(prompts) > 1 else prompts[0]
    rows = sum(t.shape[1] for t in kept)
    normed_p = ops.norm1(p)
    if not rows:   # lent prompts only: no prompt row, and no prompt query
        k_p, v_p = ops.kv(normed_p, deltas)
        o, _ = attention.streams(q, k, v, k_p, v_p, dropout_p=dropout_p)
        return ops.ffn_residual(ops.attn_residual(x, o, deltas)), [], \
            cls_attn, cls_query
    q_p, k_p, v_p = ops.qkv(normed_p, deltas)
    o, o_p = attention.streams(q, k, v, k_p, v_p, _leading(q_p, rows, 2),
                               dropout_p, _leading(normed_p, rows, 1))
    x_out = ops.ffn_residual(ops.attn_residual(x, o, deltas))
    p_out = ops.ffn_residual(ops.attn_residual(_leading(p, rows, 1), o_p,
                                               deltas))
    kept_out = list(p_out.split([t.shape[1] for t in kept], 1)) \
        if len(kept) > 1 else [p_out]
    return x_out, kept_out, cls_attn, cls_query


def _leading(t: Tensor, rows: int, dim: int) -> Tensor:
    """The first ``rows`` entries of ``dim``; ``t`` itself when that is all
    of it (a full-range slice's backward writes a zero-filled copy)."""
    return t if t.shape[dim] == rows else t.narrow(dim, 0, rows)


@functools.lru_cache(maxsize=None)
def _compiled_block_core():
    """``block_core`` under ``torch.compile``, made on first use.  A method
    has a few block structures, times training / eval; the recompile limit
    is raised so that none of them falls back to eager."""
    import torch._dynamo
    config = torch._dynamo.config
    for name in ('recompile_limit', 'cache_size_limit'):
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), 64))
    return torch.compile(block_core, dynamic=False)


class PromptedBackboneMixin:
    """Tuning, freezing and checkpoint loading for a host ViT.

    The host class calls ``_init_prompting`` at the end of ``__init__``.
    """
    #: 'mmseg' or 'mmpretrain': the key layout of the host's state dict.
    host_format: str = None
    #: leading non-patch tokens inside the blocks (the CLS token)
    num_extra_tokens: int = 1
    gradient_checkpointing: bool = False
    prompter: Optional[TuningMethod]
    #: captured training steps (``cuda_graph=True``), else None
    _graphs: Optional[StepGraphs] = None

    def _init_prompting(self, prompt: Optional[dict], freeze_backbone: bool,
                        trainable: Iterable[str], block_ops_cls, num_heads: int,
                        patch_size: int, embed_dims: int,
                        compile_blocks: bool = False,
                        cuda_graph: bool = False):
        #: run every block through torch.compile (``block_core``)
        self.compile_blocks = compile_blocks
        # capture the training forward and backward (``graphs.py``)
        self._graphs = StepGraphs() if cuda_graph else None
        self.prompter = build_method(
            prompt, num_layers=len(self.layers), embed_dims=embed_dims,
            num_heads=num_heads, patch_size=patch_size)
        method = self.prompter
        if method is not None:
            if method.requires_cls_token and not self.num_extra_tokens:
                raise ValueError(f'{type(method).__name__} '
                                 f'{method.cls_token_reason}: set '
                                 f'with_cls_token=True.')
            unknown = sorted(set(method.delta_targets) - set(DELTA_TARGETS))
            if unknown:
                raise ValueError(f'{type(method).__name__} has deltas for '
                                 f'{unknown}; the blocks take deltas for '
                                 f'{list(DELTA_TARGETS)}.')
        # Plain list: views over the layers, not modules of their own.
        self._block_ops = [block_ops_cls(layer) for layer in self.layers]
        self.freeze_backbone = freeze_backbone
        # Host parameters the method itself trains (e.g. DA-VPT+ presets),
        # by logical name, resolved for this host.
        parts = list(method.host_parts) if method is not None else []
        part_patterns = block_ops_cls.part_patterns(parts)
        self.trainable = list(trainable) + [
            p for p in part_patterns if p not in trainable]
        self._freeze_host()
        if method is not None:
            counts = {}
            for part, pattern in zip(parts, part_patterns):
                counts[part] = sum(
                    p.numel() for n, p in self.named_parameters()
                    if not n.startswith('prompter.')
                    and fnmatch.fnmatch(n, pattern))
                if freeze_backbone and counts[part] == 0:
                    raise ValueError(f'Host part {part!r} ({pattern}) '
                                     f'matches no parameter of this backbone.')
            method.host_frozen(counts)

    # -- freezing -------------------------------------------------------------
    def _freeze_host(self):
        """requires_grad is set once, here: the method and ``trainable`` name
        patterns train, the host is frozen (unless freeze_backbone=False)."""
        matched = {p: False for p in self.trainable}
        for name, param in self.named_parameters():
            if name.startswith('prompter.') or not self.freeze_backbone:
                continue
            hits = [p for p in self.trainable if fnmatch.fnmatch(name, p)]
            for p in hits:
                matched[p] = True
            param.requires_grad = bool(hits)
        unmatched = [p for p, hit in matched.items() if not hit]
        if unmatched and self.freeze_backbone:
            raise ValueError(
                f'trainable patterns {unmatched} match no backbone parameter; '
                f'names look like {self._example_param_names()}.')

    def _example_param_names(self) -> List[str]:
        names = [n for n, _ in self.named_parameters()
                 if not n.startswith('prompter.')]
        return names[:3] + ['...'] + names[-2:]

    def _apply(self, fn, *args, **kwargs):
        # Graphs hold the parameters' old storage: moving or casting the
        # backbone drops them (the next step captures anew).
        if self._graphs is not None:
            self._graphs.clear()
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True):
        """Frozen parts stay in eval mode (no dropout / drop-path)."""
        super().train(mode)
        if mode and self.freeze_backbone:
            _eval_frozen(self, skip=('prompter', ))
        return self

    # -- forward ----------------------------------------------------------------
    def _run_blocks(self, x: Tensor, ctx: PromptContext,
                    method: Optional[TuningMethod], on_output,
                    last: Optional[int] = None) -> Tensor:
        """Run blocks 0..``last`` (default all); ``on_output(i, x)`` gets the
        instance tokens after block ``i``.  Prompts never leave this loop."""
        carried: Dict[str, Tensor] = {}
        last = len(self._block_ops) - 1 if last is None else last
        cp = self.gradient_checkpointing and self.training
        for i, ops in enumerate(self._block_ops[:last + 1]):
            plan = BlockPlan(PLAIN_SPEC) if method is None else \
                method.plan(i, ctx, x, carried)
            if cp:
                x_out, carried, cls_attn, cls_query = checkpoint(
                    prompted_block, ops, x, plan, self.compile_blocks,
                    use_reentrant=False)
            else:
                x_out, carried, cls_attn, cls_query = prompted_block(
                    ops, x, plan, self.compile_blocks)
            if method is not None:
                method.after_block(i, ctx, BlockResult(
                    x, x_out, plan.prompts, carried, cls_attn, cls_query))
            x = on_output(i, x_out)
        return x

    def make_context(self, batch_size: int,
                     targets: Optional[dict] = None) -> PromptContext:
        return PromptContext(batch_size=batch_size, training=self.training,
                             targets=targets)

    def _forward(self, inputs: Tensor, ctx: PromptContext) -> tuple:
        x, grid = self._embed(inputs)
        outs = self._origin_outputs(x, grid)
        last = len(self.layers) - 1

        def on_output(i, x):
            if i == last:
                x = self._final_norm(x)
            if i in self.out_indices:
                outs.append(self._format(x, grid))
            return x

        self._run_blocks(x, ctx, self.prompter, on_output)
        return tuple(outs)

    def _origin_outputs(self, x: Tensor, grid) -> list:
        """Outputs before the first block (mmseg's ``out_origin``)."""
        return []

    def forward_with_losses(self, inputs: Tensor, targets: Optional[dict] = None
                            ) -> Tuple[tuple, Dict[str, Tensor]]:
        """Features and the method's auxiliary losses (training only)."""
        if self._graphs is not None:
            captured = self._graphs.run(self, inputs, targets)
            if captured is not None:
                return captured
        ctx = self.make_context(inputs.shape[0], targets)
        outs = self._forward(inputs, ctx)
        return outs, ctx.losses

    def forward(self, inputs: Tensor) -> tuple:
        return self.forward_with_losses(inputs)[0]

    def forward_intermediates(self, inputs: Tensor,
                              indices: Optional[Sequence[int]] = None,
                              norm: bool = False, with_method: bool = True
                              ) -> List[Tensor]:
        """Instance tokens (B, N, D) output by the blocks ``indices``
        (default all; negative counts from the end), in that order.

        Args:
            norm: pass each through the host's final norm (as timm's
                ``forward_intermediates(norm=True)``).
            with_method: run the tuning method; False gives the frozen
                host's features.
        Blocks after the last index are not run.  The method runs as at
        inference (no auxiliary losses: the tap returns none, and has no
        targets for them), whatever the module's mode.
        """
        num = len(self.layers)
        wanted = list(range(num)) if indices is None else \
            [int(i) % num if -num <= int(i) < num else _bad_index(i, num)
             for i in indices]
        taken: Dict[int, Tensor] = {}

        def on_output(i, x):
            if i in wanted:
                taken[i] = self._final_norm(x) if norm else x
            return x

        x, _ = self._embed(inputs)
        ctx = PromptContext(batch_size=inputs.shape[0], training=False)
        self._run_blocks(x, ctx, self.prompter if with_method else None,
                         on_output, last=max(wanted))
        return [taken[i] for i in wanted]

    # -- checkpoints ------------------------------------------------------------
    def init_weights(self):
        from .checkpoint import load_pretrained
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'))
            self._is_init = True
        else:
            super().init_weights()


def _bad_index(index, num_layers: int):
    raise IndexError(f'Block index {index} does not exist: the backbone has '
                     f'blocks 0..{num_layers - 1} (or -{num_layers}..-1).')


def _eval_frozen(module: nn.Module, skip=()):
    """Put every sub-tree without trainable parameters in eval mode."""
    for name, child in module.named_children():
        if name in skip:
            continue
        if any(p.requires_grad for p in child.parameters()):
            _eval_frozen(child)
        else:
            child.eval()
