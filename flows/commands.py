"""The ``themesift`` commands: the parser of every command but ``bench`` (``flows.cli`` hands that one to the
benchmarks), running one, and the ``suggest``, ``themes`` and ``export`` commands themselves.

The review, compare and schedule commands register themselves from ``flows.review``, ``flows.compare`` and
``flows.schedule``. The benchmarks drive the real commands through :func:`run`.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
import textwrap
from pathlib import Path
from typing import Sequence

import flows  # noqa: F401  (Prefect settings before Prefect is imported)
from flows.options import OptionError, checked, config_from_args
from flows.runtime import (LoopbackDownError, ServerDownError, TemporaryApiError, guard_temporary_server,
                           leave_write_faults_to_the_command, quiet_event_drain, sigterm_as_interrupt)
from models.export import suggestion_export, theme_summaries
from models.migrate import StoreUpgradeError
from models.store import (WRITE_FAULT_ERRNOS, Store, StoreOpenError, StoreWriteError, StudyBusyError, StudyNotFoundError,
                          database_url, sqlite_folder, study_dir, write_fault)
from pipeline.config import ConfigError, settings, url_without_password, whole
from pipeline.embed.encoder import ModelNotFoundError
from pipeline.embed.onnx_export import OnnxExportError
from pipeline.exchange.suggestions_export import write_suggestions
from pipeline.themes.name import format_description
from pipeline.themes.rank import PARTS, stability_is_weak

TOP = whole(low=1, what="a number of themes")  # --top


def run(argv: Sequence[str]) -> int:
    """Run the command ``argv`` names (as ``themesift ARGS`` does, ``bench`` aside): 2 after a message for
    problems a user can fix (a study that does not exist, a bad configuration, a model not here)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except OptionError as exc:  # an option's value out of its range: one line, as for the configuration
        print(f"themesift: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    _say_progress()
    guard_temporary_server()  # Prefect's temporary API server, if a flow starts one, ends with this command
    leave_write_faults_to_the_command()
    quiet_event_drain()
    try:
        with sigterm_as_interrupt():
            refuse_blank_study(args)
            return args.handler(args)
    except (ConfigError, StudyNotFoundError, StoreUpgradeError, StoreOpenError, ModelNotFoundError, OnnxExportError,
            LoopbackDownError, ServerDownError, TemporaryApiError, OptionError) as exc:
        print(f"themesift: {exc}", file=sys.stderr)
        return 2
    except StoreWriteError as exc:  # a full disk or a read-only workspace, named with its path
        print(f"themesift: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in WRITE_FAULT_ERRNOS or not exc.filename:
            raise
        print(f"themesift: {write_fault(exc.filename, exc.strerror or str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: what was stored stays, a run half-done is not stored
        print(f"themesift: stopped by {str(exc) or 'SIGINT'}; what it had not finished is not stored (earlier runs are kept)", file=sys.stderr)
        return 130 if not str(exc) else 128 + signal.Signals[str(exc)].value


def refuse_blank_study(args: argparse.Namespace) -> None:
    """A blank ``--study`` is refused for every command, before anything is stored under it."""
    study = getattr(args, "study", None)
    if study is not None and not study.strip():
        raise OptionError("--study: the study name is empty; give it a name (e.g. --study my-study)")


def _say_progress() -> None:
    """Themesift's own progress lines (a first ONNX export, say) go to stderr as ``themesift: ...``."""
    logger = logging.getLogger("themesift")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("themesift: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="themesift", description="Suggest themes in qualitative data; people decide.")
    sub = parser.add_subparsers(metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--study", required=True, help="study name (results of every run are kept under it)")
        p.add_argument("--config", type=Path, help="YAML file overriding configs/default.yaml")

    p = sub.add_parser("suggest", help="ingest files and suggest ranked candidate themes")
    p.add_argument("paths", nargs="+", help="transcript files or folders (.txt .md .docx .vtt .srt .csv .xlsx)")
    common(p)
    p.add_argument("--text-col", action="append", default=[],
                   help="CSV: column holding the answer text (repeatable: one per open question)")
    p.add_argument("--case-col", help="CSV: column identifying the respondent (default: the row id)")
    p.add_argument("--row-id-col", help="CSV: column with a row id kept on every segment")
    p.add_argument("--attr-col", action="append", default=[], help="CSV: extra column to keep (repeatable)")
    p.add_argument("--top", type=checked(TOP, "--top"), default=15, help="themes to print (all are stored)")
    p.add_argument("--force", action="store_true", help="run even if no file and no setting changed")
    p.add_argument("--diff", action="store_true", help="also show what changed against the previous run")
    p.set_defaults(handler=cmd_suggest)

    p = sub.add_parser("bench", add_help=False,
                       help="benchmarks: quality against BERTopic, speed, growth, simulated review (bench --help)")
    p.add_argument("args", nargs=argparse.REMAINDER)  # flows.cli.main runs it before this parser is built

    p = sub.add_parser("themes", help="show the ranked themes of a study's latest run again")
    common(p)
    p.add_argument("--run", type=int, help="a run id instead of the latest")
    p.add_argument("--top", type=checked(TOP, "--top"), default=50)
    p.set_defaults(handler=cmd_themes)

    p = sub.add_parser("unlock", help="release a study a run on another machine left locked when it died")
    common(p)
    p.set_defaults(handler=cmd_unlock)

    p = sub.add_parser("export", help="write results to a file")
    export_sub = p.add_subparsers(metavar="WHAT")
    e = export_sub.add_parser("suggestions", help="every theme with member segments, score parts, outlier queue")
    common(e)
    e.add_argument("--format", choices=("csv", "json"), default="csv")
    e.add_argument("--run", type=int, help="a run id instead of the latest")
    e.add_argument("-o", "--output", type=Path, help="file to write (default: in the study's folder)")
    e.set_defaults(handler=cmd_export_suggestions)
    from flows.compare import add_commands as add_compare_commands; add_compare_commands(sub)  # noqa: E702
    from flows.review import add_commands as add_review_commands; add_review_commands(sub)  # noqa: E702
    from flows.schedule import add_commands as add_schedule_commands; add_schedule_commands(sub)  # noqa: E702
    return parser


def cmd_suggest(args: argparse.Namespace) -> int:
    from pipeline.ingest.read import missing

    gone = [f"{p}: {why}" for p in args.paths if (why := missing(Path(p))) is not None]
    if len(gone) == len(args.paths):  # else a typo makes the study and a failed run of nothing read; one
        # missing path beside others is skipped with its reason, as any file that cannot be read
        raise OptionError("; ".join(gone) + f" (nothing read; no run of study '{args.study}' made)")
    from flows.suggest import run_suggest

    from pipeline.embed.encoder import Embedder

    config = config_from_args(args)  # a bad setting is refused here, before any work
    cfg = settings(config)
    # A database server that cannot be reached, or a SQLite file that is not a store, is said before Prefect
    # starts (no new SQLite file is made before a run; its folder is, or said to be impossible)
    url = database_url(cfg.store)
    folder = sqlite_folder(url)
    store = Store.from_config(cfg.store) if folder is None or Path(url.removeprefix("sqlite:///")).exists() else None
    Embedder.from_config(cfg.embed).prepare()  # a first export, or an int8 refusal, before the run
    outcome = run_suggest([str(p) for p in args.paths], args.study, config, force=args.force)
    if outcome["status"] == "busy":
        print(f"themesift: {outcome['message']}", file=sys.stderr)
        return 3
    for s in outcome["skipped"]:
        print(f"skipped {s['path']}: {s['reason']}")
    for w in outcome["warnings"]:
        print(f"warning {w}")
    for line in (outcome["files"], outcome["settings"]):
        if line:
            print(line)
    if outcome["status"] == "unchanged":
        print(f"{outcome['message']}; showing it (--force to run again)\n")
    elif outcome["status"] != "completed":
        print(f"themesift: run {outcome['run_id']} of study '{args.study}' produced no themes: {outcome['message']}",
              file=sys.stderr)
        return 1
    elif outcome["message"]:
        print(outcome["message"])
    again = config_option(args)
    store = store or Store.from_config(cfg.store)
    print_themes(store, args.study, outcome["run_id"], args.top, again)
    if args.diff:
        from flows.review import print_changes

        print()
        with store.sessions() as session:
            print_changes(session, args.study, None, outcome["run_id"], cfg.review.diff_match_jaccard)
    print(f"\nResults stored as run {outcome['run_id']} in {url_without_password(store.url)}")
    print(f"Show again: themesift themes --study {shlex.quote(args.study)}{again}    "
          f"Export: themesift export suggestions --study {shlex.quote(args.study)}{again} --format csv")
    return 0


def config_option(args: argparse.Namespace) -> str:
    """`` --config FILE`` as the command was given it ("" without), for the commands a hint suggests next."""
    return f" --config {shlex.quote(str(args.config))}" if getattr(args, "config", None) else ""


def cmd_themes(args: argparse.Namespace) -> int:
    cfg = settings(config_from_args(args))
    print_themes(Store.from_config(cfg.store), args.study, args.run, args.top, config_option(args))
    return 0


def cmd_unlock(args: argparse.Namespace) -> int:
    cfg = settings(config_from_args(args))
    store = Store.from_config(cfg.store)
    try:
        released = store.unlock(args.study)
    except StudyBusyError as exc:
        print(f"themesift: {exc}", file=sys.stderr)
        return 3
    if released is None:
        studies = store.study_names()
        if args.study not in studies:
            print(f"themesift: no study named '{args.study}' (studies: {', '.join(studies) or 'none yet'})",
                  file=sys.stderr)
            return 2
        print(f"study '{args.study}' is not locked")
    else:
        print(f"released study '{args.study}' from run {released[0]} (held since {released[1]:%Y-%m-%d %H:%M:%S} "
              "UTC); what that run had not finished was never stored")
    return 0


def print_themes(store: Store, study: str, run_id: int | None, top: int, again: str = "") -> None:
    """The run's ranked themes as a table; ``again``: the ``--config`` the hints repeat."""
    with store.sessions() as session:
        run = store.study_run(session, study, run_id)
        themes = theme_summaries(session, run)
        joined = run.manifest.get("joined_outliers")  # runs before joining existed do not record it
        second = sum(t["second_pass"] for t in themes)
        print(f"Study '{study}', run {run.id} ({run.finished_at:%Y-%m-%d %H:%M} UTC): {run.n_themes} candidate themes "
              f"from {run.n_segments} segments" + (f", the last {second} found by a second pass over the segments the "
                                                   "first left out" if second else "")
              + f"; {run.n_outliers} in the outlier queue"
              + (f" ({joined} more joined the theme they fit)." if joined else "."))
        header = f"{'rank':>4}  {'score':>5}  " + "  ".join(f"{p[:5]:>5}" for p in PARTS) + "  cases  segs  label"
        print("\n" + header)
        print("-" * len(header))
        for t in themes[:top]:
            weak = stability_is_weak(t["reasons"])
            parts = "  ".join(" weak" if p == "stability" and weak else f"{t['parts'][p]:5.2f}" for p in PARTS)
            print(f"{t['rank']:>4}  {t['score']:5.2f}  {parts}  {t['n_cases']:>2}/{t['total_cases']:<2} "
                  f"{t['n_segments']:>5}  {t['label']}" + ("  (second pass)" if t["second_pass"] else ""))
            if t["description"]:
                print(f"{'':>14}{textwrap.shorten(t['description'], 120, placeholder='...')}")
            # A short answer is often its theme's description whole: shown once.
            if " ".join(t["description"].split()) != " ".join(format_description(t["quote"], t["quote_case"]).split()):
                quote = textwrap.shorten(t["quote"], 110, placeholder="...")
                print(f"{'':>14}\"{quote}\" ({t['quote_case']})")
        if len(themes) > top:
            print(f"... and {len(themes) - top} more (themesift themes --study {shlex.quote(study)}{again} --top {len(themes)})")
        print("\nParts: cover(age) = participants raising it / those of the widest theme; cohes(ion), "
              "disti(nctiveness), stabi(lity) over re-clusterings (weak: too few segments for it to mean much), size; score = weighted sum (rank.weights "
              "in the config). The parts are measured on the segments the clustering put in a theme; segs also "
              "counts those that joined it from the outlier queue.")


def cmd_export_suggestions(args: argparse.Namespace) -> int:
    cfg = settings(config_from_args(args))
    store = Store.from_config(cfg.store)
    with store.sessions() as session:
        run = store.study_run(session, args.study, args.run)
        export = suggestion_export(session, run)
    output = args.output or study_dir(cfg.store, args.study) / f"suggestions-run{export['run_id']}.{args.format}"
    write_suggestions(export, output, args.format)
    print(f"wrote {len(export['themes'])} themes and {len(export['outliers'])} outliers to {output}")
    return 0

