"""The decision log as a CSV file, out and in: one row per decision, the flat columns a person reads and
edits, and the decision's ``before`` and ``after`` as JSON. ``themesift decisions export|import`` and the
benchmarks' scripted coder use it; ``models.review`` reads and appends the log.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Iterable

from pipeline import csvsafe
from pipeline.learn.codebook import DecisionError, Entry

CSV_COLUMNS = ("uid", "created_at", "coder", "action", "run_id", "theme_id", "theme_key", "name", "definition",
               "reason", "themes", "into", "segment_ids", "to", "undoes", "before", "after")


def _flat(value: Any) -> str:
    """A value of ``after`` in its flat column: a Teach answer's several themes joined by ';'."""
    if value is None:
        return ""
    return ";".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def write_decision_csv(entries: Iterable[Entry], out: io.TextIOBase | None = None) -> str:
    """The decision log ``entries`` as CSV text (columns: :data:`CSV_COLUMNS`, documented in docs/review.md);
    written to ``out`` instead when given."""
    buffer = out or io.StringIO()
    writer = csvsafe.dict_writer(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for e in entries:
        a = e.after
        segs = a.get("segment_ids")
        writer.writerow({
            "uid": e.uid, "created_at": e.created_at.isoformat() if e.created_at else "", "coder": e.coder,
            "action": e.action, "run_id": e.run_id if e.run_id is not None else "",
            "theme_id": e.theme_id if e.theme_id is not None else "", "theme_key": e.theme_key or "",
            "name": a.get("name") or "", "definition": a.get("definition") or "", "reason": a.get("reason") or "",
            "themes": ";".join(a.get("themes") or ()), "into": a.get("into") or "",
            "segment_ids": ";".join(map(str, segs)) if segs else "", "to": _flat(a.get("to")),
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
        row = {(k or "").strip().lower(): csvsafe.read_cell((v or "").strip()) for k, v in raw.items() if k}
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
            # a flat column edited by hand wins; one that only spells the JSON's value (a list joined by
            # ';', or as Python wrote it before 2026-12-07) leaves the value as it is
            if row.get(col) and (col not in intent or row[col] not in (_flat(intent[col]), str(intent[col]))):
                intent[col] = row[col]
        items.append((row.get("coder", ""), intent))
    if errors:
        raise DecisionError(errors)
    return items
