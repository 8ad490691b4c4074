"""Propose ways to split one theme: re-cluster its members' vectors into k parts (pure, deterministic)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = ("kmeans", "agglomerative")


@dataclass(frozen=True)
class SplitProposal:
    """``labels[i]`` is the part (0..k-1) of member ``i``; parts are numbered by decreasing size,
    ties by first member. ``central[p]`` lists member indices of part ``p``, most central first."""

    method: str
    k: int
    labels: tuple[int, ...]
    central: tuple[tuple[int, ...], ...]
    cohesion: tuple[float, ...]  # mean cosine similarity of each part's members to the part's centroid


def propose_split(vectors: np.ndarray, k: int = 2, method: str = "kmeans", seed: int = 42) -> SplitProposal:
    """Split ``vectors`` (unit rows) into ``k`` parts with k-means (cosine via unit vectors) or
    average-linkage agglomerative clustering on cosine distance."""
    x = np.asarray(vectors, dtype=np.float64)
    if method not in METHODS:
        raise ValueError(f"unknown split method '{method}' (one of {', '.join(METHODS)})")
    if not 2 <= k <= len(x):
        raise ValueError(f"cannot split {len(x)} segments into {k} parts")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    if method == "kmeans":
        from sklearn.cluster import KMeans

        raw = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
    else:
        from sklearn.cluster import AgglomerativeClustering

        raw = AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit_predict(x)
    first = {c: i for i, c in reversed(list(enumerate(raw.tolist())))}
    order = sorted(set(raw.tolist()), key=lambda c: (-int((raw == c).sum()), first[c]))
    mapping = {c: p for p, c in enumerate(order)}
    labels = np.array([mapping[c] for c in raw.tolist()])
    central, cohesion = [], []
    for p in range(k):
        idx = np.flatnonzero(labels == p)
        c = x[idx].sum(axis=0)
        c = c / (np.linalg.norm(c) or 1.0)
        sims = x[idx] @ c
        central.append(tuple(int(i) for i in idx[np.lexsort((idx, -sims))]))
        cohesion.append(round(float(sims.mean()), 4))
    return SplitProposal(method, k, tuple(int(v) for v in labels), tuple(central), tuple(cohesion))
