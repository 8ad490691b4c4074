"""The review decision log and what hangs off it: coders' sign-in tokens and stable theme keys.

* :class:`Decision`: one coder's decision on a study, appended and never changed or deleted (an ORM
  guard and, on SQLite, database triggers refuse UPDATE and DELETE). The codebook is derived from
  the log on read (``pipeline.learn.codebook.fold``), so there is no codebook table to drift from it.
* :class:`CoderToken`: a per-coder sign-in token for team mode, stored as a SHA-256 hash only; the
  coder is a ``models.codings.Coder`` (kind ``human``).
* :class:`ThemeKey`: the stable key of a theme of a run. Themes without a row are known as
  ``theme-<theme id>``; a run that carries a kept theme forward writes a row giving its new theme the
  old key (``record_theme_keys``), so decisions keep pointing at it across runs.
* :class:`ReviewSecret`: the random key that signs the review page's cookies and CSRF tokens (``web.app.sign``).
* :class:`StudySetting`: how a study's team codes (:class:`TeamSettings`: blind or shared coding, the
  lead, when the lead opened the comparison); set with ``themesift study set`` and ``coders add --lead``.

The tables are created by the store's migrations; on SQLite and PostgreSQL triggers refuse updates and deletes.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Mapping

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, delete, event, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.codings import HUMAN, Coder
from models.records import Base, Study, Theme, utcnow
from pipeline.learn.codebook import Entry

VIA = ("web", "import", "cli")


class AppendOnlyError(RuntimeError):
    """Raised on any attempt to change or delete a stored decision."""


class Decision(Base):
    """One review decision: who, when, what, on which theme of which run, and the before and after."""

    __tablename__ = "decision"

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True, default=lambda: str(uuid.uuid4()))
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    coder_id: Mapped[int] = mapped_column(ForeignKey("coder.id"))
    coder: Mapped[str] = mapped_column(String(200))  # the coder's name, kept with the record for reading
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    action: Mapped[str] = mapped_column(String(20))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("run.id"))
    theme_id: Mapped[int | None] = mapped_column(ForeignKey("theme.id"))
    theme_key: Mapped[str | None] = mapped_column(String(100), index=True)
    payload: Mapped[dict] = mapped_column(JSON)  # {"before": {...}, "after": {...}}
    via: Mapped[str] = mapped_column(String(10), default="web")

    def entry(self) -> Entry:
        return Entry(uid=self.uid, action=self.action, coder=self.coder, theme_key=self.theme_key,
                     run_id=self.run_id, theme_id=self.theme_id, before=dict(self.payload.get("before") or {}),
                     after=dict(self.payload.get("after") or {}), created_at=_aware(self.created_at), id=self.id)


class CoderToken(Base):
    """A team-mode sign-in token of one coder for one study (only its SHA-256 is kept)."""

    __tablename__ = "coder_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    coder_id: Mapped[int] = mapped_column(ForeignKey("coder.id"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ThemeKey(Base):
    """The stable key a run gave one of its themes (absent: ``theme-<theme id>``)."""

    __tablename__ = "theme_key"

    theme_id: Mapped[int] = mapped_column(ForeignKey("theme.id"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id"), index=True)
    key: Mapped[str] = mapped_column(String(100), index=True)


class ReviewSecret(Base):
    __tablename__ = "review_secret"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class StudySetting(Base):
    """One named setting of a study's review (``coding``, ``lead``, ``opened_at``), who set it and when."""

    __tablename__ = "study_setting"

    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    set_by: Mapped[str | None] = mapped_column(String(200))
    set_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


BLIND, SHARED = "blind", "shared"
CODING_MODES = (BLIND, SHARED)


@dataclass(frozen=True)
class TeamSettings:
    """How a study's team codes. ``coding``: ``blind`` (the default: in team mode each coder sees only
    their own decisions until ``lead`` opens the comparison, at ``opened_at``) or ``shared`` (everyone
    sees every decision, the latest one counting). Local mode is always shared."""

    coding: str = BLIND
    lead: str | None = None
    opened_at: datetime | None = None

    def blind(self, team: bool) -> bool:
        """Whether coders see only their own decisions now."""
        return team and self.coding == BLIND and self.opened_at is None

    @property
    def blind_until(self) -> datetime | None:
        """When blind coding ended (the lead opened the comparison): a coder's own coding is what they decided
        before it. None while blind, and in shared coding."""
        return self.opened_at if self.coding == BLIND else None




# -- append-only ------------------------------------------------------------------------------------
@event.listens_for(Decision, "before_update")
def _no_update(*_args) -> None:
    raise AppendOnlyError("decisions are append-only: record a new decision (or an undo) instead")


@event.listens_for(Decision, "before_delete")
def _no_delete(*_args) -> None:
    raise AppendOnlyError("decisions are append-only: record a new decision (or an undo) instead")


# -- reading the log ---------------------------------------------------------------------------------
def study_row(session: Session, study: str) -> Study:
    from models.store import _study

    return _study(session, study)


def decisions(session: Session, study: str | Study, coder: str | None = None) -> list[Decision]:
    """The study's decisions in log order (optionally one coder's)."""
    row = study if isinstance(study, Study) else study_row(session, study)
    query = select(Decision).where(Decision.study_id == row.id)
    if coder is not None:
        query = query.where(Decision.coder == coder)
    return list(session.scalars(query.order_by(Decision.id)))


def entries(session: Session, study: str | Study, coder: str | None = None) -> list[Entry]:
    return [d.entry() for d in decisions(session, study, coder)]


def append(session: Session, study: Study, coder: Coder, entry: Entry, via: str = "web") -> Decision:
    """Add one decision (the caller validated it, inside the same transaction)."""
    row = Decision(uid=entry.uid, study_id=study.id, coder_id=coder.id, coder=coder.name,
                   created_at=entry.created_at or utcnow(), action=entry.action, run_id=entry.run_id,
                   theme_id=entry.theme_id, theme_key=entry.theme_key,
                   payload={"before": _jsonable(entry.before), "after": _jsonable(entry.after)}, via=via)
    session.add(row)
    session.flush()
    return row


def lock_study(session: Session, study: Study | None = None) -> None:
    """Serialise deciders for the rest of the transaction; call it first, before any other statement.

    SQLite: ``BEGIN IMMEDIATE`` takes the write lock before the log is read, so two coders deciding at
    once validate one after the other (the second waits up to ``store.sqlite_timeout_s``). Other
    databases: the study row is locked (``SELECT ... FOR UPDATE``) once ``study`` is given.
    """
    if session.get_bind().dialect.name == "sqlite":
        if study is None:
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
    elif study is not None:
        session.execute(select(Study.id).where(Study.id == study.id).with_for_update())


# -- coders and tokens -----------------------------------------------------------------------------------
def coder_named(session: Session, name: str, create: bool = True) -> Coder | None:
    coder = session.scalars(select(Coder).where(Coder.name == name)).first()
    if coder is None and create:
        coder = Coder(name=name, kind=HUMAN)
        session.add(coder)
        session.flush()
    return coder


def add_token(session: Session, study: str, name: str) -> str:
    """Create a sign-in token for coder ``name`` on ``study``; returns the token (shown once). A coder has
    one token: one given before stops working, and so do the sessions signed in with it."""
    row = study_row(session, study)
    coder = coder_named(session, name)
    if coder.kind != HUMAN:
        raise ValueError(f"'{name}' is a {coder.kind} coder; choose a person's name")
    session.execute(delete(CoderToken).where(CoderToken.study_id == row.id, CoderToken.coder_id == coder.id))
    token = secrets.token_urlsafe(24)
    session.add(CoderToken(study_id=row.id, coder_id=coder.id, token_sha256=_sha(token)))
    session.flush()
    return token


def coder_for_token(session: Session, study: str, token: str) -> str | None:
    row = study_row(session, study)
    found = session.execute(
        select(Coder.name).join(CoderToken, CoderToken.coder_id == Coder.id)
        .where(CoderToken.study_id == row.id, CoderToken.token_sha256 == _sha(token.strip()))).first()
    return found[0] if found else None


def revoke_token(session: Session, study: str, name: str) -> bool:
    """Take coder ``name``'s token for ``study`` away (their sessions end too); False when they had none."""
    row = study_row(session, study)
    coder = coder_named(session, name, create=False)
    if coder is None:
        return False
    gone = session.execute(delete(CoderToken).where(CoderToken.study_id == row.id, CoderToken.coder_id == coder.id))
    return bool(gone.rowcount)


def coder_tokens(session: Session, study: str) -> list[tuple[str, datetime]]:
    """(coder, when their token was made) of every coder who can sign in to ``study``, by name."""
    row = study_row(session, study)
    return [(name, _aware(made)) for name, made in session.execute(
        select(Coder.name, CoderToken.created_at).join(CoderToken, CoderToken.coder_id == Coder.id)
        .where(CoderToken.study_id == row.id).order_by(Coder.name))]


def token_stamp(session: Session, study: str, name: str) -> str | None:
    """What a team-mode session cookie is bound to: the hash of the coder's current token (None: none)."""
    row = study_row(session, study)
    found = session.execute(
        select(CoderToken.token_sha256).join(Coder, CoderToken.coder_id == Coder.id)
        .where(CoderToken.study_id == row.id, Coder.name == name)).first()
    return found[0] if found else None


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def review_secret(session: Session) -> bytes:
    row = session.get(ReviewSecret, 1)
    if row is None:
        row = ReviewSecret(id=1, value=secrets.token_hex(32))
        session.add(row)
        session.flush()
    return bytes.fromhex(row.value)


# -- the team's settings -------------------------------------------------------------------------------
def team_settings(session: Session, study: str | Study) -> TeamSettings:
    row = study if isinstance(study, Study) else study_row(session, study)
    values = dict(session.execute(select(StudySetting.name, StudySetting.value)
                                  .where(StudySetting.study_id == row.id)).all())
    opened = values.get("opened_at")
    return TeamSettings(values.get("coding", BLIND), values.get("lead") or None,
                        _aware(datetime.fromisoformat(opened)) if opened else None)


def set_team_setting(session: Session, study: str | Study, name: str, value: str | None, by: str | None = None) -> None:
    """Set (or with ``value`` None clear) one of the study's team settings."""
    if name not in ("coding", "lead", "opened_at"):
        raise ValueError(f"unknown study setting '{name}'")
    if name == "coding" and value not in CODING_MODES:
        raise ValueError(f"coding is {' or '.join(CODING_MODES)}, not '{value}'")
    row = study if isinstance(study, Study) else study_row(session, study)
    current = session.get(StudySetting, (row.id, name))
    if value is None:
        if current is not None:
            session.delete(current)
    elif current is None:
        session.add(StudySetting(study_id=row.id, name=name, value=value, set_by=by))
    else:
        current.value, current.set_by, current.set_at = value, by, utcnow()
    session.flush()


# -- stable theme keys -----------------------------------------------------------------------------------
def default_key(theme_id: int) -> str:
    return f"theme-{theme_id}"


def run_theme_keys(session: Session, run_id: int) -> dict[int, str]:
    """theme id -> stable key for every theme of a run."""
    ids = list(session.scalars(select(Theme.id).where(Theme.run_id == run_id).order_by(Theme.rank)))
    keys = {t: default_key(t) for t in ids}
    for theme_id, key in session.execute(select(ThemeKey.theme_id, ThemeKey.key).where(ThemeKey.run_id == run_id)):
        keys[theme_id] = key
    return keys


def record_theme_keys(session: Session, run_id: int, keys: Mapping[int, str]) -> None:
    """Give themes of ``run_id`` the keys of the kept themes they carry forward (theme id -> key)."""
    session.add_all(ThemeKey(theme_id=int(t), run_id=run_id, key=str(k)) for t, k in keys.items())
    session.flush()


def record_carried_keys(session: Session, run_id: int, label_of: Mapping[str, int]) -> dict[int, str]:
    """After a run stored carried themes under cluster labels (``pipeline.learn.honour.combine_labels``), give
    their Theme rows the kept themes' keys. Returns theme id -> key."""
    by_label = dict(session.execute(select(Theme.cluster, Theme.id).where(Theme.run_id == run_id)).all())
    keys = {by_label[label]: key for key, label in label_of.items() if label in by_label}
    record_theme_keys(session, run_id, keys)
    return keys


# -- helpers ---------------------------------------------------------------------------------------------
def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


def _jsonable(value: Mapping) -> dict:
    return json.loads(json.dumps(dict(value), default=str))


def new_uid() -> str:
    return str(uuid.uuid4())


def sorted_decisions(rows: Iterable[Decision]) -> list[Decision]:
    return sorted(rows, key=lambda d: d.id)
