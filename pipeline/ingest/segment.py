"""Segment: speaker turns into short units of 1-3 sentences that keep where they came from.

A segment is the unit every later stage works on (embedding, themes, human codes, agreement), so it
carries its source, case (participant), speaker, turn and character offsets into the source's text.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from pipeline.config import SegmentSettings
from pipeline.ingest.read import Document, Turn

PARTICIPANT, INTERVIEWER, OTHER = "participant", "interviewer", "other"

_ABBREVIATIONS = {"dr", "mr", "mrs", "ms", "prof", "st", "e.g", "i.e", "etc", "vs", "approx", "no", "cf", "fig"}
_BOUNDARY = re.compile(r"[.!?\u2026]+[\"'\u2019\u201d)\]]*\s+(?=[\"'\u2018\u201c(\[]?[A-Z0-9])")
_WORD = re.compile(r"\S+")

TokenCounter = Callable[[str], int]


def approximate_tokens(text: str) -> int:
    """Rough WordPiece count (about 1.3 tokens a word plus the two special tokens)."""
    return int(len(text.split()) * 1.3) + 2


@dataclass(frozen=True)
class Segment:
    """A span ``text`` of source ``source`` at ``[start, end)``, with who said it."""

    source: str
    source_sha256: str
    case: str | None
    speaker: str | None
    role: str
    turn_index: int
    start: int
    end: int
    text: str
    clusterable: bool
    row_id: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Questioner:
    """A speaker taken as the interviewer: ``questions`` of their ``turns`` hold a question."""

    speaker: str
    questions: int
    turns: int

    def note(self, source: str) -> str:
        return (f"{source}: '{self.speaker}' taken as the interviewer ({self.questions} of {self.turns} turns ask "
                "a question; kept as context, not clustered); name the interviewer in segment.interviewer_pattern "
                "to choose otherwise")


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans of ``text[start:end]`` as absolute offsets, whitespace trimmed."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    cursor = start
    for match in _BOUNDARY.finditer(text, start, end):
        before = text[cursor:match.start()].split()
        last_word = before[-1].lower().rstrip(".") if before else ""
        # "No." is an answer, not an abbreviation, unless a number follows ("No. 10").
        abbreviation = last_word in _ABBREVIATIONS and (last_word != "no" or text[match.end()].isdigit())
        if abbreviation or (len(last_word) == 1 and last_word.isalpha()):
            continue
        stop = match.end() - (len(match.group()) - len(match.group().rstrip()))
        spans.append((cursor, stop))
        cursor = match.end()
    spans.append((cursor, end))
    return [trimmed for s, e in spans if (trimmed := _trim(text, s, e))[1] > trimmed[0]]


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


@dataclass
class Segmenter:
    """Cuts documents into segments; parameters mirror the ``segment`` section of the configuration.

    ``token_counter`` should be the embedding model's tokenizer so that no segment is truncated by
    the model; ``max_tokens`` is then the smaller of the configured and the model's limit. A participant
    segment is clustered from ``min_words`` words, or from ``answer_min_words`` where it is a whole CSV row
    (an answer to a question: a short one is still an answer; a short turn in a transcript is context).
    """

    interviewer_pattern: str = r"^(interviewer|moderator|facilitator)$"
    generic_participant_pattern: str = r"^(participant|respondent|interviewee)$"
    interviewer_question_share: float | None = 0.5
    max_sentences: int = 3
    target_words: int = 35
    min_words: int = 4
    answer_min_words: int = 1
    max_tokens: int = 256
    token_counter: TokenCounter = field(default=approximate_tokens, repr=False)

    @classmethod
    def from_config(cls, cfg: SegmentSettings | Mapping, token_counter: TokenCounter | None = None,
                    model_max_tokens: int | None = None) -> "Segmenter":
        """From the ``segment`` section (a mapping of it is checked and completed from the defaults)."""
        cfg = SegmentSettings.of(cfg)
        max_tokens = cfg.max_tokens if model_max_tokens is None else min(cfg.max_tokens, model_max_tokens)
        return cls(
            interviewer_pattern=cfg.interviewer_pattern,
            generic_participant_pattern=cfg.generic_participant_pattern,
            interviewer_question_share=cfg.interviewer_question_share,
            max_sentences=cfg.max_sentences,
            target_words=cfg.target_words,
            min_words=cfg.min_words,
            answer_min_words=cfg.answer_min_words,
            max_tokens=max_tokens,
            token_counter=token_counter or approximate_tokens,
        )

    def transform(self, documents: Iterable[Document]) -> list[Segment]:
        segments: list[Segment] = []
        for doc in documents:
            segments.extend(self.segment_document(doc))
        return segments

    def segment_document(self, doc: Document) -> list[Segment]:
        labelled = any(t.speaker for t in doc.turns)
        asker = self.questioner(doc)
        out: list[Segment] = []
        for turn in doc.turns:
            asks = asker is not None and (turn.speaker or "").strip() == asker.speaker
            role = INTERVIEWER if asks else self.role_of(turn, labelled)
            case = self.case_of(turn, role, doc)
            for start, end in self._spans(doc.text, turn.start, turn.end):
                out.append(Segment(doc.name, doc.sha256, case, turn.speaker, role, turn.index, start, end,
                                   doc.text[start:end], False, turn.row_id, turn.attributes))
        return self.flag(out)

    def flag(self, segments: Sequence[Segment]) -> list[Segment]:
        """``segments`` with ``clusterable`` set by these settings: a participant's segment from ``min_words``
        words, or from ``answer_min_words`` where it is a whole CSV row (the only segment of its row: "Friendly
        staff" is as much an answer as a paragraph). Segments stored under other settings are read again
        through this, so a run clusters what its own settings say."""
        pieces = Counter((seg.source_sha256, seg.turn_index) for seg in segments)
        out = []
        for seg in segments:
            whole_answer = seg.row_id is not None and pieces[(seg.source_sha256, seg.turn_index)] == 1
            least = self.answer_min_words if whole_answer else self.min_words
            clusterable = seg.role == PARTICIPANT and len(seg.text.split()) >= least
            out.append(seg if seg.clusterable == clusterable else replace(seg, clusterable=clusterable))
        return out

    def questioner(self, doc: Document) -> "Questioner | None":
        """The speaker taken as the interviewer because they ask the questions, in a transcript whose
        speakers are named and none matches ``interviewer_pattern`` (see ``interviewer_question_share``)."""
        if self.interviewer_question_share is None:
            return None
        asked: dict[str, dict[int, bool]] = {}
        for t in doc.turns:
            if t.speaker and not t.case:  # a CSV's answers have no interviewer
                turns = asked.setdefault(t.speaker.strip(), {})
                turns[t.index] = turns.get(t.index, False) or "?" in doc.text[t.start:t.end]
        if len(asked) < 2 or any(re.match(self.interviewer_pattern, s, re.IGNORECASE) for s in asked):
            return None
        shares = {s: (sum(t.values()), len(t)) for s, t in sorted(asked.items())}
        best = max(shares, key=lambda s: shares[s][0] / shares[s][1])
        questions, turns = shares[best]
        share = questions / turns
        if questions < 3 or share < self.interviewer_question_share:
            return None
        if any(q / n >= share / 2 for s, (q, n) in shares.items() if s != best):
            return None
        return Questioner(best, questions, turns)

    def role_of(self, turn: Turn, labelled: bool) -> str:
        if turn.speaker is None:
            return OTHER if labelled else PARTICIPANT
        if re.match(self.interviewer_pattern, turn.speaker.strip(), re.IGNORECASE):
            return INTERVIEWER
        return PARTICIPANT

    def case_of(self, turn: Turn, role: str, doc: Document) -> str | None:
        """The participant a segment belongs to: a CSV's case column, the speaker, or the file."""
        if turn.case:
            return turn.case
        if role != PARTICIPANT:
            return None
        speaker = (turn.speaker or "").strip()
        if not speaker or re.match(self.generic_participant_pattern, speaker, re.IGNORECASE):
            return str(Path(doc.name).with_suffix(""))  # siteA/P01 where a name was made of its path
        return speaker

    def _spans(self, text: str, start: int, end: int) -> list[tuple[int, int]]:
        """Group a paragraph's sentences into balanced segments.

        The paragraph is cut into ``g = max(ceil(sentences / max_sentences), round(words / target_words))``
        contiguous groups of about equal word counts, so a four-sentence turn gives 2 + 2 rather than
        3 + a stray sentence without context. Groups over ``max_tokens`` are cut again.
        """
        sentences: list[tuple[int, int]] = []
        for s, e in split_sentences(text, start, end):
            sentences.extend(self._fit_tokens(text, s, e))
        if not sentences:
            return []
        words = [len(text[s:e].split()) for s, e in sentences]
        n_groups = max(math.ceil(len(sentences) / self.max_sentences), round(sum(words) / self.target_words), 1)
        groups = _balanced_groups(words, n_groups, self.max_sentences)
        spans: list[tuple[int, int]] = []
        for first, last in groups:
            spans.extend(self._fit_group(text, sentences[first:last]))
        return spans

    def _fit_group(self, text: str, sentences: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The group as one span, or cut where it would exceed ``max_tokens``."""
        spans = [sentences[0]]
        for s, e in sentences[1:]:
            if self.token_counter(text[spans[-1][0]:e]) <= self.max_tokens:
                spans[-1] = (spans[-1][0], e)
            else:
                spans.append((s, e))
        return spans

    def _fit_tokens(self, text: str, start: int, end: int) -> list[tuple[int, int]]:
        """Split a sentence longer than ``max_tokens`` at word boundaries."""
        if self.token_counter(text[start:end]) <= self.max_tokens:
            return [(start, end)]
        pieces: list[tuple[int, int]] = []
        piece_start = start
        last_end = start
        for match in _WORD.finditer(text, start, end):
            if last_end > piece_start and self.token_counter(text[piece_start:match.end()]) > self.max_tokens:
                pieces.append((piece_start, last_end))
                piece_start = match.start()
            last_end = match.end()
        pieces.append((piece_start, last_end))
        return pieces


def _balanced_groups(words: Sequence[int], n_groups: int, max_size: int) -> list[tuple[int, int]]:
    """Cut ``len(words)`` items into ``n_groups`` contiguous runs of about equal total words, no run
    longer than ``max_size`` items; returns ``(first, stop)`` index pairs."""
    n = len(words)
    n_groups = min(max(n_groups, math.ceil(n / max_size)), n)
    total = sum(words)
    bounds, first, cumulative = [], 0, 0
    for i, w in enumerate(words):
        cumulative += w
        groups_left = n_groups - len(bounds) - 1
        items_left = n - i - 1
        size = i + 1 - first
        # Cut early for word balance only if the items left still fit the groups left.
        reached = (cumulative >= total * (len(bounds) + 1) / n_groups
                   and items_left <= groups_left * max_size)
        if groups_left > 0 and items_left >= groups_left and (reached or size >= max_size
                                                              or items_left == groups_left):
            bounds.append((first, i + 1))
            first = i + 1
    bounds.append((first, n))
    return bounds


def participant_cases(segments: Sequence[Segment]) -> list[str]:
    """Distinct cases among clusterable segments, in first-seen order."""
    return list(dict.fromkeys(s.case for s in segments if s.clusterable and s.case))
