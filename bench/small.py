"""Small studies (issue 24): random subsets of the labelled presets, Themesift beside BERTopic on the same vectors.

Each row is one preset at one size (segments drawn at random, or for the example study whole participants),
averaged over ``draws`` draws (draw ``d`` uses seed ``d`` for the subset and 42 for UMAP): mean best-match F1,
top-10 precision, the number of themes, and the share of human codes with at least ``MIN_CODE_SEGMENTS``
segments in the subset that some theme matches at F1 >= ``MATCH_F1`` (the issue's targets: F1 >= 1.2x
BERTopic's and at least half of those codes matched).

Two references beside the tools say how far the matched share could go on these vectors at all:

* **any cluster**: every node of a Ward tree over the subset's unit vectors counted as a theme (about twice
  as many candidate themes as segments, far more than any page could show): the share no clustering of
  these vectors can pass, whatever its settings;
* **supervised**: the learner ``themesift apply`` uses, trained 5-fold on the subset's own human codes
  (:func:`bench.learning.cross_validated_codes`), each code's F1 over the subset: what the codes' own
  labels teach, an upper reference for a method that never sees them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np

from bench.datasets import Corpus, load_preset
from bench.harness import embed_corpus, figures, run_bertopic, run_themesift
from bench.learning import cross_validated_codes
from pipeline.embed.encoder import Embedder
from pipeline.learn.apply import learner_matrix
from pipeline.themes.join import unit_vectors

MIN_CODE_SEGMENTS = 3
MATCH_F1 = 0.5
KEYS = ("mean_best_f1", "top10_precision", "n_themes", "matched_share")


def eligible_codes(corpus: Corpus) -> list[str]:
    """The codes with >= MIN_CODE_SEGMENTS segments: those the matched share counts."""
    counts = Counter(c for codes in corpus.human.values() for c in codes)
    return [c for c, n in counts.items() if n >= MIN_CODE_SEGMENTS]


def _share(best_f1: dict[str, float], corpus: Corpus) -> float:
    """Share of the codes with >= MIN_CODE_SEGMENTS segments whose ``best_f1`` reaches MATCH_F1."""
    codes = eligible_codes(corpus)
    return sum(best_f1.get(c, 0.0) >= MATCH_F1 for c in codes) / max(1, len(codes))


def matched_share(fig: dict, corpus: Corpus) -> float:
    """Share of the codes with >= MIN_CODE_SEGMENTS segments that some theme matches at F1 >= MATCH_F1."""
    return _share({r["code"]: r["best_f1"] for r in fig["per_code"]}, corpus)


def _f1(rows: np.ndarray, members: np.ndarray) -> float:
    """F1 of a theme (boolean ``rows``) against a code (boolean ``members``)."""
    tp = int((rows & members).sum())
    return 2 * tp / (int(rows.sum()) + int(members.sum())) if tp else 0.0


def any_cluster_share(vectors: np.ndarray, corpus: Corpus) -> float:
    """:func:`matched_share` with every node of a Ward tree over ``vectors`` (two segments or more, the
    root left out) as a theme: the "any cluster" reference of the module docstring."""
    from scipy.cluster.hierarchy import linkage, to_tree

    n = len(corpus.segments)
    if n < 3:
        return 0.0
    nodes, stack = [], [to_tree(linkage(unit_vectors(np.asarray(vectors, dtype=np.float64)), method="ward"))]
    while stack:  # every node below the root, without recursion
        node = stack.pop()
        if not node.is_leaf():
            stack += [node.left, node.right]
        if 2 <= node.count < n:
            rows = np.zeros(n, dtype=bool)
            rows[node.pre_order()] = True
            nodes.append(rows)
    best = {}
    for code in corpus.codes:
        members = np.array([code in corpus.human.get(u, ()) for u in range(n)])
        best[code] = max((_f1(rows, members) for rows in nodes), default=0.0)
    return _share(best, corpus)


def supervised_share(vectors: np.ndarray, corpus: Corpus, review_cfg: dict) -> float:
    """Share of the codes (as :func:`matched_share` counts them) that the learner trained 5-fold on the
    subset's own codes gives at F1 >= MATCH_F1: the "supervised" reference of the module docstring."""
    n = len(corpus.segments)
    human = {u: corpus.human.get(u, frozenset()) for u in range(n)}
    coded = cross_validated_codes(learner_matrix(vectors, corpus.texts, review_cfg), human, review_cfg)
    best = {}
    for code in corpus.codes:
        members = np.array([code in human[u] for u in range(n)])
        best[code] = _f1(np.array([code in coded[u] for u in range(n)]), members)
    return _share(best, corpus)


def ratio(row: dict) -> str:
    """A row's F1 ratio as the table shows it; "no BERTopic theme" where BERTopic found none to divide by."""
    return "no BERTopic theme" if row["f1_ratio"] is None else f"{row['f1_ratio']:.2f}x"


def f1_target_met(row: dict) -> bool:
    """F1 >= 1.2x BERTopic's; where BERTopic found no theme, any theme of Themesift's that matches a code."""
    return (row["themesift"]["mean_best_f1"] > 0 if row["f1_ratio"] is None else row["f1_ratio"] >= 1.2)


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
            n_units, n_codes, refs = [], [], {"any_cluster": [], "supervised": []}
            for d in range(draws):
                sub = draw(corpus, size, d, by_case)
                vectors, _, _ = embed_corpus(sub.texts, embedder)
                n_units.append(len(sub.segments))
                n_codes.append(len(eligible_codes(sub)))
                for name, run in (("themesift", run_themesift(sub, vectors, config, embedder)),
                                  ("bertopic", run_bertopic(sub, vectors, 42))):
                    fig = figures(run, sub)
                    per[name].append({**{k: fig[k] for k in KEYS[:3]}, "matched_share": matched_share(fig, sub)})
                refs["any_cluster"].append(any_cluster_share(vectors, sub))
                refs["supervised"].append(supervised_share(vectors, sub, config["review"]))
            row = {"preset": preset, "size": size, "by": "participants" if by_case else "segments",
                   "n_units": float(np.mean(n_units)), "codes_counted": float(np.mean(n_codes)), "draws": draws}
            for name, figs in per.items():
                row[name] = {k: float(np.mean([f[k] for f in figs])) for k in KEYS}
            row["matched_any_cluster"] = float(np.mean(refs["any_cluster"]))
            row["matched_supervised"] = float(np.mean(refs["supervised"]))
            theirs = row["bertopic"]["mean_best_f1"]  # 0: BERTopic found no theme in any draw; no ratio
            row["f1_ratio"] = row["themesift"]["mean_best_f1"] / theirs if theirs > 0 else None
            print(f"{preset:20s} {size:>4} {row['n_units']:>6.0f}  F1 {row['themesift']['mean_best_f1']:.3f} vs "
                  f"{row['bertopic']['mean_best_f1']:.3f} ({ratio(row)})  top10 "
                  f"{row['themesift']['top10_precision']:.2f}/{row['bertopic']['top10_precision']:.2f}  themes "
                  f"{row['themesift']['n_themes']:.1f}/{row['bertopic']['n_themes']:.1f}  matched "
                  f"{row['themesift']['matched_share']:.2f}/{row['bertopic']['matched_share']:.2f} of "
                  f"{row['codes_counted']:.1f} codes (any cluster "
                  f"{row['matched_any_cluster']:.2f}, supervised {row['matched_supervised']:.2f})", flush=True)
            rows.append(row)
    return {"kind": "small", "min_code_segments": MIN_CODE_SEGMENTS, "match_f1": MATCH_F1,
            "data": [c.name for c in corpora],
            "embedding": {"model_id": embedder.model_id, "backend": embedder.backend}, "rows": rows}
