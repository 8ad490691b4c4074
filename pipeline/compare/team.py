"""Blind double coding compared and settled: each coder's own codebook, their agreement, where they differ.

In blind double coding every coder's decisions fold into their own codebook (``pipeline.learn.codebook``,
:func:`~pipeline.learn.codebook.own_entries`); the whole log folded, settlements included, is the
consensus. This module turns the coders' own states into codings (segment -> the themes it carries that
the coder confirmed, themes named by their stable keys) and hands them to the same
:func:`pipeline.compare.compare.compare_study` that ``themesift compare`` uses: per theme and overall
kappa and alpha between the coders, and between the machine's run and each coder. It lists the
differences still open: themes the coders decided differently (status or name), then segments that
carry different themes among those every coder and the consensus confirmed (a segment in a theme one
coder rejected follows that theme's settlement). A difference is settled by a ``settle`` decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Collection, Hashable, Mapping, Sequence

from pipeline.compare.compare import Comparison, compare_study
from pipeline.learn import codebook as cb

NOT_DECIDED = "not decided"


@dataclass(frozen=True)
class ThemeView:
    """What one coder made of a theme: enough to show it and to settle with it."""

    status: str
    name: str
    definition: str = ""
    reason: str = ""
    into: str | None = None

    @property
    def decided(self) -> bool:
        return self.status != NOT_DECIDED

    def same(self, other: "ThemeView") -> bool:
        """Two coders agree on a theme: same status (open and not decided alike), and for a confirmed one the
        same name (case and spaces aside), for a merged one the same theme kept."""
        if {self.status, other.status} <= {cb.NEW, NOT_DECIDED}:
            return True  # kept open (a merge's target, a split's part) and not decided: neither is in the codebook
        if self.status != other.status:
            return False
        if self.status == cb.CONFIRMED:
            return " ".join(self.name.lower().split()) == " ".join(other.name.lower().split())
        return self.into == other.into if self.status == cb.MERGED else True

    def words(self) -> str:
        if self.status == cb.CONFIRMED:
            return f"confirmed as '{self.name}'"
        if self.status == cb.REJECTED:
            return "rejected" + (f" ({self.reason})" if self.reason else "")
        if self.status == cb.MERGED:
            return f"merged into {self.into}"
        if self.status == cb.SPLIT_UP:
            return "split"
        return "kept open" if self.decided else NOT_DECIDED


@dataclass(frozen=True)
class ThemeDifference:
    key: str
    views: Mapping[str, ThemeView]   # coder -> their view


@dataclass(frozen=True)
class SegmentDifference:
    """A segment the coders coded differently on the compared themes (``codes``); ``taken``: every theme
    the consensus confirmed that it carries for each coder (what taking their side gives it)."""

    segment: int
    codes: Mapping[str, tuple[str, ...]]
    taken: Mapping[str, tuple[str, ...]]


@dataclass
class TeamComparison:
    """The coders' own codings compared (``comparison``: the ``compare`` figures, codes = theme keys) and
    the differences still open, themes first."""

    coders: list[str]
    codings: dict[str, dict[int, frozenset[str]]]
    comparison: Comparison | None
    themes: list[ThemeDifference] = field(default_factory=list)
    segments: list[SegmentDifference] = field(default_factory=list)
    settled: int = 0                 # settlements in force
    compared_codes: tuple[str, ...] = ()  # themes whose segments are compared one by one
    # a theme the coders named differently and nobody has settled: "Waiting (amira) / Access (ben)", so that
    # the comparison does not show it under whichever name was given last
    names: dict[str, str] = field(default_factory=dict)

    @property
    def open(self) -> int:
        return len(self.themes) + len(self.segments)


def theme_view(state: cb.CodebookState, key: str, coder: str) -> ThemeView:
    t = state.themes.get(key)
    if t is None or coder not in t.decided_by:
        status = t.status if t is not None and t.status in (cb.MERGED, cb.SPLIT_UP) else NOT_DECIDED
        return ThemeView(status, t.title if t is not None else key, into=t.merged_into if t is not None else None)
    return ThemeView(t.status, t.title, t.definition, t.reason, t.merged_into)


def coding_of(state: cb.CodebookState, base: Mapping[int, str | None], base_keys: Collection[str],
              units: Sequence[int]) -> dict[int, frozenset[str]]:
    """A coder's coding: segment -> the themes it carries that the coder confirmed (segments they decided
    on only: :meth:`~pipeline.learn.codebook.CodebookState.decided_codes`)."""
    confirmed = {t.key for t in state.confirmed()}
    codes = state.decided_codes(base, base_keys)
    out = {}
    for u in units:
        kept = frozenset(k for k in codes.get(u, ()) if k in confirmed)
        if kept:
            out[u] = kept
    return out


def team_comparison(entries: Sequence[cb.Entry], base: Mapping[int, str | None], base_keys: Collection[str],
                    units: Sequence[int], cases: Mapping[Hashable, str | None], ranking: Sequence[str],
                    min_positive: int = 5, recovered_f1: float = 0.5,
                    blind_until: datetime | None = None) -> TeamComparison:
    """Compare every coder's own coding of the run's ``units`` (``base``: the run's theme per segment, the
    machine's coding), and list the differences the consensus (the whole log folded) has not settled.
    ``blind_until``: when the comparison of blind coding was opened; a coder's own coding is what they
    decided until then (what they decide later, on the team's view, is the team's, and would otherwise
    rewrite the blind figures)."""
    states = cb.by_coder(cb.entries_until(entries, blind_until))
    coders = sorted(states)
    consensus = cb.fold(entries)
    settled = [e for e in consensus.applied if e.action == cb.SETTLE]
    settled_themes = {e.theme_key for e in settled if e.after.get("kind") == "theme"}
    settled_segments = {int(s) for e in settled if e.after.get("kind") == "segment"
                        for s in e.after.get("segment_ids") or ()}
    codings = {c: coding_of(states[c], base, base_keys, units) for c in coders}
    comparison = None
    if len(coders) >= 2:
        comparison = compare_study(units, cases, codings, dict(base), list(ranking), min_positive=min_positive,
                                   recovered_f1=recovered_f1)
    out = TeamComparison(coders, codings, comparison, settled=len(settled))
    if len(coders) < 2:
        return out
    order = {k: i for i, k in enumerate(ranking)}
    keys = sorted({k for s in states.values() for k, t in s.themes.items() if t.decided_by},
                  key=lambda k: (order.get(k, len(order)), k))
    for key in keys:
        if key in settled_themes:
            continue
        given = {c: states[c].themes[key].name for c in coders
                 if key in states[c].themes and c in states[c].themes[key].decided_by and states[c].themes[key].name}
        if len(set(given.values())) > 1:
            out.names[key] = " / ".join(f"{name} ({c})" for c, name in given.items())
        views = {c: theme_view(states[c], key, c) for c in coders}
        first = next(iter(views.values()))
        if any(v.decided for v in views.values()) and not all(first.same(v) for v in views.values()):
            out.themes.append(ThemeDifference(key, views))
    confirmed = {t.key for t in consensus.confirmed()}
    agreed = set(confirmed)
    for s in states.values():
        agreed &= {t.key for t in s.confirmed()}
    out.compared_codes = tuple(sorted(agreed, key=lambda k: (order.get(k, len(order)), k)))
    for u in units:
        if u in settled_segments:
            continue
        codes = {c: tuple(k for k in out.compared_codes if k in codings[c].get(u, ())) for c in coders}
        if len(set(codes.values())) > 1:
            taken = {c: tuple(k for k in sorted(codings[c].get(u, ()), key=lambda k: (order.get(k, len(order)), k))
                              if k in confirmed) for c in coders}
            out.segments.append(SegmentDifference(u, codes, taken))
    return out


def settlement(difference: ThemeDifference | SegmentDifference, took: str | None,
               given: Mapping[str, object] | None = None) -> dict:
    """The ``settle`` decision (an intent for ``models.review.decide``) that takes coder ``took``'s side,
    or, with ``took`` None, the new decision ``given`` (``status``, ``name``, ``definition``, ``reason``,
    ``into``; for a segment ``codes``)."""
    given = dict(given or {})
    if isinstance(difference, SegmentDifference):
        codes = list(difference.taken[took]) if took is not None else [str(k) for k in given.get("codes") or ()]
        return {"action": cb.SETTLE, "kind": "segment", "segment_ids": [difference.segment], "codes": codes,
                "took": took}
    if took is not None:
        v = difference.views[took]
        if v.status == cb.SPLIT_UP:  # a split is parts with their members, not a status a settlement gives
            raise cb.DecisionError([f"{took} split this theme: a split is not taken from one side; split the "
                                    "theme on its page as the team would have it, or settle it with a status"])
        status = v.status if v.status in cb.SETTLED_STATUSES else cb.NEW
        given = {"status": status, "name": v.name, "definition": v.definition, "reason": v.reason, "into": v.into}
    intent = {"action": cb.SETTLE, "kind": "theme", "theme_key": difference.key, "took": took,
              "status": given.get("status")}
    for f in ("name", "definition", "reason", "into"):
        if given.get(f):
            intent[f] = str(given[f])
    return intent


__all__ = ["NOT_DECIDED", "SegmentDifference", "TeamComparison", "ThemeDifference", "ThemeView", "coding_of",
           "settlement", "team_comparison", "theme_view"]
