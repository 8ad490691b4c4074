"""A word view of a study's segments for the learner: latent semantic analysis of their word TF-IDF.

Why: a sentence encoder places short answers that share a meaning close together even where coders
tell them apart by the words used ("nothing to improve" against "everything was good"), and the frozen
encoder caps what any number of decisions can teach (the learner's ceiling, ``python -m bench review``).
Words and word pairs weighed by TF-IDF, reduced to a few hundred components (LSA) fitted on the study
itself, give the regressions a second view beside the vectors: measured, it raises the ceiling and the
learning curves (docs/benchmark-history.md). The view is fitted on the texts it is given each time, so
it needs nothing stored, and the same texts give the same view (a fixed seed).

Usable alone: ``WordView(components=200).fit_transform(texts)`` gives one unit row per text (zeros where
a text has no word shared with another); :func:`with_words` appends it to the vectors.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pipeline.themes.join import unit_vectors


class WordView:
    """``fit_transform(texts)``: ``(len(texts), k)`` unit rows, ``k <= components``.

    ``components``: LSA components kept; ``min_df``: a word (or word pair) must occur in this many texts;
    ``seed`` fixes the randomised SVD. Fitted: ``vocabulary_size_`` (0 where no word occurs often enough)."""

    def __init__(self, components: int = 200, min_df: int = 2, seed: int = 0):
        self.components = components
        self.min_df = min_df
        self.seed = seed

    def fit_transform(self, texts: Sequence[str]) -> np.ndarray:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [t or "" for t in texts]
        tfidf = TfidfVectorizer(sublinear_tf=True, min_df=min(self.min_df, max(1, len(texts))), ngram_range=(1, 2))
        try:
            T = tfidf.fit_transform(texts)
        except ValueError:  # no word occurs often enough (a tiny or empty study): no view
            self.vocabulary_size_ = 0
            return np.zeros((len(texts), 0))
        self.vocabulary_size_ = T.shape[1]
        k = min(self.components, T.shape[1] - 1, len(texts) - 1)
        if k < 1:
            return np.zeros((len(texts), 0))
        L = TruncatedSVD(k, random_state=self.seed).fit_transform(T)
        return unit_vectors(L) * (np.linalg.norm(L, axis=1, keepdims=True) > 1e-12)


def with_words(vectors: np.ndarray, texts: Sequence[str] | None, weight: float, components: int = 200,
               seed: int = 0) -> np.ndarray:
    """The vectors as unit rows with :class:`WordView` of ``texts`` appended at ``weight`` (one row per
    text, in the same order); the vectors unchanged where ``weight`` is 0 or no texts are given."""
    if not weight or texts is None:
        return vectors
    if len(texts) != len(vectors):
        raise ValueError(f"{len(texts)} texts for {len(vectors)} vectors")
    view = WordView(components, seed=seed).fit_transform(texts)
    return np.hstack([unit_vectors(np.asarray(vectors, dtype=np.float64)), float(weight) * view])
