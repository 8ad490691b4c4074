"""Runs that honour coders' decisions: pure numpy functions the suggest flow calls on its next run.

Contract (every vector is a float32/float64 row, L2-normalised as ``pipeline.embed.Embedder`` gives it;
every threshold is a parameter the caller reads from the configuration, section ``review``):

1. :func:`calibrate` builds, for each kept theme (confirmed, or shaped by a coder), the centroid of its
   confirmed example segments and an acceptance threshold calibrated on those examples: the
   ``review.calibration_percentile``-th percentile of the leave-one-out cosine similarity of each
   example to the centroid of the *other* examples, never below ``review.min_similarity``.
2. :func:`classify` puts each new segment vector in one kept theme (``assigned``), flags it for review
   (``uncertain``: within ``review.uncertain_margin`` below the threshold, or two themes accept it and
   the runner-up is within the margin of the best), or leaves it free (``none``).
3. :func:`plan_segments` combines fixed placements (segments a coder moved: into a theme, or to "no
   theme") with :func:`classify` and says which segments remain to be clustered for new suggestions.
4. :func:`drop_rejected` removes new clusters whose centroid has cosine similarity of at least
   ``review.rejected_similarity`` to a rejected theme's centroid, and reports why.
5. :func:`diff_runs` compares two runs' themes (matched by stable key, then by member overlap of at
   least ``review.diff_match_jaccard``): new, grown, shrunk, unchanged, gone.

Nothing here reads the store or the configuration; ``models.decisions.honour_inputs`` gathers the
example and rejected vectors from the decision log and the embedding cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Mapping, Sequence

import numpy as np

ASSIGNED, UNCERTAIN, NONE = "assigned", "uncertain", "none"
FIXED_NONE = "__none__"  # a coder moved the segment to "no theme": keep it out of every theme


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)


# ---------------------------------------------------------------------------------------------
# (a) classification into kept themes
# ---------------------------------------------------------------------------------------------


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
        x = _unit(np.atleast_2d(np.asarray(vectors, dtype=np.float64)))
        if x.size == 0 or len(x) == 0:
            continue
        total = x.sum(axis=0)
        centroid = _unit(total)
        if len(x) >= 2:
            others = _unit(total[None, :] - x)
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
             ) -> list[Assignment]:
    """Classify each row of ``vectors`` into the calibrated themes.

    With ``s`` the cosine similarity to a theme's centroid and ``t`` its threshold:
    assigned when ``s >= t`` for the best theme (highest ``s - t``) and no other theme accepts the
    segment within ``uncertain_margin`` of the best similarity; uncertain when the best falls short by
    less than ``uncertain_margin`` or a second theme accepts it that closely; none otherwise.
    """
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    keys = list(calibrations)
    if not keys or len(vectors) == 0 or vectors.size == 0:
        return [Assignment(NONE, None, 0.0, 0.0) for _ in range(len(vectors) if vectors.size else 0)]
    centroids = np.stack([calibrations[k].centroid for k in keys])
    thresholds = np.array([calibrations[k].threshold for k in keys])
    sims = _unit(vectors) @ centroids.T
    out = []
    for row in sims:
        margin = row - thresholds
        order = np.lexsort((np.arange(len(keys)), -margin))  # best margin first, ties by key order
        best = int(order[0])
        second = int(order[1]) if len(keys) > 1 else None
        s, t = float(row[best]), float(thresholds[best])
        r_key = keys[second] if second is not None else None
        r_sim = float(row[second]) if second is not None else 0.0
        rival = second is not None and row[second] >= thresholds[second] and s - r_sim < uncertain_margin
        if s >= t and not rival:
            status = ASSIGNED
        elif s >= t - uncertain_margin:
            status = UNCERTAIN
        else:
            status = NONE
        out.append(Assignment(status, keys[best], round(s, 6), round(t, 6), r_key, round(r_sim, 6)))
    return out


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


def plan_segments(vectors: np.ndarray, fixed: Sequence[str | None], calibrations: Mapping[str, Calibration],
                  uncertain_margin: float = 0.05) -> SegmentPlan:
    """Split a run's clusterable segments into kept-theme members, flagged, excluded and remaining.

    ``fixed[i]`` is a kept theme key for a segment a coder placed (it goes there whatever its
    similarity), :data:`FIXED_NONE` for one a coder moved to "no theme", or None (free: classified).
    Fixed keys that are not in ``calibrations`` are treated as free.
    """
    n = len(vectors)
    if len(fixed) != n:
        raise ValueError(f"fixed has {len(fixed)} entries for {n} vectors")
    assigned: dict[int, str] = {}
    fixed_idx: set[int] = set()
    excluded: set[int] = set()
    free: list[int] = []
    for i, f in enumerate(fixed):
        if f == FIXED_NONE:
            excluded.add(i)
        elif f is not None and f in calibrations:
            assigned[i] = f
            fixed_idx.add(i)
        else:
            free.append(i)
    uncertain: dict[int, Assignment] = {}
    details: dict[int, Assignment] = {}
    if free:
        for i, a in zip(free, classify(np.asarray(vectors)[free], calibrations, uncertain_margin)):
            details[i] = a
            if a.status == ASSIGNED:
                assigned[i] = a.key  # type: ignore[assignment]
            elif a.status == UNCERTAIN:
                uncertain[i] = a
    remaining = tuple(i for i in free if i not in assigned and i not in uncertain)
    return SegmentPlan(assigned, frozenset(fixed_idx), uncertain, frozenset(excluded), remaining, details)


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
    return {k: _unit(np.atleast_2d(np.asarray(v, dtype=np.float64)).sum(axis=0))
            for k, v in members.items() if np.asarray(v).size}


def drop_rejected(cluster_centroids: Mapping[Hashable, np.ndarray], rejected: Mapping[str, np.ndarray],
                  threshold: float = 0.85, names: Mapping[str, str] | None = None,
                  ) -> tuple[list[Hashable], list[Dropped]]:
    """Keep the clusters whose centroid stays below ``threshold`` cosine similarity to every rejected
    centroid; return ``(kept cluster ids in input order, dropped with their reason)``."""
    keys = list(rejected)
    if not keys:
        return list(cluster_centroids), []
    rej = _unit(np.stack([np.asarray(rejected[k], dtype=np.float64) for k in keys]))
    kept, dropped = [], []
    for cid, c in cluster_centroids.items():
        sims = rej @ _unit(np.asarray(c, dtype=np.float64))
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
