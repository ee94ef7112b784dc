"""Prompt placements: one mechanism for every way prompts enter a ViT.

A prompter owns *prompt sources* (learnable sets, or modules that compute a
set per sample) and a *schedule*: for every block, which sources enter it and
how.  Each entry is one of

* ``Insert(name)`` -- drop whatever that source had and insert a fresh set
  from the source (VPT-deep, shared, group start, per-sample sets), or
* ``Carry(name)`` -- carry the source's prompt outputs of the previous block
  on (VPT-shallow, inside a group).

Sources not named for a block are dropped before it.  VPT-shallow, VPT-deep,
one shared set, one set per group and per-sample sets are all schedules.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class Insert:
    source: str


@dataclass(frozen=True)
class Carry:
    source: str


Step = Union[Insert, Carry]
PLACEMENTS = ('shallow', 'deep', 'shared', 'group')


def vpt_init_bound(patch_size: int, embed_dims: int) -> float:
    """VPT's uniform init bound sqrt(6 / (3 * p^2 + D)) (0.0625 for B/16)."""
    return math.sqrt(6.0 / float(3 * patch_size * patch_size + embed_dims))


class _BitMaskDropout(torch.autograd.Function):
    """``F.dropout`` whose backward keeps the mask as bits, not bools;
    ``bits``: the weights 1, 2, ..., 128 of one byte (uint8).  The fused
    ``native_dropout`` kernels do the sampling and the gradient, as in
    ``F.dropout``; packing adds two kernels over the mask."""

    @staticmethod
    def forward(ctx, x: Tensor, p: float, bits: Tensor) -> Tensor:
        out, keep = torch.native_dropout(x, p, True)
        flat = keep.view(-1).view(torch.uint8)
        if flat.numel() % 8:
            flat = F.pad(flat, (0, -flat.numel() % 8))
        ctx.save_for_backward((flat.view(-1, 8) * bits).sum(
            1, dtype=torch.uint8), bits)
        ctx.p, ctx.shape = p, keep.shape
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        packed, bits = ctx.saved_tensors
        keep = (packed[:, None] & bits).view(-1)[:ctx.shape.numel()]
        return torch.ops.aten.native_dropout_backward(
            grad, keep.view(ctx.shape).bool(), 1.0 / (1.0 - ctx.p)), None, None


class PromptDropout(nn.Module):
    """Dropout at prompt insertion (``nn.Dropout``'s interface).  Prompt sets
    are expanded over the batch, so their masks are as large as their
    tokens; the backward keeps them as bits (1/8 of a bool mask: SHIP K=50
    at ViT-B/16 batch 256 kept 79 MiB of masks at its step-memory peak, the
    margin of its 1.2x target; docs/performance.md)."""

    def __init__(self, p: float = 0.1):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f'Prompt dropout must lie in [0, 1), got {p}.')
        self.p = p
        # a buffer, so that it moves with the module: capture refuses copies
        self.register_buffer('bits', 2 ** torch.arange(8, dtype=torch.uint8),
                             persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and self.p):
            return x
        if not (torch.is_grad_enabled() and x.requires_grad):
            return F.dropout(x, self.p)
        return _BitMaskDropout.apply(x, self.p, self.bits)

    def extra_repr(self) -> str:
        return f'p={self.p}'


class LearnablePrompts(nn.Module):
    """A learnable set of ``num_tokens`` prompts, with dropout at insertion.

    Args:
        init (str): ``'vpt'`` (uniform in +-vpt_init_bound) or ``'xavier'``
            (xavier_uniform on the (1, K, D) tensor, the SHIP reference).
    """

    def __init__(self, num_tokens: int, embed_dims: int, patch_size: int,
                 dropout: float = 0.1, init: str = 'vpt'):
        super().__init__()
        if num_tokens < 1:
            raise ValueError(f'A prompt set needs at least one token, got '
                             f'num_tokens={num_tokens}.')
        self.tokens = nn.Parameter(torch.empty(1, num_tokens, embed_dims))
        if init == 'vpt':
            bound = vpt_init_bound(patch_size, embed_dims)
            nn.init.uniform_(self.tokens, -bound, bound)
        elif init == 'xavier':
            nn.init.xavier_uniform_(self.tokens)
        else:
            raise ValueError(f"Unknown prompt init {init!r}: use 'vpt' or "
                             f"'xavier'.")
        self.dropout = PromptDropout(dropout)

    @property
    def num_tokens(self) -> int:
        return self.tokens.shape[1]

    def forward(self, ctx) -> Tensor:
        tokens = self.tokens.expand(ctx.batch_size, -1, -1)
        return self.dropout(tokens) if self.training else tokens


def placement_schedule(kind: str, name: str, num_layers: int,
                       blocks: Sequence[int] = None,
                       starts: Sequence[int] = None) -> Dict[str, List[Step]]:
    """Schedule steps (block -> steps) and the source names of one placement.

    Returns ``{source_name: [(block, step), ...]}``.
    """
    if kind == 'shallow':
        return {name: [(0, Insert(name))] +
                [(i, Carry(name)) for i in range(1, num_layers)]}
    if kind == 'deep':
        blocks = range(num_layers) if blocks is None else blocks
        return {f'{name}.{i}': [(i, Insert(f'{name}.{i}'))] for i in blocks}
    if kind == 'shared':
        return {name: [(i, Insert(name)) for i in range(num_layers)]}
    if kind == 'group':
        starts = check_group_starts(starts, num_layers)
        ends = list(starts[1:]) + [num_layers]
        return {
            f'{name}.{s}': [(s, Insert(f'{name}.{s}'))] +
            [(i, Carry(f'{name}.{s}')) for i in range(s + 1, e)]
            for s, e in zip(starts, ends)
        }
    raise ValueError(f'Unknown prompt placement {kind!r}; choose one of '
                     f'{PLACEMENTS}.')


def check_group_starts(starts, num_layers: int) -> List[int]:
    """Validate a layer hierarchy given as group start blocks."""
    if starts is None or len(starts) == 0:
        raise ValueError('A group placement needs `starts`, the first block '
                         'of every group, e.g. starts=[0, 4, 8].')
    starts = [int(s) for s in starts]
    if starts[0] != 0:
        raise ValueError(f'Group starts must begin with block 0, got {starts}.')
    if any(b <= a for a, b in zip(starts, starts[1:])):
        raise ValueError(f'Group starts must be strictly increasing, got '
                         f'{starts}.')
    if starts[-1] >= num_layers:
        raise ValueError(f'Group start {starts[-1]} is outside the backbone, '
                         f'which has blocks 0..{num_layers - 1}.')
    return starts
