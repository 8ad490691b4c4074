"""The ``themesift`` command line: ``themesift bench ARGS`` goes to the benchmarks (``python -m bench ARGS``),
every other command to :func:`flows.commands.run`. :func:`console` is the program (``themesift``,
``python -m flows.cli``); :func:`main` the same commands called from Python."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from flows.runtime import guard_temporary_server, start_temporary_api


def console() -> int:
    """``themesift ARGS`` as a program: a command that runs a flow starts Prefect's temporary API server at
    once, so it comes up while the command loads (``flows.runtime.start_temporary_api``)."""
    argv = sys.argv[1:]
    if runs_a_flow(argv):
        guard_temporary_server()
        start_temporary_api()
    try:
        code = main(argv)
        sys.stdout.flush()  # a reader gone shows here, not as "Exception ignored" when Python exits
    except BrokenPipeError:
        return reader_gone()
    return code


def reader_gone() -> int:
    """Stdout's reader left early (``themesift themes | head``): stop quietly, as the Python docs' "Note on
    SIGPIPE" advises, with stdout pointed at devnull so that the flush at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


def runs_a_flow(argv: Sequence[str]) -> bool:
    """Whether ``themesift ARGV`` runs a Prefect flow (suggest, import codings, compare), help aside."""
    return not {"-h", "--help"} & set(argv) and (
        argv[:1] in (["suggest"], ["compare"]) or argv[:2] == ["import", "codings"])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its own parser, options and --help included
        return cmd_bench(argparse.Namespace(args=argv[1:]))
    from flows.commands import run

    return run(argv)


def cmd_bench(args: argparse.Namespace) -> int:
    """``themesift bench ARGS`` is ``python -m bench ARGS`` (needs the ``bench`` extra for BERTopic)."""
    from bench.__main__ import main as bench_main

    return bench_main(args.args)


if __name__ == "__main__":
    raise SystemExit(console())
