"""Adapt the sentence encoder to a study's coders: fine-tune it to tell the coded themes apart.

Why: the learner (:mod:`pipeline.learn.learner`) draws its boundaries in the frozen encoder's space, and
that space caps what any number of decisions can buy. Fine-tuning moves the space itself: the encoder and a
linear head over its (normalised, mean-pooled) vectors are trained together to give each labelled segment
its themes (one binary cross-entropy per theme, several themes per segment allowed); the head is then
dropped and the learner reads the tuned vectors. SetFit's contrastive pairs (``CosineSimilarityLoss``, tried
first) bought nothing on NHS FFT labels; the head's direct objective bought 0.03 kappa there at 400 labelled
segments (about 50 a code) and cost 0.02-0.07 where codes had 5 to 20 each (Banking77, the example study;
docs/benchmarks.md), so it stays optional (``review.adapt``).

How:

* **Targets** (:func:`label_targets`): the rows any label names, sorted; per theme with a row for it (sorted
  by key), 1 where the row is for it, 0 where it is against it (said not to be in it, or for another theme
  only), as the learner reads a random sample's codes. Rows and themes are sorted first, so the training
  depends on the labels alone, never on the order they were gathered in.
* **Training**: a plain torch loop over a fresh copy of the model (the cached encoder of
  :mod:`pipeline.embed.encoder` is never touched), ``epochs`` passes over the rows in batches of
  ``batch_size`` but never more than ``max_steps`` batches (a study whose confirmed themes hold thousands
  of members would otherwise train for hours on 2 cores), AdamW at ``learning_rate`` for the encoder and
  ``head_learning_rate`` for the fresh head, a linear warm-up over the first tenth and a linear decay.
  ``torch.manual_seed(seed)`` fixes the head's start, dropout and the row order: the same labels, settings
  and seed give the same weights on the same machine and thread count (``threads``: torch's intra-op
  threads while training; 0 keeps torch's own).
* **Offline**: the base model is loaded from local disk only (``pipeline.embed.encoder.resolve_model``), as
  every model here; ``save`` writes a plain sentence-transformers folder (no model card, no head), which
  both embedding backends load (the ONNX backend exports it once, keyed by its model id, like any local model).

The folder's name carries :meth:`EncoderAdapter.digest` (base model, labels by text, settings), so its
model id (``resolve_model`` names a folder by its name and files) differs from the frozen model's and from
any other adaptation's, and the embedding cache keeps their vectors apart.

Usable alone: ``EncoderAdapter(epochs=4).fit(texts, {"Staff": ThemeLabels((0, 4), (7,))}).save(folder)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pipeline.embed.encoder import DEFAULT_MODEL, RECORD_FILE, text_hash
from pipeline.learn.learner import ThemeLabels

#: Written into every adapted folder: what made it. Its presence marks a complete folder.
MANIFEST = RECORD_FILE


class AdaptError(ValueError):
    """Labels the encoder cannot be adapted to (none against any theme); the message says why."""


def labelled_rows(labels: Mapping[str, ThemeLabels]) -> set[int]:
    """Rows some theme's labels name (for or against): what ``review.adapt_min_labels`` counts."""
    return {r for lab in labels.values() for r in (*lab.positive, *lab.negative)}


def examples_per_theme(labels: Mapping[str, ThemeLabels]) -> float:
    """The median number of segments labelled for a theme, over the themes with any: what decides whether
    adapting pays (it did with about 50 a theme, and cost agreement with 5 to 20)."""
    counts = [len(set(lab.positive)) for lab in labels.values() if len(lab.positive)]
    return float(np.median(counts)) if counts else 0.0


def label_targets(labels: Mapping[str, ThemeLabels]) -> tuple[list[int], list[str], np.ndarray]:
    """The rows to train on (every row a label names, sorted), the themes (those with a row for them, sorted)
    and a ``rows x themes`` 0/1 target: 1 where the row is for the theme, 0 where it is against it or for
    other themes only."""
    keys = sorted(k for k, lab in labels.items() if len(lab.positive))
    rows = sorted(labelled_rows({k: labels[k] for k in keys}))
    at = {r: i for i, r in enumerate(rows)}
    target = np.zeros((len(rows), len(keys)), dtype=np.float32)
    for j, key in enumerate(keys):
        target[[at[r] for r in set(labels[key].positive)], j] = 1.0
    return rows, keys, target


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("torch", "transformers", "sentence-transformers"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


class EncoderAdapter:
    """Fine-tune the sentence encoder on coders' labels: ``fit(texts, labels)``, then ``save(folder)``.

    ``model``: the base model as ``embed.model`` names it ("default": the packaged all-MiniLM-L6-v2).
    ``epochs``: passes over the labelled rows in batches of ``batch_size``, at most ``max_steps`` batches in
    all (0: no limit); ``learning_rate``: AdamW's peak rate for the encoder, ``head_learning_rate`` for the
    head it trains beside it (a fresh layer learns faster); ``seed`` fixes the head's start, the row order
    and dropout; ``threads``: torch threads while training (0: torch's default). Fitted: ``model_`` (the
    tuned ``SentenceTransformer``), ``steps_`` (optimiser steps taken), ``seconds_`` (training time),
    ``losses_`` (the loss of each step), ``digest_`` (:meth:`digest`), ``base_model_id_``.
    """

    #: The head reads the unit vectors scaled by this, so its logits can reach the range BCE needs (a fixed
    #: temperature, not tuned: the head's own weights scale further).
    SCALE = 10.0

    def __init__(self, model: str = DEFAULT_MODEL, epochs: int = 4, batch_size: int = 16, max_steps: int = 500,
                 learning_rate: float = 3e-5, head_learning_rate: float = 3e-3, seed: int = 0, threads: int = 0):
        self.model = model
        self.epochs = epochs
        self.batch_size = batch_size
        self.max_steps = max_steps
        self.learning_rate = learning_rate
        self.head_learning_rate = head_learning_rate
        self.seed = seed
        self.threads = threads

    @classmethod
    def from_config(cls, review_cfg: Any, model: str = DEFAULT_MODEL) -> "EncoderAdapter":
        """The adapter the ``review`` section describes (``adapt_epochs``, ``adapt_batch_size``,
        ``adapt_max_steps``, ``adapt_learning_rate``, ``adapt_head_learning_rate``, ``adapt_seed``) over
        ``model`` (``embed.model``)."""
        from pipeline.config import ReviewSettings

        r = ReviewSettings.of(review_cfg)
        return cls(model, r.adapt_epochs, r.adapt_batch_size, r.adapt_max_steps, r.adapt_learning_rate,
                   r.adapt_head_learning_rate, r.adapt_seed)

    def settings(self) -> dict[str, Any]:
        """What shapes the weights besides the labels (``threads`` aside: it moves only the last bits)."""
        return {"epochs": int(self.epochs), "batch_size": int(self.batch_size), "max_steps": int(self.max_steps),
                "learning_rate": float(self.learning_rate), "head_learning_rate": float(self.head_learning_rate),
                "seed": int(self.seed), "loss": "binary cross-entropy per theme, linear head"}

    def digest(self, texts: Sequence[str], labels: Mapping[str, ThemeLabels]) -> str:
        """A short fingerprint of the base model, the labels (by the texts of their rows, so it does not depend
        on row order) and the settings: the adapted folder's name, so the same inputs find the same folder."""
        from pipeline.embed.encoder import resolve_model

        by_theme = sorted((key, sorted(text_hash(texts[r]) for r in set(lab.positive)),
                           sorted(text_hash(texts[r]) for r in set(lab.negative) - set(lab.positive)))
                          for key, lab in labels.items() if len(lab.positive))
        blob = json.dumps([resolve_model(self.model)[1], by_theme, self.settings()], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def fit(self, texts: Sequence[str], labels: Mapping[str, ThemeLabels]) -> "EncoderAdapter":
        """Train on the rows of ``texts`` that ``labels`` name; the texts of no label are not used."""
        import torch

        from pipeline.embed.encoder import ModelNotFoundError, resolve_model

        texts = [str(t) for t in texts]
        rows, keys, target = label_targets(labels)
        if not keys or target.all():
            raise AdaptError("adapting the encoder needs a theme with a segment for it and one against some theme; "
                             f"these labels give {len(rows)} labelled segments, none against any theme")
        location, self.base_model_id_ = resolve_model(self.model)
        self._location = location
        self.digest_ = self.digest(texts, labels)
        started = time.perf_counter()
        threads_before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(int(self.threads))
        try:
            torch.manual_seed(int(self.seed))
            try:
                model = _fresh_model(location)
            except OSError as exc:
                raise ModelNotFoundError(f"embedding model '{location}' is not on this machine; Themesift never "
                                         "downloads models") from exc
            dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            head = torch.nn.Linear(dimension(), len(keys))
            optimiser = torch.optim.AdamW([{"params": model.parameters(), "lr": float(self.learning_rate)},
                                           {"params": head.parameters(), "lr": float(self.head_learning_rate)}])
            per_epoch = -(-len(rows) // int(self.batch_size))
            steps = max(1, int(self.epochs) * per_epoch)
            if self.max_steps:
                steps = min(steps, int(self.max_steps))
            warmup = max(1, int(round(0.1 * steps)))
            schedule = torch.optim.lr_scheduler.LambdaLR(
                optimiser, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup)))
            rng = np.random.default_rng(self.seed)
            Y = torch.from_numpy(target)
            model.train()
            self.losses_ = []
            for _ in range(int(self.epochs)):
                order = rng.permutation(len(rows))
                for i in range(0, len(rows), int(self.batch_size)):
                    if len(self.losses_) == steps:
                        break
                    batch = order[i:i + int(self.batch_size)]
                    vectors = model(_features(model, [texts[rows[b]] for b in batch]))["sentence_embedding"]
                    value = torch.nn.functional.binary_cross_entropy_with_logits(head(self.SCALE * vectors), Y[batch])
                    optimiser.zero_grad()
                    value.backward()
                    optimiser.step()
                    schedule.step()
                    self.losses_.append(round(float(value.detach()), 6))
            model.eval()
        finally:
            torch.set_num_threads(threads_before)
        self.model_ = model
        self.steps_ = len(self.losses_)
        self.labelled_ = len(rows)
        self.themes_ = keys
        self.seconds_ = round(time.perf_counter() - started, 2)
        return self

    def save(self, folder: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        """Write the tuned model as a sentence-transformers folder (whole, or not at all: written beside it and
        renamed into place) with :data:`MANIFEST` saying what made it (``extra``: more to record, e.g. the study)."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            _write_folder(self.model_, Path(self._location), work)
            manifest = {"base_model_id": self.base_model_id_, "digest": self.digest_, "settings": self.settings(),
                        "labelled_segments": self.labelled_, "themes": self.themes_, "steps": self.steps_,
                        "seconds": self.seconds_, "losses": self.losses_, "packages": _versions(),
                        **dict(extra or {})}
            (work / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(work, folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return folder


def is_adapted(folder: str | Path) -> bool:
    """Whether ``folder`` holds a complete adapted model (its manifest is written last)."""
    return (Path(folder) / MANIFEST).is_file()


#: Weight files of a base folder that the tuned weights replace (or that would describe the base model).
_NOT_COPIED = ("model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "rust_model.ot",
               "*.onnx", "onnx", "openvino", "README.md", ".gitattributes")


def _write_folder(model, base: Path, target: Path) -> None:
    """The base model's folder with the tuned transformer weights in place of its own.

    Not ``SentenceTransformer.save``: sentence-transformers 6 writes its own newer layout (pooling as
    ``pooling_mode``, no ``max_seq_length`` in ``sentence_bert_config.json``) that the ONNX backend's
    :class:`pipeline.embed.onnx_export.ModelLayout` does not read; copying the base folder's module configs
    and tokenizer keeps the layout every supported sentence-transformers version and both backends load.
    """
    modules = json.loads((base / "modules.json").read_text(encoding="utf-8"))
    transformer = next(m for m in modules if m["type"].rsplit(".", 1)[-1] == "Transformer")
    shutil.copytree(base, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*_NOT_COPIED))
    model[0].auto_model.save_pretrained(str(target / transformer["path"]), safe_serialization=True)


def _fresh_model(location: str):
    """A new, trainable copy of the model at ``location``, from local files only."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return SentenceTransformer(location, device="cpu", local_files_only=True)


def _features(model, texts: list[str]) -> dict:
    """Tokenised inputs as the model's forward wants them (``preprocess`` since sentence-transformers 5,
    ``tokenize`` before)."""
    prepare = getattr(model, "preprocess", None) or model.tokenize
    return dict(prepare(texts))
