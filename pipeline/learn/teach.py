"""Teach questions: the segments whose answer would teach the learner most, each with the theme it proposes.

Why: a coder's review in rank order labels the themes the clustering found, and only those; random
segments are what a plain classifier would be trained on. Two kinds of segment can be worth more: those
the learner is unsure of (a probability near a theme's threshold, or two themes both near theirs), where
one answer moves a boundary, and those far from everything coders have labelled, where codes nobody has
named yet live. A far question is the segment most *typical* of an unlabelled region (its density, the
mean similarity to its nearest neighbours, times its distance to the nearest labelled segment, chosen
greedily so one batch covers several regions): an outlier far from every theme teaches little, a segment
that stands for many unlabelled ones teaches about all of them (the cold-start selection of TypiClust and
ProbCover). Measured (``bench review``): far questions of this kind beat random segments on the NHS FFT
comments, while unsure ones did not; the default batch is far questions only (``review.teach_unsure: 0``).

Usable alone: ``TeachQueue(n_unsure=0, n_far=10).select(proba, thresholds, themes, candidates, vectors,
labelled)`` with the learner's probabilities (``pipeline.learn.learner.CodeLearner.predict_proba``) gives
the questions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from pipeline.learn.codebook import CONFIRM, CONFIRMED, MERGE, REJECT, Entry

UNSURE, CLOSE, FAR = "unsure", "close", "far"


@dataclass(frozen=True)
class Question:
    """Ask about ``row``: is it in ``proposed`` (the learner's best theme; None when nothing is learned yet)?
    ``probability``: the learner's for that theme; ``reason``: unsure, close (two themes near their
    thresholds) or far (typical of a region no coder has labelled)."""

    row: int
    proposed: str | None
    probability: float
    reason: str


class TeachQueue:
    """Chooses a batch of Teach questions: ``select(proba, thresholds, themes, candidates)``.

    ``n_unsure``: segments nearest a threshold per batch; ``n_far``: segments typical of regions nobody
    labelled, per batch; ``neighbours``: how many nearest neighbours measure a segment's density;
    ``close_margin``: two themes both within this of their thresholds make a question "close". ``seed``
    fixes the draw when nothing is learned and no vectors are given.
    """

    def __init__(self, n_unsure: int = 0, n_far: int = 10, neighbours: int = 10, close_margin: float = 0.1,
                 seed: int = 0):
        self.n_unsure = n_unsure
        self.n_far = n_far
        self.neighbours = neighbours
        self.close_margin = close_margin
        self.seed = seed

    def typical(self, vectors: np.ndarray, labelled: Sequence[int], candidates: Sequence[int], n: int) -> list[int]:
        """``n`` rows of ``candidates``, each the most typical of what no labelled row (nor one picked
        before it) is near: density times (1 - cosine to the nearest labelled or picked row)."""
        from sklearn.neighbors import NearestNeighbors

        X = np.asarray(vectors, dtype=np.float64)
        X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        cand = np.asarray(candidates, dtype=np.int64)
        if not len(cand) or n <= 0:
            return []
        k = min(self.neighbours, len(X) - 1)
        if k >= 1:
            dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X[cand])
            density = 1.0 - (dist[:, 1:] ** 2).mean(axis=1) / 2  # mean cosine to the k nearest
        else:
            density = np.ones(len(cand))
        labelled = np.asarray(sorted(set(int(r) for r in labelled)), dtype=np.int64)
        near = (X[cand] @ X[labelled].T).max(axis=1) if len(labelled) else np.full(len(cand), -1.0)
        picked: list[int] = []
        for _ in range(min(n, len(cand))):
            score = density * (1.0 - near)
            score[picked] = -np.inf
            i = int(np.argmax(score))
            picked.append(i)
            near = np.maximum(near, X[cand] @ X[cand[i]])
        return [int(cand[i]) for i in picked]

    def select(self, proba: np.ndarray, thresholds: np.ndarray, themes: Sequence[str],
               candidates: Sequence[int], vectors: np.ndarray | None = None,
               labelled: Sequence[int] = ()) -> list[Question]:
        """Questions about rows of ``candidates`` (rows of ``proba``, ``(n, len(themes))``, and of ``vectors``),
        unsure and far ones interleaved, no row twice. ``labelled``: rows coders have labelled, which far
        questions keep away from. Without ``vectors`` far rows are drawn at random; with no theme learned
        yet every question is a far one, nothing proposed."""
        candidates = np.asarray(sorted(set(int(c) for c in candidates)), dtype=np.int64)
        rng = np.random.default_rng(self.seed)
        size = self.n_unsure + self.n_far
        if not len(candidates):
            return []

        def far_rows(pool: np.ndarray, n: int) -> list[int]:
            if vectors is None:
                return [int(r) for r in rng.permutation(pool)[:n]]
            return self.typical(vectors, labelled, pool, n)

        if not len(themes):
            return [Question(r, None, 0.0, FAR) for r in far_rows(candidates, size)]
        p = np.asarray(proba, dtype=np.float64)[candidates]
        t = np.asarray(thresholds, dtype=np.float64)
        gap = np.abs(p - t)
        nearest = np.argsort(gap.min(axis=1), kind="stable")
        unsure = [int(i) for i in nearest[: self.n_unsure]]
        taken = set(unsure)
        rest = np.asarray([i for i in range(len(candidates)) if i not in taken], dtype=np.int64)
        position = {int(c): i for i, c in enumerate(candidates)}
        far = [position[r] for r in far_rows(candidates[rest], self.n_far)] if len(rest) else []
        order = [i for pair in zip(unsure, far) for i in pair] + unsure[len(far):] + far[len(unsure):]
        out = []
        for i in order:
            kind = FAR if i in far else UNSURE
            best = int(np.argmax(p[i] / np.maximum(t, 1e-9))) if kind == FAR else int(np.argmin(gap[i]))
            if kind == UNSURE and ((p[i] >= t - self.close_margin).sum() >= 2):
                kind = CLOSE
            out.append(Question(int(candidates[i]), themes[best], round(float(p[i, best]), 6), kind))
        return out


def reviewed_own(applied: Iterable[Entry], status: Callable[[str], str | None]) -> list[bool]:
    """For each theme a coder reviewed, in the order a confirm, reject or merge first decided it
    (``applied``: the log's entries in force), whether it stands confirmed now as a code of its own
    (``status``: a key's status), not merged into another or rejected."""
    order: list[str] = []
    for e in applied:
        if e.action not in (CONFIRM, REJECT, MERGE):
            continue
        keys = [str(k) for k in e.after.get("themes") or ()] if e.action == MERGE else [e.theme_key]
        order += [k for k in keys if k and k not in order]
    return [status(k) == CONFIRMED for k in order]


def teach_hint(own: Sequence[bool], window: int, share: float) -> tuple[int, int] | None:
    """``(codes of their own, themes)`` among the last ``window`` themes reviewed (``own``: as
    :func:`reviewed_own` gives) when fewer than ``share`` of them became codes of their own: the moment
    to turn from the suggestions to Teach; None before ``window`` themes are reviewed, or while they do.

    Why: a confirm teaches the learner a whole theme of examples, so while the suggestions keep giving
    new codes, reviewing them teaches more per decision than Teach (``bench review``: a review without
    moves on Banking77); once they mostly fall under codes the coder already has or mix codes, Teach's
    questions teach more."""
    last = list(own)[-window:]
    if len(last) < window or sum(last) >= share * len(last):
        return None
    return sum(last), len(last)
