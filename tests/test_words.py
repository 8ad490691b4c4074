"""The word view: LSA of word TF-IDF beside the vectors, so the learner can tell apart what only the words do.

Real parts: scikit-learn's TF-IDF, truncated SVD and logistic regression.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.learn.learner import CodeLearner, ThemeLabels
from pipeline.learn.words import WordView, with_words

PARKING = ["parking was expensive", "parking charges too high", "no parking spaces left", "parking costs a lot",
           "paid for parking twice", "the parking meter took my money"]
FOOD = ["the food was cold", "cold food again at lunch", "food arrived late and cold", "the food tasted bland",
        "hospital food needs work", "the food menu lacked choice"]


def test_texts_sharing_words_are_close_in_the_view_and_the_view_is_the_same_each_time():
    texts = PARKING + FOOD
    view = WordView(components=5).fit_transform(texts)
    assert view.shape == (12, 5)
    assert np.allclose(np.linalg.norm(view, axis=1), 1.0)
    within = (view[:6] @ view[:6].T)[np.triu_indices(6, 1)].mean()
    across = (view[:6] @ view[6:].T).mean()
    assert within > across + 0.3
    assert np.array_equal(view, WordView(components=5).fit_transform(texts))


def test_a_study_too_small_for_words_gets_no_view_and_weight_zero_keeps_the_vectors():
    assert WordView().fit_transform(["one", "two"]).shape == (2, 0)  # no word in two texts
    assert WordView().fit_transform([]).shape == (0, 0)
    X = np.arange(6, dtype=float).reshape(3, 2)
    assert with_words(X, ["a b", "b c", "c d"], 0.0) is X
    assert with_words(X, None, 1.0) is X
    with pytest.raises(ValueError, match="2 texts for 3 vectors"):
        with_words(X, ["a", "b"], 1.0)


def test_the_learner_tells_apart_by_their_words_segments_whose_vectors_are_alike():
    rng = np.random.default_rng(0)
    texts = PARKING + FOOD
    vectors = np.tile(rng.standard_normal(8), (12, 1)) + 1e-3 * rng.standard_normal((12, 8))  # one point
    labels = {"parking": ThemeLabels((0, 1, 2), (6, 7, 8)), "food": ThemeLabels((6, 7, 8), (0, 1, 2))}
    alone = CodeLearner(unlabelled_weight=0.0).fit(vectors, labels)
    gap_alone = alone.predict_proba(vectors) @ np.array([1.0, -1.0])  # parking minus food
    X = with_words(vectors, texts, 1.0, components=5)
    both = CodeLearner(unlabelled_weight=0.0).fit(X, labels)
    gap = both.predict_proba(X) @ np.array([1.0, -1.0])
    assert (gap[3:6] > 0.1).all() and (gap[9:] < -0.1).all(), gap  # rows never labelled, told apart by words
    assert np.abs(gap_alone).max() < 0.1  # the vectors alone cannot say
