"""Imported codings: who coded (a :class:`Coder`) and which segment carries which code (a :class:`Coding`).

Human codings arrive as character selections (CSV or REFI-QDA) and are stored already mapped onto the
study's segments (the rule lives in ``pipeline.compare.agreement.map_selections``), so every later comparison
uses the same units. The selections themselves are kept too (a :class:`CodedSelection`), so an export gives
each coder back the spans they selected, those that fell on no compared segment included. Importing a coder again for a study replaces that coder's earlier import for the
study in one transaction: an import either lands whole or not at all.

The machine is not stored here: its coding is a run's memberships (``models.records.Membership``).
This module also reads back what the compare flow needs: the study's sources, the units of a run
and the run's partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Mapping

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from models.records import Base, Membership, Run, Segment, Source, Study, Theme, utcnow
from pipeline.compare.agreement import Selection
from pipeline.exchange.codings import CodeInfo, StudySource

HUMAN, MACHINE = "human", "machine"


class Coder(Base):
    """A person (or another program) whose codings are compared; names are unique."""

    __tablename__ = "coder"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(10), default=HUMAN)  # human | machine
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Coding(Base):
    """``coder`` put ``code`` on ``segment`` in ``study``; ``origin`` is the file it was imported from.

    ``via``: where the link came from: ``imported`` (a coder's file; also every row stored before this
    column existed, where it is null), ``coder`` (a decision in the review, carried into the machine's
    coding) or ``learner`` (the machine's own, with its ``probability``)."""

    __tablename__ = "coding"
    __table_args__ = (UniqueConstraint("study_id", "coder_id", "segment_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    coder_id: Mapped[int] = mapped_column(ForeignKey("coder.id"), index=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segment.id"), index=True)
    code: Mapped[str] = mapped_column(String(300))
    origin: Mapped[str] = mapped_column(Text)
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    via: Mapped[str | None] = mapped_column(String(20))
    probability: Mapped[float | None] = mapped_column(Float)

    coder: Mapped[Coder] = relationship()
    segment: Mapped[Segment] = relationship()


class CodedSelection(Base):
    """The span ``coder`` selected and gave ``code`` in a file imported into ``study``, on the study's text of
    ``source`` (offsets in code points; re-located where the file's text differed)."""

    __tablename__ = "coded_selection"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    coder_id: Mapped[int] = mapped_column(ForeignKey("coder.id"), index=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"))
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(300))
    origin: Mapped[str] = mapped_column(Text)


class StoredCodeInfo(Base):
    """What an imported codebook said of a code of the study (by name): its parent code's name, colour,
    description and whether it is a folder only (``codable`` False). The latest import of a name wins."""

    __tablename__ = "code_info"
    __table_args__ = (UniqueConstraint("study_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    name: Mapped[str] = mapped_column(String(300))
    parent: Mapped[str | None] = mapped_column(String(300))
    color: Mapped[str | None] = mapped_column(String(7))
    description: Mapped[str] = mapped_column(Text, default="")
    codable: Mapped[bool] = mapped_column(Boolean, default=True)
    origin: Mapped[str] = mapped_column(Text)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def store_code_info(session: Session, study: str, infos: Mapping[str, CodeInfo], origin: str) -> int:
    """Keep each code's place, colour and description (replacing what an earlier import said of the same
    name). Returns the number of codes written."""
    study_row = _study_row(session, study)
    existing = {r.name: r for r in session.scalars(select(StoredCodeInfo).where(StoredCodeInfo.study_id == study_row.id))}
    for name, info in infos.items():
        row = existing.get(name) or StoredCodeInfo(study_id=study_row.id, name=name)
        row.parent, row.color, row.description = info.parent, info.color, info.description or ""
        row.codable, row.origin = info.codable, origin
        session.add(row)
    return len(infos)


def stored_code_info(session: Session, study: str) -> dict[str, CodeInfo]:
    """Code name -> what its imported codebook said of it (place, colour, description), in name order."""
    study_row = _study_row(session, study)
    return {r.name: CodeInfo(r.parent, r.color, r.description or "", bool(r.codable)) for r in session.scalars(
        select(StoredCodeInfo).where(StoredCodeInfo.study_id == study_row.id).order_by(StoredCodeInfo.name))}


def _study_row(session: Session, study: str) -> Study:
    from models.store import StudyNotFoundError

    row = session.scalars(select(Study).where(Study.name == study)).first()
    if row is None:
        known = ", ".join(session.scalars(select(Study.name).order_by(Study.name))) or "none yet"
        raise StudyNotFoundError(f"no study named '{study}' (studies: {known})")
    return row


def replace_codings(
    session: Session,
    study: str,
    codings: Mapping[str, Mapping[int, Iterable[str]]],
    origin: str,
    kind: str = HUMAN,
    links: Mapping[int, Mapping[str, tuple[str, float | None]]] | None = None,
    selections: Iterable[Selection] = (),
) -> dict[str, int]:
    """Store ``coder -> segment id -> codes``, replacing each named coder's earlier import for the
    study. Run inside one transaction (``Store.transaction()``). ``links``: segment id -> code ->
    (via, probability) where known (``themesift apply``); otherwise ``imported``. ``selections``: the file's
    ``(source id, start, end, code, coder)`` spans behind them, kept for the coders of ``codings`` (their
    earlier spans replaced). Returns codings stored per coder."""
    links = links or {}
    spans: dict[str, list[Selection]] = {}
    for sel in selections:
        spans.setdefault(str(sel[4]), []).append(sel)
    study_row = _study_row(session, study)
    counts: dict[str, int] = {}
    for name, by_segment in codings.items():
        coder = session.scalars(select(Coder).where(Coder.name == name)).first()
        if coder is None:
            coder = Coder(name=name, kind=kind)
            session.add(coder)
            session.flush()
        session.execute(delete(Coding).where(Coding.study_id == study_row.id, Coding.coder_id == coder.id))
        session.execute(delete(CodedSelection).where(CodedSelection.study_id == study_row.id,
                                                     CodedSelection.coder_id == coder.id))
        kept = [{"study_id": study_row.id, "coder_id": coder.id, "source_id": int(src), "start": int(start),
                 "end": int(end), "code": code, "origin": origin}
                for src, start, end, code, _ in sorted(set(spans.get(name, ())), key=lambda t: (t[0], t[1], t[2], t[3]))]
        if kept:
            session.execute(CodedSelection.__table__.insert(), kept)
        rows = [
            {"study_id": study_row.id, "coder_id": coder.id, "segment_id": int(seg), "code": code,
             "origin": origin, "imported_at": utcnow(), "via": via, "probability": probability}
            for seg, codes in sorted(by_segment.items()) for code in sorted(set(codes))
            for via, probability in [links.get(seg, {}).get(code, ("imported", None))]
        ]
        if rows:
            session.execute(Coding.__table__.insert(), rows)
        counts[name] = len(rows)
    return counts


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredCoder:
    name: str
    kind: str
    origin: str
    imported_at: datetime | None
    n_codings: int


def stored_codings(session: Session, study: str) -> tuple[dict[str, dict[int, frozenset[str]]], list[StoredCoder]]:
    """Every imported coder's coding of the study (``coder -> segment id -> codes``) and who they are."""
    study_row = _study_row(session, study)
    rows = session.execute(
        select(Coder.name, Coder.kind, Coding.segment_id, Coding.code, Coding.origin, Coding.imported_at)
        .join(Coder, Coder.id == Coding.coder_id)
        .where(Coding.study_id == study_row.id)
        .order_by(Coder.name, Coding.segment_id, Coding.code)
    )
    codings: dict[str, dict[int, set[str]]] = {}
    info: dict[str, dict] = {}
    for name, kind, seg, code, origin, when in rows:
        codings.setdefault(name, {}).setdefault(seg, set()).add(code)
        meta = info.setdefault(name, {"kind": kind, "origin": origin, "imported_at": when, "n": 0})
        meta["n"] += 1
    coders = [StoredCoder(n, m["kind"], m["origin"], m["imported_at"], m["n"]) for n, m in info.items()]
    return ({n: {s: frozenset(c) for s, c in by.items()} for n, by in codings.items()}, coders)


def stored_selections(session: Session, study: str) -> dict[str, list[Selection]]:
    """Coder -> the spans their imported files selected, ``(source id, start, end, code, coder)`` in source
    and text order (coders imported before spans were kept, and the machine, have none)."""
    study_row = _study_row(session, study)
    out: dict[str, list[Selection]] = {}
    for name, src, start, end, code in session.execute(
        select(Coder.name, CodedSelection.source_id, CodedSelection.start, CodedSelection.end, CodedSelection.code)
        .join(Coder, Coder.id == CodedSelection.coder_id).where(CodedSelection.study_id == study_row.id)
        .order_by(Coder.name, CodedSelection.source_id, CodedSelection.start, CodedSelection.end, CodedSelection.code)
    ):
        out.setdefault(name, []).append((src, start, end, code, name))
    return out


def coding_rows(session: Session, study: str, coder: str | None = None) -> list[dict]:
    """Every stored coding of the study (or of one coder), one row per (segment, code), in the columns of
    the coding CSV (``pipeline.exchange.codings.CSV_COLUMNS``) plus ``via``, ``probability``, ``row_id``
    and ``attributes`` (a CSV source's row and extra columns, so codes join back to the spreadsheet)."""
    study_row = _study_row(session, study)
    q = (select(Coder.name, Coder.kind, Coding.code, Coding.via, Coding.probability, Source.name, Segment.case,
                Segment.start, Segment.end, Segment.text, Segment.row_id, Segment.attributes)
         .join(Coder, Coder.id == Coding.coder_id).join(Segment, Segment.id == Coding.segment_id)
         .join(Source, Source.id == Segment.source_id).where(Coding.study_id == study_row.id)
         .order_by(Coder.name, Source.name, Segment.start, Coding.code))
    if coder is not None:
        q = q.where(Coder.name == coder)
    return [{"source": source, "case": case, "start": start, "end": end, "text": text, "code": code,
             "coder": name, "kind": kind, "via": via or "imported", "probability": probability, "row_id": row_id,
             "attributes": dict(attributes or {})}
            for name, kind, code, via, probability, source, case, start, end, text, row_id, attributes
            in session.execute(q)]


def study_sources(session: Session, study: str, source_ids: Iterable[int] | None = None) -> list[StudySource]:
    """The study's sources (key = source id) with the cases their segments belong to."""
    study_row = _study_row(session, study)
    query = select(Source).where(Source.study_id == study_row.id)
    if source_ids is not None:
        query = query.where(Source.id.in_(list(source_ids)))
    sources = list(session.scalars(query.order_by(Source.name, Source.id)))
    cases: dict[int, set[str]] = {}
    stretches: dict[int, dict[str, list[list[int]]]] = {}
    for sid, case, start, end in session.execute(
        select(Segment.source_id, Segment.case, Segment.start, Segment.end)
        .where(Segment.source_id.in_([s.id for s in sources]), Segment.case.is_not(None))
        .order_by(Segment.source_id, Segment.start)
    ):
        cases.setdefault(sid, set()).add(case)
        runs = stretches.setdefault(sid, {}).setdefault(case.casefold(), [])
        if runs and runs[-1][1] >= start - 2:  # the next segment of the same answer: one stretch
            runs[-1][1] = max(runs[-1][1], end)
        else:
            runs.append([start, end])
    return [StudySource(s.id, s.name, s.text, frozenset(cases.get(s.id, ())),
                        tuple((c, tuple((a, b) for a, b in runs)) for c, runs in sorted(stretches.get(s.id, {}).items())))
            for s in sources]


@dataclass(frozen=True)
class Unit:
    """A segment compared: the run clustered it (participant text), so every coder can code it."""

    segment_id: int
    source_id: int
    source: str
    case: str | None
    speaker: str | None
    start: int
    end: int
    text: str
    attributes: tuple[tuple[str, str], ...] = ()  # a CSV row's extra columns (--attr-col, text column)


def require_run(session: Session, study: str, run_id: int | None = None) -> Run:
    """The run asked for, or the study's latest completed run."""
    from models.store import StudyNotFoundError

    study_row = _study_row(session, study)
    if run_id is not None:
        run = session.get(Run, run_id)
        if run is None or run.study_id != study_row.id:
            raise StudyNotFoundError(f"study '{study}' has no run {run_id}")
        return run
    run = session.scalars(select(Run).where(Run.study_id == study_row.id, Run.status == "completed")
                          .order_by(Run.id.desc()).limit(1)).first()
    if run is None:
        raise StudyNotFoundError(f"study '{study}' has no completed run yet; run themesift suggest first")
    return run


def run_units(session: Session, run: Run) -> list[Unit]:
    """The run's segments (members and outliers), in source and text order."""
    rows = session.execute(
        select(Segment, Source.name).join(Membership, Membership.segment_id == Segment.id)
        .join(Source, Source.id == Segment.source_id)
        .where(Membership.run_id == run.id)
        .order_by(Source.name, Segment.source_id, Segment.start)
    )
    return [Unit(s.id, s.source_id, name, s.case, s.speaker, s.start, s.end, s.text,
                 tuple((s.attributes or {}).items())) for s, name in rows]


@dataclass(frozen=True)
class MachineTheme:
    theme_id: int
    rank: int
    code: str  # the name the theme is compared under: "T01 label"
    label: str
    keywords: tuple[str, ...]
    n_segments: int
    n_cases: int
    description: str = ""  # one central clause of a member with its participant ("" for older runs)


def theme_code(rank: int, label: str) -> str:
    """The name a machine theme carries in comparisons and exports (unique within a run)."""
    return f"T{rank:02d} {label}"


def run_partition(session: Session, run: Run) -> tuple[dict[int, str | None], dict[int, float], list[MachineTheme]]:
    """segment id -> theme code (None: outlier queue), segment id -> strength, and the ranked themes."""
    themes = list(session.scalars(select(Theme).where(Theme.run_id == run.id).order_by(Theme.rank)))
    code_of = {t.id: theme_code(t.rank, t.label) for t in themes}
    partition: dict[int, str | None] = {}
    strength: dict[int, float] = {}
    for seg, theme_id, s in session.execute(
        select(Membership.segment_id, Membership.theme_id, Membership.strength).where(Membership.run_id == run.id)
    ):
        partition[seg] = code_of.get(theme_id) if theme_id is not None else None
        strength[seg] = float(s or 0.0)
    info = [MachineTheme(t.id, t.rank, code_of[t.id], t.label, tuple(t.keywords), t.n_segments, len(t.cases),
                         t.description or "")
            for t in themes]
    return partition, strength, info


__all__ = [
    "CodedSelection", "Coder", "Coding", "HUMAN", "StoredCodeInfo", "store_code_info", "stored_code_info", "MACHINE", "MachineTheme", "StoredCoder", "Unit", "replace_codings",
    "require_run", "run_partition", "run_units", "stored_codings", "stored_selections", "study_sources", "theme_code",
]

