"""The prompt engine: runs a host's blocks with the prompter's prompts.

``PromptedBackboneMixin`` is shared by the mmseg and the mmpretrain hosts; a
host supplies its embedding, its block views and its output formatting.
"""
import fnmatch
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .attention import PromptAttention, cls_attention
from .prompter import Prompter, PromptContext, build_prompter


def prompted_block(ops, x: Tensor, prompts: Optional[Tensor], attention,
                   need_cls_attn: bool = False,
                   bias_delta: Optional[Tensor] = None,
                   keep_prompts: bool = True):
    """One transformer block over ``[x, prompts]``.

    With ``keep_prompts=False`` the prompts only lend their keys and values:
    their queries, attention outputs and FFN are never computed (VPT-deep
    drops them after every block anyway).

    Returns instance outputs, prompt outputs (or None) and the CLS attention
    over patches (or None).
    """
    n = x.shape[1]
    tokens = x if prompts is None else torch.cat([x, prompts], dim=1)
    normed = ops.norm1(tokens)
    q, k, v = ops.qkv(normed, bias_delta)
    if not keep_prompts:
        q, tokens = q[:, :, :n], x
    # The block's own mode, not the backbone's: frozen blocks stay in eval
    # mode while prompts train, so their attention dropout is off like the
    # rest of their dropout.
    o = attention(q, k, v, n,
                  dropout_p=ops.attn_drop if ops.layer.training else 0.0,
                  normed=normed)
    cls_attn = cls_attention(q, k, n) if need_cls_attn else None
    tokens = ops.ffn_residual(ops.attn_residual(tokens, o))
    if prompts is None or not keep_prompts:
        return tokens, None, cls_attn
    return tokens[:, :n], tokens[:, n:], cls_attn


class PromptedBackboneMixin:
    """Prompting, freezing and checkpoint loading for a host ViT.

    The host class calls ``_init_prompting`` at the end of ``__init__`` and
    ``_run_blocks`` in ``forward``.
    """
    #: 'mmseg' or 'mmpretrain': the key layout of the host's state dict.
    host_format: str = None
    prompter: Optional[Prompter]

    def _init_prompting(self, prompt: Optional[dict], freeze_backbone: bool,
                        trainable: Iterable[str], block_ops_cls, num_heads: int,
                        patch_size: int, embed_dims: int):
        self.prompter = build_prompter(
            prompt, num_layers=len(self.layers), embed_dims=embed_dims,
            num_heads=num_heads, patch_size=patch_size)
        if self.prompter is not None and self.prompter.requires_cls_token \
                and not self.with_cls_token:
            reason = getattr(self.prompter, 'cls_token_reason',
                             'ranks patches by CLS attention')
            raise ValueError(f'{type(self.prompter).__name__} {reason}: set '
                             f'with_cls_token=True.')
        # Plain list: views over the layers, not modules of their own.
        self._block_ops = [block_ops_cls(layer) for layer in self.layers]
        self.freeze_backbone = freeze_backbone
        # Host parameters the method itself trains (e.g. DA-VPT+ presets),
        # by logical name, resolved for this host.
        parts = list(getattr(self.prompter, 'host_parts', ()) or ())
        part_patterns = block_ops_cls.part_patterns(parts)
        self.trainable = list(trainable) + [
            p for p in part_patterns if p not in trainable]
        self._freeze_host()
        if self.prompter is not None:
            counts = {}
            for part, pattern in zip(parts, part_patterns):
                counts[part] = sum(
                    p.numel() for n, p in self.named_parameters()
                    if not n.startswith('prompter.')
                    and fnmatch.fnmatch(n, pattern))
                if freeze_backbone and counts[part] == 0:
                    raise ValueError(f'Host part {part!r} ({pattern}) '
                                     f'matches no parameter of this backbone.')
            self.prompter.host_frozen(counts)

    # -- freezing -------------------------------------------------------------
    def _freeze_host(self):
        """requires_grad is set once, here: prompts and ``trainable`` name
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

    def train(self, mode: bool = True):
        """Frozen parts stay in eval mode (no dropout / drop-path)."""
        super().train(mode)
        if mode and self.freeze_backbone:
            _eval_frozen(self, skip=('prompter', ))
        return self

    # -- forward ----------------------------------------------------------------
    def _run_blocks(self, x: Tensor, ctx: PromptContext, on_output):
        """Run every block; ``on_output(i, x)`` gets the instance tokens after
        block ``i``.  Prompts never leave this loop."""
        carried: Dict[str, Tensor] = {}
        prompter = self.prompter
        for i, ops in enumerate(self._block_ops):
            if prompter is None:
                prompts, names, sizes = None, [], []
                attention, need_cls, bias_delta = _PLAIN_ATTENTION, False, None
                keep = False
            else:
                prompt_sets = prompter.block_prompts(i, ctx, x, carried)
                names = list(prompt_sets)
                sizes = [t.shape[1] for t in prompt_sets.values()]
                prompts = torch.cat(list(prompt_sets.values()), 1) \
                    if prompt_sets else None
                attention = prompter.block_attention(i)
                need_cls = prompter.needs_cls_attention(i)
                bias_delta = prompter.qkv_bias_delta(i)
                keep = prompter.keeps_prompt_outputs(i)
            args = (ops, x, prompts, attention, need_cls, bias_delta, keep)
            if getattr(self, 'with_cp', False) and self.training:
                x_out, p_out, cls_attn = checkpoint(
                    prompted_block, *args, use_reentrant=False)
            else:
                x_out, p_out, cls_attn = prompted_block(*args)
            if prompter is not None:
                ctx.cls_attn = cls_attn
                prompts_out = dict(zip(names, p_out.split(sizes, 1))) \
                    if p_out is not None else {}
                prompter.after_block(i, ctx, ops, x,
                                     prompt_sets, x_out, prompts_out)
                carried = prompts_out
            x = x_out
            x = on_output(i, x)
        return x

    def make_context(self, batch_size: int,
                     targets: Optional[dict] = None) -> PromptContext:
        return PromptContext(batch_size=batch_size, training=self.training,
                             targets=targets)

    def forward_with_losses(self, inputs: Tensor, targets: Optional[dict] = None
                            ) -> Tuple[tuple, Dict[str, Tensor]]:
        """Features and the prompter's auxiliary losses (training only)."""
        ctx = self.make_context(inputs.shape[0], targets)
        outs = self._forward(inputs, ctx)
        return outs, ctx.losses

    def forward(self, inputs: Tensor) -> tuple:
        return self._forward(inputs, self.make_context(inputs.shape[0]))

    # -- checkpoints ------------------------------------------------------------
    def init_weights(self):
        from .checkpoint import load_pretrained
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'))
            self._is_init = True
        else:
            super().init_weights()


# Without a prompter every block runs plain (coupled) attention.
_PLAIN_ATTENTION = PromptAttention()


def _eval_frozen(module: nn.Module, skip=()):
    """Put every sub-tree without trainable parameters in eval mode."""
    for name, child in module.named_children():
        if name in skip:
            continue
        if any(p.requires_grad for p in child.parameters()):
            _eval_frozen(child)
        else:
            child.eval()
