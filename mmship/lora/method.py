"""LoRA (Hu et al., 2022) on a frozen ViT: ``W_q += s B_q A_q`` and
``W_v += s B_v A_v`` in every block, ``s = alpha / rank``.

The deltas reach the blocks as ``LowRank`` side paths of the fused qkv
projection (``x A^T B^T s``), so no dense weight delta is formed and the
frozen qkv weight gets no gradient GEMM.  ``B`` starts at zero: the model
starts as the frozen host.
"""
import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmship.core.method import LowRank, TuningMethod, check_blocks
from mmship.registry import METHODS

QKV = ('q', 'k', 'v')


@METHODS.register_module()
class LoRA(TuningMethod):
    """Low-rank deltas of the attention's q / k / v projections.

    Args:
        num_layers, embed_dims, num_heads, patch_size: filled in by the
            backbone.
        rank (int): r, the rank of every delta.
        alpha (float): the deltas are scaled by ``alpha / rank``.
        targets (list[str]): which of ``'q'``, ``'k'``, ``'v'`` get a delta
            (default q and v, as the LoRA paper).
        blocks (list[int], optional): blocks with deltas (default all).
    """
    delta_targets = ('qkv.weight', )

    def __init__(self, num_layers: int, embed_dims: int, num_heads: int,
                 patch_size: int, rank: int = 8, alpha: float = 16.0,
                 targets: Sequence[str] = ('q', 'v'),
                 blocks: Optional[Sequence[int]] = None, init_cfg=None):
        super().__init__(num_layers, embed_dims, num_heads, patch_size,
                         init_cfg=init_cfg)
        if int(rank) < 1:
            raise ValueError(f'LoRA rank must be >= 1, got {rank}.')
        targets = [str(t) for t in targets]
        if not targets or any(t not in QKV for t in targets) or \
                len(set(targets)) != len(targets):
            raise ValueError(f"LoRA targets are a non-empty subset of "
                             f"{list(QKV)}, each once; got {targets}.")
        self.rank = int(rank)
        self.alpha = float(alpha)
        self.scale = self.alpha / self.rank
        self.targets = [t for t in QKV if t in targets]
        blocks = list(range(num_layers)) if blocks is None else \
            [int(b) for b in blocks]
        check_blocks(blocks, num_layers, 'LoRA deltas')
        t, r, d = len(self.targets), self.rank, embed_dims
        # down: the targets' A stacked (t r, D); up: their B (t, D, r)
        self.down = nn.ParameterDict()
        self.up = nn.ParameterDict()
        for b in blocks:
            down = torch.empty(t * r, d)
            for i in range(t):   # as peft: kaiming-uniform A, zero B
                nn.init.kaiming_uniform_(down[i * r:(i + 1) * r],
                                         a=math.sqrt(5))
            self.down[str(b)] = nn.Parameter(down)
            self.up[str(b)] = nn.Parameter(torch.zeros(t, d, r))

    def block_deltas(self, block: int) -> Dict[str, LowRank]:
        if str(block) not in self.down:
            return {}
        up = self.up[str(block)]
        t, d, r = up.shape
        # (3D, t r): target i's B in its q/k/v rows and its own r columns
        rows = []
        for part in QKV:
            if part in self.targets:
                i = self.targets.index(part)
                rows.append(F.pad(up[i], (i * r, (t - i - 1) * r)))
            else:
                rows.append(up.new_zeros(d, t * r))
        return {'qkv.weight': LowRank(self.down[str(block)],
                                      torch.cat(rows), self.scale)}

    def extra_repr(self) -> str:
        return (f'rank={self.rank}, alpha={self.alpha}, '
                f'targets={self.targets}, blocks={sorted(map(int, self.down))}')
