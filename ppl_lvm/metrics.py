"""Scores of a clustering against known labels (purity, majority label per cluster)."""

from __future__ import annotations

import torch
from sklearn.metrics.cluster import contingency_matrix

__all__ = ["cluster_majority", "cluster_purity"]


def cluster_majority(
    clusters: torch.Tensor, labels: torch.Tensor, num_clusters: int
) -> list[int | None]:
    """The most common true label in each cluster; None for an empty cluster.

    Parameters
    ----------
    clusters : torch.Tensor of shape (N,), int
        Cluster of each datum, in 0..num_clusters-1.
    labels : torch.Tensor of shape (N,), int
        True label of each datum.
    num_clusters : int

    Returns
    -------
    list of length num_clusters
    """
    out: list[int | None] = []
    for c in range(num_clusters):
        members = labels[clusters == c]
        out.append(int(torch.bincount(members).argmax()) if members.numel() else None)
    return out


def cluster_purity(clusters: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of data whose cluster's majority label is their own label.

    Parameters
    ----------
    clusters : torch.Tensor of shape (N,), int
    labels : torch.Tensor of shape (N,), int

    Returns
    -------
    float in (0, 1]
        1 for a perfect clustering; the share of the commonest label for a single cluster.
    """
    if clusters.shape != labels.shape or clusters.dim() != 1:
        raise ValueError(
            f"clusters and labels must both have shape (N,), got {tuple(clusters.shape)} and "
            f"{tuple(labels.shape)}."
        )
    table = contingency_matrix(labels.cpu().numpy(), clusters.cpu().numpy())  # (labels, clusters)
    return float(table.max(axis=0).sum() / table.sum())
