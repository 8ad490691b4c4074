"""What a coder types in Search, and which segments it finds: words, "quoted phrases" and prefixes ``word*``.

A plain word finds the words of the same stem (a simple suffix stripper: ``waiting``, ``waited`` and
``waits`` all find each other; ``studies`` finds ``study``); ``broadband*`` finds every word starting with
``broadband``; ``"face to face"`` finds those words one after the other (case and the punctuation between
them aside: ``face-to-face`` too). Every term must match. Matching is done here, on the text, so that
SQLite and PostgreSQL find exactly the same segments; the store only narrows the rows first with
:attr:`Term.needle`, a piece of text every match contains. Like ``config.py`` this sits below every stage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WORD, PREFIX, PHRASE = "word", "prefix", "phrase"
_TOKEN = re.compile(r"\w+(?:['\u2019]\w+)*")
_CHUNK = re.compile(r'"([^"]*)"?|(\S+)')
_SUFFIXES = (("ies", "i"), ("ied", "i"), ("ing", ""), ("ed", ""), ("es", ""), ("ly", ""), ("s", ""))


@dataclass(frozen=True)
class Term:
    """One part of a query: a word (matched by stem), a prefix, or a phrase (its words in order)."""

    kind: str
    words: tuple[str, ...]

    @property
    def needle(self) -> str:
        """Lower-case text that every segment this term matches contains (for the database's first pass)."""
        if self.kind == WORD:
            s = stem(self.words[0])
            return s[:-1] if s.endswith("i") and len(s) > 1 else s
        return max(self.words, key=len)


def stem(word: str) -> str:
    """A word's simple stem: lower case, possessive and one common suffix off (not below three letters),
    a doubled last consonant undoubled, a final ``e`` off and ``y`` as ``i``."""
    w = word.lower().replace("\u2019", "'")
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) <= 3:
        return w
    for suffix, replacement in _SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 3 and not (suffix == "s" and w.endswith("ss")):
            w = w[: -len(suffix)] + replacement
            break
    if len(w) >= 4 and w[-1] == w[-2] and w[-1] not in "aeiouslz":
        w = w[:-1]
    if len(w) >= 4 and w.endswith("e"):
        w = w[:-1]
    if len(w) >= 4 and w.endswith("y") and w[-2] not in "aeiou":
        w = w[:-1] + "i"
    return w


def parse_query(query: str, max_terms: int = 10) -> list[Term]:
    """The terms of ``query`` (at most ``max_terms``): ``"..."`` a phrase, ``word*`` a prefix, else words."""
    terms: list[Term] = []
    for m in _CHUNK.finditer(query):
        quoted, plain = m.group(1), m.group(2)
        words = tuple(t.lower() for t in _TOKEN.findall(quoted if quoted is not None else plain))
        if not words:
            continue
        if quoted is not None or len(words) > 1:
            terms.append(Term(PHRASE, words) if len(words) > 1 else Term(WORD, words))
        elif plain.endswith("*"):
            terms.append(Term(PREFIX, words))
        else:
            terms.append(Term(WORD, words))
    return terms[:max_terms]


def _tokens(text: str) -> list[tuple[str, int, int]]:
    return [(m.group().lower(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _term_spans(tokens: list[tuple[str, int, int]], term: Term) -> list[tuple[int, int]]:
    if term.kind == WORD:
        s = stem(term.words[0])
        return [(a, b) for t, a, b in tokens if stem(t) == s]
    if term.kind == PREFIX:
        return [(a, b) for t, a, b in tokens if t.startswith(term.words[0])]
    n = len(term.words)
    return [(tokens[i][1], tokens[i + n - 1][2]) for i in range(len(tokens) - n + 1)
            if tuple(t for t, _, _ in tokens[i:i + n]) == term.words]


def matches(text: str, terms: list[Term]) -> bool:
    """Whether ``text`` holds every term."""
    tokens = _tokens(text)
    return bool(terms) and all(_term_spans(tokens, t) for t in terms)


def highlight(text: str, terms: list[Term]) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, is_match) pieces for the terms (the page escapes every piece)."""
    tokens = _tokens(text)
    spans = sorted(s for t in terms for s in _term_spans(tokens, t))
    out: list[tuple[str, bool]] = []
    last = 0
    for a, b in spans:
        if a < last:  # overlapping matches: the earlier one is kept whole
            continue
        if a > last:
            out.append((text[last:a], False))
        out.append((text[a:b], True))
        last = b
    if last < len(text) or not out:
        out.append((text[last:], False))
    return out
