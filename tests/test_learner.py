"""The learner codes from what coders said, for and against, several codes per segment where they fit.

Real parts: scikit-learn's logistic regression, and the packaged all-MiniLM-L6-v2 for the sentences.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.learn.learner import CodeLearner, ThemeLabels


# five comments of each of three kinds, for the tests on real sentences
STAFF = ["The nurses were kind and caring.", "Lovely friendly staff on the ward.", "The doctor listened to me.",
         "Reception staff were helpful and polite.", "The midwife was wonderful with us."]
WAIT = ["I waited three hours to be seen.", "The appointment was delayed again.", "Too long a wait in A&E.",
        "Waiting times for the clinic are far too long.", "Nobody told us why we were kept waiting."]
PARK = ["Parking is expensive and hard to find.", "The car park was full.", "No spaces to park near the entrance.",
        "Parking charges are a rip off.", "I drove round the car park for twenty minutes."]


def blob(rng, centre, n, spread=0.3):
    x = centre + spread * rng.standard_normal((n, len(centre)))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_a_segment_gets_every_code_that_fits_and_none_where_none_does():
    rng = np.random.default_rng(0)
    e = np.eye(8)
    staff, wait, both = blob(rng, e[0], 40), blob(rng, e[1], 40), blob(rng, e[0] + e[1], 10)
    other = blob(rng, e[5], 40)
    X = np.vstack([staff, wait, both, other])
    i_staff, i_wait, i_both, i_other = (np.arange(40), np.arange(40, 80), np.arange(80, 90), np.arange(90, 130))
    labels = {"staff": ThemeLabels(tuple(i_staff[:30]) + tuple(i_both[:5]), tuple(i_other[:5])),
              "waiting": ThemeLabels(tuple(i_wait[:30]) + tuple(i_both[:5]), tuple(i_other[:5]))}
    model = CodeLearner(seed=1).fit(X, labels)
    assert model.themes_ == ["staff", "waiting"] and model.predict_proba(X).shape == (130, 2)
    codes = model.predict(X)
    assert np.mean([codes[i] == {"staff"} for i in i_staff[30:]]) >= 0.8
    assert np.mean([codes[i] == {"waiting"} for i in i_wait[30:]]) >= 0.8
    assert np.mean([codes[i] == {"staff", "waiting"} for i in i_both[5:]]) >= 0.6  # both codes where both fit
    assert np.mean([codes[i] == frozenset() for i in i_other[5:]]) >= 0.8


def test_what_a_coder_said_against_a_theme_moves_its_boundary():
    """Members moved out of a theme are negatives: the learner stops taking their neighbours, where the
    positives alone would have taken them."""
    rng = np.random.default_rng(2)
    e = np.eye(8)
    core, fringe = blob(rng, e[0], 40, 0.2), blob(rng, e[0] + 0.8 * e[2], 40, 0.2)
    rest = blob(rng, e[4], 60, 0.3)
    X = np.vstack([core, fringe, rest])
    positives = tuple(range(30))
    fringe_rows = np.arange(40, 80)
    without = CodeLearner(seed=0).fit(X, {"t": ThemeLabels(positives)})
    with_no = CodeLearner(seed=0).fit(X, {"t": ThemeLabels(positives, tuple(fringe_rows[:10]))})
    took_without = np.mean(["t" in c for c in without.predict(X[fringe_rows[10:]])])
    took_with = np.mean(["t" in c for c in with_no.predict(X[fringe_rows[10:]])])
    assert took_with < took_without - 0.3, (took_with, took_without)
    assert np.mean(["t" in c for c in with_no.predict(X[30:40])]) >= 0.8  # the core is still taken


def test_fitting_is_deterministic_and_themes_without_positives_are_left_out():
    rng = np.random.default_rng(4)
    X = np.vstack([blob(rng, np.eye(6)[0], 30), blob(rng, np.eye(6)[3], 30)])
    labels = {"a": ThemeLabels(tuple(range(20)), tuple(range(30, 40))), "empty": ThemeLabels(()),
              "b": ThemeLabels(tuple(range(30, 50)))}
    one, two = CodeLearner(seed=3).fit(X, labels), CodeLearner(seed=3).fit(X, labels)
    assert one.themes_ == ["a", "b"]
    np.testing.assert_array_equal(one.predict_proba(X), two.predict_proba(X))
    np.testing.assert_array_equal(one.thresholds_, two.thresholds_)
    assert all(0.2 <= t < 1 for t in one.thresholds_)


def test_learns_codes_of_real_sentences_from_few_examples():
    from pipeline.config import load_config
    from pipeline.embed.encoder import Embedder

    staff, wait, park = STAFF, WAIT, PARK
    test = {"The staff were lovely and so caring.": {"staff"}, "We waited over two hours.": {"wait"},
            "Could not find a parking space anywhere.": set(),
            "Friendly nurses, but the wait was very long.": {"staff", "wait"}}
    embed = Embedder.from_config({**load_config()["embed"], "progress_min_texts": 10**9})
    X = embed.encode(staff + wait + park + list(test))
    # a coder's "no" answers: each theme's examples are said not to be the other theme
    labels = {"staff": ThemeLabels(tuple(range(5)), tuple(range(5, 15))),
              "wait": ThemeLabels(tuple(range(5, 10)), tuple(range(5)) + tuple(range(10, 15)))}
    codes = CodeLearner(seed=0).fit(X[:15], labels).predict(X[15:])
    got = dict(zip(test, codes))
    assert got["The staff were lovely and so caring."] == {"staff"}
    assert got["We waited over two hours."] == {"wait"}
    assert got["Could not find a parking space anywhere."] == frozenset()
    assert "wait" in got["Friendly nurses, but the wait was very long."] or \
        "staff" in got["Friendly nurses, but the wait was very long."]


@pytest.mark.parametrize("bad", [{"t": ThemeLabels((0, 1), (1,))}])
def test_a_row_both_for_and_against_counts_as_for(bad):
    X = np.eye(4)
    model = CodeLearner().fit(X, bad)
    assert model.themes_ == ["t"]


def test_decision_labels_read_for_and_against_from_the_log():
    """For a confirmed theme: every segment carrying it now (several codes each). Against: members the run
    gave it that no longer carry it, segments a coder said are not in it, every member of a rejected theme."""
    from pipeline.learn.apply import decision_labels

    segments = [10, 11, 12, 13, 14, 15]
    base = {10: "a", 11: "a", 12: "a", 13: "b", 14: "r", 15: None}
    codes = {10: ("a", "b"), 11: (), 12: ("b",), 13: ("b",), 14: (), 15: ("a",)}  # 11, 12 out of a; 15 in
    positives, negatives = decision_labels(segments, base, codes, ["a", "b"], [14], {"b": {15}})
    assert positives == {"a": [0, 5], "b": [0, 2, 3]}
    assert negatives == {"a": [1, 2, 4], "b": [5, 4]}


def test_a_run_threshold_counting_unlabelled_rows_is_stricter():
    """``unlabelled_count=1`` (the next suggest run) counts an unlabelled row as a wrong "yes" when the
    threshold is chosen: a theme known from its members alone takes fewer of the rows nobody labelled."""
    rng = np.random.default_rng(3)
    e = np.eye(8)
    X = np.vstack([blob(rng, e[0], 30, 0.3), blob(rng, e[0] + 0.7 * e[3], 60, 0.4), blob(rng, e[5], 100, 0.4)])
    labels = {"staff": ThemeLabels(tuple(range(20)))}
    loose = CodeLearner(seed=0).fit(X, labels)
    strict = CodeLearner(unlabelled_count=1.0, seed=0).fit(X, labels)
    assert strict.thresholds_[0] > loose.thresholds_[0]
    taken = [sum("staff" in c for c in m.predict(X[20:])) for m in (loose, strict)]
    assert taken[1] < taken[0]
    assert np.array_equal(loose.coef_, strict.coef_)  # the same regression: only the threshold differs


def test_neighbours_read_a_segment_through_its_region():
    """With ``neighbours``, a few labels in a noisy region speak for the region: the rest of it ranks above
    the other regions more surely (the area under the ROC curve of the theme's probability), and a study
    row reads the same alone as inside the study."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    e = np.eye(16)
    regions = [blob(rng, e[i], 40, 0.35) for i in range(4)]
    X = np.vstack(regions)
    labels = {"t": ThemeLabels((0, 1, 2), (40, 41, 80, 81, 120, 121))}
    plain = CodeLearner(seed=0).fit(X, labels)
    near = CodeLearner(seed=0, neighbours=10).fit(X, labels)
    rest, others = np.arange(3, 40), np.arange(42, 160)
    truth = np.r_[np.ones(len(rest)), np.zeros(len(others))]
    auc = {name: roc_auc_score(truth, m.predict_proba(X[np.r_[rest, others]])[:, 0])
           for name, m in (("plain", plain), ("near", near))}
    assert 1 - auc["near"] <= 0.7 * (1 - auc["plain"]), auc  # plain ~0.95, near ~0.98
    assert np.allclose(near.predict_proba(X[rest]), near.predict_proba(X)[rest])
    assert plain.study_ is None and np.array_equal(plain.features(X), X)


def test_a_prevalence_threshold_codes_a_theme_as_often_as_the_labels_carry_it():
    """``threshold="prevalence"``: a theme is given to as large a share of the study as it holds among the
    rows labelled for or against it; with nothing said against it, the F1 rule stands (a share of 1 would
    code everything)."""
    rng = np.random.default_rng(6)
    e = np.eye(8)
    X = np.vstack([blob(rng, e[0], 50, 0.5), blob(rng, e[1], 150, 0.5)])
    labelled = rng.choice(200, 40, replace=False)
    share = np.mean(labelled < 50)
    labels = {"t": ThemeLabels(tuple(labelled[labelled < 50]), tuple(labelled[labelled >= 50]))}
    model = CodeLearner(seed=0, threshold="prevalence").fit(X, labels)
    coded = np.mean(["t" in c for c in model.predict(X)])
    assert abs(coded - share) <= 1 / 200 + 1e-9, (coded, share)
    only_for = {"u": ThemeLabels(tuple(range(150, 160)))}
    assert CodeLearner(seed=0, threshold="prevalence").fit(X, only_for).thresholds_[0] == \
        CodeLearner(seed=0).fit(X, only_for).thresholds_[0]


def test_a_theme_confirmed_in_bulk_does_not_take_the_share_it_holds_among_its_own_members():
    """A confirmed theme's members were taken from a cluster in bulk: among the labelled rows it holds most,
    far more than its share of the study. With ``judged`` (the rows decided one by one, here the 3 moved
    out) its share is not read from them, so it keeps the F1 rule and does not take the unlabelled bulk."""
    rng = np.random.default_rng(7)
    e = np.eye(8)
    X = np.vstack([blob(rng, e[0], 30, 0.4), blob(rng, e[1], 120, 0.4), blob(rng, e[2], 120, 0.4)])
    labels = {"t": ThemeLabels(tuple(range(27)), (27, 28, 29))}
    bulk = CodeLearner(seed=0, threshold="prevalence").fit(X, labels)
    judged = CodeLearner(seed=0, threshold="prevalence").fit(X, labels, judged=[27, 28, 29])
    taken = [sum("t" in c for c in m.predict(X[30:])) for m in (bulk, judged)]
    assert taken[0] > 120, taken  # 27 of 30 labelled rows: coded for 90% of the study
    assert taken[1] < taken[0] / 4, taken
    assert judged.thresholds_[0] == CodeLearner(seed=0).fit(X, labels).thresholds_[0]


def test_a_theme_of_two_segments_a_coder_made_does_not_take_half_the_study():
    """Two confirmed themes of 30 segments each (in bulk), and an own theme a coder made of 2 segments: the
    3 rows judged one by one (the 2 placed and 1 moved out) are too few to read a share from, and 2
    examples too few for the F1 rule. The own theme takes about the share its 2 examples hold among the
    labelled rows, for ``apply`` (prevalence) and for the next run (F1 rule, unlabelled rows counted
    fully); before, it took 2/3 of the study, then half of it."""
    rng = np.random.default_rng(8)
    e = np.eye(8)
    X = np.vstack([blob(rng, e[0], 40, 0.4), blob(rng, e[1], 40, 0.4), blob(rng, e[2], 40, 0.5),
                   blob(rng, e[3] + e[4] + e[5], 180, 1.0)])
    labels = {"staff": ThemeLabels(tuple(range(30)), (30,)), "wait": ThemeLabels(tuple(range(40, 70))),
              "own": ThemeLabels((80, 81))}
    for model in (CodeLearner(seed=0, threshold="prevalence", neighbours=10), CodeLearner(seed=0, unlabelled_count=1)):
        coded = model.fit(X, labels, judged=[80, 81, 30]).predict(X)
        taken = sum("own" in c for c in coded)
        assert 2 <= taken <= 300 * 2 / 63 + 3, taken  # ~ 2 of the 63 labelled rows, of 300
        assert sum("staff" in c for c in coded) >= 25


def test_a_themes_name_is_one_more_example_that_sets_its_members_apart():
    """``review.learner_names``: each theme's name, embedded as the segments are, is one more positive row
    after the study's (never judged, never scored). With one labelled example per theme, the name sets the
    theme's members apart from the rest more clearly (their mean probability above the others')."""
    from pipeline.config import load_config
    from pipeline.embed.encoder import Embedder
    from pipeline.learn.apply import train_learner

    staff, wait, park = STAFF, WAIT, PARK
    texts = staff + wait + park
    cfg = load_config()
    embed = Embedder.from_config({**cfg["embed"], "progress_min_texts": 10**9})
    X = embed.encode(texts)
    titles = {"staff": "Staff attitude", "wait": "Waiting times", "parking": "Car parking"}
    names = {k: (t, v) for (k, t), v in zip(titles.items(), embed.encode(list(titles.values())))}
    truth = np.array([[1, 0]] * 5 + [[0, 1]] * 5 + [[0, 0]] * 5)
    for a, b in [(2, 9), (1, 6), (3, 7)]:  # one example each, said not to be the other theme
        labels = {"staff": ThemeLabels((a,), (b,)), "wait": ThemeLabels((b,), (a,)), "parking": ThemeLabels(())}
        gaps = {}
        for on in (False, True):
            learner, proba, read = train_learner(X, texts, labels, {**cfg["review"], "learner_names": on},
                                                 judged=[a, b], names=names)
            assert learner.themes_ == ["staff", "wait"] and proba.shape == (15, 2) and len(read) == 15
            assert len(learner.study_) == 15 + 2 * on  # a name row for each theme with an example, parking none
            gaps[on] = [proba[truth[:, j] == 1, j].mean() - proba[truth[:, j] == 0, j].mean() for j in range(2)]
        assert all(g_on > g_off for g_on, g_off in zip(gaps[True], gaps[False])), (a, b, gaps)
