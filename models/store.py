"""Storage: one SQLAlchemy database (SQLite by default, any URL from config) for every study.

A run's results go in with a single transaction, so a failed or killed run leaves the earlier results
exactly as they were. The embedding cache is written on its own, as soon as vectors exist, so work
done by a run that later fails is still reused.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import socket
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Collection, Iterator, Mapping, Sequence

import numpy as np
from sqlalchemy import create_engine, delete, event, select, update
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import DatabaseError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from models import migrate
from models.records import Embedding, Membership, Run, Segment, Source, SourceCut, Study, StudyLock, Theme
from pipeline.config import StoreSettings, url_without_password
from pipeline.embed.encoder import text_hash
from pipeline.ingest.read import Document
from pipeline.ingest.segment import Segment as PlainSegment

if TYPE_CHECKING:  # the type alone: the clustering stages are not loaded to read a store
    from pipeline.themes.assemble import Suggestions

_CHUNK = 500


def workspace_dir(store_cfg: StoreSettings | Mapping) -> Path:
    """Folder for the SQLite file, exports and reports: $THEMESIFT_HOME, else ``store.workspace``."""
    return Path(os.environ.get("THEMESIFT_HOME") or StoreSettings.of(store_cfg).workspace).expanduser().resolve()


def study_dir(store_cfg: StoreSettings | Mapping, study: str) -> Path:
    """The study's folder for exports and reports, always inside the workspace: a name that is not a
    plain folder name (``../x``, ``a/b``, ``.hidden``) is mapped to one, with a hash of the name so two
    such studies never share a folder."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", study).strip(".-")[:80]
    if safe != study or not safe:
        safe = f"{safe or 'study'}-{hashlib.sha256(study.encode('utf-8')).hexdigest()[:8]}"
    return workspace_dir(store_cfg) / safe


def database_url(store_cfg: StoreSettings | Mapping) -> str:
    store_cfg = StoreSettings.of(store_cfg)
    return store_cfg.url or f"sqlite:///{workspace_dir(store_cfg) / 'themesift.db'}"


class StudyNotFoundError(LookupError):
    pass


class StoreWriteError(RuntimeError):
    """The store, or a file beside it, cannot be written: a full disk, a read-only folder. The message is one
    line that names the path and what to do."""


# SQLite's messages for a store that cannot be written (SQLITE_FULL, SQLITE_READONLY, SQLITE_CANTOPEN, IOERR).
_SQLITE_WRITE_FAULTS = ("database or disk is full", "attempt to write a readonly database",
                        "unable to open database file", "disk i/o error")
# The same faults as OSErrors from writing a file (an export, a report, the workspace folder).
WRITE_FAULT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def write_fault(path: str | Path, reason: str) -> StoreWriteError:
    """The one-line error for ``path`` that could not be written, with what to do about it."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    try:
        stats = os.statvfs(folder)
    except OSError:  # the folder is not there: say what the system said
        return StoreWriteError(f"{path}: cannot be written ({reason}); check that {folder} exists and is writable, "
                               "or set THEMESIFT_HOME (store.workspace) to a folder that is")
    if stats.f_flag & os.ST_RDONLY or not os.access(folder, os.W_OK):
        return StoreWriteError(f"{path}: cannot be written: {folder} is read-only ({reason}); make it writable, or "
                               "set THEMESIFT_HOME (store.workspace) to a writable folder")
    free_mb = stats.f_bavail * stats.f_frsize / 1e6
    if free_mb < 64 or "full" in reason.lower() or "space" in reason.lower():
        return StoreWriteError(f"{path}: cannot be written: the disk is full ({free_mb:.1f} MB free; {reason}); free "
                               "some space, or set THEMESIFT_HOME (store.workspace) to a folder on another disk. "
                               "Earlier runs are kept")
    return StoreWriteError(f"{path}: {reason}; check the disk and the folder's permissions")


class StoreOpenError(RuntimeError):
    """The store cannot be opened (a wrong password, host, port or database name; a server that is down):
    one line that names the store, its password hidden, and the server's own reason."""


class StudyBusyError(RuntimeError):
    """Another run holds the study; runs on one study never interleave."""


def _process_alive(owner: str) -> bool:
    """False only when ``owner`` (host:pid) is a process of this host that no longer exists."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class LastRun:
    """A study's latest completed run as the next run compares with it: the (name, sha256) of each file it
    read, its configuration's fingerprint and the configuration, and the last decision it honoured."""

    run_id: int
    files: list[tuple[str, str]]
    config_digest: str | None
    last_decision: str | None
    config: dict


def sqlite_folder(url: str) -> Path | None:
    """The folder of a SQLite store's file, made if missing (None for a server's store); one line naming it
    (:class:`StoreOpenError`) where it cannot be: a file where the folder should be, a path under /proc."""
    if not url.startswith("sqlite:///"):
        return None
    folder = Path(url.removeprefix("sqlite:///")).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreOpenError(f"cannot make the store's folder {folder}: {exc.strerror or exc}; set "
                             "store.workspace (or THEMESIFT_HOME) to a folder you can write") from None
    return folder


class Store:
    """Session factory plus the few operations the flows and the CLI need."""

    def __init__(self, url: str, sqlite_timeout_s: float = 30):
        self.url = url
        if url.startswith("sqlite:///"):
            sqlite_folder(url)
            self.engine = create_engine(url, connect_args={"timeout": sqlite_timeout_s})
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "handle_error", _write_faults_named(Path(url.removeprefix("sqlite:///"))))
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
        try:
            migrate.upgrade(self.engine)  # creates the schema, or brings an older one up to date
        except (OperationalError, InterfaceError) as exc:  # no connection at all: nothing was written
            raise StoreOpenError(f"cannot open the store {url_without_password(url)}: {migrate.driver_message(exc)}") from None
        except DatabaseError as exc:  # SQLite: a file that is not a database, or a damaged one; left as it was
            raise StoreOpenError(f"cannot open the store {url_without_password(url)}: not a Themesift database, or a damaged "
                                 f"one ({migrate.driver_message(exc)}); it was left as it is: restore a copy, or "
                                 "point store.workspace elsewhere") from None
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_config(cls, store_cfg: StoreSettings | Mapping) -> "Store":
        store_cfg = StoreSettings.of(store_cfg)
        return cls(database_url(store_cfg), store_cfg.sqlite_timeout_s)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session committed on success and rolled back on any error."""
        with self.sessions() as session, session.begin():
            yield session

    # -- embedding cache --------------------------------------------------------------------------
    def _cache_rows(self, model_id: str, hashes: Sequence[str], *columns) -> Iterator[Row]:
        """``columns`` of the cached embeddings of ``model_id`` among ``hashes`` (queried in chunks)."""
        unique = list(dict.fromkeys(hashes))
        with self.sessions() as session:
            for i in range(0, len(unique), _CHUNK):
                yield from session.execute(select(*columns).where(
                    Embedding.model_id == model_id, Embedding.text_hash.in_(unique[i:i + _CHUNK])))

    def cached_vectors(self, model_id: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        return {h: np.frombuffer(blob, dtype=np.float32)
                for h, blob in self._cache_rows(model_id, hashes, Embedding.text_hash, Embedding.vector)}

    def uncached_texts(self, model_id: str, texts: Sequence[str]) -> list[str]:
        """The distinct ``texts`` (first-seen order) with no vector cached for ``model_id``."""
        by_hash: dict[str, str] = {}
        for t in texts:
            by_hash.setdefault(text_hash(t), t)
        for (h,) in self._cache_rows(model_id, list(by_hash), Embedding.text_hash):
            by_hash.pop(h, None)
        return list(by_hash.values())

    def cache_vectors(self, model_id: str, hashes: Sequence[str], vectors: np.ndarray) -> int:
        """Insert vectors not cached yet; concurrent writers of the same key are harmless."""
        rows = {h: v for h, v in zip(hashes, vectors)}
        if not rows:
            return 0
        insert = _insert_ignoring_duplicates(self.engine)
        values = [{"model_id": model_id, "text_hash": h, "dim": int(v.shape[0]),
                   "vector": np.asarray(v, dtype=np.float32).tobytes()} for h, v in rows.items()]
        with self.transaction() as session:
            for i in range(0, len(values), _CHUNK):
                session.execute(insert, values[i:i + _CHUNK])
        return len(values)

    # -- one run at a time per study ---------------------------------------------------------------
    @contextmanager
    def study_lock(self, study: str, wait_s: float = 0.0, poll_s: float = 1.0) -> Iterator[None]:
        """Hold ``study`` for one run; wait up to ``wait_s`` for another run, then refuse.

        A lock left by a killed process of this host is taken over; the lock row goes when the run ends.
        """
        owner = f"{socket.gethostname()}:{os.getpid()}"
        deadline = time.monotonic() + wait_s
        while True:
            try:
                with self.transaction() as session:
                    session.add(StudyLock(study=study, owner=owner))
                break
            except IntegrityError:
                with self.sessions() as session:
                    holder = session.get(StudyLock, study)
                if holder is None:
                    continue
                if not _process_alive(holder.owner):
                    with self.transaction() as session:
                        session.execute(delete(StudyLock).where(StudyLock.study == study,
                                                                StudyLock.owner == holder.owner))
                    continue
                if time.monotonic() >= deadline:
                    elsewhere = holder.owner.rpartition(":")[0] != socket.gethostname()
                    raise StudyBusyError(
                        f"study '{study}' is being processed by another run (process {holder.owner}, since "
                        f"{holder.acquired_at:%Y-%m-%d %H:%M:%S} UTC); try again when it has finished"
                        + ("; if that run is no longer running (its machine stopped or lost the store), release "
                           f"the study with: themesift unlock --study {study}" if elsewhere else ""))
                time.sleep(poll_s)
        try:
            yield
        finally:
            with self.transaction() as session:
                session.execute(delete(StudyLock).where(StudyLock.study == study, StudyLock.owner == owner))

    def unlock(self, study: str) -> tuple[str, datetime] | None:
        """Release the lock a run left on ``study`` when it died where this host cannot tell (another machine;
        a lock of a dead process of this host is taken over anyway). Returns the holder released and since
        when, None if the study was not locked; refuses (:class:`StudyBusyError`) a holder alive on this host."""
        with self.transaction() as session:
            holder = session.get(StudyLock, study)
            if holder is None:
                return None
            host, _, pid = holder.owner.rpartition(":")
            if host == socket.gethostname() and _process_alive(holder.owner):
                raise StudyBusyError(f"study '{study}' is held by process {pid} of this machine, which is still "
                                     "running; stop it (Ctrl-C) instead")
            released = (holder.owner, holder.acquired_at)
            session.delete(holder)
        return released

    # -- incremental runs ---------------------------------------------------------------------------
    def known_sources(self, study: str, cut: str) -> dict[str, str]:
        """SHA-256 -> path of the study's sources already cut into segments with settings ``cut``."""
        with self.sessions() as session:
            return dict(session.execute(
                select(Source.sha256, Source.path).join(Study).join(SourceCut, SourceCut.source_id == Source.id)
                .where(Study.name == study, SourceCut.cut == cut)).all())

    def stored_segments(self, study: str, shas: Collection[str], cut: str) -> dict[str, list[PlainSegment]]:
        """The segments of known sources as the segment stage made them with ``cut``, by source hash."""
        out: dict[str, list[PlainSegment]] = {}
        with self.sessions() as session:
            cuts = session.execute(
                select(SourceCut.segment_ids, Source.name, Source.sha256).join(Source).join(Study)
                .where(Study.name == study, Source.sha256.in_(list(shas)), SourceCut.cut == cut)).all()
            columns = (Segment.id, Segment.case, Segment.speaker, Segment.role, Segment.turn_index, Segment.start,
                       Segment.end, Segment.text, Segment.clusterable, Segment.row_id, Segment.attributes)
            for ids, name, sha in cuts:  # plain rows, not ORM objects: a survey CSV has 10,000s of segments
                rows = {r[0]: r for r in session.execute(select(*columns).where(Segment.id.in_(ids)))}
                out[sha] = [PlainSegment(name, sha, *r[1:10], tuple(r[10].items())) for r in (rows[i] for i in ids)]
        return out

    # -- runs -------------------------------------------------------------------------------------
    def record_run(self, study: str, documents: Sequence[Document], segments: Sequence[PlainSegment],
                   suggestions: Suggestions, manifest: Mapping, skipped: Sequence[Mapping],
                   started_at: datetime, message: str | None = None, cut: str | None = None) -> int:
        """Write sources, segments, the run, its themes and memberships in one transaction.

        ``documents`` are the sources read in this run; ``segments`` may also come from sources stored
        earlier. Sources of the study that this run did not see are marked retired.
        """
        with self.transaction() as session:
            study_row = _study(session, study, create=True)
            segment_ids = _upsert_segments(session, study_row, documents, segments, cut)
            _retire_unseen(session, study_row, {s.source_sha256 for s in segments} | {d.sha256 for d in documents})
            run = Run(study=study_row, status="completed", started_at=started_at, manifest=dict(manifest),
                      skipped=list(skipped), message=message,
                      n_segments=sum(len(t.members) for t in suggestions.themes) + len(suggestions.outliers),
                      n_themes=len(suggestions.themes), n_outliers=len(suggestions.outliers))
            session.add(run)
            theme_rows: dict[int, Theme] = {}
            for t in suggestions.themes:
                theme_rows[t.rank] = Theme(
                    run=run, rank=t.rank, cluster=t.cluster, label=t.label, keywords=list(t.keywords),
                    score=t.score, parts=dict(t.parts), reasons=list(t.reasons), cases=list(t.cases),
                    quotes=[segment_ids[i] for i in t.quotes], n_segments=len(t.members), second_pass=t.second_pass,
                    description=t.description or None)
            session.add_all(theme_rows.values())
            session.flush()
            joined = {i for t in suggestions.themes for i in t.joined}
            memberships = [  # a member that joined from the queue keeps its similarity to the theme
                {"run_id": run.id, "segment_id": segment_ids[i], "theme_id": theme_rows[t.rank].id,
                 "strength": s, "centrality": c, "suggested_theme_id": None, "suggested_similarity": 0.0,
                 "joined_similarity": c if i in joined else None}
                for t in suggestions.themes for i, s, c in zip(t.members, t.strengths, t.centrality)
            ] + [
                {"run_id": run.id, "segment_id": segment_ids[o.index], "theme_id": None, "strength": 0.0,
                 "centrality": 0.0, "suggested_similarity": o.similarity, "joined_similarity": None,
                 "suggested_theme_id": theme_rows[o.suggested_rank].id if o.suggested_rank else None}
                for o in suggestions.outliers
            ]
            for i in range(0, len(memberships), _CHUNK):
                session.execute(Membership.__table__.insert(), memberships[i:i + _CHUNK])
            return run.id

    def record_failed_run(self, study: str, manifest: Mapping, message: str, skipped: Sequence[Mapping],
                          started_at: datetime) -> int:
        """Keep a trace of a run that produced no results (earlier results stay untouched)."""
        with self.transaction() as session:
            run = Run(study=_study(session, study, create=True), status="failed", started_at=started_at,
                      manifest=dict(manifest), skipped=list(skipped), message=message)
            session.add(run)
            session.flush()
            return run.id

    def latest_run(self, session: Session, study: str, completed: bool = True) -> Run | None:
        study_row = _study(session, study)
        query = select(Run).where(Run.study_id == study_row.id)
        if completed:
            query = query.where(Run.status == "completed")
        return session.scalars(query.order_by(Run.id.desc()).limit(1)).first()

    def study_run(self, session: Session, study: str, run_id: int | None) -> Run:
        """The study's run ``run_id`` (its latest completed one for None); refused when the study lacks it
        (a run of another study included)."""
        if run_id is not None:
            run = session.get(Run, run_id)
            if run is None or run.study.name != study:
                raise StudyNotFoundError(f"study '{study}' has no run {run_id}")
            return run
        run = self.latest_run(session, study)
        if run is None:
            raise StudyNotFoundError(f"study '{study}' has no completed run yet; run themesift suggest first")
        return run

    def latest_manifest(self, study: str) -> tuple[int, dict] | None:
        """(run id, manifest) of the study's latest completed run; None for no such study or run."""
        with self.sessions() as session:
            try:
                run = self.latest_run(session, study)
            except StudyNotFoundError:
                return None
            return None if run is None else (run.id, dict(run.manifest or {}))

    def latest_inputs(self, study: str) -> "LastRun | None":
        """What the study's latest completed run was made from (one read of its manifest), if any."""
        latest = self.latest_manifest(study)
        if latest is None:
            return None
        run_id, manifest = latest
        return LastRun(run_id, sorted((i["name"], i["sha256"]) for i in manifest.get("inputs", [])),
                       manifest.get("config_digest"), (manifest.get("honour") or {}).get("last_decision"),
                       dict(manifest.get("config") or {}))

    def study_names(self) -> list[str]:
        with self.sessions() as session:
            return list(session.scalars(select(Study.name).order_by(Study.name)))


def _study(session: Session, name: str, create: bool = False) -> Study:
    study = session.scalars(select(Study).where(Study.name == name)).first()
    if study is None:
        if not create:
            known = ", ".join(session.scalars(select(Study.name).order_by(Study.name))) or "none yet"
            raise StudyNotFoundError(f"no study named '{name}' (studies: {known})")
        study = Study(name=name)
        session.add(study)
        session.flush()
    return study


def _retire_unseen(session: Session, study: Study, seen: set[str]) -> None:
    now = datetime.now(timezone.utc)
    for source in session.scalars(select(Source).where(Source.study_id == study.id)):
        source.retired_at = None if source.sha256 in seen else (source.retired_at or now)


def _upsert_segments(session: Session, study: Study, documents: Sequence[Document],
                     segments: Sequence[PlainSegment], cut: str | None) -> list[int]:
    """Reuse sources (by content hash) and segments (by offsets) already stored; return ids in order. A
    stored segment takes the run's ``clusterable``, ``role`` and ``case`` (settings such as
    ``segment.answer_min_words`` or ``interviewer_question_share`` may have changed since it was first cut)."""
    shas = {seg.source_sha256 for seg in segments} | {doc.sha256 for doc in documents}
    sources: dict[str, Source] = {s.sha256: s for s in session.scalars(select(Source).where(
        Source.study_id == study.id, Source.sha256.in_(list(shas))))}
    for doc in documents:
        source = sources.get(doc.sha256)
        if source is not None:  # the same content read again under another name or folder: renamed or moved
            source.name, source.path = doc.name, doc.path
        else:
            source = Source(study=study, name=doc.name, path=doc.path, format=doc.format, sha256=doc.sha256,
                            text=doc.text, warnings=list(doc.warnings))
            session.add(source)
            session.flush()
        sources[doc.sha256] = source
    existing, flags = {}, {}
    for source in sources.values():
        for seg_id, start, end, *said in session.execute(
                select(Segment.id, Segment.start, Segment.end, Segment.clusterable, Segment.role, Segment.case)
                .where(Segment.source_id == source.id)):
            existing[(source.id, start, end)] = seg_id
            flags[seg_id] = tuple(said)
    new: dict[tuple[int, int, int], Segment] = {}
    keys, reflagged = [], {}
    for seg in segments:
        key = (sources[seg.source_sha256].id, seg.start, seg.end)
        keys.append(key)
        now = (seg.clusterable, seg.role, seg.case)
        if key in existing and flags[existing[key]] != now:  # cut again under other settings
            reflagged[existing[key]] = now
        if key not in existing and key not in new:
            new[key] = Segment(
                source_id=key[0], start=seg.start, end=seg.end, case=seg.case, speaker=seg.speaker, role=seg.role,
                turn_index=seg.turn_index, text=seg.text, text_hash=text_hash(seg.text),
                clusterable=seg.clusterable, row_id=seg.row_id, attributes=dict(seg.attributes))
    session.add_all(new.values())
    for now in set(reflagged.values()):  # a stored segment is what the latest run that cut it says
        ids = [i for i, said in reflagged.items() if said == now]
        for part in range(0, len(ids), 1000):
            session.execute(update(Segment).where(Segment.id.in_(ids[part:part + 1000]))
                            .values(clusterable=now[0], role=now[1], case=now[2]))
    session.flush()
    existing.update({key: row.id for key, row in new.items()})
    ids = [existing[key] for key in keys]
    if cut is not None:
        for doc in documents:
            source = sources[doc.sha256]
            if session.get(SourceCut, (source.id, cut)) is None:
                session.add(SourceCut(source_id=source.id, cut=cut, segment_ids=[
                    i for i, seg in zip(ids, segments) if seg.source_sha256 == doc.sha256]))
    return ids


def _insert_ignoring_duplicates(engine: Engine):
    table = Embedding.__table__
    if engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        return table.insert().prefix_with("IGNORE")  # MySQL/MariaDB
    return insert(table).on_conflict_do_nothing()


def _write_faults_named(database: Path):
    """An engine ``handle_error`` hook: SQLite's errors for a store that cannot be written become
    :class:`StoreWriteError` naming the database file (instead of a traceback about SQL)."""
    def hook(context) -> None:
        original = context.original_exception
        if isinstance(original, sqlite3.OperationalError) and str(original).lower() in _SQLITE_WRITE_FAULTS:
            raise write_fault(database, str(original)) from original
    return hook


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL lets coders read while a run writes; foreign keys are off in SQLite unless asked for."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
