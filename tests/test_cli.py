"""The ``themesift`` command line: suggest, themes and export, as a researcher types them."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import yaml
from sqlalchemy import select

from conftest import TRANSCRIPTS, fft_comments
from flows.cli import main
from models.records import Source
from models.store import Store
from pipeline.config import load_config, settings
from pipeline.exchange.suggestions_export import CSV_COLUMNS


@pytest.fixture
def config_file(example_study, tmp_path):
    """A study YAML pointing the CLI at the example study's database."""
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"store": example_study.config["store"]}), encoding="utf-8")
    return path


def test_suggest_prints_ranked_themes_and_where_results_are(prefect_harness, tmp_path, capsys):
    folder = tmp_path / "some"
    folder.mkdir()
    for name in ("P01.txt", "P02.txt", "P03.docx", "P06.docx", "P07.vtt", "P10.vtt"):
        shutil.copy(TRANSCRIPTS / name, folder / name)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"workspace": str(tmp_path / "ws")}}), encoding="utf-8")
    assert main(["suggest", str(folder), "--study", "six", "--config", str(cfg), "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "rank  score  cover  cohes  disti  stabi   size  cases  segs  label" in out
    assert "   1   " in out and "/6 " in out  # coverage shown as cases of the six participants
    assert f"Results stored as run 1 in sqlite:///{tmp_path / 'ws' / 'themesift.db'}" in out
    assert f"Show again: themesift themes --study six --config {cfg}" in out  # the hints reach the same store
    (folder / "P06.docx").unlink()
    assert main(["suggest", str(folder), "--study", "six", "--config", str(cfg), "--top", "3", "--diff"]) == 0
    out = capsys.readouterr().out
    assert "files since run 1: 1 gone (P06.docx)" in out
    assert "Run 1 -> run 2: " in out
    assert " shrunk" in out or " gone" in out  # P06's segments left some themes (or all of one)
    assert main(["suggest", str(folder), "--study", "six", "--config", str(cfg), "--top", "3"]) == 0
    assert "nothing changed since run 2" in capsys.readouterr().out
    (folder / "P01.txt").rename(folder / "P01_final.txt")  # a rename alone is a change: the study takes the name
    assert main(["suggest", str(folder), "--study", "six", "--config", str(cfg), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "files since run 2: 1 renamed (P01.txt -> P01_final.txt)" in out and "settings since" not in out
    cfg.write_text(yaml.safe_dump({"store": {"workspace": str(tmp_path / "ws")},  # a setting changed is said too
                                   "rank": {"stability": {"n_resamples": 3}}}), encoding="utf-8")
    assert main(["suggest", str(folder), "--study", "six", "--config", str(cfg), "--top", "3"]) == 0
    assert "settings since run 3: rank.stability.n_resamples 5 -> 3" in capsys.readouterr().out
    with Store(f"sqlite:///{tmp_path / 'ws' / 'themesift.db'}").sessions() as session:
        names = set(session.scalars(select(Source.name).where(Source.retired_at.is_(None))))
    assert "P01_final.txt" in names and "P01.txt" not in names


def test_themes_shows_the_latest_run_again(config_file, example_study, capsys):
    assert main(["themes", "--study", "ipt", "--config", str(config_file), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count('"') >= 6  # one quote per theme shown
    assert out.count("\u201c") >= 3  # one description per theme shown
    from prefect.artifacts import Artifact

    from flows.suggest import artifact_key

    artifact = Artifact.get(artifact_key("ipt"))  # the flow's table on the Prefect run page
    assert artifact is not None and "description" in artifact.data
    assert "more (themesift themes --study ipt" in out


def test_export_csv_and_json_hold_every_member_and_the_outlier_queue(config_file, example_study, tmp_path):
    run_id = example_study.outcome["run_id"]
    csv_path, json_path = tmp_path / "s.csv", tmp_path / "s.json"
    assert main(["export", "suggestions", "--study", "ipt", "--config", str(config_file), "--format", "csv",
                 "--run", str(run_id), "-o", str(csv_path)]) == 0
    assert main(["export", "suggestions", "--study", "ipt", "--config", str(config_file), "--format", "json",
                 "--run", str(run_id), "-o", str(json_path)]) == 0
    data = json.loads(json_path.read_text(encoding="utf-8"))
    with csv_path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    n_members = sum(len(t["members"]) for t in data["themes"])
    assert len(rows) == n_members + len(data["outliers"]) > 0
    assert data["manifest"]["model"]["id"] and data["themes"][0]["rank"] == 1
    assert data["started_at"].endswith("+00:00") and data["finished_at"].endswith("+00:00")  # as PostgreSQL's
    outliers = [r for r in rows if r["label"] == "(outlier queue)"]
    assert len(outliers) == len(data["outliers"]) and all(r["rank"] == "" for r in outliers)
    first = data["themes"][0]
    assert set(first["parts"]) == {"coverage", "cohesion", "distinctiveness", "stability", "size"}
    from models.decisions import run_theme_keys  # the keys a decision CSV names themes by

    with Store.from_config(settings(load_config(config_file)).store).sessions() as session:
        keys = run_theme_keys(session, run_id)
    assert [t["theme_key"] for t in data["themes"]] == [keys[t["theme_id"]] for t in data["themes"]]
    assert {r["theme_key"] for r in rows if r["rank"] == "1"} == {first["theme_key"]}
    for m in first["members"]:
        assert m["end"] > m["start"] and m["source"] and m["segment_id"]
    assert {int(r["segment_id"]) for r in rows if r["rank"] == "1"} == {m["segment_id"] for m in first["members"]}
    # each theme's name and its description, a clause of one of its members, in both files
    texts = {m["segment_id"]: m["text"] for m in first["members"]}
    assert first["description"] and any(first["description"].split("\u201d")[0].lstrip("\u201c") in t
                                        for t in texts.values())
    assert {r["description"] for r in rows if r["rank"] == "1"} == {first["description"]} and " / " not in first["label"]


def test_unknown_study_and_bad_config_give_a_message_not_a_traceback(config_file, tmp_path, capsys):
    assert main(["themes", "--study", "nope", "--config", str(config_file)]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster:\n  sed: 1\n", encoding="utf-8")
    assert main(["themes", "--study", "ipt", "--config", str(bad)]) == 2
    assert "unknown setting 'cluster.sed'" in capsys.readouterr().err


def test_a_store_that_cannot_be_opened_is_one_line_and_its_password_is_never_shown(tmp_path, capsys, monkeypatch):
    """A team's PostgreSQL store with a wrong port (nothing listens on port 1): one line naming the store, exit
    2. The password is taken out of the URL for libpq (PGPASSWORD) before anything shows or keeps the
    configuration (Prefect's parameters, the terminal, a manifest); a ``postgres://`` URL is refused as a
    setting, in one line."""
    from flows.manifest import recorded_config
    from flows.options import load

    monkeypatch.delenv("PGPASSWORD", raising=False)
    bad = tmp_path / "pg.yaml"
    bad.write_text(yaml.safe_dump({"store": {"url": "postgresql+psycopg://team:s3cret@127.0.0.1:1/themesift"}}),
                   encoding="utf-8")
    assert main(["themes", "--study", "ipt", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("themesift: cannot open the store postgresql+psycopg://team@127.0.0.1:1/themesift: ")
    assert len(err.splitlines()) == 1 and "s3cret" not in err
    config = load(bad)
    assert config["store"]["url"] == "postgresql+psycopg://team@127.0.0.1:1/themesift"
    import os

    assert os.environ["PGPASSWORD"] == "s3cret"
    with pytest.raises(Exception, match=r"team:\*\*\*@127") as caught:  # a caller that gives the URL whole
        Store("postgresql+psycopg://team:s3cret@127.0.0.1:1/themesift")
    assert "s3cret" not in str(caught.value)
    kept = recorded_config({"store": {"url": "postgresql+psycopg://team:s3cret@db/themesift"}, "cluster": {}})
    assert kept["store"]["url"] == "postgresql+psycopg://team:***@db/themesift"
    heroku = tmp_path / "heroku.yaml"
    heroku.write_text("store:\n  url: postgres://team@db/themesift\n", encoding="utf-8")
    assert main(["themes", "--study", "ipt", "--config", str(heroku)]) == 2
    err = capsys.readouterr().err
    assert "store.url" in err and "postgresql+psycopg://" in err and len(err.splitlines()) == 1


def test_csv_columns_from_the_command_line(prefect_harness, tmp_path, capsys):
    """A real survey file with two open questions (``--text-col`` twice): every answer is clustered, and the
    row id, the attribute named on the command line and the column each answer came from reach every
    segment and the CSV export, so each row joins back to its cell of the spreadsheet."""
    _, rows = fft_comments(tmp_path, 400)
    pairs = [{"row_index": a["row_index"], "organization": a["organization"], "good": a["feedback"],
              "improve": b["feedback"]} for a, b in zip(rows[0::2], rows[1::2])]
    survey = tmp_path / "survey.csv"
    with survey.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(pairs[0]))
        writer.writeheader()
        writer.writerows(pairs)
    cfg = tmp_path / "cfg.yaml"
    # cached in chunks of 64 texts and embedded in tasks of 128 where tasks are spread: still one bar
    cfg.write_text(yaml.safe_dump({"store": {"workspace": str(tmp_path / "ws")},
                                   "embed": {"cache_chunk": 64, "task_texts": 128}}), encoding="utf-8")
    assert main(["suggest", str(survey), "--study", "fft", "--config", str(cfg), "--text-col", "good",
                 "--text-col", "improve", "--row-id-col", "row_index", "--attr-col", "organization"]) == 0
    printed = capsys.readouterr()
    # one progress bar for the whole step, the answers' own: naming's embedding is quiet
    assert printed.err.count("Embedding:   0%") == 1 and "Batches" not in printed.err
    assert "Embedding: 100%" in printed.err  # reached its end: every chunk counted on the one bar
    lines = [line.replace("\u201c", '"').replace("\u201d", '"').strip() for line in printed.out.splitlines()]
    described = [k for k, line in enumerate(lines) if line.startswith('"') and lines[k - 1][:4].strip().isdigit()]
    assert len(described) >= 3  # each theme's description under its row
    assert all(lines[k + 1] != lines[k] for k in described)  # a short answer quoted whole is shown once
    out_file = tmp_path / "fft.csv"
    assert main(["export", "suggestions", "--study", "fft", "--config", str(cfg), "--format", "csv",
                 "-o", str(out_file)]) == 0
    with out_file.open(encoding="utf-8") as handle:
        members = list(csv.DictReader(handle))
    by_row = {r["row_index"]: r for r in pairs}
    assert members and all(m["row_id"] in by_row for m in members)
    assert {m["text column"] for m in members} == {"good", "improve"}
    for m in members:
        row = by_row[m["row_id"]]
        assert m["organization"] == row["organization"]
        # answers are kept verbatim but for line ends, normalised to LF like every source
        assert m["text"] in row[m["text column"]].replace("\r\n", "\n")
    # the Framework matrix charted by a column of the survey instead of by respondent
    for by, values in (("organization", {r["organization"] for r in pairs}), ("text column", {"good", "improve"})):
        chart = tmp_path / f"by-{by}.csv"
        assert main(["matrix", "--study", "fft", "--config", str(cfg), "--coder", "machine", "--by", by,
                     "--format", "csv", "-o", str(chart)]) == 0
        with chart.open(encoding="utf-8") as handle:
            table = list(csv.reader(handle))
        assert table[0][:2] == [by, "segments"] and table[-2][0] == f"{by} values raising it"
        assert {row[0] for row in table[1:-2]} <= values
        in_themes = sum(1 for m in members if m["label"] != "(outlier queue)")
        assert sum(int(n) for n in table[-1][2:]) == in_themes  # every member of a theme charted once
    assert main(["matrix", "--study", "fft", "--config", str(cfg), "--by", "ward"]) == 2
    assert "has no column 'ward' to chart by (columns: organization, text column)" in capsys.readouterr().err
    # the same file with other columns: it is not read again, and the run says so instead of dropping a column
    capsys.readouterr()
    assert main(["suggest", str(survey), "--study", "fft", "--config", str(cfg), "--text-col", "good",
                 "--row-id-col", "row_index", "--attr-col", "organization"]) == 0
    said = capsys.readouterr()
    assert "ingest.csv.text_column changed since run 1: the 1 file(s) read before keep how they were read" in (
        said.out + said.err)


def test_bench_is_a_subcommand_with_its_own_options(capsys):
    """``themesift bench ...`` is ``python -m bench ...``: its options and help, not the CLI's."""
    with pytest.raises(SystemExit) as stop:
        main(["bench", "quality", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "--preset" in out and "--text-col" in out and "--label-col" in out
    assert main(["bench", "quality"]) == 2  # neither a preset nor a labelled CSV: a message, no traceback
    assert "give --preset NAME" in capsys.readouterr().err


def test_prefects_drain_notice_is_not_shown_other_warnings_are(caplog):
    """At the end of a command Prefect's events worker may log "Still processing items: N items remaining..."
    while it sends the run's last events; the commands drop that line (it read as a fault), nothing else."""
    import logging

    from flows.runtime import quiet_event_drain

    quiet_event_drain()
    quiet_event_drain()  # once per process, however often it is called
    logger = logging.getLogger("EventsWorker")
    assert len(logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger="EventsWorker"):
        logger.warning("Still processing items: 3 items remaining...")
        logger.warning("Service 'EventsWorker' failed to process item")
    assert [r.getMessage() for r in caplog.records] == ["Service 'EventsWorker' failed to process item"]


def test_the_commands_load_no_model_and_no_clustering_stage_until_a_command_needs_one():
    """Every ``themesift`` command imports the parser of all of them; reading a store (themes, export, the
    review page) must not pay for scikit-learn, UMAP, HDBSCAN, the embedding model's runtimes or Prefect
    (together about 7 s a command on 2 cores). A fresh interpreter, so nothing is loaded yet."""
    import subprocess
    import sys

    heavy = ("sklearn", "umap", "hdbscan", "torch", "onnxruntime", "sentence_transformers", "prefect")
    probe = ("import sys, flows.commands, models.review; flows.commands.build_parser(); "
             f"print(' '.join(m for m in {heavy!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == []


def test_changes_refuses_a_run_the_study_does_not_have(study, example_study, capsys):
    """``changes --old/--new`` with a run id that does not exist or is another study's run: one line and
    exit 2, as ``themes --run`` answers, not a comparison with nothing or with the other study's themes."""
    from datetime import datetime, timezone

    config = str(study.config_file())
    ipt_run = example_study.outcome["run_id"]  # the private copy holds the same runs
    other_run = study.store.record_failed_run("other", {}, "nothing read", [], datetime.now(timezone.utc))
    for name, option, run_id in (("ipt", "--old", 99999), ("ipt", "--new", other_run), ("other", "--old", ipt_run)):
        assert main(["changes", "--study", name, "--config", config, option, str(run_id)]) == 2
        said = capsys.readouterr()
        assert said.err == f"themesift: study '{name}' has no run {run_id}\n" and said.out == ""
    assert main(["changes", "--study", "ipt", "--config", config, "--new", str(ipt_run)]) == 0


def test_suggest_refuses_a_missing_path_or_a_blank_study_before_storing_anything(prefect_harness, tmp_path,
                                                                                capsys):
    """A mistyped path (every path given missing) or an empty ``--study`` is refused naming it (exit 2)
    before the study or a failed run is stored; the study names of the other commands are held to the same
    rule. A missing path beside readable ones is skipped with its reason, as any unreadable file is."""
    from models.store import Store

    folder = tmp_path / "some"
    folder.mkdir()
    shutil.copy(TRANSCRIPTS / "P01.txt", folder / "P01.txt")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"workspace": str(tmp_path / "ws")}}), encoding="utf-8")
    missing = tmp_path / "missing-dir"
    assert main(["suggest", str(missing), "--study", "newone", "--config", str(cfg)]) == 2
    assert capsys.readouterr().err == (f"themesift: {missing}: no such file or folder (nothing read; no run of "
                                       "study 'newone' made)\n")
    for blank in ("", "  "):
        assert main(["suggest", str(folder), "--study", blank, "--config", str(cfg)]) == 2
        assert "--study: the study name is empty" in capsys.readouterr().err
        assert main(["themes", "--study", blank, "--config", str(cfg)]) == 2
        assert "--study: the study name is empty" in capsys.readouterr().err
    assert Store.from_config({"workspace": str(tmp_path / "ws")}).study_names() == []


def test_coders_add_refuses_a_blank_name_and_the_names_themesift_codes_under(study, capsys):
    """``coders add`` gives a token to a person: not to a blank name (sign-in would go nowhere) nor to a
    name Themesift files codings under itself (the run's, the applied codebook's, the team's consensus)."""
    from models.decisions import coder_tokens

    config = str(study.config_file())
    for name in ("", "   ", "machine", "Themesift (machine)", "Themesift (codebook applied)", "consensus"):
        assert main(["coders", "add", name, "--study", "ipt", "--config", config]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("is empty" in err if not name.strip() else f"'{name}' is reserved" in err)
    with study.store.sessions() as session:
        assert coder_tokens(session, "ipt") == []
    assert main(["coders", "add", "amira", "--study", "ipt", "--config", config]) == 0


def test_codebook_refuses_a_coder_the_study_does_not_have(study, capsys):
    """``codebook --coder nobody`` is refused as ``matrix --coder nobody`` is, not printed as a coder who
    confirmed nothing; a coder with a sign-in token and no decisions yet has an (empty) codebook."""
    config = str(study.config_file())
    assert main(["codebook", "--study", "ipt", "--config", config, "--coder", "nobody"]) == 2
    assert capsys.readouterr().err == "themesift: study 'ipt' has no coder 'nobody' (coders: none yet)\n"
    assert main(["coders", "add", "amira", "--study", "ipt", "--config", config]) == 0
    capsys.readouterr()
    assert main(["codebook", "--study", "ipt", "--config", config, "--coder", "nobody"]) == 2
    assert "(coders: amira)" in capsys.readouterr().err
    assert main(["codebook", "--study", "ipt", "--config", config, "--coder", "amira"]) == 0
    assert "No theme is confirmed yet" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["themes"], ["changes"]])
def test_a_reader_that_stops_early_gets_no_traceback(study, command):
    """``themesift themes ... | head``: when stdout's reader has gone the program stops quietly (exit 1, as
    the Python docs' note on SIGPIPE advises), with no BrokenPipeError traceback on stderr."""
    import subprocess
    import sys

    from conftest import ROOT

    child = subprocess.Popen([sys.executable, "-m", "flows.cli", *command, "--study", "ipt",
                              "--config", str(study.config_file())],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child.stdout.close()  # gone before the program prints its first line
    err = child.stderr.read()
    assert child.wait(timeout=120) == 1
    assert err == ""


def test_the_suggestions_export_reads_each_sources_name_not_its_text(example_study):
    """Joined to every member, a 10,000-answer CSV's whole text came back 10,000 times: 24 GB."""
    from sqlalchemy import inspect

    from models.export import memberships

    with example_study.store.sessions() as session:
        rows = memberships(session, example_study.store.latest_run(session, "ipt"))
        sources = {m.segment.source for m in rows}
        assert len(sources) == 10 and all("text" in inspect(s).unloaded and s.name for s in sources)
