"""Theme names and descriptions (pipeline/themes/name.py) with the packaged all-MiniLM-L6-v2."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from pipeline.embed.encoder import Embedder
from pipeline.themes.describe import ThemeDescriber, centroids
from pipeline.themes.name import PhraseCounter, ThemeNamer, lemma

CARE = [
    "The nurses looked after my mother so well on the ward.",
    "They look after you properly, the nurses were kind and patient.",
    "Staff looked after me at night when I could not sleep.",
    "I felt looked after by every nurse on the ward.",
    "The night nurses look after everyone with real kindness.",
    "My father was looked after with dignity by the ward staff.",
]
WAITING = [
    "The waiting times for therapy were far too long, nearly six months.",
    "We waited months on the waiting list before the first therapy session.",
    "Long waiting times for therapy made my anxiety worse.",
    "The waiting list for therapy is a disgrace. I gave up in the end.",
    "Waiting times for therapy should be shorter for young people.",
    "After a long wait on the waiting list I finally got therapy.",
]
PARKING = [
    "Car parking at the hospital costs far too much.",
    "There were no car parking spaces left, so I was late.",
    "Car parking is expensive and the machines never work.",
    "Finding car parking took longer than the appointment.",
    "The car parking charges for visitors are unfair.",
    "Car parking was full and I drove round for half an hour.",
]
TEXTS = CARE + WAITING + PARKING
LABELS = np.array([0] * 6 + [1] * 6 + [2] * 6)
CASES = [f"P{i % 5 + 1:02d}" for i in range(len(TEXTS))]
STOP = frozenset(ENGLISH_STOP_WORDS)


@pytest.fixture(scope="module")
def encoder(cfg):
    return Embedder.from_config(cfg["embed"]).encode


def _name(encoder, **settings):
    vectors = encoder(TEXTS)
    themes = [0, 1, 2]
    cents = centroids(vectors, LABELS, themes)
    centrality = {t: vectors[LABELS == t] @ c for t, c in zip(themes, cents)}
    return ThemeNamer.from_config(settings, encoder).name(TEXTS, LABELS, themes, cents, centrality, CASES, STOP)


def test_inflections_are_one_candidate():
    counter = PhraseCounter(STOP, 4)
    looked = counter.phrases("nurses looked after patients")
    looks = counter.phrases("the nurse looks after patients")
    assert {"nurse look after patient", "look after patient"} <= set(looked) & set(looks)
    assert counter.surface("nurse look after patient") in ("nurses looked after patients", "nurse looks after patients")
    assert lemma("looked") == lemma("look") == "look" and lemma("families") == "family"
    assert lemma("waiting") == lemma("waits") == "wait"


def test_a_name_keeps_the_case_members_write_a_word_in():
    """"nhs" reads as NHS and "natasha" as Natasha; a sentence's first word and a text in capitals say nothing
    about how a word is spelled."""
    counter = PhraseCounter(STOP, 4)
    for text in ("The NHS app works well.", "nhs app is slow", "I use the NHS app daily.", "Natasha was kind.",
                 "thanks to Natasha for her help", "STAFF WERE GREAT", "STAFF WERE GREAT", "Staff were kind"):
        counter.phrases(text)
    assert counter.written("nhs app") == "NHS app"
    assert counter.written("natasha") == "Natasha"
    assert counter.written("staff") == "staff"  # shouted or first in a sentence: no evidence for "Staff"


def test_a_light_verb_or_a_vague_noun_never_ends_a_phrase():
    """"pwp doing", "say", "get seen" and "thing" name nothing; a phrase may begin on a light verb ("getting
    my medication"), and "feelings" is a name in its own right."""
    counter = PhraseCounter(STOP, 4)
    keys = set(counter.phrases("what the pwp was doing; you have a say; waiting times to get seen"))
    keys |= set(counter.phrases("feelings about discharge; the whole thing; the kind of support; getting my medication"))
    light = {"do", "doing", "say", "see", "seen", "get", "thing", "kind"}
    assert not {k for k in keys if k.split()[-1] in light}
    assert "pwp" in keys and "wait time" in keys and "feeling about discharge" in keys and "support" in keys
    assert "get my medication" in keys
    assert {"wait time to get see", "time to get see"}.isdisjoint(keys)


def test_names_say_what_the_theme_is_about_and_never_repeat_a_lemma(encoder):
    names = _name(encoder, phrases=3)
    assert "therapy" in names[1].name and ("waiting" in names[1].name or "wait" in names[1].name)
    assert "parking" in names[2].name
    for n in names.values():
        lemmas = [{lemma(w) for w in p.split()} - STOP for p in n.phrases]
        assert all(not (a & b) for i, a in enumerate(lemmas) for b in lemmas[i + 1:]), n.phrases
        assert n.name == " and ".join(n.phrases)
        members = " ".join(TEXTS).lower()
        assert all(p.lower() in members for p in n.phrases)  # extractive: the members' own words


def test_two_themes_never_share_a_name_and_the_larger_keeps_it(encoder):
    """The car-parking comments split in two: both would be "car parking"; the smaller theme gets another name."""
    labels = np.concatenate([LABELS[:12], [2, 2, 2, 2, 3, 3]])
    vectors = encoder(TEXTS)
    cents = centroids(vectors, labels, [0, 1, 2, 3])
    centrality = {t: vectors[labels == t] @ c for t, c in zip([0, 1, 2, 3], cents)}
    names = ThemeNamer(encoder=encoder).name(TEXTS, labels, [0, 1, 2, 3], cents, centrality, CASES, STOP)
    assert list(names) == [0, 1, 2, 3]
    assert names[2].name == "car parking" and names[3].name and names[3].name != names[2].name
    assert len({n.name.lower() for n in names.values()}) == 4


def test_names_are_deterministic(encoder):
    assert _name(encoder) == _name(encoder)


def test_the_description_is_a_members_sentence_with_the_participant(encoder):
    for t, n in _name(encoder).items():
        assert n.description_member is not None and LABELS[n.description_member] == t
        sentence = n.description.split("\u201d")[0].lstrip("\u201c")
        assert sentence and sentence in TEXTS[n.description_member]
        assert n.description.endswith(f"({CASES[n.description_member]})") and n.description_case == CASES[n.description_member]


def test_the_describer_labels_themes_by_name_or_by_keywords(encoder):
    vectors = encoder(TEXTS)
    named = ThemeDescriber.from_config({}, encoder).describe(TEXTS, LABELS, vectors, CASES, np.ones(len(TEXTS)))
    old = ThemeDescriber.from_config({"name": {"method": "keywords"}}, encoder).describe(
        TEXTS, LABELS, vectors, CASES, np.ones(len(TEXTS)))
    assert all(" / " not in d.label and d.description for d in named)
    assert [d.keywords for d in named] == [d.keywords for d in old]  # the keywords stay as they were
    assert all(d.description == "" for d in old) and any(" / " in d.label for d in old)
    # the first quote is another member than the one the description quotes (the page shows both)
    for d in named:
        sentence = d.description.split("\u201d")[0].lstrip("\u201c")
        assert len(d.quotes) > 1 and sentence not in TEXTS[d.quotes[0]], (d.description, TEXTS[d.quotes[0]])
    assert [sorted(d.quotes) for d in named] == [sorted(d.quotes) for d in old]  # the same members, reordered
