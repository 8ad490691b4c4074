"""Shared fixtures: one temporary Prefect API for the session and the example study run once."""

from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

# Keep the developer's Prefect home and Themesift workspace untouched by tests.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="themesift-test-prefect-")
os.environ.pop("THEMESIFT_HOME", None)
os.environ.pop("PREFECT_API_URL", None)

import flows  # noqa: E402,F401  (Prefect settings before Prefect is imported)
from models.store import Store  # noqa: E402
from pipeline.config import load_config  # noqa: E402

pytest_plugins = ["review_helpers"]  # the review fixtures (review_template, study)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "ipt-study"
TRANSCRIPTS = EXAMPLE / "transcripts"
EXAMPLE_FILES = sorted(p.name for p in TRANSCRIPTS.iterdir() if not p.name.startswith("."))
SHARED = ROOT.parent / "shared" / "datasets"


def fft_comments(folder: Path, n: int, words: tuple[int, int] | None = None,
                 stem: str = "fft") -> tuple[Path, list[dict]]:
    """The first ``n`` NHS Friends and Family Test comments (of ``words`` = (fewest, most) words where
    given) as a CSV file of their own, and its rows."""
    source = SHARED / "nhs-fft" / "comments.csv"
    if not source.exists():
        pytest.skip("shared datasets not present (../shared/datasets)")
    with source.open(encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle)
                if words is None or words[0] <= len(r["feedback"].split()) <= words[1]][:n]
    path = folder / f"{stem}{n}.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path, rows


def study_config(folder: Path, **overrides) -> dict:
    """Default config with the store in ``folder`` (a fresh SQLite database)."""
    cfg = load_config(overrides=overrides or None)
    cfg["store"]["workspace"] = str(folder)
    cfg["store"]["url"] = f"sqlite:///{folder / 'themesift.db'}"
    return cfg


@dataclass
class StudyRun:
    name: str
    config: dict
    outcome: dict

    @property
    def store(self) -> Store:
        return Store.from_config(self.config["store"])


@pytest.fixture(scope="session")
def cfg() -> dict:
    """The default configuration (tests that change it take a copy)."""
    return load_config()


@pytest.fixture(scope="session")
def prefect_server_env(tmp_path_factory) -> dict:
    """One real ``prefect server start`` on loopback for the session (its API database migrated once), and
    the environment that points a process at it: the flows run in this process, the scheduled and Dask
    runs in others, all against the same kind of server a team runs."""
    from processes import prefect_server

    with prefect_server(tmp_path_factory.mktemp("prefect-server")) as env:
        yield env


@pytest.fixture(scope="session")
def prefect_harness(prefect_server_env):
    """Flows run in this process report to the session's Prefect server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server_env["PREFECT_API_URL"]}):
        yield


@pytest.fixture(scope="session")
def example_study(prefect_harness, tmp_path_factory) -> StudyRun:
    """The example study suggested once with the default config, in its own database."""
    from flows.suggest import suggest_flow

    cfg = study_config(tmp_path_factory.mktemp("example-study"))
    outcome = suggest_flow(paths=[str(TRANSCRIPTS)], study="ipt", config=cfg)
    assert outcome["status"] == "completed", outcome
    return StudyRun("ipt", cfg, outcome)
