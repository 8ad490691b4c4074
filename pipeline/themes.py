"""Candidate themes as plain records: the output of cluster -> describe -> rank, ready to store or show."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from pipeline.cluster import OUTLIER
from pipeline.describe import ThemeDescription, centroids, nearest_themes
from pipeline.rank import ThemeScore


@dataclass(frozen=True)
class CandidateTheme:
    """One ranked suggestion. Indices (``members``, ``quotes``) point into the run's segment list."""

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


def assemble(clustered: Sequence[int], labels: np.ndarray, vectors: np.ndarray,
             descriptions: Sequence[ThemeDescription], scores: Sequence[ThemeScore],
             min_suggestion_similarity: float) -> Suggestions:
    """Join descriptions and scores into ranked themes, and build the outlier queue.

    ``clustered[i]`` is the segment-list index of row ``i`` of ``labels``/``vectors``.
    """
    by_theme = {d.theme: d for d in descriptions}
    names = {d.theme: d.label for d in descriptions}
    rank_of = {s.theme: r for r, s in enumerate(scores, start=1)}
    themes = []
    for s in scores:
        d = by_theme[s.theme]
        themes.append(CandidateTheme(
            rank=rank_of[s.theme], cluster=s.theme, label=d.label, keywords=d.keywords, score=s.score,
            parts=dict(s.parts), reasons=tuple(s.reasons(names)), cases=s.cases,
            members=tuple(clustered[i] for i in d.members), strengths=d.strengths, centrality=d.centrality,
            quotes=tuple(clustered[i] for i in d.quotes),
        ))
    order = [s.theme for s in scores]
    outlier_rows = np.flatnonzero(labels == OUTLIER)
    best, sims = nearest_themes(vectors[outlier_rows], centroids(vectors, labels, order))
    outliers = tuple(
        OutlierSegment(clustered[row], rank_of[order[b]] if b >= 0 and sim >= min_suggestion_similarity else None,
                       round(float(sim), 6))
        for row, b, sim in zip(outlier_rows.tolist(), best.tolist(), sims.tolist())
    )
    return Suggestions(tuple(themes), outliers)
