"""Rank candidate themes with a score whose parts are kept and explained in words.

The Framework Method counts people, not lines: participant coverage carries the most weight, and
each part is a number in [0, 1] that a coder can check against the reasons shown beside it.

Coverage is measured against the theme raised by the most participants, not against all of them: in a
survey every respondent is a case of their own, so even the widest theme covers a few percent of all
cases, and an absolute share would leave coverage near 0 for every theme and its weight with nothing to
rank (a 31-comment cluster of identical shorthand came first on the NHS FFT comments that way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from pipeline.themes.describe import ThemeDescription, centroids

PARTS = ("coverage", "cohesion", "distinctiveness", "stability", "size")
#: The reason shown instead of the stability figure for a theme too small for resampling to say much; the
#: page and the CLI recognise it by this start (``stability_is_weak``).
WEAK_STABILITY = "stability weak"


def stability_is_weak(reasons) -> bool:
    """Whether a theme's stored reasons say its stability figure means little (too few segments)."""
    return any(r.startswith(WEAK_STABILITY) for r in reasons or ())


@dataclass(frozen=True)
class ThemeScore:
    theme: int
    score: float
    parts: Mapping[str, float]
    cases: tuple[str, ...]
    total_cases: int
    n_segments: int
    nearest_theme: int | None
    nearest_similarity: float
    found_again: int
    n_resamples: int
    stability_weak: bool = False

    def reasons(self, labels: Mapping[int, str] | None = None) -> list[str]:
        """The score's parts in words, as shown to coders."""
        nearest = "" if self.nearest_theme is None else (
            f" (closest: '{labels[self.nearest_theme]}', similarity {self.nearest_similarity:.2f})"
            if labels and self.nearest_theme in labels else f" (closest similarity {self.nearest_similarity:.2f})")
        return [
            f"raised by {len(self.cases)} of {self.total_cases} participants",
            f"members close to each other (cohesion {self.parts['cohesion']:.2f})",
            f"distinct from other themes (distinctiveness {self.parts['distinctiveness']:.2f}){nearest}",
            f"{WEAK_STABILITY}: {self.n_segments} segments are too few for re-clustering to say how stable it is"
            if self.stability_weak else
            f"found again in {self.found_again} of {self.n_resamples} re-clusterings "
            f"(mean overlap {self.parts['stability']:.2f})",
            f"{self.n_segments} segments",
        ]


def score_themes(descriptions: Sequence[ThemeDescription], vectors: np.ndarray, labels: np.ndarray,
                 cases: Sequence[str | None], stability: Mapping[int, tuple[float, int]],
                 weights: Mapping[str, float], n_resamples: int, weak_below: int = 0) -> list[ThemeScore]:
    """Score every described theme and return them best first (ties: more segments, lower id).

    A theme of fewer than ``weak_below`` segments (``rank.stability.min_segments``) keeps its stability part
    in the score but is marked ``stability_weak``: its reasons say so instead of quoting the figure."""
    if not descriptions:
        return []
    unknown = set(weights) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown rank weights {sorted(unknown)}; parts are {PARTS}")
    themes = [d.theme for d in descriptions]
    cents = centroids(vectors, labels, themes)
    similarity = cents @ cents.T
    np.fill_diagonal(similarity, -np.inf)
    total_cases = max(1, len({c for c in cases if c is not None}))
    largest = max(len(d.members) for d in descriptions)
    theme_cases = [tuple(sorted({cases[i] for i in d.members if cases[i] is not None})) for d in descriptions]
    widest = max(1, max(len(c) for c in theme_cases))
    scores = []
    for k, d in enumerate(descriptions):
        nearest = int(np.argmax(similarity[k])) if len(themes) > 1 else None
        nearest_sim = float(similarity[k, nearest]) if nearest is not None else 0.0
        mean_jaccard, found = stability.get(d.theme, (0.0, 0))
        parts = {
            "coverage": len(theme_cases[k]) / widest,
            "cohesion": float(np.clip(np.mean(d.centrality), 0, 1)),
            "distinctiveness": float(np.clip(1 - nearest_sim, 0, 1)) if nearest is not None else 1.0,
            "stability": float(mean_jaccard),
            "size": math.log1p(len(d.members)) / math.log1p(largest),
        }
        parts = {p: round(v, 6) for p, v in parts.items()}
        score = round(sum(weights.get(p, 0.0) * v for p, v in parts.items()), 6)
        scores.append(ThemeScore(d.theme, score, parts, theme_cases[k], total_cases, len(d.members),
                                 themes[nearest] if nearest is not None else None, round(nearest_sim, 6),
                                 found, n_resamples, len(d.members) < weak_below))
    return sorted(scores, key=lambda s: (-s.score, -s.n_segments, s.theme))
