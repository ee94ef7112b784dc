"""DA-VPT's Proxy-Anchor loss against hand computations."""
import math

import pytest
import torch

from mmship.davpt.losses import (ProxyAnchorLoss, class_sets_to_pos_mask,
                                 labels_to_pos_mask, proxy_anchor_loss)
from mmship.registry import MODELS


def _cos(a, b):
    na = math.sqrt(sum(v * v for v in a))
    nb = math.sqrt(sum(v * v for v in b))
    return sum(x * y for x, y in zip(a, b)) / (na * nb)


def _hand_loss(x, p, pos, alpha, delta, r=1.0, norm='all'):
    """Proxy-Anchor with plain Python floats: s = r cos; the positive term
    summed over the proxies that have positives and divided by all proxies
    (``'all'``) or by those (``'with_positives'``), the negative term
    averaged over all proxies."""
    K = len(p)
    pos_terms, neg_terms = [], []
    for k in range(K):
        s_pos = [math.exp(-alpha * (r * _cos(x[i], p[k]) - delta))
                 for i in range(len(x)) if pos[i][k]]
        s_neg = [math.exp(alpha * (r * _cos(x[i], p[k]) + delta))
                 for i in range(len(x)) if not pos[i][k]]
        if s_pos:
            pos_terms.append(math.log(1 + sum(s_pos)))
        neg_terms.append(math.log(1 + sum(s_neg)))
    z = K if norm == 'all' else len(pos_terms)
    return sum(pos_terms) / z + sum(neg_terms) / K


X = [[1.0, 0.0], [0.6, 0.8], [0.0, -2.0], [-1.0, 1.0]]
P = [[1.0, 0.2], [0.0, 1.0], [-1.0, -1.0]]
# proxy 2 has no positive: the two normalisations differ.
POS = [[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]]


@pytest.mark.parametrize('alpha,delta', [(32.0, 0.1), (2.0, 0.3), (1.0, 0.0)])
def test_loss_matches_hand_computation(alpha, delta):
    got = proxy_anchor_loss(torch.tensor(X), torch.tensor(P),
                            torch.tensor(POS, dtype=torch.bool), alpha, delta)
    want = _hand_loss(X, P, POS, alpha, delta)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_positive_normalisation_options_on_a_hand_case():
    """One feature per proxy 0 and 1, none for proxy 2, alpha = 1, delta =
    0, features equal to their proxies (cos = 1) and orthogonal to the
    others (cos = 0): each present proxy's positive term is log(1 + e^-1);
    every negative term is log(1 + n e^0) with n its negatives."""
    x = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    p = torch.eye(3)
    pos = torch.tensor([[1, 0, 0], [0, 1, 0]], dtype=torch.bool)
    lp = math.log(1 + math.exp(-1))
    neg = (math.log(2) + math.log(2) + math.log(3)) / 3
    all_ = proxy_anchor_loss(x, p, pos, alpha=1.0, delta=0.0)   # default
    withp = proxy_anchor_loss(x, p, pos, alpha=1.0, delta=0.0,
                              pos_normalization='with_positives')
    assert all_.item() == pytest.approx(2 * lp / 3 + neg, rel=1e-6)
    assert withp.item() == pytest.approx(2 * lp / 2 + neg, rel=1e-6)
    assert abs(all_.item() - withp.item()) > 0.1
    # the general hand computation, both ways
    for norm in ('all', 'with_positives'):
        got = proxy_anchor_loss(torch.tensor(X), torch.tensor(P),
                                torch.tensor(POS, dtype=torch.bool), 2.0, 0.1,
                                pos_normalization=norm)
        assert got.item() == pytest.approx(
            _hand_loss(X, P, POS, 2.0, 0.1, norm=norm), rel=1e-5)
    # every proxy with positives: the two agree
    full = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.bool)
    x3 = torch.randn(3, 3)
    torch.testing.assert_close(
        proxy_anchor_loss(x3, p, full),
        proxy_anchor_loss(x3, p, full, pos_normalization='with_positives'))
    with pytest.raises(ValueError, match='pos_normalization'):
        proxy_anchor_loss(x, p, pos, pos_normalization='mean')


def test_scale_ratio_multiplies_the_cosine_before_alpha_and_delta():
    """s = r cos: with x equal to proxy 0 and orthogonal to proxy 1,
    alpha = 1, delta = 0.1, r = 5: positive log(1 + e^-(5 - 0.1)),
    negative of proxy 1 log(1 + e^(0 + 0.1)), proxy 0 has no negative."""
    x = torch.tensor([[1.0, 0.0]])
    p = torch.eye(2)
    pos = torch.tensor([[1, 0]], dtype=torch.bool)
    got = proxy_anchor_loss(x, p, pos, alpha=1.0, delta=0.1, scale_ratio=5.0)
    want = math.log(1 + math.exp(-4.9)) / 2 + math.log(1 + math.exp(0.1)) / 2
    assert got.item() == pytest.approx(want, rel=1e-6)
    # r is not a rescaling of alpha alone: the margin is not scaled
    alpha5 = proxy_anchor_loss(x, p, pos, alpha=5.0, delta=0.1)
    assert abs(alpha5.item() - got.item()) > 1e-3
    x, p = torch.tensor(X), torch.tensor(P)
    pos = torch.tensor(POS, dtype=torch.bool)
    for r in (1.0, 5.0, 10.0):
        got = proxy_anchor_loss(x, p, pos, 2.0, 0.1, scale_ratio=r)
        assert got.item() == pytest.approx(
            _hand_loss(X, P, POS, 2.0, 0.1, r=r), rel=1e-5)
    # the reference's largest r with alpha = 32 stays finite
    assert torch.isfinite(proxy_anchor_loss(x, p, pos, scale_ratio=60.0))


def test_multi_label_rows():
    pos = [[1, 1, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0]]
    got = proxy_anchor_loss(torch.tensor(X), torch.tensor(P),
                            torch.tensor(pos, dtype=torch.bool), 4.0, 0.1)
    assert got.item() == pytest.approx(_hand_loss(X, P, pos, 4.0, 0.1),
                                       rel=1e-5)


def test_scale_invariance_and_large_alpha_is_finite():
    x, p = torch.tensor(X), torch.tensor(P)
    pos = torch.tensor(POS, dtype=torch.bool)
    a = proxy_anchor_loss(x, p, pos)
    b = proxy_anchor_loss(7.0 * x, 0.1 * p, pos)
    torch.testing.assert_close(a, b)
    big = proxy_anchor_loss(x, p, pos, alpha=2000.0)
    assert torch.isfinite(big)


def test_bf16_inputs_and_autocast_compute_in_fp32():
    x = torch.randn(16, 32)
    p = torch.randn(5, 32)
    pos = labels_to_pos_mask(torch.randint(0, 5, (16, )), torch.arange(5), 5)
    ref = proxy_anchor_loss(x, p, pos)
    got = proxy_anchor_loss(x.bfloat16(), p.bfloat16(), pos)
    assert got.dtype == torch.float32 and torch.isfinite(got)
    assert got.item() == pytest.approx(ref.item(), rel=0.05)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got2 = proxy_anchor_loss(x, p, pos)
    assert got2.dtype == torch.float32
    torch.testing.assert_close(got2, ref)


def test_gradients_reach_features_and_proxies():
    x = torch.randn(6, 8, requires_grad=True)
    p = torch.randn(3, 8, requires_grad=True)
    pos = labels_to_pos_mask(torch.tensor([0, 1, 2, 0, 1, 2]),
                             torch.arange(3), 3)
    proxy_anchor_loss(x, p, pos).backward()
    assert x.grad.abs().sum() > 0 and p.grad.abs().sum() > 0


def test_module_from_registry_scales_by_weight_and_handles_empty_batches():
    loss = MODELS.build(dict(type='mmship.ProxyAnchorLoss', alpha=4.,
                             delta=0.2, loss_weight=0.5))
    assert isinstance(loss, ProxyAnchorLoss)
    x, p = torch.tensor(X), torch.tensor(P)
    pos = torch.tensor(POS, dtype=torch.bool)
    assert loss(x, p, pos).item() == pytest.approx(
        0.5 * _hand_loss(X, P, POS, 4.0, 0.2), rel=1e-5)
    ref = MODELS.build(dict(type='mmship.ProxyAnchorLoss', alpha=4.,
                            delta=0.2, loss_weight=0.5, scale_ratio=5.,
                            pos_normalization='with_positives'))
    assert ref(x, p, pos).item() == pytest.approx(
        0.5 * _hand_loss(X, P, POS, 4.0, 0.2, r=5.0, norm='with_positives'),
        rel=1e-5)
    with pytest.raises(ValueError, match='scale_ratio'):
        ProxyAnchorLoss(scale_ratio=0.0)
    proxies = torch.randn(3, 2, requires_grad=True)
    empty = loss(torch.zeros(0, 2), proxies, torch.zeros(0, 3,
                                                        dtype=torch.bool))
    assert empty.item() == 0.0
    empty.backward()
    assert proxies.grad is not None


def test_pos_masks_from_labels_and_class_sets():
    mapping = torch.tensor([0, 2, 2, 1, 0])   # 5 classes -> 3 proxies
    m = labels_to_pos_mask(torch.tensor([1, 3, 4]), mapping, 3)
    assert m.tolist() == [[False, False, True], [False, True, False],
                          [True, False, False]]
    sets = torch.tensor([[0, 1, 1, 0, 0], [1, 0, 0, 1, 0], [0, 0, 0, 0, 0]],
                        dtype=torch.bool)
    m = class_sets_to_pos_mask(sets, mapping, 3)
    assert m.tolist() == [[False, False, True], [True, True, False],
                          [False, False, False]]


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match='pos_mask'):
        proxy_anchor_loss(torch.randn(4, 2), torch.randn(3, 2),
                          torch.zeros(4, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r'\(N, D\)'):
        proxy_anchor_loss(torch.randn(4, 2), torch.randn(3, 5),
                          torch.zeros(4, 3, dtype=torch.bool))
