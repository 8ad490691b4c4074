"""Configuration: the defaults in ``configs/default.yaml`` merged with a study's own YAML, checked once.

:func:`load_config` gives the merged configuration as a plain dict (what each run's manifest stores)
after checking all of it; :func:`settings` gives the same configuration as typed sections, one frozen
dataclass per section of default.yaml (:class:`Settings`), from which each stage is built
(``from_config``). Checking covers every value's type and range and refuses unknown keys at every depth,
size rules included; a bad value raises :class:`ConfigError` naming the dotted setting, the value and
what is allowed, so a bad file is refused before any work starts.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import math
import re
from dataclasses import dataclass, field, fields
from decimal import Decimal
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, TypeVar
from urllib.parse import urlsplit

import yaml

Config = dict[str, Any]


class ConfigError(ValueError):
    """A configuration file that cannot be used as it is."""


# -- the file and the merged dict --------------------------------------------------------------
@cache
def _default_text() -> str:
    return resources.files("configs").joinpath("default.yaml").read_text(encoding="utf-8")


def default_config() -> Config:
    """The packaged defaults, as a fresh dict the caller may change."""
    return yaml.safe_load(_default_text())


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
    """Defaults, then the YAML file at ``path``, then ``overrides`` (e.g. from the command line), checked
    as a whole (:class:`ConfigError` names the first bad setting). Returns the plain dict; :func:`settings`
    gives its typed sections."""
    config = default_config()
    if path is not None:
        path = Path(path)
        try:
            user = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read configuration: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: cannot read configuration: {_yaml_problem(exc)}") from exc
        if not isinstance(user, Mapping):
            raise ConfigError(f"{path}: expected a mapping of settings at the top level")
        config = merge(config, user)
    if overrides:
        config = merge(config, overrides)
    Settings.build(config)
    return config


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


NOT_RESULTS = ("store", "runner")  # where results are kept and which runner computes them: not what they are


def config_digest(config: Mapping[str, Any]) -> str:
    """A short stable fingerprint of what in a configuration shapes the results, for manifests, cache keys and
    "nothing changed": the sections of :data:`NOT_RESULTS` are left out, so the same settings through another
    store address, password or runner are the same configuration."""
    blob = json.dumps({k: v for k, v in config.items() if k not in NOT_RESULTS}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _is_scaled_rule(value: Any) -> bool:
    return isinstance(value, Mapping) and ("fraction" in value or "sqrt" in value)


# -- what one value may be ---------------------------------------------------------------------
class _Refused(Exception):
    """A value a rule does not take; ``why`` (if given) replaces "is not allowed" in the message."""

    def __init__(self, why: str | None = None):
        super().__init__(why)
        self.why = why


def _show(value: Any) -> str:
    """A value as the message shows it: YAML's words for true, false and null, text in quotes."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def refused(where: str, value: Any, allowed: str, why: str | None = None) -> ConfigError:
    """The one-line error for a bad value: ``where: value is not allowed; use allowed``."""
    return ConfigError(f"{where}: {_show(value)} {why or 'is not allowed'}; use {allowed}")


def url_without_password(url: str) -> str:
    """``url`` as it may be shown or recorded: a password in it as ``***`` (``http://bob:***@host/``)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
    except ValueError:
        return url


@dataclass(frozen=True)
class Rule:
    """What one setting may hold: ``allowed`` says it in words; ``take`` returns the typed value or raises
    :class:`_Refused` (or a :class:`ConfigError` of its own, for values with parts)."""

    allowed: str
    take: Callable[[Any, str], Any]
    null: bool = False

    def check(self, value: Any, where: str) -> Any:
        if value is None and self.null:
            return None
        try:
            return self.take(value, where)
        except _Refused as exc:
            raise refused(where, value, self.allowed + (" or null" if self.null else ""), exc.why) from None

    def or_null(self) -> "Rule":
        return Rule(self.allowed, self.take, True)


def _plain(number: float) -> str:
    """``number`` written so that YAML reads it as one: 1000000000, 0.000001."""
    return str(int(number)) if float(number).is_integer() else format(Decimal(repr(float(number))), "f")


def _number(value: Any) -> float | int:
    if isinstance(value, bool):
        raise _Refused()
    if isinstance(value, str):
        try:
            as_number = float(value)
        except ValueError:
            raise _Refused() from None
        if math.isfinite(as_number):  # 1e9 or "5": text to YAML (its floats need a dot: 1.0e+9)
            raise _Refused(f"is text to YAML, not a number: write {_plain(as_number)}")
        raise _Refused()
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Refused()
    return value


def _bounds(low: float | None, high: float | None, above: float | None) -> str:
    if above is not None:
        return f"> {_plain(above)}" + (f" and <= {_plain(high)}" if high is not None else "")
    if low is not None and high is not None:
        return f"from {_plain(low)} to {_plain(high)}"
    if low is not None:
        return f">= {_plain(low)}"
    return f"<= {_plain(high)}" if high is not None else ""


def _in_bounds(n: float, low: float | None, high: float | None, above: float | None) -> bool:
    return ((low is None or n >= low) and (high is None or n <= high) and (above is None or n > above))


def whole(low: int | None = None, high: int | None = None, what: str = "a whole number") -> Rule:
    """An integer in ``[low, high]``; 20.0 is taken as 20."""
    def take(value: Any, where: str) -> int:
        n = _number(value)
        if not float(n).is_integer() or not _in_bounds(n, low, high, None):
            raise _Refused()
        return int(n)

    return Rule(f"{what} {_bounds(low, high, None)}".strip(), take)


def number(low: float | None = None, high: float | None = None, above: float | None = None,
           what: str = "a number") -> Rule:
    """A finite number in ``[low, high]`` (``above``: more than it), as a float."""
    def take(value: Any, where: str) -> float:
        n = _number(value)
        if not _in_bounds(n, low, high, above):
            raise _Refused()
        return float(n)

    return Rule(f"{what} {_bounds(low, high, above)}".strip(), take)


def one_of(*options: str) -> Rule:
    def take(value: Any, where: str) -> str:
        if not isinstance(value, str) or value not in options:
            raise _Refused()
        return value

    return Rule(f"one of {', '.join(options)}", take)


def text(what: str = "a piece of text") -> Rule:
    def take(value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise _Refused()
        return value

    return Rule(what, take)


def _parsed(allowed: str, parse: Callable[[str], Any], what: str) -> Rule:
    """Text that ``parse`` takes without a ValueError; other text "is not {what}"."""
    def take(value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise _Refused()
        try:
            parse(value)
        except ValueError as exc:
            raise _Refused(f"is not {what}" + (f" ({exc})" if str(exc) else "")) from None
        return value

    return Rule(allowed, take)


def _regular_expression(text: str) -> None:
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(str(exc)) from None


def _database_url(text: str) -> None:
    from sqlalchemy.engine import make_url  # here: only a store.url needs SQLAlchemy
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(text).get_dialect()  # postgres://, say, is no dialect SQLAlchemy knows
    except ArgumentError:
        raise ValueError() from None


def pattern() -> Rule:
    return _parsed("a regular expression (Python's re), in single quotes", _regular_expression,
                   "a regular expression")


def database_url() -> Rule:
    return _parsed("a SQLAlchemy URL such as postgresql+psycopg://user@host/db", _database_url, "a database URL")


def flag() -> Rule:
    def take(value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise _Refused()
        return value

    return Rule("true or false", take)


def texts(item: str, none_is_empty: bool = False) -> Rule:
    """A list of ``item`` (e.g. "word"), as a tuple; ``none_is_empty``: null is the empty list. YAML reads
    yes/no/on/off as true/false and 2024 as a number: such an item is refused with a hint to quote it."""
    def take(value: Any, where: str) -> tuple[str, ...]:
        if value is None and none_is_empty:
            return ()
        if not isinstance(value, (list, tuple)):
            raise _Refused()
        for i, v in enumerate(value):
            if not isinstance(v, str) or not v.strip():
                hint = (" in quotes (YAML reads yes, no, on and off as true or false, and digits as a number)"
                        if isinstance(v, (bool, int, float)) else "")
                raise refused(f"{where}[{i}]", v, f"a {item}{hint}")
        return tuple(value)

    return Rule(f"a list of {item}s" + (" (null: none)" if none_is_empty else ""), take)


def one_or_more(item: str) -> Rule:
    """One ``item`` or a non-empty list of them, as a tuple (a CSV holds one open question or several)."""
    many = texts(item)

    def take(value: Any, where: str) -> tuple[str, ...]:
        if isinstance(value, str) and value.strip():
            return (value,)
        if isinstance(value, (list, tuple)) and value:
            return many.take(value, where)
        raise _Refused()

    return Rule(f"a {item} or a list of {item}s", take)


def ngram_range() -> Rule:
    def take(value: Any, where: str) -> tuple[int, int]:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise _Refused()
        low, high = (whole(1).take(v, where) for v in value)
        if low > high:
            raise _Refused()
        return low, high

    return Rule("[low, high]: two whole numbers with 1 <= low <= high", take)


@dataclass(frozen=True)
class SizeRule:
    """A size that grows with the corpus: ``by`` is ``sqrt`` (``factor * n ** 0.5``) or ``fraction``
    (``factor * n``), rounded and clipped to ``[min, max]`` (None: no bound of its own); see :func:`scaled`."""

    by: str
    factor: float
    min: int | None = None
    max: int | None = None


def size(least: int) -> Rule:
    """A plain whole number >= ``least`` or ``{sqrt|fraction, min, max}`` with ``least <= min <= max``."""
    allowed = f"a whole number >= {least} or {{sqrt|fraction, min, max}}"

    def take(value: Any, where: str) -> int | SizeRule:
        if not isinstance(value, Mapping):
            return whole(least).take(value, where)
        unknown = sorted(set(value) - {"sqrt", "fraction", "min", "max"})
        if unknown:
            raise ConfigError(f"unknown setting '{where}.{unknown[0]}' (known: sqrt or fraction, min, max)")
        by = [k for k in ("sqrt", "fraction") if k in value]
        if len(by) != 1:
            has = "has both sqrt and fraction" if by else "has neither sqrt nor fraction"
            raise ConfigError(f"{where}: {_show(dict(value))} {has}; use {allowed}")
        factor = (number(above=0) if by[0] == "sqrt" else number(above=0, high=1)).check(
            value[by[0]], f"{where}.{by[0]}")
        bound = whole(least)
        low = None if value.get("min") is None else bound.check(value["min"], f"{where}.min")
        high = None if value.get("max") is None else bound.check(value["max"], f"{where}.max")
        if low is not None and high is not None and low > high:
            raise ConfigError(f"{where}: min {low} is above max {high}; use min <= max")
        return SizeRule(by[0], factor, low, high)

    return Rule(allowed, take)


def scaled(rule: int | float | SizeRule, n: int) -> int:
    """Resolve a size rule against a corpus of ``n`` items.

    A plain number is used as it is; ``{fraction, min, max}`` gives ``clip(round(fraction * n), min, max)``
    and ``{sqrt, min, max}`` gives ``clip(round(sqrt * n ** 0.5), min, max)``, so cluster sizes grow with
    the corpus (the square root: more themes in a bigger corpus, not just bigger ones).
    """
    if not isinstance(rule, SizeRule):
        return int(rule)
    value = round(rule.factor * n ** 0.5) if rule.by == "sqrt" else round(rule.factor * n)
    return int(min(max(value, 1 if rule.min is None else rule.min), value if rule.max is None else rule.max))


# -- sections ----------------------------------------------------------------------------------
S = TypeVar("S", bound="Section")


def setting(rule: Rule) -> Any:
    """A field of a section holding one value, checked by ``rule``."""
    return field(metadata={"rule": rule})


def subsection(kind: type) -> Any:
    """A field of a section holding a section of its own."""
    return field(metadata={"section": kind})


@cache
def _defaults_at(at: str) -> Config:
    config: Any = default_config()
    for key in filter(None, at.split(".")):
        config = config[key]
    return config


class Section:
    """A checked, typed section of the configuration at the dotted path ``at``: a frozen dataclass
    whose fields are :func:`setting` (one value) or :func:`subsection` (a section within)."""

    at: ClassVar[str]

    @classmethod
    def of(cls: type[S], value: "S | Mapping[str, Any]") -> S:
        """``value`` itself, or the section built from a mapping of its settings (those it leaves out
        take the defaults of configs/default.yaml), checked."""
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            value = merge(_defaults_at(cls.at), value, f"{cls.at}." if cls.at else "")
        return cls.build(value)

    @classmethod
    def build(cls: type[S], value: Any) -> S:
        """The section from a complete mapping of its settings; every key checked, none unknown."""
        if not isinstance(value, Mapping):
            raise refused(cls.at or "the configuration", value, cls._allowed())
        names = [f.name for f in fields(cls)]
        for key in value:
            if key not in names:
                raise ConfigError(f"unknown setting '{cls._where(key)}' (known: {', '.join(sorted(names))})")
        typed = {}
        for f in fields(cls):
            where = cls._where(f.name)
            if f.name not in value:
                raise ConfigError(f"missing setting '{where}'")
            if "section" in f.metadata:
                typed[f.name] = f.metadata["section"].build(value[f.name])
            else:
                typed[f.name] = f.metadata["rule"].check(value[f.name], where)
        return cls(**typed)

    @classmethod
    def rule(cls, name: str) -> Rule:
        """The rule of the setting ``name`` of this section (for a command-line option that sets it)."""
        return next(f.metadata["rule"] for f in fields(cls) if f.name == name)

    @classmethod
    def _where(cls, name: str) -> str:
        return f"{cls.at}.{name}" if cls.at else name

    @classmethod
    def _allowed(cls) -> str:
        return f"a mapping of settings ({', '.join(f.name for f in fields(cls))})"


COSINE = number(-1, 1, what="a cosine similarity")
SHARE = number(0, 1)
PERCENTILE = number(0, 100)
MARGIN = number(0, 1, what="a margin of cosine similarity")
UMAP_METRICS = ("cosine", "correlation", "euclidean", "manhattan", "chebyshev", "canberra", "braycurtis")


@dataclass(frozen=True)
class StoreSettings(Section):
    at = "store"
    workspace: str = setting(text("a folder"))
    url: str | None = setting(database_url().or_null())
    sqlite_timeout_s: float = setting(number(0, what="a number of seconds"))
    run_lock_wait_s: float = setting(number(0, what="a number of seconds"))


@dataclass(frozen=True)
class RunnerSettings(Section):
    at = "runner"
    kind: str = setting(one_of("local", "dask"))
    dask_address: str | None = setting(text("the address of a Dask scheduler, e.g. tcp://10.0.0.5:8786").or_null())
    reduced_space_days: float | None = setting(number(0, what="a number of days").or_null())

    def __post_init__(self) -> None:
        if self.kind == "dask" and not self.dask_address:
            raise ConfigError("runner.dask_address: null is not allowed when runner.kind is dask; use the "
                              "address of a Dask scheduler, e.g. tcp://10.0.0.5:8786")


@dataclass(frozen=True)
class CsvSettings(Section):
    at = "ingest.csv"
    text_column: tuple[str, ...] | None = setting(one_or_more("column name").or_null())
    case_column: str | None = setting(text("a column name").or_null())
    row_id_column: str | None = setting(text("a column name").or_null())
    attribute_columns: tuple[str, ...] = setting(texts("column name", none_is_empty=True))


@dataclass(frozen=True)
class IngestSettings(Section):
    at = "ingest"
    max_file_mb: float = setting(number(above=0, what="a number of MB"))
    max_unpacked_mb: float = setting(number(above=0, what="a number of MB"))
    max_xml_mb: float = setting(number(above=0, what="a number of MB"))
    known_label_pattern: str = setting(pattern())
    min_label_repeats: int = setting(whole(1))
    max_label_words: int = setting(whole(1))
    csv: CsvSettings = subsection(CsvSettings)


@dataclass(frozen=True)
class SegmentSettings(Section):
    at = "segment"
    interviewer_pattern: str = setting(pattern())
    generic_participant_pattern: str = setting(pattern())
    interviewer_question_share: float | None = setting(number(above=0, high=1).or_null())
    max_sentences: int = setting(whole(1))
    target_words: int = setting(whole(1))
    min_words: int = setting(whole(0))
    answer_min_words: int = setting(whole(0))
    max_tokens: int = setting(whole(1))


@dataclass(frozen=True)
class OnnxSettings(Section):
    at = "embed.onnx"
    cache_dir: str | None = setting(text("a folder").or_null())
    precision: str = setting(one_of("fp32", "int8"))
    int8_weights: str = setting(one_of("auto", "s8", "u8"))
    int8_min_cosine: float | None = setting(number(0, 1).or_null())
    smooth: float | None = setting(number(above=0, high=1).or_null())
    fp32_layers: int = setting(whole(0))
    threads: int = setting(whole(0))
    allow_spinning: bool = setting(flag())
    batch_size: int = setting(whole(1))
    streams: int = setting(whole(0))


@dataclass(frozen=True)
class EmbedSettings(Section):
    at = "embed"
    model: str = setting(text("default, a model name or a local folder"))
    batch_size: int = setting(whole(1))
    device: str = setting(text("a torch device such as cpu or cuda"))
    cache_chunk: int = setting(whole(1))
    task_texts: int = setting(whole(1))
    progress_min_texts: int = setting(whole(0))
    backend: str = setting(one_of("onnx", "sentence-transformers"))
    onnx: OnnxSettings = subsection(OnnxSettings)


@dataclass(frozen=True)
class UmapSettings(Section):
    at = "cluster.umap"
    n_neighbors: int = setting(whole(2))
    small_n_neighbors: int | SizeRule = setting(size(2))
    n_components: int = setting(whole(2))
    min_dist: float = setting(number(0, 1))
    metric: str = setting(one_of(*UMAP_METRICS))
    n_epochs: int | None = setting(whole(1).or_null())
    exact_knn_max: int = setting(whole(0))


@dataclass(frozen=True)
class HdbscanSettings(Section):
    at = "cluster.hdbscan"
    min_cluster_size: int | SizeRule = setting(size(2))
    min_samples: int | SizeRule | None = setting(size(1).or_null())
    cluster_selection_method: str = setting(one_of("eom", "leaf"))
    cluster_selection_epsilon: float = setting(number(0))


@dataclass(frozen=True)
class JoinOutliersSettings(Section):
    at = "cluster.join_outliers"
    percentile: float | None = setting(PERCENTILE.or_null())
    min_similarity: float = setting(COSINE)
    uncertain_margin: float = setting(MARGIN)


@dataclass(frozen=True)
class SecondPassSettings(Section):
    at = "cluster.second_pass"
    size_divisor: float | None = setting(number(1).or_null())
    min_cluster_size: int = setting(whole(2))


@dataclass(frozen=True)
class SplitBroadSettings(Section):
    at = "cluster.split_broad"
    size_factor: float | None = setting(number(1).or_null())
    max_similarity: float = setting(COSINE)
    size_divisor: float = setting(number(1))
    min_cluster_size: int = setting(whole(2))


@dataclass(frozen=True)
class ClusterSettings(Section):
    at = "cluster"
    seed: int = setting(whole(0, 2**32 - 1))
    min_segments: int = setting(whole(4))  # fewer: UMAP cannot lay them out
    small_corpus_segments: int = setting(whole(0))
    smallest_theme_cases: int = setting(whole(2))
    small_corpus_largest_share: float = setting(number(high=1, above=0))
    umap: UmapSettings = subsection(UmapSettings)
    hdbscan: HdbscanSettings = subsection(HdbscanSettings)
    join_outliers: JoinOutliersSettings = subsection(JoinOutliersSettings)
    second_pass: SecondPassSettings = subsection(SecondPassSettings)
    split_broad: SplitBroadSettings = subsection(SplitBroadSettings)
    outlier_suggestion_min_similarity: float = setting(COSINE)


def loopback_host(host: str) -> bool:
    """Whether ``host`` (from a URL) is this machine's loopback: localhost, 127.0.0.0/8 or ::1. Other names
    are not looked up: a name that resolves to loopback today may not tomorrow."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _server_url(text: str) -> None:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("it needs http:// or https:// and a host")
    parts.port  # noqa: B018 (raises ValueError for a port out of range)


@dataclass(frozen=True)
class NameModelSettings(Section):
    at = "describe.name.model"
    backend: str = setting(one_of("none", "ollama", "transformers"))
    model: str | None = setting(text("a model's name on the server (ollama) or a local model folder "
                                     "(transformers)").or_null())
    server: str = setting(_parsed("an http:// address such as http://127.0.0.1:11434", _server_url,
                                  "a server address"))
    endpoint: str = setting(one_of("generate", "chat"))
    allow_remote: bool = setting(flag())
    timeout_s: float = setting(number(above=0, what="a number of seconds"))
    seed: int = setting(whole(0, 2**31 - 1))
    max_new_tokens: int = setting(whole(8, 4096))
    keywords: int = setting(whole(1))
    quotes: int = setting(whole(0))
    quote_max_words: int = setting(whole(1))
    name_max_words: int = setting(whole(1, 20))

    def __post_init__(self) -> None:
        if self.backend == "none":
            return
        if self.model is None:
            what = "the model's name on the server, e.g. llama3.1:8b" if self.backend == "ollama" else \
                "the folder of a local transformers model"
            raise ConfigError(f"{self.at}.model: null is not allowed when {self.at}.backend is {self.backend}; "
                              f"use {what}")
        if self.backend == "ollama" and not self.allow_remote and not loopback_host(urlsplit(self.server).hostname):
            raise ConfigError(f"{self.at}.server: {self.server!r} is not this machine (loopback), and the themes' "
                              f"quotes would be sent there; use http://127.0.0.1:PORT, or set {self.at}.allow_remote: "
                              "true to send them to that server")
        if self.backend == "transformers" and not (Path(self.model).expanduser() / "config.json").is_file():
            raise ConfigError(f"{self.at}.model: {self.model!r} is not a model folder (no config.json there); use "
                              "the folder of a local transformers model (nothing is downloaded)")


@dataclass(frozen=True)
class NameSettings(Section):
    at = "describe.name"
    method: str = setting(one_of("phrases", "keywords"))
    max_words: int = setting(whole(1, 8))
    min_members: int = setting(whole(1))
    candidates: int = setting(whole(1))
    phrases: int = setting(whole(1, 5))
    diversity: float = setting(number(0, 1))
    neighbour_weight: float = setting(number(0, 1))
    description_pool: int = setting(whole(1))
    description_min_words: int = setting(whole(1))
    description_max_words: int = setting(whole(1))
    model: NameModelSettings = subsection(NameModelSettings)

    def __post_init__(self) -> None:
        if self.description_min_words > self.description_max_words:
            raise ConfigError(f"describe.name.description_min_words: {self.description_min_words} is above "
                              f"description_max_words {self.description_max_words}; use min <= max")


@dataclass(frozen=True)
class DescribeSettings(Section):
    at = "describe"
    n_keywords: int = setting(whole(1))
    ngram_range: tuple[int, int] = setting(ngram_range())
    domain_stopwords: tuple[str, ...] = setting(texts("word"))
    keyphrase_candidates: int = setting(whole(1))
    label_keyphrases: int = setting(whole(1))
    n_quotes: int = setting(whole(1))
    quote_min_words: int = setting(whole(0))
    name: NameSettings = subsection(NameSettings)


@dataclass(frozen=True)
class WeightsSettings(Section):
    at = "rank.weights"
    coverage: float = setting(number(0))
    cohesion: float = setting(number(0))
    distinctiveness: float = setting(number(0))
    stability: float = setting(number(0))
    size: float = setting(number(0))

    def __post_init__(self) -> None:
        if not any(self.parts().values()):
            raise ConfigError("rank.weights: every weight is 0, so every theme would score 0; "
                              "give at least one part a weight above 0")

    def parts(self) -> dict[str, float]:
        """Weight by score part, as :func:`pipeline.themes.rank.score_themes` takes them."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class StabilitySettings(Section):
    at = "rank.stability"
    n_resamples: int = setting(whole(1))
    sample_fraction: float = setting(number(above=0, high=1))
    found_again_jaccard: float = setting(SHARE)
    min_segments: int = setting(whole(2))


@dataclass(frozen=True)
class RankSettings(Section):
    at = "rank"
    weights: WeightsSettings = subsection(WeightsSettings)
    stability: StabilitySettings = subsection(StabilitySettings)


@dataclass(frozen=True)
class CompareSettings(Section):
    at = "compare"
    min_cover: float = setting(SHARE)
    min_positive: int = setting(whole(0))
    top_k: int = setting(whole(1))
    recovered_f1: float = setting(SHARE)
    matrix_quotes: int = setting(whole(0))


@dataclass(frozen=True)
class ReviewSettings(Section):
    at = "review"
    calibration_percentile: float = setting(PERCENTILE)
    min_similarity: float = setting(COSINE)
    uncertain_margin: float = setting(MARGIN)
    rejected_similarity: float = setting(COSINE)
    diff_match_jaccard: float = setting(number(above=0, high=1))
    learner: str = setting(one_of("logistic", "centroid"))
    learner_unlabelled_weight: float = setting(number(0, 1))
    run_unlabelled_count: float = setting(number(0, 1))
    learner_C: float = setting(number(above=0))
    learner_neighbours: int = setting(whole(0))
    learner_neighbour_weight: float = setting(number(0, 1))
    learner_threshold: str = setting(one_of("f1", "prevalence"))
    learner_min_judged: int = setting(whole(1))
    learner_words: float = setting(number(0, 10))
    learner_word_components: int = setting(whole(1, 2000))
    learner_names: bool = setting(flag())
    teach_unsure: int = setting(whole(0, 100))
    teach_far: int = setting(whole(0, 100))
    teach_neighbours: int = setting(whole(1, 1000))
    teach_hint_window: int = setting(whole(1, 1000))
    teach_hint_share: float = setting(number(0, 1))
    adapt: bool = setting(flag())
    adapt_min_labels: int = setting(whole(2, 1000000))
    adapt_examples_per_theme: int = setting(whole(1))
    adapt_epochs: int = setting(whole(1, 1000))
    adapt_batch_size: int = setting(whole(2, 1024))
    adapt_max_steps: int = setting(whole(0))
    adapt_learning_rate: float = setting(number(above=0, high=0.01))
    adapt_head_learning_rate: float = setting(number(above=0, high=1))
    adapt_seed: int = setting(whole(0))
    port: int = setting(whole(1, 65535, what="a port number"))


@dataclass(frozen=True)
class Settings(Section):
    """The whole configuration, typed: one section per top-level key of configs/default.yaml."""

    at = ""
    store: StoreSettings = subsection(StoreSettings)
    runner: RunnerSettings = subsection(RunnerSettings)
    ingest: IngestSettings = subsection(IngestSettings)
    segment: SegmentSettings = subsection(SegmentSettings)
    embed: EmbedSettings = subsection(EmbedSettings)
    cluster: ClusterSettings = subsection(ClusterSettings)
    describe: DescribeSettings = subsection(DescribeSettings)
    rank: RankSettings = subsection(RankSettings)
    compare: CompareSettings = subsection(CompareSettings)
    review: ReviewSettings = subsection(ReviewSettings)


def settings(config: Settings | Mapping[str, Any]) -> Settings:
    """The typed sections of ``config`` (e.g. from :func:`load_config`; keys it leaves out take the
    defaults), checked."""
    return Settings.of(config)
