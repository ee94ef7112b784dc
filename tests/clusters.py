"""Point sets with a known clustering, shared by the k-means and the DA-VPT
mapping tests."""
import torch


def pairs(num_pairs=3, dim=8, noise=0.01, seed=0):
    """Points in tight pairs: points 2j and 2j+1 are near-identical."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_pairs, dim, generator=g) * 3
    points = centres.repeat_interleave(2, 0)
    return points + noise * torch.randn(points.shape, generator=g)


def partition(assign):
    groups = {}
    for i, k in enumerate(assign.tolist()):
        groups.setdefault(k, set()).add(i)
    return sorted(map(sorted, groups.values()))
