"""Theme names against the names human coders gave (``python -m bench names``).

For each theme a coder could confirm (purity >= 0.6: at least 60% of its units carry one human code,
its *majority code*), the theme's name and every human code name are embedded with the study's encoder;
the name scores a hit@1 when its majority code is the nearest code name (cosine) and a hit@3 when it is
among the three nearest. Three namings are scored in one run, on the same vectors and UMAP seeds:

* ``name``: Themesift's name (:mod:`pipeline.themes.name`), on Themesift's themes;
* ``keyword_label``: the label Themesift gave before, two keyphrases joined by " / ", on the same themes;
* ``bertopic``: BERTopic's default topic name (its four top c-TF-IDF words joined by "_", as
  ``get_topic_info()["Name"]`` gives them, without the topic number), on BERTopic's own themes;
* ``extractive_name``: only when ``--config`` turns on the local generative model namer
  (``describe.name.model``, :mod:`pipeline.themes.model_name`): then ``name`` is the model's and this is
  the extractive name it replaced, on the same themes; the model and prompt are in ``name_model``.

Code names and machine names are compared with underscores read as spaces ("card_arrival" is
"card arrival"), the same for every naming. Figures are averaged over the seeds.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from bench.datasets import Corpus
from bench.harness import MethodRun, embed_corpus, run_bertopic, run_themesift
from pipeline.compare.agreement import theme_quality
from pipeline.embed.encoder import Embedder

MIN_PURITY = 0.6
TABLE_ROWS = 15
NAMINGS = ("name", "keyword_label", "bertopic")


def readable(name: str) -> str:
    """A name as it is embedded: BERTopic's topic number dropped, underscores read as spaces."""
    return " ".join(re.sub(r"^-?\d+_", "", name).replace("_", " ").split())


def nearest_rank(name_vector: np.ndarray, code_vectors: np.ndarray, truth: int) -> int:
    """0-based place of code ``truth`` among the codes ordered by cosine to the name (ties: code order)."""
    sims = code_vectors @ name_vector
    order = np.lexsort((np.arange(len(sims)), -sims))
    return int(np.flatnonzero(order == truth)[0])


def score_names(names: dict[str, str], run: MethodRun, corpus: Corpus, codes: Sequence[str],
                code_vectors: np.ndarray, embedder: Embedder) -> dict[str, Any]:
    """hit@1 and hit@3 of ``names`` (theme key -> name) over ``run``'s themes with purity >= MIN_PURITY."""
    quality = theme_quality(run.partition, corpus.human, corpus.units)
    usable = [t for t in run.ranking if t in quality and quality[t].purity >= MIN_PURITY]
    if not usable:
        return {"n_usable": 0, "hit1": 0.0, "hit3": 0.0}
    vectors = embedder.encode([readable(names[t]) for t in usable])
    ranks = [nearest_rank(v, code_vectors, codes.index(quality[t].purity_code)) for t, v in zip(usable, vectors)]
    return {"n_usable": len(usable), "hit1": float(np.mean([r == 0 for r in ranks])),
            "hit3": float(np.mean([r < 3 for r in ranks]))}


def theme_table(run: MethodRun, corpus: Corpus, rows: int = TABLE_ROWS) -> list[dict[str, Any]]:
    """The first ``rows`` ranked themes: old label, name, description, majority code and its share."""
    quality = theme_quality(run.partition, corpus.human, corpus.units)
    out = []
    for t in run.ranking[:rows]:
        q = quality.get(t)
        out.append({"rank": len(out) + 1, "keyword_label": run.details[t]["keyword_label"], "name": run.names[t],
                    "description": run.details[t]["description"], "human_code": q.purity_code if q else None,
                    "purity": round(q.purity, 3) if q else 0.0}
                   | ({"extractive_name": run.details[t]["extractive_name"]} if run.name_model else {}))
    return out


def names_benchmark(corpus: Corpus, config: dict, seeds: Sequence[int] = (42,), peer: bool = True) -> dict[str, Any]:
    embedder = Embedder.from_config(config["embed"])
    vectors, _, cached = embed_corpus(corpus.texts, embedder)
    codes = sorted(corpus.codes)
    code_vectors = embedder.encode([readable(c) for c in codes])
    per_seed: dict[str, list[dict]] = {n: [] for n in NAMINGS if peer or n != "bertopic"}
    table: list[dict] = []
    name_model = None
    for seed in seeds:
        seeded = {**config, "cluster": {**config["cluster"], "seed": int(seed)}}
        ours = run_themesift(corpus, vectors, seeded, embedder)
        per_seed["name"].append(score_names(ours.names, ours, corpus, codes, code_vectors, embedder))
        old = {t: d["keyword_label"] for t, d in ours.details.items()}
        per_seed["keyword_label"].append(score_names(old, ours, corpus, codes, code_vectors, embedder))
        if ours.name_model is not None:
            extractive = {t: d["extractive_name"] for t, d in ours.details.items()}
            per_seed.setdefault("extractive_name", []).append(
                score_names(extractive, ours, corpus, codes, code_vectors, embedder))
            name_model = ours.name_model
        if peer:
            theirs = run_bertopic(corpus, vectors, int(seed))
            per_seed["bertopic"].append(score_names(theirs.names, theirs, corpus, codes, code_vectors, embedder))
        if not table:
            table = theme_table(ours, corpus)
    methods = {n: {k: float(np.mean([r[k] for r in runs])) for k in ("hit1", "hit3", "n_usable")}
               | {"per_seed": runs} for n, runs in per_seed.items()}
    if peer and methods["bertopic"]["hit1"] > 0:
        methods["name"]["hit1_vs_bertopic"] = methods["name"]["hit1"] / methods["bertopic"]["hit1"]
    return {
        "kind": "names",
        "seeds": [int(s) for s in seeds],
        "dataset": corpus.name,
        "source": corpus.source,
        "notes": corpus.notes,
        "n_units": len(corpus.segments),
        "n_codes": len(codes),
        "min_purity": MIN_PURITY,
        "embedding": {"model_id": embedder.model_id, "backend": embedder.backend, "from_bench_cache": cached},
        "name_settings": config["describe"]["name"],
        "name_model": name_model,
        "methods": methods,
        "table": table,
    }
