"""Bilinear resizes as two matrix products.

``F.interpolate(mode='bilinear')`` gathers four source pixels per output
pixel, so its backward scatters gradients with atomic adds: on a GPU, the
backward of the logits' resize to the label size was the slowest kernel of
the compiled segmentation heads.  A bilinear resize is separable, a
``(W, w)`` matrix along the width and an ``(H, h)`` one along the height,
so it can run as two GEMMs both ways.  :class:`MatmulBilinearResize` routes
the ``F.interpolate`` calls inside it (mmseg's ``resize`` included) there.
"""
import functools
import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode


def _source_index(dst, in_size: int, out_size: int, align_corners: bool,
                  scale: Optional[float]):
    """aten's area_pixel_compute_source_index of upsample_bilinear2d, for a
    float64 tensor or a Python float dst."""
    if align_corners:
        return dst * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0)
    ratio = 1.0 / scale if scale else in_size / out_size
    src = (dst + 0.5) * ratio - 0.5
    return src.clamp(min=0.0) if isinstance(src, Tensor) else max(src, 0.0)


def interpolation_matrix(in_size: int, out_size: int, align_corners: bool,
                         scale: Optional[float] = None,
                         device: Optional[torch.device] = None,
                         dtype: torch.dtype = torch.float64) -> Tensor:
    """(out_size, in_size) matrix of a 1-D bilinear resize, the source
    indices and weights of PyTorch's ``upsample_bilinear2d``: ``scale`` is
    the scale factor F.interpolate passes on (None when a size was given),
    which sets the source step when ``align_corners`` is False.

    Built in float64 on ``device`` with elementwise ops only: under
    torch.compile it is a small fused kernel of the graph (no host-to-device
    copy; AOTAutograd takes only one assume_constant_result tensor)."""
    dst = torch.arange(out_size, dtype=torch.float64, device=device)
    src = _source_index(dst, in_size, out_size, align_corners, scale)
    i0 = src.floor()
    i1 = (i0 + 1).clamp(max=in_size - 1)
    w1 = (src - i0)[:, None]
    cols = torch.arange(in_size, dtype=torch.float64, device=device)
    # a sum: at the last source index both taps land on one column
    matrix = ((1 - w1) * (cols == i0[:, None]) +
              w1 * (cols == i1[:, None]))
    return matrix.to(dtype)


# torch.compile calls it while tracing and keeps the answer as a constant
@torch._dynamo.assume_constant_result
@functools.lru_cache(maxsize=None)
def exact_in(dtype: torch.dtype, in_size: int, out_size: int,
             align_corners: bool, scale: Optional[float] = None) -> bool:
    """Whether dtype holds every weight of that interpolation matrix."""
    bits = 1 - round(math.log2(torch.finfo(dtype).eps))  # significand
    for dst in range(out_size):
        src = _source_index(dst, in_size, out_size, align_corners, scale)
        for weight in (src - math.floor(src), 1 - src + math.floor(src)):
            if not (math.frexp(weight)[0] * 2 ** bits).is_integer():
                return False
    return True


def runs_as_matmul(x: Tensor, size: Sequence[int], align_corners: bool,
                   scale_factors: Optional[Sequence[float]] = None) -> bool:
    """Whether :func:`bilinear_as_matmul` gives F.interpolate's result.

    The products run in autocast's dtype where autocast is on, else in
    x's.  They must not round x (F.interpolate keeps an fp32 x in fp32
    under autocast) and, in a half-precision dtype, nor the weights: those
    of integer scales (x2, x4, x0.5, ...) are exact, most others not."""
    device = x.device.type
    dtype = (torch.get_autocast_dtype(device)
             if torch.is_autocast_enabled(device) else x.dtype)
    if x.dtype != dtype:
        return False
    if dtype in (torch.float32, torch.float64):
        return True
    scales = scale_factors or (None, None)
    return all(exact_in(dtype, n, m, align_corners, s)
               for n, m, s in zip(x.shape[2:], size, scales))


def bilinear_as_matmul(x: Tensor, size: Sequence[int], align_corners: bool,
                       scale_factors: Optional[Sequence[float]] = None
                       ) -> Tensor:
    """``F.interpolate(x, size, mode='bilinear')`` of a (B, C, h, w) x as
    two matrix products; channels_last result.  ``scale_factors`` are the
    (height, width) factors F.interpolate passes on, None for a size."""
    batch, channels, h, w = x.shape
    height, width = size
    scale_h, scale_w = scale_factors or (None, None)
    rows = interpolation_matrix(h, height, align_corners, scale_h,
                                x.device, x.dtype)
    cols = interpolation_matrix(w, width, align_corners, scale_w,
                                x.device, x.dtype)
    # (B, h, w, C): a view of a channels_last x, channels contiguous
    y = torch.matmul(cols, x.permute(0, 2, 3, 1))  # (B, h, W, C)
    y = torch.matmul(rows, y.reshape(batch, h, width * channels))
    return y.view(batch, height, width, channels).permute(0, 3, 1, 2)


def _pair(value) -> Tuple:
    return tuple(value) if isinstance(value, Sequence) else (value, value)


def _as_matmul_args(input, size=None, scale_factor=None, mode='nearest',
                    align_corners=None, recompute_scale_factor=None,
                    antialias=False) -> Optional[tuple]:
    """:func:`bilinear_as_matmul`'s arguments for an F.interpolate call (its
    signature) that it reproduces, else None."""
    if (mode != 'bilinear' or antialias or input.dim() != 4
            or (size is None) == (scale_factor is None)):
        return None  # F.interpolate itself, or its error
    in_size = [int(n) for n in input.shape[2:]]
    if size is not None:
        out_size, scales = [int(n) for n in _pair(size)], None
    else:
        scales = [float(s) for s in _pair(scale_factor)]
        # F.interpolate's output size, and the factors it passes on
        out_size = [math.floor(n * s) for n, s in zip(in_size, scales)]
        if recompute_scale_factor:
            scales = None
    align_corners = bool(align_corners)
    if not runs_as_matmul(input, out_size, align_corners, scales):
        return None
    return input, out_size, align_corners, scales


class MatmulBilinearResize(TorchFunctionMode):
    """Within it, 4-D bilinear ``F.interpolate`` calls (no antialias) run
    as :func:`bilinear_as_matmul` where that keeps the result
    (:func:`runs_as_matmul`); all other calls run as they are.  Dynamo
    traces the mode: under torch.compile the resizes become two ``mm`` in
    the graph, their matrices small elementwise kernels of it."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.interpolate:
            matmul_args = _as_matmul_args(*args, **kwargs)
            if matmul_args is not None:
                return bilinear_as_matmul(*matmul_args)
        return func(*args, **kwargs)
