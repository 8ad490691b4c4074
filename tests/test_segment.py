"""Tests for pipeline.ingest.segment: offsets, sentence counts, token limits with the real model, roles.

The token limit is checked with the tokenizer of the packaged all-MiniLM-L6-v2 (offline), so a
segment that passes here is never truncated by the model. No mocks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.embed.encoder import Embedder
from pipeline.ingest.read import Document, Ingester
from pipeline.ingest.segment import INTERVIEWER, OTHER, PARTICIPANT, Segmenter, split_sentences

from conftest import EXAMPLE_FILES, TRANSCRIPTS as EXAMPLES


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="module")
def ingester(cfg) -> Ingester:
    return Ingester.from_config(cfg["ingest"])


@pytest.fixture(scope="module")
def segmenter(cfg, embedder) -> Segmenter:
    return Segmenter.from_config(cfg["segment"], embedder.count_tokens, embedder.max_tokens)


@pytest.fixture(scope="module")
def study(ingester, segmenter) -> dict[str, tuple[Document, list]]:
    result = ingester.collect([EXAMPLES])
    assert len(result.documents) == len(EXAMPLE_FILES)
    return {d.name: (d, segmenter.segment_document(d)) for d in result.documents}


def one_turn(ingester, tmp_path, body: str, speaker: str = "P01", name: str = "P01.txt") -> Document:
    path = tmp_path / name
    path.write_text(f"Interviewer: Could you say more?\n\n{speaker}: {body}\n", encoding="utf-8")
    return ingester.read(path)


def participant_spans(segmenter, doc):
    return [s for s in segmenter.segment_document(doc) if s.role == PARTICIPANT]


def n_sentences(text: str) -> int:
    return len(split_sentences(text))


# -- the example study -----------------------------------------------------------------------------
def test_segmenter_uses_model_token_limit(cfg, embedder, segmenter):
    assert embedder.max_tokens == 256  # all-MiniLM-L6-v2's max_seq_length
    assert segmenter.max_tokens == min(cfg["segment"]["max_tokens"], embedder.max_tokens)
    assert segmenter.token_counter("Hello world.") == 5  # [CLS] hello world . [SEP]


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_offsets_round_trip(study, name):
    doc, segments = study[name]
    assert segments
    for s in segments:
        assert doc.text[s.start:s.end] == s.text
        assert s.text == s.text.strip() and s.text
        assert s.source == name and s.source_sha256 == doc.sha256
    # Segments cover each turn completely, in order, without overlap: no text lost or repeated.
    for turn in doc.turns:
        inside = [s for s in segments if turn.start <= s.start and s.end <= turn.end]
        assert all(s.turn_index == turn.index for s in inside)
        assert all(a.end <= b.start for a, b in zip(inside, inside[1:]))
        assert " ".join(s.text for s in inside).split() == doc.text[turn.start:turn.end].split()
    assert sum(len(s.text.split()) for s in segments) == sum(len(doc.text[t.start:t.end].split()) for t in doc.turns)


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_sentences_and_tokens_within_limits(study, segmenter, name):
    _, segments = study[name]
    counts = [n_sentences(s.text) for s in segments]
    assert all(1 <= n <= segmenter.max_sentences for n in counts), counts
    assert max(counts) >= 2  # sentences really are grouped
    assert max(segmenter.token_counter(s.text) for s in segments) <= segmenter.max_tokens


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_roles_and_cases(study, name):
    doc, segments = study[name]
    stem = Path(name).stem
    interviewer = [s for s in segments if s.speaker == "Interviewer"]
    participant = [s for s in segments if s.speaker == stem]
    assert interviewer and participant
    assert all(s.role == INTERVIEWER and not s.clusterable and s.case is None for s in interviewer)
    assert all(s.role == PARTICIPANT and s.case == stem for s in participant)
    # Every substantive participant segment is clustered; short answers are kept as context.
    assert all(s.clusterable == (len(s.text.split()) >= 4) for s in participant)
    assert sum(s.clusterable for s in participant) >= 20
    # Title lines of Word files are neither participant nor interviewer.
    assert all(s.role == OTHER and not s.clusterable for s in segments if s.speaker is None)
    assert {s.case for s in segments if s.clusterable} == {stem}


# -- token limits ----------------------------------------------------------------------------------
def test_long_sentence_is_split_under_model_limit(tmp_path, ingester, segmenter, embedder):
    vocab = ("the psychotherapeutic commissioning arrangements for internet-delivered cognitive behavioural "
             "programmes across neighbouring integrated care boards were reconsidered and").split()
    words = [vocab[i % len(vocab)] for i in range(600)]
    sentence = " ".join(words) + "."
    assert embedder.count_tokens(sentence) > 2 * segmenter.max_tokens
    assert n_sentences(sentence) == 1
    doc = one_turn(ingester, tmp_path, sentence)
    pieces = participant_spans(segmenter, doc)
    assert len(pieces) >= 3
    for s in pieces:
        assert doc.text[s.start:s.end] == s.text
        assert embedder.count_tokens(s.text) <= segmenter.max_tokens
        assert s.clusterable
    assert " ".join(s.text for s in pieces).split() == sentence.split()


def test_long_group_is_cut_under_model_limit(tmp_path, ingester, segmenter, embedder):
    # Three sentences of few words but ~130 tokens each: one group by sentence and word count, yet too
    # many tokens for one segment, so the group itself must be cut.
    jargon = ("psychotherapeutic, internet-delivered, cognitive-behavioural self-help (iCBT/eCBT) programmes: "
              "NHS-commissioned, ICB-funded, PWP-supported")
    sentences = [f"Part {i} covered {jargon}, {jargon} and {jargon}." for i in range(3)]
    body = " ".join(sentences)
    assert len(body.split()) < segmenter.target_words
    assert all(embedder.count_tokens(x) < segmenter.max_tokens for x in sentences)
    assert embedder.count_tokens(body) > segmenter.max_tokens
    doc = one_turn(ingester, tmp_path, body)
    pieces = participant_spans(segmenter, doc)
    assert len(pieces) >= 2
    assert all(embedder.count_tokens(s.text) <= segmenter.max_tokens for s in pieces)
    assert all(doc.text[s.start:s.end] == s.text for s in pieces)
    assert " ".join(s.text for s in pieces) == body


# -- sentences and grouping ------------------------------------------------------------------------
def test_abbreviations_do_not_split():
    text = ("I was referred by Dr. Smith last spring. She suggested digital options, e.g. SilverCloud, "
            "and Mr. Jones agreed. We met at No. 10 Station Road, i.e. The Old Surgery, at approx. 9 am.")
    assert [text[s:e] for s, e in split_sentences(text)] == [
        "I was referred by Dr. Smith last spring.",
        "She suggested digital options, e.g. SilverCloud, and Mr. Jones agreed.",
        "We met at No. 10 Station Road, i.e. The Old Surgery, at approx. 9 am.",
    ]


def test_sentence_split_offsets_are_absolute():
    text = "Interviewer: Why? P01: It helped. A lot! Really? Yes\u2026 I think so."
    start = text.index("It helped")
    spans = split_sentences(text, start, len(text))
    assert [text[s:e] for s, e in spans] == ["It helped.", "A lot!", "Really?", "Yes\u2026", "I think so."]
    assert spans[0][0] == start


def test_no_as_an_answer_ends_a_sentence():
    # "No." the answer is a sentence; "No. 10" the abbreviation is not a sentence end.
    text = "No. We never had the budget for it. I said no. Then they found some money."
    assert [text[s:e] for s, e in split_sentences(text)] == [
        "No.", "We never had the budget for it.", "I said no.", "Then they found some money."]


def test_four_sentences_are_balanced_two_and_two(tmp_path, ingester, segmenter):
    assert segmenter.max_sentences == 3
    sentences = ["We started with a small pilot in one practice.",
                 "Uptake was slow for the first few months.",
                 "Then the local paper ran a story about it.",
                 "After that referrals doubled almost overnight."]
    doc = one_turn(ingester, tmp_path, " ".join(sentences))
    pieces = participant_spans(segmenter, doc)
    assert [s.text for s in pieces] == [" ".join(sentences[:2]), " ".join(sentences[2:])]
    assert [n_sentences(s.text) for s in pieces] == [2, 2]


@pytest.mark.parametrize("max_sentences", [1, 2, 3, 4])
def test_grouping_respects_max_sentences(tmp_path, ingester, cfg, embedder, max_sentences):
    segmenter = Segmenter.from_config({**cfg["segment"], "max_sentences": max_sentences},
                                      embedder.count_tokens, embedder.max_tokens)
    sentences = [f"Point number {w} about the service was raised again." for w in
                 "one two three four five six seven".split()]
    doc = one_turn(ingester, tmp_path, " ".join(sentences))
    pieces = participant_spans(segmenter, doc)
    counts = [n_sentences(s.text) for s in pieces]
    assert sum(counts) == 7
    assert all(1 <= n <= max_sentences for n in counts), counts
    assert len(pieces) == -(-7 // max_sentences)  # as few segments as the limit allows
    assert max(counts) - min(counts) <= 1  # and balanced


def test_target_words_sets_segment_length(tmp_path, ingester, cfg, embedder):
    # Three 20-word sentences: one segment at the default target, three at a 20-word target.
    sentences = [f"In year {n} we {'really ' * 7}tried to grow the online offer for people waiting." for n in range(3)]
    assert all(len(x.split()) == 20 for x in sentences)
    doc = one_turn(ingester, tmp_path, " ".join(sentences))
    lengths = {}
    for target in (100, 20):
        segmenter = Segmenter.from_config({**cfg["segment"], "target_words": target},
                                          embedder.count_tokens, embedder.max_tokens)
        lengths[target] = [n_sentences(s.text) for s in participant_spans(segmenter, doc)]
    assert lengths == {100: [3], 20: [1, 1, 1]}


def test_long_first_sentence_does_not_push_others_over_the_limit(tmp_path, ingester, segmenter):
    # One long sentence then five short ones: word balance must not leave 5 sentences in one segment.
    long = ("The thing you have to understand about our area is that " +
            "the waiting list for step three psychological therapy has grown every single month " * 5).strip() + "."
    shorts = ["It was hard.", "We tried.", "It failed.", "Then we tried again.", "It worked."]
    doc = one_turn(ingester, tmp_path, " ".join([long, *shorts]))
    pieces = participant_spans(segmenter, doc)
    counts = [n_sentences(s.text) for s in pieces]
    assert sum(counts) == 6
    assert all(1 <= n <= segmenter.max_sentences for n in counts), counts


# -- roles and clustering --------------------------------------------------------------------------
def test_interviewer_segments_are_context_only(tmp_path, ingester, segmenter):
    path = tmp_path / "roles.txt"
    path.write_text("Moderator: What has changed since the pandemic for your team and your patients?\n"
                    "Dana: People accept video sessions now, which they never did before 2020.\n"
                    "Interviewer 2: And the online programmes, what about those now?\n"
                    "Dana: Those grew too, mostly for mild anxiety and low mood.\n", encoding="utf-8")
    segments = segmenter.segment_document(ingester.read(path))
    roles = [(s.speaker, s.role, s.clusterable) for s in segments]
    assert roles == [("Moderator", INTERVIEWER, False), ("Dana", PARTICIPANT, True),
                     ("Interviewer 2", INTERVIEWER, False), ("Dana", PARTICIPANT, True)]
    assert [s.case for s in segments] == [None, "Dana", None, "Dana"]


@pytest.mark.parametrize("filler", ["Yes.", "Sure, go ahead.", "Mm-hm.", "No, not really."])
def test_short_fillers_not_clusterable(tmp_path, ingester, segmenter, filler):
    doc = one_turn(ingester, tmp_path, filler)
    pieces = participant_spans(segmenter, doc)
    assert [(s.text, s.clusterable, s.case) for s in pieces] == [(filler, False, "P01")]


def test_every_answer_of_a_csv_is_clustered_however_short(tmp_path, ingester, segmenter):
    """A CSV row is an answer: "Nothing." and "Friendly staff" are clustered as a paragraph is; a row cut
    into pieces keeps min_words for each piece, and a short transcript turn stays context."""
    long_answer = " ".join(f"The ward was clean and the staff explained everything on day {i}." for i in range(12))
    path = tmp_path / "answers.csv"
    path.write_text(f'answer\nNothing.\nFriendly staff\n"{long_answer} Thanks."\n', encoding="utf-8")
    doc = ingester.read(path)
    segments = participant_spans(segmenter, doc)
    assert [(s.text, s.clusterable) for s in segments[:2]] == [("Nothing.", True), ("Friendly staff", True)]
    rest = segments[2:]
    assert len(rest) >= 2 and all(s.clusterable == (len(s.text.split()) >= 4) for s in rest)
    assert Segmenter(answer_min_words=3).segment_document(doc)[0].clusterable is False
    assert participant_spans(segmenter, one_turn(ingester, tmp_path, "Friendly staff"))[0].clusterable is False


def test_turn_index_and_speaker_kept(tmp_path, ingester, segmenter):
    path = tmp_path / "P03.txt"
    path.write_text("Interviewer: First question?\n\nP03: First answer here, fairly short.\n\n"
                    "Second paragraph of the same answer, still P03.\n\nInterviewer: Next?\n\n"
                    "P03: Last answer of the day, thank you.\n", encoding="utf-8")
    doc = ingester.read(path)
    segments = segmenter.segment_document(doc)
    assert [(s.speaker, s.turn_index) for s in segments] == [
        ("Interviewer", 0), ("P03", 1), ("P03", 1), ("Interviewer", 2), ("P03", 3)]
    assert all(doc.text[s.start:s.end] == s.text for s in segments)
