"""The review page's view of a study: its ranked list of themes, and a segment shown in its transcript.

:class:`ReviewView` is the study as ``models.review`` reads it back (the run, the decision log folded, the
partition) with the lines of the ranked list the pages show (:class:`ThemeRow`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import review
from models.records import Segment, Source, Study
from models.review import StudyView
from pipeline.learn import codebook as cb
from pipeline.themes.rank import stability_is_weak

_SEGMENTS = re.compile(r"\d+ segments?")


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
    description: str = ""  # the machine's one-line description of a run theme ("" for others)

    @property
    def stability_weak(self) -> bool:
        """Too few segments for the stability figure to mean much: the page says so instead of showing it."""
        return stability_is_weak(self.reasons)


@dataclass
class ReviewView(StudyView):
    """A study at one moment, with the ranked list of its themes."""

    def row(self, key: str) -> ThemeRow | None:
        return next((r for r in self.rows() if r.key == key), None)

    def rows(self) -> list[ThemeRow]:
        if hasattr(self, "_rows"):
            return self._rows
        rows = []
        for key in self.keys():
            theme, st = self.themes.get(key), self.state.themes.get(key)
            status = self.status(key) or cb.NEW
            members = self.members_shown(key)
            n_cases = len(self.cases_of(members))
            if theme is not None:
                # the run's "N segments" counted the clustering's members only: say the number listed beside it
                joined = sum(1 for s in members if self.joined(s) is not None and self.base.get(s) == key)
                count = f"{len(members)} segments" + (f" ({joined} joined from the outlier queue)" if joined else "")
                reasons = [count if _SEGMENTS.fullmatch(r) else r for r in theme.reasons]
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
                decided_by=dict(st.decided_by) if st else {}, quote_ids=self.quote_ids(key),
                description=(theme.description or "") if theme is not None else ""))
        self._rows = rows
        return rows


def load_view(session: Session, study: str | Study, run_id: int | None = None, coder: str | None = None) -> ReviewView:
    """The study as a coder sees it now (``run_id``: a given run instead of the latest completed one;
    ``coder``: only their own decisions, while coding is blind)."""
    return review.load_view(session, study, run_id, ReviewView, coder=coder)


@dataclass(frozen=True)
class Context:
    """A segment in its transcript: ``before`` + ``quote`` + ``after`` is a slice of the source text."""

    source: str
    before: str
    quote: str
    after: str
    clipped_start: bool
    clipped_end: bool
    source_id: int = 0       # where the whole transcript view opens it: /sources/<source_id>#seg-<segment_id>
    segment_id: int = 0


def segment_context(session: Session, segment: Segment, turns: int = 2, max_chars: int = 3000) -> Context:
    """The turns around a segment (``turns`` before and after), the quote located by its offsets."""
    source = segment.source
    text = source.text
    start, end = review.turns_span(session, segment, turns)
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
                   clipped_start or bool(text[:start].strip()), clipped_end or bool(text[end:].strip()),
                   source.id, segment.id)


# ---------------------------------------------------------------------------------------------
# The transcript view: a whole source, its turns and each segment's themes
# ---------------------------------------------------------------------------------------------

N_COLOURS, N_PATTERNS = 16, 3  # stripe colours (.c0 .. .c15) and patterns (.p0 solid, .p1 dashed, .p2 dotted)


@dataclass(frozen=True)
class Piece:
    """A stretch of a source's text: a segment (``segment`` its id, ``codes`` the themes it carries now) or
    text between segments (``segment`` None)."""

    segment: int | None
    text: str
    codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Turn:
    """One speaker turn: its label (the speaker's words before it, such as ``P01:``) and its pieces."""

    label: str
    role: str
    pieces: tuple[Piece, ...]


@dataclass(frozen=True)
class Transcript:
    """A whole source as the transcript view shows it, built once on the server (no request per segment)."""

    source_id: int
    name: str
    case: str | None
    turns: tuple[Turn, ...]
    n_segments: int
    colours: dict[str, str]          # theme key -> its stripe's classes (colour, pattern), every theme of the study
    legend: list[tuple[str, int]]    # (theme key, segments here) of the themes this source's segments carry


def theme_colours(view: StudyView) -> dict[str, str]:
    """A stripe per theme (CSS classes: a colour, then a pattern once the colours are used up), stable while
    the list is: open themes first, in list order, then the others."""
    keys = view.active_keys()
    seen = set(keys)
    keys += [k for k in view.keys() if k not in seen]
    return {key: f"c{i % N_COLOURS} p{(i // N_COLOURS) % N_PATTERNS}" for i, key in enumerate(keys)}


def transcript_of(session: Session, view: StudyView, source: Source) -> Transcript:
    """``source``'s whole text cut at its segments and grouped by speaker turn, each segment with the themes
    it carries in ``view`` (the coder's own while coding is blind)."""
    text = source.text
    rows = session.execute(select(Segment.id, Segment.start, Segment.end, Segment.turn_index, Segment.role,
                                  Segment.speaker, Segment.case)
                           .where(Segment.source_id == source.id).order_by(Segment.start, Segment.end)).all()
    turns: list[Turn] = []
    pieces: list[Piece] = []
    label, role, turn, pos = "", "", None, 0
    counts: Counter = Counter()
    cases: Counter = Counter()

    def close() -> None:
        if pieces or label:
            turns.append(Turn(label, role, tuple(pieces)))

    for sid, start, end, turn_index, seg_role, speaker, case in rows:
        if start < pos:  # overlapping segments (not made by the segmenter): show each stretch once
            start = pos
        gap = text[pos:start]
        if turn_index != turn:
            close()
            pieces, turn, role = [], turn_index, seg_role
            label = gap.strip() or (speaker or "")
        elif gap.strip():
            pieces.append(Piece(None, gap))
        codes = tuple(view.codes.get(sid, ()))
        counts.update(codes)
        if seg_role == "participant" and case:
            cases[case] += 1
        pieces.append(Piece(sid, text[start:end], codes))
        pos = max(pos, end)
    close()
    if text[pos:].strip():
        turns.append(Turn("", "", (Piece(None, text[pos:]),)))
    colours = theme_colours(view)
    rank = {k: i for i, k in enumerate(colours)}
    legend = sorted(counts.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))
    return Transcript(source.id, source.name, cases.most_common(1)[0][0] if cases else None, tuple(turns), len(rows),
                      colours, legend)


def coder_counts(view: StudyView) -> Counter:
    return Counter(e.coder for e in view.entries)
