"""Every CSV Themesift writes goes through here, so that no cell runs as a spreadsheet formula.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return as a
formula (CSV formula injection: a theme named ``=HYPERLINK(...)``, a transcript line ``=1+1``). Text cells
that start with one of these (after any quotes) get one single quote in front, which spreadsheets show as
text and do not run; plain numbers (``-0.5``) are left as they are. :func:`read_cell` takes that quote off
again, so that what Themesift writes reads back as it was (the decision log's export, import, export gives
the same file). Like ``config.py`` this module sits below every stage: ingest reads cells back with it.
"""

from __future__ import annotations

import csv
import re
from typing import Any, Iterable, Mapping, Sequence

_RISKY = re.compile(r"^'*[=+\-@\t\r]")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def safe_cell(value: Any) -> Any:
    """``value`` as a spreadsheet will not run it: text starting with = + - @ TAB CR gets a leading quote."""
    if isinstance(value, str) and _RISKY.match(value) and not _NUMBER.match(value):
        return "'" + value
    return value


def read_cell(value: str) -> str:
    """A cell as it was before :func:`safe_cell` (one leading quote off where safe_cell added it)."""
    if value.startswith("'") and _RISKY.match(value[1:]) and not _NUMBER.match(value[1:]):
        return value[1:]
    return value


class _Writer:
    """``csv.writer`` with every cell through :func:`safe_cell`."""

    def __init__(self, handle, **kwargs):
        self._writer = csv.writer(handle, **kwargs)

    def writerow(self, row: Iterable[Any]):
        return self._writer.writerow([safe_cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


class _DictWriter(csv.DictWriter):
    """``csv.DictWriter`` with every cell through :func:`safe_cell`."""

    def writerow(self, rowdict: Mapping[str, Any]):
        return super().writerow({k: safe_cell(v) for k, v in rowdict.items()})

    def writerows(self, rowdicts: Iterable[Mapping[str, Any]]) -> None:
        for row in rowdicts:
            self.writerow(row)


def writer(handle, **kwargs) -> _Writer:
    """The one way to write CSV rows (lists) in Themesift: ``csv.writer``'s arguments, safe cells."""
    return _Writer(handle, **kwargs)


def dict_writer(handle, fieldnames: Sequence[str], **kwargs) -> _DictWriter:
    """The one way to write CSV rows (dicts) in Themesift: ``csv.DictWriter``'s arguments, safe cells."""
    return _DictWriter(handle, fieldnames, **kwargs)
