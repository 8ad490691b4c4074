"""What a benchmark ran on: command, machine, load, package versions, date and code version."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

from pipeline.embed.cpu import detect

PACKAGES = ("themesift", "torch", "sentence-transformers", "transformers", "onnxruntime", "onnx", "bertopic",
            "umap-learn", "hdbscan", "scikit-learn", "numpy", "prefect")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions() -> dict[str, str]:
    from flows.manifest import package_versions

    found = package_versions(PACKAGES)
    return {"python": platform.python_version(), **{k: v or "not installed" for k, v in found.items()}}


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def memory_gib() -> float | None:
    try:
        import psutil
        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        return None


def describe_run(argv: list[str] | None = None) -> dict:
    """The header every result carries; ``code`` is a run manifest's code version (commit, +dirty)."""
    from flows.manifest import code_version

    argv = sys.argv[1:] if argv is None else argv
    return {
        "command": "python -m bench " + " ".join(shlex.quote(a) for a in argv),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model(), "cpu_flags": list(detect().flags),
                    "exact_int8_dot": detect().exact_int8_dot, "memory_gib": memory_gib(),
                    "platform": platform.platform(), "load_average_at_start": load_average()},
        "versions": versions(),
        "code": code_version(),
    }


class RssSampler:
    """Samples this process's resident memory every ``interval`` seconds in a thread (needs psutil).

    ``peak_wall(t0, t1)`` is the largest sample taken between two ``time.time()`` readings (wall clock, so
    windows reported by Prefect can be used); ``peak()`` the largest of all.
    """

    def __init__(self, interval: float = 0.05):
        import threading
        import time

        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self._time = time
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((self._time.time(), self._proc.memory_info().rss))
            self._stop.wait(self._interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak_wall(self, t0: float | None = None, t1: float | None = None) -> int:
        values = [r for t, r in self.samples if (t0 is None or t >= t0) and (t1 is None or t <= t1)]
        if values:
            return max(values)
        before = [r for t, r in self.samples if t0 is not None and t < t0]  # window shorter than the interval
        return before[-1] if before else self._proc.memory_info().rss

    def peak(self) -> int:
        return self.peak_wall()
