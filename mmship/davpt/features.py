"""Features DA-VPT compares with its proxies, shared by the loss (per batch)
and the class-to-prompt mapping (per data set)."""
from typing import Tuple

import torch
from torch import Tensor


def patch_grid(seg_shape, num_patches: int, patch_size: int) -> Tuple[int, int]:
    """The (h, w) patch grid of a padded input whose ground truth is
    ``seg_shape`` (H, W); checked against the number of patch tokens."""
    H, W = seg_shape[-2:]
    if H % patch_size or W % patch_size:
        raise ValueError(f'The ground-truth map ({H}x{W}) is not a multiple of '
                         f'the patch size {patch_size}: it cannot be mapped '
                         f'onto the patch grid.')
    h, w = H // patch_size, W // patch_size
    if h * w != num_patches:
        raise ValueError(f'The ground-truth map ({H}x{W}) gives a {h}x{w} patch'
                         f' grid, but the block has {num_patches} patch tokens.'
                         f' The map must have the size of the network input.')
    return h, w


def class_patch_weights(seg_maps: Tensor, grid: Tuple[int, int],
                        num_classes: int, ignore_index: int) -> Tensor:
    """Down-sample ground-truth maps to the patch grid, softly.

    Args:
        seg_maps: (B, H, W) integer class maps, H and W multiples of the grid.
    Returns:
        (B, h*w, C) float32: the fraction of each patch's pixels that belong
        to each class.  Ignored (and out-of-range) pixels count for no class,
        so a patch half ignored has weights summing to 0.5.
    """
    B, H, W = seg_maps.shape
    h, w = grid
    ph, pw = H // h, W // w
    if ph * h != H or pw * w != W:
        raise ValueError(f'Map size {H}x{W} is not a multiple of the grid '
                         f'{h}x{w}.')
    device = seg_maps.device
    rows = torch.arange(H, device=device) // ph
    cols = torch.arange(W, device=device) // pw
    patch = (rows[:, None] * w + cols[None, :]).expand(B, H, W)
    seg = seg_maps.long()
    valid = (seg != ignore_index) & (seg >= 0) & (seg < num_classes)
    index = (patch * num_classes + seg.clamp(0, num_classes - 1))[valid]
    batch = torch.arange(B, device=device)[:, None, None].expand(B, H, W)[valid]
    counts = torch.zeros(B, h * w * num_classes, device=device,
                         dtype=torch.float32)
    counts.index_put_((batch, index), torch.ones_like(index,
                                                      dtype=torch.float32),
                      accumulate=True)
    return counts.view(B, h * w, num_classes) / float(ph * pw)


def pool_class_features(patches: Tensor, weights: Tensor
                        ) -> Tuple[Tensor, Tensor, Tensor]:
    """Per (image, class present) mask-pooled patch features.

    Args:
        patches: (B, h*w, D) patch tokens.
        weights: (B, h*w, C) from ``class_patch_weights``.
    Returns:
        features (P, D) float32, image index (P,), class index (P,), one row
        per class present in an image (area-weighted mean of its patches).
    """
    mass = weights.sum(dim=1)                                  # (B, C)
    image_idx, class_idx = (mass > 0).nonzero(as_tuple=True)
    with torch.autocast(device_type=patches.device.type, enabled=False):
        pooled = weights.transpose(1, 2) @ patches.float()    # (B, C, D)
    feats = pooled[image_idx, class_idx] / \
        mass[image_idx, class_idx].unsqueeze(1)
    return feats, image_idx, class_idx


def seg_class_features(patches: Tensor, seg_maps: Tensor, patch_size: int,
                       num_classes: int, ignore_index: int):
    """``pool_class_features`` straight from ground-truth maps."""
    grid = patch_grid(seg_maps.shape, patches.shape[1], patch_size)
    weights = class_patch_weights(seg_maps, grid, num_classes, ignore_index)
    return pool_class_features(patches, weights)


__all__ = ['patch_grid', 'class_patch_weights', 'pool_class_features',
           'seg_class_features']
