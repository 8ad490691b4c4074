"""CLI wiring for the review: ``review``, ``coders add|list|revoke``, ``decisions export|import``, ``codebook``,
``apply``.

Registered in ``flows.commands.build_parser`` through :func:`add_commands`.
"""

from __future__ import annotations

import argparse
import sys
import threading
import webbrowser
from pathlib import Path

from flows.options import checked
from models.store import Store, study_dir
from pipeline.config import ReviewSettings, Settings, load_config, settings


def add_commands(sub: argparse._SubParsersAction) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--study", required=True, help="study name")
        p.add_argument("--config", type=Path, help="YAML file overriding configs/default.yaml")

    p = sub.add_parser("review", help="open the review web page of a study (coders decide on themes)")
    common(p)
    p.add_argument("--port", type=checked(ReviewSettings.rule("port"), "--port"),
                   help="port (default: review.port, 8765)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this computer only; anything else exposes transcripts)")
    p.add_argument("--team", action="store_true",
                   help="coders sign in with tokens from 'themesift coders add' instead of typing a name")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.set_defaults(handler=cmd_review)

    p = sub.add_parser("coders", help="manage coders of the review")
    coders_sub = p.add_subparsers(metavar="WHAT")
    c = coders_sub.add_parser("add", help="add a coder and print their sign-in token (shown once)")
    c.add_argument("name", help="the coder's name as shown with their decisions")
    common(c)
    c.set_defaults(handler=cmd_coders_add)
    c = coders_sub.add_parser("list", help="list the coders who can sign in (team mode) and when their token was made")
    common(c)
    c.set_defaults(handler=cmd_coders_list)
    c = coders_sub.add_parser("revoke", help="take a coder's token away: they can no longer sign in")
    c.add_argument("name", help="the coder's name")
    common(c)
    c.set_defaults(handler=cmd_coders_revoke)

    p = sub.add_parser("decisions", help="export or import a study's decision log as CSV")
    dec_sub = p.add_subparsers(metavar="WHAT")
    d = dec_sub.add_parser("export", help="write every decision to a CSV file (columns in docs/review.md)")
    d.add_argument("file", type=Path)
    common(d)
    d.set_defaults(handler=cmd_decisions_export)
    d = dec_sub.add_parser("import", help="append the decisions of a CSV file (all or none; known uids skipped)")
    d.add_argument("file", type=Path)
    common(d)
    d.set_defaults(handler=cmd_decisions_import)

    p = sub.add_parser("codebook", help="print or export the confirmed codebook")
    common(p)
    p.add_argument("--format", choices=("text", "csv", "qdc"), default="text")
    p.add_argument("-o", "--output", type=Path, help="file to write (csv: default stdout; qdc: default in the workspace)")
    p.add_argument("--coder", help="one coder's codebook instead of the team's")
    p.set_defaults(handler=cmd_codebook)

    p = sub.add_parser("apply", help="code every segment with the confirmed codebook alone (the machine's coding)")
    common(p)
    p.set_defaults(handler=cmd_apply)

    p = sub.add_parser("changes", help="what changed between two runs: themes new, grown, shrunk, gone")
    common(p)
    p.add_argument("--old", type=int, help="earlier run id (default: the one before --new)")
    p.add_argument("--new", type=int, help="later run id (default: the latest)")
    p.set_defaults(handler=cmd_changes)


def _store(args: argparse.Namespace) -> tuple[Settings, Store]:
    cfg = settings(load_config(args.config))
    return cfg, Store.from_config(cfg.store)


def cmd_review(args: argparse.Namespace) -> int:
    import uvicorn

    from web.app import create_app

    cfg, store = _store(args)
    app = create_app(store, args.study, team=args.team, review=cfg.review)
    port = args.port or cfg.review.port
    url = f"http://{'127.0.0.1' if args.host in ('127.0.0.1', '0.0.0.0', '::') else args.host}:{port}/"
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach this address can read the transcripts"
              + ("" if args.team else "; use --team so coders need a token"), file=sys.stderr)
    print(f"Reviewing study '{args.study}' at {url}  ({'team mode: sign in with a token' if args.team else 'local mode'})")
    if args.team:
        print(f"Add a coder: themesift coders add NAME --study {args.study}")
    print("Stop with Ctrl+C; every decision is already saved.")
    if not args.no_browser:
        threading.Timer(1.0, webbrowser.open, [url]).start()
    uvicorn.run(app, host=args.host, port=port, log_level="warning")
    return 0


def cmd_coders_add(args: argparse.Namespace) -> int:
    from models.decisions import add_token

    _, store = _store(args)
    with store.transaction() as session:
        try:
            token = add_token(session, args.study, args.name.strip())
        except ValueError as exc:
            print(f"themesift: {exc}", file=sys.stderr)
            return 2
    print(f"Coder '{args.name.strip()}' can sign in to the review of study '{args.study}' "
          f"(themesift review --study {args.study} --team) with this token; it is shown only now:\n\n  {token}\n"
          "A token given to them before no longer works.")
    return 0


def cmd_coders_list(args: argparse.Namespace) -> int:
    from models.decisions import coder_tokens

    _, store = _store(args)
    with store.sessions() as session:
        rows = coder_tokens(session, args.study)
    if not rows:
        print(f"No coder can sign in to study '{args.study}' yet (themesift coders add NAME --study {args.study}).")
    for name, made in rows:
        print(f"{name}\ttoken made {made.strftime('%Y-%m-%d %H:%M') if made else '?'} UTC")
    return 0


def cmd_coders_revoke(args: argparse.Namespace) -> int:
    from models.decisions import revoke_token

    _, store = _store(args)
    with store.transaction() as session:
        gone = revoke_token(session, args.study, args.name.strip())
    if not gone:
        print(f"themesift: coder '{args.name.strip()}' has no token for study '{args.study}'; "
              "see themesift coders list", file=sys.stderr)
        return 2
    print(f"Coder '{args.name.strip()}' can no longer sign in to study '{args.study}'; "
          "their decisions stay in the log.")
    return 0


def cmd_decisions_export(args: argparse.Namespace) -> int:
    from models.review import export_decisions

    _, store = _store(args)
    with store.sessions() as session:
        text = export_decisions(session, args.study)
    args.file.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.file.with_name(args.file.name + ".part")
    tmp.write_text(text, encoding="utf-8", newline="")
    tmp.replace(args.file)
    import csv
    import io

    print(f"wrote {sum(1 for _ in csv.DictReader(io.StringIO(text)))} decisions to {args.file}")
    return 0


def cmd_decisions_import(args: argparse.Namespace) -> int:
    from models.review import import_decisions
    from pipeline.learn.codebook import DecisionError

    _, store = _store(args)
    try:
        data = args.file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        print(f"themesift: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    try:
        added, skipped = import_decisions(store, args.study, data)
    except DecisionError as exc:
        print(f"themesift: nothing imported from {args.file}:", file=sys.stderr)
        for e in exc.errors:
            print(f"  {e}", file=sys.stderr)
        return 1
    print(f"imported {added} decisions from {args.file}" + (f"; {skipped} already in the log" if skipped else ""))
    return 0


def cmd_codebook(args: argparse.Namespace) -> int:
    from models.review import confirmed_codebook
    from pipeline.exchange.codebook_export import write_codebook

    cfg, store = _store(args)
    with store.sessions() as session:
        entries = confirmed_codebook(session, args.study, args.coder)
    if args.format == "qdc":
        if not entries:  # the schema wants at least one <Code>: refuse rather than write an invalid file
            print(f"themesift: study '{args.study}' has no confirmed theme, so no .qdc was written; confirm "
                  "themes first (themesift review)", file=sys.stderr)
            return 2
        path = args.output or study_dir(cfg.store, args.study) / "codebook.qdc"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_codebook(entries, path, "qdc", args.study)
        print(f"wrote {len(entries)} codes to {path}")
        return 0
    if args.format == "csv":
        text = write_codebook(entries, args.output, "csv", args.study)
        if args.output:
            print(f"wrote {len(entries)} themes to {args.output}")
        else:
            sys.stdout.write(text)
        return 0
    who = f"coder {args.coder}" if args.coder else "all coders"
    print(f"Confirmed codebook of study '{args.study}' ({who}): {len(entries)} themes\n")
    for e in entries:
        print(f"{e.name}  [{e.key}; {e.n_segments} segments, {e.n_cases} participants; by {e.decided_by}]")
        if e.definition:
            print(f"    {e.definition}")
    if not entries:
        print(f"No theme is confirmed yet: themesift review --study {args.study}")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    from models.review import apply_codebook
    from pipeline.learn.codebook import DecisionError

    cfg, store = _store(args)
    try:
        result = apply_codebook(store, args.study, cfg.review)
    except DecisionError as exc:
        print(f"themesift: {exc}", file=sys.stderr)
        return 1
    several = sum(1 for names in result.assigned.values() if len(names) > 1)
    print(f"Coded {len(result.assigned)} of {result.n_segments} segments of study '{args.study}' with "
          f"{result.themes} confirmed themes ({several} with several codes); {len(result.uncertain)} uncertain "
          "ones were left uncoded for review.")
    counts: dict[str, list[int]] = {}
    for links in result.links.values():
        for name, (via, _) in links.items():
            counts.setdefault(name, [0, 0])[via != "coder"] += 1
    print("  coded  by coders  by the machine  theme")
    for name, (by_coder, by_machine) in sorted(counts.items(), key=lambda kv: -sum(kv[1])):
        threshold = result.thresholds.get(name)
        print(f"  {by_coder + by_machine:>5}  {by_coder:>9}  {by_machine:>14}  {name}"
              + (f"  (threshold {threshold:.2f})" if threshold is not None else ""))
    print(f"Stored as the coding of '{result.coder}' with each code's probability "
          f"(themesift export codings; compare it with the coders' codings: themesift compare).")
    return 0


def cmd_changes(args: argparse.Namespace) -> int:
    cfg, store = _store(args)
    with store.sessions() as session:
        print_changes(session, args.study, args.old, args.new, cfg.review.diff_match_jaccard)
    return 0


def print_changes(session, study: str, old: int | None = None, new: int | None = None,
                  match_jaccard: float = 0.5) -> None:
    """Print the diff of two runs (also for ``themesift suggest --diff``)."""
    from models.review import run_diff

    old, new, changes = run_diff(session, study, old, new, match_jaccard)
    if not changes:
        print(f"Study '{study}' has fewer than two completed runs to compare.")
        return
    counts = {k: sum(c.kind == k for c in changes) for k in ("new", "grown", "shrunk", "unchanged", "gone")}
    print(f"Run {old} -> run {new}: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n))
    for c in changes:
        print(f"  {c.kind:<9} {c.old_size:>4} -> {c.new_size:<4} (+{c.gained} -{c.lost})  {c.label}")
