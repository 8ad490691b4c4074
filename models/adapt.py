"""A study's adapted encoder on disk: trained from its decision log (``pipeline.learn.adapt``), kept under the
workspace, found again by what it was trained on.

The folder is ``<workspace>/models/<study>-adapted-<digest>``, the digest naming the base model, the labels
(by text) and the adapter's settings (:meth:`pipeline.learn.adapt.EncoderAdapter.digest`): the same decision
log and settings find the folder already there and train nothing; a decision that changes the labels makes a
new one. Its model id (``pipeline.embed.encoder.resolve_model`` names a local folder by its name and files)
is its own, so the store's embedding cache keeps its vectors apart from the frozen model's.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from models.review import segment_vectors, study_labels
from models.store import Store, study_dir, workspace_dir
from pipeline.config import Settings
from pipeline.embed.encoder import Embedder
from pipeline.learn.adapt import MANIFEST, AdaptError, EncoderAdapter, examples_per_theme, is_adapted, labelled_rows


class NotEnoughLabels(AdaptError):
    """Fewer labelled segments than ``review.adapt_min_labels``; the message says how many are needed."""


@dataclass(frozen=True)
class AdaptedEncoder:
    """A study's adapted encoder: its ``folder``, the ``embedder`` that loads it (``embed`` settings, this
    model), the ``labelled`` segments and confirmed ``themes`` it was trained on, whether this call
    ``trained`` it (False: found ready), the training ``seconds`` and optimiser ``steps`` (from its manifest),
    the study's ``segments``, and the median segments labelled for a theme (``examples``)."""

    folder: Path
    embedder: Embedder
    labelled: int
    themes: int
    trained: bool
    seconds: float
    steps: int
    segments: tuple[int, ...] = ()  # the latest run's segments, which apply codes
    examples: float = 0.0

    @property
    def model_id(self) -> str:
        return self.embedder.model_id


def adapted_folder(cfg: Settings, study: str, digest: str) -> Path:
    return workspace_dir(cfg.store) / "models" / f"{study_dir(cfg.store, study).name}-adapted-{digest}"


def adapt_encoder(store: Store, study: str, cfg: Settings) -> AdaptedEncoder:
    """The study's encoder adapted to its decision log as it stands (trained now unless already on disk), once
    the log labels at least ``review.adapt_min_labels`` segments (:class:`NotEnoughLabels` before)."""
    segs, texts, labels = study_labels(store, study)
    have, need = len(labelled_rows(labels)), cfg.review.adapt_min_labels
    if have < need:
        raise NotEnoughLabels(
            f"study '{study}' has {have} labelled segment{'s' if have != 1 else ''} (for or against a confirmed "
            f"theme); adapting the encoder needs at least {need} (review.adapt_min_labels): {need - have} more "
            f"(confirm themes, move segments, answer Teach questions in themesift review --study {study})")
    adapter = EncoderAdapter.from_config(cfg.review, cfg.embed.model)
    folder = adapted_folder(cfg, study, adapter.digest(texts, labels))
    trained = not is_adapted(folder)
    if trained:
        adapter.fit(texts, labels).save(folder, {"study": study, "segments": len(segs),
                                                 "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    made = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    embedder = dataclasses.replace(Embedder.from_config(cfg.embed), model=str(folder))
    return AdaptedEncoder(folder, embedder, int(made.get("labelled_segments", 0)), len(made.get("themes", [])),
                          trained, float(made.get("seconds", 0.0)), int(made.get("steps", 0)), tuple(segs),
                          examples_per_theme(labels))


def embed_study(store: Store, encoder: AdaptedEncoder) -> tuple[int, float]:
    """Every segment of the study's latest run embedded by ``encoder`` (cached under its model id; only texts
    not yet cached are embedded): how many segments, and the seconds it took."""
    started = time.perf_counter()
    segment_vectors(store, None, list(encoder.segments), encoder.embedder.prepare())
    return len(encoder.segments), round(time.perf_counter() - started, 2)
