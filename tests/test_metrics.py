"""Clustering scores against hand counts."""

from __future__ import annotations

import pytest
import torch

from ppl_lvm.metrics import cluster_majority, cluster_purity


def test_purity_and_majority_by_hand():
    """Purity counts each cluster's majority label; empty clusters have no majority."""
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0])
    clusters = torch.tensor([3, 3, 3, 0, 0, 0, 0, 1])  # cluster 2 is empty
    # cluster 3: {0,0,1} -> 2 hits; cluster 0: {1,1,2,2} -> 2 hits; cluster 1: {0} -> 1 hit
    assert cluster_purity(clusters, labels) == pytest.approx(5 / 8)
    assert cluster_majority(clusters, labels, 4) == [1, 0, None, 0]


def test_purity_extremes_and_relabelling():
    """A perfect clustering scores 1 whatever the cluster names; one cluster scores the
    commonest label's share."""
    labels = torch.tensor([2, 2, 0, 1, 1, 1])
    assert cluster_purity((labels + 5) % 3, labels) == 1.0
    assert cluster_purity(torch.zeros(6, dtype=torch.long), labels) == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        cluster_purity(torch.zeros(5, dtype=torch.long), labels)
