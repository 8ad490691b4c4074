"""Reduce and cluster: UMAP (cosine) then HDBSCAN, with sizes scaled to the corpus and fixed seeds.

Segments HDBSCAN leaves unassigned get the label -1. Those that fit a theme as well as its own
members do join it later, marked as joined (``pipeline.themes.join.join_outliers``); those still left
are clustered again at a finer grain (``ThemeClusterer.cluster_again``,
``pipeline.themes.assemble.cluster_left_out``), and what that leaves forms the outlier queue. A broad theme
whose parts at that finer grain are unlike each other in the model's space is split into them
(``ThemeClusterer.split_broad``).

UMAP's neighbour graph is computed exactly (one matrix product per block of rows) up to
``exact_knn_max`` segments: on a study-sized corpus that takes a second, where UMAP's approximate
search (NN-descent) spends 20-25 s compiling itself in every new process before it starts.
Larger corpora use NN-descent, whose compile time is then small beside the work. UMAP's compiled
kernels are kept on disk between processes (:mod:`pipeline.themes.compiled`).
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from pipeline.config import ClusterSettings, scaled
from pipeline.themes.compiled import cache_compiled

OUTLIER = -1
#: Bump when ``ThemeClusterer.reduce`` changes its output for the same parameters (caches key on it).
REDUCE_RECIPE = 1


class CorpusTooSmallError(ValueError):
    """Too few segments to find themes; the message says how many there are and how many are needed."""


@dataclass
class ThemeClusterer:
    """UMAP + HDBSCAN in the scikit-learn manner: parameters in, ``fit`` sets ``*_`` attributes.

    Attributes after ``fit``: ``reduced_`` (n, n_components), ``labels_`` (-1 = outlier),
    ``probabilities_`` (HDBSCAN membership strength in [0, 1]) and ``split_from_`` (the label of each
    theme made by splitting a broad one -> the label of the theme it came from, which keeps its largest
    part; see :meth:`split_broad`).
    """

    n_neighbors: int = 15
    n_components: int = 5
    min_dist: float = 0.0
    metric: str = "cosine"
    n_epochs: int | None = 200
    exact_knn_max: int = 30000
    min_cluster_size: int = 10
    min_samples: int | None = None
    cluster_selection_method: str = "eom"
    cluster_selection_epsilon: float = 0.0
    max_cluster_size: int = 0
    split_min_size: int | None = None
    split_min_cluster_size: int = 5
    split_max_similarity: float = 0.7
    random_state: int = 42

    @classmethod
    def from_config(cls, cfg: ClusterSettings | Mapping, n_segments: int) -> "ThemeClusterer":
        """Parameters for a corpus of ``n_segments`` from the ``cluster`` section (a mapping of it is checked
        and completed from the defaults); refuses a corpus too small to cluster."""
        cfg = ClusterSettings.of(cfg)
        if n_segments < cfg.min_segments:
            raise CorpusTooSmallError(
                f"only {n_segments} participant segments to cluster; at least {cfg.min_segments} are "
                "needed to suggest themes (cluster.min_segments). Add transcripts or lower that setting."
            )
        umap_cfg, hdb, split = cfg.umap, cfg.hdbscan, cfg.split_broad
        size = max(2, scaled(hdb.min_cluster_size, n_segments))
        neighbors, largest = umap_cfg.n_neighbors, 0
        if n_segments < cfg.small_corpus_segments:  # a small study: themes raised by a few people
            size = max(2, min(size, max(cfg.smallest_theme_cases, round(size * n_segments / cfg.small_corpus_segments))))
            neighbors = scaled(umap_cfg.small_n_neighbors, n_segments)
            largest = max(size, int(cfg.small_corpus_largest_share * n_segments))
        return cls(
            n_neighbors=max(2, min(neighbors, n_segments - 1)),
            n_components=max(2, min(umap_cfg.n_components, n_segments - 2)),
            min_dist=umap_cfg.min_dist,
            metric=umap_cfg.metric,
            n_epochs=umap_cfg.n_epochs,
            exact_knn_max=umap_cfg.exact_knn_max,
            min_cluster_size=size,
            min_samples=None if hdb.min_samples is None else max(1, scaled(hdb.min_samples, n_segments)),
            cluster_selection_method=hdb.cluster_selection_method,
            max_cluster_size=largest,
            cluster_selection_epsilon=hdb.cluster_selection_epsilon,
            split_min_size=None if split.size_factor is None else round(split.size_factor * size),
            split_min_cluster_size=finer_size(size, split.size_divisor, split.min_cluster_size),
            split_max_similarity=split.max_similarity,
            random_state=cfg.seed,
        )

    def fit(self, X: np.ndarray, reduced: np.ndarray | None = None) -> "ThemeClusterer":
        """Reduce ``X`` (or take ``reduced``, an earlier ``reduce(X)`` with the same parameters), cluster,
        and split the broad themes whose parts are unlike each other."""
        self.reduced_ = self.reduce(X) if reduced is None else np.asarray(reduced, dtype=np.float64)
        self.labels_, self.probabilities_ = self.cluster(self.reduced_)
        self.split_from_: dict[int, int] = {}
        if self.split_min_size is not None:
            self.labels_, self.probabilities_, self.split_from_ = self.split_broad(X, self.labels_, self.probabilities_)
        return self

    def split_broad(self, X: np.ndarray, labels: np.ndarray,
                    strengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
        """Split each theme of at least ``split_min_size`` segments whose parts are unlike each other.

        The theme's members are clustered again at ``split_min_cluster_size`` (their UMAP coordinates, no
        new layout); the parts found are grouped so that every two parts of a group have centres at
        cosine >= ``split_max_similarity`` in the model's space ``X`` (complete linkage). With two or more
        groups the theme is split: the largest group keeps its label, with the members the finer
        clustering left out; each other group becomes a theme with a new label. A broad theme of one
        topic stays whole; one that holds unlike parts ("nothing to improve" inside broad praise) comes apart.
        Returns copies of ``labels`` and ``strengths`` and ``{new label: label split from}``.
        """
        labels, strengths = np.array(labels, copy=True), np.array(strengths, dtype=np.float64, copy=True)
        X = np.asarray(X)
        split_from: dict[int, int] = {}
        next_label = int(max(labels.max(), OUTLIER)) + 1
        for theme in [int(t) for t in np.unique(labels) if t != OUTLIER]:
            rows = np.flatnonzero(labels == theme)
            if len(rows) < self.split_min_size:
                continue
            parts = self.cluster_again(rows, self.split_min_cluster_size)
            groups = unlike_groups(X[rows].astype(np.float64), parts.labels_, self.split_max_similarity)
            if groups.max() < 1:
                continue
            placed = groups != OUTLIER
            strengths[rows[placed]] = parts.probabilities_[placed]
            for group in range(1, int(groups.max()) + 1):
                labels[rows[groups == group]] = next_label
                split_from[next_label] = theme
                next_label += 1
        return labels, strengths, split_from

    def reduce(self, X: np.ndarray) -> np.ndarray:
        """UMAP coordinates of ``X`` (n, n_components); deterministic for a given ``X`` and seed."""
        import umap

        cache_compiled()
        X = np.asarray(X, dtype=np.float32)
        knn = (None, None, None)
        if self.metric == "cosine" and len(X) <= self.exact_knn_max:
            knn = cosine_knn(X, self.n_neighbors)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # n_jobs=1 with a seed, spectral-init fallbacks on tiny graphs
            reducer = umap.UMAP(
                n_neighbors=self.n_neighbors,
                n_components=self.n_components,
                min_dist=self.min_dist,
                metric=self.metric,
                n_epochs=self.n_epochs,
                precomputed_knn=knn,
                random_state=self.random_state,
                n_jobs=1,
            )
            return reducer.fit_transform(X).astype(np.float64)

    def reduce_params(self) -> dict:
        """The parameters ``reduce`` depends on (a cache of reduced spaces keys on these)."""
        return {k: getattr(self, k) for k in ("n_neighbors", "n_components", "min_dist", "metric", "n_epochs",
                                              "exact_knn_max", "random_state")}

    def cluster_again(self, rows: Sequence[int], min_cluster_size: int) -> "ThemeClusterer":
        """A clusterer fitted to the reduced coordinates of ``rows`` only, at ``min_cluster_size`` (and
        ``min_samples`` no larger): a finer grain over part of the corpus, without a new UMAP layout.
        Fewer than ``2 * min_cluster_size`` rows give no clusters."""
        size = int(min_cluster_size)
        again = self._finer(rows, size)
        if len(again.reduced_) < 2 * size:
            again.labels_ = np.full(len(again.reduced_), OUTLIER, dtype=np.int64)
            again.probabilities_ = np.zeros(len(again.reduced_))
        else:
            again.labels_, again.probabilities_ = again.cluster(again.reduced_)
        return again

    def _finer(self, rows: Sequence[int], min_cluster_size: int) -> "ThemeClusterer":
        """An unfitted copy over the reduced coordinates of ``rows`` at ``min_cluster_size`` (``min_samples``
        no larger), that splits nothing."""
        again = replace(self, min_cluster_size=min_cluster_size, split_min_size=None,
                        min_samples=None if self.min_samples is None else min(self.min_samples, min_cluster_size))
        again.reduced_ = self.reduced_[np.asarray(rows, dtype=np.int64)]
        again.split_from_ = {}
        return again

    def cluster(self, reduced: np.ndarray, min_cluster_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        import hdbscan

        model = hdbscan.HDBSCAN(
            min_cluster_size=min_cluster_size or self.min_cluster_size,
            min_samples=self.min_samples,
            cluster_selection_method=self.cluster_selection_method,
            cluster_selection_epsilon=self.cluster_selection_epsilon,
            max_cluster_size=self.max_cluster_size,
        )
        labels = model.fit_predict(reduced)
        return renumber_by_size(labels), model.probabilities_.astype(np.float64)

    def stability(self, n_resamples: int = 5, sample_fraction: float = 0.8,
                  found_again_jaccard: float = 0.5) -> dict[int, tuple[float, int]]:
        """How well each theme survives re-clustering on random subsamples of the reduced space.

        For each resample, a theme's score is its best Jaccard overlap (over the sampled points) with
        any cluster of the resample. Returns ``{label: (mean best Jaccard, resamples where it reached
        found_again_jaccard)}``. Subsampling re-runs HDBSCAN only, so it costs seconds, not minutes.

        A theme split off a broad one (``split_from_``) is measured at the grain that found it, as the
        second pass's themes are: the broad theme's members are resampled and re-clustered at
        ``split_min_cluster_size``. At the first pass's grain the broad theme comes back whole, and the
        part split off it would read as never found again.
        """
        scores = self._resampled_overlap(n_resamples, sample_fraction, found_again_jaccard)
        families: dict[int, list[int]] = {}
        for child, parent in self.split_from_.items():
            families.setdefault(parent, []).append(child)
        for parent, children in sorted(families.items()):
            rows = np.flatnonzero(np.isin(self.labels_, [parent, *children]))
            family = self._finer(rows, self.split_min_cluster_size)
            family.labels_ = self.labels_[rows]
            fine = family._resampled_overlap(n_resamples, sample_fraction, found_again_jaccard)
            scores.update({child: fine[child] for child in children})
        return scores

    def _resampled_overlap(self, n_resamples: int, sample_fraction: float,
                           found_again_jaccard: float) -> dict[int, tuple[float, int]]:
        """:meth:`stability` at this clusterer's own grain, for every label of ``labels_``."""
        rng = np.random.default_rng(self.random_state)
        labels = self.labels_
        n = len(labels)
        themes = [t for t in np.unique(labels) if t != OUTLIER]
        if not themes:
            return {}
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


# The last few searches of a study's rows among themselves, by the rows' bytes: the review page's Teach queue
# asks for the same study's neighbours at every batch (3 s of 10 on two cores for 10,000 segments).
_SEARCHED: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
_SEARCHED_KEPT = 2


def cosine_knn(X: np.ndarray, k: int, block: int = 1024, queries: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours by cosine distance among the rows of ``X``: of each row of ``X``, each
    point first in its own list, or of each row of ``queries`` where given.

    Returns ``(indices, distances)`` of shape (n, k) in UMAP's ``precomputed_knn`` form, nearest first.
    Rows are normalised here, so ``X`` need not be unit length. Memory: ``block`` x n floats at a time
    (a matrix product per block: several times faster than scikit-learn's brute-force cosine search).
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    if queries is None:
        key = (hashlib.sha256(X.tobytes()).hexdigest(), X.shape, k, block)
        if key not in _SEARCHED:
            _SEARCHED[key] = _cosine_knn(X, k, block, None)
            while len(_SEARCHED) > _SEARCHED_KEPT:
                _SEARCHED.popitem(last=False)
        _SEARCHED.move_to_end(key)
        indices, distances = _SEARCHED[key]
        return indices.copy(), distances.copy()
    return _cosine_knn(X, k, block, queries)


def _cosine_knn(X: np.ndarray, k: int, block: int, queries: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    X = X / np.clip(np.linalg.norm(X, axis=1, keepdims=True), 1e-12, None)
    Q = X if queries is None else np.asarray(queries, dtype=np.float32)
    if queries is not None:
        Q = Q / np.clip(np.linalg.norm(Q, axis=1, keepdims=True), 1e-12, None)
    n = len(Q)
    k = min(k, len(X))
    indices = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, block):
        rows = np.arange(start, min(start + block, n))
        sims = Q[rows] @ X.T
        if queries is None:
            sims[np.arange(len(rows)), rows] = np.inf  # self first, even among exact duplicates
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.lexsort((top, -top_sims), axis=1)  # by similarity, then index: no ties left to chance
        indices[rows] = np.take_along_axis(top, order, axis=1)
        distances[rows] = np.clip(1.0 - np.take_along_axis(top_sims, order, axis=1), 0.0, 2.0)
    if queries is None:
        distances[:, 0] = 0.0
    return indices, distances


def finer_size(min_cluster_size: int, divisor: float, minimum: int) -> int:
    """A finer grain than ``min_cluster_size``: divided by ``divisor``, never below ``minimum``."""
    return max(int(minimum), round(min_cluster_size / float(divisor)))


def unlike_groups(X: np.ndarray, parts: np.ndarray, max_similarity: float) -> np.ndarray:
    """Group ``parts`` (cluster labels of the rows of ``X``, -1 = none) so that every two parts of a
    group have centres at cosine >= ``max_similarity`` (complete linkage of the centres).

    Returns each row's group, numbered 0.. by decreasing size (-1 where ``parts`` is -1)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    parts = np.asarray(parts)
    ids = [int(p) for p in np.unique(parts) if p != OUTLIER]
    if len(ids) < 2:
        return np.where(parts == OUTLIER, OUTLIER, 0)
    centres = np.stack([X[parts == p].mean(axis=0) for p in ids])
    centres /= np.clip(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12, None)
    distance = np.clip(1.0 - centres @ centres.T, 0.0, 2.0)
    np.fill_diagonal(distance, 0.0)
    group_of = fcluster(linkage(squareform(distance, checks=False), "complete"), 1.0 - max_similarity, "distance")
    grouped = np.full(len(parts), OUTLIER, dtype=np.int64)
    for part, group in zip(ids, group_of):
        grouped[parts == part] = group
    return renumber_by_size(grouped)


def renumber_by_size(labels: np.ndarray) -> np.ndarray:
    """Relabel clusters 0..k-1 by decreasing size (ties by first appearance), keeping -1 for outliers."""
    labels = np.asarray(labels)
    ids = [c for c in dict.fromkeys(labels.tolist()) if c != OUTLIER]
    order = sorted(ids, key=lambda c: -int((labels == c).sum()))
    mapping = {old: new for new, old in enumerate(order)}
    return np.array([mapping.get(c, OUTLIER) for c in labels.tolist()], dtype=np.int64)
