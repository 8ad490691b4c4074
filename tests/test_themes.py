import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.themes.assemble import SECOND_PASS_REASON, SPLIT_REASON, SecondPass, assemble, cluster_left_out, score_passes
from pipeline.themes.cluster import OUTLIER, ThemeClusterer
from pipeline.themes.describe import ThemeDescription
from pipeline.themes.join import JoinRule, join_outliers
from pipeline.themes.rank import score_themes
from test_rank import WEIGHTS

RULE = JoinRule(percentile=10, min_similarity=0.35, uncertain_margin=0.0)


def _corpus(seed: int = 0):
    """Two themes of 20 members around axes 0 and 1, then four outliers: near theme 0, near theme 1,
    on an axis of their own, and between the two themes but close to neither."""
    rng = np.random.default_rng(seed)
    members = [np.eye(8)[axis] + 0.25 * rng.normal(size=(20, 8)) for axis in (0, 1)]
    outliers = np.array([np.eye(8)[0] + 0.05 * rng.normal(size=8), np.eye(8)[1] + 0.05 * rng.normal(size=8),
                         np.eye(8)[5], np.eye(8)[0] + np.eye(8)[1] + 1.5 * np.eye(8)[6]])
    vectors = np.vstack([*members, outliers])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.array([0] * 20 + [1] * 20 + [-1] * 4)
    return vectors, labels


def _described(labels):
    """Descriptions of themes 0 and 1 (first member as the quote) and a case per row."""
    descriptions = [ThemeDescription(t, f"theme {t}", (), (), tuple(np.flatnonzero(labels == t).tolist()),
                                     (0.9,) * 20, (0.8,) * 20, (int(np.flatnonzero(labels == t)[0]),))
                    for t in (0, 1)]
    return descriptions, [f"P{i % 5}" for i in range(len(labels))]


def test_an_outlier_joins_the_theme_it_fits_as_well_as_the_members_do():
    vectors, labels = _corpus()
    joined = join_outliers(vectors, labels, range(len(labels)), [0, 1], RULE)
    assert sorted(joined) == [40, 41]
    assert joined[40][0] == 0 and joined[41][0] == 1
    centre = vectors[labels == 0].mean(axis=0)
    assert joined[40][1] == pytest.approx(vectors[40] @ centre / np.linalg.norm(centre), abs=1e-6)


def test_joining_is_limited_to_the_rows_and_themes_given_and_can_be_turned_off():
    vectors, labels = _corpus()
    assert join_outliers(vectors, labels, range(len(labels)), [0, 1], None) == {}
    assert sorted(join_outliers(vectors, labels, [41, 42, 43], [0, 1], RULE)) == [41]
    assert join_outliers(vectors, labels, range(len(labels)), [1], RULE) == {41: join_outliers(
        vectors, labels, range(len(labels)), [0, 1], RULE)[41]}
    assert join_outliers(vectors, labels, [0, 1, 2], [0, 1], RULE) == {}  # members are not outliers


def test_a_stricter_percentile_takes_fewer():
    vectors, labels = _corpus(1)
    loose = join_outliers(vectors, labels, range(len(labels)), [0, 1], JoinRule(0, 0.35, 0.0))
    strict = join_outliers(vectors, labels, range(len(labels)), [0, 1], JoinRule(100, 0.35, 0.0))
    assert set(strict) <= set(loose) and len(strict) < len(loose)


def test_the_default_configuration_joins_by_the_review_rule():
    cfg = load_config()
    assert JoinRule.from_config(cfg["cluster"]["join_outliers"]) == JoinRule(
        cfg["cluster"]["join_outliers"]["percentile"], cfg["review"]["min_similarity"], 0.0)
    assert JoinRule.from_config({**cfg["cluster"]["join_outliers"], "percentile": None}) is None


def test_assemble_marks_joined_members_and_keeps_them_out_of_the_queue():
    vectors, labels = _corpus()
    descriptions, cases = _described(labels)
    scores = score_themes(descriptions, vectors, labels, cases, {0: (1.0, 5), 1: (1.0, 5)}, WEIGHTS, 5)
    joined = join_outliers(vectors, labels, range(len(labels)), [0, 1], RULE)
    rows = [100 + i for i in range(len(labels))]  # segment-list indices differ from row numbers
    suggestions = assemble(rows, labels, vectors, descriptions, scores, 0.35, joined)
    theme = next(t for t in suggestions.themes if t.cluster == 0)
    assert theme.joined == (140,)
    assert theme.members[-1] == 140 and theme.strengths[-1] == 0.0
    assert theme.centrality[-1] == joined[40][1]
    assert theme.quotes == (100,)  # label, quotes and rank come from the clustered members
    assert len(theme.members) == len(theme.strengths) == len(theme.centrality) == 21
    assert [o.index for o in suggestions.outliers] == [142, 143]
    without = assemble(rows, labels, vectors, descriptions, scores, 0.35)
    assert [o.index for o in without.outliers] == [140, 141, 142, 143]
    assert [t.score for t in without.themes] == [t.score for t in suggestions.themes]


def _layout(seed: int = 0):
    """A 2-d layout (as UMAP gives): two big dense groups, a tight group of 8 and scattered points."""
    rng = np.random.default_rng(seed)
    big = [centre + 0.3 * rng.normal(size=(60, 2)) for centre in (np.array([0.0, 0.0]), np.array([10.0, 0.0]))]
    small = np.array([5.0, 30.0]) + 0.05 * rng.normal(size=(8, 2))
    scattered = np.column_stack([np.linspace(-40, 50, 12), np.full(12, -40.0)]) + rng.normal(size=(12, 2))
    return np.vstack([*big, small, scattered])


def test_left_out_segments_are_clustered_again_at_a_finer_grain():
    reduced = _layout()
    clusterer = ThemeClusterer(min_cluster_size=20, min_samples=5)
    clusterer.reduced_ = reduced
    clusterer.labels_, clusterer.probabilities_ = clusterer.cluster(reduced)
    small = np.arange(120, 128)
    assert set(clusterer.labels_[:120]) == {0, 1} and (clusterer.labels_[small] == OUTLIER).all()
    stability = {"n_resamples": 3, "sample_fraction": 0.8, "found_again_jaccard": 0.5}
    joined = {127: (0, 0.5)}  # a joined row is not clustered again
    labels, strengths, scores, new = cluster_left_out(
        clusterer, clusterer.labels_, clusterer.probabilities_, range(len(reduced)), joined,
        SecondPass(size_divisor=4, min_cluster_size=5), stability)
    assert min(new) == 2 and set(scores) == set(new)  # new labels above the first pass's
    assert len(set(labels[small[:-1]])) == 1 and labels[small[0]] in new and labels[127] == OUTLIER
    assert (labels[:120] == clusterer.labels_[:120]).all() and (strengths[small[:-1]] > 0).all()
    assert (clusterer.labels_[small] == OUTLIER).all()  # the first pass's labels are left as they were
    same = cluster_left_out(clusterer, clusterer.labels_, clusterer.probabilities_, range(len(reduced)), joined,
                            SecondPass(size_divisor=4, min_cluster_size=5), stability)
    assert (same[0] == labels).all() and same[2] == scores  # deterministic
    off = cluster_left_out(clusterer, clusterer.labels_, clusterer.probabilities_, range(len(reduced)), joined,
                           None, stability)
    assert (off[0] == clusterer.labels_).all() and off[3] == ()
    two_left = cluster_left_out(clusterer, clusterer.labels_, clusterer.probabilities_, [120, 121, 0], joined,
                                SecondPass(size_divisor=4, min_cluster_size=5), stability)
    assert two_left[3] == () and two_left[2] == {}  # too few left to cluster: nothing to resample either
    only_big = cluster_left_out(clusterer, clusterer.labels_, clusterer.probabilities_, range(120), joined,
                                SecondPass(size_divisor=4, min_cluster_size=5), stability)
    assert only_big[3] == ()  # rows not given take no part


def test_second_pass_size_and_configuration():
    assert SecondPass(2, 5).size(18) == 9 and SecondPass(2, 5).size(6) == 5
    cfg = load_config()["cluster"]["second_pass"]
    assert SecondPass.from_config(cfg) == SecondPass(cfg["size_divisor"], cfg["min_cluster_size"])
    assert SecondPass.from_config({**cfg, "size_divisor": None}) is None


def test_assemble_ranks_second_pass_themes_last_and_says_why():
    vectors, labels = _corpus()
    descriptions, cases = _described(labels)
    scores = score_themes(descriptions, vectors, labels, cases, {0: (1.0, 5), 1: (0.2, 1)}, WEIGHTS, 5)
    assert [s.theme for s in scores] == [0, 1]
    rows = range(len(labels))
    suggestions = assemble(rows, labels, vectors, descriptions, scores, 0.35, second_pass=[0])
    assert [(t.cluster, t.rank, t.second_pass) for t in suggestions.themes] == [(1, 1, False), (0, 2, True)]
    assert SECOND_PASS_REASON in suggestions.themes[1].reasons
    assert SECOND_PASS_REASON not in suggestions.themes[0].reasons


def test_a_second_pass_does_not_change_the_first_pass_scores():
    vectors, labels = _corpus()
    descriptions, cases = _described(labels)
    stability = {0: (1.0, 5), 1: (0.2, 1)}
    alone = score_passes(descriptions[:1], vectors, labels, cases, stability, WEIGHTS, 5)
    assert alone == score_themes(descriptions[:1], vectors, labels, cases, stability, WEIGHTS, 5)
    both = score_passes(descriptions, vectors, labels, cases, stability, WEIGHTS, 5, second_pass=[1])
    assert both[0] == alone[0] and both[0].nearest_theme is None  # as if theme 1 did not exist
    assert both[1].theme == 1 and both[1].nearest_theme == 0  # scored against the first pass too


def test_a_theme_split_from_a_broad_one_says_which():
    vectors, labels = _corpus()
    descriptions, cases = _described(labels)
    scores = score_themes(descriptions, vectors, labels, cases, {0: (1.0, 5), 1: (0.2, 1)}, WEIGHTS, 5)
    suggestions = assemble(range(len(labels)), labels, vectors, descriptions, scores, 0.35, split_from={1: 0})
    reasons = {t.cluster: t.reasons for t in suggestions.themes}
    parent = next(d.label for d in descriptions if d.theme == 0)
    assert SPLIT_REASON.format(parent) in reasons[1]
    assert not any(r.startswith("split from") for r in reasons[0])
