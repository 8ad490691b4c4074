"""The benchmark harness on small real data: labelled CSVs through Themesift's own stages, human codes
mapped onto segments, figures from pipeline.compare.agreement, JSON and Markdown written.

No timings are asserted (benchmarks measure them, tests do not); BERTopic is used for real when the
``bench`` extra is installed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bench import datasets, report
from bench.datasets import Corpus, CsvSpec, _locate, load_csv
from bench.harness import MethodRun, figures
from processes import prefect_home

ROOT = Path(__file__).resolve().parent.parent
BANKING = ROOT.parent / "shared" / "datasets" / "banking77" / "test.csv"


def _write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def test_labelled_csv_keeps_labels_cases_and_exclusions(tmp_path):
    data = _write(tmp_path / "answers.csv", [
        ["answer", "codes", "who"],
        ["The parking at the hospital was far too expensive for visitors.", "parking;cost", "r1"],
        ["Nothing.", "none", "r2"],
        ["Staff were kind and explained every step of the procedure to me.", "staff", "r3"],
        ["Too short", "staff", "r4"],  # a whole answer is a unit however short (answer_min_words)
        ["The waiting room was cold. Nobody told us how long the wait would be.", "waiting", "r1"],
    ])
    corpus = load_csv(CsvSpec(str(data), "answer", "codes", "who", ";", ("none",)), name="answers")
    assert corpus.texts == ["The parking at the hospital was far too expensive for visitors.",
                            "Staff were kind and explained every step of the procedure to me.",
                            "Too short",
                            "The waiting room was cold. Nobody told us how long the wait would be."]
    assert corpus.human == {0: frozenset({"parking", "cost"}), 1: frozenset({"staff"}), 2: frozenset({"staff"}),
                            3: frozenset({"waiting"})}
    assert corpus.cases == ["r1", "r3", "r4", "r1"]
    with pytest.raises(SystemExit, match="column 'label' not found"):
        load_csv(CsvSpec(str(data), "answer", "label"))


def test_indicator_columns_give_several_codes_per_row(tmp_path):
    data = _write(tmp_path / "framework.csv", [
        ["comment", "Parking", "Staff manner", "Not assigned"],
        ["The parking at the hospital was far too expensive for visitors.", "1", "", ""],
        ["Kind staff, but we circled the car park for half an hour first.", "1", "1", "0"],
        ["Could not say anything useful about this visit at all.", "", "", "1"],
        ["Nothing coded on this row although it has plenty of words.", "", "0", ""],
    ])
    spec = CsvSpec(str(data), "comment", None, indicator_cols=("Parking", "Staff manner", "Not assigned"),
                   exclude_labels=("Not assigned",))
    corpus = load_csv(spec, name="framework")
    assert corpus.human == {0: frozenset({"Parking"}), 1: frozenset({"Parking", "Staff manner"})}
    with pytest.raises(SystemExit, match="column 'Sentiment' not found"):
        load_csv(CsvSpec(str(data), "comment", None, indicator_cols=("Sentiment",)))


def test_a_spreadsheets_export_is_read_as_suggest_reads_it(tmp_path, capsys):
    """Excel's "CSV" on a European Windows machine: Windows-1252, semicolons, indicator cells written as
    0.0 / FALSE / no (not set) or 1.0 / TRUE / x (set); a label column joined by ';' without
    ``--multi-label-sep`` is warned about, not silently read as one code."""
    lines = ["comment;Parking;Staff manner",
             "Le café was cold and the parking far too dear;1.0;0.0",
             "Kind staff, but we circled the car park for half an hour;TRUE;x",
             "Nothing to say about this visit at all, it was fine;FALSE;no"]
    data = tmp_path / "excel.csv"
    data.write_bytes("\r\n".join(lines).encode("cp1252"))
    corpus = load_csv(CsvSpec(str(data), "comment", None, indicator_cols=("Parking", "Staff manner")))
    assert corpus.human == {0: frozenset({"Parking"}), 1: frozenset({"Parking", "Staff manner"})}
    assert corpus.texts[0].startswith("Le café")
    assert "read as Windows-1252" in capsys.readouterr().err
    joined = _write(tmp_path / "joined.csv", [["answer", "codes"], ["The car park was full again today", "Parking;Staff"],
                                               ["The nurse was lovely to my mother", "Staff"]])
    datasets.read_labels(CsvSpec(str(joined), "answer", "codes"))
    assert "1 of 2 labels hold ';'" in capsys.readouterr().err


def test_held_out_framework_preset_reads_its_code_columns():
    spec = datasets.PRESETS["nhs-fft-v6"]
    if not Path(spec.path).is_file():
        pytest.skip("shared datasets missing")
    rows, columns = datasets.read_labels(spec)
    assert set(spec.indicator_cols) <= set(columns)
    assert len(rows) > 5000 and any(len(r["_labels"]) > 1 for r in rows)
    assert not any({"Not assigned", "Labelling not possible"} & set(r["_labels"]) for r in rows)
    assert "nhs-fft-v6" not in datasets.TUNED_ON


def test_presets_exclude_the_non_answer_label():
    spec = datasets.PRESETS["nhs-fft-label"]
    if not Path(spec.path).is_file():
        pytest.skip("shared datasets missing")
    rows, _ = datasets.read_labels(spec)
    assert rows and not any("Couldn't be improved" in r["_labels"] for r in rows)
    sub, _ = datasets.read_labels(datasets.PRESETS["nhs-fft-subcategory"])
    assert len(sub) == len(rows)  # same rows, finer labels


def test_excerpts_are_located_despite_different_line_breaks():
    text = "P01: We waited\nfor  weeks. Then it was fine.\n\nP02: Other words."
    assert _locate(text, "We waited for weeks.") == (5, 26) and text[5:26] == "We waited\nfor  weeks."
    assert _locate(text, "Other words.") == (text.index("Other"), len(text))
    assert _locate(text, "never said") is None


def test_example_study_codes_reach_most_segments():
    corpus = datasets.load_preset("example-study")
    assert len(corpus.segments) > 200
    assert len(corpus.codes) == 11
    assert len(corpus.human) / len(corpus.segments) > 0.8
    assert "0 not found" in corpus.notes[0]


def test_figures_of_a_perfect_and_of_a_useless_partition():
    segs = [None] * 6  # figures only look at units and codes
    corpus = Corpus("toy", segs, {i: frozenset({"a" if i < 3 else "b"}) for i in range(6)}, "toy")
    perfect = MethodRun("m", {i: ("T1" if i < 3 else "T2") for i in range(6)}, ["T1", "T2"], {"T1": "a", "T2": "b"}, 0.0)
    f = figures(perfect, corpus)
    assert f["ari_all"] == pytest.approx(1.0) and f["mean_best_f1"] == 1.0 and f["recovered_share"] == 1.0
    assert f["top5_precision"] == 1.0 and f["top10_strict_precision"] == 1.0 and f["outlier_share"] == 0.0
    # Boundary: a theme whose units are 60% one code is usable (3 of 5 'a'), with F1 0.75 for 'a'.
    lumped = MethodRun("m", {i: ("T1" if i < 5 else None) for i in range(6)}, ["T1"], {"T1": "x"}, 0.0)
    g = figures(lumped, corpus)
    assert g["n_themes"] == 1 and g["outlier_share"] == pytest.approx(1 / 6)
    assert g["top10_precision"] == 1.0 and g["mean_best_f1"] == pytest.approx((0.75 + 0.5) / 2)
    # Every theme half 'a', half 'b': nothing a coder could confirm.
    mixed = MethodRun("m", {i: f"T{i % 3 + 1}" for i in range(6)}, ["T1", "T2", "T3"],
                      {"T1": "1", "T2": "2", "T3": "3"}, 0.0)
    h = figures(mixed, corpus)
    assert h["top5_precision"] == 0.0 and h["recovered_share"] == 0.0 and h["mean_best_f1"] == pytest.approx(0.4)

def test_quality_command_on_real_banking_queries(tmp_path, monkeypatch):
    if not BANKING.is_file():
        pytest.skip("shared datasets missing")
    pytest.importorskip("bertopic", reason="install the bench extra: pip install -e '.[bench]'")
    monkeypatch.setenv("THEMESIFT_BENCH_CACHE", str(tmp_path / "cache"))
    with BANKING.open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f)]
    keep = [r for r in rows if r["category"] in {"card_arrival", "exchange_rate", "lost_or_stolen_card",
                                                 "top_up_failed", "pin_blocked"}]
    data = _write(tmp_path / "bank.csv", [["text", "category"]] + [[r["text"], r["category"]] for r in keep])
    from bench.__main__ import main

    out, doc = tmp_path / "results", tmp_path / "benchmarks.md"
    argv = ["quality", "--data", str(data), "--text-col", "text", "--label-col", "category", "--name", "bank5",
            "--out", str(out), "--doc", str(doc), "--seeds", "42", "7"]
    assert main(argv) == 0
    result = json.loads((out / "quality-bank5.json").read_text())  # vectors of the default backend, ONNX fp32
    assert result["command"].startswith("python -m bench quality --data")
    assert result["machine"]["nproc"] >= 1 and result["versions"]["bertopic"] != "not installed"
    assert isinstance(result["machine"]["cpu_flags"], list)  # int8 and speed figures depend on them
    assert result["n_codes"] == 5 and 0.9 * len(keep) <= result["n_units"] <= 1.1 * len(keep)  # segments, not rows
    for method in ("themesift", "bertopic"):
        m = result["methods"][method]
        assert 0 <= m["mean_best_f1"] <= 1 and 0 <= m["outlier_share"] <= 1 and m["n_themes"] >= 1
        assert len(m["per_code"]) == 5
        assert len(m["per_seed"]["mean_best_f1"]) == 2 and m["mean_best_f1"] == pytest.approx(
            sum(m["per_seed"]["mean_best_f1"]) / 2)
    # Five well separated intents: Themesift's best themes match them.
    assert result["methods"]["themesift"]["mean_best_f1"] > 0.5
    text = doc.read_text()
    assert "### bank5\n" in text and "mean best-match F1 per human code" in text
    assert result["command"] in text
    assert "| bank5 (held out) |" in text  # the defaults were not chosen on it
    assert report.render(out) == text


def test_small_command_draws_from_any_labelled_csv(tmp_path, monkeypatch):
    """``bench small --data``: the small-study table on a user's own coded corpus, a size above its segment
    count left out with a line."""
    if not BANKING.is_file():
        pytest.skip("shared datasets missing")
    pytest.importorskip("bertopic", reason="install the bench extra: pip install -e '.[bench]'")
    monkeypatch.setenv("THEMESIFT_BENCH_CACHE", str(tmp_path / "cache"))
    with BANKING.open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["category"] in {"card_arrival", "exchange_rate", "pin_blocked"}]
    data = _write(tmp_path / "bank3.csv", [["text", "category"]] + [[r["text"], r["category"]] for r in rows])
    from bench.__main__ import main

    out, doc = tmp_path / "results", tmp_path / "benchmarks.md"
    argv = ["small", "--data", str(data), "--text-col", "text", "--label-col", "category", "--sizes", "60", "100000",
            "--draws", "1", "--out", str(out), "--doc", str(doc)]
    assert main(argv) == 0
    result = json.loads((out / "small-bank3-1draws.json").read_text())
    assert result["data"] == ["bank3"] and [r["size"] for r in result["rows"]] == [60]
    row = result["rows"][0]
    assert row["n_units"] == 60 and row["themesift"]["n_themes"] >= 1
    assert 0 <= row["themesift"]["matched_share"] <= 1 and 0 <= row["bertopic"]["mean_best_f1"] <= 1
    assert row["codes_counted"] == 3  # the codes with enough segments that the matched share counts
    assert "## Small studies: random subsets (issue 24) of bank3" in doc.read_text()
    assert "| codes counted |" in doc.read_text()


def test_scripted_coder_scores_and_writes_importable_decisions():
    from bench.coder import CODER, _csv, agreement_on
    from pipeline.exchange.decision_log import read_decision_csv

    human = {1: frozenset({"a"}), 2: frozenset({"a"}), 3: frozenset({"b"}), 4: frozenset()}
    perfect = agreement_on({1: frozenset({"a"}), 2: frozenset({"a"}), 3: frozenset({"b"})}, human, [1, 2, 3, 4])
    assert perfect["mean_kappa"] == 1.0 and perfect["macro_f1"] == 1.0 and perfect["n_codes"] == 2
    nothing = agreement_on({}, human, [1, 2, 3, 4])
    assert nothing["macro_f1"] == 0.0 and nothing["mean_kappa"] == 0.0
    text = _csv([{"action": "confirm", "theme_key": "t1", "name": "a", "definition": "d"},
                 {"action": "move", "theme_key": "t1", "segment_ids": "3", "to": ""},
                 {"action": "reject", "theme_key": "t2", "reason": "mixed"}])
    items = read_decision_csv(text)  # the parser `themesift decisions import` uses
    assert [(c, i["action"]) for c, i in items] == [(CODER, "confirm"), (CODER, "move"), (CODER, "reject")]
    assert items[1][1]["segment_ids"] == "3" and "to" not in items[1][1]


def test_verdicts_give_the_seed_by_seed_difference_and_its_standard_error():
    methods = {"themesift": {"k": 0.6, "per_seed": {"k": [0.5, 0.7]}},
               "bertopic": {"k": 0.4, "per_seed": {"k": [0.4, 0.4]}}}
    assert report._paired(methods, "k") == " (+0.200 ± 0.100)"  # differences 0.1 and 0.3
    assert report._paired({"themesift": {"per_seed": {"k": [0.5]}}, "bertopic": {"per_seed": {"k": [0.4]}}}, "k") == ""


def test_results_carry_the_run_manifests_code_version_quoted_short():
    """Benchmarks and run manifests name the code the same way; the report quotes 7 digits."""
    from bench import report
    from bench.machine import describe_run
    from flows.manifest import code_version

    assert describe_run(["quality"])["code"] == code_version()
    assert report._short("5c5f519aa27203e11fdf1f945a11bd8371d72dea+dirty") == "5c5f519 (uncommitted changes)"
    assert report._short("a497bf2") == "a497bf2" and report._short(None) == "unknown"


def test_speed_results_are_reported_under_their_cpu_and_the_current_targets():
    """A flow-speed result made before the targets changed is read against today's; each result is headed by
    the CPU it ran on, named by its widest integer flag."""
    from bench import report

    assert report._target("warm / cold (target <= 0.15)") == "warm / cold (target <= 0.1)"
    assert report._target("Themesift cold / BERTopic embedding+fit") == \
        "Themesift cold / BERTopic embedding+fit (target <= 0.5)"
    avx2 = {"machine": {"cpu": "AMD EPYC", "cpu_flags": ["avx2", "fma"]}, "description": "d", "runs": {}}
    assert report._cpu_of(avx2) == "AMD EPYC (avx2)"
    assert report._cpu_of({"machine": {"cpu": "Intel(R) Xeon(R) Processor"}}) == "Intel(R) Xeon(R) Processor"
    assert report.flow_section(avx2)[0].endswith("end to end, on AMD EPYC (avx2)")


def three_banking_codes(tmp_path: Path) -> Path:
    """Banking77's test rows of three codes, as a labelled CSV in ``tmp_path`` (skips without the datasets)."""
    if not BANKING.is_file():
        pytest.skip("shared datasets missing")
    with BANKING.open(encoding="utf-8", newline="") as f:
        keep = [r for r in csv.DictReader(f) if r["category"] in {"card_arrival", "exchange_rate", "pin_blocked"}]
    return _write(tmp_path / "bank.csv", [["text", "category"]] + [[r["text"], r["category"]] for r in keep])


def test_a_corpus_too_small_for_what_was_asked_is_refused_and_nothing_is_written(tmp_path, capsys):
    """Budgets or subset sizes above what a small corpus holds: a message that says what fits, exit not 0,
    and no empty result left to break the next report."""
    data = three_banking_codes(tmp_path)
    from bench.__main__ import main

    out, doc = tmp_path / "results", tmp_path / "benchmarks.md"
    where = ["--data", str(data), "--text-col", "text", "--label-col", "category", "--out", str(out), "--doc", str(doc)]
    with pytest.raises(SystemExit, match=r"every budget \(400, 800\) is over half its 120 segments.*--budgets of 60"):
        main(["review", *where, "--budgets", "400", "800", "--seeds", "42"])
    assert main(["small", *where, "--sizes", "500", "--draws", "1"]) == 2
    assert "no row" in capsys.readouterr().err
    assert main(["quality", *where[:4], "--label-col", "category", "--indicator-col", "text"]) == 2
    assert "not both" in capsys.readouterr().err
    assert not out.exists() and not doc.exists()


def test_names_command_scores_names_against_the_human_code_names(tmp_path, monkeypatch):
    data = three_banking_codes(tmp_path)
    monkeypatch.setenv("THEMESIFT_BENCH_CACHE", str(tmp_path / "cache"))
    from bench.__main__ import main
    from bench.names import nearest_rank, readable

    out, doc = tmp_path / "results", tmp_path / "benchmarks.md"
    assert main(["names", "--data", str(data), "--text-col", "text", "--label-col", "category", "--name", "bank3",
                 "--out", str(out), "--doc", str(doc), "--seeds", "42", "--no-peer"]) == 0
    result = json.loads((out / "names-bank3.json").read_text())
    ours = result["methods"]["name"]
    assert ours["n_usable"] >= 1 and 0 <= ours["hit1"] <= ours["hit3"] <= 1
    assert result["table"] and all(t["name"] and t["description"] for t in result["table"])
    assert "## Theme names against the human codes: bank3" in doc.read_text()
    assert readable("3_card_arrival_my_new") == "card arrival my new"
    import numpy as np
    assert nearest_rank(np.array([1.0, 0.0]), np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]]), 1) == 0
    assert nearest_rank(np.array([1.0, 0.0]), np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]]), 0) == 2


def test_small_study_draws_and_the_matched_share():
    """A draw of whole participants keeps all their segments; matched counts only codes with >= 3 segments."""
    from types import SimpleNamespace

    from bench.small import draw, matched_share

    segs = [SimpleNamespace(case=f"P{i % 4}", text=str(i)) for i in range(12)]
    human = {i: frozenset({"a"}) if i < 6 else frozenset({"b"}) for i in range(10)} | {10: frozenset({"c"})}
    corpus = Corpus("toy", segs, human, "toy")
    two = draw(corpus, 2, 0, by_case=True)
    assert len(two.segments) == 6 and len({s.case for s in two.segments}) == 2
    assert len(draw(corpus, 5, 0, by_case=False).segments) == 5
    run = MethodRun("m", {i: ("T1" if i < 6 else None) for i in range(12)}, ["T1"], {"T1": "x"}, 0.0)
    assert matched_share(figures(run, corpus), corpus) == 0.5  # 'a' matched, 'b' not, 'c' too rare to count
    from bench.small import f1_target_met, ratio

    nothing = {"f1_ratio": None, "themesift": {"mean_best_f1": 0.3}}  # BERTopic found no theme in any draw
    assert ratio(nothing) == "no BERTopic theme" and f1_target_met(nothing)
    assert not f1_target_met({"f1_ratio": 1.1, "themesift": {"mean_best_f1": 0.3}})


def test_small_study_references_any_cluster_and_supervised():
    """The two references beside the matched share: a code that is a region of the vectors is matched by
    some node of the tree and learnt from its labels; a code of one segment from each region is neither."""
    from types import SimpleNamespace

    from bench.small import any_cluster_share, supervised_share
    from pipeline.config import load_config

    rng = np.random.default_rng(0)
    centres = np.eye(3) * 4
    vectors = np.vstack([c + rng.normal(scale=0.3, size=(8, 3)) for c in centres])
    segs = [SimpleNamespace(case=None, text=f"segment {i}") for i in range(24)]
    human = {i: frozenset({"a"}) for i in range(8)} | {i: frozenset({"b"}) for i in range(8, 16)}
    for i in (1, 9, 17):  # "z": one segment of each region, nothing the vectors hold together
        human[i] = human.get(i, frozenset()) | {"z"}
    corpus = Corpus("toy", segs, human, "toy")
    assert any_cluster_share(vectors, corpus) == pytest.approx(2 / 3)  # a and b matched, z not
    assert supervised_share(vectors, corpus, load_config(None, None)["review"]) == pytest.approx(2 / 3)


def test_qualcoder_check_reads_what_a_qdpx_holds_and_refuses_a_folder_without_qualcoder(tmp_path, capsys):
    """The optional QualCoder check (``python -m bench qualcoder``; QualCoder itself is not installed here):
    its reading of the file it compares QualCoder's database with, and its one-line refusal."""
    from bench.__main__ import main
    from bench.qualcoder_check import compare, read_export
    from pipeline.exchange.refi_qda import QdaCode, QdaCoding, QdaProject, QdaSource, QdaUser, write_qdpx

    leaf = QdaCode("00000000-0000-0000-0000-000000000002", "leaf", "a code", "#3D6CB3")
    folder = QdaCode("00000000-0000-0000-0000-000000000001", "Folder", "", "#7F7F7F", (leaf,), codable=False)
    project = QdaProject("p", users=(QdaUser("00000000-0000-0000-0000-000000000003", "amira"),), codes=(folder,),
                         sources=(QdaSource("00000000-0000-0000-0000-000000000004", "P01.txt", "Hello there world"),),
                         codings=(QdaCoding("00000000-0000-0000-0000-000000000004", 6, 11, leaf.guid,
                                            "00000000-0000-0000-0000-000000000003"),),
                         cases={"P01": ("00000000-0000-0000-0000-000000000004",)})
    path = tmp_path / "p.qdpx"
    write_qdpx(project, path)
    held = read_export(path)
    assert held["users"] == ["amira"] and held["cases"] == {"P01": ["P01.txt"]}
    assert held["codings"] == [("P01.txt", 6, 11, "leaf", "amira")]
    assert [(c["name"], c["parent"], c["codable"], c["color"]) for c in held["codes"]] == [
        ("Folder", None, False, "#7F7F7F"), ("leaf", "Folder", True, "#3D6CB3")]
    # a database that lost the coding and recoloured the code: both counted, with what was lost
    qc = {"sources": held["sources"], "coders": ["amira"], "cases": {"P01": []}, "codings": [], "seltext_wrong": 0,
          "codes": [{**c, "color": "#000000" if c["codable"] else None} for c in held["codes"]]}
    rows = compare(held, qc, "amira")["rows"]
    assert rows["codings (source, span, code, user)"]["lost"] == [["P01.txt", 6, 11, "leaf", "amira"]]
    assert rows["code colours"]["lost"] == ["leaf: #3D6CB3 -> #000000"]
    assert rows["codes (name, parent, description)"]["n_lost"] == 0
    capsys.readouterr()
    assert main(["qualcoder", "--qualcoder-src", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("themesift: --qualcoder-src")


def test_repeat_command_runs_the_cli_cold_and_on_a_part_warm_cache_and_compares_the_themes(tmp_path):
    """``python -m bench repeat`` on a few dozen Banking77 queries: two real ``themesift suggest`` processes,
    the second on a store primed with the first rows' vectors by the embedding step; the default ONNX
    vectors are batch-independent, so both runs give the same themes (issue 18, item 10)."""
    if not BANKING.is_file():
        pytest.skip("shared datasets missing")
    from bench.__main__ import main

    with BANKING.open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["category"] in {"card_arrival", "exchange_rate", "pin_blocked"}]
    data = _write(tmp_path / "queries.csv", [["text"]] + [[r["text"]] for r in rows[:45]])
    out, doc = tmp_path / "results", tmp_path / "benchmarks.md"
    for run in ("cold", "warm"):  # Prefect homes as on a user's second run: their API databases migrated
        prefect_home(tmp_path / "work" / run / "prefect")
    assert main(["repeat", "--data", str(data), "--text-col", "text", "--warm", "15", "--prime", "embed",
                 "--out", str(out), "--doc", str(doc), "--keep", str(tmp_path / "work")]) == 0
    result = json.loads((out / "repeat-queries.json").read_text())
    c, runs = result["comparison"], result["runs"]
    assert result["warm_rows"] == 15 and 0 < result["primed_vectors"] < runs["cold"]["embedding"]["newly_embedded"]
    assert runs["warm"]["embedding"]["newly_embedded"] == runs["cold"]["embedding"]["newly_embedded"] - result["primed_vectors"]
    assert c["n_themes"]["cold"] == c["n_themes"]["warm"] >= 1 and c["segments"] >= 40
    assert c["membership_identical"] and c["themes_identical"] and c["adjusted_rand_index"] == 1.0
    assert c["vectors_compared"] >= 40 and c["vectors_differing"] == 0
    assert (tmp_path / "work" / "cold.log").read_text().count("Results stored as run") == 1  # the real command ran
    text = doc.read_text()
    assert "## Same input, same themes: queries.csv" in text and result["command"] in text


def test_repeat_comparison_names_a_moved_segment_and_a_changed_vector():
    """Two runs that differ in one segment's theme and one text's vector: membership differs, by one segment."""
    import numpy as np

    from bench.repeat import compare_runs

    a, b, c, d = ("s", 0, 1), ("s", 1, 2), ("s", 2, 3), ("s", 3, 4)
    cold = {"themes": [(1, "x", False, frozenset({a, b})), (2, "y", False, frozenset({c}))], "outliers": frozenset({d})}
    warm = {"themes": [(1, "x", False, frozenset({a})), (2, "y", False, frozenset({b, c}))], "outliers": frozenset({d})}
    one, other = np.zeros(4, np.float32).tobytes(), np.full(4, 1e-7, np.float32).tobytes()
    figures = compare_runs(cold, warm, {"h1": one, "h2": one}, {"h1": one, "h2": other, "h3": one})
    assert figures["n_themes"] == {"cold": 2, "warm": 2} and not figures["membership_identical"]
    assert figures["segments_with_same_group"] == 1  # only d (the queue) keeps the same companions
    assert figures["vectors_compared"] == 2 and figures["vectors_differing"] == 1
    assert figures["vectors_max_abs_difference"] == pytest.approx(1e-7)
    assert compare_runs(cold, cold, {}, {})["themes_identical"]


def test_prototype_rows_take_each_codes_most_central_segment_in_turn_commonest_code_first():
    from bench.learning import prototype_rows

    X = np.array([[1.0, 0.0], [0.9, 0.1], [0.6, 0.4], [0.95, 0.05],  # code a: row 1 lies nearest its mean
                  [0.0, 1.0], [0.15, 0.99], [0.3, 0.95],            # code b: row 5 does
                  [0.7, 0.7]])                                       # no code
    human = {**{r: frozenset({"a"}) for r in range(4)}, **{r: frozenset({"b"}) for r in (4, 5, 6)}, 7: frozenset()}
    assert prototype_rows(X, human, 3) == [1, 5, 3]  # a first (4 members), b next, then a's second
    assert sorted(prototype_rows(X, human, 10)) == list(range(7))  # every coded row once; an uncoded one never


def test_plain_logistic_regression_gives_each_segment_its_likeliest_code_or_none():
    from bench.learning import plain_logistic_coding

    a, b = frozenset({"a"}), frozenset({"b"})
    X = np.array([[4.0, 0, 0], [3.5, 0.5, 0], [0, 4.0, 0], [0.5, 3.5, 0], [0, 0, 4.0], [0, 0.5, 3.5], [2.0, 2.0, 0]])
    codes = [a, a, b, b, frozenset(), frozenset(), a | b]  # the last trains once as a, once as b
    Z = np.array([[3.8, 0.2, 0], [0.1, 3.9, 0], [0, 0.2, 3.9]])
    assert plain_logistic_coding(X, codes, Z) == [a, b, frozenset()]
    assert plain_logistic_coding(X[:2], codes[:2], Z) == [a, a, a]  # one class alone: every row gets it


def test_a_code_whose_every_segment_was_touched_is_not_scored_as_perfect_agreement():
    from bench.coder import mean_kappa

    a, b = frozenset({"a"}), frozenset({"b"})
    human = {0: a, 1: a, 2: frozenset(), 3: frozenset(), 4: b}
    machine = {0: a, 1: frozenset(), 2: frozenset(), 3: a}
    # scored on 0-3: code b (row 4 touched) has no kappa there; a's table is 1 both, 1 human only, 1 machine only
    assert mean_kappa(machine, human, [0, 1, 2, 3]) == pytest.approx(0.0)
    better = {**machine, 3: frozenset()}
    assert mean_kappa(better, human, [0, 1, 2, 3]) == pytest.approx(0.5)
    assert mean_kappa(better, human, [0, 1, 2, 3, 4]) < 0.3  # b, never given, now counts 0 beside a's 0.55
    assert mean_kappa(machine, human, [2, 3]) == 0.0  # no code carried: nothing to score


def test_the_scripted_review_spends_a_decision_per_move_and_without_moves_labels_whole_themes():
    from types import SimpleNamespace

    from bench.learning import _review

    a, b = frozenset({"a"}), frozenset({"b"})
    human = {0: a, 1: a, 2: a, 3: b, 4: b, 5: b, 6: b, 7: a, 8: frozenset(), 9: b, 10: a}
    # t1: 4 of 5 carry a (one stray); t2: pure b; t3: mixed (rejected); t4: pure a, a second theme of a
    study = SimpleNamespace(ranking=["t1", "t2", "t3", "t4"], human=human,
                            members={"t1": [0, 1, 2, 3, 7], "t2": [4, 5, 6], "t3": [8, 9, 10], "t4": [7]})
    moved = _review(study, 3)
    assert moved["decisions"] == 3 and moved["confirmed"] == ["t1", "t2"]  # t1 cost 2: its confirm and a move
    assert moved["neg"]["a"] == [3] and moved["judged"] == {3}
    assert sorted(moved["pos"]["a"]) == [0, 1, 2, 7]
    quick = _review(study, 3, moves=0)
    assert quick["decisions"] == 3 and quick["confirmed"] == ["t1", "t2"] and quick["rejected"] == [8, 9, 10]
    assert sorted(quick["pos"]["a"]) == [0, 1, 2, 3, 7] and not quick["judged"]  # the stray stays, unjudged
    assert quick["neg"] == {"a": [8, 9, 10], "b": [8, 9, 10]}  # a rejected theme's members speak against both
    assert _review(study, 10, moves=0)["confirmed"] == ["t1", "t2", "t4"]  # a's second theme joins the first


def test_the_coder_who_follows_the_hint_reviews_until_the_suggestions_stop_giving_codes_then_answers_teach():
    from types import SimpleNamespace

    from bench.learning import _coder, _hinted
    from pipeline.config import load_config

    rng = np.random.default_rng(0)
    human = {r: frozenset({"a" if r % 3 == 0 else "b" if r % 3 == 1 else "c"}) for r in range(40)}
    members = {"t1": [0, 3, 6], "t2": [1, 4, 7], "t3": [2, 5, 9], "t4": [12, 15, 18], "t5": [10, 13, 16]}
    X = rng.normal(size=(40, 8)) + np.eye(3, 8)[[r % 3 for r in range(40)]] * 3
    study = SimpleNamespace(ranking=list(members), members=members, human=human, X=X, vectors=X, texts=None,
                            names=None, n=40)
    review = {**load_config(None, None)["review"], "teach_hint_window": 2, "teach_hint_share": 0.5}
    state = _coder()
    _hinted(study, state, 4, review, seed=0)
    # t1: a, t2: b (codes of their own); t3 mixed (2 of 3 carry c: 0.67 >= 0.6, so c is confirmed);
    # t4 falls under a, a code already confirmed
    assert state["own"] == [True, True, True, False] and state["decisions"] == 4 and not state["judged"]
    assert sorted(state["pos"]["a"]) == [0, 3, 6, 12, 15, 18] and not state.get("teaching")
    _hinted(study, state, 5, review, seed=0)  # t5 (b again): the last two gave no new code
    assert state["own"][-1] is False and state["decisions"] == 5
    _hinted(study, state, 7, review, seed=0)
    assert state["teaching"] and state["decisions"] == 7 and len(state["judged"]) == 2  # two Teach answers
    assert len(state["own"]) == 5  # no suggestion reviewed after the hint


def test_page_speed_reads_every_page_of_a_stored_study_and_decides_nothing(example_study):
    from bench.pages import PAGES, page_speed
    from review_helpers import n_decisions

    before = n_decisions(example_study.store)
    result = page_speed(example_study.store.url, example_study.name, rounds=1)
    assert [r["page"].split("?")[0] for r in result["rows"]] == [p.split("?")[0].replace("{first}", result["rows"][1]
                                                                 ["page"].rsplit("/", 1)[-1]) for p in PAGES]
    assert all(r["median_s"] > 0 and r["kib"] > 0 for r in result["rows"])
    assert result["segments"] > 200 and n_decisions(example_study.store) == before
