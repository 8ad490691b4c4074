"""Name themes with a local generative model the user already runs (optional, off by default).

The extractive namer (:mod:`pipeline.themes.name`) names every theme first; this one then asks a model
for a name and a one-sentence inclusion criterion per theme, from the theme's keywords and central
quotes, and keeps the extractive name and description of any theme whose answer fails or is malformed
(one summary warning; the run goes on). Two backends, both on this machine unless the configuration
says otherwise (``describe.name.model``, checked in :class:`pipeline.config.NameModelSettings`):

* ``ollama``: an Ollama-compatible HTTP server (``POST /api/generate`` or ``/api/chat``, JSON,
  ``stream: false``), reached without proxies and without following redirects, so a loopback address
  stays on this machine. GGUF models are served this way (no GGUF library is a dependency);
* ``transformers``: a local model folder (``AutoModelForCausalLM``, ``local_files_only``).

Decoding is greedy (temperature 0) with a fixed seed, so the same inputs give the same names. The
prompt (its template and the template's SHA-256) and the model (server or folder, and the version
they report) go in the run's manifest (:meth:`ModelNamer.rename` returns them).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from pipeline.config import NameModelSettings, url_without_password

PROMPT_TEMPLATE = """You help a qualitative researcher code interview transcripts and open survey answers.
A clustering of the data found the theme below. Its keywords and some of its most central quotes follow.

Keywords: {keywords}

Quotes:
{quotes}

Write a name for this theme in plain words, as a researcher would name a code (2 to 6 words, not a list of
keywords), and one sentence saying which passages belong to the theme (an inclusion criterion).
Answer with JSON only, in this form: {{"name": "...", "criterion": "..."}}"""

PROMPT_SHA256 = hashlib.sha256(PROMPT_TEMPLATE.encode("utf-8")).hexdigest()

#: Decoding every backend uses: greedy, so the answer depends on the inputs only.
TEMPERATURE = 0


class AnswerFailed(Exception):
    """No usable answer for one theme; ``reason`` is counted in the run's one warning."""

    def __init__(self, reason: str, unreachable: bool = False):
        super().__init__(reason)
        self.reason = reason
        #: The model cannot be reached at all: the other themes are not asked.
        self.unreachable = unreachable


class Backend(Protocol):
    def complete(self, prompt: str) -> str: ...

    def describe(self) -> dict[str, Any]: ...


def build_prompt(keywords: Sequence[str], quotes: Sequence[str], quote_max_words: int) -> str:
    """The prompt for one theme: its keywords, and its quotes cut to ``quote_max_words`` words each."""
    lines = []
    for q in quotes:
        words = q.split()
        lines.append("- " + " ".join(words[:quote_max_words]) + (" ..." if len(words) > quote_max_words else ""))
    return PROMPT_TEMPLATE.format(keywords=", ".join(keywords), quotes="\n".join(lines) or "- (none)")


_FENCE = re.compile(r"```(?:json)?", re.IGNORECASE)


def parse_answer(text: str, name_max_words: int) -> tuple[str, str]:
    """The name and criterion of a model's answer: the first JSON object in it with a ``name`` of 1 to
    ``name_max_words`` words and a ``criterion`` of one sentence; :class:`AnswerFailed` otherwise."""
    text = _FENCE.sub("", text)
    start = text.find("{")
    try:
        answer, _ = json.JSONDecoder().raw_decode(text[start:]) if start >= 0 else (None, 0)
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise AnswerFailed("not JSON")
    name, criterion = answer.get("name"), answer.get("criterion")
    if not isinstance(name, str) or not isinstance(criterion, str):
        raise AnswerFailed("no name or criterion")
    name = " ".join(name.split()).strip(" \"'“”.")
    criterion = " ".join(criterion.split())
    if not name or len(name.split()) > name_max_words:
        raise AnswerFailed("name empty or too long")
    if len(criterion.split()) < 3 or re.search(r"[.!?]\s+[A-Z]", criterion):  # "e.g. fees" is one sentence
        raise AnswerFailed("criterion not one sentence")
    return name, criterion


class OllamaBackend:
    """An Ollama-compatible server: ``/api/generate`` or ``/api/chat`` with ``stream: false``."""

    def __init__(self, cfg: NameModelSettings):
        self.server = cfg.server.rstrip("/")
        self.model = str(cfg.model)
        self.endpoint = cfg.endpoint
        self.timeout_s = cfg.timeout_s
        self.options = {"temperature": TEMPERATURE, "seed": cfg.seed, "num_predict": cfg.max_new_tokens}
        # No proxy (HTTP_PROXY would carry loopback traffic elsewhere) and no redirect to another host.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())

    def _call(self, path: str, body: Mapping | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self.server + path, data=data,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise AnswerFailed(f"HTTP {exc.code}", unreachable=exc.code in (301, 302, 303, 307, 308, 404)) from None
        except urllib.error.URLError as exc:
            timed_out = isinstance(exc.reason, (TimeoutError, socket.timeout))
            raise AnswerFailed("timed out" if timed_out else "server unreachable", unreachable=not timed_out) from None
        except (TimeoutError, socket.timeout):
            raise AnswerFailed("timed out") from None
        except (OSError, ValueError, UnicodeDecodeError):
            raise AnswerFailed("broken reply") from None

    def complete(self, prompt: str) -> str:
        body: dict[str, Any] = {"model": self.model, "stream": False, "format": "json", "options": self.options}
        if self.endpoint == "chat":
            reply = self._call("/api/chat", {**body, "messages": [{"role": "user", "content": prompt}]})
            text = reply.get("message", {}).get("content") if isinstance(reply, dict) else None
        else:
            reply = self._call("/api/generate", {**body, "prompt": prompt})
            text = reply.get("response") if isinstance(reply, dict) else None
        if not isinstance(text, str):
            raise AnswerFailed("no answer text")
        return text

    def describe(self) -> dict[str, Any]:
        """The server, the model and the versions they report (None where the server does not say)."""
        out: dict[str, Any] = {"backend": "ollama", "server": url_without_password(self.server),
                               "endpoint": f"/api/{self.endpoint}",
                               "model": self.model, "server_version": None, "digest": None, "details": None}
        try:
            out["server_version"] = self._call("/api/version").get("version")
            tags = self._call("/api/tags").get("models") or []
            entry = next((m for m in tags if m.get("name") in (self.model, f"{self.model}:latest")
                          or m.get("model") in (self.model, f"{self.model}:latest")), None)
            if entry:
                out["digest"], out["details"] = entry.get("digest"), entry.get("details")
        except (AnswerFailed, AttributeError):
            pass
        return out


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: D102 (a redirect is an HTTPError, not followed)
        return None


class TransformersBackend:
    """A local causal language model folder, loaded once with ``local_files_only`` (nothing downloaded)."""

    def __init__(self, cfg: NameModelSettings):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.folder = Path(str(cfg.model)).expanduser().resolve()
        self.seed = cfg.seed
        self.max_new_tokens = cfg.max_new_tokens
        self.timeout_s = cfg.timeout_s
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(self.folder, local_files_only=True).eval()
        except (OSError, ValueError) as exc:
            raise AnswerFailed(f"model folder not loaded ({type(exc).__name__})", unreachable=True) from None
        self._torch = torch

    def complete(self, prompt: str) -> str:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)["input_ids"]
        else:
            ids = tok(prompt, return_tensors="pt")["input_ids"]
        self._torch.manual_seed(self.seed)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with self._torch.inference_mode():
            out = self.model.generate(ids, attention_mask=self._torch.ones_like(ids), do_sample=False,
                                      max_new_tokens=self.max_new_tokens, max_time=self.timeout_s,
                                      pad_token_id=pad)
        return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    def describe(self) -> dict[str, Any]:
        """The folder, what its config says it is, a fingerprint of its files and transformers' version."""
        import transformers

        digest = hashlib.sha256()
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            rel = path.relative_to(self.folder).as_posix()
            digest.update(f"{rel}\0{path.stat().st_size}\0".encode())
            if path.suffix == ".json":  # config, tokenizer, generation settings: small, read in full
                digest.update(path.read_bytes())
        config = self.model.config
        return {"backend": "transformers", "folder": str(self.folder), "model_type": config.model_type,
                "name_or_path": getattr(config, "_name_or_path", None),
                "fingerprint": digest.hexdigest(), "transformers_version": transformers.__version__}


@dataclass(frozen=True)
class Renamed:
    """Descriptions with the model's names, what the manifest records, and the run's one warning (if any)."""

    descriptions: list
    record: dict[str, Any]
    warning: str | None


@dataclass
class ModelNamer:
    """Names themes with a local generative model; mirrors the ``describe.name.model`` config section."""

    settings: NameModelSettings

    @classmethod
    def from_config(cls, cfg: NameModelSettings | Mapping) -> "ModelNamer":
        return cls(NameModelSettings.of(cfg))

    @property
    def enabled(self) -> bool:
        return self.settings.backend != "none"

    def backend(self) -> Backend:
        return OllamaBackend(self.settings) if self.settings.backend == "ollama" else TransformersBackend(self.settings)

    def rename(self, descriptions: Sequence, texts: Sequence[str], backend: Backend | None = None) -> Renamed:
        """``descriptions`` (:class:`~pipeline.themes.describe.ThemeDescription`) with ``label`` and
        ``description`` from the model where it answered well; the others as they were."""
        cfg = self.settings
        failures: Counter = Counter()
        out = list(descriptions)
        record: dict[str, Any] = {
            "backend": cfg.backend, "model": None,
            "prompt": {"template": PROMPT_TEMPLATE, "sha256": PROMPT_SHA256},
            "decoding": {"temperature": TEMPERATURE, "seed": cfg.seed, "max_new_tokens": cfg.max_new_tokens,
                         "timeout_s": cfg.timeout_s},
            "themes": len(out), "named": 0, "kept_extractive": {}}
        try:
            backend = backend or self.backend()
            record["model"] = backend.describe()
        except AnswerFailed as exc:
            failures[exc.reason] = len(out)
            backend = None
        for i, d in enumerate(out if backend is not None else ()):
            prompt = build_prompt(d.keywords[: cfg.keywords], [texts[q] for q in d.quotes[: cfg.quotes]],
                                  cfg.quote_max_words)
            try:
                name, criterion = parse_answer(backend.complete(prompt), cfg.name_max_words)
            except AnswerFailed as exc:
                failures[exc.reason] += 1
                if exc.unreachable:  # nothing will answer the others either
                    failures[exc.reason] += len(out) - i - 1
                    break
                continue
            out[i] = replace(d, label=name, description=criterion)
            record["named"] += 1
        record["kept_extractive"] = dict(sorted(failures.items()))
        warning = None
        if failures:
            what = f"{cfg.backend} model {cfg.model!r}" + (f" at {url_without_password(cfg.server)}"
                                                           if cfg.backend == "ollama" else "")
            reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(failures.items()))
            warning = (f"describe.name.model: {sum(failures.values())} of {len(out)} themes got no usable answer "
                       f"from the {what} ({reasons}); they keep their extractive names")
        return Renamed(out, record, warning)
