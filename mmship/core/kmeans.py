"""Spherical (cosine) k-means, shared by SHIP's attribute prototypes and
DA-VPT's class-to-prompt mapping.  Deterministic given a seed; runs in
float64 on the CPU (the inputs are at most a few thousand vectors)."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def _kmeans_pp(x: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """k-means++ seeding with cosine distance."""
    n = x.shape[0]
    chosen = [int(torch.randint(n, (1, ), generator=gen))]
    best = x @ x[chosen[0]]
    for _ in range(1, k):
        dist = (1.0 - best).clamp(min=0.0)**2
        dist[chosen] = 0.0
        if float(dist.sum()) <= 0.0:   # duplicates: take the first unused
            idx = next(i for i in range(n) if i not in chosen)
        else:
            idx = int(torch.multinomial(dist, 1, generator=gen))
        chosen.append(idx)
        best = torch.maximum(best, x @ x[idx])
    return x[chosen].clone()


def _fill_empty(sim: Tensor, assign: Tensor, k: int) -> Tensor:
    """Give every empty cluster the point that fits its own cluster worst
    (taken from a cluster of at least two)."""
    assign = assign.clone()
    own = sim.gather(1, assign[:, None]).squeeze(1)
    counts = torch.bincount(assign, minlength=k)
    for j in (counts == 0).nonzero().flatten().tolist():
        movable = counts[assign] > 1
        score = torch.where(movable, own, torch.full_like(own, float('inf')))
        i = int(score.argmin())
        counts[assign[i]] -= 1
        counts[j] += 1
        assign[i] = j
        own[i] = sim[i, j]
    return assign


def _lloyd(x: Tensor, cent: Tensor, k: int, iters: int):
    assign = None
    for _ in range(max(1, iters)):
        sim = x @ cent.t()
        new = _fill_empty(sim, sim.argmax(dim=1), k)
        cent = F.normalize(torch.zeros_like(cent).index_add_(0, new, x),
                           dim=1)
        converged = assign is not None and torch.equal(new, assign)
        assign = new
        if converged:
            break
    score = float((x * cent[assign]).sum())
    return assign, cent, score


def spherical_kmeans(x: Tensor, k: int, init: Optional[Tensor] = None,
                     iters: int = 100, seed: int = 0,
                     n_init: int = 1) -> Tuple[Tensor, Tensor]:
    """Spherical k-means of the rows of ``x``.

    Args:
        x: (N, D) points (normalised here).
        k: clusters, 1 <= k <= N.
        init: (k, D) starting centroids (re-clustering); else k-means++.
        n_init: k-means++ restarts; the one with the highest total cosine
            to its centroids is kept (ignored with ``init``).
    Returns:
        the assignment (N,) long, every cluster non-empty, and the (k, D)
        unit centroids (float32, CPU).
    """
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f'k-means needs 1 <= k <= N points, got k={k}, '
                         f'N={n}.')
    x = F.normalize(x.detach().double().cpu(), dim=1)
    if init is not None:
        if init.shape != (k, x.shape[1]):
            raise ValueError(f'init centroids must be {(k, x.shape[1])}, got '
                             f'{tuple(init.shape)}.')
        starts = [F.normalize(init.detach().double().cpu(), dim=1)]
    else:
        gen = torch.Generator().manual_seed(seed)
        starts = [_kmeans_pp(x, k, gen) for _ in range(max(1, n_init))]
    best = max((_lloyd(x, cent, k, iters) for cent in starts),
               key=lambda run: run[2])
    return best[0], best[1].float()


def cluster_means(x: Tensor, assign: Tensor, k: int) -> Tensor:
    """(k, D) float32 mean of the (unnormalised) points of each cluster."""
    x = x.detach().double().cpu()
    sums = torch.zeros(k, x.shape[1], dtype=torch.float64).index_add_(
        0, assign, x)
    counts = torch.bincount(assign, minlength=k).clamp(min=1)
    return (sums / counts[:, None]).float()


__all__ = ['spherical_kmeans', 'cluster_means']
