"""Compare codings: import human codings, compare every coder (the machine as one more), chart and export.

Commands (registered on the ``themesift`` CLI by :func:`add_commands`):

* ``themesift import codings FILE --study NAME [--coder NAME]``: a coding CSV or a REFI-QDA ``.qdpx``;
  selections are mapped onto the latest run's segments and stored, replacing that coder's earlier
  import for the study (Prefect flow ``import-codings``, in ``flows.codings``).
* ``themesift compare --study NAME [--human FILE]...``: per-code kappa and alpha for every human pair
  and the machine vs each human; a self-contained HTML report and CSV tables in the study's folder and
  a Prefect artifact (flow ``compare-codings``, in ``flows.codings``).
* ``themesift matrix --study NAME [--coder NAME] [--format xlsx|csv|html]``: the Framework matrix.
* ``themesift export qdpx --study NAME [-o FILE]``: the study as a REFI-QDA project.

Matrix and export only read the store, so they run without Prefect (no local server to start), and this
module does not import Prefect: the flows do, and only the commands that run them import them.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from shlex import quote

from flows.options import checked, load
from flows.runtime import require_loopback
from flows.study_view import StudyView, compare_config, load_view, slug, study_folder
from models.codings import require_run, stored_code_info
from models.store import Store, StudyNotFoundError
from pipeline.compare.compare import MACHINE
from pipeline.config import CompareSettings
from pipeline.exchange.codings import CONFIRMED_FOLDER, MACHINE_USER_NAME, RUN_FOLDER
from pipeline.ingest.unzip import ZipLimits


# ---------------------------------------------------------------------------------------------
# Matrix and export (store reads only: no flow)
# ---------------------------------------------------------------------------------------------


def confirmed_entries(store: Store, study: str) -> list:
    """The confirmed codebook (``CodebookEntry`` rows, list order) from the review's decision log."""
    from models.review import confirmed_codebook

    with store.sessions() as session:
        return confirmed_codebook(session, study)


def confirmed_definitions(store: Store, study: str) -> dict[str, str]:
    """Confirmed theme name -> definition from the review's decision log ({} when there is none)."""
    return {e.name: e.definition for e in confirmed_entries(store, study)}


def with_review(humans: dict, review: dict) -> tuple[dict, list[str]]:
    """The stored coders' codings with the review page's (``models.review.review_codings``) beside them, and
    the names the review's go under: their own, or ``name (review)`` where an imported coder has it."""
    out = dict(humans)
    shown = []
    for name, coding in review.items():
        key = name if name not in out else f"{name} (review)"
        out[key] = coding
        shown.append(key)
    return out, shown


def default_matrix_coder(view: StudyView) -> str:
    """The confirmed codebook applied (a stored coder of kind machine) when there is one, else the run."""
    applied = sorted(c.name for c in view.coders if c.kind == "machine" and view.humans.get(c.name))
    return applied[0] if applied else MACHINE


def build_study_matrix(view: StudyView, coder: str | None = None, n_quotes: int = 2,
                       definitions: dict[str, str] | None = None, by: str | None = None):
    """The Framework matrix: participants x the run's themes (``coder`` ``machine``), or x one stored
    coder's codes (a human's, or the confirmed themes as applied by ``themesift apply``). ``by``: rows
    by that column of the CSV sources (an ``--attr-col``, or ``text column``) instead of by participant."""
    from pipeline.compare.agreement import natural_key
    from pipeline.compare.matrix import Column, build_matrix, chart_columns

    definitions = definitions or {}
    if by is not None:
        known = chart_columns(view.units)
        if by not in known:
            raise StudyNotFoundError(f"study '{view.study}' has no column '{by}' to chart by (columns: "
                                     f"{', '.join(known) or 'none: only CSV sources read with --attr-col have them'})")
    if coder is None or coder == MACHINE:
        coding = {s: frozenset([t]) for s, t in view.partition.items() if t}
        columns = [Column(t.code, t.code, "keywords: " + ", ".join(t.keywords)) for t in view.themes]
        title = f"Framework matrix: study {view.study}, run {view.run_id} (machine themes)"
        return build_matrix(view.units, coding, columns, title, lambda s, _c: view.strength.get(s, 0.0), n_quotes,
                            by=by)
    if coder not in view.humans:
        known = ", ".join(sorted(view.humans)) or "none imported yet"
        raise StudyNotFoundError(f"study '{view.study}' has no coder '{coder}' (coders: {known})")
    coding = view.humans[coder]
    codes = sorted({c for cs in coding.values() for c in cs}, key=natural_key)
    others = [c for n, c in view.humans.items() if n != coder]

    def agreeing(seg: int, code: str) -> float:
        return float(sum(code in o.get(seg, ()) for o in others))

    applied = any(c.name == coder and c.kind == "machine" for c in view.coders)
    title = (f"Framework matrix: study {view.study}, confirmed themes as coded by {coder} (run {view.run_id})"
             if applied else f"Framework matrix: study {view.study}, {coder}'s codes (on run {view.run_id}'s segments)")
    columns = [Column(c, c, definitions.get(c, "")) for c in codes]
    return build_matrix(view.units, coding, columns, title, agreeing, n_quotes, by=by)


def export_study_qdpx(view: StudyView, path: Path, created: datetime | None = None,
                      confirmed: list | None = None, code_info: dict | None = None,
                      review: dict | None = None) -> dict[str, int]:
    """Write the study as a ``.qdpx``: the coders' codes (``code_info``: what their codebooks said of them),
    the ``confirmed`` codebook (``CodebookEntry`` rows) as its own tree and the run's themes under a folder
    of their own (``pipeline.exchange.qda_export``). ``review``: the review page's codings
    (``models.review.review_codings``: each coder's own and the consensus), each a user whose codes sit in the
    confirmed codebook's tree (a name only one coder gave joins it); a name an imported coder has already is
    told apart as ``name (review)``. Returns the number of codings written per user (one per code of a
    selection), the figure another tool will show."""
    from pipeline.exchange.qda_export import ExportSegment, ExportTheme, study_project
    from pipeline.exchange.refi_qda import write_qdpx

    segments = [ExportSegment(u.segment_id, u.source_id, u.start, u.end, u.case) for u in view.units]
    themes = [ExportTheme(t.code, "Themesift suggestion, run %d%s; keywords: %s"
                          % (view.run_id, f": {t.description}" if t.description else "", ", ".join(t.keywords)))
              for t in view.themes]
    book = [ExportTheme(e.name, e.definition, e.color, e.parent, e.codable) for e in confirmed or ()]
    humans, shown = with_review(view.humans, review or {})
    applied = {c.name for c in view.coders if c.kind == "machine"} | set(shown)  # review codes: confirmed themes
    project = study_project(view.study, view.sources, segments, view.partition, themes, humans,
                            code_info=code_info, run_id=view.run_id, confirmed=book, applied=applied,
                            selections=view.selections)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    write_qdpx(project, tmp, created=created)
    tmp.replace(path)
    names = {u.guid: u.name for u in project.users}
    return dict(Counter(names.get(c.user_guid, "(no user)") for c in project.codings))


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--config", type=Path, help="YAML file overriding configs/default.yaml")


def _fail(message: str) -> int:
    print(f"themesift: {message}", file=sys.stderr)
    return 2


def _check_study(config: dict, study: str, run_id: int | None = None) -> None:
    """Fail fast (StudyNotFoundError) before a flow starts Prefect: no such study, or no run yet."""
    store = Store.from_config(config["store"])
    with store.sessions() as session:
        require_run(session, study, run_id)


def cmd_import_codings(args: argparse.Namespace) -> int:
    config = load(args.config)
    if not args.file.is_file():
        return _fail(f"{args.file}: no such file")
    if args.file.suffix.lower() not in (".csv", ".qdpx", ".zip"):
        return _fail(f"{args.file}: use a .csv coding table or a .qdpx REFI-QDA project (or one renamed .zip)")
    _check_study(config, args.study)
    require_loopback()
    from flows.codings import import_codings_flow

    outcome = import_codings_flow(path=str(args.file), study=args.study, config=config, coder=args.coder,
                                  min_cover=args.min_cover, position_units=args.position_units)
    if outcome.get("error"):
        return _fail(outcome["error"])
    by_case: dict[str, int] = {}
    for name, (matched, how) in sorted(outcome["matched_sources"].items()):
        if how == "case":  # a survey's every respondent: one line per source, not per case
            by_case[matched] = by_case.get(matched, 0) + 1
        elif name != matched or how != "name":
            print(f"source {name} -> {matched} (matched by {how})")
    for matched, n in sorted(by_case.items()):
        print(f"{n} case(s) -> {matched} (matched by case)")
    for name, c in outcome["coders"].items():
        print(f"{name}: {c['selections']} selections -> {c['segments']} segments, {c['codings']} codings stored")
    for note in outcome["notes"]:
        print(f"note: {note}")
    if outcome["status"] != "completed":
        return 1
    print(f"Stored on run {outcome['run_id']}'s segments (each coder's earlier import for study "
          f"'{args.study}' replaced). Compare: themesift compare --study {quote(args.study)}")
    return 0


def cmd_import_codebook(args: argparse.Namespace) -> int:
    """A QDA tool's codebook as the study's: each code a theme with no segment yet (see ``import_codebook``)."""
    from models.review import import_codebook
    from pipeline.exchange.refi_qda import read_codebook
    from pipeline.learn.codebook import DecisionError

    config = load(args.config)
    if not args.file.is_file():
        return _fail(f"{args.file}: no such file")
    try:
        codes, notes = read_codebook(args.file, ZipLimits.from_config(config["ingest"]))
    except ValueError as exc:
        return _fail(str(exc))
    store = Store.from_config(config["store"])
    try:
        added, already = import_codebook(store, args.study, codes, args.coder, args.file.name)
    except DecisionError as exc:
        return _fail(f"{args.file}: nothing imported: " + "; ".join(exc.errors[:3]))
    total = sum(1 for _ in _walk(codes))
    top = len(codes)
    folders = sum(1 for c in _walk(codes) if not c.codable)
    print(f"{args.file.name}: {added} of {total} codes added to study '{args.study}' as themes with no segment yet "
          f"({top} at the top, {total - top} beneath; names, descriptions as definitions, colours and hierarchy "
          "kept" + (f"; {folders} of them categories, not codable in the file, written back as categories"
                    if folders else "") + ")" + (f"; {len(already)} already there" if already else ""))
    for note in notes:
        print(f"note: {note}")
    print(f"Next: coders give each code examples and confirm it (themesift review --study {quote(args.study)}); then "
          f"themesift apply --study {quote(args.study)} codes every segment with the confirmed codes.")
    return 0


def _walk(codes):
    for c in codes:
        yield c
        yield from _walk(c.children)


def cmd_compare(args: argparse.Namespace) -> int:
    config = load(args.config)
    for path in args.human:
        if not path.is_file():
            return _fail(f"{path}: no such file")
    _check_study(config, args.study, args.run)
    require_loopback()
    from flows.codings import compare_flow

    outcome = compare_flow(study=args.study, config=config, human_files=[str(p) for p in args.human],
                           top_k=args.top_k, min_positive=args.min_positive, min_cover=args.min_cover,
                           run_id=args.run)
    if outcome.get("status") != "completed":
        return _fail(outcome.get("error") or "comparison failed")
    kinds = outcome["kinds"]
    people = [n for n in outcome["humans"] if kinds.get(n) != "machine"]
    applied = [n for n in outcome["humans"] if kinds.get(n) == "machine"]
    print(f"Study '{args.study}', run {outcome['run_id']}: {outcome['n_units']} participant segments compared "
          f"(the unit); human coders: {', '.join(people) or 'none'}"
          + (f"; confirmed codebook applied (compared by code name): {', '.join(applied)}" if applied else "")
          + "; machine: the run's themes, mapped to each human's codes by Hungarian matching on segment "
            "overlap (F1).\n")
    for line in outcome["lines"]:
        print(line)
    for note in outcome["notes"]:
        print(f"note: {note}")
    print(f"\nReport: {outcome['report']}")
    print("Tables: " + ", ".join(Path(t).name for t in outcome["tables"]))
    return 0


def cmd_matrix(args: argparse.Namespace) -> int:
    from pipeline.compare.matrix import write_matrix

    config = load(args.config)
    store = Store.from_config(config["store"])
    view = load_view(store, args.study, args.run)
    who = args.coder or default_matrix_coder(view)
    if who not in view.humans and who != MACHINE:  # a coder of the review page, or its consensus
        from dataclasses import replace

        from models.review import CONSENSUS, review_codings

        with store.sessions() as session:
            review = review_codings(session, args.study)
        if who == CONSENSUS and who not in review:
            return _fail(f"study '{args.study}': no theme is confirmed in the review yet, so the team's coding is "
                         f"empty; the review page's matrix shows the open themes, and themesift matrix --study "
                         f"{quote(args.study)} charts the run's")
        view = replace(view, humans=with_review(view.humans, review)[0])
    n_quotes = compare_config(config, matrix_quotes=args.quotes).matrix_quotes
    matrix = build_study_matrix(view, who, n_quotes, confirmed_definitions(store, args.study), args.by)
    by = f"-by-{slug(args.by)}" if args.by else ""
    output = args.output or study_folder(config, args.study) / f"matrix-run{view.run_id}-{slug(who)}{by}.{args.format}"
    write_matrix(matrix, output, args.format)
    rows = "participants" if args.by is None else f"{args.by} values"
    print(f"{matrix.title}: {len(matrix.cases)} {rows} x {len(matrix.columns)} "
          f"{'themes' if who == MACHINE else 'codes'} written to {output}")
    return 0


def cmd_export_qdpx(args: argparse.Namespace) -> int:
    config = load(args.config)
    store = Store.from_config(config["store"])
    view = load_view(store, args.study, args.run)
    output = args.output or study_folder(config, args.study) / f"{slug(args.study)}-run{view.run_id}.qdpx"
    from models.review import review_codings

    confirmed = confirmed_entries(store, args.study)
    with store.sessions() as session:
        code_info = stored_code_info(session, args.study)
        review = review_codings(session, args.study)
    try:
        written = export_study_qdpx(view, output, confirmed=confirmed, code_info=code_info, review=review)
    except ValueError as exc:
        return _fail(str(exc))
    n_machine = written.pop(MACHINE_USER_NAME, 0)
    print(f"wrote {output}: {len(view.sources)} sources, "
          + (f"{len(confirmed)} confirmed themes (folder '{CONFIRMED_FOLDER}'), " if confirmed else "")
          + f"{len(view.themes)} machine themes (folder "
          f"'{RUN_FOLDER.format(run=view.run_id)}'), {n_machine} machine codings (user '{MACHINE_USER_NAME}'), "
          + (", ".join(f"{n} {k} codings" for n, k in sorted(written.items())) or "no other coder's codings")
          + " (one coding per code of a selection); offsets in Unicode code points")
    return 0


def cmd_export_codings(args: argparse.Namespace) -> int:
    from models.codings import coding_rows
    from pipeline.exchange.codings import write_coding_table

    config = load(args.config)
    store = Store.from_config(config["store"])
    with store.sessions() as session:
        if args.review:
            from models.review import review_coding_rows

            rows = review_coding_rows(session, args.study, args.coder)
        else:
            rows = coding_rows(session, args.study, args.coder)
    if args.review and not rows:
        return _fail(f"study '{args.study}' has no confirmed theme in the review"
                     + (f" by '{args.coder}'" if args.coder else "") + "; confirm themes first (themesift review)")
    if not rows:
        return _fail(f"study '{args.study}' has no stored codings" + (f" by '{args.coder}'" if args.coder else "")
                     + "; import some (themesift import codings) or code with themesift apply")
    suffix = ("-review" if args.review else "") + (f"-{slug(args.coder)}" if args.coder else "")
    output = args.output or study_folder(config, args.study) / f"codings{suffix}.{args.format}"
    write_coding_table(rows, output, args.format)
    coders = sorted({r["coder"] for r in rows})
    print(f"wrote {len(rows)} codings of {len(coders)} coder(s) ({', '.join(coders)}) to {output}")
    return 0


def _export_subparsers(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The ``export`` command's own subcommands (created here when the CLI has no export yet)."""
    export = sub.choices.get("export")
    if export is None:
        export = sub.add_parser("export", help="write results to a file")
    for action in export._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return export.add_subparsers(metavar="WHAT")


def _option(name: str, option: str):
    """The argparse type of ``option``, which overrides ``compare.<name>``: held to that setting's range."""
    return checked(CompareSettings.rule(name), option)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register import codings, compare, matrix and export qdpx on the ``themesift`` CLI."""
    p = sub.add_parser("import", help="bring in material from elsewhere")
    import_sub = p.add_subparsers(metavar="WHAT")
    i = import_sub.add_parser("codings", help="human codings from a coding CSV or a REFI-QDA .qdpx project")
    i.add_argument("file", type=Path, help=".csv (source|case, start+end|text, code, coder) or .qdpx")
    _common(i)
    i.add_argument("--coder", help="import only this coder (or: file the codings under this name when the "
                                   "file names no coder)")
    i.add_argument("--min-cover", type=_option("min_cover", "--min-cover"),
                   help="share of a segment a selection must cover to code it (default 0.5)")
    i.add_argument("--position-units", choices=("auto", "codepoints", "utf16", "codepoints-lf", "utf16-lf"),
                   default="auto",
                   help=".qdpx: how selection positions count characters (default auto: per source, from where "
                        "the selections fall; NVivo counts UTF-16 units, '-lf': CRLF counted once)")
    i.set_defaults(handler=cmd_import_codings)
    b = import_sub.add_parser("codebook", help="a QDA tool's codebook (.qdc, or the codebook of a .qdpx) as the "
                                               "study's: a deductive start")
    b.add_argument("file", type=Path, help=".qdc codebook or .qdpx project (QDA-XML 1.0 or ATLAS.ti's 0.4)")
    _common(b)
    b.add_argument("--coder", default="codebook import",
                   help="who the import is recorded under in the decision log (default 'codebook import')")
    b.set_defaults(handler=cmd_import_codebook)

    c = sub.add_parser("compare", help="agreement between coders: humans with each other, the machine with each")
    _common(c)
    c.add_argument("--human", type=Path, action="append", default=[],
                   help="a coding file (.csv or .qdpx) to compare without storing it (repeatable)")
    c.add_argument("--run", type=int, help="a run id instead of the latest")
    c.add_argument("--top-k", type=_option("top_k", "--top-k"),
                   help="ranked themes judged for top-k precision (default 10)")
    c.add_argument("--min-positive", type=_option("min_positive", "--min-positive"),
                   help="fewer coded segments than this flags a code as too rare to judge (default 5)")
    c.add_argument("--min-cover", type=_option("min_cover", "--min-cover"),
                   help="share of a segment a --human file's selection must cover to code it (default 0.5)")
    c.set_defaults(handler=cmd_compare)

    m = sub.add_parser("matrix", help="Framework matrix: participants x themes with counts and quotes")
    _common(m)
    m.add_argument("--coder", help="whose codes: an imported coder, 'machine' for the run's themes (default: the "
                                   "confirmed codebook as applied by 'themesift apply', else the run's themes)")
    m.add_argument("--format", choices=("xlsx", "csv", "html"), default="xlsx")
    m.add_argument("--quotes", type=_option("matrix_quotes", "--quotes"), help="quotes per cell (default 2)")
    m.add_argument("--run", type=int, help="a run id instead of the latest")
    m.add_argument("--by", metavar="COLUMN", help="rows by this column of the CSV sources (an --attr-col such as "
                                                  "site, or 'text column') instead of by participant")
    m.add_argument("-o", "--output", type=Path, help="file to write (default: in the study's folder)")
    m.set_defaults(handler=cmd_matrix)

    e = _export_subparsers(sub).add_parser(
        "qdpx", help="the study as a REFI-QDA project (sources, codes, machine and human codings)")
    _common(e)
    e.add_argument("--run", type=int, help="a run id instead of the latest")
    e.add_argument("-o", "--output", type=Path, help="file to write (default: in the study's folder)")
    e.set_defaults(handler=cmd_export_qdpx)

    e = _export_subparsers(sub).add_parser(
        "codings", help="every stored coding, several codes per segment, with where each came from and the "
                        "machine's probability")
    _common(e)
    e.add_argument("--coder", help="one coder only (default: every coder)")
    e.add_argument("--review", action="store_true",
                   help="the review's codings instead of the stored ones: each coder's own decisions (blind double "
                        "coding) and the team's settled one as coder 'consensus'")
    e.add_argument("--format", choices=("csv", "json"), default="csv")
    e.add_argument("-o", "--output", type=Path, help="file to write (default: in the study's folder)")
    e.set_defaults(handler=cmd_export_codings)


__all__ = ["add_commands", "build_study_matrix", "export_study_qdpx", "load_view"]
