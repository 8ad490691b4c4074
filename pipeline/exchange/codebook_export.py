"""The confirmed codebook as a file: CSV (one row per theme), or a REFI-QDA codebook (``.qdc``) that other
qualitative-analysis programs import. ``models.review.confirmed_codebook`` reads the entries from a study.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pipeline import csvsafe
from pipeline.exchange.refi_qda import QdaCode, palette_color, stable_guid, write_qdc


@dataclass(frozen=True)
class CodebookEntry:
    """A confirmed theme as the codebook lists it: its name and definition, how many segments and
    participants it holds, a few example segments and who decided on it."""

    key: str
    name: str
    definition: str
    n_segments: int
    n_cases: int
    example_ids: tuple[int, ...]
    decided_by: str
    color: str | None = None   # from an imported codebook; the palette's otherwise
    parent: str | None = None  # the name of the confirmed theme it sits under (an imported hierarchy)
    codable: bool = True       # False: an imported category, written back as one (isCodable="false")


def codebook_codes(entries: Sequence[CodebookEntry], study: str) -> list[QdaCode]:
    """The entries as REFI-QDA codes: each under its parent where that is confirmed too, each with a colour."""
    names = {e.name for e in entries}
    kids: dict[str | None, list[tuple[int, CodebookEntry]]] = {}
    for i, e in enumerate(entries):
        kids.setdefault(e.parent if e.parent in names and e.parent != e.name else None, []).append((i, e))

    def build(i: int, e: CodebookEntry, seen: frozenset[str]) -> QdaCode:
        children = tuple(build(j, c, seen | {c.name}) for j, c in kids.get(e.name, ()) if c.name not in seen)
        return QdaCode(stable_guid("themesift-code", study, e.key), e.name, e.definition,
                       e.color or palette_color(i), children, e.codable)

    return [build(i, e, frozenset({e.name})) for i, e in kids.get(None, [])]


def write_codebook(entries: Sequence[CodebookEntry], path: Path | None, fmt: str, study: str) -> str:
    """CSV text (returned; also written when ``path`` is given) or a REFI-QDA ``.qdc`` file at ``path``."""
    if fmt == "qdc":
        if path is None:
            raise ValueError("a .qdc codebook needs a file name")
        write_qdc(codebook_codes(entries, study), path)
        return ""
    buffer = io.StringIO()
    writer = csvsafe.writer(buffer, lineterminator="\n")
    writer.writerow(["key", "name", "definition", "segments", "participants", "example_segment_ids", "decided_by"])
    for e in entries:
        writer.writerow([e.key, e.name, e.definition, e.n_segments, e.n_cases, ";".join(map(str, e.example_ids)),
                         e.decided_by])
    if path is not None:
        Path(path).write_text(buffer.getvalue(), encoding="utf-8")
    return buffer.getvalue()
