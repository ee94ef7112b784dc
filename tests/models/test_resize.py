"""Bilinear resizes as matrix products give F.interpolate's values and
input gradients (fp64), and the mode routes only the calls it can."""
import pytest
import torch
import torch.nn.functional as F

from mmship.models.resize import MatmulBilinearResize, exact_in

CASES = [  # (in size, F.interpolate's size / scale_factor arguments)
    ((8, 8), dict(scale_factor=2)),
    ((8, 8), dict(scale_factor=4)),
    ((4, 6), dict(scale_factor=8)),
    ((8, 6), dict(scale_factor=0.5)),
    ((8, 8), dict(size=(32, 32))),
    ((91, 119), dict(size=(364, 476))),
    ((7, 9), dict(size=(20, 31))),
    ((7, 9), dict(scale_factor=(2.5, 1.7))),
]


@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('in_size,resize', CASES)
def test_matches_interpolate(in_size, resize, align_corners):
    x = torch.randn(2, 3, *in_size, dtype=torch.float64, requires_grad=True)
    x_last = x.detach().to(memory_format=torch.channels_last)
    x_last.requires_grad_()
    ref = F.interpolate(x, mode='bilinear', align_corners=align_corners,
                        **resize)
    with MatmulBilinearResize():
        out = F.interpolate(x_last, mode='bilinear',
                            align_corners=align_corners, **resize)
    assert out.shape == ref.shape
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    grad_out = torch.randn_like(ref)
    ref_grad, = torch.autograd.grad(ref, x, grad_out)
    grad, = torch.autograd.grad(out, x_last, grad_out)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-10)


def test_bf16_exactness():
    bf16 = torch.bfloat16
    # integer scales: quarter, eighth, ... weights
    for n, factor in ((16, 2), (16, 4), (16, 8), (128, 4)):
        assert exact_in(bf16, n, n * factor, False, float(factor))
    assert exact_in(bf16, 16, 8, False, 0.5)
    assert not exact_in(bf16, 7, 20, False)
    assert not exact_in(bf16, 8, 32, True)  # 7/31 steps


def test_fallback_keeps_interpolate():
    """Under autocast, inexact weights or an fp32 input leave the resize to
    F.interpolate; nearest calls pass through.  A contiguous input tells
    the paths apart: only the matmul path returns channels_last."""
    x = torch.randn(1, 2, 7, 9)

    def as_matmul(**resize):
        with MatmulBilinearResize():
            out = F.interpolate(x_in, **resize)
        return out.is_contiguous(memory_format=torch.channels_last)

    with torch.autocast('cpu', dtype=torch.bfloat16):
        x_in = x.bfloat16()
        assert not as_matmul(size=(20, 31), mode='bilinear')
        assert as_matmul(scale_factor=2, mode='bilinear')
        x_in = x
        assert not as_matmul(scale_factor=2, mode='bilinear')
    assert as_matmul(size=(20, 31), mode='bilinear')
    assert not as_matmul(scale_factor=2, mode='nearest')
    with MatmulBilinearResize():
        out = F.interpolate(x, scale_factor=2, mode='nearest')
    assert torch.equal(out, F.interpolate(x, scale_factor=2, mode='nearest'))
