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


def _hand_loss(x, p, pos, alpha, delta):
    """Proxy-Anchor with plain Python floats: positive term averaged over the
    proxies that have positives, negative term over all proxies."""
    K = len(p)
    pos_terms, neg_terms = [], []
    for k in range(K):
        s_pos = [math.exp(-alpha * (_cos(x[i], p[k]) - delta))
                 for i in range(len(x)) if pos[i][k]]
        s_neg = [math.exp(alpha * (_cos(x[i], p[k]) + delta))
                 for i in range(len(x)) if not pos[i][k]]
        if s_pos:
            pos_terms.append(math.log(1 + sum(s_pos)))
        neg_terms.append(math.log(1 + sum(s_neg)))
    return sum(pos_terms) / len(pos_terms) + sum(neg_terms) / K


X = [[1.0, 0.0], [0.6, 0.8], [0.0, -2.0], [-1.0, 1.0]]
P = [[1.0, 0.2], [0.0, 1.0], [-1.0, -1.0]]
# proxy 2 has no positive: it must not dilute the positive mean.
POS = [[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]]


@pytest.mark.parametrize('alpha,delta', [(32.0, 0.1), (2.0, 0.3), (1.0, 0.0)])
def test_loss_matches_hand_computation(alpha, delta):
    got = proxy_anchor_loss(torch.tensor(X), torch.tensor(P),
                            torch.tensor(POS, dtype=torch.bool), alpha, delta)
    want = _hand_loss(X, P, POS, alpha, delta)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_proxies_without_positives_only_count_in_the_negative_mean():
    # Averaging the positive term over all 3 proxies would give a different
    # value: the test must be able to tell the two apart.
    alpha, delta = 2.0, 0.1
    got = proxy_anchor_loss(torch.tensor(X), torch.tensor(P),
                            torch.tensor(POS, dtype=torch.bool), alpha, delta)
    pos_terms = []
    for k in range(2):
        s = [math.exp(-alpha * (_cos(X[i], P[k]) - delta)) for i in range(4)
             if POS[i][k]]
        pos_terms.append(math.log(1 + sum(s)))
    wrong = _hand_loss(X, P, POS, alpha, delta) - sum(pos_terms) / 2 + \
        sum(pos_terms) / 3
    assert abs(got.item() - wrong) > 1e-3


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
