"""Reduce and cluster: UMAP (cosine) then HDBSCAN, with sizes scaled to the corpus and fixed seeds.

Segments HDBSCAN leaves unassigned get the label -1: they form the outlier queue and are never
reassigned behind the user's back.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from pipeline.config import scaled

OUTLIER = -1


class CorpusTooSmallError(ValueError):
    """Too few segments to find themes; the message says how many there are and how many are needed."""


@dataclass
class ThemeClusterer:
    """UMAP + HDBSCAN in the scikit-learn manner: parameters in, ``fit`` sets ``*_`` attributes.

    Attributes after ``fit``: ``reduced_`` (n, n_components), ``labels_`` (-1 = outlier) and
    ``probabilities_`` (HDBSCAN membership strength in [0, 1]).
    """

    n_neighbors: int = 15
    n_components: int = 5
    min_dist: float = 0.0
    metric: str = "cosine"
    min_cluster_size: int = 10
    min_samples: int | None = None
    cluster_selection_method: str = "eom"
    cluster_selection_epsilon: float = 0.0
    random_state: int = 42

    @classmethod
    def from_config(cls, cfg: Mapping, n_segments: int) -> "ThemeClusterer":
        """Parameters for a corpus of ``n_segments``; refuses a corpus too small to cluster."""
        if n_segments < cfg["min_segments"]:
            raise CorpusTooSmallError(
                f"only {n_segments} participant segments to cluster; at least {cfg['min_segments']} are "
                "needed to suggest themes (cluster.min_segments). Add transcripts or lower that setting."
            )
        umap_cfg, hdb = cfg["umap"], cfg["hdbscan"]
        return cls(
            n_neighbors=max(2, min(int(umap_cfg["n_neighbors"]), n_segments - 1)),
            n_components=max(2, min(int(umap_cfg["n_components"]), n_segments - 2)),
            min_dist=float(umap_cfg["min_dist"]),
            metric=umap_cfg["metric"],
            min_cluster_size=max(2, scaled(hdb["min_cluster_size"], n_segments)),
            min_samples=None if hdb["min_samples"] is None else max(1, scaled(hdb["min_samples"], n_segments)),
            cluster_selection_method=hdb["cluster_selection_method"],
            cluster_selection_epsilon=float(hdb["cluster_selection_epsilon"]),
            random_state=int(cfg["seed"]),
        )

    def fit(self, X: np.ndarray) -> "ThemeClusterer":
        self.reduced_ = self.reduce(X)
        self.labels_, self.probabilities_ = self.cluster(self.reduced_)
        return self

    def reduce(self, X: np.ndarray) -> np.ndarray:
        import umap

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # n_jobs=1 with a seed, spectral-init fallbacks on tiny graphs
            reducer = umap.UMAP(
                n_neighbors=self.n_neighbors,
                n_components=self.n_components,
                min_dist=self.min_dist,
                metric=self.metric,
                random_state=self.random_state,
                n_jobs=1,
            )
            return reducer.fit_transform(X).astype(np.float64)

    def cluster(self, reduced: np.ndarray, min_cluster_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        import hdbscan

        model = hdbscan.HDBSCAN(
            min_cluster_size=min_cluster_size or self.min_cluster_size,
            min_samples=self.min_samples,
            cluster_selection_method=self.cluster_selection_method,
            cluster_selection_epsilon=self.cluster_selection_epsilon,
        )
        labels = model.fit_predict(reduced)
        return renumber_by_size(labels), model.probabilities_.astype(np.float64)

    def stability(self, n_resamples: int = 5, sample_fraction: float = 0.8,
                  found_again_jaccard: float = 0.5) -> dict[int, tuple[float, int]]:
        """How well each theme survives re-clustering on random subsamples of the reduced space.

        For each resample, a theme's score is its best Jaccard overlap (over the sampled points) with
        any cluster of the resample. Returns ``{label: (mean best Jaccard, resamples where it reached
        found_again_jaccard)}``. Subsampling re-runs HDBSCAN only, so it costs seconds, not minutes.
        """
        rng = np.random.default_rng(self.random_state)
        labels = self.labels_
        n = len(labels)
        themes = [t for t in np.unique(labels) if t != OUTLIER]
        scores: dict[int, list[float]] = {t: [] for t in themes}
        size = max(2, int(round(self.min_cluster_size * sample_fraction)))
        for _ in range(n_resamples):
            idx = np.sort(rng.choice(n, size=max(3, int(round(sample_fraction * n))), replace=False))
            new_labels, _ = self.cluster(self.reduced_[idx], min_cluster_size=size)
            old = labels[idx]
            for t in themes:
                members = old == t
                if not members.any():
                    continue
                best = 0.0
                for c in np.unique(new_labels[members]):
                    if c == OUTLIER:
                        continue
                    other = new_labels == c
                    best = max(best, float((members & other).sum() / (members | other).sum()))
                scores[t].append(best)
        return {t: (float(np.mean(s)) if s else 0.0, int(sum(v >= found_again_jaccard for v in s)))
                for t, s in scores.items()}


def renumber_by_size(labels: np.ndarray) -> np.ndarray:
    """Relabel clusters 0..k-1 by decreasing size (ties by first appearance), keeping -1 for outliers."""
    labels = np.asarray(labels)
    ids = [c for c in dict.fromkeys(labels.tolist()) if c != OUTLIER]
    order = sorted(ids, key=lambda c: -int((labels == c).sum()))
    mapping = {old: new for new, old in enumerate(order)}
    return np.array([mapping.get(c, OUTLIER) for c in labels.tolist()], dtype=np.int64)
