"""CLI wiring for the review: ``review``, ``coders add|list|revoke``, ``decisions export|import``, ``codebook``,
``apply``, ``adapt``.

Registered in ``flows.commands.build_parser`` through :func:`add_commands`.
"""

from __future__ import annotations

import argparse
import sys
import threading
import webbrowser
from pathlib import Path
from shlex import quote

from flows.options import OptionError, checked, load
from models.store import Store, StudyNotFoundError, study_dir
from pipeline.config import ReviewSettings, Settings, settings


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
    c.add_argument("--lead", action="store_true",
                   help="make this coder the study's lead: they open the comparison of blind coding and settle differences")
    c.set_defaults(handler=cmd_coders_add)
    c = coders_sub.add_parser("list", help="list the coders who can sign in (team mode) and when their token was made")
    common(c)
    c.set_defaults(handler=cmd_coders_list)
    c = coders_sub.add_parser("revoke", help="take a coder's token away: they can no longer sign in")
    c.add_argument("name", help="the coder's name")
    common(c)
    c.set_defaults(handler=cmd_coders_revoke)

    p = sub.add_parser("study", help="a study's review settings")
    study_sub = p.add_subparsers(metavar="WHAT")
    s = study_sub.add_parser("set", help="how the team codes: blind or shared, and who leads (prints the settings)")
    common(s)
    s.add_argument("--coding", choices=("blind", "shared"),
                   help="team mode: blind (the default: each coder sees only their own decisions until the lead "
                        "opens the comparison) or shared (everyone sees every decision, the latest counting)")
    s.add_argument("--lead", help="the coder who opens the comparison and settles differences")
    s.set_defaults(handler=cmd_study_set)

    p = sub.add_parser("decisions", help="export or import a study's decision log as CSV")
    dec_sub = p.add_subparsers(metavar="WHAT")
    d = dec_sub.add_parser("export", help="write every decision to a CSV file (columns in docs/review.md)")
    d.add_argument("file", type=Path)
    common(d)
    d.set_defaults(handler=cmd_decisions_export)
    d = dec_sub.add_parser("import", help="append the decisions of a CSV file (all or none; known uids skipped)")
    d.add_argument("file", type=Path)
    common(d)
    d.add_argument("--blind", action="store_true",
                   help="a blind double-coded log: check each coder's decisions against their own alone")
    d.set_defaults(handler=cmd_decisions_import)

    p = sub.add_parser("codebook", help="print or export the confirmed codebook")
    common(p)
    p.add_argument("--format", choices=("text", "csv", "qdc"), default="text")
    p.add_argument("-o", "--output", type=Path, help="file to write (csv: default stdout; qdc: default in the workspace)")
    p.add_argument("--coder", help="one coder's codebook instead of the team's")
    p.set_defaults(handler=cmd_codebook)

    p = sub.add_parser("apply", help="code every segment with the confirmed codebook alone (the machine's coding)")
    common(p)
    p.add_argument("--adapted", action="store_true",
                   help="code with the vectors of the encoder adapted to the study's decisions (themesift adapt; "
                        "trained first if the decisions changed); default: review.adapt (off: the frozen model)")
    p.set_defaults(handler=cmd_apply)

    p = sub.add_parser("adapt", help="fine-tune the embedding model on the study's decisions (optional; see "
                                     "review.adapt in the config), saved in the workspace under a model id of its own")
    common(p)
    p.set_defaults(handler=cmd_adapt)

    p = sub.add_parser("changes", help="what changed between two runs: themes new, grown, shrunk, gone")
    common(p)
    p.add_argument("--old", type=int, help="earlier run id (default: the one before --new)")
    p.add_argument("--new", type=int, help="later run id (default: the latest)")
    p.set_defaults(handler=cmd_changes)


def _store(args: argparse.Namespace) -> tuple[Settings, Store]:
    cfg = settings(load(args.config))
    return cfg, Store.from_config(cfg.store)


def _port_taken(host: str, port: int) -> str:
    """Why ``host:port`` cannot be listened on ("" when it can): checked before the page is announced, as
    uvicorn would otherwise print its own error after the address was given out."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return str(exc)
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return ""


def cmd_review(args: argparse.Namespace) -> int:
    import uvicorn

    from web.app import create_app

    cfg, store = _store(args)
    app = create_app(store, args.study, team=args.team, review=cfg.review, compare=cfg.compare)
    port = args.port or cfg.review.port
    url = f"http://{'127.0.0.1' if args.host in ('127.0.0.1', '0.0.0.0', '::') else args.host}:{port}/"
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach this address can read the transcripts"
              + ("" if args.team else "; use --team so coders need a token"), file=sys.stderr)
    taken = _port_taken(args.host, port)
    if taken:
        print(f"themesift: cannot listen on {args.host}:{port} ({taken}); is a review already running there? "
              f"Open it at {url}, or give another port: --port {port + 1}", file=sys.stderr)
        return 2
    print(f"Reviewing study '{args.study}' at {url}  ({'team mode: sign in with a token' if args.team else 'local mode'})")
    if args.team:
        from models.decisions import team_settings

        with store.sessions() as session:
            team = team_settings(session, args.study)
        print(f"Add a coder: themesift coders add NAME --study {quote(args.study)}")
        if team.blind(True):
            print(f"Coding is blind: each coder sees only their own decisions until the lead "
                  f"({team.lead or 'none yet: themesift study set --lead NAME'}) opens the comparison (Compare coders).")
    print("Stop with Ctrl+C; every decision is already saved.")
    threading.Thread(target=_warm_teach, args=(store, args.study, cfg.review), daemon=True).start()
    if not args.no_browser:
        threading.Timer(1.0, webbrowser.open, [url]).start()
    uvicorn.run(app, host=args.host, port=port, log_level="warning")
    return 0


def _warm_teach(store: Store, study: str, review: ReviewSettings) -> None:
    """One Teach batch computed while the page opens, its answer thrown away: the learner's libraries are
    loaded and the study's neighbour search is kept (pipeline.themes.cluster.cosine_knn), so a coder's first
    Teach page on a 10,000-answer survey does not wait for them (10 s on two cores, 4 s after)."""
    from models.review import teach_questions

    try:
        teach_questions(store, study, review)
    except Exception:  # a courtesy: the page itself says what is wrong when the coder asks
        pass


def reserved_coder_names() -> dict[str, str]:
    """Coder names Themesift writes codings under itself, with whose they are: a person given one would
    be mixed up with them in comparisons and exports."""
    from models.review import CONSENSUS
    from pipeline.compare.compare import MACHINE
    from pipeline.exchange.codings import APPLY_USER_NAME, MACHINE_USER_NAME

    return {MACHINE: "the run's themes", MACHINE_USER_NAME: "the run's themes in a .qdpx",
            APPLY_USER_NAME: "the confirmed codebook applied", CONSENSUS: "the team's settled coding"}


def cmd_coders_add(args: argparse.Namespace) -> int:
    from models.decisions import add_token, set_team_setting, token_stamp

    name = args.name.strip()
    if not name:
        raise OptionError(f"coders add: the coder name is empty; give the person's name (study '{args.study}')")
    whose = reserved_coder_names().get(name)
    if whose is not None:
        raise OptionError(f"coders add: '{name}' is reserved for {whose}; choose a person's name")
    _, store = _store(args)
    with store.transaction() as session:
        try:
            replaced = token_stamp(session, args.study, args.name.strip()) is not None
            token = add_token(session, args.study, args.name.strip())
            if args.lead:
                set_team_setting(session, args.study, "lead", args.name.strip(), "cli")
        except ValueError as exc:
            print(f"themesift: {exc}", file=sys.stderr)
            return 2
    if args.lead:
        print(f"'{args.name.strip()}' leads the review of study '{args.study}': they open the comparison and settle "
              "differences (Compare coders, in the page).")
    print(f"Coder '{args.name.strip()}' can sign in to the review of study '{args.study}' "
          f"(themesift review --study {quote(args.study)} --team) with this token; it is shown only now:\n\n  {token}\n"
          + ("The token given to them before no longer works.\n" if replaced else ""), end="")
    return 0


def cmd_coders_list(args: argparse.Namespace) -> int:
    from models.decisions import coder_tokens

    _, store = _store(args)
    with store.sessions() as session:
        rows = coder_tokens(session, args.study)
    if not rows:
        print(f"No coder can sign in to study '{args.study}' yet (themesift coders add NAME --study {quote(args.study)}).")
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


def cmd_study_set(args: argparse.Namespace) -> int:
    from models.decisions import coder_named, set_team_setting, team_settings
    from models.store import StudyNotFoundError

    _, store = _store(args)
    try:
        with store.transaction() as session:
            if args.coding:
                set_team_setting(session, args.study, "coding", args.coding, "cli")
            if args.lead:
                lead = coder_named(session, args.lead.strip(), create=False)
                if lead is None or lead.kind != "human":
                    print(f"themesift: no coder '{args.lead}' yet: add them first with themesift coders add "
                          f"{args.lead} --study {quote(args.study)}", file=sys.stderr)
                    return 2
                set_team_setting(session, args.study, "lead", lead.name, "cli")
            current = team_settings(session, args.study)
    except StudyNotFoundError as exc:
        print(f"themesift: {exc}", file=sys.stderr)
        return 2
    opened = f"opened {current.opened_at:%Y-%m-%d %H:%M} UTC" if current.opened_at else "not opened yet"
    print(f"Study '{args.study}': team coding {current.coding}; lead {current.lead or 'none (themesift study set --lead NAME)'}; "
          f"comparison {opened}. Local mode (review without --team) is always shared.")
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
        added, skipped = import_decisions(store, args.study, data, blind=args.blind)
    except DecisionError as exc:
        print(f"themesift: nothing imported from {args.file}:", file=sys.stderr)
        for e in exc.errors:
            print(f"  {e}", file=sys.stderr)
        return 1
    print(f"imported {added} decisions from {args.file}" + (f"; {skipped} already in the log" if skipped else ""))
    return 0


def cmd_codebook(args: argparse.Namespace) -> int:
    from models.review import confirmed_codebook, imported_codes
    from pipeline.exchange.codebook_export import write_codebook

    from models.decisions import entries as log_entries
    from pipeline.learn import codebook as cb

    cfg, store = _store(args)
    with store.sessions() as session:
        log = log_entries(session, args.study)
        if args.coder is not None:  # else an unknown name reads as a coder who confirmed nothing
            from models.decisions import coder_tokens

            known = sorted(set(cb.by_coder(log)) | {name for name, _ in coder_tokens(session, args.study)})
            if args.coder not in known:
                raise StudyNotFoundError(f"study '{args.study}' has no coder '{args.coder}' "
                                         f"(coders: {', '.join(known) or 'none yet'})")
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
    settled = sum(e.action == cb.SETTLE for e in cb.fold(log).applied)
    coders = sorted(cb.by_coder(log))
    who = (f"coder {args.coder}'s own" if args.coder else
           f"consensus of {', '.join(coders)}: {settled} difference{'s' if settled != 1 else ''} settled" if settled
           else "all coders")
    print(f"Confirmed codebook of study '{args.study}' ({who}): {len(entries)} themes\n")
    for e in entries:
        print(f"{e.name}  [{e.key}; {e.n_segments} segments, {e.n_cases} participants; by {e.decided_by}]")
        if e.definition:
            print(f"    {e.definition}")
    if not entries:
        print(f"No theme is confirmed yet: themesift review --study {quote(args.study)}")
    with store.sessions() as session:
        waiting = imported_codes(session, args.study)
    if waiting:
        names = ", ".join(t.title for t in waiting[:10]) + (", ..." if len(waiting) > 10 else "")
        print(f"\n{len(waiting)} imported code(s) wait for examples and a confirmation (themesift review): {names}")
    if not args.coder and len(coders) >= 2:
        from models.review import team_comparison
        from models.review import load_view as study_view

        from models.decisions import team_settings

        with store.sessions() as session:
            result = team_comparison(study_view(session, args.study), cfg.compare.min_positive, cfg.compare.recovered_f1,
                                     team_settings(session, args.study).blind_until)
        if result.open:
            print(f"\nnote: {result.open} difference{'s' if result.open != 1 else ''} between {', '.join(coders)} "
                  "not settled yet (the lead settles them under Compare coders, in the review page); until then "
                  "the latest decision counts.")
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    from models.adapt import embed_study
    from pipeline.learn.adapt import AdaptError

    cfg, store = _store(args)
    try:
        encoder = _adapted(store, args.study, cfg)
    except AdaptError as exc:
        print(f"themesift: {exc}", file=sys.stderr)
        return 2
    n, seconds = embed_study(store, encoder)
    print(f"Embedded the {n} segments of study '{args.study}' with it in {seconds:.0f} s (cached under its model id).")
    print(f"Code with it: themesift apply --study {quote(args.study)} --adapted")
    return 0


def _adapted(store: Store, study: str, cfg: Settings):
    """The study's adapted encoder (trained now unless its decisions are unchanged), said in one line."""
    from models.adapt import adapt_encoder

    encoder = adapt_encoder(store, study, cfg)
    done = (f"Adapted the embedding model to {encoder.labelled} labelled segments of {encoder.themes} confirmed "
            f"themes ({cfg.review.adapt_epochs} epochs, {encoder.steps} steps, {encoder.seconds:.0f} s)"
            if encoder.trained else
            f"The embedding model is already adapted to these decisions ({encoder.labelled} labelled segments)")
    print(f"{done}: {encoder.folder}, model id {encoder.model_id}.")
    if encoder.examples < cfg.review.adapt_examples_per_theme:
        print(f"note: its themes have {encoder.examples:g} labelled segments each (the median); adapting paid where "
              f"they had about {cfg.review.adapt_examples_per_theme} (review.adapt_examples_per_theme) and cost "
              f"agreement where they had 5 to 20: compare apply with and without --adapted (themesift compare).")
    return encoder


def cmd_apply(args: argparse.Namespace) -> int:
    from models.review import apply_codebook
    from pipeline.learn.adapt import AdaptError
    from pipeline.learn.codebook import DecisionError

    cfg, store = _store(args)
    embedder = None
    if args.adapted or cfg.review.adapt:
        try:
            embedder = _adapted(store, args.study, cfg).embedder
        except AdaptError as exc:
            print(f"themesift: {exc}", file=sys.stderr)
            if args.adapted:
                return 2
            print("themesift: coding with the frozen model meanwhile (review.adapt)", file=sys.stderr)
    try:
        result = apply_codebook(store, args.study, cfg.review, embedder)
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
    print(f"Stored as the coding of '{result.coder}' with each code's probability, from the vectors of "
          f"{result.model_id} "
          f"(themesift export codings; compare it with the coders' codings: themesift compare).")
    return 0


def cmd_changes(args: argparse.Namespace) -> int:
    cfg, store = _store(args)
    with store.sessions() as session:
        for run_id in (args.old, args.new):  # a run of another study, or none: refused as `themes --run` is
            if run_id is not None:
                store.study_run(session, args.study, run_id)
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
