"""What the commands share: the configuration a command line names (``--config`` and the CSV column options),
and command-line options checked by the same rules as the configuration's settings.

In a module of its own so that every command module can use it without importing another command module.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from pipeline.config import ConfigError, Rule, load_config


class OptionError(Exception):
    """A command-line value its rule refuses. Not a ValueError, so that argparse lets it through to
    :func:`flows.commands.run`, which prints it as one ``themesift:`` line."""


def config_from_args(args: argparse.Namespace) -> dict:
    overrides: dict = {}
    text_cols = getattr(args, "text_col", None) or []
    text_cols = [text_cols] if isinstance(text_cols, str) else text_cols
    csv_cfg = {k: v for k, v in (("text_column", text_cols[0] if len(text_cols) == 1 else text_cols),
                                 ("case_column", getattr(args, "case_col", None)),
                                 ("row_id_column", getattr(args, "row_id_col", None)),
                                 ("attribute_columns", getattr(args, "attr_col", None) or None)) if v}
    if csv_cfg:
        overrides["ingest"] = {"csv": csv_cfg}  # merged key by key over the file's csv settings
    return load_config(args.config, overrides)


def checked(rule: Rule, option: str) -> Callable[[str], Any]:
    """An argparse ``type`` for ``option`` (e.g. ``--port``): the number given, checked by ``rule`` (a
    setting's rule, e.g. ``ReviewSettings.rule("port")``), so the command line is held to the same range
    as the configuration file."""
    def convert(text: str) -> Any:
        value: Any = text
        for kind in (int, float):
            try:
                value = kind(text)
                break
            except ValueError:
                continue
        try:
            return rule.check(value, option)
        except ConfigError as exc:
            raise OptionError(str(exc)) from None

    return convert
