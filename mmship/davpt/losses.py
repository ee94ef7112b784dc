"""Proxy-Anchor loss with prompts as proxies (docs/davpt.md, "Proxy-Anchor
loss").

For features x_i and proxies p_k, both unit-normalised, s_ik = r cos(x_i, p_k)
and ``pos_mask[i, k]`` says whether x_i is a positive of proxy k (its class,
or one of its classes, maps to k):

    L = 1/Z sum_{k in K+} log(1 + sum_{i in pos(k)} exp(-alpha (s_ik - delta)))
      + 1/|K| sum_{k in K} log(1 + sum_{i in neg(k)} exp( alpha (s_ik + delta)))

K are all proxies, K+ those with at least one positive in the batch.

* ``pos_normalization='all'`` (default): Z = |K|, the positive term is a mean
  over all proxies, a proxy without positives adding log(1) = 0.  This is
  what the DA-VPT reference code computes (``pos_s.mean()`` over every
  proxy column, empty columns filled with 0) and what docs/davpt.md
  ("Proxy-Anchor loss") writes.
* ``pos_normalization='with_positives'``: Z = |K+|, Proxy-Anchor's own
  normalisation; it weighs the positive term |K| / |K+| times more when a
  batch holds few classes.

The negative term is always averaged over every proxy.

``scale_ratio`` is the reference's ``loss_vpt_scale_ratio`` r: it multiplies
the unit-normalised proxies, hence every cosine, *before* alpha and delta
(s_ik = r cos); with r = 5 the margin delta = 0.1 sits at cos = 0.02 and the
slope is alpha r = 160.  r = 1 is plain Proxy-Anchor.

``log(1 + sum exp(z))`` is computed as ``logsumexp([0, z...])``, and the whole
loss runs in fp32 with autocast off: alpha = 32 makes exp() overflow bf16/fp16.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmship.registry import MODELS


def _log1p_sum_exp(z: Tensor, mask: Tensor) -> Tensor:
    """Per column k: log(1 + sum_{i: mask[i, k]} exp(z[i, k])), stably."""
    z = z.masked_fill(~mask, float('-inf'))
    zero = z.new_zeros(1, z.shape[1])
    return torch.logsumexp(torch.cat([zero, z], dim=0), dim=0)


POS_NORMALIZATIONS = ('all', 'with_positives')


def _check_pos_normalization(pos_normalization: str) -> str:
    if pos_normalization not in POS_NORMALIZATIONS:
        raise ValueError(f'pos_normalization must be one of '
                         f'{POS_NORMALIZATIONS}, got {pos_normalization!r}.')
    return pos_normalization


def proxy_anchor_loss(x: Tensor, proxies: Tensor, pos_mask: Tensor,
                      alpha: float = 32.0, delta: float = 0.1,
                      scale_ratio: float = 1.0,
                      pos_normalization: str = 'all') -> Tensor:
    """Proxy-Anchor loss (module docstring).

    Args:
        x: (N, D) features.
        proxies: (K, D) proxies.
        pos_mask: (N, K) bool, True where x_i is a positive of proxy k; each
            row may have several Trues (multi-label).
        alpha, delta: Proxy-Anchor's scale and margin.
        scale_ratio: r, multiplies every cosine before alpha and delta.
        pos_normalization: ``'all'`` (1/|K|) or ``'with_positives'``
            (1/|K+|) for the positive term.
    Returns:
        A scalar fp32 tensor.
    """
    _check_pos_normalization(pos_normalization)
    if x.dim() != 2 or proxies.dim() != 2 or x.shape[1] != proxies.shape[1]:
        raise ValueError(f'proxy_anchor_loss needs x (N, D) and proxies (K, D)'
                         f', got {tuple(x.shape)} and {tuple(proxies.shape)}.')
    if pos_mask.shape != (x.shape[0], proxies.shape[0]):
        raise ValueError(f'pos_mask must be (N, K) = {(x.shape[0], proxies.shape[0])}'
                         f', got {tuple(pos_mask.shape)}.')
    device_type = x.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        x = F.normalize(x.float(), dim=-1)
        p = F.normalize(proxies.float(), dim=-1)
        sim = float(scale_ratio) * (x @ p.t())            # (N, K)
        pos_mask = pos_mask.bool()
        pos_term = _log1p_sum_exp(-alpha * (sim - delta), pos_mask)
        neg_term = _log1p_sum_exp(alpha * (sim + delta), ~pos_mask)
        with_pos = pos_mask.any(dim=0)
        if pos_normalization == 'all':
            num = float(pos_mask.shape[1])   # no host-to-device copy
        else:
            num = with_pos.sum().clamp(min=1)
        loss = (pos_term * with_pos).sum() / num + neg_term.mean()
    return loss


@MODELS.register_module()
class ProxyAnchorLoss(nn.Module):
    """``proxy_anchor_loss`` times ``loss_weight`` (beta or lambda).

    Args:
        alpha (float): scale (Proxy-Anchor default 32).
        delta (float): margin (Proxy-Anchor default 0.1).
        loss_weight (float): weight of this instance in the total loss.
        scale_ratio (float): r, the reference's ``loss_vpt_scale_ratio``:
            s = r cos(x, p) before alpha and delta.  Default 1 (plain
            Proxy-Anchor, the reference's own default); its configs use 5
            (51 of 61, and its segmentation backbone), also 1, 10 and 60.
        pos_normalization (str): ``'all'`` (default, the reference: mean of
            the positive term over all proxies) or ``'with_positives'``
            (Proxy-Anchor's 1/|K+|).
    """

    def __init__(self, alpha: float = 32.0, delta: float = 0.1,
                 loss_weight: float = 1.0, scale_ratio: float = 1.0,
                 pos_normalization: str = 'all'):
        super().__init__()
        self.alpha = float(alpha)
        self.delta = float(delta)
        self.loss_weight = float(loss_weight)
        self.scale_ratio = float(scale_ratio)
        if self.scale_ratio <= 0:
            raise ValueError(f'scale_ratio must be > 0, got {scale_ratio}.')
        self.pos_normalization = _check_pos_normalization(pos_normalization)

    def forward(self, x: Tensor, proxies: Tensor,
                pos_mask: Tensor) -> Tensor:
        if x.shape[0] == 0:
            # No feature in this batch (e.g. every pixel ignored): a zero that
            # keeps the proxies in the graph.
            return proxies.float().sum() * 0.0
        return self.loss_weight * proxy_anchor_loss(
            x, proxies, pos_mask, self.alpha, self.delta, self.scale_ratio,
            self.pos_normalization)

    def extra_repr(self) -> str:
        return (f'alpha={self.alpha}, delta={self.delta}, '
                f'loss_weight={self.loss_weight}, '
                f'scale_ratio={self.scale_ratio}, '
                f'pos_normalization={self.pos_normalization!r}')


def labels_to_pos_mask(labels: Tensor, mapping: Tensor,
                       num_proxies: int) -> Tensor:
    """(N,) class labels -> (N, M) bool, True at the proxy of each label.
    (A comparison, not ``F.one_hot``, which checks its range on the host:
    one device sync per call.)"""
    proxy = mapping[labels]
    return proxy[:, None] == torch.arange(num_proxies, device=proxy.device)


def class_sets_to_pos_mask(class_sets: Tensor, mapping: Tensor,
                           num_proxies: int) -> Tensor:
    """(B, C) bool class presence -> (B, M) bool: proxy k is positive for an
    image when any class present in it maps to k (multi-label)."""
    onehot = (mapping[:, None] == torch.arange(
        num_proxies, device=mapping.device)).to(torch.float32)     # (C, M)
    return (class_sets.to(torch.float32) @ onehot) > 0


__all__ = ['proxy_anchor_loss', 'ProxyAnchorLoss', 'labels_to_pos_mask',
           'class_sets_to_pos_mask']
