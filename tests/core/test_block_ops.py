"""The hosts' block views (``core/block_ops.py``): ``kv`` is the last two
thirds of ``qkv``, with every kind of delta cut to the same rows."""
import pytest
import torch

from mmship.core.method import LowRank
from tiny import pretrain_pair, seg_pair

D = 32


def _deltas(kind):
    g = torch.Generator().manual_seed(1)
    if kind == 'none':
        return {}
    if kind == 'dense':
        return {'qkv.weight': torch.randn(3 * D, D, generator=g,
                                          dtype=torch.float64) * 0.1,
                'qkv.bias': torch.randn(3 * D, generator=g,
                                        dtype=torch.float64) * 0.1}
    return {'qkv.weight': LowRank(
        torch.randn(4, D, generator=g, dtype=torch.float64),
        torch.randn(3 * D, 4, generator=g, dtype=torch.float64), 0.5)}


@pytest.mark.parametrize('pair', [seg_pair, pretrain_pair])
@pytest.mark.parametrize('kind', ['none', 'dense', 'low-rank'])
def test_kv_equals_the_keys_and_values_of_qkv(pair, kind):
    _, twin = pair()
    ops = twin.double()._block_ops[1]
    deltas = _deltas(kind)
    x = torch.randn(2, 5, D, dtype=torch.float64, requires_grad=True)
    _, k, v = ops.qkv(x, deltas)
    k2, v2 = ops.kv(x, deltas)
    assert k2.shape == k.shape == (2, ops.num_heads, 5, D // ops.num_heads)
    torch.testing.assert_close(k2, k, rtol=0, atol=1e-12)
    torch.testing.assert_close(v2, v, rtol=0, atol=1e-12)
    g = torch.randn_like(k)
    grad = torch.autograd.grad((k * g + v * g.flip(0)).sum(), x)[0]
    grad2 = torch.autograd.grad((k2 * g + v2 * g.flip(0)).sum(), x)[0]
    torch.testing.assert_close(grad2, grad, rtol=0, atol=1e-12)
