"""The Teach queue's far questions: typical of what nobody labelled, not odd outliers."""

import numpy as np

from pipeline.learn.teach import FAR, TeachQueue, reviewed_own, teach_hint


def _corpus(seed: int = 0) -> tuple[np.ndarray, list[int], list[int], list[int]]:
    """Three tight groups on separate axes, one of them labelled, and a few lone outliers."""
    rng = np.random.default_rng(seed)
    dim = 16

    def group(axis: int, n: int) -> np.ndarray:
        centre = np.zeros(dim)
        centre[axis] = 1.0
        return centre + rng.normal(0, 0.05, (n, dim))

    outliers = rng.normal(0, 1.0, (4, dim))
    X = np.vstack([group(0, 30), group(1, 30), group(2, 30), outliers])
    labelled = list(range(0, 30))
    unlabelled_groups = [list(range(30, 60)), list(range(60, 90))]
    return X, labelled, unlabelled_groups[0] + unlabelled_groups[1], list(range(90, 94))


def test_far_questions_stand_for_unlabelled_groups_not_outliers():
    X, labelled, grouped, outliers = _corpus()
    candidates = [r for r in range(len(X)) if r not in labelled]
    picked = TeachQueue(n_unsure=0, n_far=2).typical(X, labelled, candidates, 2)
    assert len(picked) == 2 and not set(picked) & set(outliers)
    # one from each unlabelled group: the second pick keeps away from the first
    assert {r // 30 for r in picked} == {1, 2}


def test_a_batch_with_nothing_learned_is_far_questions_and_the_same_every_time():
    X, labelled, _, _ = _corpus()
    candidates = [r for r in range(len(X)) if r not in labelled]
    queue = TeachQueue(n_unsure=0, n_far=5)
    first = queue.select(np.zeros((len(X), 0)), np.zeros(0), [], candidates, X, labelled)
    assert len(first) == 5 and {q.reason for q in first} == {FAR} and all(q.proposed is None for q in first)
    assert not {q.row for q in first} & set(labelled)
    assert first == queue.select(np.zeros((len(X), 0)), np.zeros(0), [], candidates, X, labelled)


def test_unsure_and_far_questions_are_interleaved_without_repeats():
    X, labelled, _, _ = _corpus()
    candidates = [r for r in range(len(X)) if r not in labelled]
    proba = np.linspace(0, 1, len(X))[:, None]
    batch = TeachQueue(n_unsure=3, n_far=3).select(proba, np.array([0.5]), ["a"], candidates, X, labelled)
    rows = [q.row for q in batch]
    assert len(rows) == len(set(rows)) == 6
    assert [q.reason for q in batch][:2] != [FAR, FAR]
    unsure = [q.row for q in batch if q.reason != FAR]
    assert all(abs(proba[r, 0] - 0.5) < 0.1 for r in unsure)


def test_the_teach_hint_counts_the_last_themes_reviewed_that_stand_as_codes_of_their_own():
    from pipeline.learn.codebook import Entry, fold

    log = [Entry("1", "confirm", "ann", "t1", after={"name": "Staff"}),
           Entry("2", "reject", "ann", "t2", after={"reason": "mixed"}),
           Entry("3", "confirm", "ann", "t3", after={"name": "Waiting"}),
           Entry("4", "confirm", "ann", "t5", after={"name": "Parking"}),
           Entry("5", "merge", "ann", "t3", after={"themes": ["t3", "t4"], "into": "t3"}),  # t4 joins a code
           Entry("6", "undo", "ann", after={"undoes": "4"})]                                # t5 back to new
    state = fold(log)
    def status(key: str) -> str:
        return state.status_of(key, {"t1", "t2", "t3", "t4", "t5"})

    own = reviewed_own(state.applied, status)
    assert own == [True, False, True, False]  # t1-t4 in review order; t5's confirm was undone
    assert teach_hint(own, 2, 0.5) is None      # t3 and t4: one code of its own in two is not fewer than half
    assert teach_hint(own, 3, 0.5) == (1, 3)    # t2-t4: one in three
    assert teach_hint(own, 5, 0.5) is None      # five themes not reviewed yet
    assert reviewed_own([], status) == []


def test_teach_asks_about_segments_labelled_only_in_bulk_but_never_about_those_judged_one_by_one():
    """A confirm labels its members for one code; an answer gives every code a segment carries, so the
    members of a confirmed theme stay open to Teach, while a segment answered or placed is never asked."""
    from pipeline.config import load_config
    from pipeline.learn.apply import teach_batch

    rng = np.random.default_rng(1)
    dim = 16
    tight = np.eye(dim)[0] + rng.normal(0, 0.02, (40, dim))   # a dense group, confirmed as a theme in bulk
    loose = np.eye(dim)[1] + rng.normal(0, 0.3, (40, dim))    # a looser group nobody labelled
    X = np.vstack([tight, loose])
    review = {**load_config(None, None)["review"], "teach_far": 10, "teach_unsure": 0}
    confirmed = {"dense": list(range(40))}
    judged = [40, 41, 42]                                      # three loose ones a coder answered about
    bulk_too = {q.row for q in teach_batch(list(range(80)), X, confirmed, {}, review, judged=judged)}
    assert bulk_too & set(range(40)) and not bulk_too & set(judged)
    every_label = {q.row for q in teach_batch(list(range(80)), X, confirmed, {}, review)}  # judged not given
    assert not every_label & set(range(40)) and len(every_label) == 10
