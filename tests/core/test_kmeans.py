"""The shared spherical k-means (SHIP prototypes, DA-VPT mapping)."""
import pytest
import torch

from clusters import pairs, partition
from mmship.core.kmeans import cluster_means, spherical_kmeans


def test_kmeans_recovers_tight_pairs_deterministically():
    points = pairs()
    assign, cent = spherical_kmeans(points, 3, seed=0)
    assert partition(assign) == [[0, 1], [2, 3], [4, 5]]
    assert cent.shape == (3, 8)
    torch.testing.assert_close(cent.norm(dim=1), torch.ones(3))
    again, _ = spherical_kmeans(points, 3, seed=0)
    assert torch.equal(assign, again)


def test_kmeans_clusters_by_direction_not_norm():
    # two directions, very different norms within each
    x = torch.tensor([[1.0, 0.0], [100.0, 1.0], [0.0, 1.0], [1.0, 50.0]])
    assign, _ = spherical_kmeans(x, 2, seed=0)
    assert partition(assign) == [[0, 1], [2, 3]]


def test_kmeans_never_leaves_a_cluster_empty():
    # 10 identical points and 1 outlier into 4 clusters
    x = torch.cat([torch.ones(10, 4), -torch.ones(1, 4)])
    assign, _ = spherical_kmeans(x, 4)
    assert torch.bincount(assign, minlength=4).min() >= 1
    with pytest.raises(ValueError, match='1 <= k <= N'):
        spherical_kmeans(x, 12)


def test_restarts_keep_the_best_objective():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(60, 6, generator=g)

    def objective(assign, cent):
        return float((torch.nn.functional.normalize(x, dim=1) *
                      cent[assign]).sum())

    one = objective(*spherical_kmeans(x, 5, seed=0, n_init=1))
    best = objective(*spherical_kmeans(x, 5, seed=0, n_init=6))
    assert best >= one - 1e-6


def test_cluster_means_keep_the_points_scale():
    x = torch.tensor([[2.0, 0.0], [4.0, 0.0], [0.0, 10.0]])
    means = cluster_means(x, torch.tensor([0, 0, 1]), 2)
    torch.testing.assert_close(means, torch.tensor([[3.0, 0.0], [0.0, 10.0]]))
