"""Configuration: the defaults in ``configs/default.yaml`` merged with a study's own YAML."""

from __future__ import annotations

import copy
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

Config = dict[str, Any]


class ConfigError(ValueError):
    """A configuration file that cannot be used as it is."""


def default_config() -> Config:
    """The packaged defaults, as a fresh dict the caller may change."""
    text = resources.files("configs").joinpath("default.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def merge(base: Mapping[str, Any], override: Mapping[str, Any], _path: str = "") -> Config:
    """Deep-merge ``override`` into a copy of ``base``; unknown keys are refused to catch typos."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        where = f"{_path}{key}"
        if key not in merged:
            raise ConfigError(f"unknown setting '{where}' (known: {', '.join(sorted(merged))})")
        if isinstance(merged[key], dict) and isinstance(value, Mapping) and not _is_scaled_rule(merged[key]):
            merged[key] = merge(merged[key], value, f"{where}.")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Defaults, then the YAML file at ``path``, then ``overrides`` (e.g. from the command line)."""
    config = default_config()
    if path is not None:
        path = Path(path)
        try:
            user = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read configuration: {exc}") from exc
        if not isinstance(user, Mapping):
            raise ConfigError(f"{path}: expected a mapping of settings at the top level")
        config = merge(config, user)
    if overrides:
        config = merge(config, overrides)
    return config


def config_digest(config: Mapping[str, Any]) -> str:
    """A short stable fingerprint of a configuration, for manifests and cache keys."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _is_scaled_rule(value: Any) -> bool:
    return isinstance(value, Mapping) and ("fraction" in value or "sqrt" in value)


def scaled(rule: int | float | Mapping[str, float], n: int) -> int:
    """Resolve a size rule against a corpus of ``n`` items.

    A plain number is used as it is; ``{fraction, min, max}`` gives ``clip(round(fraction * n), min, max)``
    and ``{sqrt, min, max}`` gives ``clip(round(sqrt * n ** 0.5), min, max)``, so cluster sizes grow with
    the corpus (the square root: more themes in a bigger corpus, not just bigger ones).
    """
    if not isinstance(rule, Mapping):
        return int(rule)
    value = round(float(rule["sqrt"]) * n ** 0.5) if "sqrt" in rule else round(float(rule["fraction"]) * n)
    return int(min(max(value, int(rule.get("min", 1))), int(rule.get("max", value))))
