"""A run's suggestions as a file: JSON as ``models.export.suggestion_export`` reads them back, or CSV with
one row per (theme, member segment) and one per segment in the outlier queue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline import csvsafe
from pipeline.themes.rank import PARTS

CSV_COLUMNS = ("run_id", "theme_id", "rank", "label", "description", "second_pass", "score", *PARTS, "keywords", "segment_id",
               "source", "case", "speaker", "row_id", "start", "end", "strength", "joined_similarity", "is_quote",
               "suggested_rank", "suggested_similarity", "text")


def write_suggestions(export: dict[str, Any], path: Path, fmt: str) -> Path:
    """Write an export as JSON, or as CSV with one row per (theme, segment) and one per outlier."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    if fmt == "json":
        tmp.write_text(json.dumps(export, indent=2, ensure_ascii=False), encoding="utf-8")
    elif fmt == "csv":
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csvsafe.dict_writer(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for t in export["themes"]:
                quotes = set(t["quotes"])
                for m in t["members"]:
                    writer.writerow(_csv_row(export["run_id"], m, t, m["segment_id"] in quotes))
            for m in export["outliers"]:
                writer.writerow(_csv_row(export["run_id"], m, None, False))
    else:
        raise ValueError(f"unknown export format '{fmt}' (csv or json)")
    tmp.replace(path)  # never leave a half-written export under the real name
    return path


def _csv_row(run_id: int, m: dict, theme: dict | None, is_quote: bool) -> dict[str, Any]:
    row = {"run_id": run_id, **{k: m.get(k) for k in ("segment_id", "source", "case", "speaker", "row_id", "start",
                                                      "end", "strength", "joined_similarity", "text")},
           "is_quote": int(is_quote)}
    if theme is None:
        row.update(label="(outlier queue)", suggested_rank=m.get("suggested_rank"),
                   suggested_similarity=m.get("suggested_similarity"))
    else:
        row.update(theme_id=theme["theme_id"], rank=theme["rank"], label=theme["label"],
                   description=theme.get("description", ""), score=theme["score"],
                   second_pass=int(theme["second_pass"]),
                   keywords="; ".join(theme["keywords"]), **theme["parts"])
    return row

