"""Review on top of the store: a study's current view (latest run + decision log) read back, deciding, the
decision log and the confirmed codebook read out, and what a run or ``themesift apply`` needs from the log.

The logic lives in ``pipeline``: folding and validating the log (``pipeline.learn.codebook``), honouring
decisions and coding with the codebook (``pipeline.learn.apply``), the files (``pipeline.exchange``); the
review page's own view of a study, its ranked list, is ``web.views``.

Every decision goes through :func:`decide`: one short transaction that takes the study's write lock, folds
the log, builds the decision's before/after from what is stored, validates it
(``pipeline.learn.codebook.validate``) and appends it; a decision that fails validation raises
``pipeline.learn.codebook.DecisionError`` and changes nothing.
"""

from __future__ import annotations

import io
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.codings import MACHINE, replace_codings
from models.decisions import (BLIND, Decision, append, coder_named, entries, lock_study, run_theme_keys, study_row,
                              team_settings)
from models.records import Membership, Run, Segment, Source, Study, Theme
from models.store import Store, StudyNotFoundError
from pipeline.config import ReviewSettings
from pipeline.exchange.codebook_export import CodebookEntry
from pipeline.exchange.decision_log import read_decision_csv, write_decision_csv
from pipeline.learn import codebook as cb
from pipeline.learn.apply import (ApplyResult, HonourInputs, code_with_codebook, code_with_learner, decision_labels,
                                  teach_batch)
from pipeline.learn.codebook import DecisionError
from pipeline.learn.honour import FIXED_NONE, RunTheme, diff_runs
from pipeline.textquery import matches, parse_query
from pipeline.themes.split import propose_split


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
    partition: dict[int, str | None] = field(default_factory=dict)  # segment -> its place (one theme)
    codes: dict[int, tuple[str, ...]] = field(default_factory=dict)  # segment -> every theme it carries

    def joined(self, segment: int) -> float | None:
        """The similarity with which ``segment`` joined its run theme from the outlier queue; None when
        the clustering put it in its theme, or it stayed in the queue."""
        return self.joined_from_queue.get(segment)

    def __post_init__(self) -> None:
        self.partition = self.state.partition(self.base, self.base_keys)
        self.codes = self.state.codes(self.base, self.base_keys)
        self._members: dict[str | None, list[int]] = {}
        for seg, keys in sorted(self.codes.items()):
            for key in keys or (None,):
                self._members.setdefault(key, []).append(seg)
        self.total_cases = len({self.segments[s].case for s in self.base if s in self.segments
                                and self.segments[s].case})

    @property
    def base_keys(self) -> set[str]:
        return set(self.themes)

    def segment_exists(self, seg: int) -> bool:
        return seg in self.segments

    def members(self, key: str) -> list[int]:
        """Every segment carrying ``key`` (its place, or a code given beside another)."""
        return list(self._members.get(key, ()))

    def outliers(self) -> list[int]:
        """The outlier queue: the run's segments carrying no theme now."""
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

    def keys(self) -> list[str]:
        """Every theme in list order: the run's themes by rank, then those coders made."""
        return list(self.themes) + [k for k in self.state.themes if k not in self.themes]

    def active_keys(self) -> list[str]:
        """Themes open for segments, in list order."""
        return [k for k in self.keys() if (self.status(k) or cb.NEW) in cb.ACTIVE]

    def members_shown(self, key: str) -> list[int]:
        """The segments a theme's line counts: its members while it is open; once a coder rejected, merged
        or split it, the members it had then."""
        st = self.state.themes.get(key)
        return self.members(key) if (self.status(key) or cb.NEW) in cb.ACTIVE else list(st.members if st else ())

    def quote_ids(self, key: str) -> list[int]:
        """Up to four segments that show a theme: the run's quotes still in it, then its strongest members."""
        theme = self.themes.get(key)
        quotes = [q for q in (theme.quotes if theme is not None else []) if key in self.codes.get(q, ())]
        quotes += [m for m in sorted(self.members_shown(key), key=lambda s: -self.strength.get(s, 0.0))
                   if m not in quotes]
        return quotes[:4]

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


def load_view(session: Session, study: str | Study, run_id: int | None = None,
              cls: type[StudyView] = StudyView, coder: str | None = None) -> StudyView:
    """The study as a coder sees it now (``run_id``: a given run instead of the latest completed one), as a
    ``cls`` (the review page's ``web.views.ReviewView`` adds its ranked list). ``coder``: only that coder's
    own decisions (blind double coding, ``pipeline.learn.codebook.own_entries``); else the whole log, the
    team's consensus."""
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
    if coder is not None:
        log = cb.own_entries(log, coder)
    return cls(srow, run, themes, key_of, base, strength, suggested, joined, segments, log, cb.fold(log))


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
    elif action in (cb.CODE, cb.UNCODE):
        segs = _seg_ids(intent.get("segment_ids"))
        field_name = "to" if action == cb.CODE else "from"
        target = _text(intent, field_name) or key
        before = {"codes": {str(s): list(view.codes.get(s, ())) for s in segs}}
        after = {"segment_ids": segs, field_name: target}
        key = target
    elif action == cb.ANSWER:
        segs = _seg_ids(intent.get("segment_ids"))
        answer = _text(intent, "answer")
        proposed = _text(intent, "proposed") or None
        given = _keys(intent.get("to"))
        shown = _keys(intent.get("shown"))
        if answer == "none":  # "none of these": every theme shown is one it is not in
            answer, given = "no", []
        if answer == "ticked":  # the page's checkboxes: what was ticked says which answer it is
            answer = "no" if not given else "yes" if given == [proposed] else "other"
        before = {"codes": {str(s): list(view.codes.get(s, ())) for s in segs}, "proposed": proposed,
                  "probability": intent.get("probability")}
        after = {"segment_ids": segs, "answer": answer, "proposed": proposed}
        if given and answer != "yes":
            after["to"] = given
        # the page says which themes were shown; a decision CSV says which were left unticked
        kept = proposed if answer == "yes" else None
        unticked = list(dict.fromkeys([k for k in shown if k not in given and k != kept]
                                      + [k for k in _keys(intent.get("not")) if k not in given]))
        if unticked:
            after["not"] = unticked
        if answer == "new":
            key = key or f"own-{uuid.uuid4().hex[:8]}"
            after["name"] = _text(intent, "name")
            after["definition"] = _text(intent, "definition") or ""
        else:
            key = given[0] if answer == "other" and given else proposed
    elif action == cb.IMPORT_CODE:
        key = key or f"code-{uuid.uuid4().hex[:8]}"
        after = {"name": _text(intent, "name"), "definition": _text(intent, "definition") or ""}
        for f in ("color", "parent", "origin"):
            if _text(intent, f):
                after[f] = _text(intent, f)
        if str(intent.get("codable", "")).strip().lower() in ("false", "0"):
            after["codable"] = False
    elif action == cb.ADD_THEME:
        segs = _seg_ids(intent.get("segment_ids"))
        key = key or f"own-{uuid.uuid4().hex[:8]}"
        before = {"from": {str(s): view.partition.get(s) for s in segs}}
        after = {"name": _text(intent, "name"), "definition": _text(intent, "definition"), "segment_ids": segs}
    elif action == cb.SETTLE:
        kind = _text(intent, "kind")
        after = {"kind": kind, "took": _text(intent, "took") or None}
        if kind == "segment":
            segs = _seg_ids(intent.get("segment_ids"))
            after.update(segment_ids=segs, codes=_keys(intent.get("codes")))
            before = {"codes": {str(s): list(view.codes.get(s, ())) for s in segs}}
            key = after["codes"][0] if after["codes"] else None
        else:
            if key is None:
                raise DecisionError(["choose a theme"])
            before = _theme_before(view, key)
            after["status"] = _text(intent, "status")
            for f in ("name", "definition", "reason", "into"):
                if _text(intent, f):
                    after[f] = _text(intent, f)
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
    k = str(intent.get("k") or 2).strip()
    if not k.isdigit() or int(k) < 2:
        raise DecisionError([f"a split's k (parts) must be a whole number of 2 or more, not '{k}'"])
    proposal = split_proposal(store, view, key, int(k), str(intent.get("method") or "kmeans"))
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


def _with_split_parts(store: Store, study: str, intent: dict, run_id: int | None, coder: str | None = None) -> dict:
    """Work out a split's parts before the write lock is taken (it may need to embed); validation
    under the lock then refuses the split if the theme changed in between. ``coder``: on their own view."""
    if intent.get("action") != cb.SPLIT or intent.get("parts") or not intent.get("theme_key"):
        return intent
    with store.sessions() as session:
        view = load_view(session, study, run_id, coder=coder)
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


def representative_quotes(store: Store, view: StudyView, key: str) -> list[int]:
    """Segments that show a theme. A run's theme: the run's quotes (``StudyView.quote_ids``). A theme coders
    made (a split part, an own theme): its members nearest their centre, as the run picks quotes
    (``ThemeDescriber.pick_quotes``: long enough, one per participant while possible), not the strongest by
    the clustering, which knew nothing of the part."""
    members = view.members_shown(key)
    if key in view.themes or not members:
        return view.quote_ids(key)
    try:
        vectors = segment_vectors(store, view, members)
    except DecisionError:
        return view.quote_ids(key)
    centre = vectors.mean(axis=0)
    centre /= max(float(np.linalg.norm(centre)), 1e-12)
    with store.sessions() as session:
        texts = dict(session.execute(select(Segment.id, Segment.text).where(Segment.id.in_(members))).all())
    picked = _describer().pick_quotes(np.arange(len(members)), vectors @ centre,
                                      [view.segments[s].case for s in members],
                                      [len(texts.get(s, "").split()) for s in members])
    return [members[i] for i in picked]


@lru_cache(maxsize=1)
def _describer():
    from pipeline.config import load_config
    from pipeline.themes.describe import ThemeDescriber

    return ThemeDescriber.from_config(load_config()["describe"])


def model_id_of(view_or_run: StudyView | Run | None) -> str:
    run = view_or_run.run if isinstance(view_or_run, StudyView) else view_or_run
    if run is not None and (run.manifest or {}).get("model", {}).get("id"):
        return run.manifest["model"]["id"]
    from pipeline.config import load_config
    from pipeline.embed.encoder import Embedder

    return Embedder.from_config(load_config()["embed"]).model_id


def segment_vectors(store: Store, view_or_run: StudyView | Run | None, segment_ids: Sequence[int],
                    embedder: Any = None) -> np.ndarray:
    """Cached vectors of segments (embedded now, and cached, only if some are missing): the run's model's, or
    ``embedder``'s (a ``pipeline.embed.encoder.Embedder``, e.g. of an adapted encoder, cached under its own
    model id)."""
    with store.sessions() as session:
        texts = _segment_texts(session, list(segment_ids))
    return _text_vectors(store, view_or_run, texts, embedder)


def _text_vectors(store: Store, view_or_run: StudyView | Run | None, texts: Sequence[str],
                 embedder: Any = None) -> np.ndarray:
    """:func:`segment_vectors` of segments whose ``texts`` are already read."""
    from pipeline.embed.encoder import Embedder, text_hash

    model_id = embedder.model_id if embedder is not None else model_id_of(view_or_run)
    hashes = [text_hash(t) for t in texts]
    cached = store.cached_vectors(model_id, hashes)
    missing = [i for i, h in enumerate(hashes) if h not in cached]
    if missing:
        embedder = embedder if embedder is not None else _run_embedder(view_or_run)
        if embedder.model_id != model_id:
            raise DecisionError([f"vectors of model {model_id} are not cached for every segment"])
        fresh = embedder.encode([texts[i] for i in missing])
        store.cache_vectors(model_id, [hashes[i] for i in missing], fresh)
        cached.update({hashes[i]: v for i, v in zip(missing, fresh)})
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([cached[h] for h in hashes])


def _run_embedder(view_or_run: StudyView | Run | None) -> Any:
    """The embedder the run's configuration names (its manifest), so texts it never saw (a theme's name) get
    vectors of the same model; the default configuration's where the manifest has none it can use."""
    from pipeline.config import ConfigError, load_config
    from pipeline.embed.encoder import Embedder

    run = view_or_run.run if isinstance(view_or_run, StudyView) else view_or_run
    section = ((run.manifest or {}).get("config") or {}).get("embed") if run is not None else None
    if section:
        try:
            return Embedder.from_config(section)
        except ConfigError:  # a run made under settings this version no longer reads
            pass
    return Embedder.from_config(load_config()["embed"])


def decide(store: Store, study: str, coder: str, intent: Mapping[str, Any], via: str = "web",
           run_id: int | None = None, blind: bool = False, seen: int | None = None) -> Decision:
    """Validate and append one decision in one short transaction; raise :class:`DecisionError` (and
    change nothing) when it is refused. ``blind``: validated against the coder's own decisions only
    (blind double coding), not the team's; ``seen``: see :func:`decide_many`."""
    return decide_many(store, study, [(coder, intent)], via, run_id, blind=blind, seen=seen)[0]


def decide_many(store: Store, study: str, items: Sequence[tuple[str, Mapping[str, Any]]], via: str = "web",
                run_id: int | None = None, skip_known_uids: bool = False, blind: bool = False,
                seen: int | None = None) -> list[Decision]:
    """Several decisions, all or none (a CSV import); each is validated against the log before it (with
    ``blind``, against its coder's own decisions before it). ``seen``: the newest decision id of the page
    the coder decided on; a decision that another coder's newer one overtook is refused
    (:func:`pipeline.learn.codebook.overtaken`)."""
    items = [(c, _with_split_parts(store, study, dict(i), run_id, c.strip() if blind and c else None))
             for c, i in items]
    out: list[Decision] = []
    with store.transaction() as session:
        lock_study(session)
        srow = study_row(session, study)
        lock_study(session, srow)
        known = set(session.scalars(select(Decision.uid).where(Decision.study_id == srow.id))) if skip_known_uids else set()
        errors: list[str] = []
        views: dict[str | None, StudyView] = {}  # the view deciders validate on (blind: each coder's own)
        team = team_settings(session, srow)
        opened = team.coding == BLIND and team.opened_at is not None  # blind coding, the comparison open
        for n, (coder, intent) in enumerate(items, start=1):
            where = f"row {n}: " if len(items) > 1 or via == "import" else ""  # a file's rows are always named
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
            own = name if blind and intent.get("action") != cb.SETTLE else None  # settlements are the team's
            view = views[own] if own in views else load_view(session, srow, run_id, coder=own)
            try:
                entry = build_entry(view, intent, name, store)
            except (DecisionError, ValueError, TypeError) as exc:
                errors.extend(where + e for e in getattr(exc, "errors", [str(exc)]))
                continue
            problems = cb.validate(view.state, entry, view.base_keys, view.segment_exists, view.partition)
            if seen is not None:
                problems.extend(_overtaken_by(view, o, name) for o in cb.overtaken(view.entries, entry, seen))
            if opened and own is None and entry.action not in (cb.SETTLE, cb.UNDO) and name != team.lead:
                settled = {e.theme_key for e in view.state.applied
                           if e.action == cb.SETTLE and e.after.get("kind") == "theme"}
                for key in sorted(({entry.theme_key} | set(entry.after.get("themes") or ())) & settled):
                    problems.append(f"the lead ({team.lead}) settled theme '{view.title(key)}' for the team; ask "
                                    "them to undo the settlement to change it")
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
            views[own] = view.with_entry(out[-1].entry())
        if errors:
            raise DecisionError(errors)
    return out


def _overtaken_by(view: StudyView, other: cb.Entry, coder: str) -> str:
    """Why a decision made on an out-of-date page is refused, naming the colleague's newer decision."""
    when = f" at {other.created_at.astimezone(timezone.utc):%H:%M} UTC" if other.created_at else ""
    if other.action in cb.PLACING + (cb.ADD_THEME,):
        what = f"placed segment {', '.join(map(str, other.after.get('segment_ids') or ()))}"
    elif other.action == cb.UNDO:
        what = f"undid a decision on theme '{view.title(other.theme_key)}'"
    elif other.action == cb.SETTLE:
        what = f"settled theme '{view.title(other.theme_key)}'"
    else:
        what = f"{cb.ACTION_WORDS[other.action]} theme '{view.title(other.theme_key)}'"
    who = "you (in another tab or window)" if other.coder == coder else other.coder
    return (f"since this page was opened, {who} {what}{when}; the page now shows it as it is: "
            "decide again if you still want to")


# ---------------------------------------------------------------------------------------------
# Reading segments back (for the review page)
# ---------------------------------------------------------------------------------------------


def segments_by_id(session: Session, ids: Sequence[int]) -> dict[int, Segment]:
    rows = session.scalars(select(Segment).where(Segment.id.in_(list(ids)))) if ids else []
    return {s.id: s for s in rows}


def turns_span(session: Session, segment: Segment, turns: int = 2) -> tuple[int | None, int | None]:
    """Where the ``turns`` turns before and after ``segment``'s own begin and end in its source's text: the
    least start and greatest end of their segments (None when the source has none there)."""
    lo, hi = segment.turn_index - turns, segment.turn_index + turns
    return tuple(session.execute(
        select(func.min(Segment.start), func.max(Segment.end))
        .where(Segment.source_id == segment.source_id, Segment.turn_index >= lo, Segment.turn_index <= hi)).one())


def search_segments(session: Session, study: Study, query: str, limit: int = 50, offset: int = 0
                    ) -> tuple[list[Segment], int]:
    """Participant segments holding every term of ``query`` (``pipeline.textquery``: words by stem, "phrases",
    prefixes*), in transcript order. The database narrows the rows by each term's needle; the terms are
    matched in Python, so SQLite and PostgreSQL find the same segments."""
    terms = parse_query(query)
    if not terms:
        return [], 0
    q = (select(Segment.id, Segment.text).join(Source, Source.id == Segment.source_id)
         .where(Source.study_id == study.id, Segment.role == "participant"))
    if hasattr(Source, "retired_at"):  # sources the latest run no longer saw take no part
        q = q.where(Source.retired_at.is_(None))
    for t in terms:  # SQLite's lower() knows ASCII only: other needles are left to the Python match
        if t.needle.isascii():
            q = q.where(func.lower(Segment.text).contains(t.needle, autoescape=True))
    found = [sid for sid, text in session.execute(q.order_by(Source.name, Segment.start)) if matches(text, terms)]
    page = segments_by_id(session, found[offset:offset + limit])
    return [page[s] for s in found[offset:offset + limit]], len(found)


# ---------------------------------------------------------------------------------------------
# The decision log as CSV
# ---------------------------------------------------------------------------------------------

def export_decisions(session: Session, study: str, out: io.TextIOBase | None = None) -> str:
    """The study's decision log as CSV text (``pipeline.exchange.decision_log``; columns documented in
    docs/review.md); written to ``out`` instead when given."""
    return write_decision_csv(entries(session, study), out)


def import_decisions(store: Store, study: str, data: str, blind: bool = False) -> tuple[int, int]:
    """Append the CSV's decisions (all or none); rows whose uid is already in the log are skipped.
    ``blind``: each coder's decisions are checked against their own before them (a blind double-coded
    log), settlements against the whole log. Returns ``(added, skipped)``."""
    items = read_decision_csv(data)
    with store.sessions() as session:
        srow = study_row(session, study)
        known = set(session.scalars(select(Decision.uid).where(Decision.study_id == srow.id)))
    skipped = sum(1 for _, i in items if i.get("uid") in known)
    added = decide_many(store, study, items, via="import", skip_known_uids=True, blind=blind)
    return len(added), skipped


# ---------------------------------------------------------------------------------------------
# The confirmed codebook
# ---------------------------------------------------------------------------------------------


def confirmed_codebook(session: Session, study: str, coder: str | None = None) -> list[CodebookEntry]:
    """Confirmed themes (the whole team's log, or one coder's), in list order."""
    view = load_view(session, study, coder=coder)
    out = []
    for key in view.keys():
        if view.status(key) != cb.CONFIRMED:
            continue
        st = view.state.themes[key]
        members = view.members(key)
        parent = view.state.themes.get(st.parent) if st.parent else None
        out.append(CodebookEntry(key, st.title, st.definition, len(members), len(view.cases_of(members)),
                                 tuple(view.quote_ids(key)[:3]), ", ".join(sorted(st.decided_by)), st.color,
                                 parent.title if parent is not None and parent.status == cb.CONFIRMED else None,
                                 st.codable))
    return out


def imported_codes(session: Session, study: str) -> list[cb.ThemeState]:
    """Codes an imported codebook gave the study that no coder has confirmed yet (the deductive start)."""
    view = load_view(session, study)
    return [t for t in view.state.themes.values() if t.origin == "imported" and t.status == cb.NEW]


def import_codebook(store: Store, study: str, codes: Sequence[Any], coder: str, origin: str
                    ) -> tuple[int, list[str]]:
    """The codes of a QDA codebook (``pipeline.exchange.refi_qda.QdaCode`` trees) as themes of the study,
    one ``import_code`` decision each, all or none: name, description as the definition, colour, and the
    parent code. A code's key comes from its GUID, so importing the same codebook again adds only the codes
    that are new; returns (codes added, names of those already there)."""
    with store.sessions() as session:
        known = set(load_view(session, study).state.themes)
    items: list[tuple[str, dict]] = []
    already: list[str] = []

    def walk(nodes: Sequence[Any], parent: str | None) -> None:
        for code in nodes:
            key = "code-" + re.sub(r"[^a-z0-9._-]", "-", code.guid.lower())[:90]
            if key in known:
                already.append(code.name)
            else:
                intent = {"action": cb.IMPORT_CODE, "theme_key": key, "name": code.name[:cb.MAX_NAME],
                          "definition": code.description[:cb.MAX_TEXT], "origin": origin}
                if code.color:
                    intent["color"] = code.color
                if parent:
                    intent["parent"] = parent
                if not code.codable:
                    intent["codable"] = "false"
                items.append((coder, intent))
                known.add(key)
            walk(code.children, key)

    walk(codes, None)
    if items:
        decide_many(store, study, items, via="import")
    return len(items), already


# ---------------------------------------------------------------------------------------------
# Honouring decisions in the next run, and deductive coding
# ---------------------------------------------------------------------------------------------


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
        others = {k: tuple(view.members(k)) for k in view.active_keys() if k not in kept and view.members(k)}
        segs = sorted(view.base)
        positives, negatives = _decision_labels(view, segs, list(kept))
        ids = sorted({s for v in kept.values() for s in v[2]} | {s for v in rejected.values() for s in v}
                     | set(view.state.assignments) | {segs[r] for rows in negatives.values() for r in rows}
                     | {segs[r] for rows in positives.values() for r in rows})
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
        for_theme = {k: frozenset(where[segs[r]] for r in rows if segs[r] in where) for k, rows in positives.items()}
        against = {k: frozenset(where[segs[r]] for r in rows if segs[r] in where) for k, rows in negatives.items()}
    example_vectors = {k: segment_vectors(store, view, list(v[2])) for k, v in kept.items()}
    rejected_vectors = {k: segment_vectors(store, view, list(v)) for k, v in rejected.items()}
    competitors = {**{k: segment_vectors(store, view, list(v)) for k, v in others.items()}, **rejected_vectors}
    return HonourInputs(kept, example_vectors, rejected_vectors, competitors, names, fixed, len(view.entries),
                        view.entries[-1].uid if view.entries else None, for_theme, against)


def apply_codebook(store: Store, study: str, review_cfg: ReviewSettings | Mapping[str, Any],
                   embedder: Any = None) -> ApplyResult:
    """Code every clustered segment of the latest run with the confirmed codebook and store it as the
    coding of ``pipeline.learn.apply.APPLY_CODER`` (``models.codings``, kind machine; replacing the previous
    apply). Only confirmed themes are coded. ``review.learner: logistic`` (the default) trains
    ``pipeline.learn.learner.CodeLearner`` on the decisions: a confirmed theme's current members are its
    positives, the members a coder moved out of it and the members of rejected themes its negatives; a segment
    gets every theme that accepts it. ``centroid``: the older rule, one centre and threshold per confirmed
    theme from its members, the run's other themes and rejected themes competing (a segment nearer to one of
    them stays uncoded), one theme per segment. Themes of the second pass over the left-out segments (``Theme.second_pass``) do not compete until a
    coder rejects them: their segments are coded as they were when they waited in the outlier queue.
    ``embedder``: code with its vectors (an adapted encoder's, see ``models.adapt``) instead of the run's
    model's; the stored coding's origin names the model either way (``ApplyResult.model_id``)."""
    with store.sessions() as session:
        view = load_view(session, study)
        if view.run is None:
            raise StudyNotFoundError(f"study '{study}' has no completed run yet; run themesift suggest first")
        confirmed = [t for t in view.state.confirmed() if view.members(t.key)]
        segs = sorted(view.base)
        confirmed_keys = {t.key for t in confirmed}
        second_pass = {k for k, t in view.themes.items() if t.second_pass}
        others = {k: view.members(k) for k in view.active_keys()
                  if k not in confirmed_keys | second_pass and view.members(k)}
        others.update({t.key: list(t.members) for t in view.state.rejected() if t.members})
    if not confirmed:
        raise DecisionError(["no confirmed theme with segments yet: confirm themes in the review first"])
    names = {t.key: t.title for t in confirmed}
    with store.sessions() as session:
        texts = _segment_texts(session, segs)
    vectors = _text_vectors(store, view, texts, embedder)
    if ReviewSettings.of(review_cfg).learner == "centroid":
        examples = {t.key: segment_vectors(store, view, view.members(t.key), embedder) for t in confirmed}
        competing = {k: segment_vectors(store, view, v, embedder) for k, v in others.items()}
        result = code_with_codebook(segs, vectors, examples, names, competing, review_cfg)
    else:
        positives, negatives = _decision_labels(view, segs, list(names))
        result = code_with_learner(segs, vectors, positives, negatives, names, review_cfg,
                                   judged=_judged(view, segs), texts=texts,
                                   name_vectors=_name_vectors(store, view, names, review_cfg, embedder))
    digest = view.entries[-1].uid if view.entries else "-"
    result.model_id = embedder.model_id if embedder is not None else model_id_of(view)
    with store.transaction() as session:
        replace_codings(session, study, {result.coder: {s: list(n) for s, n in result.assigned.items()}},
                        origin=f"themesift apply: run {view.run.id}, {len(confirmed)} confirmed themes, "
                               f"decision log up to {digest}, vectors of {result.model_id}", kind=MACHINE,
                        links=result.links)
    return result


def study_labels(store: Store, study: str) -> tuple[list[int], list[str], dict]:
    """What the decision log says for and against each confirmed theme, as ``apply``'s learner takes it: the
    latest run's segment ids, their texts, and confirmed theme key -> ``pipeline.learn.learner.ThemeLabels``
    (rows of those lists). What ``themesift adapt`` trains the encoder on."""
    from pipeline.learn.learner import theme_labels

    with store.sessions() as session:
        view = load_view(session, study)
        if view.run is None:
            raise StudyNotFoundError(f"study '{study}' has no completed run yet; run themesift suggest first")
        segs = sorted(view.base)
        keys = [t.key for t in view.state.confirmed() if view.members(t.key)]
        texts = _segment_texts(session, segs)
    positives, negatives = _decision_labels(view, segs, keys)
    return segs, texts, theme_labels(positives, negatives)


def _decision_labels(view: StudyView, segs: list[int], keys: list[str]):
    return decision_labels(segs, view.base, view.codes, keys, [s for t in view.state.rejected() for s in t.members],
                           view.state.against)


def _name_vectors(store: Store, view: StudyView, names: Mapping[str, str],
                  review_cfg: ReviewSettings | Mapping[str, Any], embedder: Any = None) -> dict[str, np.ndarray]:
    """Theme key -> the vector of its name (``names``), embedded as the segments are, for the learner
    (``review.learner_names``; nothing when it is off)."""
    if not names or not ReviewSettings.of(review_cfg).learner_names:
        return {}
    keys = sorted(names)
    return dict(zip(keys, _text_vectors(store, view, [names[k] for k in keys], embedder)))


def _segment_texts(session: Session, segs: list[int]) -> list[str]:
    """The texts of ``segs``, in their order."""
    texts: dict[int, str] = {}
    for i in range(0, len(segs), 5000):  # a bounded IN list per query
        texts.update(session.execute(select(Segment.id, Segment.text).where(Segment.id.in_(segs[i:i + 5000]))).all())
    return [texts[s] for s in segs]


def _judged(view: StudyView, segs: list[int]) -> list[int]:
    """Rows of ``segs`` a coder decided on one by one (``CodebookState.judged``)."""
    judged = view.state.judged()
    return [i for i, s in enumerate(segs) if s in judged]


@dataclass(frozen=True)
class TeachItem:
    """A Teach question as the page shows it: ``segment`` and the theme ``proposed`` for it (key and title;
    None while no theme is confirmed), the learner's ``probability`` and why it asks (``reason``)."""

    segment: int
    proposed: str | None
    title: str | None
    probability: float
    reason: str


def teach_questions(store: Store, study: str, review_cfg: ReviewSettings | Mapping[str, Any],
                    skip: Sequence[int] = (), coder: str | None = None) -> list[TeachItem]:
    """The next batch of Teach questions on the study's latest run (``pipeline.learn.apply.teach_batch``):
    the learner trained on the decision log as ``apply`` trains it; segments a coder already placed, coded
    or answered are never asked about, nor those in ``skip`` (skipped by the coder). The batch depends on the
    log and ``skip`` only (the log's length seeds the draw). ``coder``: their own decisions only (blind)."""
    with store.sessions() as session:
        view = load_view(session, study, coder=coder)
    if view.run is None:
        raise StudyNotFoundError(f"study '{study}' has no completed run yet; run themesift suggest first")
    segs = sorted(s for s in view.base if view.segments.get(s) is not None and view.segments[s].clusterable)
    keys = [t.key for t in view.state.confirmed() if view.members(t.key)]
    touched = view.state.judged() | set(skip)
    positives, negatives = _decision_labels(view, segs, keys)
    with store.sessions() as session:
        texts = _segment_texts(session, segs)
    titles = {k: view.title(k) for k in keys}
    names = {k: (titles[k], v) for k, v in _name_vectors(store, view, titles, review_cfg).items()}
    asked = teach_batch(segs, _text_vectors(store, view, texts), positives, negatives, review_cfg,
                        seed=len(view.entries), exclude=[i for i, s in enumerate(segs) if s in touched],
                        judged=_judged(view, segs), texts=texts, names=names)
    return [TeachItem(segs[q.row], q.proposed, view.title(q.proposed) if q.proposed else None, q.probability,
                      q.reason) for q in asked]


def team_comparison(view: StudyView, min_positive: int = 5, recovered_f1: float = 0.5,
                    blind_until: datetime | None = None):
    """Each coder's own coding of the view's run compared, and the differences not settled yet
    (``pipeline.compare.team``; the figures are ``themesift compare``'s). ``view``: the whole log's;
    ``blind_until``: :attr:`models.decisions.TeamSettings.blind_until`."""
    from pipeline.compare.team import team_comparison as compare_team

    units = sorted(view.base)
    cases = {s: view.segments[s].case if s in view.segments else None for s in units}
    return compare_team(view.entries, view.base, view.base_keys, units, cases, list(view.themes),
                        min_positive, recovered_f1, blind_until=blind_until)


def review_matrix(session: Session, view: StudyView, n_quotes: int = 2, themes: str = "confirmed",
                  by: str | None = None):
    """The Framework matrix of the review as ``view`` holds it (a coder's own decisions while coding is
    blind, else the team's): participants x themes, built by ``themesift matrix``'s code
    (``pipeline.compare.matrix.build_matrix``) on the same units (the run's segments) with the segments'
    current codes. ``themes``: ``confirmed`` (the codebook; the open themes while none is confirmed) or
    ``open`` (every theme still open). ``by``: rows by that CSV column, where the units carry it (else by
    participant). Returns the matrix, which themes it shows and the columns it could be charted by."""
    from models.codings import run_units
    from pipeline.compare.matrix import Column, build_matrix, chart_columns

    confirmed = [k for k in view.keys() if view.status(k) == cb.CONFIRMED and view.members(k)]
    which = "confirmed" if themes != "open" and confirmed else "open"
    keys = confirmed if which == "confirmed" else [k for k in view.active_keys() if view.members(k)]
    units = run_units(session, view.run) if view.run is not None else []
    coding = {s: frozenset(view.codes.get(s, ())) for s in view.base}
    columns = [Column(k, view.title(k), view.state.themes[k].definition if k in view.state.themes else "")
               for k in keys]

    def strength(seg: int, key: str) -> float:  # the clustering's strength, in the theme it put the segment in
        return view.strength.get(seg, 0.0) if view.base.get(seg) == key else 0.0

    title = f"Framework matrix: study {view.study.name}, run {view.run.id if view.run else '-'}, {which} themes"
    options = chart_columns(units)
    by = by if by in options else None
    return build_matrix(units, coding, columns, title, strength, n_quotes, by=by), which, options


CONSENSUS = "consensus"  # the coder name the team's settled coding is exported under


def review_codings(session: Session, study: str, coder: str | None = None) -> dict[str, dict[int, tuple[str, ...]]]:
    """The review's codings, coder -> segment id -> the names of its themes: each coder's own (their decisions
    alone, made while coding blind where the team did, under the names they gave the themes they confirmed)
    and the team's, settlements included, as coder :data:`CONSENSUS`; ``coder``: one of them. Those with
    no coded segment are left out."""
    view = load_view(session, study)
    names = sorted(cb.by_coder(view.entries)) + [CONSENSUS]
    if coder is not None:
        names = [n for n in names if n == coder]
    own = cb.entries_until(view.entries, team_settings(session, view.study).blind_until)  # blind coding's end
    out: dict[str, dict[int, tuple[str, ...]]] = {}
    for name in names:
        state = cb.fold(view.entries if name == CONSENSUS else cb.own_entries(own, name))
        confirmed = {t.key: t.title for t in state.confirmed()}
        codes = state.decided_codes(view.base, view.base_keys)  # not what a later run's learner added
        coding = {sid: tuple(sorted({confirmed[k] for k in codes.get(sid, ()) if k in confirmed})) for sid in view.base}
        if any(coding.values()):  # a coder with no confirmed theme yet has no coding
            out[name] = {sid: titles for sid, titles in coding.items() if titles}
    return out


def review_coding_rows(session: Session, study: str, coder: str | None = None) -> list[dict]:
    """:func:`review_codings` as rows of the coding table (``models.codings.coding_rows``' columns, ``via``
    ``review``), in source and text order. The file imports again (``themesift import codings``) and compares
    by code name."""
    codings = review_codings(session, study, coder)
    segs = segments_by_id(session, sorted({sid for coding in codings.values() for sid in coding}))
    study_id = study_row(session, study).id
    sources = dict(session.execute(select(Source.id, Source.name).where(Source.study_id == study_id)).all())
    rows = []
    for name, coding in codings.items():
        for sid in sorted(coding, key=lambda i: (sources.get(segs[i].source_id, ""), segs[i].start)):
            s = segs[sid]
            for title in coding[sid]:
                rows.append({"source": sources.get(s.source_id, ""), "case": s.case, "start": s.start, "end": s.end,
                             "text": s.text, "code": title, "coder": name, "kind": "human", "via": "review",
                             "probability": None, "row_id": s.row_id, "attributes": dict(s.attributes or {})})
    return rows


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


__all__ = [
    "SegmentRow", "StudyView", "apply_codebook", "build_entry", "confirmed_codebook", "decide", "decide_many",
    "export_decisions", "honour_inputs", "import_decisions", "load_view", "model_id_of", "next_key", "run_diff",
    "review_coding_rows", "review_matrix", "team_comparison",
    "search_segments", "segment_vectors", "segments_by_id", "split_proposal", "turns_span",
]
