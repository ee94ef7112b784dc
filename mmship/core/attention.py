"""The one attention used by every prompted block, coupled (VPT) or decoupled
(SHIP, docs/ship.md "Decoupled attention").

Two layouts (``backbone.block_core`` picks one per block):

* ``joint``: one token tensor ``[instances (CLS + patches), kept prompts,
  lent prompts]``, one qkv GEMM over all tokens; instance outputs are the
  leading rows.  Fewest kernel launches; coupled attention always runs so.
* ``streams`` (decoupled attention, large blocks): instances and prompts are
  two streams.  Decoupled instance rows never attend over both key sets at
  once, so the instance stream runs the host's own kernels on the host's
  tensors and no (B, N + P, D) token tensor is concatenated or sliced; only
  the kept prompts' P2IP joins the keys.  Less memory traffic, more (small)
  launches.

Attention runs through ``F.scaled_dot_product_attention``, except the two
prompt attentions of two-stream decoupled blocks on CUDA: the
instance-to-prompt branch with its lerp and the kept prompts' rows (P2IP)
are Triton kernels (``attention_kernels.py``: a few prompt keys, or a few
prompt queries, waste most of a flash kernel).  No N x N attention matrix
is materialised.  The only explicit softmax is the optional CLS row (1 x N
per head), used by methods that rank patches by CLS attention.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmship.registry import MODELS
from .attention_kernels import pays_off, prompt_branch, prompt_rows, usable


@MODELS.register_module()
class PromptAttention(nn.Module):
    """Attention of instance tokens and prompts over a shared q/k/v.

    Args:
        decoupled (bool): False: ordinary softmax attention over all tokens
            (VPT).  True: instance queries get
            ``(1 - lambda_d) * I2I + lambda_d * I2P`` (two separate softmaxes,
            over instance keys and over prompt keys), so at ``lambda_d = 0``
            instances are untouched by prompts.
        lambda_d (float): weight of the instance-to-prompt branch.

        prompt_update (str): what the prompt rows get.  ``'attend'``
            (default): prompt queries attend over ``[instances, prompts]``
            (P2IP under decoupled attention, the full rows under coupled
            attention).  ``'bypass'``: prompts skip attention -- their
            attention output is their own normalised input ``LN1(p)``, which
            then goes through the block's output projection, residual and
            FFN like every token (what the SHIP reference does with prompts
            outside its PML block).  Bypassed prompt outputs depend on no
            other token; no prompt query is used.

    ``'attend'`` costs ``N_p x (N_x + N_p)`` scores per head (small next to
    ``N_x^2``) and keeps prompts carried inside a group input-aware.
    """
    PROMPT_UPDATES = ('attend', 'bypass')

    def __init__(self, decoupled: bool = False, lambda_d: float = 0.1,
                 prompt_update: str = 'attend'):
        super().__init__()
        if not 0.0 <= lambda_d <= 1.0:
            raise ValueError(f'lambda_d must lie in [0, 1], got {lambda_d}.')
        if prompt_update not in self.PROMPT_UPDATES:
            raise ValueError(f'prompt_update must be one of '
                             f'{self.PROMPT_UPDATES}, got {prompt_update!r}.')
        self.decoupled = decoupled
        self.lambda_d = lambda_d
        self.prompt_update = prompt_update

    def joint(self, q: Tensor, k: Tensor, v: Tensor, num_instances: int,
              dropout_p: float = 0.0, normed: Optional[Tensor] = None
              ) -> Tensor:
        """Attention on one token tensor ``[instances, kept prompts, lent
        prompts]``: k, v (B, heads, N, head_dim) hold every token, q the
        rows to compute (the instances and the kept prompts;
        ``BlockSpec.kept``).  ``normed``: the block's normalised input
        tokens (B, N, D) (needed by ``prompt_update='bypass'``).

        Returns the attention output for the rows of ``q``.
        """
        n = num_instances
        if q.shape[2] > n and self.prompt_update == 'bypass':
            out = self.joint(q[:, :, :n], k, v, n, dropout_p)
            kept = None if normed is None else normed[:, n:q.shape[2]]
            return torch.cat([out, self._bypass(kept, q.shape[1], out.dtype)],
                             dim=2)
        if not self.decoupled or k.shape[2] == n:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        k_x, k_p = k.split([n, k.shape[2] - n], dim=2)
        v_x, v_p = v.split([n, v.shape[2] - n], dim=2)
        out, _ = self.streams(q[:, :, :n], k_x, v_x, k_p, v_p,
                              dropout_p=dropout_p)
        if q.shape[2] == n:
            return out
        p2ip = F.scaled_dot_product_attention(q[:, :, n:], k, v,
                                              dropout_p=dropout_p)
        return torch.cat([out, p2ip], dim=2)

    def streams(self, q: Tensor, k: Tensor, v: Tensor, k_p: Tensor,
                v_p: Tensor, q_p: Optional[Tensor] = None,
                dropout_p: float = 0.0, normed_p: Optional[Tensor] = None
                ) -> Tuple[Tensor, Optional[Tensor]]:
        """Decoupled attention on two streams: q, k, v (B, heads, N,
        head_dim) are the instance tokens', ``k_p``, ``v_p`` (B, heads, P,
        head_dim) every prompt's entering the block, ``q_p`` (B, heads, R,
        head_dim) the kept prompts' queries (None when none is kept).
        ``normed_p``: the kept prompts' normalised inputs (B, R, D) (needed
        by ``prompt_update='bypass'``).

        Returns the attention output of the instance rows, and of the kept
        prompt rows (None without ``q_p``).
        """
        if not self.decoupled:
            raise RuntimeError('Coupled attention runs on one token tensor '
                               '(PromptAttention.joint): each query has one '
                               'softmax over every key.')
        i2i = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        kernels = pays_off(q)
        if kernels and usable(q, k_p.shape[2], dropout_p):
            out = prompt_branch(i2i, q, k_p, v_p, self.lambda_d)
        else:
            out = torch.lerp(i2i, F.scaled_dot_product_attention(
                q, k_p, v_p, dropout_p=dropout_p), self.lambda_d)
        if q_p is None:
            return out, None
        if self.prompt_update == 'bypass':
            return out, self._bypass(normed_p, q_p.shape[1], out.dtype)
        # P2IP: the only softmax over both key sets
        if kernels and usable(q_p, q_p.shape[2], dropout_p):
            return out, prompt_rows(q_p, k, v, k_p, v_p)
        return out, F.scaled_dot_product_attention(
            q_p, torch.cat([k, k_p], dim=2), torch.cat([v, v_p], dim=2),
            dropout_p=dropout_p)

    @staticmethod
    def _bypass(normed_p: Optional[Tensor], num_heads: int, dtype):
        """Prompt rows are ``LN1(p)`` split into heads (the head merge of the
        block gives ``LN1(p)`` back)."""
        if normed_p is None:
            raise ValueError("prompt_update='bypass' needs the normalised "
                             'inputs of the kept prompts.')
        B, R, _ = normed_p.shape
        return normed_p.reshape(B, R, num_heads, -1).transpose(1, 2) \
            .to(dtype)

    def extra_repr(self) -> str:
        update = '' if self.prompt_update == 'attend' else \
            f', prompt_update={self.prompt_update!r}'
        if self.decoupled:
            return f'decoupled=True, lambda_d={self.lambda_d}{update}'
        return f'decoupled=False{update}'


def cls_attention(q: Tensor, k: Tensor) -> Tensor:
    """Softmax attention of the CLS query (token 0) over the patch tokens,
    averaged over heads: (B, N - 1) for the instance queries and keys q, k
    (B, heads, N, head_dim).

    Computed over instance keys only.  Under decoupled attention this is the
    I2I softmax itself; under coupled attention prompt keys would rescale
    each head's row by its own factor, so the head average can rank patches
    slightly differently from the full rows'.

    No gradient: it only ranks patches (top-k indices carry none), and a
    graph would keep an fp32 copy of the keys alive for nothing.
    """
    scale = q.shape[-1] ** -0.5
    # fp32 logits: bf16 rounds near-equal logits together and reorders the
    # top patches.
    with torch.no_grad(), torch.autocast(q.device.type, enabled=False):
        logits = (q[:, :, :1].float() * scale) @ \
            k.float().transpose(-2, -1)
    probs = logits.softmax(dim=-1).mean(dim=1).squeeze(1)
    return probs[:, 1:]


def top_patch_indices(cls_attn: Tensor, k: int) -> Tensor:
    """Indices (into the instance tokens, CLS = 0) of the ``k`` patches with
    the highest CLS attention: (B, k)."""
    if k > cls_attn.shape[1]:
        raise ValueError(f'Asked for the top {k} patches of an image that '
                         f'has {cls_attn.shape[1]} patches.')
    return cls_attn.topk(k, dim=1).indices + 1


def gather_tokens(x: Tensor, index: Tensor) -> Tensor:
    """x: (B, N, D), index: (B, k) -> (B, k, D)."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


__all__ = ['PromptAttention', 'cls_attention', 'top_patch_indices',
           'gather_tokens']
