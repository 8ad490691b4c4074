"""Learn to code from coders' decisions: one logistic regression per theme over the segment vectors.

Why: a coder's decisions say more than which segments belong to a theme. Members moved out of a theme,
"no" answers and the members of rejected themes say where it stops; the centroid-and-threshold rule
(``pipeline.themes.join``) used the members alone. A linear classifier per theme, trained on both
sides, draws that boundary, and several themes may pass their thresholds: a segment gets every code
that fits (human coding is multi-label).

Segments nobody labelled for a theme are not ignored: they enter its training as negatives of small
weight (``unlabelled_weight``), since most of a corpus lies outside any one theme. Each theme's
threshold either gives it the share of the study it holds among the rows coders judged one by one
(``threshold="prevalence"``: with a few labels an F1-best threshold is mostly noise), or is the F1-best
one on out-of-fold probabilities (``"f1"``, unlabelled rows counted by their weight). The share is read
only from rows judged one by one (``fit``'s ``judged``: answers, placements, moves; by default every
labelled row, as for a random sample): a confirmed theme's members were taken in bulk from a cluster, so
among them a theme's share is many times its share of the study. Where no judged row carries the theme,
or every one does, or fewer than ``min_judged`` rows were judged (a share read from a handful of rows the
coder chose is noise), the F1 rule stays. A theme with fewer examples in the study than ``folds`` (its
name, an extra row, not counted), or whose folds leave one without an example, has no F1 rule either: it
takes the share its examples hold among every labelled row (bulk included), or where nothing
is labelled outside it, among the whole study, so two segments a coder made a theme of cannot take half
a study (a fixed 0.5 did, as the positives weigh as much as every other row together). ``"share"``
takes that last rule for every theme: no cross-validated fits, for where thresholds only rank proposals
(Teach's questions typical of what nobody labelled, chosen without the learner).

A segment is also read through its neighbours (``neighbours``, ``neighbour_weight``): its features are
its vector moved toward the mean of its nearest segments in the study (itself among them), so a label
speaks for the region around a segment, not for one point, and the unlabelled bulk of a study shapes
the boundary. The study is the ``X`` given to ``fit``; ``predict_proba`` reads any rows through their
nearest rows of it (a row of the study gets the same features as in ``fit``).

Usable alone: ``CodeLearner().fit(vectors, {"Staff": ThemeLabels(positive=(0, 4), negative=(7,))})``,
then ``predict(vectors)`` gives each row's codes and ``predict_proba`` their probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from pipeline.config import ReviewSettings
from pipeline.themes.cluster import cosine_knn
from pipeline.themes.join import unit_vectors


@dataclass(frozen=True)
class ThemeLabels:
    """What coders said about one theme: rows known to belong to it, and rows known not to."""

    positive: tuple[int, ...]
    negative: tuple[int, ...] = ()


def theme_labels(positives: Mapping[str, Sequence[int]], negatives: Mapping[str, Sequence[int]]) -> dict[str, ThemeLabels]:
    """Rows for and against each theme as :class:`ThemeLabels`; a row both for and against counts as for,
    a theme with no row for it is left out."""
    return {k: ThemeLabels(tuple(sorted(set(p))), tuple(sorted(set(negatives.get(k, ())) - set(p))))
            for k, p in positives.items() if len(p)}


def probability(z: np.ndarray) -> np.ndarray:
    """The logistic function of the regressions' scores ``z``."""
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


class CodeLearner:
    """Multi-label coder: ``fit(X, labels)``, then ``predict_proba(X)`` and ``predict(X)``.

    ``C``: inverse regularisation strength of each logistic regression. ``unlabelled_weight``: the
    weight of a row no coder labelled for a theme, taken as a negative (0: labelled rows only).
    ``folds``: out-of-fold probabilities for the threshold (a theme with fewer positives takes the share
    they show, see the module's docstring). ``min_judged``: rows judged one by one below which no
    prevalence is read from them.
    ``min_threshold``: a floor, so a theme with few labels cannot take everything. ``unlabelled_count``:
    how much an unlabelled row counts as a false positive when the threshold is chosen (None: its training
    weight; 1: as much as a labelled negative, for a stricter threshold). ``seed`` fixes the folds. Fitted: ``themes_`` (keys with at least one positive, in the order given), ``coef_``,
    ``intercept_``, ``thresholds_``, ``study_`` (the unit vectors of ``fit``'s ``X``, whose rows are the
    neighbours; None with ``neighbours`` 0) and ``study_features_`` (:meth:`features` of that ``X``). ``neighbours``: how many nearest study rows, the row itself
    included, a row's features are drawn toward (0 or 1: the vector alone); ``neighbour_weight``: how far,
    0 to 1. ``threshold``: ``"prevalence"``, ``"f1"`` or ``"share"`` (see the module's docstring).
    """

    def __init__(self, C: float = 1.0, unlabelled_weight: float = 0.05, folds: int = 3,
                 min_threshold: float = 0.2, unlabelled_count: float | None = None, seed: int = 0,
                 neighbours: int = 0, neighbour_weight: float = 0.5, threshold: str = "f1", min_judged: int = 5):
        self.C = C
        self.unlabelled_weight = unlabelled_weight
        self.folds = folds
        self.min_threshold = min_threshold
        self.unlabelled_count = unlabelled_count
        self.seed = seed
        self.neighbours = neighbours
        self.neighbour_weight = neighbour_weight
        self.threshold = threshold
        self.min_judged = min_judged

    @classmethod
    def from_config(cls, review_cfg: ReviewSettings | Mapping[str, Any], seed: int = 0,
                    for_run: bool = False) -> "CodeLearner":
        """The learner the ``review`` section describes (``learner_C``, ``learner_unlabelled_weight``);
        ``for_run``: its thresholds for the next suggest run (``run_unlabelled_count``)."""
        review_cfg = ReviewSettings.of(review_cfg)
        return cls(C=review_cfg.learner_C, unlabelled_weight=review_cfg.learner_unlabelled_weight,
                   unlabelled_count=review_cfg.run_unlabelled_count if for_run else None, seed=seed,
                   neighbours=review_cfg.learner_neighbours, neighbour_weight=review_cfg.learner_neighbour_weight,
                   threshold="f1" if for_run else review_cfg.learner_threshold,
                   min_judged=review_cfg.learner_min_judged)

    def fit(self, X: np.ndarray, labels: Mapping[str, ThemeLabels],
            judged: Sequence[int] | None = None, study_rows: int | None = None) -> "CodeLearner":
        """``labels``: theme key -> rows of ``X`` for and against it. ``judged``: the rows a coder judged one
        by one, on which ``"prevalence"`` reads each theme's share (None: every labelled row).
        ``study_rows``: rows of ``X`` from this one on are extra examples (a theme's name, embedded as the
        segments are): they train the regressions, but a theme's number of examples and its share are
        counted over the study's rows alone (None: every row is the study's)."""
        X = np.asarray(X, dtype=np.float64)
        n = len(X) if study_rows is None else int(study_rows)
        labelled = {int(r) for lab in labels.values() for r in lab.positive + lab.negative if r < n}
        pool = set(int(r) for r in judged) if judged is not None else labelled
        self.study_ = unit_vectors(X) if self.neighbours > 1 else None
        self.study_features_ = None
        X = self.study_features_ = self.features(X)
        self.themes_ = [k for k, lab in labels.items() if len(lab.positive)]
        self.coef_ = np.zeros((len(self.themes_), X.shape[1]))
        self.intercept_ = np.zeros(len(self.themes_))
        self.thresholds_ = np.full(len(self.themes_), 0.5)
        rng = np.random.default_rng(self.seed)
        for j, key in enumerate(self.themes_):
            rows, y, weight = self._rows(len(X), labels[key])
            balanced = weight.copy()  # the positives weigh as much as everything else together
            balanced[y == 1] *= max(1.0, weight[y == 0].sum() / max(weight[y == 1].sum(), 1e-9))
            if len(np.unique(y)) < 2:  # nothing said against it and nothing unlabelled: a constant
                self.intercept_[j] = 20.0
                continue
            model = self._model().fit(X[rows], y, sample_weight=balanced)
            self.coef_[j], self.intercept_[j] = model.coef_[0], model.intercept_[0]
            positive = set(int(r) for r in labels[key].positive if r < n)
            hits = len(pool & positive)
            threshold = None
            if self.threshold == "prevalence" and len(pool) >= self.min_judged and 0 < hits < len(pool):
                threshold = self._share_threshold(X[:n], j, hits / len(pool))
            elif len(positive) >= self.folds and self.threshold != "share":
                count = weight if self.unlabelled_count is None else np.where(weight < 1, self.unlabelled_count, weight)
                threshold = self._threshold(X[rows], y, balanced, count, rng)
            if threshold is None:  # too few examples for the F1 rule: the share they hold
                share = len(positive) / (len(labelled) if labelled - positive else n)
                threshold = self._share_threshold(X[:n], j, max(share, 1.0 / n))
            self.thresholds_[j] = threshold
        return self

    def _share_threshold(self, X: np.ndarray, j: int, share: float) -> float:
        """The probability above which theme ``j`` takes ``share`` of the rows of ``X``."""
        return float(np.quantile(probability(X @ self.coef_[j] + self.intercept_[j]), 1.0 - share))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``(n, len(themes_))`` probability of each theme."""
        return probability(self.features(np.asarray(X, dtype=np.float64)) @ self.coef_.T + self.intercept_)

    def predict(self, X: np.ndarray) -> list[frozenset[str]]:
        """Each row's codes: every theme whose probability reaches its threshold."""
        hits = self.predict_proba(X) >= self.thresholds_
        return [frozenset(self.themes_[j] for j in np.flatnonzero(row)) for row in hits]

    def features(self, X: np.ndarray) -> np.ndarray:
        """What the regressions read of each row of ``X``: the row drawn ``neighbour_weight`` of the way
        toward the mean of its ``neighbours`` nearest study rows (cosine), as a unit vector."""
        if self.study_ is None:
            return np.asarray(X, dtype=np.float64)
        X = unit_vectors(np.asarray(X, dtype=np.float64))
        study = np.array_equal(X, self.study_)  # the study's own rows
        if study and self.study_features_ is not None:
            return self.study_features_  # read in fit: no second neighbour search
        # the study's search of itself is kept for the next fit (cosine_knn); other rows are searched for
        rows, _ = cosine_knn(self.study_, self.neighbours, queries=None if study else X)
        w = float(self.neighbour_weight)
        near = np.empty_like(X)
        for start in range(0, len(X), 512):  # by blocks: the same sums, without a rows x k x dims array (5 s -> 0.1 s)
            near[start:start + 512] = self.study_[rows[start:start + 512]].mean(axis=1)
        return unit_vectors((1.0 - w) * X + w * near)

    def _model(self):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.C, max_iter=2000)

    def _rows(self, n: int, lab: ThemeLabels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows to train on, their targets and weights (labelled 1, unlabelled ``unlabelled_weight``)."""
        y = np.zeros(n, dtype=np.int8)
        weight = np.full(n, float(self.unlabelled_weight))
        weight[np.asarray(lab.negative, dtype=np.int64)] = 1.0
        positive = np.asarray(lab.positive, dtype=np.int64)
        y[positive], weight[positive] = 1, 1.0
        rows = np.flatnonzero(weight > 0)
        return rows, y[rows], weight[rows]

    def _threshold(self, X: np.ndarray, y: np.ndarray, weight: np.ndarray, count: np.ndarray,
                   rng) -> float | None:
        """The F1-best threshold on out-of-fold probabilities, a negative counted by ``count`` (an
        unlabelled row is only probably one); None where a fold leaves no positive to train on."""
        fold = rng.permutation(len(y)) % self.folds
        oof = np.zeros(len(y))
        for f in range(self.folds):
            train, test = fold != f, fold == f
            if len(np.unique(y[train])) < 2:
                return None
            oof[test] = self._model().fit(X[train], y[train], sample_weight=weight[train]).predict_proba(X[test])[:, 1]
        order = np.argsort(-oof, kind="stable")
        tp = np.cumsum(y[order] == 1)
        fp = np.cumsum((y[order] == 0) * count[order])
        f1 = 2 * tp / (tp + fp + (y == 1).sum())
        return float(max(self.min_threshold, oof[order][int(np.argmax(f1))]))
