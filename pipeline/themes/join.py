"""Which segments join which theme: a theme's centre and the similarity a segment needs to join it,
calibrated on the theme's own members.

A run gives segments the clustering left out to the theme they fit (:class:`JoinRule`,
:func:`join_outliers`, section ``cluster.join_outliers`` of the configuration): it calibrates each theme
(:func:`calibrate`) and classifies the segments against it (:func:`classify`). The same rule is the
``review.learner: centroid`` choice for runs that honour coders' decisions and for ``apply``
(``pipeline.learn.apply``); the default there is the learner.

Every vector is a float32/float64 row, L2-normalised as ``pipeline.embed.encoder.Embedder`` gives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from pipeline.config import JoinOutliersSettings
from pipeline.themes.cluster import OUTLIER

ASSIGNED, UNCERTAIN, NONE = "assigned", "uncertain", "none"


def unit_vectors(v: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (rows of zeros stay zero)."""
    v = np.asarray(v, dtype=np.float64)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)


@dataclass(frozen=True)
class Calibration:
    """A kept theme's centroid and the similarity a new segment needs to join it."""

    key: str
    centroid: np.ndarray = field(repr=False)
    threshold: float
    n_examples: int
    loo_similarities: tuple[float, ...] = ()


def calibrate(examples: Mapping[str, np.ndarray], percentile: float = 10.0, min_similarity: float = 0.35,
              ) -> dict[str, Calibration]:
    """Centroid and threshold per theme from its example vectors (``key -> (n, dim)`` array).

    The threshold is the ``percentile``-th percentile of the leave-one-out similarities (each example
    against the centroid of the others), raised to ``min_similarity``; a theme with a single example has
    no leave-one-out similarity and gets ``min_similarity``. Themes with no examples are left out.
    Deterministic: themes come back in ``examples``' order.
    """
    out: dict[str, Calibration] = {}
    for key, vectors in examples.items():
        x = unit_vectors(np.atleast_2d(np.asarray(vectors, dtype=np.float64)))
        if x.size == 0 or len(x) == 0:
            continue
        total = x.sum(axis=0)
        centroid = unit_vectors(total)
        if len(x) >= 2:
            others = unit_vectors(total[None, :] - x)
            loo = np.einsum("ij,ij->i", x, others)
            threshold = max(float(min_similarity), float(np.percentile(loo, percentile)))
        else:
            loo = np.zeros(0)
            threshold = float(min_similarity)
        out[key] = Calibration(key, centroid, round(threshold, 6), len(x), tuple(round(float(s), 6) for s in loo))
    return out


@dataclass(frozen=True)
class Assignment:
    """Where one new segment goes: ``status`` is assigned, uncertain or none; ``key`` the best theme
    (None when there are no themes); ``runner_up`` the second best, for the reviewer."""

    status: str
    key: str | None
    similarity: float
    threshold: float
    runner_up: str | None = None
    runner_up_similarity: float = 0.0


def classify(vectors: np.ndarray, calibrations: Mapping[str, Calibration], uncertain_margin: float = 0.05,
             competitors: Mapping[str, np.ndarray] | None = None) -> list[Assignment]:
    """Classify each row of ``vectors`` into the calibrated themes.

    With ``s`` the cosine similarity to a theme's centroid and ``t`` its threshold, the best theme is
    the one with the highest ``s - t``. ``competitors`` are centroids of other known themes that are
    not to receive segments (the previous run's themes nobody kept, rejected themes): a segment closer
    to one of them than to its best kept theme is not taken, since the threshold alone lets a broad
    theme swallow much of a corpus on one topic.

    assigned: ``s >= t``, and no competitor, nor another kept theme that accepts the segment, is within
    ``uncertain_margin`` of ``s``; uncertain: ``s >= t - uncertain_margin`` and no competitor is closer
    by ``uncertain_margin`` or more (near the threshold, or between two themes); none otherwise. A
    segment equally near a kept theme and a competitor is therefore uncertain whatever the last float
    bit says.
    """
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    keys = list(calibrations)
    if not keys or len(vectors) == 0 or vectors.size == 0:
        return [Assignment(NONE, None, 0.0, 0.0) for _ in range(len(vectors) if vectors.size else 0)]
    centroids = np.stack([calibrations[k].centroid for k in keys])
    thresholds = np.array([calibrations[k].threshold for k in keys])
    unit = unit_vectors(vectors)
    sims = unit @ centroids.T
    comp_keys = list(competitors or {})
    comp = unit @ unit_vectors(np.stack([np.asarray(competitors[k], dtype=np.float64) for k in comp_keys])).T \
        if comp_keys else np.full((len(unit), 0), -np.inf)
    out = []
    for n, row in enumerate(sims):
        margin = row - thresholds
        order = np.lexsort((np.arange(len(keys)), -margin))  # best margin first, ties by key order
        best = int(order[0])
        second = int(order[1]) if len(keys) > 1 else None
        s, t = float(row[best]), float(thresholds[best])
        rivals = [(float(row[second]), keys[second])] if second is not None else []
        if comp_keys:
            c = int(np.argmax(comp[n]))
            rivals.append((float(comp[n, c]), comp_keys[c]))
        r_sim, r_key = max(rivals, key=lambda x: x[0]) if rivals else (0.0, None)
        kept_rival = second is not None and row[second] >= thresholds[second] and s - row[second] < uncertain_margin
        comp_best = float(comp[n].max()) if comp_keys else -np.inf
        if s >= t and comp_best <= s - uncertain_margin and not kept_rival:
            status = ASSIGNED
        elif s >= t - uncertain_margin and comp_best < s + uncertain_margin:
            status = UNCERTAIN
        else:
            status = NONE
        out.append(Assignment(status, keys[best], round(s, 6), round(t, 6), r_key, round(r_sim, 6)))
    return out


@dataclass(frozen=True)
class JoinRule:
    """When a segment the clustering left out joins a theme: when it is as close to the theme's centre
    as most of the theme's own members are (the rule a re-run uses to give confirmed themes new
    segments, :func:`classify`).

    The threshold is the ``percentile``-th percentile of the members' leave-one-out similarities to the
    centre, at least ``min_similarity``; a segment within ``uncertain_margin`` of a second theme that
    would also take it stays in the queue.
    """

    percentile: float
    min_similarity: float
    uncertain_margin: float

    @classmethod
    def from_config(cls, cfg: JoinOutliersSettings | Mapping) -> "JoinRule | None":
        """The rule of ``cluster.join_outliers``; None when its percentile is null (nothing joins)."""
        cfg = JoinOutliersSettings.of(cfg)
        if cfg.percentile is None:
            return None
        return cls(cfg.percentile, cfg.min_similarity, cfg.uncertain_margin)


def join_outliers(vectors: np.ndarray, labels: np.ndarray, rows: Sequence[int], themes: Sequence[int],
                  rule: JoinRule | None) -> dict[int, tuple[int, float]]:
    """Which of the outlier ``rows`` join one of ``themes`` (labels in ``labels``) under ``rule``.

    Returns ``row -> (theme label, cosine similarity to the theme's centre)``. Rows that are not
    outliers, and themes not listed (e.g. themes a coder kept, which a re-run fills by its own rule),
    take no part. Deterministic: themes are calibrated in the order given.
    """
    rows = [int(r) for r in rows if labels[r] == OUTLIER]
    themes = [int(t) for t in themes if t != OUTLIER and (labels == t).any()]
    if rule is None or not rows or not themes:
        return {}
    calibrations = calibrate({t: vectors[labels == t] for t in themes}, rule.percentile, rule.min_similarity)
    found = classify(vectors[rows], calibrations, rule.uncertain_margin)
    return {r: (a.key, a.similarity) for r, a in zip(rows, found) if a.status == ASSIGNED}
