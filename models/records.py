"""The stored records: studies, their sources and segments, the embedding cache, runs and themes.

A run's results (themes, memberships, outlier queue) are written in one transaction and never
changed afterwards; a later run adds new rows, so every past result stays reproducible and citable.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text,
                        UniqueConstraint, false)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Study(Base):
    __tablename__ = "study"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    sources: Mapped[list["Source"]] = relationship(back_populates="study", order_by="Source.name")
    runs: Mapped[list["Run"]] = relationship(back_populates="study", order_by="Run.id")


class Source(Base):
    """One ingested file; ``text`` is the normalised plain text every segment offset points into."""

    __tablename__ = "source"
    __table_args__ = (UniqueConstraint("study_id", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    name: Mapped[str] = mapped_column(String(500))
    path: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(10))
    sha256: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    warnings: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Set when the latest run on the study no longer saw the file; cleared if it comes back.
    # Its segments, decisions and codings stay, it just takes no part in later runs.
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    study: Mapped[Study] = relationship(back_populates="sources")
    segments: Mapped[list["Segment"]] = relationship(back_populates="source", order_by="Segment.start")


class Segment(Base):
    """``source.text[start:end] == text``; identified by its source and offsets."""

    __tablename__ = "segment"
    __table_args__ = (UniqueConstraint("source_id", "start", "end"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"), index=True)
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    case: Mapped[str | None] = mapped_column(String(200))
    speaker: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    turn_index: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(64), index=True)
    clusterable: Mapped[bool] = mapped_column(Boolean)
    row_id: Mapped[str | None] = mapped_column(String(200))
    attributes: Mapped[dict] = mapped_column(JSON, default=dict)

    source: Mapped[Source] = relationship(back_populates="segments")


class SourceCut(Base):
    """The segments one segmentation setting (``cut``: a fingerprint of the settings and tokenizer) made
    of a source: while later runs use the same, an unchanged file is not read or cut again."""

    __tablename__ = "source_cut"

    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"), primary_key=True)
    cut: Mapped[str] = mapped_column(String(32), primary_key=True)
    segment_ids: Mapped[list] = mapped_column(JSON)


class Embedding(Base):
    """Cache of unit-length float32 vectors keyed by (model id, sha256 of the text): shared by all studies."""

    __tablename__ = "embedding"

    model_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    text_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class Run(Base):
    """One execution of the suggest flow, with the manifest of everything that produced it."""

    __tablename__ = "run"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))  # completed | failed
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    manifest: Mapped[dict] = mapped_column(JSON)
    skipped: Mapped[list] = mapped_column(JSON, default=list)
    message: Mapped[str | None] = mapped_column(Text)
    n_segments: Mapped[int] = mapped_column(Integer, default=0)
    n_themes: Mapped[int] = mapped_column(Integer, default=0)
    n_outliers: Mapped[int] = mapped_column(Integer, default=0)

    study: Mapped[Study] = relationship(back_populates="runs")
    themes: Mapped[list["Theme"]] = relationship(back_populates="run", order_by="Theme.rank")


class StudyLock(Base):
    """Held while a run writes to a study, so two runs on one study never interleave."""

    __tablename__ = "study_lock"

    study: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner: Mapped[str] = mapped_column(String(300))  # host:pid
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Theme(Base):
    """A ranked candidate theme of one run; ``parts`` and ``reasons`` explain its score.

    ``second_pass``: found by clustering again the segments the first pass left out
    (``pipeline.themes.assemble.cluster_left_out``); such themes rank after the first pass's."""

    __tablename__ = "theme"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id"), index=True)
    rank: Mapped[int] = mapped_column(Integer)
    cluster: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(500))  # the theme's name (pipeline/themes/name.py)
    keywords: Mapped[list] = mapped_column(JSON)
    # One central clause of a member, with its participant; None for runs stored before it was kept.
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    score: Mapped[float] = mapped_column(Float)
    parts: Mapped[dict] = mapped_column(JSON)
    reasons: Mapped[list] = mapped_column(JSON)
    cases: Mapped[list] = mapped_column(JSON)
    quotes: Mapped[list] = mapped_column(JSON)  # segment ids, best first
    n_segments: Mapped[int] = mapped_column(Integer)
    second_pass: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    run: Mapped[Run] = relationship(back_populates="themes")


class Membership(Base):
    """A clustered segment's place in a run: in a theme (with strength) or in the outlier queue.

    ``suggested_theme_id``/``suggested_similarity``: for a segment in the queue, its nearest theme by
    the similarity rule (a hint; None when not similar enough). ``joined_similarity``: for a member
    that HDBSCAN left out and that joined its theme from the queue (``pipeline.themes.join.join_outliers``),
    its similarity to the theme; None for members the clustering put there.
    """

    __tablename__ = "membership"
    __table_args__ = (UniqueConstraint("run_id", "segment_id"), Index("ix_membership_run_theme", "run_id", "theme_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id"))
    segment_id: Mapped[int] = mapped_column(ForeignKey("segment.id"), index=True)
    theme_id: Mapped[int | None] = mapped_column(ForeignKey("theme.id"))  # None: outlier queue
    strength: Mapped[float] = mapped_column(Float, default=0.0)
    centrality: Mapped[float] = mapped_column(Float, default=0.0)
    suggested_theme_id: Mapped[int | None] = mapped_column(ForeignKey("theme.id"))
    suggested_similarity: Mapped[float] = mapped_column(Float, default=0.0)
    joined_similarity: Mapped[float | None] = mapped_column(Float)

    segment: Mapped[Segment] = relationship(foreign_keys=[segment_id])
    theme: Mapped[Theme | None] = relationship(foreign_keys=[theme_id])
    suggested_theme: Mapped[Theme | None] = relationship(foreign_keys=[suggested_theme_id])
