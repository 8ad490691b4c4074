"""Name a theme in words and describe it in one line, from its members' own text (extractive, local).

Candidate names are phrases of one to ``max_words`` words cut from the members' clauses that read as
names, by the word classes a dictionary gives each word (:func:`word_classes`, from LemmInflect's
lookup table of the SPECIALIST lexicon, shipped in its wheel; no model, no download): they never cross
punctuation, never begin or end on a stop word or a contraction (inner ones stay: "waiting times for
therapy"), never end on a form of a light verb ("pwp doing", "have a say") or a vague noun ("the whole
thing"), never repeat a word, and end on a word that can be a noun ("waiting times", "delete my
account", gerunds such as "car parking" included), or on a past participle after a noun ("card
declined"). A word the dictionary lacks (an acronym, a name, a misspelling) counts as a noun. Phrases
are counted by their words' lemmas (:func:`lemma_key`), so "looked after" and "look after" are one
candidate, shown as the members wrote it most often.

Scoring follows BERTopic's KeyBERTInspired and KeyBERT's MMR:

1. a class-based TF-IDF on members: ``coverage * log(1 + A / f)``, ``coverage`` the share of the
   theme's members that hold the phrase, ``f`` the segments of the whole run that hold it and ``A`` the
   mean segments per theme (outliers count as one class). Words common to every theme score low: the
   phrase must set the theme apart from its neighbours. The best ``candidates`` phrases go on;
2. each is embedded with the segments' own encoder; its relevance is its cosine similarity to the
   theme's centroid less ``neighbour_weight`` times that to the closest other theme's centroid;
3. maximal marginal relevance picks the name's phrases: relevance minus ``diversity`` times the
   similarity to a phrase already chosen, and a phrase sharing a content word's lemma with a chosen
   one is skipped ("look" / "looked" never fill two slots); a further phrase whose marginal
   relevance is not above 0 ends the name.
4. no two themes of a run share a name: the larger keeps it, the smaller takes one more phrase, or else its
   best name without the shared first phrase, so a coder can tell every theme from the others by its name.

The description is one sentence or clause of a central member (the ``description_pool`` members
closest to the centroid, one per participant first) whose embedding is closest to the centroid, with
its participant; never the most talkative speaker's longest turn.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Mapping, Sequence

import lemminflect
import numpy as np
from scipy import sparse

from pipeline.config import NameSettings

#: Where a candidate phrase must stop: punctuation that ends a clause or sets words apart.
_CLAUSE_BREAK = re.compile(r"[.,;:!?()\[\]{}\"“”…/|\n\r\t]+|\s[-–—]+\s")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_SENTENCE = re.compile(r"(?<=[.!?…])\s+|\n+")

#: Common English endings, longest first: ``stem`` removes the first that fits.
INFLECTIONS = ("ers", "ing", "es", "ed", "er", "ly", "s", "d")


def stem(word: str) -> str:
    """A crude, dependency-free stem: 'looked' / 'looks' / 'looking' -> 'look', 'families' -> 'family'."""
    for suffix in INFLECTIONS:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] + "y" if word.endswith("i") else word


#: Lemmas are taken in this order of word classes: "waits" is the noun "wait", "waiting" the verb "wait".
_LEMMA_CLASSES = ("NOUN", "VERB", "ADJ", "ADV", "AUX")


@lru_cache(maxsize=65536)
def word_classes(word: str) -> frozenset[str]:
    """The word classes (UPOS) the dictionary gives a lower-case word; empty for a word it lacks."""
    return frozenset(lemminflect.getAllLemmas(word))


@lru_cache(maxsize=65536)
def lemma(word: str) -> str:
    """The dictionary form of a lower-case word ('looked' -> 'look', 'families' -> 'family'); a word
    the dictionary lacks loses a common ending (:func:`stem`)."""
    lemmas = lemminflect.getAllLemmas(word)
    return next((lemmas[c][0].lower() for c in _LEMMA_CLASSES if c in lemmas), None) or stem(word)


def lemma_key(words: Sequence[str]) -> str:
    """The key under which a phrase is counted: its words' lemmas, in order."""
    return " ".join(lemma(w) for w in words)


#: Verbs whose -ing form is rarely a name ("doing", "getting"); other -ing forms count as nouns
#: (gerunds: "car parking", "funding", "waiting").
LIGHT_VERBS = frozenset({"be", "have", "do", "get", "go", "make", "take", "say", "come", "try", "keep", "see",
                         "give", "tell", "know", "think", "feel", "want", "put", "let", "seem", "happen"})


#: Forms of a light verb that are names in their own right ("feelings about discharge").
LIGHT_VERB_NOUNS = frozenset({"feeling", "feelings"})

#: Nouns too vague to end a name ("the whole thing"); elsewhere they stay ("things were explained").
VAGUE_NOUNS = frozenset({"thing", "things", "stuff", "bit", "bits", "way", "ways", "kind", "sort", "type"})


@lru_cache(maxsize=65536)
def _light(word: str) -> bool:
    """A form of a light verb ("say", "doing", "made"): it names nothing at a phrase's edge, even where the
    dictionary also lists it as a noun ("have a say", "doings")."""
    verb = lemminflect.getAllLemmas(word).get("VERB", ())
    return bool(verb) and verb[0].lower() in LIGHT_VERBS and word not in LIGHT_VERB_NOUNS


def _nounlike(word: str) -> bool:
    classes = word_classes(word)
    return (not classes or "NOUN" in classes
            or ("VERB" in classes and word.endswith("ing") and lemma(word) not in LIGHT_VERBS))


def _participle(word: str) -> bool:
    return "VERB" in word_classes(word) and word.endswith("ed")


def clause_words(text: str, lower: bool = True) -> list[list[str]]:
    """Words of each clause of ``text`` (clauses end at punctuation), lower-cased unless ``lower`` is false."""
    clauses = ([m.group(0) for m in _WORD.finditer(part)] for part in _CLAUSE_BREAK.split(text))
    return [[w.lower() for w in c] if lower else c for c in clauses if c]


def written_forms(clauses: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """``(word, form)`` for each word of a text's ``clauses`` (as :func:`clause_words` gives them, not lower-
    cased) whose case says something: ``form`` is the word as written ("NHS", "Natasha", "staff"). A
    clause's first word is capitalised by the sentence, unless it is all capitals ("NHS staff..."), and a
    text written mostly in capitals shouts: neither says how a word is spelled, so neither counts."""
    words = [w for c in clauses for w in c]
    if sum(w.isupper() and len(w) > 1 for w in words) > len(words) / 2:
        return []
    return [(w.lower(), w) for clause in clauses for k, w in enumerate(clause)
            if k or not w[:1].isupper() or (len(w) > 1 and w.isupper())]


def sentences(text: str, min_words: int, max_words: int) -> list[str]:
    """The sentences of ``text`` with ``min_words`` to ``max_words`` words, stripped; a longer one is
    cut at its clauses, keeping those long enough."""
    out = []
    for s in (p.strip() for p in _SENTENCE.split(text)):
        n = len(s.split())
        if min_words <= n <= max_words:
            out.append(s)
        elif n > max_words:
            out += [c.strip() for c in re.split(r"(?<=[,;:])\s+", s) if min_words <= len(c.split()) <= max_words]
    return out


class PhraseCounter:
    """Counts candidate phrases per segment; ``surface_[key]`` is the form members wrote most often."""

    def __init__(self, stop_words: frozenset[str], max_words: int):
        self.stop_words = stop_words
        self.max_words = max_words
        self._surfaces: dict[str, Counter] = {}
        self._forms: dict[str, Counter] = {}

    def _edge(self, word: str) -> bool:
        """Whether a phrase may begin or end on ``word``: no stop word, contraction or adverb."""
        classes = word_classes(word)
        return (word not in self.stop_words and "'" not in word and len(word) >= 2
                and not (classes and classes <= {"ADV", "AUX"}))

    def phrases(self, text: str) -> list[str]:
        keys = []
        clauses = clause_words(text, lower=False)
        for word, form in written_forms(clauses):
            self._forms.setdefault(word, Counter())[form] += 1
        for words in ([w.lower() for w in c] for c in clauses):
            lemmas = [lemma(w) for w in words]
            for i, first in enumerate(words):
                if not self._edge(first):
                    continue
                for j in range(i + 1, min(i + self.max_words, len(words)) + 1):
                    last = words[j - 1]
                    if len(set(lemmas[i:j])) < j - i:  # a word repeated: 'look looked'
                        break
                    if (not self._edge(last) or _light(last) or last in VAGUE_NOUNS
                            or not (_nounlike(last) or (j - i > 1 and _nounlike(first) and _participle(last)))):
                        continue
                    key = " ".join(lemmas[i:j])
                    self._surfaces.setdefault(key, Counter())[" ".join(words[i:j])] += 1
                    keys.append(key)
        return keys

    def fit_transform(self, texts: Sequence[str], min_df: int) -> tuple[sparse.csr_matrix, np.ndarray]:
        """Binary segment x phrase matrix of the phrases held by at least ``min_df`` segments, and their keys."""
        from sklearn.feature_extraction.text import CountVectorizer  # here: reading a store needs rank, not this

        vectorizer = CountVectorizer(analyzer=self.phrases, binary=True, min_df=min_df)
        try:
            matrix = vectorizer.fit_transform(list(texts)).tocsc()
        except ValueError:  # no phrase at all, or none frequent enough
            return sparse.csc_matrix((len(texts), 0)), np.array([], dtype=object)
        return matrix, vectorizer.get_feature_names_out()

    def surface(self, key: str) -> str:
        """The lower-case phrase under ``key`` as members wrote it most often (its inflections)."""
        counts = self._surfaces.get(key)
        if not counts:
            return key
        return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]

    def written(self, phrase: str) -> str:
        """``phrase`` (lower case) with each word in the form members wrote it most often: "NHS", "Natasha"; a
        tie keeps lower case."""
        def form(word: str) -> str:
            counts = self._forms.get(word)
            if not counts:
                return word
            return max(counts.items(), key=lambda kv: (kv[1], kv[0] == word, kv[0]))[0]
        return " ".join(form(w) for w in phrase.split())


@dataclass(frozen=True)
class ThemeName:
    """A theme's name, the phrases it was made of (best first) and its one-line description."""

    name: str
    phrases: tuple[str, ...]
    description: str
    description_member: int | None  # index into the fitted arrays of the member the description quotes
    description_case: str | None


def format_description(sentence: str, case: str | None) -> str:
    """The description as the page and the exports show it: the sentence and, if known, its participant."""
    return f"\u201c{sentence}\u201d ({case})" if case else f"\u201c{sentence}\u201d"


@dataclass
class ThemeNamer:
    """Names every theme of a fitted run; mirrors the ``describe.name`` config section."""

    max_words: int = 4
    min_members: int = 2
    candidates: int = 30
    phrases: int = 2
    diversity: float = 0.3
    neighbour_weight: float = 0.5
    description_pool: int = 10
    description_min_words: int = 5
    description_max_words: int = 30
    #: The segments' encoder (phrases and sentences in, unit vectors out); None: c-TF-IDF order, central member.
    encoder: Callable[[Sequence[str]], np.ndarray] | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, cfg: NameSettings | Mapping,
                    encoder: Callable[[Sequence[str]], np.ndarray] | None = None) -> "ThemeNamer":
        cfg = NameSettings.of(cfg)
        return cls(cfg.max_words, cfg.min_members, cfg.candidates, cfg.phrases, cfg.diversity,
                   cfg.neighbour_weight, cfg.description_pool, cfg.description_min_words, cfg.description_max_words, encoder)

    def name(self, texts: Sequence[str], labels: np.ndarray, themes: Sequence[int], theme_centroids: np.ndarray,
             centrality: Mapping[int, np.ndarray], cases: Sequence[str | None],
             stop_words: frozenset[str]) -> dict[int, ThemeName]:
        """A :class:`ThemeName` per theme in ``themes`` (whose unit centroids are ``theme_centroids``);
        ``centrality[t]`` is the similarity of each member of ``t`` (in index order) to its centroid."""
        counter = PhraseCounter(stop_words, self.max_words)
        matrix, keys = counter.fit_transform(texts, min(self.min_members, max(1, len(texts))))
        labels = np.asarray(labels)
        classes = sorted(set(labels.tolist()))
        per_segment = np.asarray(matrix.sum(axis=0)).ravel()
        mean_per_class = len(texts) / max(len(classes), 1)
        idf = np.log(1 + mean_per_class / np.maximum(per_segment, 1))
        chosen: dict[int, list[int]] = {}
        for t in themes:
            members = np.flatnonzero(labels == t)
            df = np.asarray(matrix[members].sum(axis=0)).ravel() if len(keys) else np.zeros(0)
            score = df / max(len(members), 1) * idf
            order = np.lexsort((keys, -score)) if len(keys) else np.zeros(0, dtype=np.int64)
            chosen[t] = [int(i) for i in order if df[i] >= self.min_members][: self.candidates]
        relevance, phrase_vectors = self._relevance(keys, counter, chosen, themes, theme_centroids)
        descriptions = self._descriptions(texts, labels, themes, theme_centroids, centrality, cases)

        def content(i: int) -> set[str]:
            return {lemma(w) for w in counter.surface(str(keys[i])).split()} - stop_words

        def phrases_of(picked: list[int]) -> tuple[str, ...]:
            return tuple(counter.written(counter.surface(str(keys[i]))) for i in picked)

        def taken_by_another(picked: list[int]) -> bool:
            return " and ".join(phrases_of(picked)).lower() in taken

        out = {}
        taken: set[str] = set()
        sizes = Counter(labels.tolist())
        for t in sorted(themes, key=lambda t: (-sizes[t], t)):  # the largest theme keeps a name two would share
            args = (relevance.get(t, {}), phrase_vectors, content)
            picked = self._mmr(chosen[t], *args)
            if picked and taken_by_another(picked):
                # One more phrase, else the best name without the shared first phrase.
                alternatives = [self._mmr(chosen[t], *args, least=len(picked) + 1)] if len(picked) < self.phrases else []
                alternatives.append(self._mmr([i for i in chosen[t] if i != picked[0]], *args))
                picked = next((a for a in alternatives if a and not taken_by_another(a)), picked)
            words = phrases_of(picked)
            taken.add(" and ".join(words).lower())
            sentence, member = descriptions[t]
            case = cases[member] if member is not None else None
            out[t] = ThemeName(" and ".join(words), words, format_description(sentence, case) if sentence else "",
                               member, case)
        return {t: out[t] for t in themes}

    def _relevance(self, keys: np.ndarray, counter: PhraseCounter, chosen: Mapping[int, list[int]],
                   themes: Sequence[int], theme_centroids: np.ndarray
                   ) -> tuple[dict[int, dict[int, float]], dict[int, np.ndarray]]:
        """Each candidate's relevance to its theme: cosine similarity to the theme's centroid less
        ``neighbour_weight`` times that to the closest other theme's; and the candidates' vectors (both
        empty without an encoder: the c-TF-IDF order stands)."""
        terms = sorted({i for ids in chosen.values() for i in ids})
        if self.encoder is None or not terms:
            return {}, {}
        vectors = np.asarray(self.encoder([counter.surface(str(keys[i])) for i in terms]))
        sims = vectors @ np.asarray(theme_centroids).T
        row = {i: k for k, i in enumerate(terms)}
        out: dict[int, dict[int, float]] = {}
        for col, t in enumerate(themes):
            others = np.delete(sims, col, axis=1)
            closest_other = others.max(axis=1) if others.shape[1] else np.zeros(len(terms))
            out[t] = {i: float(sims[row[i], col] - self.neighbour_weight * closest_other[row[i]]) for i in chosen[t]}
        return out, dict(zip(terms, vectors))

    def _mmr(self, candidates: list[int], relevance: Mapping[int, float], vectors: Mapping[int, np.ndarray],
             content: Callable[[int], set[str]], least: int = 1) -> list[int]:
        """Maximal marginal relevance over ``candidates`` (in c-TF-IDF order, which breaks ties); a
        candidate sharing a content word's lemma with a picked phrase is never picked. The first ``least``
        phrases are picked whatever their marginal relevance (a name another theme already has needs one more)."""
        picked: list[int] = []
        left = list(candidates)
        while left and len(picked) < self.phrases:
            def gain(i: int) -> float:
                if not relevance:
                    return 0.0
                redundancy = max((float(vectors[i] @ vectors[j]) for j in picked), default=0.0)
                return (1 - self.diversity) * relevance[i] - self.diversity * redundancy if picked else relevance[i]
            best = max(left, key=lambda i: (gain(i), -left.index(i)))
            if len(picked) >= least and relevance and gain(best) <= 0:  # nothing left that adds to the name
                break
            picked.append(best)
            used = content(best)
            left = [i for i in left if i != best and not used & content(i)]
        return picked

    def _descriptions(self, texts: Sequence[str], labels: np.ndarray, themes: Sequence[int],
                      theme_centroids: np.ndarray, centrality: Mapping[int, np.ndarray],
                      cases: Sequence[str | None]) -> dict[int, tuple[str, int | None]]:
        """Per theme, the clause of a central member closest to the centroid, and that member's index."""
        pools: dict[int, list[tuple[str, int]]] = {}
        for t in themes:
            members = np.flatnonzero(labels == t)
            order = members[np.argsort(-np.asarray(centrality[t]), kind="stable")]
            seen: set[str | None] = set()
            first = [int(i) for i in order if not (cases[i] in seen or seen.add(cases[i]))]  # one per participant
            pool = (first + [int(i) for i in order if int(i) not in first])[: self.description_pool]
            pools[t] = [(s, i) for i in pool
                        for s in sentences(texts[i], self.description_min_words, self.description_max_words)]
            if not pools[t] and len(order):  # nothing of the right length: the most central member, whole
                pools[t] = [(" ".join(texts[int(order[0])].split()), int(order[0]))]
        if self.encoder is None:
            return {t: pools[t][0] if pools[t] else ("", None) for t in themes}
        flat = sorted({s for pool in pools.values() for s, _ in pool})
        vectors = dict(zip(flat, np.asarray(self.encoder(flat)))) if flat else {}
        out = {}
        for t, centroid in zip(themes, theme_centroids):
            if not pools[t]:
                out[t] = ("", None)
                continue
            sims = [float(vectors[s] @ centroid) for s, _ in pools[t]]
            out[t] = pools[t][int(np.argmax(sims))]
        return out
