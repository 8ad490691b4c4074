"""pipeline.learn.honour: calibrated classification, rejected themes kept out, run diffs, split proposals."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.learn.honour import (FIXED_NONE, RunTheme, combine_labels, diff_runs, drop_rejected, learner_assignments,
                                   plan_segments, rejected_centroids)
from pipeline.themes.join import ASSIGNED, NONE, UNCERTAIN, calibrate, classify
from pipeline.themes.split import propose_split


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def blob(rng, centre, n, noise=0.15):
    return unit(np.asarray(centre)[None, :] + noise * rng.standard_normal((n, len(centre))))


@pytest.fixture
def themes():
    rng = np.random.default_rng(0)
    dim = 16
    a, b = np.eye(dim)[0], np.eye(dim)[1]
    return rng, a, b, {"a": blob(rng, a, 20), "b": blob(rng, b, 20)}


def test_calibrate_uses_leave_one_out_percentile_with_a_floor(themes):
    rng, a, b, examples = themes
    cal = calibrate(examples, percentile=10, min_similarity=0.2)
    assert list(cal) == ["a", "b"]
    c = cal["a"]
    assert c.n_examples == 20 and len(c.loo_similarities) == 20
    assert c.threshold == pytest.approx(np.percentile(c.loo_similarities, 10), abs=1e-6)
    assert np.linalg.norm(c.centroid) == pytest.approx(1.0)
    assert calibrate(examples, percentile=10, min_similarity=0.999)["a"].threshold == 0.999
    single = calibrate({"s": examples["a"][:1]}, 10, 0.4)["s"]
    assert single.threshold == 0.4 and single.loo_similarities == ()
    assert calibrate({"empty": np.zeros((0, 16))}, 10, 0.4) == {}
    # leave-one-out: an example is not compared with a centroid that contains it
    x = examples["a"]
    others = unit(x[1:].sum(axis=0))
    assert c.loo_similarities[0] == pytest.approx(float(x[0] @ others), abs=1e-6)


def test_classify_assigned_uncertain_none(themes):
    rng, a, b, examples = themes
    cal = calibrate(examples, 10, 0.2)
    new = np.vstack([blob(rng, a, 5, 0.05), blob(rng, b, 5, 0.05), unit(np.eye(16)[5])[None, :],
                     unit(a + b)[None, :]])
    out = classify(new, cal, uncertain_margin=0.05)
    assert [o.status for o in out[:10]] == [ASSIGNED] * 10
    assert [o.key for o in out[:10]] == ["a"] * 5 + ["b"] * 5
    assert out[10].status == NONE
    assert out[11].status in (UNCERTAIN, NONE)  # halfway between two themes is never forced in
    # just below the threshold but within the margin: flagged, not assigned
    t = cal["a"].threshold
    angle = np.arccos(t - 0.02)
    v = np.cos(angle) * cal["a"].centroid + np.sin(angle) * unit(np.eye(16)[7] - (np.eye(16)[7] @ cal["a"].centroid) * cal["a"].centroid)
    near = classify(v[None, :], {"a": cal["a"]}, 0.05)[0]
    assert near.status == UNCERTAIN and near.similarity == pytest.approx(t - 0.02, abs=1e-4)
    assert classify(v[None, :], {"a": cal["a"]}, 0.01)[0].status == NONE
    assert classify(new, {}, 0.05)[0].status == NONE


def test_competitors_keep_a_broad_theme_from_swallowing_others():
    rng = np.random.default_rng(3)
    dim = 16
    broad = blob(rng, np.eye(dim)[0], 30, 0.6)        # a loose theme: its threshold is low
    other = np.eye(dim)[0] * 0.6 + np.eye(dim)[1]      # a topic next to it that nobody kept
    cal = calibrate({"broad": broad}, 10, 0.2)
    near_other = blob(rng, other, 20, 0.05)
    alone = classify(near_other, cal, 0.05)
    assert sum(a.status == ASSIGNED for a in alone) >= 15           # without competitors it takes them
    with_comp = classify(near_other, cal, 0.05, competitors={"other": unit(other)})
    assert all(a.status == NONE for a in with_comp)
    assert with_comp[0].runner_up == "other"
    own = classify(blob(rng, np.eye(dim)[0], 10, 0.05), cal, 0.05, competitors={"other": unit(other)})
    assert all(a.status == ASSIGNED for a in own)
    # nearly as close to a competitor as to the kept theme, on either side of it: flagged for review
    for lean in (0.48, 0.5, 0.52):
        between = unit(lean * cal["broad"].centroid + (1 - lean) * unit(other))[None, :]
        got = classify(between, cal, 0.05, competitors={"other": unit(other)})[0]
        assert got.status in (UNCERTAIN, NONE), (lean, got)


def test_plan_segments_fixed_classified_excluded_remaining(themes):
    rng, a, b, examples = themes
    cal = calibrate(examples, 10, 0.2)
    vectors = np.vstack([blob(rng, a, 2, 0.05), blob(rng, np.eye(16)[9], 3, 0.05)])
    fixed = ["b", FIXED_NONE, None, None, "unknown-key"]
    plan = plan_segments(fixed, classify(vectors, cal, 0.05), cal)
    assert plan.assigned[0] == "b" and 0 in plan.fixed   # a coder's placement wins over similarity
    assert plan.excluded == frozenset({1})
    assert plan.remaining == (2, 3, 4)                   # unknown fixed keys are treated as free
    with pytest.raises(ValueError):
        plan_segments(fixed[:2], classify(vectors, cal, 0.05), cal)


def test_learner_assignments_take_the_theme_furthest_above_its_threshold():
    proba = np.array([[0.9, 0.6], [0.5, 0.45], [0.38, 0.1], [0.1, 0.2]])
    got = learner_assignments(proba, np.array([0.4, 0.3]), ["a", "b"], 0.05)
    assert [(g.status, g.key) for g in got] == [
        (ASSIGNED, "a"),       # both accept it: a is 0.5 above its threshold, b 0.3
        (ASSIGNED, "b"),       # a 0.1 above, b 0.15: b, although a's probability is higher
        (UNCERTAIN, "a"),      # 0.02 below a's threshold, within the margin
        (NONE, "b")]           # below both
    assert got[0].similarity == 0.9 and got[0].threshold == 0.4 and got[0].runner_up == "b"
    assert [g.status for g in learner_assignments(proba, np.zeros(0), [], 0.05)] == [NONE] * 4


def test_drop_rejected(themes):
    rng, a, b, examples = themes
    rejected = rejected_centroids({"r": examples["a"], "empty": np.zeros((0, 16))})
    assert list(rejected) == ["r"]
    clusters = {0: unit(examples["a"][:10].mean(axis=0)), 1: unit(examples["b"].mean(axis=0))}
    kept, dropped = drop_rejected(clusters, rejected, 0.85, names={"r": "Vague"})
    assert kept == [1]
    assert [(d.cluster, d.rejected_key) for d in dropped] == [(0, "r")]
    assert "Vague" in dropped[0].reason and dropped[0].similarity >= 0.85
    assert drop_rejected(clusters, {}, 0.85) == ([0, 1], [])


def test_diff_runs_by_key_then_overlap():
    old = [RunTheme("k1", "one", frozenset({1, 2, 3})), RunTheme("k2", "two", frozenset({4, 5, 6, 7})),
           RunTheme("k3", "three", frozenset({8, 9})), RunTheme("k4", "four", frozenset({10, 11}))]
    new = [RunTheme("k1", "one", frozenset({1, 2, 3, 20})),      # same key: grown
           RunTheme("n2", "two again", frozenset({4, 5, 6})),     # overlap 3/4: shrunk
           RunTheme("n3", "fresh", frozenset({30, 31})),           # new
           RunTheme("k4", "four", frozenset({10, 11}))]            # unchanged
    changes = diff_runs(old, new, 0.5)
    assert [(c.kind, c.old_key, c.new_key, c.matched_by) for c in changes] == [
        ("grown", "k1", "k1", "key"), ("shrunk", "k2", "n2", "overlap"), ("new", None, "n3", "none"),
        ("unchanged", "k4", "k4", "key"), ("gone", "k3", None, "none")]
    assert (changes[0].gained, changes[0].lost) == (1, 0)
    assert diff_runs(old, new, 0.9)[1].kind == "new"


def test_propose_split_is_deterministic():
    rng = np.random.default_rng(1)
    x = np.vstack([blob(rng, np.eye(8)[0], 12, 0.1), blob(rng, np.eye(8)[1], 6, 0.1)])
    for method in ("kmeans", "agglomerative"):
        p = propose_split(x, 2, method)
        assert p.labels == propose_split(x, 2, method).labels
        assert p.labels[:12] == (0,) * 12 and p.labels[12:] == (1,) * 6  # parts by decreasing size
        assert sorted(p.central[0]) == list(range(12))
    with pytest.raises(ValueError):
        propose_split(x, 1)
    with pytest.raises(ValueError):
        propose_split(x, 2, "magic")


def test_combine_labels_and_name_carried(themes):
    from dataclasses import dataclass

    from pipeline.learn.honour import CARRIED_LABEL_BASE, cluster_centroids, name_carried

    rng, a, b, examples = themes
    cal = calibrate(examples, 10, 0.2)
    vectors = np.vstack([blob(rng, a, 3, 0.05), blob(rng, np.eye(16)[9], 4, 0.05), blob(rng, b, 1, 0.05)])
    plan = plan_segments([None, "b", FIXED_NONE, None, None, None, None, None], classify(vectors, cal, 0.05), cal)
    assert plan.remaining == (3, 4, 5, 6)
    labels, strengths, label_of = combine_labels(len(vectors), plan, np.array([0, 0, -1, 0]),
                                                 np.array([0.9, 0.8, 0.0, 0.7]), ["a", "b"])
    assert label_of == {"a": CARRIED_LABEL_BASE, "b": CARRIED_LABEL_BASE + 1}
    assert labels.tolist() == [CARRIED_LABEL_BASE, CARRIED_LABEL_BASE + 1, -1, 0, 0, -1, 0, CARRIED_LABEL_BASE + 1]
    assert strengths[1] == 1.0 and 0 < strengths[0] <= 1 and strengths[3] == 0.9
    with pytest.raises(ValueError):
        combine_labels(len(vectors), plan, np.array([0, 0]))
    cents = cluster_centroids(vectors, labels)
    assert sorted(cents) == [0, CARRIED_LABEL_BASE, CARRIED_LABEL_BASE + 1]

    @dataclass(frozen=True)
    class T:
        cluster: int
        label: str

    named = name_carried([T(0, "x / y"), T(CARRIED_LABEL_BASE, "a / b")], label_of, {"a": "Kept"})
    assert [t.label for t in named] == ["x / y", "Kept"]
