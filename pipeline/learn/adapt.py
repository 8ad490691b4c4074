"""Adapt the sentence encoder to a study's coders: SetFit-style contrastive fine-tuning on the decision log.

Why: the learner (:mod:`pipeline.learn.learner`) draws its boundaries in the frozen encoder's space, and
that space caps what any number of decisions can buy. SetFit (Tunstall et al. 2022) moves the space itself:
pairs of segments a coder gave the same code are pulled together, pairs with different codes (or one said
not to carry the other's code) pushed apart, with sentence-transformers' ``CosineSimilarityLoss`` (targets 1
and 0). Measured on NHS FFT labels it does not pay yet (``python -m bench adapt``, docs/benchmarks.md), so it
is optional (``review.adapt``).

How:

* **Pairs** (:func:`contrastive_pairs`), per theme in sorted order, ``pairs_per_label`` of each kind: a
  positive pair is two rows for the theme; a negative pair a row for it and a row against it (said not to be
  in it, or carrying other codes but not this one). Rows and themes are sorted first, so the pairs depend on
  the labels alone, never on the order they were gathered in.
* **Training**: a plain torch loop over a fresh copy of the model (the cached encoder of
  :mod:`pipeline.embed.encoder` is never touched), ``steps`` batches of ``batch_size`` pairs, AdamW at
  ``learning_rate`` with a linear warm-up over the first tenth and a linear decay (SetFit's schedule).
  ``torch.manual_seed(seed)`` fixes dropout and the pair order: the same labels, settings and seed give the
  same weights on the same machine and thread count (``threads``: torch's intra-op threads while training;
  0 keeps torch's own).
* **Offline**: the base model is loaded from local disk only (``pipeline.embed.encoder.resolve_model``), as
  every model here; ``save`` writes a plain sentence-transformers folder (no model card), which both
  embedding backends load (the ONNX backend exports it once, keyed by its model id, like any local model).

The folder's name carries :meth:`EncoderAdapter.digest` (base model, labels by text, settings), so its
model id (``resolve_model`` names a folder by its name and files) differs from the frozen model's and from
any other adaptation's, and the embedding cache keeps their vectors apart.

Usable alone: ``EncoderAdapter(steps=20).fit(texts, {"Staff": ThemeLabels((0, 4), (7,))}).save(folder)``.
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
    """Labels the encoder cannot be adapted to (too few, or pairs of one kind only); the message says why."""


def labelled_rows(labels: Mapping[str, ThemeLabels]) -> set[int]:
    """Rows some theme's labels name (for or against): what ``review.adapt_min_labels`` counts."""
    return {r for lab in labels.values() for r in (*lab.positive, *lab.negative)}


def contrastive_pairs(labels: Mapping[str, ThemeLabels], pairs_per_label: int, seed: int = 0
                      ) -> list[tuple[int, int, float]]:
    """SetFit-style pairs ``(row, row, target)``: per theme (sorted by key), ``pairs_per_label`` positive pairs
    (two rows for it, target 1) and as many negative ones (a row for it and a row against it: said not to be
    in it, or for another theme and not this one; target 0). A theme with fewer than two rows for it gives no
    positive pair, one with nothing against it no negative pair."""
    rng = np.random.default_rng(seed)
    keys = sorted(k for k, lab in labels.items() if len(lab.positive))
    positive = {k: np.array(sorted(set(labels[k].positive)), dtype=np.int64) for k in keys}
    pairs: list[tuple[int, int, float]] = []
    for key in keys:
        mine = positive[key]
        against = set(labels[key].negative) | {r for k in keys if k != key for r in positive[k]}
        against = np.array(sorted(against - set(mine.tolist())), dtype=np.int64)
        for _ in range(pairs_per_label):
            if len(mine) >= 2:
                a, b = rng.choice(mine, 2, replace=False)
                pairs.append((int(a), int(b), 1.0))
            if len(against):
                pairs.append((int(rng.choice(mine)), int(rng.choice(against)), 0.0))
    return pairs


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
    ``steps``: optimiser steps of ``batch_size`` pairs; ``pairs_per_label``: positive and negative pairs drawn
    per theme (:func:`contrastive_pairs`); ``learning_rate``: AdamW's peak rate; ``seed`` fixes the pairs, their
    order and dropout; ``threads``: torch threads while training (0: torch's default). Fitted: ``model_``
    (the tuned ``SentenceTransformer``), ``pairs_`` (how many), ``seconds_`` (training time), ``losses_`` (the
    loss of each step), ``digest_`` (:meth:`digest`), ``base_model_id_``.
    """

    def __init__(self, model: str = DEFAULT_MODEL, steps: int = 20, batch_size: int = 16, pairs_per_label: int = 20,
                 learning_rate: float = 2e-5, seed: int = 0, threads: int = 0):
        self.model = model
        self.steps = steps
        self.batch_size = batch_size
        self.pairs_per_label = pairs_per_label
        self.learning_rate = learning_rate
        self.seed = seed
        self.threads = threads

    @classmethod
    def from_config(cls, review_cfg: Any, model: str = DEFAULT_MODEL) -> "EncoderAdapter":
        """The adapter the ``review`` section describes (``adapt_steps``, ``adapt_batch_size``,
        ``adapt_pairs_per_label``, ``adapt_learning_rate``, ``adapt_seed``) over ``model`` (``embed.model``)."""
        from pipeline.config import ReviewSettings

        r = ReviewSettings.of(review_cfg)
        return cls(model, r.adapt_steps, r.adapt_batch_size, r.adapt_pairs_per_label, r.adapt_learning_rate,
                   r.adapt_seed)

    def settings(self) -> dict[str, Any]:
        """What shapes the weights besides the labels (``threads`` aside: it moves only the last bits)."""
        return {"steps": int(self.steps), "batch_size": int(self.batch_size), "pairs_per_label": int(self.pairs_per_label),
                "learning_rate": float(self.learning_rate), "seed": int(self.seed), "loss": "CosineSimilarityLoss"}

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
        """Train on pairs of ``texts`` (rows named by ``labels``); the texts of no label are not used."""
        import torch

        from pipeline.embed.encoder import ModelNotFoundError, resolve_model

        texts = [str(t) for t in texts]
        pairs = contrastive_pairs(labels, self.pairs_per_label, self.seed)
        if not any(t == 1.0 for *_, t in pairs) or not any(t == 0.0 for *_, t in pairs):
            raise AdaptError("adapting the encoder needs a theme with two segments for it and one segment against "
                             f"some theme; these labels give {len(pairs)} pairs of one kind only")
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
            loss_fn = _cosine_loss(model)
            optimiser = torch.optim.AdamW(model.parameters(), lr=float(self.learning_rate))
            warmup = max(1, int(round(0.1 * self.steps)))
            schedule = torch.optim.lr_scheduler.LambdaLR(
                optimiser, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (self.steps - s) / max(1, self.steps - warmup)))
            rng = np.random.default_rng(self.seed)
            passes = -(-int(self.steps) * int(self.batch_size) // len(pairs))  # each pass over the pairs reshuffled
            order = np.concatenate([rng.permutation(len(pairs)) for _ in range(max(1, passes))])
            model.train()
            self.losses_ = []
            for step in range(int(self.steps)):
                batch = [pairs[i] for i in order[step * self.batch_size:(step + 1) * self.batch_size]]
                features = [_features(model, [texts[a] for a, _, _ in batch]),
                            _features(model, [texts[b] for _, b, _ in batch])]
                value = loss_fn(features, torch.tensor([t for *_, t in batch], dtype=torch.float32))
                optimiser.zero_grad()
                value.backward()
                optimiser.step()
                schedule.step()
                self.losses_.append(round(float(value.detach()), 6))
            model.eval()
        finally:
            torch.set_num_threads(threads_before)
        self.model_ = model
        self.pairs_ = len(pairs)
        self.labelled_ = len(labelled_rows(labels))
        self.themes_ = sorted(k for k, lab in labels.items() if len(lab.positive))
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
                        "labelled_segments": self.labelled_, "themes": self.themes_, "pairs": self.pairs_,
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


def _cosine_loss(model):
    """sentence-transformers' own ``CosineSimilarityLoss`` (its module moved in version 5)."""
    try:
        from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
    except ImportError:  # sentence-transformers < 5
        from sentence_transformers.losses import CosineSimilarityLoss
    return CosineSimilarityLoss(model)


def _features(model, texts: list[str]) -> dict:
    """Tokenised inputs as the model's forward wants them (``preprocess`` since sentence-transformers 5,
    ``tokenize`` before)."""
    prepare = getattr(model, "preprocess", None) or model.tokenize
    return dict(prepare(texts))
