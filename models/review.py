"""Review on top of the store: a study's current view (latest run + decision log), deciding, the decision
CSV, the confirmed codebook, deductive coding with it, and the inputs a run needs to honour decisions.

Every decision goes through :func:`decide`: one short transaction that takes the study's write lock,
folds the log, builds the decision's before/after from what is stored, validates it
(``pipeline.learn.codebook.validate``) and appends it; a decision that fails validation raises
:class:`DecisionError` and changes nothing.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.codings import MACHINE, replace_codings
from models.decisions import (Decision, append, coder_named, default_key, entries, lock_study,
                              run_theme_keys, study_row)
from models.records import Membership, Run, Segment, Source, Study, Theme
from models.store import Store, StudyNotFoundError
from pipeline.learn import codebook as cb
from pipeline.learn.honour import FIXED_NONE, RunTheme, diff_runs, rejected_centroids
from pipeline.themes.join import Calibration, calibrate, classify
from pipeline.themes.split import propose_split

APPLY_CODER = "Themesift (codebook applied)"


class DecisionError(ValueError):
    """A decision refused by validation; ``errors`` says why, in words."""

    def __init__(self, errors: Sequence[str]):
        super().__init__("; ".join(errors))
        self.errors = list(errors)


# ---------------------------------------------------------------------------------------------
# The view of a study
# ---------------------------------------------------------------------------------------------


@dataclass
class SegmentRow:
    id: int
    source_id: int
    case: str | None
    clusterable: bool
    role: str


@dataclass
class ThemeRow:
    """One line of the ranked list (run themes and themes made by coders)."""

    key: str
    title: str
    status: str
    rank: int | None
    label: str
    name: str | None
    definition: str
    reason: str
    merged_into: str | None
    split_into: tuple[str, ...]
    origin: str
    keywords: list[str]
    score: float | None
    parts: dict
    reasons: list[str]
    n_segments: int
    n_cases: int
    total_cases: int
    theme_id: int | None
    decided_by: dict[str, str]
    quote_ids: list[int]


@dataclass
class StudyView:
    """A study at one moment: its latest (or chosen) run, the decision log folded, the partition."""

    study: Study
    run: Run | None
    themes: dict[str, Theme]                       # key -> Theme of the run
    key_of: dict[int, str]                         # theme id -> key
    base: dict[int, str | None]                    # run membership: segment -> key / None (outliers)
    strength: dict[int, float]
    suggested: dict[int, tuple[str, float]]        # outlier -> the nearest theme by similarity (a hint)
    joined_from_queue: dict[int, float]            # member HDBSCAN left out -> its similarity to the theme it joined
    segments: dict[int, SegmentRow]                # every segment of the study
    entries: list[cb.Entry]
    state: cb.CodebookState
    partition: dict[int, str | None] = field(default_factory=dict)

    def joined(self, segment: int) -> float | None:
        """The similarity with which ``segment`` joined its run theme from the outlier queue; None when
        the clustering put it in its theme, or it stayed in the queue."""
        return self.joined_from_queue.get(segment)

    def __post_init__(self) -> None:
        self.partition = self.state.partition(self.base, self.base_keys)
        self._members: dict[str | None, list[int]] = {}
        for seg, key in sorted(self.partition.items()):
            self._members.setdefault(key, []).append(seg)
        self.total_cases = len({self.segments[s].case for s in self.base if s in self.segments
                                and self.segments[s].case})

    @property
    def base_keys(self) -> set[str]:
        return set(self.themes)

    def segment_exists(self, seg: int) -> bool:
        return seg in self.segments

    def members(self, key: str) -> list[int]:
        return list(self._members.get(key, ()))

    def outliers(self) -> list[int]:
        """The outlier queue: the run's segments in no theme now."""
        return [s for s in self._members.get(None, ()) if s in self.base]

    def status(self, key: str) -> str | None:
        return self.state.status_of(key, self.base_keys)

    def title(self, key: str | None) -> str:
        if key is None:
            return "no theme"
        t = self.state.themes.get(key)
        if t is not None and t.name:
            return t.name
        theme = self.themes.get(key)
        if theme is not None:
            return theme.label
        return t.title if t is not None else key

    def active_keys(self) -> list[str]:
        """Themes open for segments, in list order."""
        return [r.key for r in self.rows() if r.status in cb.ACTIVE]

    def theme_ref(self, key: str | None) -> tuple[int | None, int | None]:
        """(run id, theme id) a decision on ``key`` refers to."""
        if key in self.themes and self.run is not None:
            return self.run.id, self.themes[key].id
        t = self.state.themes.get(key or "")
        return (t.run_id, t.theme_id) if t is not None else (None, None)

    def cases_of(self, segs: Iterable[int]) -> set[str]:
        return {self.segments[s].case for s in segs if s in self.segments and self.segments[s].case}

    def with_entry(self, entry: cb.Entry) -> "StudyView":
        """The view after appending ``entry`` (same run and segments; the log folded again)."""
        log = self.entries + [entry]
        return replace(self, entries=log, state=cb.fold(log))

    def row(self, key: str) -> ThemeRow | None:
        return next((r for r in self.rows() if r.key == key), None)

    def rows(self) -> list[ThemeRow]:
        if hasattr(self, "_rows"):
            return self._rows
        rows = []
        keys = list(self.themes) + [k for k in self.state.themes if k not in self.themes]
        for key in keys:
            theme, st = self.themes.get(key), self.state.themes.get(key)
            status = self.status(key) or cb.NEW
            members = self.members(key) if status in cb.ACTIVE else list(st.members if st else ())
            n_cases = len(self.cases_of(members))
            if theme is not None:
                reasons = list(theme.reasons)
                if status in cb.ACTIVE and len(members) != theme.n_segments:
                    reasons.append(f"now {len(members)} segments from {n_cases} of {self.total_cases} "
                                   "participants after coders' decisions")
            else:
                reasons = [f"raised by {n_cases} of {self.total_cases} participants", f"{len(members)} segments"]
                if st is not None and st.origin == "own":
                    reasons.append("a coder's own theme")
                elif st is not None and st.origin == "split":
                    parent = next((t for t in self.state.themes.values() if key in t.split_into), None)
                    reasons.append(f"part of a split of '{self.title(parent.key)}'" if parent else "part of a split")
            quotes = [q for q in (theme.quotes if theme is not None else []) if self.partition.get(q) == key]
            quotes += [m for m in sorted(members, key=lambda s: -self.strength.get(s, 0.0)) if m not in quotes]
            rows.append(ThemeRow(
                key=key, title=self.title(key), status=status, rank=theme.rank if theme is not None else None,
                label=theme.label if theme is not None else (st.label if st else key),
                name=st.name if st else None, definition=st.definition if st else "",
                reason=st.reason if st else "", merged_into=st.merged_into if st else None,
                split_into=st.split_into if st else (), origin=st.origin if st else "suggested",
                keywords=list(theme.keywords) if theme is not None else [],
                score=theme.score if theme is not None else None, parts=dict(theme.parts) if theme is not None else {},
                reasons=reasons, n_segments=len(members),
                n_cases=n_cases, total_cases=self.total_cases, theme_id=theme.id if theme is not None else None,
                decided_by=dict(st.decided_by) if st else {}, quote_ids=quotes[:4]))
        self._rows = rows
        return rows


def load_view(session: Session, study: str | Study, run_id: int | None = None) -> StudyView:
    """The study as a coder sees it now (``run_id``: a given run instead of the latest completed one)."""
    srow = study if isinstance(study, Study) else study_row(session, study)
    if run_id is not None:
        run = session.get(Run, run_id)
        if run is None or run.study_id != srow.id:
            raise StudyNotFoundError(f"study '{srow.name}' has no run {run_id}")
    else:
        run = session.scalars(select(Run).where(Run.study_id == srow.id, Run.status == "completed")
                              .order_by(Run.id.desc()).limit(1)).first()
    themes: dict[str, Theme] = {}
    key_of: dict[int, str] = {}
    base: dict[int, str | None] = {}
    strength: dict[int, float] = {}
    suggested: dict[int, tuple[str, float]] = {}
    joined: dict[int, float] = {}
    if run is not None:
        key_of = run_theme_keys(session, run.id)
        for theme in session.scalars(select(Theme).where(Theme.run_id == run.id).order_by(Theme.rank)):
            themes[key_of[theme.id]] = theme
        for seg, theme_id, s, sug, sim, joined_sim in session.execute(
                select(Membership.segment_id, Membership.theme_id, Membership.strength,
                       Membership.suggested_theme_id, Membership.suggested_similarity, Membership.joined_similarity)
                .where(Membership.run_id == run.id)):
            base[seg] = key_of.get(theme_id) if theme_id is not None else None
            strength[seg] = float(s or 0.0)
            if theme_id is None and sug is not None and sug in key_of:
                suggested[seg] = (key_of[sug], float(sim or 0.0))
            if joined_sim is not None:
                joined[seg] = float(joined_sim)
    segments = {
        sid: SegmentRow(sid, src, case, bool(clu), role) for sid, src, case, clu, role in session.execute(
            select(Segment.id, Segment.source_id, Segment.case, Segment.clusterable, Segment.role)
            .join(Source, Source.id == Segment.source_id).where(Source.study_id == srow.id))
    }
    log = entries(session, srow)
    return StudyView(srow, run, themes, key_of, base, strength, suggested, joined, segments, log, cb.fold(log))


# ---------------------------------------------------------------------------------------------
# Deciding
# ---------------------------------------------------------------------------------------------


def _text(intent: Mapping, name: str) -> str | None:
    value = intent.get(name)
    return None if value is None else str(value).strip()


def _seg_ids(values: Any) -> list[int]:
    if values is None or values == "":
        return []
    if isinstance(values, str):
        values = [v for v in re.split(r"[;,\s]+", values) if v]
    try:
        return [int(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise DecisionError([f"segment ids must be whole numbers ({exc})"]) from exc


def _keys(values: Any) -> list[str]:
    if values is None or values == "":
        return []
    if isinstance(values, str):
        values = [v for v in re.split(r"[;,\s]+", values) if v]
    return [str(v) for v in values]


def _theme_before(view: StudyView, key: str) -> dict:
    run_id, theme_id = view.theme_ref(key)
    st = view.state.themes.get(key)
    return {"status": view.status(key), "name": st.name if st else None, "label": view.title(key),
            "definition": st.definition if st else "", "run_id": run_id, "theme_id": theme_id,
            "members": view.members(key)}


def next_key(view: StudyView, prefix: str) -> str:
    n = 1
    while view.status(f"{prefix}.{n}") is not None:
        n += 1
    return f"{prefix}.{n}"


def build_entry(view: StudyView, intent: Mapping[str, Any], coder: str, store: Store | None = None) -> cb.Entry:
    """A full decision (before/after payload, theme reference) from what a coder asked for.

    ``intent`` holds ``action`` and the action's fields (see ``pipeline.learn.codebook``); a ``before`` given
    (a CSV import) is kept as it is, otherwise it is taken from the view. ``uid`` and ``created_at`` may
    be given (imports); they are generated otherwise.
    """
    action = str(intent.get("action") or "").strip()
    key = _text(intent, "theme_key") or None
    after: dict[str, Any] = {}
    before: dict[str, Any] = {}
    if action in (cb.CONFIRM, cb.RENAME, cb.REJECT, cb.SPLIT):
        if key is None:
            raise DecisionError(["choose a theme"])
        before = _theme_before(view, key)
        if action == cb.CONFIRM:
            examples = _seg_ids(intent.get("examples")) if intent.get("examples") not in (None, "") else view.members(key)
            after = {"name": _text(intent, "name"), "definition": _text(intent, "definition"), "examples": examples}
        elif action == cb.RENAME:
            after = {"name": _text(intent, "name")}
            if _text(intent, "definition"):
                after["definition"] = _text(intent, "definition")
        elif action == cb.REJECT:
            after = {"reason": _text(intent, "reason")}
        else:
            after = _split_after(view, key, intent, store)
    elif action == cb.MERGE:
        keys = _keys(intent.get("themes"))
        into = _text(intent, "into") or key or (keys[0] if keys else None)
        key = into
        before = {"themes": {k: _theme_before(view, k) for k in dict.fromkeys(keys)}}
        after = {"into": into, "themes": keys}
        for f in ("name", "definition"):
            if _text(intent, f):
                after[f] = _text(intent, f)
    elif action in (cb.MOVE, cb.ADD_SEGMENT):
        segs = _seg_ids(intent.get("segment_ids"))
        to = _text(intent, "to") or None
        before = {"from": {str(s): view.partition.get(s) for s in segs}}
        after = {"segment_ids": segs, "to": to}
        key = key or to or next((view.partition.get(s) for s in segs if view.partition.get(s)), None)
    elif action == cb.ADD_THEME:
        segs = _seg_ids(intent.get("segment_ids"))
        key = key or f"own-{uuid.uuid4().hex[:8]}"
        before = {"from": {str(s): view.partition.get(s) for s in segs}}
        after = {"name": _text(intent, "name"), "definition": _text(intent, "definition"), "segment_ids": segs}
    elif action == cb.UNDO:
        last = view.state.last_of(coder)
        undoes = _text(intent, "undoes") or (last.uid if last else None)
        target = next((e for e in view.entries if e.uid == undoes), None)
        key = target.theme_key if target else None
        before = {"action": target.action if target else None, "coder": target.coder if target else None}
        after = {"undoes": undoes}
    else:
        raise DecisionError([f"unknown action '{action}' (one of {', '.join(cb.ACTIONS)})"])
    if isinstance(intent.get("before"), Mapping) and intent.get("before"):
        before = dict(intent["before"])
    run_id, theme_id = view.theme_ref(key)
    if intent.get("run_id") not in (None, ""):
        run_id = int(intent["run_id"])
        theme_id = int(intent["theme_id"]) if intent.get("theme_id") not in (None, "") else None
    created = intent.get("created_at")
    if isinstance(created, str) and created:
        created = datetime.fromisoformat(created)
    if isinstance(created, datetime) and created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    return cb.Entry(uid=str(intent.get("uid") or uuid.uuid4()), action=action, coder=coder, theme_key=key,
                    run_id=run_id, theme_id=theme_id, before=before, after=after,
                    created_at=created or datetime.now(timezone.utc))


def _split_after(view: StudyView, key: str, intent: Mapping, store: Store | None) -> dict:
    if intent.get("parts"):
        parts = [dict(p) for p in intent["parts"]]
        return {"parts": parts, "method": intent.get("method") or "given", "k": len(parts)}
    if store is None:
        raise DecisionError(["a split needs its parts"])
    proposal = split_proposal(store, view, key, int(intent.get("k") or 2), str(intent.get("method") or "kmeans"))
    names = list(intent.get("names") or [])
    members = view.members(key)
    parts = []
    for p in range(proposal.k):
        child = f"{key}.{p + 1}"
        n = p + 1
        while view.status(child) is not None:
            n += proposal.k
            child = f"{key}.{n}"
        parts.append({"key": child, "name": (names[p] if p < len(names) else "").strip(),
                      "segment_ids": [members[i] for i in range(len(members)) if proposal.labels[i] == p]})
    return {"parts": parts, "method": proposal.method, "k": proposal.k}


def _with_split_parts(store: Store, study: str, intent: dict, run_id: int | None) -> dict:
    """Work out a split's parts before the write lock is taken (it may need to embed); validation
    under the lock then refuses the split if the theme changed in between."""
    if intent.get("action") != cb.SPLIT or intent.get("parts") or not intent.get("theme_key"):
        return intent
    with store.sessions() as session:
        view = load_view(session, study, run_id)
    if view.status(str(intent["theme_key"])) not in cb.ACTIVE:
        return intent
    return {**intent, **_split_after(view, str(intent["theme_key"]), intent, store)}


def split_proposal(store: Store, view: StudyView, key: str, k: int, method: str):
    """Re-cluster the current members of ``key`` on their cached vectors (the run's embedding model)."""
    members = view.members(key)
    if len(members) < max(2, k):
        raise DecisionError([f"theme has {len(members)} segments: too few to split into {k} parts"])
    vectors = segment_vectors(store, view, members)
    try:
        return propose_split(vectors, k, method)
    except ValueError as exc:
        raise DecisionError([str(exc)]) from exc


def model_id_of(view_or_run: StudyView | Run | None) -> str:
    run = view_or_run.run if isinstance(view_or_run, StudyView) else view_or_run
    if run is not None and (run.manifest or {}).get("model", {}).get("id"):
        return run.manifest["model"]["id"]
    from pipeline.config import load_config
    from pipeline.embed.encoder import Embedder

    return Embedder.from_config(load_config()["embed"]).model_id


def segment_vectors(store: Store, view_or_run: StudyView | Run | None, segment_ids: Sequence[int]) -> np.ndarray:
    """Cached vectors of segments (embedded now, and cached, only if some are missing)."""
    with store.sessions() as session:
        rows = dict(session.execute(select(Segment.id, Segment.text).where(Segment.id.in_(list(segment_ids)))).all())
    texts = [rows[s] for s in segment_ids]
    from pipeline.embed.encoder import Embedder, text_hash

    model_id = model_id_of(view_or_run)
    hashes = [text_hash(t) for t in texts]
    cached = store.cached_vectors(model_id, hashes)
    missing = [i for i, h in enumerate(hashes) if h not in cached]
    if missing:
        from pipeline.config import load_config

        embedder = Embedder.from_config(load_config()["embed"])
        if embedder.model_id != model_id:
            raise DecisionError([f"vectors of model {model_id} are not cached for every segment"])
        fresh = embedder.encode([texts[i] for i in missing])
        store.cache_vectors(model_id, [hashes[i] for i in missing], fresh)
        cached.update({hashes[i]: v for i, v in zip(missing, fresh)})
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([cached[h] for h in hashes])


def decide(store: Store, study: str, coder: str, intent: Mapping[str, Any], via: str = "web",
           run_id: int | None = None) -> Decision:
    """Validate and append one decision in one short transaction; raise :class:`DecisionError` (and
    change nothing) when it is refused."""
    return decide_many(store, study, [(coder, intent)], via, run_id)[0]


def decide_many(store: Store, study: str, items: Sequence[tuple[str, Mapping[str, Any]]], via: str = "web",
                run_id: int | None = None, skip_known_uids: bool = False) -> list[Decision]:
    """Several decisions, all or none (a CSV import); each is validated against the log before it."""
    items = [(c, _with_split_parts(store, study, dict(i), run_id)) for c, i in items]
    out: list[Decision] = []
    with store.transaction() as session:
        lock_study(session)
        srow = study_row(session, study)
        lock_study(session, srow)
        known = set(session.scalars(select(Decision.uid).where(Decision.study_id == srow.id))) if skip_known_uids else set()
        errors: list[str] = []
        view = None
        for n, (coder, intent) in enumerate(items, start=1):
            where = f"row {n}: " if len(items) > 1 else ""
            if skip_known_uids and intent.get("uid") in known:
                continue
            name = (coder or "").strip()
            if not name:
                errors.append(f"{where}every decision needs a coder")
                continue
            if len(name) > 200:
                errors.append(f"{where}coder name is longer than 200 characters")
                continue
            coder_row = coder_named(session, name)
            if coder_row.kind != "human":
                errors.append(f"{where}'{name}' is a {coder_row.kind} coder, not a person")
                continue
            if view is None:
                view = load_view(session, srow, run_id)
            try:
                entry = build_entry(view, intent, name, store)
            except (DecisionError, ValueError, TypeError) as exc:
                errors.extend(where + e for e in getattr(exc, "errors", [str(exc)]))
                continue
            problems = cb.validate(view.state, entry, view.base_keys, view.segment_exists, view.partition)
            if entry.run_id is not None and (session.get(Run, entry.run_id) is None
                                             or session.get(Run, entry.run_id).study_id != srow.id):
                problems.append(f"run {entry.run_id} is not a run of this study")
            if entry.theme_id is not None and (session.get(Theme, entry.theme_id) is None
                                               or session.get(Theme, entry.theme_id).run_id != entry.run_id):
                problems.append(f"theme {entry.theme_id} is not a theme of run {entry.run_id}")
            if problems:
                errors.extend(where + p for p in problems)
                continue
            out.append(append(session, srow, coder_row, entry, via))
            view = view.with_entry(out[-1].entry())
        if errors:
            raise DecisionError(errors)
    return out


# ---------------------------------------------------------------------------------------------
# Reading segments for pages
# ---------------------------------------------------------------------------------------------


def segments_by_id(session: Session, ids: Sequence[int]) -> dict[int, Segment]:
    rows = session.scalars(select(Segment).where(Segment.id.in_(list(ids)))) if ids else []
    return {s.id: s for s in rows}


@dataclass(frozen=True)
class Context:
    """A segment in its transcript: ``before`` + ``quote`` + ``after`` is a slice of the source text."""

    source: str
    before: str
    quote: str
    after: str
    clipped_start: bool
    clipped_end: bool


def segment_context(session: Session, segment: Segment, turns: int = 2, max_chars: int = 3000) -> Context:
    """The turns around a segment (``turns`` before and after), the quote located by its offsets."""
    source = segment.source
    text = source.text
    lo, hi = segment.turn_index - turns, segment.turn_index + turns
    start, end = session.execute(
        select(func.min(Segment.start), func.max(Segment.end))
        .where(Segment.source_id == source.id, Segment.turn_index >= lo, Segment.turn_index <= hi)).one()
    start = min(start if start is not None else segment.start, segment.start)
    end = max(end if end is not None else segment.end, segment.end)
    start = text.rfind("\n", 0, start) + 1           # from the start of the line (speaker label)
    line_end = text.find("\n", end)
    end = len(text) if line_end < 0 else line_end
    clipped_start = clipped_end = False
    if segment.start - start > max_chars // 2:
        start, clipped_start = segment.start - max_chars // 2, True
    if end - segment.end > max_chars // 2:
        end, clipped_end = segment.end + max_chars // 2, True
    return Context(source.name, text[start:segment.start], text[segment.start:segment.end], text[segment.end:end],
                   clipped_start or bool(text[:start].strip()), clipped_end or bool(text[end:].strip()))


def search_segments(session: Session, study: Study, query: str, limit: int = 50, offset: int = 0
                    ) -> tuple[list[Segment], int]:
    """Participant segments holding every word of ``query`` (case-insensitive), in transcript order."""
    words = [w for w in query.split() if w][:10]
    if not words:
        return [], 0
    q = (select(Segment).join(Source, Source.id == Segment.source_id)
         .where(Source.study_id == study.id, Segment.role == "participant"))
    if hasattr(Source, "retired_at"):  # sources the latest run no longer saw take no part
        q = q.where(Source.retired_at.is_(None))
    for w in words:
        q = q.where(func.lower(Segment.text).contains(w.lower(), autoescape=True))
    total = session.scalar(select(func.count()).select_from(q.subquery()))
    rows = list(session.scalars(q.order_by(Source.name, Segment.start).limit(limit).offset(offset)))
    return rows, int(total or 0)


# ---------------------------------------------------------------------------------------------
# The decision CSV
# ---------------------------------------------------------------------------------------------

CSV_COLUMNS = ("uid", "created_at", "coder", "action", "run_id", "theme_id", "theme_key", "name", "definition",
               "reason", "themes", "into", "segment_ids", "to", "undoes", "before", "after")


def export_decisions(session: Session, study: str, out: io.TextIOBase | None = None) -> str:
    """The study's decision log as CSV text (columns: :data:`CSV_COLUMNS`, documented in docs/review.md)."""
    buffer = out or io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for e in entries(session, study):
        a = e.after
        segs = a.get("segment_ids")
        writer.writerow({
            "uid": e.uid, "created_at": e.created_at.isoformat() if e.created_at else "", "coder": e.coder,
            "action": e.action, "run_id": e.run_id if e.run_id is not None else "",
            "theme_id": e.theme_id if e.theme_id is not None else "", "theme_key": e.theme_key or "",
            "name": a.get("name") or "", "definition": a.get("definition") or "", "reason": a.get("reason") or "",
            "themes": ";".join(a.get("themes") or ()), "into": a.get("into") or "",
            "segment_ids": ";".join(map(str, segs)) if segs else "", "to": a.get("to") or "",
            "undoes": a.get("undoes") or "",
            "before": json.dumps(e.before, ensure_ascii=False, sort_keys=True),
            "after": json.dumps(e.after, ensure_ascii=False, sort_keys=True),
        })
    return buffer.getvalue() if out is None else ""


def read_decision_csv(data: str) -> list[tuple[str, dict]]:
    """Rows of a decision CSV as ``(coder, intent)``; flat columns win over the ``after`` JSON."""
    reader = csv.DictReader(io.StringIO(data.lstrip("\ufeff")))
    columns = {c.strip().lower() for c in reader.fieldnames or []}
    missing = {"coder", "action"} - columns
    if missing:
        raise DecisionError([f"the CSV lacks the column(s) {', '.join(sorted(missing))}; columns are "
                             + ", ".join(CSV_COLUMNS)])
    items: list[tuple[str, dict]] = []
    errors: list[str] = []
    for n, raw in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k}
        intent: dict[str, Any] = {}
        for col in ("after", "before"):
            if row.get(col):
                try:
                    value = json.loads(row[col])
                except json.JSONDecodeError as exc:
                    errors.append(f"line {n}: column {col} is not JSON ({exc.msg})")
                    continue
                if not isinstance(value, dict):
                    errors.append(f"line {n}: column {col} must hold a JSON object")
                    continue
                if col == "after":
                    intent.update(value)
                else:
                    intent["before"] = value
        for col in ("uid", "created_at", "action", "run_id", "theme_id", "theme_key", "name", "definition",
                    "reason", "themes", "into", "segment_ids", "to", "undoes"):
            if row.get(col):
                intent[col] = row[col]
        items.append((row.get("coder", ""), intent))
    if errors:
        raise DecisionError(errors)
    return items


def import_decisions(store: Store, study: str, data: str) -> tuple[int, int]:
    """Append the CSV's decisions (all or none); rows whose uid is already in the log are skipped.
    Returns ``(added, skipped)``."""
    items = read_decision_csv(data)
    with store.sessions() as session:
        srow = study_row(session, study)
        known = set(session.scalars(select(Decision.uid).where(Decision.study_id == srow.id)))
    skipped = sum(1 for _, i in items if i.get("uid") in known)
    added = decide_many(store, study, items, via="import", skip_known_uids=True)
    return len(added), skipped


# ---------------------------------------------------------------------------------------------
# The confirmed codebook
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodebookEntry:
    key: str
    name: str
    definition: str
    n_segments: int
    n_cases: int
    example_ids: tuple[int, ...]
    decided_by: str


def confirmed_codebook(session: Session, study: str, coder: str | None = None) -> list[CodebookEntry]:
    """Confirmed themes (the whole team's log, or one coder's), in list order."""
    view = load_view(session, study)
    if coder is not None:
        own = [e for e in view.entries if e.coder == coder]
        view = replace(view, entries=own, state=cb.fold(own))
    out = []
    for r in view.rows():
        if r.status != cb.CONFIRMED:
            continue
        st = view.state.themes[r.key]
        members = view.members(r.key)
        out.append(CodebookEntry(r.key, st.title, st.definition, len(members), len(view.cases_of(members)),
                                 tuple(r.quote_ids[:3]), ", ".join(sorted(st.decided_by))))
    return out


def write_codebook(entries_: Sequence[CodebookEntry], path: Path | None, fmt: str, study: str) -> str:
    """CSV text (returned; also written when ``path`` is given) or a REFI-QDA ``.qdc`` file at ``path``."""
    if fmt == "qdc":
        from pipeline.exchange.refi_qda import QdaCode, stable_guid, write_qdc

        if path is None:
            raise ValueError("a .qdc codebook needs a file name")
        write_qdc([QdaCode(stable_guid("themesift-code", study, e.key), e.name, e.definition) for e in entries_], path)
        return ""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["key", "name", "definition", "segments", "participants", "example_segment_ids", "decided_by"])
    for e in entries_:
        writer.writerow([e.key, e.name, e.definition, e.n_segments, e.n_cases, ";".join(map(str, e.example_ids)),
                         e.decided_by])
    if path is not None:
        Path(path).write_text(buffer.getvalue(), encoding="utf-8")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Honouring decisions in the next run, and deductive coding
# ---------------------------------------------------------------------------------------------


@dataclass
class HonourInputs:
    """What the next suggest run needs from the decision log (see ``pipeline.learn.honour``).

    ``kept``: key -> (name, definition, example segment ids) for themes to carry forward;
    ``example_vectors`` / ``rejected_vectors``: key -> (n, dim) arrays; ``rejected_names``: key -> name;
    ``fixed``: (source sha256, start, end) -> kept key, or :data:`pipeline.learn.honour.FIXED_NONE` for
    segments a coder moved to "no theme"; ``competitor_vectors``: key -> member vectors of the latest
    run's other themes (open but not kept) and of rejected themes, which compete with kept themes in
    classification; ``decisions``: how many decisions were honoured.
    """

    kept: dict[str, tuple[str, str, tuple[int, ...]]]
    example_vectors: dict[str, np.ndarray]
    rejected_vectors: dict[str, np.ndarray]
    competitor_vectors: dict[str, np.ndarray]
    rejected_names: dict[str, str]
    fixed: dict[tuple[str, int, int], str]
    decisions: int
    last_uid: str | None

    def calibrations(self, review_cfg: Mapping[str, Any]) -> dict[str, Calibration]:
        return calibrate(self.example_vectors, review_cfg["calibration_percentile"], review_cfg["min_similarity"])

    def rejected_centroids(self) -> dict[str, np.ndarray]:
        return rejected_centroids(self.rejected_vectors)

    def competitor_centroids(self) -> dict[str, np.ndarray]:
        return rejected_centroids(self.competitor_vectors)

    def fixed_for(self, segments: Sequence[Any]) -> list[str | None]:
        """For ``pipeline.learn.honour.plan_segments``: one entry per segment (objects with ``source_sha256``,
        ``start``, ``end``, such as ``pipeline.ingest.segment.Segment``)."""
        return [self.fixed.get((s.source_sha256, s.start, s.end)) for s in segments]


def honour_inputs(store: Store, study: str) -> HonourInputs | None:
    """Gather the decision log's effect for the next run of ``study``; None when the study or its log
    is empty (the run then proceeds as before)."""
    with store.sessions() as session:
        try:
            view = load_view(session, study)
        except StudyNotFoundError:
            return None
        if not view.entries:
            return None
        kept = {t.key: (t.title, t.definition, tuple(view.members(t.key))) for t in view.state.kept()}
        kept = {k: v for k, v in kept.items() if v[2]}
        rejected = {t.key: tuple(t.members) for t in view.state.rejected() if t.members}
        others = {r.key: tuple(view.members(r.key)) for r in view.rows()
                  if r.status in cb.ACTIVE and r.key not in kept and view.members(r.key)}
        ids = sorted({s for v in kept.values() for s in v[2]} | {s for v in rejected.values() for s in v}
                     | set(view.state.assignments))
        where = {sid: (sha, start, end) for sid, sha, start, end in session.execute(
            select(Segment.id, Source.sha256, Segment.start, Segment.end).join(Source, Source.id == Segment.source_id)
            .where(Segment.id.in_(ids)))} if ids else {}
        fixed: dict[tuple[str, int, int], str] = {}
        for key, (_, _, members) in kept.items():
            for s in members:
                fixed[where[s]] = key
        for s, target in view.state.assignments.items():
            if target is None and s in where:
                fixed[where[s]] = FIXED_NONE
        names = {t.key: t.title for t in view.state.rejected()}
    example_vectors = {k: segment_vectors(store, view, list(v[2])) for k, v in kept.items()}
    rejected_vectors = {k: segment_vectors(store, view, list(v)) for k, v in rejected.items()}
    competitors = {**{k: segment_vectors(store, view, list(v)) for k, v in others.items()}, **rejected_vectors}
    return HonourInputs(kept, example_vectors, rejected_vectors, competitors, names, fixed, len(view.entries),
                        view.entries[-1].uid if view.entries else None)


@dataclass
class ApplyResult:
    coder: str
    n_segments: int
    assigned: dict[int, str]          # segment id -> theme name
    uncertain: dict[int, tuple[str, float, float]]  # segment id -> (theme name, similarity, threshold)
    themes: int


def apply_codebook(store: Store, study: str, review_cfg: Mapping[str, Any]) -> ApplyResult:
    """Code every clustered segment of the latest run with the confirmed codebook alone (classification
    from each confirmed theme's current members) and store it as the coding of :data:`APPLY_CODER`
    (``models.codings``, kind machine; replacing the previous apply). Only confirmed themes are coded;
    the run's other themes and rejected themes only compete (a segment nearer to one of them stays
    uncoded), so a broad theme does not absorb what the codebook does not cover. Themes of the second
    pass over the left-out segments (``Theme.second_pass``) do not compete until a coder rejects them:
    their segments are coded as they were when they waited in the outlier queue."""
    with store.sessions() as session:
        view = load_view(session, study)
        if view.run is None:
            raise StudyNotFoundError(f"study '{study}' has no completed run yet; run themesift suggest first")
        confirmed = [t for t in view.state.confirmed() if view.members(t.key)]
        segs = sorted(view.base)
        confirmed_keys = {t.key for t in confirmed}
        second_pass = {k for k, t in view.themes.items() if t.second_pass}
        others = {r.key: view.members(r.key) for r in view.rows()
                  if r.key not in confirmed_keys | second_pass and r.status in cb.ACTIVE and view.members(r.key)}
        others.update({t.key: list(t.members) for t in view.state.rejected() if t.members})
    if not confirmed:
        raise DecisionError(["no confirmed theme with segments yet: confirm themes in the review first"])
    names = {t.key: t.title for t in confirmed}
    examples = {t.key: segment_vectors(store, view, view.members(t.key)) for t in confirmed}
    calibrations = calibrate(examples, review_cfg["calibration_percentile"], review_cfg["min_similarity"])
    competitors = rejected_centroids({k: segment_vectors(store, view, v) for k, v in others.items()})
    results = classify(segment_vectors(store, view, segs), calibrations, review_cfg["uncertain_margin"], competitors)
    assigned = {s: names[a.key] for s, a in zip(segs, results) if a.status == "assigned"}
    uncertain = {s: (names[a.key], a.similarity, a.threshold) for s, a in zip(segs, results) if a.status == "uncertain"}
    digest = view.entries[-1].uid if view.entries else "-"
    with store.transaction() as session:
        replace_codings(session, study, {APPLY_CODER: {s: [n] for s, n in assigned.items()}},
                        origin=f"themesift apply: run {view.run.id}, {len(confirmed)} confirmed themes, "
                               f"decision log up to {digest}", kind=MACHINE)
    return ApplyResult(APPLY_CODER, len(segs), assigned, uncertain, len(confirmed))


def run_diff(session: Session, study: str, old_run: int | None = None, new_run: int | None = None,
             match_jaccard: float = 0.5):
    """What changed between two runs of a study (default: the two latest completed ones)."""
    srow = study_row(session, study)
    runs = list(session.scalars(select(Run).where(Run.study_id == srow.id, Run.status == "completed")
                                .order_by(Run.id.desc())))
    if new_run is None:
        new_run = runs[0].id if runs else None
    if old_run is None:
        older = [r.id for r in runs if new_run is not None and r.id < new_run]
        old_run = older[0] if older else None
    if new_run is None or old_run is None:
        return None, None, []

    def themes_of(run_id: int) -> list[RunTheme]:
        keys = run_theme_keys(session, run_id)
        members: dict[int, set[int]] = {}
        for seg, theme_id in session.execute(select(Membership.segment_id, Membership.theme_id)
                                             .where(Membership.run_id == run_id, Membership.theme_id.is_not(None))):
            members.setdefault(theme_id, set()).add(seg)
        labels = dict(session.execute(select(Theme.id, Theme.label).where(Theme.run_id == run_id)).all())
        return [RunTheme(keys[t], labels[t], frozenset(members.get(t, ()))) for t in keys]

    return old_run, new_run, diff_runs(themes_of(old_run), themes_of(new_run), match_jaccard)


def coder_counts(view: StudyView) -> Counter:
    return Counter(e.coder for e in view.entries)


__all__ = [
    "APPLY_CODER", "CSV_COLUMNS", "ApplyResult", "CodebookEntry", "Context", "DecisionError", "HonourInputs",
    "StudyView", "ThemeRow", "apply_codebook", "build_entry", "confirmed_codebook", "decide", "decide_many",
    "default_key", "export_decisions", "honour_inputs", "import_decisions", "load_view", "read_decision_csv",
    "run_diff", "search_segments", "segment_context", "segment_vectors", "split_proposal", "write_codebook",
]
