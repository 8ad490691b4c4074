"""The codebook as the fold of the decision log: pure, deterministic, no storage.

Coders never edit themes in place: every decision is appended to a log (``models.decisions``), and the
current state (which themes are confirmed, under which name and definition, which are rejected, what
was merged or split, where single segments were moved) is recomputed here from the log alone. The same
log therefore always gives the same codebook, an undo is just another entry, and two coders' views can
be compared by folding each coder's entries separately.

Vocabulary
----------
* A **theme key** is a theme's stable identity across runs. A suggested theme that no coder has
  touched yet is known by its run's key (``models.decisions.theme_key``: ``theme-<id>``); themes a
  coder creates get fresh keys (``own-...`` for a coder's own theme, ``<parent>.<n>`` for split parts).
* An :class:`Entry` is one decision as plain data: ``action`` with the theme it is about and a payload
  ``before`` (what the coder saw) and ``after`` (what they decided). Payload fields per action:

  ============  =====================================================================================
  action        ``after`` fields (``before`` holds the previous name/status/members for the record)
  ============  =====================================================================================
  confirm       ``name``, ``definition``, ``examples`` (segment ids: the theme's members when confirmed)
  rename        ``name`` and optionally ``definition``
  reject        ``reason``; ``before.members`` are kept: their centroid stops the theme coming back
  merge         ``into`` (the key that survives), ``themes`` (all keys merged, ``into`` among them),
                optional ``name`` / ``definition`` for the result
  split         ``parts``: ``[{key, name, definition?, segment_ids}]`` covering ``before.members``
  move          ``segment_ids``, ``to`` (a theme key, or null for "no theme")
  add_segment   as ``move``; used for segments taken from the outlier queue or from search
  add_theme     ``name``, ``definition``, ``segment_ids`` (examples); the entry's key is the new key
  code          ``segment_ids``, ``to``: the segments get theme ``to`` too, keeping the codes they have
  uncode        ``segment_ids``, ``from``: theme ``from`` is taken off the segments (their other codes
                stay); the coder said they are not in it
  answer        a Teach question answered: ``segment_ids`` (one), ``proposed`` (the theme the machine
                asked about, or null), ``answer`` (``yes``: it is in ``proposed``; ``no``: it is not;
                ``other``: it is in the themes ``to`` (a list; ``proposed`` only if listed); ``new``: not
                in ``proposed`` but in a new theme, the entry's key, named ``name`` (optional
                ``definition``), with it as first example); ``not``: the themes shown that the coder left
                unticked (it is in none of them)
  import_code   ``name``, ``definition`` (may be empty), optional ``color`` (``#RRGGBB``), ``parent`` (the
                key of the imported code it sits under), ``codable`` (false: the tool's category, a folder of
                codes) and ``origin`` (the codebook file): a code of a QDA
                tool's codebook, a theme of the study with no segment yet (status new; a deductive start:
                coders give it examples with ``code`` and confirm it, then ``apply`` codes with it)
  settle        a difference between coders settled (blind double coding, ``pipeline.compare.team``):
                ``kind`` ``theme``: the theme (the entry's key) becomes ``status`` (``confirmed`` with
                ``name`` / ``definition``, ``rejected`` with ``reason``, ``new``, or ``merged`` ``into``);
                ``kind`` ``segment``: ``segment_ids`` (one) carries exactly the themes ``codes``. ``took``:
                the coder whose decision was taken, or null for a new one. The settler is the entry's coder.
  undo          ``undoes``: the uid of the coder's own latest decision still in force
  ============  =====================================================================================

A settlement is the team's, not the settler's own coding: :func:`own_entries` leaves it out of a coder's
own log, so each coder's coding stays as they made it, and the whole log folded is the consensus.

A segment may carry several codes (human coding is multi-label). ``move`` places a segment in one theme
and leaves it only that one (it replaces its codes); ``code`` and an ``answer`` add a code beside the
others. :meth:`CodebookState.codes` gives every segment's codes, :attr:`CodebookState.against` what
coders said a segment is not.

Folding is tolerant (an imported log may hold anything): an entry that no longer applies (for instance
a rename of a theme that an earlier entry merged away) is skipped and listed in
:attr:`CodebookState.ignored`. :func:`validate` is the strict check the web page and the CSV import run
*before* appending, so in normal use nothing is ever ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

CONFIRM, RENAME, REJECT, MERGE, SPLIT = "confirm", "rename", "reject", "merge", "split"
MOVE, ADD_SEGMENT, ADD_THEME, UNDO = "move", "add_segment", "add_theme", "undo"
CODE, UNCODE, ANSWER, IMPORT_CODE, SETTLE = "code", "uncode", "answer", "import_code", "settle"
ACTIONS = (CONFIRM, RENAME, REJECT, MERGE, SPLIT, MOVE, ADD_SEGMENT, ADD_THEME, CODE, UNCODE, ANSWER, IMPORT_CODE,
           SETTLE, UNDO)
SETTLED_STATUSES = ("confirmed", "rejected", "new", "merged")  # what a settled theme may become
ANSWERS = ("yes", "no", "other", "new")  # a Teach answer

# Theme statuses. NEW: suggested (or made by a coder) and not yet confirmed.
NEW, CONFIRMED, REJECTED, MERGED, SPLIT_UP = "new", "confirmed", "rejected", "merged", "split"
ACTIVE = (NEW, CONFIRMED)

KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_NAME = 200
MAX_TEXT = 5000


@dataclass(frozen=True)
class Entry:
    """One decision as plain data, in log order (see the module docstring for the payloads)."""

    uid: str
    action: str
    coder: str
    theme_key: str | None = None
    run_id: int | None = None
    theme_id: int | None = None
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    id: int | None = None


@dataclass
class ThemeState:
    """What the log says about one theme key."""

    key: str
    status: str = NEW
    name: str | None = None          # the coder's name; None while only the machine label exists
    definition: str = ""
    label: str = ""                  # the machine's label when it was suggested
    reason: str = ""                 # why it was rejected
    run_id: int | None = None        # the run and theme it was first decided on (None: made by a coder)
    theme_id: int | None = None
    origin: str = "suggested"        # suggested | own | split | imported
    color: str | None = None         # #RRGGBB, from an imported codebook
    parent: str | None = None        # the key of the theme it sits under (an imported codebook's hierarchy)
    codable: bool = True             # False: an imported category (isCodable="false"), written back as one
    curated: bool = False            # made or reshaped by a coder (merge result, split part, own theme, renamed)
    merged_into: str | None = None
    split_into: tuple[str, ...] = ()
    split_map: dict[int, str] = field(default_factory=dict)
    members: tuple[int, ...] = ()    # segment ids recorded with the latest decision that listed them
    decided_by: dict[str, str] = field(default_factory=dict)  # coder -> their latest action on it
    last_coder: str | None = None
    last_uid: str | None = None

    @property
    def title(self) -> str:
        return self.name or self.label or self.key

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def kept(self) -> bool:
        """Carried into the next run: confirmed, or shaped by a coder (merge result, split part, renamed)."""
        return self.status == CONFIRMED or (self.status == NEW and self.curated)


@dataclass
class CodebookState:
    """The fold of a log: themes by key, explicit segment placements, and what was applied."""

    themes: dict[str, ThemeState] = field(default_factory=dict)
    # segment id -> theme key (None: "no theme"), from move / add_segment / add_theme; the latest wins
    assignments: dict[int, str | None] = field(default_factory=dict)
    # segment id -> theme keys given beside its place (code, Teach answers); a move clears them
    extra: dict[int, set[str]] = field(default_factory=dict)
    # theme key -> segments a coder said are not in it (uncode, Teach "no"/"other"/"new" answers)
    against: dict[str, set[int]] = field(default_factory=dict)
    applied: list[Entry] = field(default_factory=list)
    undone: dict[str, str] = field(default_factory=dict)   # uid undone -> uid of the undo
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (uid, why)

    # -- reading ----------------------------------------------------------------------------------
    def status_of(self, key: str | None, base_keys: Collection[str] = ()) -> str | None:
        """A key's status; untouched keys of the base run are NEW; unknown keys give None."""
        if key is None:
            return None
        if key in self.themes:
            return self.themes[key].status
        return NEW if key in base_keys else None

    def is_active(self, key: str | None, base_keys: Collection[str] = ()) -> bool:
        return self.status_of(key, base_keys) in ACTIVE

    def resolve(self, key: str | None, segment_id: int) -> str | None:
        """Where a segment placed in ``key`` ends up: merges followed, split parts looked up,
        rejected themes give None (the segment goes back to the outlier queue)."""
        seen: set[str] = set()
        while key is not None and key in self.themes and key not in seen:
            seen.add(key)
            theme = self.themes[key]
            if theme.status == MERGED:
                key = theme.merged_into
            elif theme.status == SPLIT_UP:
                key = theme.split_map.get(segment_id)
            elif theme.status == REJECTED:
                return None
            else:
                return key
        return None if key in seen else key

    def partition(self, base: Mapping[int, str | None], base_keys: Collection[str] | None = None) -> dict[int, str | None]:
        """Segment id -> theme key (None: no theme) after the log, starting from a run's ``base``.

        ``base`` maps the run's clustered segments to their theme keys (None for the outlier queue).
        Explicit placements win over the base; merges, splits and rejections are then followed. A key
        neither in the log nor among ``base_keys`` (default: the keys used in ``base``) gives None.
        """
        known = set(base_keys) if base_keys is not None else {k for k in base.values() if k is not None}
        out: dict[int, str | None] = {}
        for seg, key in list(base.items()) + list(self.assignments.items()):
            final = self._final(key, seg, known)
            out[seg] = None if final is not None and seg in self.against.get(final, ()) else final
        return out

    def codes(self, base: Mapping[int, str | None], base_keys: Collection[str] | None = None) -> dict[int, tuple[str, ...]]:
        """Segment id -> every theme key it carries after the log (its place first, then the codes added
        beside it, each once); segments in no theme map to ``()``."""
        known = set(base_keys) if base_keys is not None else {k for k in base.values() if k is not None}
        out = {seg: (key,) if key is not None else () for seg, key in self.partition(base, known).items()}
        for seg, keys in self.extra.items():
            for key in sorted(keys):
                final = self._final(key, seg, known)
                if final is not None and final not in out.get(seg, ()) and seg not in self.against.get(final, ()):
                    out[seg] = out.get(seg, ()) + (final,)
        return out

    def decided_codes(self, base: Mapping[int, str | None],
                      base_keys: Collection[str] | None = None) -> dict[int, tuple[str, ...]]:
        """:meth:`codes` of the segments the log speaks for: those judged one by one, and the members a
        decision on a theme listed (a confirm takes them in bulk). A coder's own coding: the members a later
        run's learner gave a theme they kept are the machine's coding, not theirs, until a coder confirms
        the theme again. A theme whose decisions listed no members (a log written by hand) keeps them all."""
        decided = self.judged() | {s for t in self.themes.values() for s in t.members}
        unlisted = {t.key for t in self.themes.values() if not t.members}
        return {seg: keys for seg, keys in self.codes(base, base_keys).items()
                if seg in decided or unlisted.intersection(keys)}

    def judged(self) -> set[int]:
        """Segments a coder decided on one by one (placed, moved, coded beside their place, said not to be in
        a theme, answered); a confirmed theme's other members were taken in bulk."""
        return set(self.assignments) | set(self.extra) | {s for segs in self.against.values() for s in segs}

    def _final(self, key: str | None, seg: int, known: Collection[str]) -> str | None:
        final = self.resolve(key, seg)
        return final if final is None or final in self.themes or final in known else None

    def last_of(self, coder: str) -> Entry | None:
        """The coder's latest decision still in force (what "undo" would take back)."""
        for entry in reversed(self.applied):
            if entry.coder == coder:
                return entry
        return None

    def confirmed(self) -> list[ThemeState]:
        return [t for t in self.themes.values() if t.status == CONFIRMED]

    def rejected(self) -> list[ThemeState]:
        return [t for t in self.themes.values() if t.status == REJECTED]

    def kept(self) -> list[ThemeState]:
        return [t for t in self.themes.values() if t.kept]


# ---------------------------------------------------------------------------------------------
# Folding
# ---------------------------------------------------------------------------------------------


def fold(entries: Iterable[Entry]) -> CodebookState:
    """Replay ``entries`` (in log order) into a :class:`CodebookState`. Undone entries are skipped;
    an undo itself cannot be undone (deciding again is a new entry)."""
    entries = list(entries)
    state = CodebookState()
    for e in entries:
        if e.action == UNDO and e.after.get("undoes"):
            state.undone[str(e.after["undoes"])] = e.uid
    for e in entries:
        if e.action == UNDO or e.uid in state.undone:
            continue
        why = _apply(state, e)
        if why:
            state.ignored.append((e.uid, why))
        else:
            state.applied.append(e)
    return state


def _theme(state: CodebookState, key: str, e: Entry | None = None, before: Mapping | None = None) -> ThemeState:
    theme = state.themes.get(key)
    if theme is None:
        before = e.before if before is None and e is not None else (before or {})
        theme = ThemeState(key=key, label=str(before.get("label") or before.get("name") or ""))
        if e is not None and e.theme_key == key:
            theme.run_id, theme.theme_id = e.run_id, e.theme_id
        if before.get("run_id") is not None:
            theme.run_id, theme.theme_id = before.get("run_id"), before.get("theme_id")
        state.themes[key] = theme
    return theme


def _touch(theme: ThemeState, e: Entry) -> None:
    theme.decided_by[e.coder] = e.action
    theme.last_coder, theme.last_uid = e.coder, e.uid


def _ints(values: Iterable[Any] | None) -> tuple[int, ...]:
    return tuple(int(v) for v in (values or ()))


def _answer_keys(value: Any) -> list[str]:
    """An answer's ``to`` / ``not``: one key or a list of keys."""
    if value in (None, ""):
        return []
    return [str(v) for v in (value if isinstance(value, (list, tuple)) else [value]) if v not in (None, "")]


def _code(state: CodebookState, seg: int, key: str, on: bool) -> None:
    """Give ``seg`` the code ``key`` beside its others (``on``), or record that it is not in ``key``."""
    if on:
        state.extra.setdefault(seg, set()).add(key)
        state.against.get(key, set()).discard(seg)
    else:
        state.against.setdefault(key, set()).add(seg)
        state.extra.get(seg, set()).discard(key)


def _apply(state: CodebookState, e: Entry) -> str | None:
    a, key = e.after, e.theme_key
    if e.action in (CONFIRM, RENAME, REJECT, SPLIT):
        if not key:
            return "no theme key"
        theme = _theme(state, key, e)
        if theme.status in (MERGED, SPLIT_UP):
            return f"theme {key} is {theme.status}"
        if e.action == CONFIRM:
            theme.status, theme.name = CONFIRMED, str(a.get("name") or theme.title)
            if a.get("definition") is not None:  # none given: the definition it had stays
                theme.definition = str(a["definition"])
            theme.members = _ints(a.get("examples") or e.before.get("members"))
        elif e.action == RENAME:
            theme.name = str(a.get("name") or theme.title)
            theme.curated = True  # a coder named it: kept by the next run under that name, as a merge result is
            if a.get("definition") is not None:
                theme.definition = str(a["definition"])
        elif e.action == REJECT:
            theme.status, theme.reason = REJECTED, str(a.get("reason") or "")
            theme.members = _ints(e.before.get("members")) or theme.members
        else:
            parts = list(a.get("parts") or ())
            if len(parts) < 2:
                return "a split needs two parts or more"
            theme.status, theme.members = SPLIT_UP, _ints(e.before.get("members")) or theme.members
            theme.split_into = tuple(str(p["key"]) for p in parts)
            theme.split_map = {}
            for n, p in enumerate(parts, start=1):
                child = _theme(state, str(p["key"]))
                child.status, child.origin, child.curated = NEW, "split", True
                child.name = str(p.get("name") or f"{theme.title} ({n})")
                child.definition = str(p.get("definition") or "")
                child.label = child.label or child.name
                child.members = _ints(p.get("segment_ids"))
                theme.split_map.update({s: child.key for s in child.members})
                _touch(child, e)
        _touch(theme, e)
        return None
    if e.action == MERGE:
        into = str(a.get("into") or key or "")
        keys = [str(k) for k in a.get("themes") or ()]
        if not into or into not in keys or len(set(keys)) < 2:
            return "a merge needs two themes or more, the surviving one among them"
        befores = e.before.get("themes") or {}
        themes = [_theme(state, k, None, befores.get(k, {})) for k in keys]
        inactive = [t.key for t in themes if not t.active]
        if inactive:
            return f"not open for merging: {', '.join(inactive)}"
        target = state.themes[into]
        confirmed = [t for t in themes if t.key != into and t.status == CONFIRMED]
        for theme in themes:
            if theme.key != into:
                theme.status, theme.merged_into = MERGED, into
                theme.members = _ints(befores.get(theme.key, {}).get("members")) or theme.members
            _touch(theme, e)
        target.curated = True
        if confirmed and target.status != CONFIRMED:  # a merge never takes a confirmed code out of the codebook
            target.status = CONFIRMED
            target.name = target.name or confirmed[0].name
            target.definition = target.definition or confirmed[0].definition
        if a.get("name"):
            target.name = str(a["name"])
        if a.get("definition"):
            target.definition = str(a["definition"])
        return None
    if e.action in (MOVE, ADD_SEGMENT):
        to = a.get("to")
        for seg in _ints(a.get("segment_ids")):
            state.assignments[seg] = None if to in (None, "") else str(to)
            state.extra.pop(seg, None)
            if to not in (None, ""):
                state.against.get(str(to), set()).discard(seg)
        if to not in (None, "") and str(to) in state.themes:  # never invent a theme for an unknown key
            _touch(state.themes[str(to)], e)
        return None
    if e.action in (CODE, UNCODE):
        target = str(a.get("to") if e.action == CODE else a.get("from") or "")
        if not target:
            return "no theme to code with" if e.action == CODE else "no theme to take off"
        for seg in _ints(a.get("segment_ids")):
            _code(state, seg, target, e.action == CODE)
        if target in state.themes:
            _touch(state.themes[target], e)
        return None
    if e.action == ANSWER:
        segs = _ints(a.get("segment_ids"))
        answer, proposed = a.get("answer"), a.get("proposed") or None
        if len(segs) != 1 or answer not in ANSWERS:
            return "an answer is about one segment and is yes, no, other or new"
        seg, given = segs[0], _answer_keys(a.get("to"))
        if answer == "yes":
            if not proposed:
                return "a yes needs the theme asked about"
            given = [str(proposed), *given]
        elif proposed and str(proposed) not in given:
            _code(state, seg, str(proposed), False)
        for k in given:
            _code(state, seg, k, True)
        for k in _answer_keys(a.get("not")):
            if k not in given:
                _code(state, seg, k, False)
        if answer == "new":
            if not key or key in state.themes:
                return f"theme key {key} is taken" if key else "no theme key"
            theme = _theme(state, key)
            theme.status, theme.origin, theme.curated = CONFIRMED, "own", True
            theme.name = theme.label = str(a.get("name") or key)
            theme.definition = str(a.get("definition") or "")
            theme.members = (seg,)
            _code(state, seg, key, True)
            _touch(theme, e)
        return None
    if e.action == SETTLE:
        return _settle(state, e)
    if e.action in (IMPORT_CODE, ADD_THEME):
        if not key:
            return "no theme key"
        if key in state.themes:
            return f"theme key {key} is taken"
        theme = _theme(state, key)
        theme.origin, theme.curated = ("imported" if e.action == IMPORT_CODE else "own"), True
        theme.name = theme.label = str(a.get("name") or key)
        theme.definition = str(a.get("definition") or "")
        if e.action == IMPORT_CODE:  # no segment yet: it stays new until coders give examples and confirm
            theme.color = str(a["color"]) if a.get("color") else None
            theme.parent = str(a["parent"]) if a.get("parent") else None
            theme.codable = a.get("codable") is not False
        else:
            theme.status, theme.members = CONFIRMED, _ints(a.get("segment_ids"))
            for seg in theme.members:
                state.assignments[seg] = key
        _touch(theme, e)
        return None
    return f"unknown action '{e.action}'"


def _settle(state: CodebookState, e: Entry) -> str | None:
    """A settled difference overrides whatever the coders' decisions left: the theme's status and name, or
    the segment's codes (its place is the first, the rest are codes beside it)."""
    a = e.after
    if a.get("kind") == "segment":
        segs = _ints(a.get("segment_ids"))
        if len(segs) != 1:
            return "a settled segment is one segment"
        seg, codes = segs[0], [str(k) for k in a.get("codes") or ()]
        state.assignments[seg] = codes[0] if codes else None
        state.extra.pop(seg, None)
        for k in codes:
            state.against.get(k, set()).discard(seg)
        if codes[1:]:
            state.extra[seg] = set(codes[1:])
        return None
    key, status = e.theme_key, a.get("status")
    if not key or status not in SETTLED_STATUSES:
        return "a settled theme needs its key and a status"
    theme = _theme(state, key, e)
    if status == MERGED:
        into = str(a.get("into") or "")
        if not state.is_active(into, (into,)) or into == key:
            return f"cannot merge into {into or 'nothing'}"
        theme.status, theme.merged_into = MERGED, into
    else:
        theme.status, theme.merged_into, theme.split_into, theme.split_map = status, None, (), {}
    if status == CONFIRMED:
        theme.name = str(a.get("name") or theme.title)
        theme.definition = str(a.get("definition") or "")
    elif status == REJECTED:
        theme.reason = str(a.get("reason") or "")
        theme.members = _ints(e.before.get("members")) or theme.members
    _touch(theme, e)
    return None


def own_entries(entries: Iterable[Entry], coder: str) -> list[Entry]:
    """A coder's own decisions: theirs, without the differences they settled for the team."""
    return [e for e in entries if e.coder == coder and e.action != SETTLE]


def entries_until(entries: Iterable[Entry], when: datetime | None) -> list[Entry]:
    """The decisions made up to ``when`` (every one for None, and one with no time): a coder's own coding
    when blind coding ended then."""
    return [e for e in entries if when is None or e.created_at is None or e.created_at <= when]


THEME_ACTIONS = (CONFIRM, RENAME, REJECT, MERGE, SPLIT)  # decisions about a whole theme
PLACING = (MOVE, ADD_SEGMENT)  # decisions that give a segment its one place
ACTION_WORDS = {CONFIRM: "confirmed", RENAME: "renamed", REJECT: "rejected", MERGE: "merged", SPLIT: "split",
                MOVE: "moved a segment", ADD_SEGMENT: "added a segment", ADD_THEME: "made the theme",
                UNDO: "undid", CODE: "coded a segment", UNCODE: "took a code off", ANSWER: "answered in Teach",
                IMPORT_CODE: "imported a code", SETTLE: "settled a difference"}


def _changes(e: Entry) -> tuple[set[str], set[int]]:
    """The theme keys and the placed segments a decision changes."""
    keys = {str(k) for k in (e.theme_key, e.after.get("into"), *(e.after.get("themes") or ())) if k}
    segs = set(_ints(e.after.get("segment_ids"))) if e.action in PLACING + (ADD_THEME,) else set()
    return keys, segs


def overtaken(entries: Iterable[Entry], e: Entry, seen: int) -> list[Entry]:
    """The decisions newer than decision id ``seen`` (the newest a page showed when it was drawn) that
    changed what ``e`` changes: a coder deciding on a theme or segment as a page showed it, not as it is
    now, would otherwise overwrite a colleague's decision, or their own from another tab, without seeing
    it."""
    if e.action not in THEME_ACTIONS + PLACING:
        return []
    keys, segs = _changes(e)
    out = []
    for other in entries:
        if other.id is None or other.id <= seen:
            continue
        their_keys, their_segs = _changes(other)
        if (e.action in THEME_ACTIONS and other.action in THEME_ACTIONS + (UNDO, SETTLE) and keys & their_keys) \
                or (e.action in PLACING and segs & their_segs):
            out.append(other)
    return out


# ---------------------------------------------------------------------------------------------
# Validation (strict: run before appending)
# ---------------------------------------------------------------------------------------------


class DecisionError(ValueError):
    """A decision refused by validation; ``errors`` says why, in words."""

    def __init__(self, errors: Sequence[str]):
        super().__init__("; ".join(errors))
        self.errors = list(errors)


def validate(state: CodebookState, e: Entry, base_keys: Collection[str],
             segment_exists: Callable[[int], bool] | Collection[int],
             partition: Mapping[int, str | None] | None = None) -> list[str]:
    """What is wrong with appending ``e`` to the log folded into ``state``; empty when it may go in.

    ``base_keys``: theme keys of the run the coder is looking at; ``segment_exists``: the study's
    segment ids (a collection or a predicate); ``partition``: the current placement of segments
    (optional; used to refuse moves that change nothing and to check split coverage).
    """
    exists = segment_exists if callable(segment_exists) else (lambda s, ids=segment_exists: s in ids)
    errors: list[str] = []
    a = e.after
    if e.action not in ACTIONS:
        return [f"unknown action '{e.action}' (one of {', '.join(ACTIONS)})"]
    if not (e.coder or "").strip():
        errors.append("every decision needs a coder")

    def status(key: str | None) -> str | None:
        return state.status_of(key, base_keys)

    def need_text(field_name: str, what: str, limit: int = MAX_TEXT) -> None:
        value = a.get(field_name)
        if not isinstance(value, str) or not value.strip():
            errors.append(f"{what} is required")
        elif len(value) > limit:
            errors.append(f"{what} is longer than {limit} characters")

    def need_segments(values: Any, what: str = "segments") -> tuple[int, ...]:
        try:
            ids = tuple(int(v) for v in values or ())
        except (TypeError, ValueError):
            errors.append(f"{what}: segment ids must be whole numbers")
            return ()
        if not ids:
            errors.append(f"choose at least one segment ({what})")
        missing = [s for s in ids if not exists(s)]
        if missing:
            errors.append(f"no such segment in this study: {', '.join(map(str, missing[:10]))}")
        if len(set(ids)) != len(ids):
            errors.append(f"{what}: a segment is listed twice")
        return ids

    def need_free_name(name: Any, exclude: Collection[str] = (), what: str = "the name") -> None:
        taken = name_taken(state, name, base_keys, exclude)
        if taken is not None:
            errors.append(f"{what} '{' '.join(str(name).split())}' is already used by theme '{taken}'; "
                          "choose another name, or merge the two themes")

    key = e.theme_key

    def need_new_theme() -> None:
        """A theme made by this decision: a usable key nobody has, and a name."""
        if not key or not KEY_PATTERN.match(key):
            errors.append(f"'{key}' is not a usable theme key")
        elif status(key) is not None:
            errors.append(f"theme key '{key}' is taken")
        need_text("name", "a name", MAX_NAME)

    if e.action in (CONFIRM, RENAME, REJECT, SPLIT):
        st = status(key)
        if st is None:
            errors.append(f"unknown theme '{key}'")
        elif e.action == CONFIRM and st not in (NEW, CONFIRMED, REJECTED):
            errors.append(f"theme '{key}' was {st}; it cannot be confirmed")
        elif e.action != CONFIRM and st not in ACTIVE:
            errors.append(f"theme '{key}' was {st}; decide on the theme it became instead")
    if e.action == CONFIRM:  # the definition may come later (confirm again, or rename with one)
        need_text("name", "a name", MAX_NAME)
        need_free_name(a.get("name"), (key or "",))
        if a.get("definition") is not None and len(str(a["definition"])) > MAX_TEXT:
            errors.append(f"the definition is longer than {MAX_TEXT} characters")
    elif e.action == RENAME:
        need_text("name", "a new name", MAX_NAME)
        need_free_name(a.get("name"), (key or "",))
        current = state.themes.get(key or "")
        if current and current.name == a.get("name") and a.get("definition") in (None, current.definition):
            errors.append("the name is unchanged")
        if a.get("definition") is not None and len(str(a["definition"])) > MAX_TEXT:
            errors.append(f"the definition is longer than {MAX_TEXT} characters")
    elif e.action == REJECT:
        need_text("reason", "a reason")
    elif e.action == MERGE:
        keys = [str(k) for k in a.get("themes") or ()]
        into = a.get("into")
        if len(set(keys)) < 2:
            errors.append("choose two themes or more to merge")
        elif len(set(keys)) != len(keys):
            errors.append("a theme is listed twice")
        if into not in keys:
            errors.append("the theme to keep must be one of those merged")
        for k in dict.fromkeys(keys):
            if status(k) not in ACTIVE:
                errors.append(f"theme '{k}' cannot be merged ({status(k) or 'unknown'})")
        if e.theme_key not in (None, into):
            errors.append("the decision's theme must be the one kept")
        if a.get("name") is not None and len(str(a["name"])) > MAX_NAME:
            errors.append(f"the name is longer than {MAX_NAME} characters")
        need_free_name(a.get("name"), keys)
    elif e.action == SPLIT:
        parts = list(a.get("parts") or ())
        if len(parts) < 2:
            errors.append("a split needs two parts or more")
        members = set(_ints(e.before.get("members")))
        seen: set[int] = set()
        new_keys = []
        for n, p in enumerate(parts, start=1):
            ids = need_segments(p.get("segment_ids"), f"part {n}")
            if seen & set(ids):
                errors.append(f"part {n} shares segments with another part")
            seen |= set(ids)
            name = p.get("name")
            if not isinstance(name, str) or not name.strip():
                errors.append(f"part {n} needs a name")
            elif len(name) > MAX_NAME:
                errors.append(f"part {n}: the name is longer than {MAX_NAME} characters")
            else:
                need_free_name(name, (key or "",), f"part {n}: the name")
            new_keys.append(str(p.get("key") or ""))
        folded = [_fold_name(p.get("name")) for p in parts if isinstance(p.get("name"), str) and p["name"].strip()]
        if len(set(folded)) != len(folded):
            errors.append("the parts need different names")
        for k in new_keys:
            if not KEY_PATTERN.match(k):
                errors.append(f"'{k}' is not a usable theme key")
            elif status(k) is not None:
                errors.append(f"theme key '{k}' is taken")
        if len(set(new_keys)) != len(new_keys):
            errors.append("the parts need different keys")
        if parts and seen != members:
            errors.append("the parts must together hold exactly the theme's members")
        if partition is not None and key is not None:
            now = {s for s, k in partition.items() if k == key}
            if members != now:
                errors.append("the theme changed since the split was proposed; propose it again")
    elif e.action in (MOVE, ADD_SEGMENT):
        ids = need_segments(a.get("segment_ids"))
        to = a.get("to")
        if to not in (None, "") and status(str(to)) not in ACTIVE:
            errors.append(f"cannot put segments in theme '{to}' ({status(str(to)) or 'unknown'})")
        if partition is not None and ids and all(partition.get(s) == (to or None) for s in ids):
            errors.append("the segments are already there")
    elif e.action in (CODE, UNCODE):
        ids = need_segments(a.get("segment_ids"))
        target = a.get("to") if e.action == CODE else a.get("from")
        if target in (None, ""):
            errors.append("choose the theme" + (" to code the segments with" if e.action == CODE else " to take off"))
        elif status(str(target)) not in ACTIVE:
            errors.append(f"theme '{target}' is {status(str(target)) or 'unknown'}; it cannot be "
                          + ("given" if e.action == CODE else "taken off"))
        elif partition is not None and ids:
            carries = [s for s in ids if partition.get(s) == target or str(target) in state.extra.get(s, ())]
            if e.action == CODE and len(carries) == len(ids):
                errors.append("the segments already carry that theme")
            if e.action == UNCODE and not carries:
                errors.append("the segments do not carry that theme")
    elif e.action == ANSWER:
        ids = need_segments(a.get("segment_ids"), "the segment asked about")
        if len(ids) > 1:
            errors.append("an answer is about one segment")
        answer, proposed = a.get("answer"), a.get("proposed")
        if answer not in ANSWERS:
            errors.append(f"an answer is one of {', '.join(ANSWERS)}")
        if proposed not in (None, "") and status(str(proposed)) not in ACTIVE:
            errors.append(f"theme '{proposed}' is {status(str(proposed)) or 'unknown'}")
        if answer in ("yes", "no") and proposed in (None, ""):
            errors.append(f"a {answer} needs the theme asked about")
        given = _answer_keys(a.get("to"))
        if answer == "other" and not given:
            errors.append("choose the themes it is in for the other answer")
        for k in given + _answer_keys(a.get("not")):
            if status(k) not in ACTIVE:
                errors.append(f"theme '{k}' is {status(k) or 'unknown'}; choose an open theme")
        if answer == "new":
            need_new_theme()
            need_free_name(a.get("name"))
    elif e.action == IMPORT_CODE:
        need_new_theme()
        need_free_name(a.get("name"))
        if len(str(a.get("definition") or "")) > MAX_TEXT:
            errors.append(f"a definition is longer than {MAX_TEXT} characters")
        if a.get("color") and not re.match(r"^#[0-9A-F]{6}$", str(a["color"])):
            errors.append(f"colour '{a['color']}' is not #RRGGBB")
        if a.get("parent") and status(str(a["parent"])) is None:
            errors.append(f"parent theme '{a['parent']}' is unknown")
    elif e.action == ADD_THEME:
        need_new_theme()
        need_free_name(a.get("name"))
        need_segments(a.get("segment_ids"), "examples")
    elif e.action == SETTLE:
        kind = a.get("kind")
        if kind == "segment":
            ids = need_segments(a.get("segment_ids"), "the segment settled")
            if len(ids) > 1:
                errors.append("settle one segment at a time")
            for k in a.get("codes") or ():
                if status(str(k)) not in ACTIVE:
                    errors.append(f"theme '{k}' is {status(str(k)) or 'unknown'}; settle the theme first")
        elif kind == "theme":
            st = a.get("status")
            if status(key) is None:
                errors.append(f"unknown theme '{key}'")
            if st not in SETTLED_STATUSES:
                errors.append(f"a settled theme is one of {', '.join(SETTLED_STATUSES)}")
            elif st == CONFIRMED:
                need_text("name", "a name", MAX_NAME)
                if len(str(a.get("definition") or "")) > MAX_TEXT:
                    errors.append(f"the definition is longer than {MAX_TEXT} characters")
            elif st == REJECTED:
                need_text("reason", "a reason")
            elif st == MERGED and (status(str(a.get("into") or "")) not in ACTIVE or a.get("into") == key):
                errors.append(f"cannot merge into '{a.get('into')}': choose an open theme")
        else:
            errors.append("a settlement is about a theme or a segment")
    elif e.action == UNDO:
        last = state.last_of(e.coder)
        if last is None:
            errors.append("nothing of yours to undo")
        elif a.get("undoes") != last.uid:
            errors.append("only your latest decision still in force can be undone")
    return errors


def _fold_name(name: Any) -> str:
    return " ".join(str(name or "").split()).casefold()


def name_taken(state: CodebookState, name: Any, base_keys: Collection[str] = (),
               exclude: Collection[str] = ()) -> str | None:
    """The open theme (not one of ``exclude``) a coder already gave ``name`` (same words, any case), or None:
    a codebook lists a name once."""
    folded = _fold_name(name)
    if not folded:
        return None
    for k, t in state.themes.items():
        if k not in exclude and t.name and _fold_name(t.name) == folded and state.status_of(k, base_keys) in ACTIVE:
            return k
    return None


# ---------------------------------------------------------------------------------------------
# Coders compared
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """Two or more coders decided differently on one theme (``what`` = status/name) or segment."""

    kind: str                        # theme | segment
    ref: str                         # theme key, or segment id as text
    views: Mapping[str, str]         # coder -> what they decided, in words


def by_coder(entries: Sequence[Entry]) -> dict[str, CodebookState]:
    """Each coder's own log folded alone (their undos included)."""
    coders = sorted({e.coder for e in entries if e.action != SETTLE})
    return {c: fold(own_entries(entries, c)) for c in coders}


def differences(entries: Sequence[Entry]) -> list[Difference]:
    """Themes and segments on which coders' own decisions disagree and that nobody settled, in a stable order."""
    states = by_coder(entries)
    settled = [e for e in fold(entries).applied if e.action == SETTLE]
    settled_keys = {e.theme_key for e in settled if e.after.get("kind") == "theme"}
    settled_segs = {int(s) for e in settled if e.after.get("kind") == "segment" for s in e.after.get("segment_ids") or ()}
    out: list[Difference] = []
    keys = sorted({k for s in states.values() for k, t in s.themes.items() if t.decided_by} - settled_keys)
    for key in keys:
        views = {}
        for coder, s in states.items():
            t = s.themes.get(key)
            if t is not None and coder in t.decided_by:
                views[coder] = _describe(t)
        if len(views) >= 2 and len(set(views.values())) > 1:
            out.append(Difference("theme", key, views))
    segs = sorted({seg for s in states.values() for seg in s.assignments} - settled_segs)
    for seg in segs:
        views = {c: (s.assignments[seg] or "no theme") for c, s in states.items() if seg in s.assignments}
        if len(views) >= 2 and len(set(views.values())) > 1:
            out.append(Difference("segment", str(seg), views))
    return out


def _describe(t: ThemeState) -> str:
    if t.status == CONFIRMED:
        return f"confirmed as '{t.title}'"
    if t.status == REJECTED:
        return "rejected" + (f" ({t.reason})" if t.reason else "")
    if t.status == MERGED:
        return f"merged into {t.merged_into}"
    if t.status == SPLIT_UP:
        return f"split into {', '.join(t.split_into)}"
    return f"kept open as '{t.title}'"
