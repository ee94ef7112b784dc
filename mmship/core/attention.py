"""The one attention used by every prompted block, coupled (VPT) or decoupled
(SHIP, docs/ship.md "Decoupled attention").

Token layout inside a block is ``[instances (CLS + patches), prompts]``: prompts
are appended after the instance tokens, so instance outputs are the leading
``num_instances`` rows and no gather/scatter is ever needed.

Everything goes through ``F.scaled_dot_product_attention``; no N x N attention
matrix is materialised.  The only explicit softmax is the optional CLS row
(1 x N per head), used by methods that rank patches by CLS attention.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmship.registry import MODELS


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

    def forward(self, q: Tensor, k: Tensor, v: Tensor, num_instances: int,
                dropout_p: float = 0.0, normed: Tensor = None) -> Tensor:
        """k, v: (B, heads, N, head_dim), N = num_instances + prompts; q has
        the same rows, or the instance rows and the kept prompts' rows only
        (``BlockSpec.kept``: the prompt outputs that the next block carries
        or ``after_block`` reads; the other prompts only lend k and v).
        ``normed``: the block's normalised input tokens (B, N, D) (needed by
        ``prompt_update='bypass'``).

        Returns the attention output for the rows of ``q``.
        """
        num_prompts = k.shape[2] - num_instances
        if num_prompts and q.shape[2] > num_instances and \
                self.prompt_update == 'bypass':
            return self._bypass(q, k, v, num_instances, dropout_p, normed)
        if not self.decoupled or num_prompts == 0:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        q_x = q[:, :, :num_instances]
        k_x, k_p = k.split([num_instances, num_prompts], dim=2)
        v_x, v_p = v.split([num_instances, num_prompts], dim=2)
        i2i = F.scaled_dot_product_attention(q_x, k_x, v_x, dropout_p=dropout_p)
        i2p = F.scaled_dot_product_attention(q_x, k_p, v_p, dropout_p=dropout_p)
        out = torch.lerp(i2i, i2p, self.lambda_d)
        if q.shape[2] == num_instances:
            return out
        p2ip = F.scaled_dot_product_attention(q[:, :, num_instances:], k, v,
                                              dropout_p=dropout_p)
        return torch.cat([out, p2ip], dim=2)

    def _bypass(self, q, k, v, num_instances, dropout_p, normed):
        """Instance rows as usual; prompt rows (those of ``q``) are
        ``LN1(p)`` split into heads (the head merge of the block gives
        ``LN1(p)`` back)."""
        if normed is None:
            raise ValueError("prompt_update='bypass' needs the block's "
                             'normalised input tokens (`normed`).')
        out = self.forward(q[:, :, :num_instances], k, v, num_instances,
                           dropout_p)
        B, H, rows = q.shape[:3]
        p = normed[:, num_instances:rows]
        p = p.reshape(B, p.shape[1], H, -1).transpose(1, 2)
        return torch.cat([out, p.to(out.dtype)], dim=2)

    def extra_repr(self) -> str:
        update = '' if self.prompt_update == 'attend' else \
            f', prompt_update={self.prompt_update!r}'
        if self.decoupled:
            return f'decoupled=True, lambda_d={self.lambda_d}{update}'
        return f'decoupled=False{update}'


def cls_attention(q: Tensor, k: Tensor, num_instances: int) -> Tensor:
    """Softmax attention of the CLS query (token 0) over the patch tokens,
    averaged over heads: (B, num_instances - 1).

    Computed over instance keys only.  Under decoupled attention this is the
    I2I softmax itself; under coupled attention prompt keys would rescale
    each head's row by its own factor, so the head average can rank patches
    slightly differently from the full rows'.
    """
    scale = q.shape[-1] ** -0.5
    # fp32 logits: bf16 rounds near-equal logits together and reorders the
    # top patches.
    with torch.autocast(q.device.type, enabled=False):
        logits = (q[:, :, :1].float() * scale) @ \
            k[:, :, :num_instances].float().transpose(-2, -1)
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
