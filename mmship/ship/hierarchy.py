"""SHIP's semantic hierarchy (docs/ship.md, "Semantic hierarchy"):
inter-layer affinity of a frozen backbone and the greedy grouping of its
blocks.

* ``block_descriptors`` reads every block's instance tokens of the frozen
  host through its tap (``forward_intermediates``, before the final norm)
  and turns them into one D-dim descriptor per image and block (the CLS
  token, or the mean of the patch tokens).
* ``AffinityMeter`` accumulates the per-image L2-normalised Gram matrices
  (mean and per-pair std over images) without keeping the descriptors.
* ``greedy_hierarchy`` is the paper's greedy search; ``load_hierarchy`` reads
  the JSON written by ``tools/analysis/ship_hierarchy.py``.
"""
import json
import os.path as osp
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mmship.core.features import block_tokens, check_prompted_host

DESCRIPTORS = ('cls', 'mean_patch')
HIERARCHY_TOOL = 'tools/analysis/ship_hierarchy.py'


def reduce_tokens(x: Tensor, descriptor: str, extra: int) -> Tensor:
    """(B, N, D) instance tokens -> (B, D) descriptor."""
    if descriptor == 'cls':
        if extra < 1:
            raise ValueError("The 'cls' descriptor needs a CLS token "
                             "(with_cls_token=True); use 'mean_patch'.")
        return x[:, 0]
    if descriptor == 'mean_patch':
        return x[:, extra:].mean(dim=1)
    raise ValueError(f'Unknown descriptor {descriptor!r}; choose one of '
                     f'{DESCRIPTORS}.')


def block_descriptors(backbone, inputs: Tensor,
                      descriptor: str = 'cls') -> Tensor:
    """Descriptors of every block output of the frozen host: (B, L, D),
    float32."""
    if descriptor not in DESCRIPTORS:
        raise ValueError(f'Unknown descriptor {descriptor!r}; choose one of '
                         f'{DESCRIPTORS}.')
    check_prompted_host(backbone)
    extra = backbone.num_extra_tokens
    return torch.stack([reduce_tokens(x, descriptor, extra)
                        for x in block_tokens(backbone, inputs)], dim=1)


# -- affinity -----------------------------------------------------------------
def image_affinity(desc: Tensor) -> Tensor:
    """(B, L, D) descriptors -> (B, L, L) Gram matrices of the L2-normalised
    descriptors (cosine similarity between blocks, per image)."""
    d = F.normalize(desc.double(), dim=-1)
    return d @ d.transpose(1, 2)


class AffinityMeter:
    """Mean and per-pair (population) std of per-image affinity matrices."""

    def __init__(self):
        self.count = 0
        self._sum = None
        self._sq = None

    def update(self, desc: Tensor):
        s = image_affinity(desc).cpu()
        if self._sum is None:
            self._sum = torch.zeros(s.shape[1:], dtype=torch.float64)
            self._sq = torch.zeros_like(self._sum)
        self._sum += s.sum(0)
        self._sq += (s * s).sum(0)
        self.count += s.shape[0]

    @property
    def mean(self) -> np.ndarray:
        if not self.count:
            raise ValueError('No images were seen.')
        return (self._sum / self.count).numpy()

    @property
    def std(self) -> np.ndarray:
        mean = self._sum / self.count
        var = (self._sq / self.count - mean * mean).clamp_(min=0)
        return var.sqrt().numpy()


def compute_affinity(backbone, batches: Iterable[Tensor],
                     descriptor: str = 'cls', num_images: int = None):
    """Run ``backbone`` over batches of preprocessed images; returns
    (mean (L, L), std (L, L), images used)."""
    meter = AffinityMeter()
    for inputs in batches:
        desc = block_descriptors(backbone, inputs, descriptor)
        if num_images is not None:
            desc = desc[:num_images - meter.count]
        meter.update(desc)
        if num_images is not None and meter.count >= num_images:
            break
    return meter.mean, meter.std, meter.count


# -- grouping -----------------------------------------------------------------
def greedy_hierarchy(affinity, threshold: float = 0.95) -> List[int]:
    """Group start blocks: a new group starts at block j as soon as its
    affinity to the current group's first block drops below ``threshold``.
    """
    S = np.asarray(affinity, dtype=np.float64)
    if S.ndim != 2 or S.shape[0] != S.shape[1] or S.shape[0] < 1:
        raise ValueError(f'The affinity must be a square (L, L) matrix, got '
                         f'shape {S.shape}.')
    starts, s = [0], 0
    for j in range(1, S.shape[0]):
        if S[s, j] < threshold:
            starts.append(j)
            s = j
    return starts


def adjacent_affinities(affinity) -> List[float]:
    """``S[i, i + 1]`` for every pair of neighbouring blocks."""
    S = np.asarray(affinity, dtype=np.float64)
    return [float(S[i, i + 1]) for i in range(S.shape[0] - 1)]


def threshold_for_groups(affinity, num_groups: int,
                         prefer: float = 0.95) -> Tuple[float, Tuple[float,
                                                                      float]]:
    """A threshold at which the greedy search yields ``num_groups`` groups.

    The search only changes where the threshold crosses an entry of S, so
    every outcome is tried once, on the intervals between neighbouring
    distinct values of S (within (0, 1]).  Of the intervals that give
    ``num_groups`` groups the one nearest ``prefer`` is taken; ``prefer``
    itself is returned if it lies in it, else the interval's middle (the
    choice furthest from a change), with the interval
    ``(low, high]``.  Raises ``ValueError`` naming the achievable group
    counts when no threshold gives exactly ``num_groups``."""
    S = np.asarray(affinity, dtype=np.float64)
    L = S.shape[0]
    if not 1 <= num_groups <= L:
        raise ValueError(f'num_groups must lie in 1..{L} (the backbone has '
                         f'{L} blocks), got {num_groups}.')
    values = S[np.triu_indices(L, 1)]
    edges = np.unique(np.concatenate(
        [[0.0, 1.0], values[(values > 0) & (values < 1)]]))
    outcomes = []  # (low, high, starts): thresholds in (low, high]
    for low, high in zip(edges[:-1], edges[1:]):
        outcomes.append((float(low), float(high),
                         greedy_hierarchy(S, float(high))))
    hits = [(lo, hi) for lo, hi, st in outcomes if len(st) == num_groups]
    if not hits:
        by_count = {}
        for lo, hi, st in outcomes:
            by_count.setdefault(len(st), hi)
        counts = sorted(by_count)
        below = [c for c in counts if c < num_groups]
        above = [c for c in counts if c > num_groups]
        near = ([below[-1]] if below else []) + ([above[0]] if above else [])
        raise ValueError(
            f'No threshold gives exactly {num_groups} groups on this '
            f'affinity: the greedy search can give {counts} groups. Nearest: '
            + ', '.join(f'{c} (threshold {by_count[c]:.4f})' for c in near)
            + '. Ask for one of those counts, or give starts directly.')
    lo, hi = min(hits, key=lambda h: min(abs(prefer - h[0]),
                                         abs(prefer - h[1]))
                 if not h[0] < prefer <= h[1] else -1.0)
    if lo < prefer <= hi:
        return prefer, (lo, hi)
    t = (lo + hi) / 2
    for digits in (2, 3, 4, 6):  # a short number inside the interval
        r = round(t, digits)
        if lo < r <= hi:
            t = r
            break
    assert len(greedy_hierarchy(S, t)) == num_groups
    return t, (lo, hi)


def hierarchy_warning(starts: Sequence[int], affinity,
                      threshold: float) -> Optional[str]:
    """A message when the search degenerated (one group per block, or one
    group), saying what to do; None otherwise."""
    L = np.asarray(affinity).shape[0]
    if L < 2:
        return None
    adjacent = adjacent_affinities(affinity)
    if len(starts) == L:
        return (f'SHIP hierarchy degenerate: every block is its own group '
                f'({L} groups) -- threshold {threshold} is above every '
                f'adjacent-block affinity (max S[i, i+1] = '
                f'{max(adjacent):.3f}), so SIP becomes VPT-deep with one set '
                f'per block. Lower the threshold below {max(adjacent):.3f}, '
                f'ask for a number of groups (--num-groups G / ship_offline '
                f'num_groups=G), try the other descriptor, or give starts '
                f'directly.')
    if len(starts) == 1:
        return (f'SHIP hierarchy degenerate: all {L} blocks form one group '
                f'-- threshold {threshold} is below every affinity to block '
                f'0 (min S[0, j] = {float(np.min(np.asarray(affinity)[0])):.3f}'
                f'), so SIP becomes VPT-shallow and AP has no group to enter. '
                f'Raise the threshold, ask for a number of groups '
                f'(--num-groups G / ship_offline num_groups=G), or give '
                f'starts directly.')
    return None


def groups_of(starts: Sequence[int], num_layers: int) -> List[List[int]]:
    ends = list(starts[1:]) + [num_layers]
    return [list(range(s, e)) for s, e in zip(starts, ends)]


def load_hierarchy(path: str) -> List[int]:
    """Group starts from a ``hierarchy.json`` written by the tool."""
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'SHIP hierarchy file {path!r} does not exist. Run `python '
            f'{HIERARCHY_TOOL} CONFIG` (it writes this file by default), or '
            f'give `starts` as a list of group start blocks.')
    with open(path) as f:
        data = json.load(f)
    starts = data.get('starts') if isinstance(data, dict) else data
    if not isinstance(starts, list):
        raise ValueError(f'{path} holds no `starts` list.')
    return [int(s) for s in starts]


def resolve_starts(starts: Union[None, str, Sequence[int]]
                   ) -> Optional[List[int]]:
    """A list of starts, a path to a hierarchy JSON, or None."""
    if starts is None:
        return None
    if isinstance(starts, str):
        return load_hierarchy(starts)
    return [int(s) for s in starts]


# -- pictures -----------------------------------------------------------------
def plot_affinity(affinity, starts: Sequence[int], path: str,
                  title: str = None):
    """Heatmap of the affinity with the groups outlined."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    S = np.asarray(affinity)
    L = S.shape[0]
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * L, 0.6 + 0.4 * L))
    im = ax.imshow(S, cmap='viridis', vmin=min(0.0, float(S.min())), vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if L <= 32:
        for i in range(L):
            for j in range(L):
                ax.text(j, i, f'{S[i, j]:.2f}', ha='center', va='center',
                        fontsize=6, color='w' if S[i, j] < 0.75 else 'k')
    for group in groups_of(list(starts), L):
        a, n = group[0], len(group)
        ax.add_patch(Rectangle((a - 0.5, a - 0.5), n, n, fill=False,
                               edgecolor='red', linewidth=2))
    ax.set_xticks(range(L))
    ax.set_yticks(range(L))
    ax.set_xlabel('block')
    ax.set_ylabel('block')
    ax.set_title(title or f'inter-layer affinity, starts={list(starts)}',
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = ['block_descriptors', 'reduce_tokens', 'image_affinity', 'AffinityMeter', 'compute_affinity',
           'greedy_hierarchy', 'adjacent_affinities', 'threshold_for_groups',
           'hierarchy_warning', 'groups_of', 'load_hierarchy',
           'resolve_starts', 'plot_affinity']
