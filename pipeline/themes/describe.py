"""Describe candidate themes: keywords (class-based TF-IDF), a short label, representative quotes.

Quotes are chosen to be central to the theme *and* to come from different participants, because a
coder judges a theme by whether several people said it, not by one talkative interviewee.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from pipeline.config import DescribeSettings, NameSettings
from pipeline.themes.cluster import OUTLIER
from pipeline.themes.name import INFLECTIONS, ThemeNamer, stem

_TOKEN_PATTERN = r"(?u)\b[^\W\d_][^\W\d_]+\b"


@dataclass(frozen=True)
class ThemeDescription:
    """What a coder sees first: label (the name), description, keywords, quotes; member indices refer to
    the fitted arrays. ``description`` is one central clause of a member with its participant."""

    theme: int
    label: str
    keywords: tuple[str, ...]
    keyword_scores: tuple[float, ...]
    members: tuple[int, ...]
    strengths: tuple[float, ...]
    centrality: tuple[float, ...]
    quotes: tuple[int, ...]
    description: str = ""


def centroids(vectors: np.ndarray, labels: np.ndarray, themes: Sequence[int]) -> np.ndarray:
    """Unit-length mean vector of each theme, in the order of ``themes``."""
    out = np.stack([vectors[labels == t].mean(axis=0) for t in themes]) if len(themes) else np.zeros((0, vectors.shape[1]))
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1, norms)


def class_tfidf(texts: Sequence[str], labels: np.ndarray, stop_words: Sequence[str],
                ngram_range: tuple[int, int] = (1, 2)) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Class-based TF-IDF (as in BERTopic): each class's texts form one document.

    ``tf`` is a term's share of its class's words and ``idf = log(1 + A / f)`` with ``A`` the mean
    words per class and ``f`` the term's count over all classes. Outliers form a class too, so words
    common everywhere score low. Returns (classes, vocabulary, scores[class, term]).
    """
    from sklearn.feature_extraction.text import CountVectorizer  # here: reading a store needs rank, not this

    classes = sorted(set(labels.tolist()))
    docs = [" ".join(texts[i] for i in np.flatnonzero(labels == c)) for c in classes]
    vectorizer = CountVectorizer(stop_words=list(stop_words), ngram_range=tuple(ngram_range),
                                 token_pattern=_TOKEN_PATTERN, lowercase=True)
    try:
        counts = vectorizer.fit_transform(docs).toarray().astype(np.float64)
    except ValueError:  # every word was a stop word
        return classes, np.array([], dtype=object), np.zeros((len(classes), 0))
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    idf = np.log(1 + counts.sum(axis=1).mean() / np.maximum(counts.sum(axis=0), 1))
    return classes, vectorizer.get_feature_names_out(), tf * idf


def same_word(a: str, b: str) -> bool:
    """Whether two words are inflections of one another ('look' / 'looked', 'nurse' / 'nurses').

    Crude and dependency-free: the shorter word (3+ letters) plus a common English ending gives the
    longer one, or one loses such an ending to become the other ('families' / 'family'), or both lose
    one to the same stem ('looks' / 'looked', 'happier' / 'happy')."""
    if a == b:
        return True
    short, long = sorted((a, b), key=len)
    if len(short) >= 3 and long.startswith(short) and long[len(short):] in INFLECTIONS:
        return True
    return stem(long) == short or stem(a) == stem(b)


def _distinct_words(term: str) -> bool:
    """False for n-grams like 'looked looked' or 'look looked' that stop-word removal glues together."""
    words = term.split()
    return not any(same_word(a, b) for i, a in enumerate(words) for b in words[i + 1:])


def make_label(keywords: Sequence[str], n_phrases: int = 2) -> str:
    """Join the best keyphrases, preferring a two-word phrase near the top and skipping repeats."""
    if not keywords:
        return "(no keywords)"
    top = list(keywords[:3])
    first = next((k for k in top if " " in k), top[0])
    chosen = [first]
    for k in keywords:
        if len(chosen) >= n_phrases:
            break
        if any(same_word(w, v) for c in chosen for w in k.split() for v in c.split()):
            continue
        chosen.append(k)
    return " / ".join(chosen)


@dataclass
class ThemeDescriber:
    """Describes every cluster in ``labels`` (outliers excluded); mirrors the ``describe`` config section."""

    n_keywords: int = 10
    ngram_range: tuple[int, int] = (1, 2)
    domain_stopwords: Sequence[str] = field(default_factory=tuple)
    keyphrase_candidates: int = 30
    label_keyphrases: int = 2
    n_quotes: int = 4
    quote_min_words: int = 8
    #: Embeds candidate keyphrases (same model as the segments) to re-rank them; None keeps c-TF-IDF order.
    phrase_encoder: Callable[[Sequence[str]], np.ndarray] | None = field(default=None, repr=False)
    #: How the name and description are made (the ``describe.name`` section).
    naming: NameSettings = field(default_factory=lambda: NameSettings.of({}))

    @classmethod
    def from_config(cls, cfg: DescribeSettings | Mapping,
                    phrase_encoder: Callable[[Sequence[str]], np.ndarray] | None = None) -> "ThemeDescriber":
        """From the ``describe`` section (a mapping of it is checked and completed from the defaults)."""
        cfg = DescribeSettings.of(cfg)
        return cls(cfg.n_keywords, cfg.ngram_range, cfg.domain_stopwords, cfg.keyphrase_candidates,
                   cfg.label_keyphrases, cfg.n_quotes, cfg.quote_min_words, phrase_encoder, cfg.name)

    def describe(self, texts: Sequence[str], labels: np.ndarray, vectors: np.ndarray,
                 cases: Sequence[str | None], strengths: np.ndarray) -> list[ThemeDescription]:
        themes = [t for t in sorted(set(labels.tolist())) if t != OUTLIER]
        if not themes:
            return []
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        stop_words = sorted(ENGLISH_STOP_WORDS | {str(w).lower() for w in self.domain_stopwords})
        classes, vocab, scores = class_tfidf(texts, labels, stop_words, self.ngram_range)
        cents = centroids(vectors, labels, themes)
        candidates = {}
        for t in themes:
            row = scores[classes.index(t)] if len(vocab) else np.zeros(0)
            ranked = (i for i in np.argsort(-row, kind="stable") if row[i] > 0 and _distinct_words(vocab[i]))
            candidates[t] = list(itertools.islice(ranked, self.keyphrase_candidates))
        closeness = self._phrase_closeness(vocab, candidates, dict(zip(themes, cents)))
        member_centrality = {t: vectors[labels == t] @ c for t, c in zip(themes, cents)}
        names = (ThemeNamer.from_config(self.naming, self.phrase_encoder).name(
                     texts, labels, themes, cents, member_centrality, cases, frozenset(stop_words))
                 if self.naming.method == "phrases" else {})
        out = []
        for t, centroid in zip(themes, cents):
            row = scores[classes.index(t)] if len(vocab) else np.zeros(0)
            ranked = sorted(candidates[t], key=lambda i: -closeness[t].get(i, 0.0)) if closeness else candidates[t]
            top = ranked[: self.n_keywords]
            keywords = tuple(str(vocab[i]) for i in top)
            members = np.flatnonzero(labels == t)
            centrality = member_centrality[t]
            quotes = self.pick_quotes(members, centrality, [cases[i] for i in members],
                                      [len(texts[i].split()) for i in members])
            if t in names and quotes[:1] == (names[t].description_member,) and len(quotes) > 1:
                quotes = quotes[1:] + quotes[:1]  # the description quotes that member already: another first
            out.append(ThemeDescription(
                theme=int(t),
                label=names[t].name if t in names and names[t].name else make_label(keywords, self.label_keyphrases),
                keywords=keywords,
                keyword_scores=tuple(round(float(row[i]), 6) for i in top),
                members=tuple(int(i) for i in members),
                strengths=tuple(float(strengths[i]) for i in members),
                centrality=tuple(float(c) for c in centrality),
                quotes=quotes,
                description=names[t].description if t in names else "",
            ))
        return out

    def _phrase_closeness(self, vocab: np.ndarray, candidates: dict[int, list[int]],
                          theme_centroids: dict[int, np.ndarray]) -> dict[int, dict[int, float]]:
        """Cosine similarity of each candidate keyphrase to its theme's centroid (empty without an encoder)."""
        if self.phrase_encoder is None:
            return {}
        terms = sorted({i for ids in candidates.values() for i in ids})
        if not terms:
            return {}
        vectors = self.phrase_encoder([str(vocab[i]) for i in terms])
        position = {i: k for k, i in enumerate(terms)}
        return {t: {i: float(vectors[position[i]] @ theme_centroids[t]) for i in ids} for t, ids in candidates.items()}

    def pick_quotes(self, members: np.ndarray, centrality: np.ndarray, cases: Sequence[str | None],
                    n_words: Sequence[int]) -> tuple[int, ...]:
        """Most central members first, one per participant while possible, short ones last."""
        order = np.argsort(-centrality, kind="stable")
        chosen: list[int] = []
        seen_cases: set[str | None] = set()
        passes = (
            lambda j: n_words[j] >= self.quote_min_words and cases[j] not in seen_cases,
            lambda j: n_words[j] >= self.quote_min_words,
            lambda j: True,
        )
        for accept in passes:
            for j in order:
                if len(chosen) >= self.n_quotes:
                    return tuple(chosen)
                if int(members[j]) not in chosen and accept(j):
                    chosen.append(int(members[j]))
                    seen_cases.add(cases[j])
        return tuple(chosen)


def nearest_themes(vectors: np.ndarray, theme_centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the most similar theme centroid for each vector, and that cosine similarity."""
    if theme_centroids.shape[0] == 0:
        return np.full(len(vectors), -1), np.zeros(len(vectors))
    sims = vectors @ theme_centroids.T
    best = sims.argmax(axis=1)
    return best, sims[np.arange(len(vectors)), best]
