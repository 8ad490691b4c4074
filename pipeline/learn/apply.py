"""What coders' decisions make of segments, as plain data: the inputs of a run that honours them, and
deductive coding with the confirmed codebook.

* :class:`HonourInputs`: what the next suggest run needs from the decision log: the kept themes' example
  vectors, the rejected and competing themes' vectors, the segments a coder placed by hand. Its methods
  give ``pipeline.learn.honour`` its arguments.
* :func:`code_with_learner`: every segment coded by :class:`pipeline.learn.learner.CodeLearner`, trained on
  what the decisions say for and against each confirmed theme; several codes per segment where they fit
  (``review.learner: logistic``, the default).
* :func:`code_with_codebook`: every segment classified against the confirmed themes alone (the rule of
  ``pipeline.themes.join``); the study's other themes only compete (``review.learner: centroid``).

Nothing here reads the store: ``models.review.honour_inputs`` and ``models.review.apply_codebook`` gather
the decision log and the vectors, and store what comes back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from pipeline.config import ReviewSettings
from pipeline.learn.honour import learner_assignments, rejected_centroids
from pipeline.learn.learner import CodeLearner, ThemeLabels, theme_labels
from pipeline.learn.teach import Question, TeachQueue
from pipeline.learn.words import with_words
from pipeline.themes.join import Assignment, Calibration, calibrate, classify

APPLY_CODER = "Themesift (codebook applied)"


@dataclass
class HonourInputs:
    """What the next suggest run needs from the decision log (see ``pipeline.learn.honour``).

    ``kept``: key -> (name, definition, example segment ids) for themes to carry forward;
    ``example_vectors`` / ``rejected_vectors``: key -> (n, dim) arrays; ``rejected_names``: key -> name;
    ``fixed``: (source sha256, start, end) -> kept key, or :data:`pipeline.learn.honour.FIXED_NONE` for
    segments a coder moved to "no theme"; ``competitor_vectors``: key -> member vectors of the latest
    run's other themes (open but not kept) and of rejected themes, which compete with kept themes in
    classification; ``decisions``: how many decisions were honoured; ``for_theme`` / ``against_theme``:
    kept key -> the places ((source sha256, start, end)) of the segments the decisions say are in it / not
    in it (:func:`decision_labels`), on which the learner is trained.
    """

    kept: dict[str, tuple[str, str, tuple[int, ...]]]
    example_vectors: dict[str, np.ndarray]
    rejected_vectors: dict[str, np.ndarray]
    competitor_vectors: dict[str, np.ndarray]
    rejected_names: dict[str, str]
    fixed: dict[tuple[str, int, int], str]
    decisions: int
    last_uid: str | None
    for_theme: dict[str, frozenset[tuple[str, int, int]]] = field(default_factory=dict)
    against_theme: dict[str, frozenset[tuple[str, int, int]]] = field(default_factory=dict)

    def calibrations(self, review_cfg: ReviewSettings | Mapping[str, Any]) -> dict[str, Calibration]:
        """Each kept theme's centre and threshold under the ``review`` section's rule."""
        review_cfg = ReviewSettings.of(review_cfg)
        return calibrate(self.example_vectors, review_cfg.calibration_percentile, review_cfg.min_similarity)

    def rejected_centroids(self) -> dict[str, np.ndarray]:
        return rejected_centroids(self.rejected_vectors)

    def competitor_centroids(self) -> dict[str, np.ndarray]:
        return rejected_centroids(self.competitor_vectors)

    def fixed_for(self, segments: Sequence[Any]) -> list[str | None]:
        """For ``pipeline.learn.honour.plan_segments``: one entry per segment (objects with ``source_sha256``,
        ``start``, ``end``, such as ``pipeline.ingest.segment.Segment``)."""
        return [self.fixed.get((s.source_sha256, s.start, s.end)) for s in segments]

    def assignments(self, vectors: np.ndarray, segments: Sequence[Any],
                    review_cfg: ReviewSettings | Mapping[str, Any], seed: int = 0,
                    name_vectors: Mapping[str, np.ndarray] | None = None) -> list[Assignment]:
        """Where the review rule puts each of ``segments`` (rows of ``vectors``; objects as for
        :meth:`fixed_for`, with their ``text``) among the kept themes: the learner ``apply`` uses, trained on the decisions'
        labels of these segments, with the stricter thresholds of ``review.run_unlabelled_count`` (a run
        takes segments out of the clustering) (``review.learner: logistic``), or the centroid rule
        (``centroid``). ``name_vectors``: kept theme key -> the vector of its name in :meth:`name_texts` (each
        kept theme's name one more example of it, ``review.learner_names``), as for :func:`code_with_learner`."""
        review_cfg = ReviewSettings.of(review_cfg)
        if review_cfg.learner == "centroid":
            return classify(vectors, self.calibrations(review_cfg), review_cfg.uncertain_margin,
                            self.competitor_centroids())
        row = {(s.source_sha256, s.start, s.end): i for i, s in enumerate(segments)}
        labels = theme_labels({k: [row[p] for p in self.for_theme.get(k, ()) if p in row] for k in self.kept},
                              {k: [row[p] for p in self.against_theme.get(k, ()) if p in row] for k in self.kept})
        texts = self.name_texts()
        names = {k: (texts[k], v) for k, v in (name_vectors or {}).items() if k in texts}
        learner, proba, _ = train_learner(vectors, [s.text for s in segments], labels, review_cfg, seed,
                                          names=names, for_run=True)
        return learner_assignments(proba, learner.thresholds_, learner.themes_, review_cfg.uncertain_margin)

    def name_texts(self) -> dict[str, str]:
        """Kept theme key -> its name, to embed for :meth:`assignments`."""
        return {k: name for k, (name, _, _) in self.kept.items()}


@dataclass
class ApplyResult:
    """The coding :func:`code_with_codebook` gave: by ``coder``, of ``n_segments`` segments, with ``themes``
    confirmed themes."""

    coder: str
    n_segments: int
    assigned: dict[int, tuple[str, ...]]  # segment id -> the names of its themes (one or more)
    uncertain: dict[int, tuple[str, float, float]]  # segment id -> (theme name, score, threshold)
    themes: int
    # segment id -> theme name -> (where the code came from: "coder" | "learner" | "rule", probability)
    links: dict[int, dict[str, tuple[str, float | None]]] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)  # theme name -> the learner's threshold
    model_id: str = ""  # the model whose vectors it coded with (set where the vectors are gathered)


def code_with_codebook(segments: Sequence[int], vectors: np.ndarray, examples: Mapping[str, np.ndarray],
                       names: Mapping[str, str], others: Mapping[str, np.ndarray],
                       review_cfg: ReviewSettings | Mapping[str, Any]) -> ApplyResult:
    """Code each of ``segments`` (rows of ``vectors``) with the confirmed themes alone, as the coding of
    :data:`APPLY_CODER`.

    ``examples``: confirmed theme key -> its members' vectors, on which its centre and threshold are
    calibrated; ``names``: key -> the theme's name, the code given; ``others``: key -> member vectors of
    themes that only compete (a segment nearer to one of them stays uncoded). ``review_cfg`` is the
    configuration's ``review`` section. A segment in the uncertain band is left uncoded and reported.
    """
    review_cfg = ReviewSettings.of(review_cfg)
    calibrations = calibrate(examples, review_cfg.calibration_percentile, review_cfg.min_similarity)
    competitors = rejected_centroids(others)
    results = classify(vectors, calibrations, review_cfg.uncertain_margin, competitors)
    assigned = {s: (names[a.key],) for s, a in zip(segments, results) if a.status == "assigned"}
    uncertain = {s: (names[a.key], a.similarity, a.threshold) for s, a in zip(segments, results)
                 if a.status == "uncertain"}
    links = {s: {code: ("rule", None) for code in codes} for s, codes in assigned.items()}
    return ApplyResult(APPLY_CODER, len(segments), assigned, uncertain, len(examples), links)


def decision_labels(segments: Sequence[int], base: Mapping[int, str | None], codes: Mapping[int, Sequence[str]],
                    confirmed: Sequence[str], rejected_members: Sequence[int],
                    against: Mapping[str, Sequence[int]] | None = None
                    ) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """What the decision log says for and against each confirmed theme, as rows of ``segments``.

    ``base``: the run's membership (segment -> theme key); ``codes``: every theme each segment carries
    after the log (``pipeline.learn.codebook.CodebookState.codes``); ``against``: theme key -> segments a
    coder said are not in it (taken off, Teach "no" answers). For a theme: the segments carrying it now.
    Against it: the members the run gave it that no longer carry it, the segments said not to be in it,
    and every member of a rejected theme (``rejected_members``).
    """
    row = {s: i for i, s in enumerate(segments)}
    rejected = [row[s] for s in rejected_members if s in row]
    positives = {k: [row[s] for s, now in codes.items() if k in now and s in row] for k in confirmed}
    moved_out = {k: [row[s] for s, was in base.items() if was == k and s in row and k not in codes.get(s, ())]
                 for k in confirmed}
    said = {k: [row[s] for s in sorted((against or {}).get(k, ())) if s in row] for k in confirmed}
    return positives, {k: moved_out[k] + said[k] + rejected for k in confirmed}


def learner_matrix(vectors: np.ndarray, texts: Sequence[str] | None,
                   review_cfg: ReviewSettings | Mapping[str, Any]) -> np.ndarray:
    """What the learner reads of a study's segments: their vectors, with the word view of their ``texts``
    appended where ``review.learner_words`` is above 0 (``pipeline.learn.words``)."""
    review_cfg = ReviewSettings.of(review_cfg)
    return with_words(vectors, texts, review_cfg.learner_words, review_cfg.learner_word_components)


def train_learner(vectors: np.ndarray, texts: Sequence[str] | None, labels: Mapping[str, ThemeLabels],
                  review_cfg: ReviewSettings | Mapping[str, Any], seed: int = 0, judged: Sequence[int] | None = None,
                  names: Mapping[str, tuple[str, np.ndarray]] | None = None,
                  for_run: bool = False, threshold: str | None = None) -> tuple[CodeLearner, np.ndarray, np.ndarray]:
    """The learner the ``review`` section describes, trained on ``labels`` (rows of ``vectors``, the study's
    segments, with their ``texts`` for the word view); returns it, its probabilities for the study's rows
    (rows x ``learner.themes_``) and what it read of them (:func:`learner_matrix`).

    ``names``: theme key -> (its name, the name's vector, embedded as the segments are). With
    ``review.learner_names``, the name of each theme with a positive row is one more row, after the study's,
    and one more positive of the theme: a name says what a theme is about before many segments do. Name
    rows are never judged (a theme's share is read from the study's rows). ``judged``: as
    :meth:`CodeLearner.fit` (None: every labelled row of the study); ``for_run``: the next suggest run's
    thresholds (:meth:`CodeLearner.from_config`); ``threshold``: another threshold rule than the config's."""
    review_cfg = ReviewSettings.of(review_cfg)
    n = len(vectors)
    if judged is None:
        judged = sorted({r for lab in labels.values() for r in lab.positive + lab.negative})
    keys = [k for k, lab in labels.items() if review_cfg.learner_names and names and k in names and lab.positive]
    if keys:
        vectors = np.vstack([vectors, np.stack([np.asarray(names[k][1], dtype=vectors.dtype) for k in keys])])
        texts = None if texts is None else [*texts, *(names[k][0] for k in keys)]
        labels = {k: ThemeLabels(lab.positive + ((n + keys.index(k),) if k in keys else ()), lab.negative)
                  for k, lab in labels.items()}
    X = learner_matrix(vectors, texts, review_cfg)
    learner = CodeLearner.from_config(review_cfg, seed, for_run=for_run)
    if threshold is not None:
        learner.threshold = threshold
    learner.fit(X, labels, judged, study_rows=n)
    proba = learner.predict_proba(X)[:n] if learner.themes_ else np.zeros((n, 0))
    return learner, proba, X[:n]


def teach_batch(segments: Sequence[int], vectors: np.ndarray, positives: Mapping[str, Sequence[int]],
                negatives: Mapping[str, Sequence[int]], review_cfg: ReviewSettings | Mapping[str, Any],
                seed: int = 0, exclude: Sequence[int] = (), judged: Sequence[int] | None = None,
                texts: Sequence[str] | None = None,
                names: Mapping[str, tuple[str, np.ndarray]] | None = None) -> list[Question]:
    """The next Teach questions about ``segments`` (rows of ``vectors``) that no coder has labelled yet: the
    learner of :func:`code_with_learner`, trained on the same labels, and :class:`TeachQueue` as the
    ``review`` section sets it (``seed``: the draw, e.g. the length of the log so each batch differs).
    ``exclude``: more rows not to ask about (placed or answered for no confirmed theme); ``judged``: as
    :func:`code_with_learner`; ``texts``: the segments' texts, for the word view (:func:`learner_matrix`).
    ``Question.row`` is a row of ``segments``; ``proposed`` a theme key of ``positives``.

    With ``judged`` given, a row labelled only in bulk (a member of a confirmed or rejected theme) may still
    be asked about, and the far questions keep away only from rows judged one by one: a confirm says a
    member carries one code, an answer says every code it carries, so a region a coder confirmed still holds
    codes nobody has given it. Measured (``bench review``, example study, a coder who reviews ten to twenty
    suggestions and then answers Teach): kappa after 100 decisions 0.354/0.427/0.364 -> 0.462/0.497/0.459
    (UMAP seeds 42/43/44), against 0.500 for Teach alone."""
    review_cfg = ReviewSettings.of(review_cfg)
    labels = theme_labels(positives, negatives)
    # without unsure questions the thresholds only rank each question's proposed theme: the share rule
    # serves, without the cross-validated fits (three of every four fits; a 10,000-segment study's batch
    # took 15-30 s on two cores)
    quick = "share" if review_cfg.teach_unsure == 0 else None
    learner, proba, vectors = train_learner(vectors, texts, labels, review_cfg, seed, judged, names, threshold=quick)
    said = set(exclude) | (set(judged) if judged is not None
                           else {r for lab in labels.values() for r in lab.positive + lab.negative})
    candidates = [r for r in range(len(segments)) if r not in said]
    queue = TeachQueue(review_cfg.teach_unsure, review_cfg.teach_far, review_cfg.teach_neighbours,
                       review_cfg.uncertain_margin * 2, seed)
    return queue.select(proba, learner.thresholds_, learner.themes_, candidates, vectors, sorted(said))


def code_with_learner(segments: Sequence[int], vectors: np.ndarray, positives: Mapping[str, Sequence[int]],
                      negatives: Mapping[str, Sequence[int]], names: Mapping[str, str],
                      review_cfg: ReviewSettings | Mapping[str, Any],
                      seed: int = 0, judged: Sequence[int] | None = None,
                      texts: Sequence[str] | None = None,
                      name_vectors: Mapping[str, np.ndarray] | None = None) -> ApplyResult:
    """Code each of ``segments`` (rows of ``vectors``) with every confirmed theme whose learner accepts it.

    ``positives`` / ``negatives``: theme key -> rows (indices into ``vectors``) a coder placed in the theme
    / said are not in it (members moved out, members of rejected themes); the other rows count as light
    negatives (``review.learner_unlabelled_weight``). What a coder said wins over the learner: a row placed
    in a theme keeps it, a row said not to be in one never gets it. A segment within
    ``review.uncertain_margin`` below a theme's threshold and coded with nothing is reported uncertain,
    with its best theme. ``judged``: the rows a coder judged one by one (``CodebookState.judged``), on which a
    theme's share of the study is read (``review.learner_threshold: prevalence``). ``texts``: the segments'
    texts, for the word view (:func:`learner_matrix`); ``name_vectors``: key -> the vector of its name in
    ``names``, each an example of its theme (``review.learner_names``, :func:`train_learner`).
    """
    review_cfg = ReviewSettings.of(review_cfg)
    labels = theme_labels(positives, negatives)
    theme_names = {k: (names[k], v) for k, v in (name_vectors or {}).items() if k in names}
    learner, proba, _ = train_learner(vectors, texts, labels, review_cfg, seed, judged, theme_names)
    proba = proba.copy()
    thresholds = learner.thresholds_
    said = np.zeros(proba.shape, dtype=bool)
    for j, key in enumerate(learner.themes_):  # the coders' word over the learner's
        proba[list(labels[key].positive), j] = 1.0
        proba[list(labels[key].negative), j] = 0.0
        said[list(labels[key].positive), j] = True
    assigned: dict[int, tuple[str, ...]] = {}
    uncertain: dict[int, tuple[str, float, float]] = {}
    links: dict[int, dict[str, tuple[str, float | None]]] = {}
    margin = review_cfg.uncertain_margin
    for row, seg in enumerate(segments):
        hits = np.flatnonzero(proba[row] >= thresholds)
        if len(hits):
            assigned[seg] = tuple(sorted(names[learner.themes_[j]] for j in hits))
            links[seg] = {names[learner.themes_[j]]: ("coder", None) if said[row, j]
                          else ("learner", round(float(proba[row, j]), 6)) for j in hits}
            continue
        gap = proba[row] - thresholds
        best = int(np.argmax(gap))
        if gap[best] >= -margin:
            uncertain[seg] = (names[learner.themes_[best]], round(float(proba[row, best]), 6),
                              round(float(thresholds[best]), 6))
    return ApplyResult(APPLY_CODER, len(segments), assigned, uncertain, len(labels), links,
                       {names[k]: round(float(t), 6) for k, t in zip(learner.themes_, thresholds)})
