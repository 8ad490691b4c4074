"""Prefect settings for Themesift: process-wide defaults set before Prefect is imported, and per-run ones."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def configure_prefect() -> None:
    """Defaults only: anything the user set (PREFECT_API_URL for a real server, say) wins.

    - analytics off: transcripts are sensitive and Themesift never phones home;
    - PREFECT_HOME under the user's cache folder, out of their way, instead of ~/.prefect;
    - with no PREFECT_API_URL, Prefect starts a temporary local API for the process.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    os.environ.setdefault("PREFECT_HOME", str(cache / "themesift" / "prefect"))
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)  # Prefect will not
    # A 2-core laptop can take longer than Prefect's default to bring up the temporary server.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@contextmanager
def heartbeats_off_without_server() -> Iterator[None]:
    """Flow-run heartbeats let a Prefect server mark runs that crashed. Without PREFECT_API_URL the
    API is a temporary one that ends with the process, so nobody reads them, and they cost time:
    Prefect waits up to a second at the end of every run for the heartbeat thread to stop
    (about 0.4 s a run measured here). With a real server they stay on."""
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def forget_unused_reduced_spaces(used: str | None, max_age_days: float | None) -> list[str]:
    """Delete cached reduced (UMAP) spaces that no run has used for ``max_age_days`` days.

    The reduce task's results live in Prefect's local result storage, one file per (vectors, UMAP
    settings) under the cache key; a study that grows every week leaves one behind per run. The file
    of the space this run used (``used``) is touched, so its age counts from its last use; a deleted
    space is only recomputed if it is ever needed again. Storage other than the local folder (a
    result-storage block on a Prefect server) is left to its owner. Returns the names deleted.
    """
    if max_age_days is None:
        return []
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK

    if PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK.value():
        return []
    folder = Path(PREFECT_LOCAL_STORAGE_PATH.value()).expanduser()
    if used and (folder / used).is_file():
        (folder / used).touch()
    cutoff = time.time() - float(max_age_days) * 86400
    deleted = []
    for path in folder.glob("reduce-*"):
        try:
            if path.name != used and path.stat().st_mtime < cutoff:
                path.unlink()
                deleted.append(path.name)
        except FileNotFoundError:  # another run deleted it first
            continue
    return deleted
