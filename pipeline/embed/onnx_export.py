"""ONNX Runtime backend for the embedder: the same sentence-transformers model, exported locally.

Why: on a laptop CPU the embedding stage is most of a cold run. ONNX Runtime with BERT operator fusion
(attention, skip-layer-norm, bias-GELU) runs the same weights much faster than PyTorch eager mode,
and batches sorted by token length waste little time on padding.

How:

* **Export once, locally.** The model folder that the sentence-transformers backend loads is exported
  with ``torch.onnx`` (TorchScript exporter, dynamic batch and sequence axes, eager attention so the
  graph can be fused), then fused by ``onnxruntime.transformers.optimizer`` where the architecture
  allows. The result is cached under ``embed.onnx.cache_dir`` (default ``~/.cache/themesift/onnx``)
  keyed by the model id, the export recipe and the torch/onnxruntime versions. Nothing is downloaded.
* **Same vectors.** Tokenisation uses the model's own fast tokenizer with the model's
  ``max_seq_length`` (as sentence-transformers: texts stripped, truncated, no padding beyond the
  batch), then mean (or CLS) pooling as the model's ``1_Pooling`` config says, then L2 normalisation.
  In fp32 the vectors agree with sentence-transformers to cosine >= 0.9999 (tested), so both backends
  share one model id and one embedding cache. ``precision: int8`` smooths the activations and quantises
  the weights (:mod:`pipeline.embed.int8`; 2.3x fp32's speed on a 2-core CPU, cosine about 0.996 to
  fp32; ``fp32_layers`` keeps each layer's feed-forward down-projection fp32, nearer fp32 and slower);
  its vectors differ, so each recipe has a model id of its own.
* **Fast batches.** Texts are tokenised once, sorted by token count (longest first) and cut into
  batches of ``batch_size`` texts, each padded only to its own longest text; ``streams`` batches run at
  once (default: one per thread, each on one thread: small batches of short texts cannot keep several
  threads busy inside one operator); results are put back in input order.

Usable on its own: ``OnnxSentenceEncoder.load(model_folder, model_id).encode(texts)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from pipeline.embed.cpu import detect
from pipeline.embed.int8 import Int8Recipe, calibration_texts, check_texts, int8_export
from pipeline.embed.tokens import padded_batch, truncating_tokenizer

log = logging.getLogger("themesift.embed")

#: Bump when the export below changes in a way that changes the exported file.
EXPORT_RECIPE = 1
OPSET = 17
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class OnnxExportError(RuntimeError):
    """The model cannot be exported or run by the ONNX backend; the message says why."""


class Int8Refused(OnnxExportError):
    """int8 vectors on this CPU are further from fp32 than ``embed.onnx.int8_min_cosine`` allows."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "themesift" / "onnx"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def cpu_count() -> int:
    """CPUs this process may use (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ModelLayout:
    """What the sentence-transformers folder says about pooling, normalisation and length."""

    pooling: str  # "mean" | "cls"
    normalize: bool
    max_seq_length: int
    dimension: int

    @classmethod
    def read(cls, folder: Path) -> "ModelLayout":
        modules_file = folder / "modules.json"
        if not modules_file.is_file():
            raise OnnxExportError(f"{folder}: no modules.json; the ONNX backend needs a sentence-transformers folder")
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        types = [m["type"].rsplit(".", 1)[-1] for m in modules]
        if not types or types[0] != "Transformer" or "Pooling" not in types:
            raise OnnxExportError(f"{folder}: modules {types} are not Transformer + Pooling; "
                                  "use embed.backend: sentence-transformers for this model")
        extra = set(types) - {"Transformer", "Pooling", "Normalize"}
        if extra:
            raise OnnxExportError(f"{folder}: modules {sorted(extra)} are not supported by the ONNX backend; "
                                  "use embed.backend: sentence-transformers for this model")
        pool_dir = folder / next(m["path"] for m in modules if m["type"].endswith("Pooling"))
        pool = json.loads((pool_dir / "config.json").read_text(encoding="utf-8"))
        if pool.get("pooling_mode_mean_tokens"):
            pooling = "mean"
        elif pool.get("pooling_mode_cls_token"):
            pooling = "cls"
        else:
            raise OnnxExportError(f"{pool_dir}: only mean or CLS pooling is supported by the ONNX backend")
        if sum(bool(v) for k, v in pool.items() if k.startswith("pooling_mode_")) != 1:
            raise OnnxExportError(f"{pool_dir}: combined pooling modes are not supported by the ONNX backend")
        bert_cfg = folder / "sentence_bert_config.json"
        max_len = json.loads(bert_cfg.read_text(encoding="utf-8")).get("max_seq_length") if bert_cfg.is_file() else None
        model_cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if max_len is None:
            max_len = int(model_cfg.get("max_position_embeddings", 512))
        return cls(pooling, "Normalize" in types, int(max_len), int(pool["word_embedding_dimension"]))


def export_key(model_id: str) -> str:
    """Folder name of an export: model id, recipe and the versions that shape the file."""
    blob = json.dumps([model_id, EXPORT_RECIPE, OPSET, _version("torch"), _version("onnxruntime"),
                       _version("transformers")])
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in model_id.split("@")[0])[:40]
    return f"{slug}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


PRECISIONS = ("fp32", "int8")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown embed.onnx.precision '{precision}'; use one of {', '.join(PRECISIONS)}")


@contextlib.contextmanager
def _export_lock(cache_dir: Path):
    """One export at a time across the threads and processes sharing ``cache_dir``: embed tasks that
    start together on first use wait for the first one's export instead of racing it."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".export.lock", "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: files are still renamed into place whole
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def export_model(folder: str | Path, model_id: str, cache_dir: str | Path | None = None,
                 precision: str = "fp32", int8: Int8Recipe = Int8Recipe(), int8_min_cosine: float | None = None) -> Path:
    """Path of the (fused) ONNX export of ``folder``, exporting it now (once, under a lock) unless cached.

    ``precision="int8"`` gives the same export with its weights quantised to int8 as ``int8`` says
    (activation smoothing, products kept fp32), see :mod:`pipeline.embed.int8`; kept beside the
    fp32 file, and checked against it on this CPU (:func:`int8_faithfulness`): below
    ``int8_min_cosine`` it is refused with :class:`Int8Refused`. Files are written to a temporary name
    and renamed into place, so concurrent processes never see a half-written file.
    """
    check_precision(precision)
    cache = Path(cache_dir or default_cache_dir())
    with _export_lock(cache):
        model_file = _export_fp32(Path(folder), model_id, cache)
        if precision == "fp32":
            return model_file
        int8_file = model_file.with_name(f"model.{int8.name}.onnx")
        if not int8_file.is_file():
            log.info("quantising the embedding model to %s (once per recipe; cached in %s)", int8.name, cache)
            token_ids = None
            if int8.smooth is not None:
                tokenizer = truncating_tokenizer(str(folder), ModelLayout.read(Path(folder)).max_seq_length)
                token_ids = [e.ids for e in tokenizer.encode_batch(calibration_texts())]
            int8_export(model_file, int8_file, token_ids, int8)
        check = int8_faithfulness(folder, model_file, int8_file)
    if int8_min_cosine is not None and check["mean_cosine"] < int8_min_cosine:
        raise Int8Refused(
            f"int8 vectors ({int8.name}) on this CPU, {detect().summary}, are at mean cosine "
            f"{check['mean_cosine']:.4f} to fp32 on {check['sentences']} check sentences, below "
            f"embed.onnx.int8_min_cosine {int8_min_cosine}; use embed.onnx.precision: fp32 (the default, the "
            "model's own vectors), or try embed.onnx.fp32_layers: 6 (nearer fp32, slower than all-int8)")
    return int8_file


def int8_faithfulness(folder: str | Path, fp32_file: Path, int8_file: Path) -> dict:
    """Mean and least cosine of ``int8_file``'s vectors to ``fp32_file``'s on the shipped check sentences,
    computed on this CPU (its kernels decide the int8 rounding) and kept beside the int8 file, keyed by
    the CPU and ONNX Runtime version, so it is measured once per machine."""
    cpu = detect()
    key = {"cpu": cpu.as_dict(), "onnxruntime": _version("onnxruntime")}
    record = int8_file.with_name(f"{int8_file.stem}.check.json")
    if record.is_file():
        try:
            saved = json.loads(record.read_text(encoding="utf-8"))
            if {k: saved.get(k) for k in key} == key:
                return saved
        except (OSError, ValueError):
            pass
    texts = check_texts()
    reference = OnnxSentenceEncoder(folder, fp32_file, threads=1, streams=1).encode(texts)
    vectors = OnnxSentenceEncoder(folder, int8_file, threads=1, streams=1).encode(texts)
    cosine = (reference * vectors).sum(axis=1)
    saved = {**key, "sentences": len(texts), "mean_cosine": round(float(cosine.mean()), 6),
             "min_cosine": round(float(cosine.min()), 6)}
    tmp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(saved, indent=2), encoding="utf-8")
    tmp.replace(record)
    return saved


def _export_fp32(folder: Path, model_id: str, cache_dir: Path) -> Path:
    target = cache_dir / export_key(model_id)
    model_file = target / "model.onnx"
    if model_file.is_file() and (target / "export.json").is_file():
        return model_file
    layout = ModelLayout.read(folder)
    log.info("exporting the embedding model for ONNX Runtime (once per model, about 20 s; cached in %s)", cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        started = time.perf_counter()
        raw = work / "raw.onnx"
        config = _export_torch(folder, raw, layout)
        fused, stats = _fuse(raw, work / "model.onnx", config)
        if fused is None:
            raw.rename(work / "model.onnx")
        else:
            raw.unlink()
        meta = {"model_id": model_id, "source": str(folder), "recipe": EXPORT_RECIPE, "opset": OPSET,
                "torch": _version("torch"), "onnxruntime": _version("onnxruntime"),
                "transformers": _version("transformers"), "fused_operators": stats,
                "seconds": round(time.perf_counter() - started, 2)}
        (work / "export.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        try:
            work.rename(target)
        except OSError:  # another process finished first
            if not model_file.is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return model_file


def _export_torch(folder: Path, out: Path, layout: ModelLayout) -> Any:
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        # Eager attention exports as plain MatMul/Softmax that the optimizer fuses into one Attention op.
        model = AutoModel.from_pretrained(str(folder), local_files_only=True, attn_implementation="eager").eval()
    except (OSError, ValueError) as exc:
        raise OnnxExportError(f"{folder}: cannot load the model for export: {exc}") from exc
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    sample = tokenizer(["An example sentence to trace the graph with.", "Short one."], padding=True,
                       return_tensors="pt")
    names = [n for n in _INPUTS if n in sample]

    class LastHidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(**dict(zip(names, args))).last_hidden_state

    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        torch.onnx.export(LastHidden(model), tuple(sample[n] for n in names), str(out), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=OPSET,
                          do_constant_folding=True, dynamo=False)
    return model.config


def _fuse(raw: Path, out: Path, config: Any) -> tuple[Path | None, dict]:
    """Fuse BERT-style operators; ``(None, {})`` when the architecture is not one the optimizer knows."""
    model_type = {"bert": "bert", "mpnet": "bert", "roberta": "bert", "xlm-roberta": "bert",
                  "distilbert": "bert"}.get(getattr(config, "model_type", ""))
    if model_type is None:
        return None, {}
    try:
        from onnxruntime.transformers import optimizer
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = optimizer.optimize_model(str(raw), model_type=model_type, num_heads=config.num_attention_heads,
                                           hidden_size=config.hidden_size, opt_level=0)
        stats = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
        opt.save_model_to_file(str(out))
        return out, stats
    except Exception:  # noqa: BLE001  (an unfused graph is still correct, only slower)
        return None, {}


class OnnxSentenceEncoder:
    """Sentence-transformers-like encoder over an ONNX Runtime session.

    Offers what :class:`pipeline.embed.encoder.Embedder` uses of a ``SentenceTransformer``: ``encode``,
    ``max_seq_length`` and ``get_sentence_embedding_dimension()``.
    """

    def __init__(self, folder: str | Path, model_file: str | Path, threads: int = 0, allow_spinning: bool = False,
                 streams: int = 0):
        import onnxruntime as ort

        self.folder = str(folder)
        self.model_file = str(model_file)
        self.layout = ModelLayout.read(Path(folder))
        self.max_seq_length = self.layout.max_seq_length
        self.threads = int(threads) if threads and int(threads) > 0 else cpu_count()
        # Batches of short texts are too small to keep several threads busy inside one operator: with
        # streams > 1, that many batches run at once (ONNX Runtime sessions are thread-safe), each on
        # threads // streams threads.
        self.streams = self.threads if int(streams or 0) <= 0 else min(int(streams), self.threads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, self.threads // self.streams)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        self.session = ort.InferenceSession(self.model_file, options, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self.session.get_inputs()]
        self._fast = truncating_tokenizer(self.folder, self.max_seq_length)

    @classmethod
    def load(cls, folder: str | Path, model_id: str, cache_dir: str | Path | None = None, threads: int = 0,
             allow_spinning: bool = False, streams: int = 0, precision: str = "fp32",
             int8: Int8Recipe = Int8Recipe(), int8_min_cosine: float | None = None) -> "OnnxSentenceEncoder":
        return cls(folder, export_model(folder, model_id, cache_dir, precision, int8, int8_min_cosine), threads,
                   allow_spinning, streams)

    def get_sentence_embedding_dimension(self) -> int:
        return self.layout.dimension

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids as the model sees them (stripped, special tokens, truncated to max_seq_length)."""
        return [e.ids for e in self._fast.encode_batch([str(t).strip() for t in texts])]

    def encode(self, texts: Sequence[str], batch_size: int = 8, show_progress_bar: bool = False,
               convert_to_numpy: bool = True, normalize_embeddings: bool = True,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Unit-length (unless told otherwise) float32 vectors, in the order of ``texts``; ``progress`` is
        told how many texts each batch encoded (a caller's one bar over several calls)."""
        out = np.zeros((len(texts), self.layout.dimension), dtype=np.float32)
        if not len(texts):
            return out
        ids = self.token_ids(texts)
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(-lengths, kind="stable")
        batch_size = max(1, int(batch_size))
        starts = range(0, len(order), batch_size)
        bar = None
        if show_progress_bar:
            from tqdm.auto import tqdm
            bar = tqdm(desc="Batches", total=len(starts))

        def run(start: int) -> None:
            rows = order[start:start + batch_size]
            feed, mask = padded_batch([ids[j] for j in rows], self._inputs)
            hidden = self.session.run(None, feed)[0]
            if self.layout.pooling == "cls":
                pooled = hidden[:, 0, :]
            else:
                weights = mask[:, :, None].astype(np.float32)
                pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            out[rows] = pooled  # rows are disjoint between batches: safe from several threads
            if bar is not None:
                bar.update(1)
            if progress is not None:
                progress(len(rows))

        if self.streams > 1 and len(starts) > 1:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(self.streams) as pool:
                list(pool.map(run, starts))
        else:
            for start in starts:
                run(start)
        if bar is not None:
            bar.close()
        if normalize_embeddings or self.layout.normalize:
            out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return out
