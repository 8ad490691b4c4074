"""Process-wide settings that must be in place before Prefect is imported."""

from __future__ import annotations

import os
from pathlib import Path


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
