"""Human codings in: a coding CSV or a REFI-QDA project, as character selections on the study's sources.

Why: agreement is only meaningful when every coder, human or machine, is compared on the same units.
This module turns what coders hand us into selections ``(source_key, start, end, code, coder)`` on the
study's own plain texts (the ``Source.text`` every segment offset points into); ``pipeline.compare.agreement
.map_selections`` then puts them on segments. Nothing here touches the store: the caller passes the
study's sources as :class:`StudySource` records.

Coding CSV (UTF-8, header row, column names case-insensitive, extra columns ignored):

* ``source``: the file name of the transcript as ingested (``P01.txt``); matched exactly, then
  ignoring case, then by name without extension. Or ``case``: the participant id; the excerpt is
  then looked for in every source holding that case. At least one of the two.
* ``start`` and ``end``: half-open ``[start, end)`` Unicode code point offsets into the source's
  plain text as Themesift stores it. Or ``text``: a verbatim excerpt, located in the source's text
  whitespace-tolerantly (runs of blanks and line breaks compare equal; if that fails, curly quotes,
  dashes and case are folded too). Excerpts that cannot be located are reported, never guessed.
* ``code``: the code applied.
* ``coder``: who applied it; may be left out when the caller names the coder.

Offsets are code point offsets throughout (Python ``str`` indices), as in REFI-QDA.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from bisect import bisect_left
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from itertools import accumulate
from os import PathLike
from pathlib import Path, PurePath
from typing import Hashable, Iterable, Mapping, Sequence

from pipeline import csvsafe
from pipeline.compare.agreement import Selection, Segment
from pipeline.exchange.refi_qda import ORIGIN, QdaCode, QdaProject, QdaUser, read_qdpx
from pipeline.ingest.unzip import ZipLimits
from pipeline.learn.apply import APPLY_CODER

MACHINE_USER_NAME = "Themesift (machine)"
APPLY_USER_NAME = APPLY_CODER  # the confirmed codebook applied (pipeline.learn.apply)
MACHINE_NAMES = (MACHINE_USER_NAME, APPLY_USER_NAME)
# The non-codable folders of an export: the confirmed codebook's tree and one per run of the machine's themes.
CONFIRMED_FOLDER = "Confirmed codebook"
RUN_FOLDER = "Themesift run {run}"
_RUN_FOLDER_RE = re.compile(r"^Themesift run \d+$")


def is_themesift_folder(name: str) -> bool:
    """One of the folders Themesift's export puts its own codes under (not a coder's code)."""
    return name == CONFIRMED_FOLDER or bool(_RUN_FOLDER_RE.match(name))
NO_USER = "(no user)"
NOT_FOUND_SHOWN = 5  # excerpts named in the one report line of those not found (the rest counted)
CSV_COLUMNS = ("source", "case", "start", "end", "text", "code", "coder")


class CodingFileError(ValueError):
    """A coding file that cannot be read at all (wrong type, missing columns)."""


@dataclass(frozen=True)
class StudySource:
    """One source of the study: ``key`` identifies it in selections (the store's source id). ``case_spans``:
    where each case's segments lie in the text (case folded, its stretches in order), so that a coding file's
    row naming a respondent of a survey CSV is looked for in that respondent's answers, not the whole file."""

    key: Hashable
    name: str
    text: str
    cases: frozenset[str] = frozenset()
    case_spans: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = ()

    def within_case(self, case: str, spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]] | None:
        """Of ``spans`` of the text, those inside ``case``'s stretches; None where the source holds one case
        or its stretches are not known (an interview: the coder's excerpt may take the question in)."""
        if len(self.cases) <= 1 or not self.case_spans:
            return None
        stretches = self._stretches.get(case.strip().casefold(), ())
        return [(s, e) for s, e in spans if any(a <= s and e <= b for a, b in stretches)]

    @cached_property
    def _stretches(self) -> dict[str, tuple[tuple[int, int], ...]]:
        """``case_spans`` by case, made once: a survey's import asks for every respondent in turn."""
        return dict(self.case_spans)


@dataclass
class CodingImport:
    """Selections read from one file and everything that could not be mapped.

    ``matched_sources``: file's source name -> (study source name, how: name|text|case).
    ``unmatched_sources``: source names (or cases) of the file with no study source.
    ``not_found``: rows or selections whose text could not be located (with a reason).
    ``relocated``: selections whose offsets were re-found by their text (source text differed).
    ``other_coders``: coders the file holds whose codings were left out because one coder was asked for.
    """

    origin: str
    selections: list[Selection] = field(default_factory=list)
    n_records: int = 0
    matched_sources: dict[str, tuple[str, str]] = field(default_factory=dict)
    unmatched_sources: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped_users: list[str] = field(default_factory=list)
    relocated: int = 0
    ambiguous: int = 0
    outside_case: int = 0  # excerpts not in their case's own text, placed where they occur elsewhere
    code_info: dict[str, "CodeInfo"] = field(default_factory=dict)
    other_coders: set[str] = field(default_factory=set)

    @property
    def coders(self) -> list[str]:
        return sorted({str(s[4]) for s in self.selections})

    @property
    def codes(self) -> list[str]:
        return sorted({s[3] for s in self.selections})

    def per_coder(self) -> dict[str, list[Selection]]:
        out: dict[str, list[Selection]] = defaultdict(list)
        for s in self.selections:
            out[str(s[4])].append(s)
        return dict(sorted(out.items()))

    def messages(self) -> list[str]:
        """Human-readable report lines of what could not be mapped."""
        lines = []
        if self.unmatched_sources:
            lines.append(f"{len(self.unmatched_sources)} source(s) match no study source: "
                         + ", ".join(self.unmatched_sources))
        if self.not_found:  # one line, a few shown: never one per coding
            shown = self.not_found[:NOT_FOUND_SHOWN]
            lines.append(f"{len(self.not_found)} excerpt(s)/selection(s) not found in the study's text: "
                         + "; ".join(shown) + ("; ..." if len(self.not_found) > len(shown) else ""))
        if self.relocated:
            lines.append(f"{self.relocated} selection(s) re-located by their text (the source text differed)")
        if self.ambiguous:
            lines.append(f"{self.ambiguous} excerpt(s) occur more than once in their source; the first place used")
        if self.outside_case:
            lines.append(f"{self.outside_case} excerpt(s) are not in the text of the case their row names; each "
                         "placed where it occurs first in the rest of the source: check those rows' case")
        if self.skipped_users:
            lines.append("skipped user(s): " + ", ".join(self.skipped_users))
        if self.other_coders and not self.selections:
            lines.append("no coding by the coder asked for; the file's coders: " + ", ".join(sorted(self.other_coders)))
        lines.extend(self.problems)
        return lines


@dataclass(frozen=True)
class CodeInfo:
    """What a QDA tool's codebook says of one code besides its name: where it sits (``parent``: the
    parent code's name as imported, None at the top), its colour (``#RRGGBB``) and description."""

    parent: str | None = None
    color: str | None = None
    description: str = ""
    codable: bool = True


def code_infos(codes: Sequence[QdaCode]) -> dict[str, CodeInfo]:
    """Code name (as :func:`code_names` gives it) -> its :class:`CodeInfo`, parents before children."""
    names = code_names(codes)
    out: dict[str, CodeInfo] = {}

    def walk(items: Sequence[QdaCode], parent: str | None) -> None:
        for c in items:
            out[names[c.guid]] = CodeInfo(parent, c.color, c.description, c.codable)
            walk(c.children, names[c.guid])

    walk(codes, None)
    return out


# ---------------------------------------------------------------------------------------------
# Locating excerpts whitespace-tolerantly
# ---------------------------------------------------------------------------------------------

_FOLD = {
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u00b4\u0060", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"'),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
    "\u2026": "...",
}
_DROP = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"}


def _normalise(text: str, fold: bool) -> tuple[str, list[int]]:
    """Text with blank runs collapsed to one space (and typography/case folded when ``fold``),
    plus for each output character the index of the input character it came from."""
    out: list[str] = []
    index: list[int] = []
    in_space = False
    for i, ch in enumerate(text):
        if ch in _DROP:
            continue
        if ch.isspace():
            if not in_space and out:
                out.append(" ")
                index.append(i)
            in_space = True
            continue
        in_space = False
        piece = ch
        if fold:
            piece = _FOLD.get(ch, ch)
            piece = unicodedata.normalize("NFKC", piece).casefold()
        for p in piece:
            out.append(p)
            index.append(i)
    if out and out[-1] == " ":
        out.pop()
        index.pop()
    return "".join(out), index


class TextLocator:
    """Finds verbatim excerpts in one text, tolerant of whitespace (then of typography and case)."""

    def __init__(self, text: str):
        self.text = text
        self._norm: dict[bool, tuple[str, list[int]]] = {}

    def _get(self, fold: bool) -> tuple[str, list[int]]:
        if fold not in self._norm:
            self._norm[fold] = _normalise(self.text, fold)
        return self._norm[fold]

    def find_all(self, excerpt: str) -> list[tuple[int, int]]:
        """Every place of ``excerpt`` as ``[start, end)`` offsets of the text (first level that finds it)."""
        for fold in (False, True):
            needle, _ = _normalise(excerpt, fold)
            if not needle:
                return []
            hay, index = self._get(fold)
            spans = []
            pos = hay.find(needle)
            while pos >= 0:
                spans.append((index[pos], index[pos + len(needle) - 1] + 1))
                pos = hay.find(needle, pos + 1)
            if spans:
                return spans
        return []


# ---------------------------------------------------------------------------------------------
# Matching file sources to study sources
# ---------------------------------------------------------------------------------------------


def _stem(name: str) -> str:
    return PurePath(name.strip()).stem.casefold() if "." in name else name.strip().casefold()


class SourceIndex:
    """Study sources by name, case and text, with one cached locator per source."""

    def __init__(self, sources: Iterable[StudySource]):
        self.sources = list(sources)
        self.by_name = {s.name: s for s in self.sources}
        self.by_lower: dict[str, list[StudySource]] = defaultdict(list)
        self.by_stem: dict[str, list[StudySource]] = defaultdict(list)
        self.by_case: dict[str, list[StudySource]] = defaultdict(list)
        for s in self.sources:
            self.by_lower[s.name.strip().casefold()].append(s)
            self.by_stem[_stem(s.name)].append(s)
            for c in s.cases:
                self.by_case[c.strip().casefold()].append(s)
        self._locators: dict[Hashable, TextLocator] = {}

    def locator(self, source: StudySource) -> TextLocator:
        if source.key not in self._locators:
            self._locators[source.key] = TextLocator(source.text)
        return self._locators[source.key]

    def by_file_name(self, name: str) -> StudySource | None:
        """Exact name, then ignoring case, then the name without its extension (one hit only)."""
        if name in self.by_name:
            return self.by_name[name]
        for table, key in ((self.by_lower, name.strip().casefold()), (self.by_stem, _stem(name))):
            hits = table.get(key, [])
            if len(hits) == 1:
                return hits[0]
        return None

    def for_case(self, case: str) -> list[StudySource]:
        """Sources holding a participant ``case`` (or named after it)."""
        hits = list(self.by_case.get(case.strip().casefold(), []))
        for s in self.by_stem.get(case.strip().casefold(), []):
            if s not in hits:
                hits.append(s)
        return hits

    def by_text(self, text: str) -> StudySource | None:
        """The study source with the same text (line ends, then all whitespace, ignored)."""
        lf = text.replace("\r\n", "\n").replace("\r", "\n")
        for s in self.sources:
            if s.text == lf or s.text.strip() == lf.strip():
                return s
        squeezed = " ".join(lf.split())
        hits = [s for s in self.sources if " ".join(s.text.split()) == squeezed]
        return hits[0] if len(hits) == 1 else None


# ---------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------


def _read_rows(data: str, origin: str) -> tuple[list[str], list[dict[str, str]]]:
    first = data[:4096].splitlines()[0] if data.strip() else ""
    # Only the delimiter is guessed (from the header); quoting is always the spreadsheet kind.
    counts = {d: first.count(d) for d in (",", ";", "\t")}
    delimiter = max(counts, key=lambda d: (counts[d], d == ","))
    reader = csv.reader(io.StringIO(data), delimiter=delimiter, doublequote=True, quotechar='"')
    try:
        header = next(reader)
    except StopIteration as exc:
        raise CodingFileError(f"{origin}: empty file") from exc
    names = [h.strip().lower() for h in header]
    rows = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        rows.append({n: (csvsafe.read_cell(values[i].strip("\ufeff")) if i < len(values) else "")
                     for i, n in enumerate(names)})
    return names, rows


def read_coding_csv(
    path: str | PathLike[str],
    sources: Iterable[StudySource],
    coder: str | None = None,
) -> CodingImport:
    """Selections from a coding CSV (columns in the module docstring).

    ``coder``: when the file has a ``coder`` column, only that coder's rows are read; otherwise
    every row is filed under this name (required then). Raises :class:`CodingFileError` for a file
    missing the needed columns; rows that cannot be mapped are reported in the result.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        data = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        data = raw.decode("cp1252")
    return coding_csv_selections(data, sources, coder, origin=path.name)


def coding_csv_selections(
    data: str,
    sources: Iterable[StudySource],
    coder: str | None = None,
    origin: str = "codings.csv",
) -> CodingImport:
    """:func:`read_coding_csv` on CSV text already in memory."""
    names, rows = _read_rows(data, origin)
    have = set(names)
    missing = []
    if not have & {"source", "case"}:
        missing.append("source or case")
    if not ({"start", "end"} <= have or "text" in have):
        missing.append("start and end, or text")
    if "code" not in have:
        missing.append("code")
    if "coder" not in have and not coder:
        missing.append("coder (or give the coder's name: themesift import codings FILE --coder NAME)")
    if missing:
        raise CodingFileError(
            f"{origin}: missing column(s): {'; '.join(missing)} (found: {', '.join(names) or 'none'})"
        )
    index = SourceIndex(sources)
    result = CodingImport(origin=origin)
    unmatched: dict[str, int] = Counter()
    seen_place: dict[tuple, tuple[int, int]] = {}
    by_offsets = {"start", "end"} <= have
    for line_no, row in enumerate(rows, start=2):
        who = row.get("coder", "").strip() or (coder or "")
        if coder and "coder" in have and row.get("coder", "").strip() and who != coder:
            result.other_coders.add(who)
            continue
        if not who:
            result.problems.append(f"{origin} line {line_no}: no coder; row skipped")
            continue
        code = row.get("code", "").strip()
        if not code:
            result.problems.append(f"{origin} line {line_no}: no code; row skipped")
            continue
        result.n_records += 1
        source_name = row.get("source", "").strip()
        case = row.get("case", "").strip()
        if source_name:
            hit = index.by_file_name(source_name)
            candidates = [hit] if hit else []
            label = source_name
            if hit:
                result.matched_sources.setdefault(source_name, (hit.name, "name"))
        elif case:
            candidates = index.for_case(case)
            label = f"case {case}"
            for c in candidates:
                result.matched_sources.setdefault(label, (c.name, "case"))
        else:
            result.problems.append(f"{origin} line {line_no}: neither source nor case; row skipped")
            continue
        if not candidates:
            unmatched[label] += 1
            continue
        text = row.get("text", "")
        if by_offsets and row.get("start", "").strip() and row.get("end", "").strip():
            try:
                start, end = int(row["start"]), int(row["end"])
            except ValueError:
                result.problems.append(f"{origin} line {line_no}: start/end are not whole numbers; row skipped")
                continue
            if len(candidates) > 1:
                result.problems.append(f"{origin} line {line_no}: offsets with a case held by several "
                                       f"sources ({', '.join(c.name for c in candidates)}); row skipped")
                continue
            src = candidates[0]
            if not 0 <= start < end <= len(src.text):
                result.not_found.append(f"line {line_no}: [{start}, {end}) outside {src.name} "
                                        f"(length {len(src.text)})")
                continue
            result.selections.append((src.key, start, end, code, who))
            continue
        if not text.strip():
            result.problems.append(f"{origin} line {line_no}: no text and no offsets; row skipped")
            continue
        place_key = (tuple(c.key for c in candidates), case, " ".join(text.split()))
        if place_key in seen_place:  # the same excerpt again (another code): same place
            src_key, (start, end) = seen_place[place_key]
            result.selections.append((src_key, start, end, code, who))
            continue
        found: list[tuple[StudySource, tuple[int, int]]] = []
        outside = False
        for src in candidates:
            spans = index.locator(src).find_all(text)
            own = src.within_case(case, spans) if case and not source_name else None
            outside |= own == [] and bool(spans)  # a survey row whose text is not in that respondent's answer
            found.extend((src, span) for span in (spans if not own else own))
        result.outside_case += outside and bool(found)
        if not found:
            short = " ".join(text.split())
            short = short if len(short) <= 70 else short[:67] + "..."
            result.not_found.append(f"line {line_no} ({label}): \"{short}\"")
            continue
        if len(found) > 1:
            result.ambiguous += 1
        src, (start, end) = found[0]
        seen_place[place_key] = (src.key, (start, end))
        result.selections.append((src.key, start, end, code, who))
    result.unmatched_sources = [f"{name} ({n} row{'s' * (n != 1)})" for name, n in sorted(unmatched.items())]
    return result


# ---------------------------------------------------------------------------------------------
# REFI-QDA projects
# ---------------------------------------------------------------------------------------------


def write_coding_table(rows: Sequence[Mapping], path: Path, fmt: str) -> Path:
    """Codings as a file: CSV in the coding CSV's columns (so it imports again) plus ``kind``, ``via``,
    ``probability``, ``row_id`` and a column per attribute of a CSV source, or JSON (a list of the same
    rows, attributes as one mapping). Written beside and renamed, never half."""
    import json

    from pipeline.exchange.suggestions_export import attribute_columns

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    if fmt == "json":
        tmp.write_text(json.dumps(list(rows), indent=2, ensure_ascii=False), encoding="utf-8")
    elif fmt == "csv":
        fixed = [*CSV_COLUMNS, "kind", "via", "probability", "row_id"]
        extra = attribute_columns(rows, fixed)
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csvsafe.dict_writer(handle, fieldnames=[*fixed, *extra.values()])
            writer.writeheader()
            writer.writerows({**{k: v for k, v in row.items() if k != "attributes"},
                              **{column: (row.get("attributes") or {}).get(k) for k, column in extra.items()}}
                             for row in rows)
    else:
        raise ValueError(f"unknown export format '{fmt}' (csv or json)")
    tmp.replace(path)
    return path


def code_names(codes: Sequence[QdaCode]) -> dict[str, str]:
    """Code GUID -> code name; a name used by two codes becomes its path ``Parent/Child``."""
    paths: dict[str, list[str]] = {}

    def walk(items: Sequence[QdaCode], parents: list[str]) -> None:
        for c in items:
            paths[c.guid] = parents + [c.name]
            walk(c.children, parents + [c.name])

    walk(codes, [])
    counts = Counter(p[-1] for p in paths.values())
    return {g: (p[-1] if counts[p[-1]] == 1 else "/".join(p)) for g, p in paths.items()}


def _user_names(users: Sequence[QdaUser], origin: str, problems: list[str]) -> dict[str, str]:
    """GUID -> the coder each user is filed under: their name, or their GUID where they have none; users who
    share a name are told apart by their GUID's first part (one coder each, as in the tool that wrote them)."""
    named = {u.guid: " ".join(u.name.split()) or u.guid for u in users}
    count = Counter(named.values())
    for name in sorted(n for n, k in count.items() if k > 1):
        apart = [f"{name} ({g.split('-')[0]})" for g, n in named.items() if n == name]
        problems.append(f"{origin}: {count[name]} users are named '{name}'; each is a coder of their own: "
                        + ", ".join(apart))
    return {g: f"{n} ({g.split('-')[0]})" if count[n] > 1 else n for g, n in named.items()}


def qda_selections(
    project: QdaProject,
    sources: Iterable[StudySource],
    coder: str | None = None,
    origin: str = "project.qdpx",
    skip_users: Sequence[str] = MACHINE_NAMES,
) -> CodingImport:
    """Selections from a REFI-QDA project, each coding filed under its user's name.

    Sources are matched to study sources by name (exact, ignoring case, without extension), then by
    text equality (line ends and whitespace ignored). When a source matched by name has a different
    text, each selection is re-located by its selected text (nearest place to its old offset).
    ``coder``: read only that user's codings; codings without a user are filed under it (else under
    ``"(no user)"``). In a file Themesift wrote (``origin="Themesift"``), users named in ``skip_users``
    (our machine users, by default: their codings are the run's and ``apply``'s own) are left out and
    reported. In
    another tool's file a user named like one of Themesift's machine coders is a person who happens to
    carry that name: filed as ``<name> (from <file>)``, never taken as the machine.
    The codebook's hierarchy, colours and descriptions come with it (``code_info``); codes no coding
    uses are counted in one line.
    """
    index = SourceIndex(sources)
    result = CodingImport(origin=origin, problems=list(project.problems))
    names = code_names(project.codes)
    ours = project.origin.strip() == ORIGIN
    # our own export's folders hold the machine's and the confirmed codebook's codes, not a coder's
    result.code_info = code_infos([c for c in project.codes if not (ours and is_themesift_folder(c.name))])
    users = _user_names(project.users, origin, result.problems)
    matched: dict[str, tuple[StudySource, str]] = {}
    for qs in project.sources:
        hit = index.by_file_name(qs.name)
        how = "name"
        if hit is None:
            hit, how = index.by_text(qs.text), "text"
        if hit is None:
            result.unmatched_sources.append(qs.name or qs.guid)
            continue
        same = hit.text == qs.text
        matched[qs.guid] = (hit, "same" if same else "differs")
        result.matched_sources[qs.name] = (hit.name, how if same else f"{how}, text differs")
    texts = {qs.guid: qs.text for qs in project.sources}
    skipped: Counter = Counter()
    renamed: set[str] = set()
    for c in project.codings:
        user = users.get(c.user_guid, c.user_guid) if c.user_guid else None
        if user is not None and ours and user in skip_users:
            skipped[user] += 1
            continue
        if coder and user is not None and user != coder:
            result.other_coders.add(user)
            continue
        who = user or coder or NO_USER
        if not ours and who in MACHINE_NAMES:
            renamed.add(who)
            who = f"{who} (from {origin})"
        if c.source_guid not in matched:
            continue
        result.n_records += 1
        code = names.get(c.code_guid)
        if code is None:  # read_qde drops these already; belt and braces
            result.problems.append(f"{origin}: coding with unknown code {c.code_guid}; dropped")
            continue
        src, state = matched[c.source_guid]
        if state == "same":
            result.selections.append((src.key, c.start, c.end, code, who))
            continue
        excerpt = texts[c.source_guid][c.start:c.end]
        spans = index.locator(src).find_all(excerpt)
        if not spans:
            short = " ".join(excerpt.split())
            short = short if len(short) <= 70 else short[:67] + "..."
            result.not_found.append(f"{src.name} [{c.start}, {c.end}) \"{short}\"")
            continue
        start, end = min(spans, key=lambda sp: (abs(sp[0] - c.start), sp[0]))
        result.relocated += 1
        result.selections.append((src.key, start, end, code, who))
    result.skipped_users = [f"{u} ({n} codings; the machine's codings come from its runs)"
                            for u, n in sorted(skipped.items())]
    for name in sorted(renamed):
        result.problems.append(f"{origin}: user '{name}' is not Themesift's (the file comes from "
                               f"{project.origin or 'an unnamed tool'}); filed as '{name} (from {origin})'")
    used = {c.code_guid for c in project.codings}

    def in_use(code: QdaCode) -> bool:  # a parent whose sub-codes carry codings is in use as their group
        return code.guid in used or any(in_use(k) for k in code.children)

    unused = [c for c in project.all_codes() if c.codable and not in_use(c)]
    if unused:
        shown = ", ".join(names[c.guid] for c in unused[:5]) + (", ..." if len(unused) > 5 else "")
        result.problems.append(f"{origin}: {len(unused)} code(s) of the codebook carry no coding here ({shown}); "
                               "kept with their place, colour and description, and exported with the study")
    return result


def read_codings(
    path: str | PathLike[str],
    sources: Iterable[StudySource],
    coder: str | None = None,
    limits: ZipLimits = ZipLimits(),
    position_units: str = "auto",
) -> CodingImport:
    """A ``.csv`` coding table or a ``.qdpx`` REFI-QDA project (unpacked within ``limits``; a ``.qdpx``
    sent renamed ``.zip`` too), by the file's extension. ``position_units``: see ``read_qde``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_coding_csv(path, sources, coder)
    if suffix in (".qdpx", ".zip"):
        project = read_qdpx(path, limits, position_units=position_units)
        return qda_selections(project, sources, coder, origin=path.name)
    raise CodingFileError(f"{path}: use a .csv coding table or a .qdpx REFI-QDA project")


# ---------------------------------------------------------------------------------------------
# Selections that gave no segment a code
# ---------------------------------------------------------------------------------------------


def unmapped_selections(
    selections: Iterable[Selection],
    segments: Iterable[Segment],
    codings: Mapping[Hashable, Mapping[Hashable, frozenset[str]]],
) -> list[Selection]:
    """Selections that put their code on no segment (they fall on interviewer turns, short replies
    or cover too little of any segment): what :func:`pipeline.compare.agreement.map_selections` could not use."""
    by_source: dict[Hashable, list[tuple[int, int, Hashable]]] = defaultdict(list)
    for seg_id, source, start, end in segments:
        by_source[source].append((int(start), int(end), seg_id))
    # segments by start, with the largest end so far: a selection looks only at those that can overlap it
    # (every segment of a survey's one source for every answer was 57 million steps at 10,000 answers)
    starts: dict[Hashable, list[int]] = {}
    reach: dict[Hashable, list[int]] = {}
    for source, segs in by_source.items():
        segs.sort(key=lambda t: (t[0], t[1]))
        starts[source] = [s for s, _, _ in segs]
        reach[source] = list(accumulate((e for _, e, _ in segs), max))
    lost = []
    for sel in selections:
        source, start, end, code, coder = sel
        coded = codings.get(coder, {})
        segs = by_source.get(source, [])
        j = bisect_left(starts.get(source, []), end) - 1  # the last segment that starts before the selection ends
        hit = False
        while j >= 0 and reach[source][j] > start:
            s, e, seg_id = segs[j]
            if e > start and code in coded.get(seg_id, ()):
                hit = True
                break
            j -= 1
        if not hit:
            lost.append(sel)
    return lost
