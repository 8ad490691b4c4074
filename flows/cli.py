"""The ``themesift`` command line: ``themesift bench ARGS`` goes to the benchmarks (``python -m bench ARGS``),
every other command to :func:`flows.commands.run`."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from flows.commands import run


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its own parser, options and --help included
        return cmd_bench(argparse.Namespace(args=argv[1:]))
    return run(argv)


def cmd_bench(args: argparse.Namespace) -> int:
    """``themesift bench ARGS`` is ``python -m bench ARGS`` (needs the ``bench`` extra for BERTopic)."""
    from bench.__main__ import main as bench_main

    return bench_main(args.args)


if __name__ == "__main__":
    raise SystemExit(main())
