"""The Prefect flows behind ``themesift import codings`` and ``themesift compare`` (``flows.compare`` holds
the commands): read a coding file and store it; compare every coder, the machine as one more.

Why a module of their own: Prefect takes seconds to import, and the commands that only read the store
(``themes``, ``matrix``, ``codebook``, ``export``) register beside these in one parser; only a command that
runs one of these flows imports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flows  # noqa: F401  (Prefect settings before Prefect is imported)
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from flows.study_view import StudyView, compare_config, load_view, map_import, slug, study_folder
from models.codings import HUMAN, replace_codings, store_code_info
from models.store import Store
from pipeline.compare.compare import MACHINE, compare_study, summary_lines
from pipeline.exchange.codings import APPLY_USER_NAME, MACHINE_USER_NAME, CodingImport, read_codings
from pipeline.ingest.unzip import ZipLimits


@task(name="read-codings", cache_policy=NO_CACHE)
def read_codings_task(path: str, view: StudyView, coder: str | None, limits: ZipLimits,
                      position_units: str = "auto") -> CodingImport | str:
    """The file's selections, or why the file cannot be read at all (a message, not a crash): a coding
    file that is not what it says, or a .qdpx that unpacks to more than the ingest limits allow."""
    try:
        return read_codings(path, view.sources, coder, limits, position_units)
    except (ValueError, OSError) as exc:  # CodingFileError is a ValueError, as read_qdpx's refusals are
        return str(exc)


@task(name="store-codings", cache_policy=NO_CACHE)
def store_codings_task(store: Store, study: str, codings: dict, origin: str,
                       code_info: dict | None = None, selections: list | None = None) -> dict[str, int]:
    """The codings, the spans behind them and what the file's codebook says of their codes (place, colour,
    description), together."""
    with store.transaction() as session:
        if code_info:
            store_code_info(session, study, code_info, origin)
        return replace_codings(session, study, codings, origin, kind=HUMAN, selections=selections or ())


@flow(name="import-codings")
def import_codings_flow(path: str, study: str, config: dict, coder: str | None = None,
                        min_cover: float | None = None, position_units: str = "auto") -> dict[str, Any]:
    """Read a coding file, map it onto the latest run's segments and store it (one transaction).

    Returns ``{"status", "coders": {name: {"selections", "segments", "codings"}}, "notes", "run_id"}``.
    Nothing is stored when the file gives no selection at all (an empty import never wipes a coder).
    """
    min_cover = compare_config(config, min_cover=min_cover).min_cover
    store = Store.from_config(config["store"])
    view = load_view(store, study)
    # quote(): Prefect would walk every element of a 10,000-segment view and coding looking for futures
    imported = read_codings_task(path, quote(view), coder, ZipLimits.from_config(config["ingest"]), position_units)
    outcome: dict[str, Any] = {"status": "failed", "run_id": view.run_id, "notes": [], "coders": {},
                               "origin": Path(path).name, "matched_sources": {}, "error": None}
    if isinstance(imported, str):
        outcome["error"] = imported
        return outcome
    codings, notes = map_import(view, imported, min_cover)
    outcome.update(notes=notes, matched_sources=imported.matched_sources)
    reserved = sorted(n for n in codings if n in (MACHINE, MACHINE_USER_NAME, APPLY_USER_NAME))
    if reserved:
        whose = "themesift apply's coding" if reserved[0] == APPLY_USER_NAME else "the machine"
        outcome["error"] = (f"{Path(path).name}: coder name '{reserved[0]}' is reserved for {whose} (an import "
                            "would replace it); rename the coder in the file to compare it as one")
        return outcome
    if not imported.selections:
        outcome["notes"] = notes + [f"{Path(path).name}: no selection could be read; nothing stored"]
        return outcome
    stored = store_codings_task(store, study, quote(codings), str(Path(path).resolve()), imported.code_info,
                                quote(imported.selections))
    per_coder_sel: dict[str, int] = {}
    for sel in imported.selections:
        per_coder_sel[str(sel[4])] = per_coder_sel.get(str(sel[4]), 0) + 1
    outcome["coders"] = {name: {"selections": per_coder_sel.get(name, 0), "segments": len(codings[name]),
                                "codings": stored[name]} for name in sorted(codings)}
    outcome["status"] = "completed"
    lines = [f"Imported **{Path(path).name}** into study `{study}` (run {view.run_id}'s segments):", ""]
    lines += [f"- {n}: {c['selections']} selections -> {c['segments']} segments, {c['codings']} codings"
              for n, c in outcome["coders"].items()]
    if notes:
        lines += ["", "Could not be mapped:", ""] + [f"- {n}" for n in notes]
    create_markdown_artifact(key=f"codings-{slug(study)}", markdown="\n".join(lines),
                             description=f"Codings imported into study '{study}'")
    get_run_logger().info("imported %s", ", ".join(outcome["coders"]))
    return outcome


@task(name="compare", cache_policy=NO_CACHE)
def compare_task(view: StudyView, humans: dict, top_k: int, min_positive: int, kinds: dict | None = None,
                 recovered_f1: float = 0.5):
    ranking = [t.code for t in view.themes]
    return compare_study(view.unit_ids, view.cases, humans, view.partition, ranking, top_k, min_positive, kinds,
                         recovered_f1=recovered_f1)


@task(name="write-report", cache_policy=NO_CACHE)
def write_report_task(result, view: StudyView, folder: str, coders: list[dict], notes: list[str]) -> dict:
    from pipeline.compare.report import render_html, write_html, write_tables

    stem = f"compare-run{view.run_id}"
    label = (f"Machine: run {view.run_id} of {view.run_finished:%Y-%m-%d %H:%M} UTC, {len(view.themes)} themes"
             if view.themes else f"Run {view.run_id}")
    report = write_html(render_html(result, view.study, label, coders, notes), Path(folder) / f"{stem}.html")
    tables = write_tables(result, Path(folder), stem)
    return {"report": str(report), "tables": [str(t) for t in tables]}


def _artifact_value(v: Any) -> Any:
    if isinstance(v, float):
        return None if v != v else round(v, 4)
    return v


@flow(name="compare-codings")
def compare_flow(study: str, config: dict, human_files: list[str] | None = None, top_k: int | None = None,
                 min_positive: int | None = None, min_cover: float | None = None, run_id: int | None = None
                 ) -> dict[str, Any]:
    """Every human pair and the machine vs each human, per code and overall; report, tables, artifacts.

    ``human_files``: coding files compared as they are (not stored); a coder in a file replaces a
    stored coder of the same name for this comparison only. Numbers left None come from
    :func:`compare_config`.
    """
    settings = compare_config(config, top_k=top_k, min_positive=min_positive, min_cover=min_cover)
    top_k, min_positive, min_cover = settings.top_k, settings.min_positive, settings.min_cover
    store = Store.from_config(config["store"])
    view = load_view(store, study, run_id)
    humans = dict(view.humans)
    origin = {c.name: Path(c.origin).name for c in view.coders}
    kinds = {c.name: c.kind for c in view.coders}
    notes: list[str] = []
    unit_set = set(view.unit_ids)
    outside = {name: sum(1 for s in coding if s not in unit_set) for name, coding in humans.items()}
    for name, n in outside.items():
        if n:
            notes.append(f"{name}: {n} coded segments are not among run {view.run_id}'s segments (coded against an "
                         "older segmentation); re-import the coding to compare them")
    for path in human_files or []:
        imported = read_codings_task(path, quote(view), None, ZipLimits.from_config(config["ingest"]))
        if isinstance(imported, str):
            return {"status": "failed", "error": imported}
        codings, file_notes = map_import(view, imported, min_cover)
        notes += file_notes
        for name, coding in codings.items():
            humans[name] = coding
            origin[name] = Path(path).name
            kinds[name] = HUMAN
    humans = dict(sorted(humans.items(), key=lambda kv: (kinds.get(kv[0]) == "machine", kv[0])))
    result = compare_task(quote(view), quote(humans), top_k, min_positive, kinds, settings.recovered_f1)
    coders = [{"name": n, "kind": kinds.get(n, "human"), "origin": origin.get(n, ""),
               "segments": sum(1 for s, c in humans[n].items() if s in unit_set and c),
               "codes": len({c for s, cs in humans[n].items() if s in unit_set for c in cs})} for n in result.humans]
    coders.append({"name": MACHINE, "kind": "machine", "origin": f"run {view.run_id}",
                   "segments": sum(1 for t in view.partition.values() if t), "codes": len(view.themes)})
    folder = study_folder(config, study)
    files = write_report_task(quote(result), quote(view), str(folder), coders, notes)
    lines = summary_lines(result)
    key = f"compare-{slug(study)}"
    create_markdown_artifact(
        key=key,
        markdown="\n".join([f"# Coding comparison: study `{study}`, run {view.run_id}", "",
                            f"Unit: segment ({len(view.units)} participant segments the run clustered). "
                            "Machine themes mapped to each human's codes by Hungarian matching on segment "
                            "overlap (F1).", "", "```", *lines, "```", "", f"Report: `{files['report']}`"]
                           + ([ "", "Could not be mapped:", ""] + [f"- {n}" for n in notes] if notes else [])),
        description=f"Agreement between coders of study '{study}'",
    )
    create_table_artifact(
        key=f"{key}-per-code",
        table=[{k: _artifact_value(v) for k, v in row.items()} for row in result.agreement_rows()],
        description=f"Agreement per code and overall, study '{study}', run {view.run_id}",
    )
    figures = {}
    for pair in result.pairs():
        report = result.report_for(pair)
        figures[" vs ".join(pair)] = {
            "per_code": {c.code: {"kappa": c.kappa, "alpha": c.alpha, "percent": c.percent_agreement,
                                  "table": [c.table.both, c.table.only_a, c.table.only_b, c.table.neither],
                                  "too_rare": c.too_rare}
                         for c in report.per_code if c.coders == tuple(pair)},
            "mean_kappa": report.summary(pair).mean_kappa, "mean_alpha": report.summary(pair).mean_alpha,
        }
    return {"status": "completed", "study": study, "run_id": view.run_id, "n_units": len(view.units),
            "humans": result.humans,
            "kinds": {n: kinds.get(n, HUMAN) for n in result.humans},
            "lines": lines, "notes": notes, "figures": figures, **files}
