"""Small studies (issue 24): random subsets of the labelled presets, Themesift beside BERTopic on the same vectors.

Each row is one preset at one size (segments drawn at random, or for the example study whole participants),
averaged over ``draws`` draws (draw ``d`` uses seed ``d`` for the subset and 42 for UMAP): mean best-match F1,
top-10 precision, the number of themes, and the share of human codes with at least ``MIN_CODE_SEGMENTS``
segments in the subset that some theme matches at F1 >= ``MATCH_F1`` (the issue's targets: F1 >= 1.2x
BERTopic's and at least half of those codes matched).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np

from bench.datasets import Corpus, load_preset
from bench.harness import embed_corpus, figures, run_bertopic, run_themesift
from pipeline.embed.encoder import Embedder

MIN_CODE_SEGMENTS = 3
MATCH_F1 = 0.5
KEYS = ("mean_best_f1", "top10_precision", "n_themes", "matched_share")


def matched_share(fig: dict, corpus: Corpus) -> float:
    """Share of the codes with >= MIN_CODE_SEGMENTS segments that some theme matches at F1 >= MATCH_F1."""
    counts = Counter(c for codes in corpus.human.values() for c in codes)
    best = {r["code"]: r["best_f1"] for r in fig["per_code"]}
    codes = [c for c, n in counts.items() if n >= MIN_CODE_SEGMENTS]
    return sum(best.get(c, 0.0) >= MATCH_F1 for c in codes) / max(1, len(codes))


def draw(corpus: Corpus, size: int, seed: int, by_case: bool) -> Corpus:
    """``size`` segments at random, or with ``by_case`` every segment of ``size`` participants at random."""
    rng = np.random.default_rng(seed)
    if by_case:
        cases = sorted({c for c in corpus.cases if c is not None})
        chosen = set(rng.choice(cases, size=size, replace=False).tolist())
        keep = [i for i, c in enumerate(corpus.cases) if c in chosen]
    else:
        keep = sorted(rng.choice(len(corpus.segments), size=size, replace=False).tolist())
    return corpus.subset(keep, f"{corpus.name} ({size}{' participants' if by_case else ''}, draw {seed})")


def small_studies(config: dict, presets: Sequence[str], sizes: Sequence[int], interviews: Sequence[int],
                  draws: int, corpora: Sequence[Corpus] = ()) -> dict[str, Any]:
    """Each row: ``draws`` random subsets of one size from a preset (the example study by whole participants,
    ``interviews`` of them; the CSV presets by ``sizes`` segments), or from each of ``corpora`` (labelled CSVs,
    by segments, instead of the presets), Themesift and BERTopic on the same vectors."""
    embedder = Embedder.from_config(config["embed"])
    rows = []
    sources = [(c.name, c) for c in corpora] or [(p, None) for p in presets]
    for preset, corpus in sources:
        if corpus is None:
            corpus = load_preset(preset, config)
        by_case = preset == "example-study"
        for size in (interviews if by_case else sizes):
            if size > len(corpus.segments):
                print(f"bench small: {preset} has {len(corpus.segments)} segments, fewer than {size}; row left out",
                      flush=True)
                continue
            per: dict[str, list[dict]] = {"themesift": [], "bertopic": []}
            n_units = []
            for d in range(draws):
                sub = draw(corpus, size, d, by_case)
                vectors, _, _ = embed_corpus(sub.texts, embedder)
                n_units.append(len(sub.segments))
                for name, run in (("themesift", run_themesift(sub, vectors, config, embedder)),
                                  ("bertopic", run_bertopic(sub, vectors, 42))):
                    fig = figures(run, sub)
                    per[name].append({**{k: fig[k] for k in KEYS[:3]}, "matched_share": matched_share(fig, sub)})
            row = {"preset": preset, "size": size, "by": "participants" if by_case else "segments",
                   "n_units": float(np.mean(n_units)), "draws": draws}
            for name, figs in per.items():
                row[name] = {k: float(np.mean([f[k] for f in figs])) for k in KEYS}
            row["f1_ratio"] = row["themesift"]["mean_best_f1"] / max(1e-9, row["bertopic"]["mean_best_f1"])
            print(f"{preset:20s} {size:>4} {row['n_units']:>6.0f}  F1 {row['themesift']['mean_best_f1']:.3f} vs "
                  f"{row['bertopic']['mean_best_f1']:.3f} ({row['f1_ratio']:.2f}x)  top10 "
                  f"{row['themesift']['top10_precision']:.2f}/{row['bertopic']['top10_precision']:.2f}  themes "
                  f"{row['themesift']['n_themes']:.1f}/{row['bertopic']['n_themes']:.1f}  matched "
                  f"{row['themesift']['matched_share']:.2f}/{row['bertopic']['matched_share']:.2f}", flush=True)
            rows.append(row)
    return {"kind": "small", "min_code_segments": MIN_CODE_SEGMENTS, "match_f1": MATCH_F1,
            "data": [c.name for c in corpora],
            "embedding": {"model_id": embedder.model_id, "backend": embedder.backend}, "rows": rows}
