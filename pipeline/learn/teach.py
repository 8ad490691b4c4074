"""Teach questions: the segments whose answer would teach the learner most, each with the theme it proposes.

Why: a coder's review in rank order labels the themes the clustering found, and only those; random
segments are what a plain classifier would be trained on. Two kinds of segment are worth more than
either: those the learner is unsure of (a probability near a theme's threshold, or two themes both near
theirs), where one answer moves a boundary, and those far from every kept theme, where codes nobody has
named yet live. A Teach batch interleaves the two.

Usable alone: ``TeachQueue(n_unsure=5, n_far=5).select(proba, thresholds, themes, candidates)`` with the
learner's probabilities (``pipeline.learn.learner.CodeLearner.predict_proba``) gives the questions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

UNSURE, CLOSE, FAR = "unsure", "close", "far"


@dataclass(frozen=True)
class Question:
    """Ask about ``row``: is it in ``proposed`` (the learner's best theme; None when nothing is learned yet)?
    ``probability``: the learner's for that theme; ``reason``: unsure, close (two themes near their
    thresholds) or far (far from every kept theme)."""

    row: int
    proposed: str | None
    probability: float
    reason: str


class TeachQueue:
    """Chooses a batch of Teach questions: ``select(proba, thresholds, themes, candidates)``.

    ``n_unsure``: segments nearest a threshold per batch; ``n_far``: segments far from every theme per
    batch, drawn from the ``far_pool`` least likely ones (drawn, not the very least likely, so one batch
    does not ask about a single odd corner); ``close_margin``: two themes both within this of their
    thresholds make a question "close". ``seed`` fixes the draw.
    """

    def __init__(self, n_unsure: int = 5, n_far: int = 5, far_pool: int = 200, close_margin: float = 0.1,
                 seed: int = 0):
        self.n_unsure = n_unsure
        self.n_far = n_far
        self.far_pool = far_pool
        self.close_margin = close_margin
        self.seed = seed

    def select(self, proba: np.ndarray, thresholds: np.ndarray, themes: Sequence[str],
               candidates: Sequence[int]) -> list[Question]:
        """Questions about rows of ``candidates`` (rows of ``proba``, ``(n, len(themes))``), unsure and far
        ones interleaved, no row twice. With no theme learned yet: a random batch, nothing proposed."""
        candidates = np.asarray(sorted(set(int(c) for c in candidates)), dtype=np.int64)
        rng = np.random.default_rng(self.seed)
        size = self.n_unsure + self.n_far
        if not len(candidates):
            return []
        if not len(themes):
            return [Question(int(r), None, 0.0, FAR) for r in rng.permutation(candidates)[:size]]
        p = np.asarray(proba, dtype=np.float64)[candidates]
        t = np.asarray(thresholds, dtype=np.float64)
        gap = np.abs(p - t)
        nearest = np.argsort(gap.min(axis=1), kind="stable")
        unsure = [int(i) for i in nearest[: self.n_unsure]]
        ratio = (p / np.maximum(t, 1e-9)).max(axis=1)
        pool = [int(i) for i in np.argsort(ratio, kind="stable")[: max(self.far_pool, self.n_far)] if i not in unsure]
        far = [int(i) for i in rng.permutation(pool)[: self.n_far]] if pool else []
        order = [i for pair in zip(unsure, far) for i in pair] + unsure[len(far):] + far[len(unsure):]
        out = []
        for i in order:
            kind = FAR if i in far else UNSURE
            best = int(np.argmax(p[i] / np.maximum(t, 1e-9))) if kind == FAR else int(np.argmin(gap[i]))
            if kind == UNSURE and ((p[i] >= t - self.close_margin).sum() >= 2):
                kind = CLOSE
            out.append(Question(int(candidates[i]), themes[best], round(float(p[i, best]), 6), kind))
        return out
