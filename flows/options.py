"""What the commands share: the configuration a command line names (``--config``, else $THEMESIFT_CONFIG, and
the CSV column options), and command-line options checked by the same rules as the configuration's settings.

In a module of its own so that every command module can use it without importing another command module.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from pipeline.config import ConfigError, Rule, load_config


class OptionError(Exception):
    """A command-line value its rule refuses. Not a ValueError, so that argparse lets it through to
    :func:`flows.commands.run`, which prints it as one ``themesift:`` line."""


def load(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> dict:
    """The configuration a command runs with: ``path`` (else the file $THEMESIFT_CONFIG names, so a team's
    store need not be named on every command) over the defaults, then ``overrides``, with the store's
    password kept out of it (:func:`without_password`)."""
    return without_password(load_config(path or os.environ.get("THEMESIFT_CONFIG") or None, overrides))


def without_password(config: dict) -> dict:
    """``config`` with any password taken out of ``store.url`` and given to libpq as PGPASSWORD (its own
    variable, read when the store connects), so the password never reaches what is shown or kept: Prefect's
    flow and deployment parameters, the terminal, a run's manifest. A URL without a password is left as it
    is (libpq then reads PGPASSWORD or ~/.pgpass itself)."""
    url = (config.get("store") or {}).get("url")
    if not url:
        return config
    from sqlalchemy.engine import make_url

    parsed = make_url(url)  # checked by the configuration's rule already
    if parsed.password is None or parsed.get_backend_name() != "postgresql":
        return config
    os.environ["PGPASSWORD"] = str(parsed.password)
    return {**config, "store": {**config["store"],
                                "url": parsed._replace(password=None).render_as_string(hide_password=False)}}


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
    return load(args.config, overrides)


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
