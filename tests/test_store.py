"""The store on SQLite and on PostgreSQL (THEMESIFT_TEST_PG_URL, started by .ci/run)."""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pytest
from sqlalchemy import create_engine, func, select, text

from conftest import TRANSCRIPTS, study_config
from models.records import Embedding, Membership, Run, Segment, Source, Theme
from models.store import Store
from pipeline.config import load_config
from pipeline.ingest.read import Ingester
from pipeline.ingest.segment import Segmenter
from pipeline.themes.assemble import CandidateTheme, OutlierSegment, Suggestions

PG_URL = os.environ.get("THEMESIFT_TEST_PG_URL")


def _empty_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'themesift.db'}"
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("THEMESIFT_TEST_PG_URL is not set: .ci/run must start PostgreSQL")
        pytest.skip("no PostgreSQL server (set THEMESIFT_TEST_PG_URL)")
    _empty_postgres(PG_URL)
    return PG_URL


def _example(n_files: int = 2):
    cfg = load_config()
    paths = sorted(TRANSCRIPTS.iterdir())[:n_files]
    docs = Ingester.from_config(cfg["ingest"]).collect(paths).documents
    segments = Segmenter.from_config(cfg["segment"]).transform(docs)
    clustered = [i for i, s in enumerate(segments) if s.clusterable]
    half = len(clustered) // 2
    themes = (CandidateTheme(1, 0, "first", ("a",), 0.7, {"coverage": 1.0}, ("r",), ("P01",),
                             tuple(clustered[:half]), (1.0,) * half, (0.5,) * half, tuple(clustered[:3])),)
    outliers = tuple(OutlierSegment(i, 1, 0.4) for i in clustered[half:])
    return docs, segments, Suggestions(themes, outliers)


def _counts(store: Store) -> list[int]:
    with store.sessions() as session:
        return [session.scalar(select(func.count()).select_from(t)) for t in (Run, Theme, Membership, Segment, Source)]


def test_a_run_round_trips_and_a_failed_write_leaves_nothing(store_url):
    store = Store(store_url)
    docs, segments, suggestions = _example()
    run_id = store.record_run("s", docs, segments, suggestions, {"k": 1}, [], datetime.now(timezone.utc), cut="c1")
    with store.sessions() as session:
        run = session.get(Run, run_id)
        assert run.n_themes == 1 and run.n_outliers == len(suggestions.outliers)
        assert [s.text for s in session.scalars(select(Segment).order_by(Segment.id))] == [s.text for s in segments]
    assert store.known_sources("s", "c1") == {d.sha256: d.path for d in docs}
    stored = store.stored_segments("s", [docs[0].sha256], "c1")[docs[0].sha256]
    assert stored == [s for s in segments if s.source_sha256 == docs[0].sha256]
    before = _counts(store)
    broken = Suggestions(suggestions.themes, (OutlierSegment(10**6, None, 0.0),))
    with pytest.raises(IndexError):
        store.record_run("s", docs, segments, broken, {}, [], datetime.now(timezone.utc))
    assert _counts(store) == before


def test_a_renamed_source_keeps_its_segments_and_takes_its_new_name_and_case(store_url):
    store = Store(store_url)
    docs, segments, suggestions = _example()
    store.record_run("s", docs, segments, suggestions, {}, [], datetime.now(timezone.utc), cut="c1")
    with store.sessions() as session:
        ids = list(session.scalars(select(Segment.id).order_by(Segment.id)))
    moved = replace(docs[0], name="P01_final.txt", path=docs[0].path.replace("P01.txt", "P01_final.txt"))
    recased = [replace(s, source="P01_final.txt", case="P1") if s.source_sha256 == moved.sha256 else s
               for s in segments]
    store.record_run("s", [moved], recased, suggestions, {}, [], datetime.now(timezone.utc), cut="c1")
    with store.sessions() as session:
        assert list(session.scalars(select(Segment.id).order_by(Segment.id))) == ids  # the same rows
        source = session.scalars(select(Source).where(Source.sha256 == moved.sha256)).one()
        assert (source.name, source.path) == ("P01_final.txt", moved.path) and source.retired_at is None
        assert {s.case for s in session.scalars(select(Segment).where(Segment.source_id == source.id))} == {"P1"}
    assert store.known_sources("s", "c1")[moved.sha256] == moved.path


def test_embedding_cache_with_concurrent_writers(store_url):
    store = Store(store_url)
    rng = np.random.default_rng(0)
    hashes = [f"{i:064x}" for i in range(300)]
    vectors = rng.normal(size=(300, 8)).astype(np.float32)
    errors: list[BaseException] = []

    def write(offset: int) -> None:
        try:
            Store(store_url).cache_vectors("m", hashes[offset:offset + 200], vectors[offset:offset + 200])
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(o,)) for o in (0, 100, 50, 0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    found = store.cached_vectors("m", hashes)
    assert len(found) == 300 and all(np.array_equal(found[h], v) for h, v in zip(hashes, vectors))
    with store.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Embedding)) == 300


def test_two_writers_at_once_lose_nothing(store_url):
    store = Store(store_url)
    docs, segments, suggestions = _example(3)
    errors: list[BaseException] = []

    def runs(study: str) -> None:
        try:
            for _ in range(3):
                Store(store_url).record_run(study, docs, segments, suggestions, {}, [], datetime.now(timezone.utc))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=runs, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with store.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 6
        per_run = set(session.scalars(select(func.count()).select_from(Membership).group_by(Membership.run_id)))
        assert per_run == {len(suggestions.themes[0].members) + len(suggestions.outliers)}


def test_the_suggest_flow_on_postgresql(prefect_harness, tmp_path):
    if not PG_URL:
        pytest.skip("no PostgreSQL server (set THEMESIFT_TEST_PG_URL)")
    _empty_postgres(PG_URL)
    from flows.suggest import suggest_flow

    cfg = study_config(tmp_path)
    cfg["store"]["url"] = PG_URL
    outcome = suggest_flow(paths=[str(TRANSCRIPTS)], study="ipt", config=cfg)
    assert outcome["status"] == "completed"
    store = Store(PG_URL)
    with store.sessions() as session:
        run = session.get(Run, outcome["run_id"])
        assert run.n_themes >= 5 and run.manifest["inputs"]
        for segment in session.scalars(select(Segment)):
            assert segment.source.text[segment.start:segment.end] == segment.text
    _two_coders_deciding_at_once(store, "ipt")


def _two_coders_deciding_at_once(store: Store, study: str) -> None:
    """Both coders' decisions are kept; two merges of one theme at the same moment: one wins, cleanly."""
    from models.decisions import Decision
    from models.review import decide, load_view
    from pipeline.learn.codebook import DecisionError
    from review_helpers import keys_and_outliers, segments_outside

    keys, _, view = keys_and_outliers(store, study)
    n = 8
    outliers = segments_outside(view, keys[:5], 2 * n)  # none of the themes this test moves or merges
    work = {"amira": [(seg, keys[0]) for seg in outliers[:n]], "ben": [(seg, keys[1]) for seg in outliers[n:2 * n]]}
    start, errors, refused = threading.Barrier(2), [], []

    def coder(name: str) -> None:
        start.wait()
        try:
            for seg, key in work[name]:
                decide(store, study, name, {"action": "add_segment", "segment_ids": [seg], "to": key})
        except BaseException as exc:
            errors.append(exc)

    def merge(name: str, into: str) -> None:
        start.wait()
        try:
            decide(store, study, name, {"action": "merge", "themes": [keys[2], into], "into": into})
        except DecisionError as exc:
            refused.append(exc)

    for pair in ([threading.Thread(target=coder, args=(c,)) for c in work],
                 [threading.Thread(target=merge, args=("amira", keys[3])),
                  threading.Thread(target=merge, args=("ben", keys[4]))]):
        for t in pair:
            t.start()
        for t in pair:
            t.join()
    assert not errors and len(refused) == 1
    with store.sessions() as session:
        rows = list(session.scalars(select(Decision)))
        view = load_view(session, study)
    assert len(rows) == 2 * n + 1 and {r.coder for r in rows} == {"amira", "ben"}
    assert all(seg in view.members(keys[0]) for seg in outliers[:n])
    assert all(seg in view.members(keys[1]) for seg in outliers[n:2 * n])
    assert view.state.themes[keys[2]].status == "merged"
    with pytest.raises(Exception, match="append-only"):  # the database itself refuses to change the log
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE decision SET coder = 'mallory'"))


def test_an_old_database_is_upgraded_and_the_schema_matches_the_records(store_url):
    """A database at the first schema (as the first release wrote it) keeps its data through the upgrade."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from models import migrate
    from models.records import Base

    engine = create_engine(store_url)
    migrate.upgrade(engine, "0001_first_schema")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO study (id, name, created_at) VALUES (1, 'old', '2026-01-01 00:00:00')"))
        conn.execute(text("INSERT INTO source (id, study_id, name, path, format, sha256, text, warnings, created_at) "
                          "VALUES (1, 1, 'a.txt', '/a.txt', 'txt', 'ab', 'P01: Hello there.', '[]', "
                          "'2026-01-01 00:00:00')"))
    assert migrate.current(engine) == "0001_first_schema"
    store = Store(store_url)  # opening the store upgrades it
    assert migrate.current(store.engine) == migrate.head()
    with store.sessions() as session:
        source = session.get(Source, 1)
        assert source.text == "P01: Hello there." and source.retired_at is None and source.study.name == "old"
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []  # the migrations build exactly the schema the records describe
    engine.dispose()


def _database_at_0002(url: str):
    """A database at schema 0002 holding a study, a run and its theme with a clustered member, a member
    joined from the queue (which carried its theme in the hint columns then) and a queue segment."""
    from models import migrate

    engine = create_engine(url)
    migrate.upgrade(engine, "0002_review_compare_runs")
    when = "'2026-01-01 00:00:00'"
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO study (id, name, created_at) VALUES (1, 'old', {when})"))
        conn.execute(text("INSERT INTO source (id, study_id, name, path, format, sha256, text, warnings, created_at) "
                          f"VALUES (1, 1, 'a.txt', '/a.txt', 'txt', 'ab', 'P01: Hello there.', '[]', {when})"))
        for sid in (1, 2, 3):
            conn.execute(text('INSERT INTO segment (id, source_id, start, "end", role, turn_index, text, text_hash, '
                              f"clusterable, attributes) VALUES ({sid}, 1, {sid}, {sid + 1}, 'participant', 0, 'Hello', "
                              f"'h{sid}', true, '{{}}')"))
        conn.execute(text("INSERT INTO run (id, study_id, status, started_at, finished_at, manifest, skipped, "
                          f"n_segments, n_themes, n_outliers) VALUES (1, 1, 'completed', {when}, {when}, '{{}}', "
                          "'[]', 3, 1, 1)"))
        conn.execute(text("INSERT INTO theme (id, run_id, rank, cluster, label, keywords, score, parts, reasons, "
                          "cases, quotes, n_segments) VALUES (1, 1, 1, 0, 'hello', '[]', 0.5, '{}', '[]', '[]', "
                          "'[]', 2)"))
        conn.execute(text("INSERT INTO membership (id, run_id, segment_id, theme_id, strength, centrality, "
                          "suggested_theme_id, suggested_similarity) VALUES "
                          "(1, 1, 1, 1, 0.9, 0.8, NULL, 0), "    # clustered member
                          "(2, 1, 2, 1, 0.0, 0.6, 1, 0.6), "     # joined from the queue
                          "(3, 1, 3, NULL, 0.0, 0.0, 1, 0.4)"))  # in the queue, with a hint
    return engine


def test_upgrade_moves_a_joined_member_out_of_the_hint_columns(store_url):
    """Before 0003 a joined member carried its own theme as the queue's hint; the upgrade gives it a
    column of its own and leaves the hints of segments in the queue, and clustered members, as they were."""
    from models import migrate

    engine = _database_at_0002(store_url)
    Store(store_url)  # opening the store upgrades it
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT segment_id, theme_id, suggested_theme_id, suggested_similarity, "
                                 "joined_similarity FROM membership ORDER BY segment_id")).all()
    assert [tuple(r) for r in rows] == [(1, 1, None, 0.0, None), (2, 1, None, 0.0, 0.6), (3, None, 1, 0.4, None)]
    engine.dispose()


def test_a_failed_upgrade_leaves_the_database_as_it_was(store_url):
    """An upgrade over several migrations that fails part-way changes nothing, schema included, and says
    which database it was. (SQLite commits schema changes at once unless the transaction is begun
    explicitly: 0003's new column used to stay behind while the version table said 0002.)"""
    from sqlalchemy import inspect

    from models import migrate
    from models.migrate import StoreUpgradeError

    engine = _database_at_0002(store_url)
    with engine.begin() as conn:  # 0004 will fail: the column it adds is there already
        conn.execute(text("ALTER TABLE theme ADD COLUMN second_pass BOOLEAN"))
    hints = "SELECT segment_id, theme_id, suggested_theme_id, suggested_similarity FROM membership ORDER BY segment_id"
    with engine.connect() as conn:
        before = [tuple(r) for r in conn.execute(text(hints))]
    with pytest.raises(StoreUpgradeError, match="0002_review_compare_runs") as failed:
        Store(store_url)
    assert engine.url.render_as_string(hide_password=True).split("/")[-1] in str(failed.value)
    assert migrate.current(engine) == "0002_review_compare_runs"
    assert "joined_similarity" not in {c["name"] for c in inspect(engine).get_columns("membership")}
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(text(hints))] == before
    engine.dispose()


def test_a_store_from_a_newer_themesift_is_refused_in_words_and_left_alone(tmp_path):
    from models.migrate import StoreUpgradeError, head

    url = f"sqlite:///{tmp_path / 'themesift.db'}"
    Store(url).engine.dispose()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_from_a_later_release'"))
    with pytest.raises(StoreUpgradeError, match=f"written by a newer Themesift .schema 0099_from_a_later_release; "
                                                f"this one knows up to {head()}.; nothing was changed"):
        Store(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0099_from_a_later_release"
    engine.dispose()


def test_study_names_become_folders_inside_the_workspace(tmp_path, monkeypatch):
    """A study name is text, not a path: exports, reports and codebooks land in a folder inside the
    workspace whatever the name, and two unsafe names never share one."""
    from models.store import study_dir

    monkeypatch.setenv("THEMESIFT_HOME", str(tmp_path / "ws"))
    workspace = (tmp_path / "ws").resolve()
    assert study_dir({}, "ipt-example") == workspace / "ipt-example"  # a plain name stays as it is
    hostile = ["../../escaped", "/etc", "a/b", "..", ".hidden", "C:\\temp", "", "caf\u00e9 study"]
    folders = [study_dir({}, name) for name in hostile]
    for name, folder in zip(hostile, folders):
        assert folder.parent == workspace and folder.name not in ("", ".", ".."), (name, folder)
        assert not folder.name.startswith("."), (name, folder)
    assert len(set(folders)) == len(hostile)
