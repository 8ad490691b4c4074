"""Candidate themes as plain records: the output of cluster -> describe -> rank, ready to store or show."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from pipeline.config import SecondPassSettings, StabilitySettings
from pipeline.themes.cluster import OUTLIER, ThemeClusterer, finer_size
from pipeline.themes.describe import ThemeDescription, centroids, nearest_themes
from pipeline.themes.rank import ThemeScore, score_themes


@dataclass(frozen=True)
class CandidateTheme:
    """One ranked suggestion. Indices (``members``, ``quotes``, ``joined``) point into the run's segment list.

    ``label`` is the theme's name and ``description`` one central clause of a member with its participant
    (:mod:`pipeline.themes.name`), or both from a local generative model (:mod:`pipeline.themes.model_name`). ``members`` are the segments the clustering put in the theme followed by those that ``joined`` it
    from the outlier queue (:func:`pipeline.themes.join.join_outliers`); a joined member's strength is 0 (HDBSCAN left it
    out) and its centrality is its similarity to the theme's centre. Label, keywords, quotes and rank
    come from the clustered members only. ``second_pass``: found by clustering again the segments the
    first pass left out (:func:`cluster_left_out`); such themes rank after every first-pass theme.
    """

    rank: int
    cluster: int
    label: str
    keywords: tuple[str, ...]
    score: float
    parts: Mapping[str, float]
    reasons: tuple[str, ...]
    cases: tuple[str, ...]
    members: tuple[int, ...]
    strengths: tuple[float, ...]
    centrality: tuple[float, ...]
    quotes: tuple[int, ...]
    joined: tuple[int, ...] = ()
    second_pass: bool = False
    description: str = ""


@dataclass(frozen=True)
class OutlierSegment:
    """A segment no theme took. ``suggested_rank`` is only a hint shown to coders, never an assignment."""

    index: int
    suggested_rank: int | None
    similarity: float


@dataclass(frozen=True)
class Suggestions:
    themes: tuple[CandidateTheme, ...]
    outliers: tuple[OutlierSegment, ...]


SPLIT_REASON = ("split from a broad theme whose parts are unlike each other; its largest part kept the "
                "theme, as '{}'")

SECOND_PASS_REASON = ("found by clustering again, at a finer grain, the segments the first pass left out; "
                      "listed after the first pass's themes")


@dataclass(frozen=True)
class SecondPass:
    """How the segments still left out after joining are clustered again: HDBSCAN over their UMAP
    coordinates at the first pass's ``min_cluster_size`` divided by ``size_divisor``, never below
    ``min_cluster_size``. Small themes the first pass's cluster size could not hold show up this way;
    what it leaves stays in the outlier queue."""

    size_divisor: float
    min_cluster_size: int

    @classmethod
    def from_config(cls, cfg: SecondPassSettings | Mapping) -> "SecondPass | None":
        """The rule of ``cluster.second_pass``; None when its size_divisor is null (no second pass)."""
        cfg = SecondPassSettings.of(cfg)
        if cfg.size_divisor is None:
            return None
        return cls(cfg.size_divisor, cfg.min_cluster_size)

    def size(self, first_pass_size: int) -> int:
        return finer_size(first_pass_size, self.size_divisor, self.min_cluster_size)


def cluster_left_out(clusterer: ThemeClusterer, labels: np.ndarray, strengths: np.ndarray, rows: Sequence[int],
                     joined: Mapping[int, tuple[int, float]], rule: SecondPass | None,
                     stability: StabilitySettings | Mapping
                     ) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[float, int]], tuple[int, ...]]:
    """Cluster again the ``rows`` that are outliers in ``labels`` (of ``clusterer``'s reduced space) and
    did not join a theme, under ``rule``; ``stability`` is ``rank.stability`` of the config.

    Returns ``(labels, strengths, stability of the new themes, new theme labels)``: copies in which the
    new themes get labels above every existing one. Deterministic for a fitted ``clusterer``.
    """
    labels, strengths = np.array(labels, copy=True), np.array(strengths, dtype=np.float64, copy=True)
    left = np.array([r for r in rows if labels[r] == OUTLIER and r not in joined], dtype=np.int64)
    if rule is None or not len(left):
        return labels, strengths, {}, ()
    again = clusterer.cluster_again(left, rule.size(clusterer.min_cluster_size))
    found = again.labels_ != OUTLIER
    offset = int(max(labels.max(), OUTLIER)) + 1
    labels[left[found]] = again.labels_[found] + offset
    strengths[left[found]] = again.probabilities_[found]
    stability = StabilitySettings.of(stability)
    scores = again.stability(stability.n_resamples, stability.sample_fraction, stability.found_again_jaccard)
    return labels, strengths, {t + offset: v for t, v in scores.items()}, tuple(sorted(t + offset for t in scores))


def score_passes(descriptions: Sequence[ThemeDescription], vectors: np.ndarray, labels: np.ndarray,
                 cases: Sequence[str | None], stability: Mapping[int, tuple[float, int]],
                 weights: Mapping[str, float], n_resamples: int, second_pass: Sequence[int] = (),
                 weak_below: int = 0) -> list[ThemeScore]:
    """:func:`pipeline.themes.rank.score_themes` in two groups: the first pass's themes among themselves, so their
    parts and order are what they would be without a second pass; then the themes labelled in
    ``second_pass``, scored among all (a second-pass theme near a first-pass one is less distinct)."""
    later = set(second_pass)
    first = [d for d in descriptions if d.theme not in later]
    scores = score_themes(first, vectors, labels, cases, stability, weights, n_resamples, weak_below)
    if later:
        scores += [s for s in score_themes(descriptions, vectors, labels, cases, stability, weights, n_resamples,
                                           weak_below)
                   if s.theme in later]
    return scores


def assemble(clustered: Sequence[int], labels: np.ndarray, vectors: np.ndarray,
             descriptions: Sequence[ThemeDescription], scores: Sequence[ThemeScore],
             min_suggestion_similarity: float, joined: Mapping[int, tuple[int, float]] | None = None,
             second_pass: Sequence[int] = (), split_from: Mapping[int, int] | None = None) -> Suggestions:
    """Join descriptions and scores into ranked themes, and build the outlier queue.

    ``clustered[i]`` is the segment-list index of row ``i`` of ``labels``/``vectors``. ``joined``
    (from :func:`pipeline.themes.join.join_outliers`) moves outlier rows into their theme's members, marked as joined; the
    other outliers form the queue, each with its nearest theme as a hint when similar enough. Themes
    labelled in ``second_pass`` (from :func:`cluster_left_out`) are marked and ranked after the others,
    each group in score order. Themes in ``split_from`` (``ThemeClusterer.split_from_``) say which
    theme they were split from.
    """
    later = set(second_pass)
    scores = sorted(scores, key=lambda s: s.theme in later)  # stable: score order within each pass
    joined = dict(joined or {})
    joined_to: dict[int, list[int]] = {}
    for row in sorted(joined):
        joined_to.setdefault(joined[row][0], []).append(row)
    by_theme = {d.theme: d for d in descriptions}
    names = {d.theme: d.label for d in descriptions}
    rank_of = {s.theme: r for r, s in enumerate(scores, start=1)}
    split_from = dict(split_from or {})

    def extra_reasons(theme: int) -> tuple[str, ...]:
        split = (SPLIT_REASON.format(names[split_from[theme]]),) if split_from.get(theme) in names else ()
        return split + ((SECOND_PASS_REASON,) if theme in later else ())

    themes = []
    for s in scores:
        d = by_theme[s.theme]
        extra = joined_to.get(s.theme, [])
        themes.append(CandidateTheme(
            rank=rank_of[s.theme], cluster=s.theme, label=d.label, keywords=d.keywords, score=s.score,
            parts=dict(s.parts), reasons=tuple(s.reasons(names)) + extra_reasons(s.theme),
            cases=s.cases,
            members=tuple(clustered[i] for i in (*d.members, *extra)), strengths=(*d.strengths, *[0.0] * len(extra)),
            centrality=(*d.centrality, *(joined[row][1] for row in extra)),
            quotes=tuple(clustered[i] for i in d.quotes), joined=tuple(clustered[i] for i in extra),
            second_pass=s.theme in later, description=d.description,
        ))
    order = [s.theme for s in scores]
    outlier_rows = np.array([r for r in np.flatnonzero(labels == OUTLIER).tolist() if r not in joined], dtype=np.int64)
    best, sims = nearest_themes(vectors[outlier_rows], centroids(vectors, labels, order))
    outliers = tuple(
        OutlierSegment(clustered[row], rank_of[order[b]] if b >= 0 and sim >= min_suggestion_similarity else None,
                       round(float(sim), 6))
        for row, b, sim in zip(outlier_rows.tolist(), best.tolist(), sims.tolist())
    )
    return Suggestions(tuple(themes), outliers)
