"""Describe: keyphrases and labels without inflected repeats."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.themes.describe import ThemeDescriber, make_label, same_word


@pytest.mark.parametrize("a, b, same", [
    ("look", "looked", True), ("looks", "looked", True), ("nurse", "nurses", True), ("case", "cases", True),
    ("happier", "happy", True), ("happily", "happy", True), ("tried", "try", True), ("families", "family", True),
    ("ward", "staff", False), ("care", "caring", False), ("bed", "bedding", False), ("use", "user", False),
    ("taxi", "taxes", False),
])
def test_same_word_sees_inflections_only(a, b, same):
    assert same_word(a, b) is same and same_word(b, a) is same


def test_label_skips_a_phrase_repeating_a_chosen_word():
    assert make_label(["nurses", "nurse care", "ward staff"]) == "nurse care / ward staff"


def test_keyphrases_never_glue_a_word_to_its_own_inflection():
    texts = ["I was looked after and they look after everyone", "they look after you and looked after me well",
             "staff look after patients, looked after well"] * 4 + ["the car park was full", "parking cost a lot",
                                                                      "no car parking spaces at all"] * 4
    labels = np.array([0] * 12 + [1] * 12)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(24, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    described = ThemeDescriber(ngram_range=(1, 2)).describe(texts, labels, vectors, [str(i) for i in range(24)],
                                                            np.ones(24))
    for d in described:
        for phrase in d.keywords:
            words = phrase.split()
            assert not any(same_word(a, b) for i, a in enumerate(words) for b in words[i + 1:]), phrase
    assert any("look" in k for k in described[0].keywords) and any("car" in k or "parking" in k
                                                                    for k in described[1].keywords)
