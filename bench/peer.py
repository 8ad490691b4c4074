"""BERTopic with its default settings: the reference peer (needs the ``bench`` extra).

Only two things differ from ``BERTopic()``: UMAP gets a ``random_state`` (Themesift's seed, so both
tools' reductions are reproducible; BERTopic's own UMAP parameters are kept: 15 neighbours,
5 components, min_dist 0, cosine), and the embeddings are passed in (quality runs: the very vectors
Themesift clusters) or computed by BERTopic itself from the same local model (speed runs).
HDBSCAN, c-TF-IDF and everything else are BERTopic's defaults (min_topic_size 10).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class PeerResult:
    """Topic of each document (-1 = outlier) and topics as BERTopic lists them (largest first)."""

    labels: np.ndarray
    ranking: list[int]
    names: dict[int, str]


def bertopic_model(seed: int, embedding_model=None):
    try:
        from bertopic import BERTopic
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SystemExit("BERTopic is not installed: pip install -e '.[bench]'") from exc
    from umap import UMAP

    umap_model = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", low_memory=False,
                      random_state=seed)
    return BERTopic(embedding_model=embedding_model, umap_model=umap_model)


def fit_bertopic(texts: Sequence[str], vectors: np.ndarray | None, seed: int, embedding_model=None) -> PeerResult:
    """Fit BERTopic; with ``vectors`` it clusters those, else it embeds with ``embedding_model``."""
    model = bertopic_model(seed, embedding_model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        topics, _ = model.fit_transform(list(texts), embeddings=vectors)
    info = model.get_topic_info()
    ranking = [int(t) for t in info["Topic"].tolist() if int(t) != -1]  # BERTopic orders topics by size
    names = {int(t): str(n) for t, n in zip(info["Topic"], info["Name"])}
    return PeerResult(np.asarray(topics, dtype=np.int64), ranking, names)
