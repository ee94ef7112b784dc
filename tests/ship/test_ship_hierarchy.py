"""SHIP's semantic hierarchy: greedy grouping, affinity, block descriptors."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmship.ship.hierarchy import (AffinityMeter, adjacent_affinities,
                                   block_descriptors, compute_affinity,
                                   greedy_hierarchy, groups_of,
                                   hierarchy_warning, load_hierarchy,
                                   plot_affinity, resolve_starts,
                                   threshold_for_groups)
from tiny import SEG_ARGS, pretrain_pair, seg_pair


# -- greedy search ------------------------------------------------------------
def test_every_layer_its_own_group():
    assert greedy_hierarchy(np.eye(5), 0.95) == [0, 1, 2, 3, 4]


def test_one_group():
    S = np.full((6, 6), 0.99)
    assert greedy_hierarchy(S, 0.95) == [0]


def test_similarity_is_measured_against_the_groups_first_layer():
    # Neighbours are always similar (0.99), but block 2 has drifted away
    # from block 0: comparing with the previous block would keep one group.
    S = np.array([[1.00, 0.97, 0.94, 0.90],
                  [0.97, 1.00, 0.99, 0.95],
                  [0.94, 0.99, 1.00, 0.99],
                  [0.90, 0.95, 0.99, 1.00]])
    assert greedy_hierarchy(S, 0.95) == [0, 2]
    # ... and the new group is then measured against block 2
    S[2, 3] = S[3, 2] = 0.80
    assert greedy_hierarchy(S, 0.95) == [0, 2, 3]


def test_threshold_is_strict_and_matches_the_paper_example():
    # groups {0,1},{2,3},{4,5},{6,7},{8,9,10},{11}
    starts = [0, 2, 4, 6, 8, 11]
    S = np.full((12, 12), 0.5)
    for group in groups_of(starts, 12):
        for i in group:
            for j in group:
                S[i, j] = 0.96
    np.fill_diagonal(S, 1.0)
    assert greedy_hierarchy(S, 0.95) == starts
    assert greedy_hierarchy(S, 0.96) == starts  # equal is not below
    assert greedy_hierarchy(S, 0.97) == list(range(12))
    assert greedy_hierarchy(S, 0.40) == [0]


def _chain(adjacent):
    """An affinity whose entries decay along the chain of neighbours:
    S[i, j] = prod of the adjacent affinities between i and j."""
    L = len(adjacent) + 1
    S = np.eye(L)
    for i in range(L):
        for j in range(i + 1, L):
            S[i, j] = S[j, i] = np.prod(adjacent[i:j])
    return S


def test_adjacent_affinities():
    S = _chain([0.9, 0.8, 0.99])
    assert adjacent_affinities(S) == pytest.approx([0.9, 0.8, 0.99])


@pytest.mark.parametrize('groups', [1, 2, 3, 4, 5, 6])
def test_threshold_for_groups_yields_the_requested_count(groups):
    S = _chain([0.99, 0.97, 0.9, 0.98, 0.85])
    t, (lo, hi) = threshold_for_groups(S, groups)
    assert lo < t <= hi
    assert len(greedy_hierarchy(S, t)) == groups
    # every threshold of the interval gives the same count
    for u in np.linspace(lo, hi, 7)[1:]:
        assert len(greedy_hierarchy(S, u)) == groups


def test_threshold_for_groups_prefers_the_default_and_reports_counts():
    S = _chain([0.99, 0.97, 0.9, 0.98, 0.85])
    # 0.95 itself gives 3 groups: it is kept
    assert len(greedy_hierarchy(S, 0.95)) == 3
    assert threshold_for_groups(S, 3)[0] == 0.95
    # one group per block at 0.95 on the bench's mean-patch affinities; the
    # search still finds thresholds for fewer groups
    bench = _chain([0.84, 0.7, 0.8, 0.55, 0.75, 0.6, 0.65, 0.7, 0.8, 0.6,
                    0.12])
    assert len(greedy_hierarchy(bench, 0.95)) == 12
    t, _ = threshold_for_groups(bench, 4)
    assert len(greedy_hierarchy(bench, t)) == 4 and t < 0.95
    # counts the search cannot give are refused with the nearest ones
    flat = np.full((5, 5), 0.9)
    np.fill_diagonal(flat, 1.0)
    with pytest.raises(ValueError, match=r'exactly 3 groups.*\[1, 5\].*'
                       r'Nearest: 1 \(threshold .*\), 5 \(threshold'):
        threshold_for_groups(flat, 3)
    with pytest.raises(ValueError, match='1..5'):
        threshold_for_groups(flat, 6)


def test_hierarchy_warning():
    S = _chain([0.8, 0.7, 0.9])
    msg = hierarchy_warning(greedy_hierarchy(S, 0.95), S, 0.95)
    assert 'every block is its own group (4 groups)' in msg
    assert '0.900' in msg and 'num_groups' in msg
    msg = hierarchy_warning(greedy_hierarchy(S, 0.3), S, 0.3)
    assert 'one group' in msg and 'Raise the threshold' in msg
    assert hierarchy_warning(greedy_hierarchy(S, 0.75), S, 0.75) is None


def test_greedy_refuses_non_square():
    with pytest.raises(ValueError, match='square'):
        greedy_hierarchy(np.ones((3, 4)))


def test_groups_of():
    assert groups_of([0, 2, 3], 5) == [[0, 1], [2], [3, 4]]


# -- affinity -----------------------------------------------------------------
def test_affinity_meter_mean_and_std_by_hand():
    torch.manual_seed(3)
    desc = torch.randn(7, 4, 5)
    meter = AffinityMeter()
    meter.update(desc[:3])
    meter.update(desc[3:])
    per_image = np.zeros((7, 4, 4))
    for b in range(7):
        for i in range(4):
            for j in range(4):
                per_image[b, i, j] = F.cosine_similarity(
                    desc[b, i], desc[b, j], dim=0).item()
    np.testing.assert_allclose(meter.mean, per_image.mean(0), atol=1e-6)
    np.testing.assert_allclose(meter.std, per_image.std(0), atol=1e-6)
    np.testing.assert_allclose(np.diag(meter.mean), 1.0, atol=1e-6)
    assert meter.count == 7


def test_compute_affinity_stops_at_num_images():
    _, twin = seg_pair()
    batches = [torch.randn(3, 3, 32, 32) for _ in range(4)]
    mean, std, count = compute_affinity(twin, batches, 'cls', num_images=5)
    assert count == 5 and mean.shape == (4, 4) and std.shape == (4, 4)
    # the same as the first five images alone
    ref, _, _ = compute_affinity(
        twin, [torch.cat(batches[:2])[:5]], 'cls')
    np.testing.assert_allclose(mean, ref, atol=1e-6)


# -- block descriptors (the backbone's tap) -----------------------------------
def test_seg_block_descriptors_equal_the_hosts_per_block_outputs():
    n = SEG_ARGS['num_layers']
    host, twin = seg_pair(out_indices=tuple(range(n)), final_norm=False,
                          output_cls_token=True)
    img = torch.randn(2, 3, 32, 32)
    outs = host(img)
    cls = block_descriptors(twin, img, 'cls')
    mean = block_descriptors(twin, img, 'mean_patch')
    assert cls.shape == (2, n, 32)
    for i, (fmap, cls_tok) in enumerate(outs):
        torch.testing.assert_close(cls[:, i], cls_tok, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mean[:, i], fmap.mean((2, 3)), atol=1e-5,
                                   rtol=1e-5)


def test_pretrain_block_descriptors_equal_the_hosts_raw_outputs():
    host, twin = pretrain_pair(out_indices=(0, 1, 2, 3), out_type='raw',
                               final_norm=False)
    img = torch.randn(2, 3, 32, 32)
    outs = host(img)
    cls = block_descriptors(twin, img, 'cls')
    mean = block_descriptors(twin, img, 'mean_patch')
    for i, raw in enumerate(outs):
        torch.testing.assert_close(cls[:, i], raw[:, 0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mean[:, i], raw[:, 1:].mean(1), atol=1e-5,
                                   rtol=1e-5)


def test_cls_descriptor_needs_a_cls_token():
    _, twin = seg_pair(with_cls_token=False)
    with pytest.raises(ValueError, match='mean_patch'):
        block_descriptors(twin, torch.randn(1, 3, 32, 32), 'cls')
    assert block_descriptors(twin, torch.randn(1, 3, 32, 32),
                             'mean_patch').shape == (1, 4, 32)


def test_descriptors_refuse_plain_hosts():
    host, _ = seg_pair()
    with pytest.raises(TypeError, match='PromptedSegViT'):
        block_descriptors(host, torch.randn(1, 3, 32, 32))


# -- files --------------------------------------------------------------------
def test_hierarchy_json_and_plot(tmp_path):
    path = tmp_path / 'h.json'
    path.write_text(json.dumps(dict(starts=[0, 2, 3], threshold=0.9)))
    assert load_hierarchy(str(path)) == [0, 2, 3]
    assert resolve_starts(str(path)) == [0, 2, 3]
    assert resolve_starts((0, 1)) == [0, 1]
    assert resolve_starts(None) is None
    with pytest.raises(FileNotFoundError, match='ship_hierarchy.py'):
        load_hierarchy(str(tmp_path / 'missing.json'))
    png = tmp_path / 'a.png'
    plot_affinity(np.eye(4), [0, 2], str(png))
    assert png.stat().st_size > 1000
