"""What adapting the encoder to the coders buys, and what it costs (``python -m bench adapt``; issue 20, item 4).

For each number of labelled segments and each draw: that many random segments with their human codes (the
"random labels" baseline of :mod:`bench.learning`: a segment's codes are its positives, every other code
its negatives), then :class:`pipeline.learn.learner.CodeLearner` trained on those labels

* on the **frozen** vectors (the packaged model, as ``themesift apply`` codes by default), and
* on the **adapted** vectors: :class:`pipeline.learn.adapt.EncoderAdapter` trained on the same labelled
  segments only (``review.adapt_*`` settings, ``--epochs`` for several numbers of passes), saved, and the whole
  corpus embedded again with it through the configured backend (the ONNX default exports the adapted model
  first, as ``themesift adapt`` does; that export counts as re-embedding time).

Scored as :mod:`bench.learning` scores: per human code, Cohen's kappa of "the machine gave this code" against
"a human gave it" on the segments not labelled, macro over the human codes they carry. Training and re-embedding are
timed (seconds; the machine's load at the start is in the result's header).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.datasets import Corpus
from bench.harness import embed_corpus
from bench.coder import mean_kappa
from pipeline.embed.encoder import Embedder
from pipeline.learn.adapt import EncoderAdapter
from pipeline.learn.learner import CodeLearner, theme_labels

SIZES = (100, 200, 400)


def _kappa(human: dict[int, frozenset[str]], X: np.ndarray, labels, units: list[int],
           review_cfg: dict) -> float:
    model = CodeLearner.from_config(review_cfg).fit(X, labels)
    coded = dict(zip(units, model.predict(X[units])))
    return mean_kappa(coded, human, units)


def adapt_benchmark(corpus: Corpus, config: dict, sizes: tuple[int, ...] = SIZES, draws: int = 2,
                    epochs: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Kappa on frozen and adapted vectors at each number of labelled segments (``sizes``), ``draws`` random
    draws each (draw ``d`` seeds the labelled segments and the adapter), for each number of passes in ``epochs``
    (default: ``review.adapt_epochs``); with the seconds of training and of re-embedding."""
    review = config["review"]
    epochs = tuple(epochs or (int(review["adapt_epochs"]),))
    embedder = Embedder.from_config({**config["embed"], "progress_min_texts": 10**9})
    frozen, _, _ = embed_corpus(corpus.texts, embedder)
    X = np.asarray(frozen, dtype=np.float64)
    n, texts, codes = len(X), corpus.texts, corpus.codes
    human = {u: corpus.human.get(u, frozenset()) for u in corpus.units}
    work = Path(tempfile.mkdtemp(prefix="themesift-bench-adapt-"))
    rows = []
    t0 = time.perf_counter()
    try:
        for size in (s for s in sizes if s <= n - n // 5):  # a fifth at least left to score
            for draw in range(draws):
                rng = np.random.default_rng(draw)
                train = sorted(rng.choice(n, size, replace=False).tolist())
                units = sorted(set(range(n)) - set(train))
                labels = theme_labels({c: [u for u in train if c in human[u]] for c in codes},
                                      {c: [u for u in train if c not in human[u]] for c in codes})
                row = {"labelled": size, "draw": draw, "codes_labelled": len(labels),
                       "frozen": _kappa(human, X, labels, units, review), "adapted": {}}
                for n_epochs in epochs:
                    adapter = EncoderAdapter.from_config({**review, "adapt_epochs": n_epochs, "adapt_seed": draw},
                                                         config["embed"]["model"])
                    adapter.fit(texts, labels)
                    folder = adapter.save(work / f"adapted-{adapter.digest_}")
                    started = time.perf_counter()
                    tuned = dataclasses.replace(embedder, model=str(folder), onnx_cache_dir=str(work / "onnx"))
                    vectors = np.asarray(tuned.encode(texts), dtype=np.float64)
                    embed_s = time.perf_counter() - started
                    row["adapted"][str(n_epochs)] = {
                        "kappa": _kappa(human, vectors, labels, units, review), "steps": adapter.steps_,
                        "train_seconds": adapter.seconds_, "embed_seconds": round(embed_s, 2),
                        "first_loss": adapter.losses_[0], "last_loss": adapter.losses_[-1]}
                    shutil.rmtree(folder, ignore_errors=True)
                    shutil.rmtree(work / "onnx", ignore_errors=True)
                rows.append(row)
                print(f"adapt {corpus.name} labelled={size} draw={draw}: frozen {row['frozen']:.3f}, " + ", ".join(
                    f"{k} epochs {v['kappa']:.3f} ({v['train_seconds']:.0f} s + {v['embed_seconds']:.0f} s)"
                    for k, v in row["adapted"].items()), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    points = []
    for size in sorted({r["labelled"] for r in rows}):
        mine = [r for r in rows if r["labelled"] == size]
        point = {"labelled": size, "frozen": float(np.mean([r["frozen"] for r in mine])),
                 "frozen_per_draw": [r["frozen"] for r in mine]}
        for k in map(str, epochs):
            point[f"adapted_{k}"] = float(np.mean([r["adapted"][k]["kappa"] for r in mine]))
            point[f"adapted_{k}_per_draw"] = [r["adapted"][k]["kappa"] for r in mine]
            point[f"train_seconds_{k}"] = float(np.mean([r["adapted"][k]["train_seconds"] for r in mine]))
            point[f"embed_seconds_{k}"] = float(np.mean([r["adapted"][k]["embed_seconds"] for r in mine]))
        points.append(point)
    settings = {k: review[k] for k in ("adapt_batch_size", "adapt_max_steps", "adapt_learning_rate",
                                      "adapt_head_learning_rate")}
    return {"kind": "adapt", "dataset": corpus.name, "n_units": n, "n_codes": len(codes), "draws": draws,
            "epochs": list(epochs), "settings": settings, "points": points, "rows": rows,
            "seconds": round(time.perf_counter() - t0, 1),
            "embedding": {"model_id": embedder.model_id, "backend": embedder.backend}}
