"""A study as the compare commands and their flows read it: the latest (or a given) run's segments, the
stored codings, and coding files mapped onto those segments; the ``compare`` settings and the study's folder.

Below both ``flows.compare`` (the commands) and ``flows.codings`` (the flows), so neither imports the other
for it; it loads no Prefect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from models.codings import require_run, run_partition, run_units, stored_codings, stored_selections, study_sources
from models.store import Store, study_dir
from pipeline.compare.agreement import map_selections
from pipeline.config import CompareSettings
from pipeline.exchange.codings import CodingImport, unmapped_selections


def compare_config(config: Mapping[str, Any], **overrides: Any) -> CompareSettings:
    """The ``compare`` section of the configuration (its tunable numbers); ``overrides`` that are not None
    win (the CLI's options), checked as the file's values are."""
    return CompareSettings.of({**config["compare"], **{k: v for k, v in overrides.items() if v is not None}})


def slug(text: str) -> str:
    """``text`` as a file-name part (a study's or coder's name in a report's or export's name)."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "study"


def study_folder(config: dict, study: str) -> Path:
    return study_dir(config["store"], study)


# ---------------------------------------------------------------------------------------------
# Reading a study for comparison
# ---------------------------------------------------------------------------------------------


@dataclass
class StudyView:
    """What every command needs: the run, its units, the machine's partition and stored codings (with the
    spans each imported coder selected: ``selections``, coder -> ``(source id, start, end, code, coder)``)."""

    study: str
    run_id: int
    run_finished: datetime
    units: list
    partition: dict
    strength: dict
    themes: list
    humans: dict
    coders: list
    sources: list
    selections: dict = field(default_factory=dict)

    @property
    def segments(self) -> list[tuple]:
        return [(u.segment_id, u.source_id, u.start, u.end) for u in self.units]

    @property
    def unit_ids(self) -> list[int]:
        return [u.segment_id for u in self.units]

    @property
    def cases(self) -> dict:
        return {u.segment_id: u.case for u in self.units}


def load_view(store: Store, study: str, run_id: int | None = None) -> StudyView:
    with store.sessions() as session:
        run = require_run(session, study, run_id)
        units = run_units(session, run)
        partition, strength, themes = run_partition(session, run)
        humans, coders = stored_codings(session, study)
        sources = study_sources(session, study, {u.source_id for u in units})
        return StudyView(study, run.id, run.finished_at, units, partition, strength, themes, humans, coders,
                         sources, stored_selections(session, study))


def map_import(view: StudyView, imported: CodingImport, min_cover: float
               ) -> tuple[dict[str, dict[int, frozenset[str]]], list[str]]:
    """Selections onto the run's segments (every coder of the file gets an entry), plus report lines."""
    codings = map_selections(imported.selections, view.segments, min_cover=min_cover)
    for name in imported.coders:
        codings.setdefault(name, {})
    lost = unmapped_selections(imported.selections, view.segments, codings)
    notes = [f"{imported.origin}: {line}" for line in imported.messages()]
    if lost:
        per_coder: dict[str, int] = {}
        for sel in lost:
            per_coder[str(sel[4])] = per_coder.get(str(sel[4]), 0) + 1
        notes.append(f"{imported.origin}: {len(lost)} of {len(imported.selections)} selections put their code on "
                     f"no compared segment (they cover less than {min_cover:.0%} of any participant segment "
                     f"the run clustered, or fall on interviewer turns and short replies): "
                     + ", ".join(f"{k} {v}" for k, v in sorted(per_coder.items())))
    return {str(k): v for k, v in codings.items()}, notes
