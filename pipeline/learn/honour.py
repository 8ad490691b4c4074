"""Runs that honour coders' decisions: pure numpy functions the suggest flow calls on its next run.

Contract (every vector is a float32/float64 row, L2-normalised as ``pipeline.embed.encoder.Embedder`` gives it;
every threshold is a parameter the caller reads from the configuration, section ``review``):

1. The review rule says where each segment of the new run would go. With ``review.learner: logistic``
   (the default) it is the learner ``apply`` uses (``pipeline.learn.learner.CodeLearner``), trained on what
   the decisions say for and against each kept theme (confirmed, or shaped by a coder), read by
   :func:`learner_assignments`: a kept theme takes a new segment when its probability reaches the theme's
   threshold (chosen stricter than ``apply``'s, ``review.run_unlabelled_count``: a run takes segments out
   of the clustering). With ``centroid``, the older rule of ``pipeline.themes.join`` (:func:`calibrate` and
   :func:`classify`: one centre and threshold per kept theme, the other themes' centroids competing).
   ``pipeline.learn.apply.HonourInputs.assignments`` applies whichever the configuration names.
2. :func:`plan_segments` combines fixed placements (segments a coder moved: into a theme, or to "no
   theme") with those assignments and says which segments remain to be clustered for new suggestions.
3. :func:`drop_rejected` removes new clusters whose centroid has cosine similarity of at least
   ``review.rejected_similarity`` to a rejected theme's centroid, and reports why.
4. :func:`diff_runs` compares two runs' themes (matched by stable key, then by member overlap of at
   least ``review.diff_match_jaccard``): new, grown, shrunk, unchanged, gone.
5. :func:`combine_labels` puts kept-theme members (label ``CARRIED_LABEL_BASE + j``) and the clusterer's
   labels for the remaining rows into one label array, so describe / rank / assemble run unchanged;
   :func:`name_carried` gives the carried candidate themes the coders' names.

Nothing here reads the store or the configuration; ``models.review.honour_inputs`` gathers the decisions'
labels and vectors from the decision log and the embedding cache (``pipeline.learn.apply.HonourInputs``),
and ``models.decisions.record_carried_keys`` gives the stored carried themes their stable keys.

How the suggest flow uses it (after ``vectors`` of the clusterable segments are loaded)::

    honour = honour_inputs(store, study)                      # None: no decisions yet, run as before
    rows = [segments[i] for i in clustered]
    plan = plan_segments(honour.fixed_for(rows), honour.assignments(vectors, rows, review), honour.kept)
    rest = list(plan.remaining)
    clusterer, stability = cluster_task(vectors[rest], ...)   # only the remaining segments
    rest_labels = clusterer.labels_.copy()
    kept, dropped = drop_rejected(cluster_centroids(vectors[rest], rest_labels),
                                  honour.rejected_centroids(), review.rejected_similarity,
                                  honour.rejected_names)
    rest_labels[np.isin(rest_labels, [d.cluster for d in dropped])] = -1      # report ``dropped``
    labels, strengths, label_of = combine_labels(len(vectors), plan, rest_labels,
                                                 clusterer.probabilities_, list(honour.kept))
    ... describe / rank / assemble on (texts, labels, vectors, cases, strengths) as before ...
    themes = name_carried(suggestions.themes, label_of, {k: v[0] for k, v in honour.kept.items()})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Hashable, Mapping, Sequence

import numpy as np

from pipeline.themes.join import ASSIGNED, NONE, UNCERTAIN, Assignment, unit_vectors

FIXED_NONE = "__none__"  # a coder moved the segment to "no theme": keep it out of every theme


# ---------------------------------------------------------------------------------------------
# (a) classification into kept themes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentPlan:
    """What the next run does with each clusterable segment (indices into the run's vectors).

    ``assigned``: index -> kept theme key (fixed by a coder, or classified); ``uncertain``: index ->
    :class:`Assignment` (store them in the theme's review queue / outlier queue with the suggestion, not
    as members); ``excluded``: indices a coder moved to "no theme" (outlier queue, never clustered);
    ``remaining``: indices to cluster for new suggestions, ascending.
    """

    assigned: dict[int, str]
    fixed: frozenset[int]
    uncertain: dict[int, Assignment]
    excluded: frozenset[int]
    remaining: tuple[int, ...]
    assignments: dict[int, Assignment] = field(default_factory=dict)


def plan_segments(fixed: Sequence[str | None], assignments: Sequence[Assignment], kept: Collection[str]) -> SegmentPlan:
    """Split a run's clusterable segments into kept-theme members, flagged, excluded and remaining.

    ``fixed[i]`` is a kept theme key for a segment a coder placed (it goes there whatever the rule says),
    :data:`FIXED_NONE` for one a coder moved to "no theme", or None (free). ``assignments[i]`` is where the
    review rule puts row ``i`` (``HonourInputs.assignments``: the learner, or the centroid rule of
    :func:`pipeline.themes.join.classify`); it decides the free rows only. A fixed key the rule does not
    know (a theme no longer kept) leaves the row free.
    """
    n = len(assignments)
    if len(fixed) != n:
        raise ValueError(f"fixed has {len(fixed)} entries for {n} assignments")
    known = set(kept)
    assigned: dict[int, str] = {}
    fixed_idx: set[int] = set()
    excluded: set[int] = set()
    uncertain: dict[int, Assignment] = {}
    details: dict[int, Assignment] = {}
    free: list[int] = []
    for i, (f, a) in enumerate(zip(fixed, assignments)):
        if f == FIXED_NONE:
            excluded.add(i)
        elif f is not None and f in known:
            assigned[i] = f
            fixed_idx.add(i)
        else:
            free.append(i)
            details[i] = a
            if a.status == ASSIGNED:
                assigned[i] = a.key  # type: ignore[assignment]
            elif a.status == UNCERTAIN:
                uncertain[i] = a
    remaining = tuple(i for i in free if i not in assigned and i not in uncertain)
    return SegmentPlan(assigned, frozenset(fixed_idx), uncertain, frozenset(excluded), remaining, details)


def learner_assignments(proba: np.ndarray, thresholds: np.ndarray, keys: Sequence[str],
                        uncertain_margin: float = 0.05) -> list[Assignment]:
    """Where a run puts each row by the learner's probabilities (``CodeLearner.predict_proba`` and its
    ``thresholds_``, theme ``keys`` in their order): the theme furthest above its threshold (a run gives
    a segment one theme; ``apply`` gives every one that fits), uncertain within ``uncertain_margin`` below
    it, none otherwise. ``similarity`` is the probability, shown as the member's strength."""
    proba = np.atleast_2d(np.asarray(proba, dtype=np.float64))
    if not len(keys):
        return [Assignment(NONE, None, 0.0, 0.0) for _ in range(len(proba))]
    thresholds = np.asarray(thresholds, dtype=np.float64)
    out = []
    for row in proba:
        gap = row - thresholds
        order = np.lexsort((np.arange(len(keys)), -gap))  # furthest above first, ties by key order
        best = int(order[0])
        second = int(order[1]) if len(keys) > 1 else None
        p, t = float(row[best]), float(thresholds[best])
        status = ASSIGNED if p >= t else UNCERTAIN if p >= t - uncertain_margin else NONE
        out.append(Assignment(status, keys[best], p, t, keys[second] if second is not None else None,
                              float(row[second]) if second is not None else 0.0))
    return out


CARRIED_LABEL_BASE = 100_000  # cluster labels of carried themes: never produced by the clusterer


def combine_labels(n: int, plan: SegmentPlan, rest_labels: np.ndarray, rest_strengths: np.ndarray | None = None,
                   keys: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """One label array for all ``n`` clusterable rows, so describe / rank / assemble run unchanged.

    ``rest_labels`` (and ``rest_strengths``, e.g. HDBSCAN probabilities) are the clusterer's output on
    ``plan.remaining`` only (-1: outlier). Kept themes get labels ``CARRIED_LABEL_BASE + j`` in the order
    of ``keys`` (default: order of first appearance in ``plan.assigned``); their members' strength is the
    classification similarity (1.0 for segments a coder placed). Uncertain and excluded rows stay -1, so
    they land in the outlier queue (assemble suggests their nearest theme, never assigns it).
    Returns ``(labels, strengths, key -> carried label)``.
    """
    rest = np.asarray(plan.remaining, dtype=np.int64)
    rest_labels = np.asarray(rest_labels)
    if len(rest_labels) != len(rest):
        raise ValueError(f"{len(rest_labels)} labels for {len(rest)} remaining rows")
    labels = np.full(n, -1, dtype=np.int64)
    strengths = np.zeros(n, dtype=np.float64)
    labels[rest] = rest_labels
    if rest_strengths is not None:
        strengths[rest] = np.asarray(rest_strengths, dtype=np.float64)
    order = list(keys) if keys is not None else list(dict.fromkeys(plan.assigned[i] for i in sorted(plan.assigned)))
    label_of = {k: CARRIED_LABEL_BASE + j for j, k in enumerate(order)}
    for i, key in plan.assigned.items():
        if key in label_of:
            labels[i] = label_of[key]
            a = plan.assignments.get(i)
            strengths[i] = 1.0 if i in plan.fixed or a is None else max(0.0, min(1.0, a.similarity))
    used = set(labels.tolist())
    return labels, strengths, {k: v for k, v in label_of.items() if v in used}


def cluster_centroids(vectors: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """Unit centroid of every non-outlier label (for :func:`drop_rejected`)."""
    labels = np.asarray(labels)
    return {int(t): unit_vectors(np.asarray(vectors)[labels == t].sum(axis=0))
            for t in sorted(set(labels.tolist())) if t != -1}


def name_carried(themes: Sequence, label_of: Mapping[str, int], names: Mapping[str, str]) -> list:
    """Candidate themes (dataclasses with ``cluster`` and ``label``) with kept themes relabelled by the
    coders' names; other themes unchanged."""
    from dataclasses import replace

    by_label = {v: names[k] for k, v in label_of.items() if k in names}
    return [replace(t, label=by_label[t.cluster]) if t.cluster in by_label else t for t in themes]


# ---------------------------------------------------------------------------------------------
# (b) rejected themes stay rejected
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dropped:
    """A new cluster not suggested because it is too close to a theme a coder rejected."""

    cluster: Hashable
    rejected_key: str
    similarity: float
    reason: str


def rejected_centroids(members: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Centroid per rejected theme from its member vectors (``key -> (n, dim)``); empty ones left out."""
    return {k: unit_vectors(np.atleast_2d(np.asarray(v, dtype=np.float64)).sum(axis=0))
            for k, v in members.items() if np.asarray(v).size}


def drop_rejected(cluster_centroids: Mapping[Hashable, np.ndarray], rejected: Mapping[str, np.ndarray],
                  threshold: float = 0.85, names: Mapping[str, str] | None = None,
                  ) -> tuple[list[Hashable], list[Dropped]]:
    """Keep the clusters whose centroid stays below ``threshold`` cosine similarity to every rejected
    centroid; return ``(kept cluster ids in input order, dropped with their reason)``."""
    keys = list(rejected)
    if not keys:
        return list(cluster_centroids), []
    rej = unit_vectors(np.stack([np.asarray(rejected[k], dtype=np.float64) for k in keys]))
    kept, dropped = [], []
    for cid, c in cluster_centroids.items():
        sims = rej @ unit_vectors(np.asarray(c, dtype=np.float64))
        best = int(np.argmax(sims))
        s = float(sims[best])
        if s >= threshold:
            name = (names or {}).get(keys[best]) or keys[best]
            dropped.append(Dropped(cid, keys[best], round(s, 6),
                                   f"too close to rejected theme '{name}' (similarity {s:.2f} >= {threshold:.2f})"))
        else:
            kept.append(cid)
    return kept, dropped


# ---------------------------------------------------------------------------------------------
# (c) what changed between two runs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunTheme:
    """A theme of one run for comparison: stable ``key``, shown ``label``, member segment ids."""

    key: str
    label: str
    members: frozenset[int]


@dataclass(frozen=True)
class ThemeChange:
    kind: str  # new | grown | shrunk | unchanged | gone
    old_key: str | None
    new_key: str | None
    label: str
    old_size: int
    new_size: int
    jaccard: float
    matched_by: str  # key | overlap | none
    gained: int = 0
    lost: int = 0


def diff_runs(old: Sequence[RunTheme], new: Sequence[RunTheme], match_jaccard: float = 0.5) -> list[ThemeChange]:
    """Match ``new`` themes to ``old`` ones (same key first, then greedily by highest member Jaccard at
    or above ``match_jaccard``) and classify each: grown / shrunk / unchanged by member count, new when
    unmatched in ``new``, gone when unmatched in ``old``. Order: new-run themes in input order, then gone."""
    old_by_key = {t.key: t for t in old}
    pairs: dict[int, tuple[int, str]] = {}  # new index -> (old index, how)
    used_old: set[int] = set()
    old_index = {t.key: i for i, t in enumerate(old)}
    for j, t in enumerate(new):
        if t.key in old_by_key and old_index[t.key] not in used_old:
            pairs[j] = (old_index[t.key], "key")
            used_old.add(old_index[t.key])
    candidates = []
    for j, t in enumerate(new):
        if j in pairs:
            continue
        for i, o in enumerate(old):
            if i in used_old:
                continue
            jac = _jaccard(t.members, o.members)
            if jac >= match_jaccard:
                candidates.append((-jac, j, i))
    for neg, j, i in sorted(candidates):
        if j not in pairs and i not in used_old:
            pairs[j] = (i, "overlap")
            used_old.add(i)
    out = []
    for j, t in enumerate(new):
        if j in pairs:
            i, how = pairs[j]
            o = old[i]
            kind = "grown" if len(t.members) > len(o.members) else "shrunk" if len(t.members) < len(o.members) \
                else "unchanged"
            out.append(ThemeChange(kind, o.key, t.key, t.label, len(o.members), len(t.members),
                                   round(_jaccard(t.members, o.members), 6), how,
                                   len(t.members - o.members), len(o.members - t.members)))
        else:
            out.append(ThemeChange("new", None, t.key, t.label, 0, len(t.members), 0.0, "none", len(t.members), 0))
    for i, o in enumerate(old):
        if i not in used_old:
            out.append(ThemeChange("gone", o.key, None, o.label, len(o.members), 0, 0.0, "none", 0, len(o.members)))
    return out


def _jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0
