"""Quality against human codes: Themesift's own stages and BERTopic on the same embeddings.

Both methods cluster the same units (the corpus's clusterable segments) from the same vectors.
Themesift runs its pipeline stages with the given configuration exactly as the suggest flow's tasks do
(UMAP + HDBSCAN, stability resamples, describe, rank, outliers joining their theme, assemble); BERTopic
runs with its defaults and the same UMAP seed. Figures come from :mod:`pipeline.compare.agreement`:

* ARI / NMI with outliers as one group of their own (``*_all``) and on assigned units only
  (``*_assigned``, with ``coverage`` = share of units assigned). Multi-label units use their first code.
* Per human code the best-matching theme's segment-overlap F1; its mean; the share of codes recovered
  (best F1 >= 0.5).
* Precision of the top-5 / top-10 ranked suggestions (Themesift: its rank; BERTopic: its topic order,
  largest first): usable when >= 60% of the theme's units carry one human code; strict when also its
  best-matching code has F1 >= 0.5.
* Number of themes and the share of units left as outliers.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.datasets import Corpus
from pipeline.compare.agreement import cluster_scores, theme_quality, top_k_precision
from pipeline.embed.encoder import Embedder, text_hash
from pipeline.themes.assemble import SecondPass, assemble, cluster_left_out, score_passes
from pipeline.themes.cluster import OUTLIER, ThemeClusterer
from pipeline.themes.describe import ThemeDescriber, make_label
from pipeline.themes.join import JoinRule, join_outliers
from pipeline.themes.model_name import ModelNamer

ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Where embeddings of benchmark corpora are kept (THEMESIFT_BENCH_CACHE, else themesift-work/bench-cache)."""
    return Path(os.environ.get("THEMESIFT_BENCH_CACHE") or ROOT / "themesift-work" / "bench-cache")


@dataclass
class MethodRun:
    """One method's output on a corpus, in the form the figures need."""

    method: str
    partition: dict[int, str | None]
    ranking: list[str]
    names: dict[str, str]
    seconds: float
    #: Per theme: its keywords, description, keyword-pair label and extractive name (Themesift only; for
    #: ``bench names``).
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The local generative model that named the themes, as the run manifest records it; None: extractive.
    name_model: dict[str, Any] | None = None


def theme_key(rank: int) -> str:
    return f"T{rank:04d}"


def embed_corpus(texts: list[str], embedder: Embedder, cache: Path | None = None) -> tuple[np.ndarray, float, bool]:
    """Vectors for ``texts`` (cached on disk by model id, backend and texts); seconds spent; whether cached.

    The backend is part of the key although fp32 ONNX and sentence-transformers share a model id (their
    vectors differ by about 1e-7): a result must be made with the vectors of the backend it names."""
    cache = cache or cache_dir()
    digest = hashlib.sha256(f"{embedder.model_id}|{embedder.backend}".encode())
    for t in texts:
        digest.update(text_hash(t).encode())
    path = cache / f"{digest.hexdigest()[:24]}.npy"
    if path.is_file():
        return np.load(path), 0.0, True
    t0 = time.perf_counter()
    vectors = embedder.encode(texts)
    seconds = time.perf_counter() - t0
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors, seconds, False


def run_themesift(corpus: Corpus, vectors: np.ndarray, config: dict, embedder: Embedder) -> MethodRun:
    """The suggest flow's cluster, describe, rank and assemble stages (as its tasks call them)."""
    t0 = time.perf_counter()
    texts, cases = corpus.texts, corpus.cases
    clusterer = ThemeClusterer.from_config(config["cluster"], len(vectors)).fit(vectors)
    st = config["rank"]["stability"]
    stability = clusterer.stability(st["n_resamples"], st["sample_fraction"], st["found_again_jaccard"])
    rows = range(len(vectors))
    joined = join_outliers(vectors, clusterer.labels_, rows, sorted(set(clusterer.labels_.tolist()) - {OUTLIER}),
                           JoinRule.from_config(config["cluster"]["join_outliers"]))
    labels, strengths, more, second = cluster_left_out(clusterer, clusterer.labels_, clusterer.probabilities_, rows,
                                                       joined, SecondPass.from_config(config["cluster"]["second_pass"]), st)
    describer = ThemeDescriber.from_config(config["describe"], embedder.encode)
    descriptions = describer.describe(texts, labels, vectors, cases, strengths)
    extractive = {d.theme: d.label for d in descriptions}
    namer = ModelNamer.from_config(config["describe"]["name"]["model"])
    renamed = namer.rename(descriptions, texts) if namer.enabled else None
    if renamed is not None:
        descriptions = renamed.descriptions
        if renamed.warning:
            print(f"bench: {renamed.warning}")
    scores = score_passes(descriptions, vectors, labels, cases, {**stability, **more}, config["rank"]["weights"],
                          st["n_resamples"], second)
    suggestions = assemble(corpus.units, labels, vectors, descriptions, scores,
                           config["cluster"]["outlier_suggestion_min_similarity"], joined, second,
                           clusterer.split_from_)
    partition: dict[int, str | None] = {u: None for u in corpus.units}
    for theme in suggestions.themes:
        for m in theme.members:
            partition[m] = theme_key(theme.rank)
    ranking = [theme_key(t.rank) for t in suggestions.themes]
    names = {theme_key(t.rank): t.label for t in suggestions.themes}
    details = {theme_key(t.rank): {"description": t.description, "keywords": list(t.keywords),
                                   "keyword_label": make_label(t.keywords, describer.label_keyphrases),
                                   "extractive_name": extractive[t.cluster]}
               for t in suggestions.themes}
    return MethodRun("themesift", partition, ranking, names, time.perf_counter() - t0, details,
                     renamed.record if renamed is not None else None)


def run_bertopic(corpus: Corpus, vectors: np.ndarray, seed: int) -> MethodRun:
    from bench.peer import fit_bertopic

    t0 = time.perf_counter()
    result = fit_bertopic(corpus.texts, vectors, seed)
    order = {t: r for r, t in enumerate(result.ranking, start=1)}
    partition = {u: (theme_key(order[int(t)]) if int(t) != OUTLIER else None) for u, t in zip(corpus.units, result.labels)}
    ranking = [theme_key(order[t]) for t in result.ranking]
    names = {theme_key(order[t]): result.names[t] for t in result.ranking}
    return MethodRun("bertopic", partition, ranking, names, time.perf_counter() - t0)


def figures(run: MethodRun, corpus: Corpus) -> dict[str, Any]:
    """Every quality figure of one method on one corpus (see the module docstring)."""
    units = corpus.units
    scores = cluster_scores(run.partition, corpus.human, units)
    tops = {k: top_k_precision(run.partition, corpus.human, units, k, run.ranking) for k in (5, 10)}
    quality = theme_quality(run.partition, corpus.human, units)
    return {
        "n_units": scores.n_units,
        "n_themes": len(run.ranking),
        "outlier_share": 1 - scores.coverage,
        "coverage": scores.coverage,
        "ari_all": scores.ari_all,
        "nmi_all": scores.nmi_all,
        "ari_assigned": scores.ari_assigned,
        "nmi_assigned": scores.nmi_assigned,
        "mean_best_f1": scores.mean_best_f1,
        "recovered_share": scores.recovered_share,
        **{f"top{k}_precision": t.precision for k, t in tops.items()},
        **{f"top{k}_strict_precision": t.strict_precision for k, t in tops.items()},
        "seconds": round(run.seconds, 2),
        "per_code": [{"code": r.code, "best_theme": run.names.get(r.theme) if r.theme else None,
                      "best_f1": round(r.f1, 4)} for r in scores.recovery],
        "top10": [{"rank": i + 1, "label": run.names[t], "size": quality[t].size,
                   "purity": round(quality[t].purity, 3), "purity_code": quality[t].purity_code,
                   "best_code": quality[t].best_code, "best_f1": round(quality[t].best_f1, 3)}
                  for i, t in enumerate(run.ranking[:10]) if t in quality],
    }


def averaged(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures of several seeds in one: numbers averaged, with each seed's value under ``per_seed``;
    the per-code and top-10 tables are the first seed's."""
    out = dict(runs[0])
    numeric = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for key in numeric:
        out[key] = float(np.mean([r[key] for r in runs]))
    out["per_seed"] = {key: [r[key] for r in runs] for key in numeric}
    return out


def quality(corpus: Corpus, config: dict, peer: bool = True, seeds: tuple[int, ...] = (42,)) -> dict[str, Any]:
    """Embed once, run both methods on the same vectors with each of ``seeds`` (the UMAP seed, the same
    for both), return the figures averaged over the seeds (without the header).

    UMAP's layout moves with its seed, and figures such as mean best-match F1 move by a few hundredths
    with it, for either tool: one seed can decide a close comparison by chance; the mean of several
    cannot as easily."""
    embedder = Embedder.from_config(config["embed"])
    vectors, embed_seconds, cached = embed_corpus(corpus.texts, embedder)
    runs: dict[str, list[dict]] = {"themesift": [], "bertopic": []} if peer else {"themesift": []}
    for seed in seeds:
        seeded = {**config, "cluster": {**config["cluster"], "seed": int(seed)}}
        runs["themesift"].append(figures(run_themesift(corpus, vectors, seeded, embedder), corpus))
        if peer:
            runs["bertopic"].append(figures(run_bertopic(corpus, vectors, int(seed)), corpus))
    methods = {name: averaged(r) for name, r in runs.items()}
    return {
        "seeds": [int(s) for s in seeds],
        "kind": "quality",
        "dataset": corpus.name,
        "source": corpus.source,
        "notes": corpus.notes,
        "n_units": len(corpus.segments),
        "n_codes": len(corpus.codes),
        "n_coded_units": len(corpus.human),
        "embedding": {"model_id": embedder.model_id, "backend": embedder.backend,
                      "seconds": round(embed_seconds, 2), "from_bench_cache": cached},
        "methods": methods,
    }


def _finite(value: Any) -> Any:
    """``value`` with NaN floats as None: JSON has no NaN (Python writes one other readers refuse)."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(result: dict, out_dir: Path, stem: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.json"
    path.write_text(json.dumps(_finite(result), indent=2, ensure_ascii=False, default=float) + "\n",
                    encoding="utf-8")
    return path
