"""Views of the hosts' transformer blocks as the operations a prompted
block needs: norm1, qkv (or kv alone), the attention residual and the FFN
residual.  The
host's modules and weights are used as they are, so checkpoints keep their
keys and method-free outputs equal the host's.  qkv and the attention's
output projection take a method's parameter deltas (``method.py``:
``DELTA_TARGETS``).
"""
from typing import Dict, Optional

import torch.nn.functional as F
from mmcv.cnn.bricks.transformer import FFN
from torch import Tensor

from .method import Delta, LowRank


def delta_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor],
                 deltas: Dict[str, Delta], name: str,
                 rows: Optional[slice] = None) -> Tensor:
    """``F.linear`` of a frozen layer with the deltas ``name.weight`` /
    ``name.bias`` of ``deltas`` applied.  ``rows``: compute only these
    output features (the same rows of the weight, the bias and the
    deltas)."""
    dw = deltas.get(f'{name}.weight')
    db = deltas.get(f'{name}.bias')
    if rows is not None:
        weight = weight[rows]
        bias = None if bias is None else bias[rows]
        db = None if db is None else db[rows]
        if isinstance(dw, LowRank):
            dw = dw._replace(up=dw.up[rows])
        elif dw is not None:
            dw = dw[rows]
    if db is not None:
        bias = db if bias is None else bias + db
    if isinstance(dw, Tensor):
        weight = weight + dw
    out = F.linear(x, weight, bias)
    if isinstance(dw, LowRank):
        out = out + F.linear(F.linear(x, dw.down), dw.up) * dw.scale
    return out


def ffn_residual(ffn, x: Tensor, identity: Tensor) -> Tensor:
    """``ffn(x, identity=identity)``.  mmcv's ``FFN.forward`` sits behind a
    deprecated-argument wrapper that inspects its signature on every call;
    its body is run here directly (other FFNs, e.g. mmpretrain's SwiGLU, are
    called)."""
    if type(ffn) is FFN and ffn.add_identity:
        return identity + ffn.dropout_layer(ffn.gamma2(ffn.layers(x)))
    return ffn(x, identity=identity)


class _BlockOps:
    """Common part: the qkv projection over the host's ``_qkv_params``,
    head split and merge, and the names of host parameters a method may
    train (``TuningMethod.host_parts``)."""

    #: host parameters outside the blocks: logical name -> fnmatch pattern.
    BACKBONE_PARTS = {
        'cls_token': 'cls_token',
        'patch_embed_bias': 'patch_embed.projection.bias',
    }
    #: host parameters of every block, relative to the block.
    BLOCK_PARTS: dict = {}

    @classmethod
    def part_patterns(cls, parts, layers_prefix: str = 'layers') -> list:
        """fnmatch patterns of the host parameters named by ``parts``
        (every block for per-block parts)."""
        out = []
        for part in parts:
            if part in cls.BACKBONE_PARTS:
                out.append(cls.BACKBONE_PARTS[part])
            elif part in cls.BLOCK_PARTS:
                out.append(f'{layers_prefix}.*.{cls.BLOCK_PARTS[part]}')
            else:
                known = sorted(cls.BACKBONE_PARTS) + sorted(cls.BLOCK_PARTS)
                raise ValueError(f'Unknown host part {part!r}; known: '
                                 f'{known}.')
        return out

    def __init__(self, layer, num_heads: int):
        self.layer = layer
        self.num_heads = num_heads

    def qkv(self, x: Tensor, deltas: Dict[str, Delta]):
        """Queries, keys and values (B, heads, N, head_dim) of ``x``."""
        return self._split_heads(
            delta_linear(x, *self._qkv_params(), deltas, 'qkv'))

    def kv(self, x: Tensor, deltas: Dict[str, Delta]):
        """Keys and values only, for tokens that lend them and are not
        queried: the qkv projection's last two thirds."""
        weight, bias = self._qkv_params()
        rows = slice(weight.shape[0] // 3, None)
        return self._split_heads(
            delta_linear(x, weight, bias, deltas, 'qkv', rows), 2)

    def _split_heads(self, t: Tensor, parts: int = 3):
        """(B, N, parts * D) -> ``parts`` tensors (B, heads, N, head_dim)."""
        B, N, _ = t.shape
        return t.view(B, N, parts, self.num_heads, -1) \
            .permute(2, 0, 3, 1, 4).unbind(0)

    @staticmethod
    def _merge_heads(o: Tensor) -> Tensor:
        B, H, N, d = o.shape
        return o.transpose(1, 2).reshape(B, N, H * d)


class SegBlockOps(_BlockOps):
    """mmseg's ``TransformerEncoderLayer`` (mmcv MultiheadAttention around
    ``nn.MultiheadAttention``, mmcv FFN)."""
    BLOCK_PARTS = {
        'ln1': 'ln1.*',                          # LayerNorm-1 weight and bias
        'ln2_bias': 'ln2.bias',
        'attn_proj_bias': 'attn.attn.out_proj.bias',
        'ffn_fc1_bias': 'ffn.layers.0.0.bias',
        'ffn_fc2_bias': 'ffn.layers.1.bias',
    }

    def __init__(self, layer):
        super().__init__(layer, layer.attn.attn.num_heads)

    @property
    def attn_drop(self) -> float:
        return self.layer.attn.attn.dropout

    def norm1(self, x: Tensor) -> Tensor:
        return self.layer.norm1(x)

    def _qkv_params(self):
        mha = self.layer.attn.attn
        return mha.in_proj_weight, mha.in_proj_bias

    def attn_residual(self, x: Tensor, o: Tensor,
                      deltas: Dict[str, Delta]) -> Tensor:
        attn = self.layer.attn
        proj = attn.attn.out_proj
        out = delta_linear(self._merge_heads(o), proj.weight, proj.bias,
                           deltas, 'proj')
        return x + attn.dropout_layer(attn.proj_drop(out))

    def ffn_residual(self, x: Tensor) -> Tensor:
        return ffn_residual(self.layer.ffn, self.layer.norm2(x), x)


class PretrainBlockOps(_BlockOps):
    """mmpretrain's ``TransformerEncoderLayer`` (fused qkv Linear, layer
    scale ``gamma1``/``gamma2`` for DINOv2 / DeiT-3)."""
    BLOCK_PARTS = {
        'ln1': 'ln1.*',                          # LayerNorm-1 weight and bias
        'ln2_bias': 'ln2.bias',
        'attn_proj_bias': 'attn.proj.bias',
        'ffn_fc1_bias': 'ffn.layers.0.0.bias',
        'ffn_fc2_bias': 'ffn.layers.1.bias',
    }

    def __init__(self, layer):
        super().__init__(layer, layer.attn.num_heads)

    @property
    def attn_drop(self) -> float:
        return self.layer.attn.attn_drop

    def norm1(self, x: Tensor) -> Tensor:
        return self.layer.ln1(x)

    def _qkv_params(self):
        qkv = self.layer.attn.qkv
        return qkv.weight, qkv.bias

    def attn_residual(self, x: Tensor, o: Tensor,
                      deltas: Dict[str, Delta]) -> Tensor:
        attn = self.layer.attn
        out = delta_linear(self._merge_heads(o), attn.proj.weight,
                           attn.proj.bias, deltas, 'proj')
        return x + attn.out_drop(attn.gamma1(attn.proj_drop(out)))

    def ffn_residual(self, x: Tensor) -> Tensor:
        return ffn_residual(self.layer.ffn, self.layer.ln2(x), x)
