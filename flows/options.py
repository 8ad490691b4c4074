"""What the commands share: the configuration a command line names (``--config`` and the CSV column options).

In a module of its own so that every command module can use it without importing another command module.
"""

from __future__ import annotations

import argparse

from pipeline.config import load_config


def config_from_args(args: argparse.Namespace) -> dict:
    overrides: dict = {}
    csv_cfg = {k: v for k, v in (("text_column", getattr(args, "text_col", None)),
                                 ("case_column", getattr(args, "case_col", None)),
                                 ("row_id_column", getattr(args, "row_id_col", None)),
                                 ("attribute_columns", getattr(args, "attr_col", None) or None)) if v}
    if csv_cfg:
        overrides["ingest"] = {"csv": csv_cfg}  # merged key by key over the file's csv settings
    return load_config(args.config, overrides)
