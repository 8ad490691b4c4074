"""The Framework Method chart: participants x themes, each cell the count and the best quotes.

Step 6 of the Framework Method (Gale et al. 2013) charts a matrix of cases (participants) against the
themes of the working framework, each cell summarising what that participant said, with quotes.
Counting cases matters: a theme raised by 8 of 10 participants says more than one said 40 times by
one person, so the matrix carries a "participants" row beside the segment counts.

Pure: the caller passes the units (segments with source, offsets, case, text), a coding
(segment -> codes) and the columns; writers produce CSV, HTML and XLSX (openpyxl).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Mapping, Protocol, Sequence

from pipeline import csvsafe
from pipeline.compare.agreement import natural_key
from pipeline.xmlsafe import xml_text


class UnitLike(Protocol):
    segment_id: Hashable
    source: str
    case: str | None
    start: int
    end: int
    text: str
    attributes: tuple[tuple[str, str], ...]  # read only when a matrix is charted ``by`` one of them


@dataclass(frozen=True)
class Column:
    """One theme or code of the matrix."""

    code: str
    heading: str
    description: str = ""


@dataclass(frozen=True)
class Quote:
    segment_id: Hashable
    source: str
    start: int
    end: int
    text: str  # as the matrix's cells show it: shortened past max_chars
    full: str = ""  # the whole segment, for the Quotes sheet (a data sheet cuts nothing)

    @property
    def location(self) -> str:
        """Where the quote is: source file and code point offsets into its plain text."""
        return f"{self.source}, chars {self.start}-{self.end}"


@dataclass
class Cell:
    count: int = 0
    quotes: list[Quote] = field(default_factory=list)


@dataclass
class FrameworkMatrix:
    """``cases``: the rows, participants unless ``rows_are`` names an attribute the rows group by (a
    survey's site, say)."""

    title: str
    cases: list[str]
    columns: list[Column]
    cells: dict[tuple[str, str], Cell]
    segments_per_case: dict[str, int]
    rows_are: str = "participant"

    @property
    def raising(self) -> str:
        """The label of the row that counts the rows raising each column."""
        return "participants raising it" if self.rows_are == "participant" else f"{self.rows_are} values raising it"

    def cell(self, case: str, code: str) -> Cell:
        return self.cells.get((case, code), Cell())

    def participants(self, code: str) -> int:
        """How many participants raised the code (cases with a non-empty cell)."""
        return sum(1 for c in self.cases if self.cell(c, code).count)

    def segments(self, code: str) -> int:
        return sum(self.cell(c, code).count for c in self.cases)


NO_CASE = "(no participant)"


def chart_columns(units: Iterable[UnitLike]) -> list[str]:
    """The attributes the units carry, which a matrix can be charted ``by``."""
    return sorted({k for u in units for k, _ in u.attributes})


def row_of(case: str | None, attributes: Mapping[str, str] | Iterable[tuple[str, str]], by: str | None) -> str:
    """The matrix row a segment falls in: its participant, or its value of the attribute ``by``."""
    if by is None:
        return case or NO_CASE
    return dict(attributes or ()).get(by) or f"(no {by})"


def build_matrix(
    units: Sequence[UnitLike],
    coding: Mapping[Hashable, frozenset[str]],
    columns: Sequence[Column],
    title: str,
    score: Callable[[Hashable, str], float] | None = None,
    n_quotes: int = 2,
    max_chars: int = 300,
    by: str | None = None,
) -> FrameworkMatrix:
    """Count each participant's segments per column and keep the ``n_quotes`` best quotes.

    ``by``: rows by that attribute of the units (a CSV column: a survey's site, or ``text column`` for its
    questions) instead of by participant.

    Best: highest ``score(segment_id, code)`` (the machine's membership strength, or how many other
    coders gave the same code), then longest; quotes are shown in text order. Quotes longer than
    ``max_chars`` are shortened with '...'.
    """
    score = score or (lambda _seg, _code: 0.0)
    wanted = {c.code for c in columns}
    found: dict[tuple[str, str], list[UnitLike]] = {}
    per_case: dict[str, int] = {}
    for u in units:
        case = row_of(u.case, u.attributes if by else (), by)
        per_case[case] = per_case.get(case, 0) + 1
        for code in coding.get(u.segment_id, ()):
            if code in wanted:
                found.setdefault((case, code), []).append(u)
    cells: dict[tuple[str, str], Cell] = {}
    for key, members in found.items():
        code = key[1]
        best = sorted(members, key=lambda u: (-score(u.segment_id, code), -len(u.text), u.source, u.start))
        chosen = sorted(best[:n_quotes], key=lambda u: (natural_key(u.source), u.start))
        quotes = [Quote(u.segment_id, u.source, u.start, u.end,
                        u.text if len(u.text) <= max_chars else u.text[:max_chars - 3].rstrip() + "...", u.text)
                  for u in chosen]
        cells[key] = Cell(len(members), quotes)
    cases = sorted(per_case, key=natural_key)
    return FrameworkMatrix(title, cases, list(columns), cells, per_case, by or "participant")


def cell_text(cell: Cell) -> str:
    """A cell as plain text: the count, then each quote with its location on its own line."""
    if not cell.count:
        return ""
    lines = [f"{cell.count} segment{'s' * (cell.count != 1)}"]
    lines += [f"\u201c{q.text}\u201d ({q.location})" for q in cell.quotes]
    return "\n".join(lines)


def _rows(matrix: FrameworkMatrix) -> list[list[str]]:
    rows = [[matrix.rows_are, "segments"] + [c.heading for c in matrix.columns]]
    for case in matrix.cases:
        rows.append([case, str(matrix.segments_per_case.get(case, 0))]
                    + [cell_text(matrix.cell(case, c.code)) for c in matrix.columns])
    n = len(matrix.cases)
    rows.append([matrix.raising, str(n)] + [f"{matrix.participants(c.code)} of {n}"
                                                     for c in matrix.columns])
    rows.append(["segments", str(sum(matrix.segments_per_case.values()))]
                + [str(matrix.segments(c.code)) for c in matrix.columns])
    return rows


def write_csv(matrix: FrameworkMatrix, path: Path) -> Path:
    """Wide CSV: one row per participant, one column per theme; cells as in :func:`cell_text`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        csvsafe.writer(handle).writerows(_rows(matrix))
    return path


def render_html(matrix: FrameworkMatrix) -> str:
    e = lambda s: html.escape(str(s), quote=True)  # noqa: E731
    head = "".join(f'<th title="{e(c.description)}">{e(c.heading)}</th>' for c in matrix.columns)
    body = []
    for case in matrix.cases:
        tds = []
        for c in matrix.columns:
            cell = matrix.cell(case, c.code)
            if not cell.count:
                tds.append('<td class="empty"></td>')
                continue
            quotes = "".join(f'<blockquote>\u201c{e(q.text)}\u201d<cite>{e(q.location)}</cite></blockquote>'
                             for q in cell.quotes)
            tds.append(f'<td><span class="n">{cell.count} segment{"s" * (cell.count != 1)}</span>{quotes}</td>')
        body.append(f"<tr><th>{e(case)}<br><small>{matrix.segments_per_case.get(case, 0)} segments</small></th>"
                    + "".join(tds) + "</tr>")
    n = len(matrix.cases)
    body.append(f"<tr class='total'><th>{e(matrix.raising)}</th>"
                + "".join(f"<td>{matrix.participants(c.code)} of {n}</td>" for c in matrix.columns) + "</tr>")
    body.append("<tr class='total'><th>segments</th>"
                + "".join(f"<td>{matrix.segments(c.code)}</td>" for c in matrix.columns) + "</tr>")
    css = ("body{font-family:system-ui,sans-serif;margin:1em}table{border-collapse:collapse;font-size:.82em}"
           "th,td{border:1px solid #ccc;padding:.3em;vertical-align:top;min-width:14em}"
           "thead th{background:#f0f0f0;position:sticky;top:0}td.empty{background:#fafafa}"
           ".n{font-weight:bold;display:block}blockquote{margin:.3em 0;padding-left:.4em;border-left:3px solid #9ab}"
           "cite{display:block;color:#666;font-size:.85em;font-style:normal}tr.total td{font-weight:bold}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(matrix.title)}</title><style>{css}</style></head><body>"
            f"<h1>{e(matrix.title)}</h1><table><thead><tr><th>{e(matrix.rows_are)}</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></body></html>\n")


def write_html(matrix: FrameworkMatrix, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(matrix), encoding="utf-8")
    return path


def _cells(row: Sequence[Any]) -> list[Any]:
    """A row as a worksheet can hold it: text without the control characters XML forbids (a quote with
    Word's manual line break made the workbook fail)."""
    return [xml_text(v) if isinstance(v, str) else v for v in row]


def write_xlsx(matrix: FrameworkMatrix, path: Path) -> Path:
    """Sheets: 'Matrix' (cells with count and quotes), 'Counts' (numbers), 'Quotes' (one row a quote),
    'Themes' (headings and descriptions)."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill

    wb = Workbook()
    ws = wb.active
    ws.title = "Matrix"
    rows = [_cells(row) for row in _rows(matrix)]
    bold = Font(bold=True)
    wrap = Alignment(wrap_text=True, vertical="top")
    head_fill = PatternFill("solid", fgColor="EEEEEE")
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row, start=1):
            cell = ws.cell(row=r, column=c, value=int(value) if c == 2 and r > 1 and value.isdigit() else value)
            cell.alignment = wrap
            if r == 1 or c == 1 or r > len(matrix.cases) + 1:
                cell.font = bold
            if r == 1:
                cell.fill = head_fill
    ws.column_dimensions["A"].width = 18
    ws.column_dimensions["B"].width = 10
    from openpyxl.utils import get_column_letter

    for c in range(3, len(matrix.columns) + 3):
        ws.column_dimensions[get_column_letter(c)].width = 48
    ws.freeze_panes = "C2"

    counts = wb.create_sheet("Counts")
    counts.append(_cells([matrix.rows_are, "segments"] + [c.heading for c in matrix.columns]))
    for case in matrix.cases:
        counts.append(_cells([case, matrix.segments_per_case.get(case, 0)]
                             + [matrix.cell(case, c.code).count for c in matrix.columns]))
    counts.append(_cells([matrix.raising, len(matrix.cases)]
                         + [matrix.participants(c.code) for c in matrix.columns]))
    for cell in counts[1]:
        cell.font = bold

    quotes = wb.create_sheet("Quotes")
    quotes.append(_cells([matrix.rows_are, "theme", "source", "start", "end", "segment_id", "quote"]))
    for case in matrix.cases:
        for c in matrix.columns:
            for q in matrix.cell(case, c.code).quotes:
                quotes.append(_cells([case, c.heading, q.source, q.start, q.end, str(q.segment_id), q.full or q.text]))
    for cell in quotes[1]:
        cell.font = bold

    themes = wb.create_sheet("Themes")
    themes.append(_cells(["theme", "description", matrix.raising.removesuffix(" raising it"), "segments"]))
    for c in matrix.columns:
        themes.append(_cells([c.heading, c.description, matrix.participants(c.code), matrix.segments(c.code)]))
    for cell in themes[1]:
        cell.font = bold
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def write_matrix(matrix: FrameworkMatrix, path: Path, fmt: str) -> Path:
    if fmt == "csv":
        return write_csv(matrix, path)
    if fmt == "html":
        return write_html(matrix, path)
    if fmt == "xlsx":
        return write_xlsx(matrix, path)
    raise ValueError(f"unknown matrix format '{fmt}' (xlsx, csv or html)")


def as_records(matrix: FrameworkMatrix) -> list[dict[str, Any]]:
    """Long form: one dict per non-empty cell (for artifacts and tests)."""
    return [{"participant": case, "theme": c.heading, "count": matrix.cell(case, c.code).count,
             "quotes": [q.location for q in matrix.cell(case, c.code).quotes]}
            for case in matrix.cases for c in matrix.columns if matrix.cell(case, c.code).count]
