"""A run's suggestions as a file: JSON as ``models.export.suggestion_export`` reads them back, or CSV with
one row per (theme, member segment) and one per segment in the outlier queue. A CSV source's extra columns
(``--attr-col``, and the text column where there are several) follow the fixed columns under their own
names, so the rows join back to the spreadsheet they came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

from pipeline import csvsafe
from pipeline.themes.rank import PARTS

CSV_COLUMNS = ("run_id", "theme_id", "theme_key", "rank", "label", "description", "second_pass", "score", *PARTS,
               "keywords", "segment_id", "source", "case", "speaker", "row_id", "start", "end", "strength", "joined_similarity", "is_quote",
               "suggested_rank", "suggested_similarity", "text")


def write_suggestions(export: dict[str, Any], path: Path, fmt: str) -> Path:
    """Write an export as JSON, or as CSV with one row per (theme, segment) and one per outlier."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    if fmt == "json":
        tmp.write_text(json.dumps(export, indent=2, ensure_ascii=False), encoding="utf-8")
    elif fmt == "csv":
        members = [m for t in export["themes"] for m in t["members"]] + export["outliers"]
        extra = attribute_columns(members)
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csvsafe.dict_writer(handle, fieldnames=[*CSV_COLUMNS, *extra.values()])
            writer.writeheader()
            for t in export["themes"]:
                quotes = set(t["quotes"])
                for m in t["members"]:
                    writer.writerow(_csv_row(export["run_id"], m, t, m["segment_id"] in quotes, extra))
            for m in export["outliers"]:
                writer.writerow(_csv_row(export["run_id"], m, None, False, extra))
    else:
        raise ValueError(f"unknown export format '{fmt}' (csv or json)")
    tmp.replace(path)  # never leave a half-written export under the real name
    return path


def attribute_columns(rows: Sequence[Mapping], taken: Collection[str] = CSV_COLUMNS) -> dict[str, str]:
    """Each attribute the rows carry (in the order first met) -> its CSV column: its own name, or
    ``attribute <name>`` where that is one of the ``taken`` columns."""
    keys = dict.fromkeys(k for m in rows for k in (m.get("attributes") or {}))
    return {k: f"attribute {k}" if k in taken else k for k in keys}


def _csv_row(run_id: int, m: dict, theme: dict | None, is_quote: bool, extra: dict[str, str]) -> dict[str, Any]:
    row = {"run_id": run_id, **{k: m.get(k) for k in ("segment_id", "source", "case", "speaker", "row_id", "start",
                                                      "end", "strength", "joined_similarity", "text")},
           "is_quote": int(is_quote), **{column: (m.get("attributes") or {}).get(k) for k, column in extra.items()}}
    if theme is None:
        row.update(label="(outlier queue)", suggested_rank=m.get("suggested_rank"),
                   suggested_similarity=m.get("suggested_similarity"))
    else:
        row.update(theme_id=theme["theme_id"], theme_key=theme.get("theme_key"), rank=theme["rank"],
                   label=theme["label"],
                   description=theme.get("description", ""), score=theme["score"],
                   second_pass=int(theme["second_pass"]),
                   keywords="; ".join(theme["keywords"]), **theme["parts"])
    return row

