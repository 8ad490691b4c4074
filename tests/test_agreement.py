"""Tests for pipeline.compare.agreement: hand-computed figures and cross-checks against sklearn/krippendorff."""

from __future__ import annotations

import math
from itertools import combinations

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, cohen_kappa_score, normalized_mutual_info_score


from pipeline.compare.agreement import (
    Table2x2,
    binary_table,
    cluster_scores,
    cohen_kappa,
    compare_codings,
    expected_agreement,
    kappa_is_degenerate,
    krippendorff_alpha,
    map_selections,
    match_themes,
    percent_agreement,
    relabel,
    theme_quality,
    top_k_precision,
)

F = frozenset


# ------------------------------------------------------------------ hand-computed, one code


def _hand_pair():
    """10 units; code x: both on u0-u2, only A on u3, only B on u4, neither on u5-u9."""
    units = [f"u{i}" for i in range(10)]
    a = {"u0": F({"x"}), "u1": F({"x"}), "u2": F({"x", "y"}), "u3": F({"x"})}
    b = {"u0": F({"x"}), "u1": F({"x"}), "u2": F({"x"}), "u4": F({"x"})}
    return units, a, b


def test_binary_table_percent_agreement_and_kappa_by_hand():
    units, a, b = _hand_pair()
    table = binary_table(a, b, units, "x")
    assert table == Table2x2(both=3, only_a=1, only_b=1, neither=5)
    # po = (3 + 5) / 10 = 0.8
    assert percent_agreement(table) == pytest.approx(0.8)
    # pA(yes) = 4/10, pB(yes) = 4/10 -> pe = 0.4*0.4 + 0.6*0.6 = 0.16 + 0.36 = 0.52
    assert expected_agreement(table) == pytest.approx(0.52)
    # kappa = (0.8 - 0.52) / (1 - 0.52) = 0.28 / 0.48 = 0.583333...
    assert cohen_kappa(table) == pytest.approx(0.28 / 0.48)
    assert not kappa_is_degenerate(table)


def test_alpha_by_hand():
    units, a, b = _hand_pair()
    # Two coders, no missing data: N = 20 pairable values; n1 = 2*3 + 1 + 1 = 8 "yes",
    # n0 = 2*5 + 1 + 1 = 12 "no"; disagreeing units = 2.
    # alpha = 1 - (N - 1) * disagreements / (n1 * n0) = 1 - 19 * 2 / 96 = 58 / 96 = 0.604166...
    assert krippendorff_alpha([a, b], units, "x") == pytest.approx(58 / 96)


def test_kappa_when_expected_agreement_is_one():
    units = ["a", "b", "c"]
    nobody = binary_table({}, {}, units, "x")
    assert nobody == Table2x2(0, 0, 0, 3)
    assert kappa_is_degenerate(nobody)
    assert cohen_kappa(nobody) == 1.0
    everyone = {u: F({"x"}) for u in units}
    table = binary_table(everyone, everyone, units, "x")
    assert kappa_is_degenerate(table) and cohen_kappa(table) == 1.0
    # alpha has no variation either: 1.0 by the same convention, flagged in the report
    report = compare_codings({"A": everyone, "B": everyone}, units, codes=["x"], min_positive=1)
    row = report.get(("A", "B"), "x")
    assert row.alpha == 1.0 and row.alpha_undefined and row.kappa_undefined


def test_kappa_can_be_negative():
    # A codes u0,u1; B codes u2,u3: both=0, only_a=2, only_b=2, neither=0
    # po = 0; pA = pB = 0.5 -> pe = 0.5 -> kappa = (0 - 0.5) / 0.5 = -1
    a = {"u0": F({"x"}), "u1": F({"x"})}
    b = {"u2": F({"x"}), "u3": F({"x"})}
    assert cohen_kappa(binary_table(a, b, ["u0", "u1", "u2", "u3"], "x")) == pytest.approx(-1.0)


def test_compare_codings_hand_case_and_flags():
    units, a, b = _hand_pair()
    report = compare_codings({"A": a, "B": b}, units, min_positive=4)
    assert report.unit == "segment"
    assert report.codes == ("x", "y")
    x = report.get(("A", "B"), "x")
    assert x.table == Table2x2(3, 1, 1, 5)
    assert x.positives == (4, 4)
    assert x.kappa == pytest.approx(0.28 / 0.48)
    assert x.alpha == pytest.approx(58 / 96)
    assert not x.too_rare
    y = report.get(("A", "B"), "y")
    # y: only A on u2 -> table (0, 1, 0, 9); po = 0.9; pA = 0.1, pB = 0 -> pe = 0.9 -> kappa 0
    assert y.table == Table2x2(0, 1, 0, 9)
    assert y.kappa == pytest.approx(0.0)
    assert y.too_rare
    overall = report.summary(("A", "B"))
    assert overall.n_codes == 2 and overall.n_too_rare == 1
    assert overall.mean_kappa == pytest.approx((0.28 / 0.48 + 0.0) / 2)
    assert overall.mean_kappa_common == pytest.approx(0.28 / 0.48)
    # code sets equal on u0, u1 and u5..u9 (7 of 10); differ on u2 ({x,y} vs {x}), u3, u4
    assert overall.exact_set_agreement == pytest.approx(0.7)
    # only one pair and no all-coders group for two coders
    assert [o.coders for o in report.overall] == [("A", "B")]


def test_to_rows_share_keys():
    units, a, b = _hand_pair()
    c = dict(a)
    rows = compare_codings({"A": a, "B": b, "C": c}, units).to_rows()
    assert len({tuple(r) for r in rows}) == 1
    levels = [r["level"] for r in rows]
    assert levels.count("overall") == 4  # three pairs and all three coders
    assert levels.count("code") == 4 * 2
    group = [r for r in rows if r["level"] == "code" and r["coders"] == "A|B|C"]
    assert {r["code"] for r in group} == {"x", "y"}
    assert all(r["kappa"] is None and r["both"] is None for r in group)


# ------------------------------------------------------------------ seeded random cross-checks


def _random_codings(seed: int, n_units: int = 80, coders=("ann", "bob", "cy")):
    rng = np.random.default_rng(seed)
    codes = ["alpha", "beta", "gamma", "delta"]
    units = [f"s{i:03d}" for i in range(n_units)]
    truth = {u: {c for c in codes if rng.random() < 0.3} for u in units}
    codings = {}
    for coder in coders:
        coding = {}
        for u in units:
            got = {c for c in truth[u] if rng.random() < 0.85}
            got |= {c for c in codes if rng.random() < 0.07}
            if got:
                coding[u] = F(got)
        codings[coder] = coding
    return units, codes, codings


def _vector(coding, units, code):
    return [int(code in coding.get(u, F())) for u in units]


def test_random_pairs_match_sklearn_and_krippendorff():
    units, codes, codings = _random_codings(seed=7)
    report = compare_codings(codings, units, codes=codes)
    for p, q in combinations(codings, 2):
        kappas = []
        for code in codes:
            va, vb = _vector(codings[p], units, code), _vector(codings[q], units, code)
            row = report.get((p, q), code)
            expected_kappa = cohen_kappa_score(va, vb)
            assert row.kappa == pytest.approx(expected_kappa, abs=1e-12)
            kappas.append(expected_kappa)
            assert row.percent_agreement == pytest.approx(np.mean(np.equal(va, vb)))
            expected_alpha = krippendorff.alpha(
                reliability_data=np.array([va, vb], dtype=float), level_of_measurement="nominal"
            )
            assert row.alpha == pytest.approx(expected_alpha, abs=1e-12)
        assert report.summary((p, q)).mean_kappa == pytest.approx(np.mean(kappas))
        same = np.mean(
            [codings[p].get(u, F()) == codings[q].get(u, F()) for u in units]
        )
        assert report.summary((p, q)).exact_set_agreement == pytest.approx(same)
    # all three coders together
    for code in codes:
        data = np.array([_vector(codings[c], units, code) for c in codings], dtype=float)
        expected_alpha = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
        assert report.get(tuple(codings), code).alpha == pytest.approx(expected_alpha, abs=1e-12)
        all_agree = np.mean(np.all(data == data[0], axis=0))
        assert report.get(tuple(codings), code).percent_agreement == pytest.approx(all_agree)


def test_missing_data_alpha_matches_krippendorff_with_nan():
    units, codes, codings = _random_codings(seed=11, n_units=50)
    rng = np.random.default_rng(3)
    seen = {c: {u for u in units if rng.random() < 0.8} for c in codings}
    report = compare_codings(codings, units, codes=codes, seen=seen)
    group = tuple(codings)
    for code in codes:
        data = np.array(
            [
                [
                    (1.0 if code in codings[c].get(u, F()) else 0.0) if u in seen[c] else np.nan
                    for u in units
                ]
                for c in group
            ]
        )
        expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
        assert report.get(group, code).alpha == pytest.approx(expected, abs=1e-12)
        assert krippendorff_alpha(
            [codings[c] for c in group], units, code, seen=[seen[c] for c in group]
        ) == pytest.approx(expected, abs=1e-12)
    # pair tables only use the units both coders saw
    p, q = group[0], group[1]
    both_saw = [u for u in units if u in seen[p] and u in seen[q]]
    row = report.get((p, q), codes[0])
    assert row.n_units == len(both_saw) == row.table.n
    assert row.kappa == pytest.approx(
        cohen_kappa_score(_vector(codings[p], both_saw, codes[0]), _vector(codings[q], both_saw, codes[0]))
    )


# ------------------------------------------------------------------ theme matching


def _matching_case():
    """Codes C1 = u1..u10, C2 = u11..u20; themes T1 = u1..u8 + u11..u17, T2 = u9, u10, u18."""
    units = [f"u{i}" for i in range(1, 21)]
    human = {f"u{i}": F({"C1"}) for i in range(1, 11)} | {f"u{i}": F({"C2"}) for i in range(11, 21)}
    machine = {f"u{i}": F({"T1"}) for i in [*range(1, 9), *range(11, 18)]}
    machine |= {u: F({"T2"}) for u in ["u9", "u10", "u18"]}
    return units, machine, human


def test_hungarian_beats_greedy():
    units, machine, human = _matching_case()
    # F1(T1,C1) = 2*8/(15+10) = 0.64   F1(T1,C2) = 2*7/25 = 0.56
    # F1(T2,C1) = 2*2/(3+10)  = 0.3077 F1(T2,C2) = 2*1/13 = 0.1538
    # greedy takes the best pair first: T1-C1 + T2-C2 = 0.64 + 0.1538 = 0.7938
    # Hungarian maximises the total:      T1-C2 + T2-C1 = 0.56 + 0.3077 = 0.8677
    greedy = match_themes(machine, human, units, method="greedy")
    assert greedy.method == "greedy"
    assert greedy.mapping == {"T1": "C1", "T2": "C2"}
    best = match_themes(machine, human, units)
    assert best.method == "hungarian"
    assert best.mapping == {"T1": "C2", "T2": "C1"}
    assert sum(p.f1 for p in best.pairs) == pytest.approx(0.56 + 4 / 13)
    assert sum(p.f1 for p in best.pairs) > sum(p.f1 for p in greedy.pairs)
    assert {p.theme: p.overlap for p in best.pairs} == {"T1": 7, "T2": 2}


def test_unmatched_themes_and_codes_and_relabel():
    units = ["a", "b", "c", "d"]
    human = {"a": F({"C1"}), "b": F({"C1"}), "c": F({"C3"})}
    machine = {"a": F({"T1"}), "b": F({"T1"}), "d": F({"T9"}), "c": F({"T2"})}
    m = match_themes(machine, human, units, min_f1=0.9)
    # T1-C1 F1 = 1.0 kept; T2-C3 F1 = 1.0 kept; T9 overlaps nothing
    assert m.mapping == {"T1": "C1", "T2": "C3"}
    assert m.unmatched_themes == ("T9",)
    assert m.unmatched_codes == ()
    m2 = match_themes(machine, {"a": F({"C1"}), "d": F({"C4"}), "c": F({"C5"})}, units, min_f1=0.9)
    # T1 vs C1: 2*1/(2+1) = 0.667 < 0.9 -> left unmatched
    assert "T1" in m2.unmatched_themes and "C1" in m2.unmatched_codes
    relabelled = relabel(machine, m.mapping)
    assert relabelled == {"a": F({"C1"}), "b": F({"C1"}), "c": F({"C3"}), "d": F({"T9"})}
    report = compare_codings({"machine": relabelled, "human": human}, units, codes=["C1"])
    assert report.get(("machine", "human"), "C1").kappa == pytest.approx(1.0)


# ------------------------------------------------------------------ clustering figures


def test_ari_nmi_against_sklearn():
    units = [f"u{i}" for i in range(10)]
    partition = {
        "u0": "A", "u1": "A", "u2": "A", "u3": "B", "u4": "B",
        "u5": None, "u6": "B", "u7": None, "u8": "C",  # u9 absent = outlier
    }
    human = {
        "u0": F({"x"}), "u1": F({"x", "z"}), "u2": F({"y"}), "u3": F({"y"}), "u4": F({"z", "y"}),
        "u5": F({"x"}), "u6": F({"y"}), "u8": F({"z"}), "u9": F({"z"}),
    }  # u7 uncoded
    scores = cluster_scores(partition, human, units)
    # human labels: first code in sorted order; "none" for uncoded u7
    h = ["x", "x", "y", "y", "y", "x", "y", "none", "z", "z"]
    m = ["A", "A", "A", "B", "B", "out", "B", "out", "C", "out"]
    assert scores.ari_all == pytest.approx(adjusted_rand_score(h, m))
    assert scores.nmi_all == pytest.approx(normalized_mutual_info_score(h, m))
    keep = [i for i, lab in enumerate(m) if lab != "out"]
    assert scores.n_assigned == 7 and scores.coverage == pytest.approx(0.7)
    assert scores.ari_assigned == pytest.approx(
        adjusted_rand_score([h[i] for i in keep], [m[i] for i in keep])
    )
    assert scores.nmi_assigned == pytest.approx(
        normalized_mutual_info_score([h[i] for i in keep], [m[i] for i in keep])
    )
    assert scores.ari_all != pytest.approx(scores.ari_assigned)
    # recovery uses the full multi-label coding:
    # x = {u0,u1,u5}: A={u0,u1,u2} -> 2*2/6 = 0.667
    # y = {u2,u3,u4,u6}: B={u3,u4,u6} -> 2*3/7 = 0.857
    # z = {u1,u4,u8,u9}: A 2*1/7, B 2*1/7, C={u8} 2*1/5 = 0.4 -> best C
    rec = {r.code: (r.theme, r.f1) for r in scores.recovery}
    assert rec["x"] == ("A", pytest.approx(2 / 3))
    assert rec["y"] == ("B", pytest.approx(6 / 7))
    assert rec["z"] == ("C", pytest.approx(0.4))
    assert scores.mean_best_f1 == pytest.approx((2 / 3 + 6 / 7 + 0.4) / 3)
    assert scores.recovered_share == pytest.approx(2 / 3)


def test_top_k_precision_hand_case():
    units = [f"u{i}" for i in range(20)]
    human = {f"u{i}": F({"p"}) for i in range(0, 10)} | {f"u{i}": F({"q"}) for i in range(10, 14)}
    partition = {}
    # T_big: u0..u9 all "p" -> purity 1.0, F1 with p = 1.0      -> usable, strict
    partition |= {f"u{i}": "T_big" for i in range(0, 10)}
    # T_mix: u10..u12 "q", u14, u15 uncoded -> purity 3/5 = 0.6 (boundary), F1 with q = 6/9
    partition |= {f"u{i}": "T_mix" for i in [10, 11, 12, 14, 15]}
    # T_tiny: u13 "q" -> purity 1.0 but F1 with q = 2*1/(1+4) = 0.4 -> usable, not strict
    partition["u13"] = "T_tiny"
    # T_junk: u16..u19 uncoded -> purity 0 -> not usable
    partition |= {f"u{i}": "T_junk" for i in range(16, 20)}
    q = theme_quality(partition, human, units)
    assert q["T_mix"].purity == pytest.approx(0.6) and q["T_mix"].best_f1 == pytest.approx(6 / 9)
    assert q["T_tiny"].best_f1 == pytest.approx(0.4)
    ranking = ["T_junk", "T_tiny", "T_mix", "T_big"]
    top3 = top_k_precision(partition, human, units, k=3, ranking=ranking)
    assert top3.usable == ("T_tiny", "T_mix")
    assert top3.strict_usable == ("T_mix",)
    assert top3.precision == pytest.approx(2 / 3)
    assert top3.strict_precision == pytest.approx(1 / 3)
    # default ranking: by size (T_big 10, T_mix 5, T_junk 4, T_tiny 1)
    top2 = top_k_precision(partition, human, units, k=2)
    assert top2.usable == ("T_big", "T_mix") and top2.precision == 1.0
    # k beyond the number of themes divides by the themes there are
    assert top_k_precision(partition, human, units, k=10).n_considered == 4


# ------------------------------------------------------------------ selections -> segments


def test_map_selections_at_half_cover():
    segments = [
        ("s1", "doc", 0, 10),
        ("s2", "doc", 10, 17),  # 7 characters: needs 3.5 -> 4 covered
        ("s3", "other", 0, 10),
    ]
    selections = [
        ("doc", 0, 5, "x", "ann"),  # covers 5/10 of s1 = exactly 0.5 -> carries
        ("doc", 0, 4, "y", "bob"),  # 4/10 of s1, but wholly inside s1 -> carries (a sentence of it)
        ("doc", 13, 17, "x", "bob"),  # 4/7 of s2 -> carries
        ("doc", 14, 17, "y", "ann"),  # 3/7 of s2, wholly inside -> carries
        # bob's z on s1: [0,3) and [1,4) merge to [0,4): inside s1 -> carries
        ("doc", 0, 3, "z", "bob"),
        ("doc", 1, 4, "z", "bob"),
        ("doc", 0, 3, "z", "ann"),
        ("doc", 3, 5, "z", "ann"),
        # dan's w straddles: 2 of its 9 characters in s1 (2/10 of s1) -> not s1; all of s2 -> s2
        ("doc", 8, 17, "w", "dan"),
        # eve's v: [2, 16) has 8 of 14 characters in s1 (8/10 of s1) and 6/7 of s2 -> both
        ("doc", 2, 16, "v", "eve"),
        # fay's u: [6, 16) has 4/10 of s1 and 4 of its 10 characters there -> not s1; 6/7 of s2 -> s2
        ("doc", 6, 16, "u", "fay"),
        ("other", 5, 10, "y", "cy"),  # other source: only s3
    ]
    out = map_selections(selections, segments)
    assert out == {
        "ann": {"s1": F({"x", "z"}), "s2": F({"y"})},
        "bob": {"s1": F({"y", "z"}), "s2": F({"x"})},
        "dan": {"s2": F({"w"})},
        "eve": {"s1": F({"v"}), "s2": F({"v"})},
        "fay": {"s2": F({"u"})},
        "cy": {"s3": F({"y"})},
    }
    looser = map_selections(selections, segments, min_cover=0.4)
    assert looser["fay"] == {"s1": F({"u"}), "s2": F({"u"})}  # 4/10 of s1 now enough
    stricter = map_selections(selections, segments, min_cover=0.9)
    # eve: 8/10 of s1 and 8/14 of her selection; 6/7 of s2 and 6/14: neither reaches 0.9
    assert stricter["eve"] == {} and stricter["dan"] == {"s2": F({"w"})}


def test_empty_table_is_nan():
    assert math.isnan(percent_agreement(Table2x2(0, 0, 0, 0)))
    assert math.isnan(cohen_kappa(Table2x2(0, 0, 0, 0)))
