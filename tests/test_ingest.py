"""Tests for pipeline.ingest.read: every supported format, edge cases and bad input, on real files.

Files are written to ``tmp_path`` by the tests themselves; the example study under
``examples/ipt-study/transcripts`` is read as it is. No mocks.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.ingest.read import Document, IngestError, Ingester
from pipeline.ingest.segment import INTERVIEWER, PARTICIPANT, Segmenter

from conftest import EXAMPLE_FILES, TRANSCRIPTS as EXAMPLES


# -- helpers ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ingester(cfg) -> Ingester:
    return Ingester.from_config(cfg["ingest"])


@pytest.fixture(scope="module")
def segmenter(cfg) -> Segmenter:
    # Role and case logic only; token limits are exercised with the real model in test_segment.py.
    return Segmenter.from_config(cfg["segment"])


@pytest.fixture(scope="module")
def study(ingester):
    return ingester.collect([EXAMPLES])


@pytest.fixture(scope="module")
def study_docs(study) -> dict[str, Document]:
    return {d.name: d for d in study.documents}


def turn_texts(doc: Document) -> list[tuple[str | None, str]]:
    """(speaker, text) of every paragraph of ``doc``."""
    return [(t.speaker, doc.text[t.start:t.end]) for t in doc.turns]


def speaker_turns(doc: Document) -> list[tuple[str | None, str]]:
    """Whole speaker turns: paragraphs with the same turn index joined by a blank line."""
    joined: dict[int, tuple[str | None, list[str]]] = {}
    for t in doc.turns:
        joined.setdefault(t.index, (t.speaker, []))[1].append(doc.text[t.start:t.end])
    return [(speaker, "\n\n".join(parts)) for _, (speaker, parts) in sorted(joined.items())]


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# -- the example study -----------------------------------------------------------------------------
def test_example_study_reads_every_file(study):
    assert EXAMPLE_FILES == [f"P{i:02d}.{ext}" for i, ext in
                             zip(range(1, 11), "txt txt docx vtt txt docx vtt txt docx vtt".split())]
    assert sorted(d.name for d in study.documents) == EXAMPLE_FILES
    assert study.skipped == ()


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_file_speakers_and_turns(study_docs, name):
    doc = study_docs[name]
    stem = Path(name).stem
    assert doc.format == Path(name).suffix.lstrip(".")
    assert len(doc.sha256) == 64
    labelled = [t for t in doc.turns if t.speaker is not None]
    # Only a title line before the first labelled turn (Word files) may lack a speaker.
    unlabelled = [t for t in doc.turns if t.speaker is None]
    assert all(t.start < labelled[0].start for t in unlabelled)
    assert len(unlabelled) <= 1

    counts = Counter(t.speaker for t in labelled)
    assert set(counts) == {"Interviewer", stem}
    turns = speaker_turns(doc)
    turns = [(s, text) for s, text in turns if s is not None]
    # The issue asks for 30-80 speaker turns per interview, both sides well represented.
    assert 30 <= len(turns) <= 80
    assert min(counts.values()) >= 15
    # An interview alternates: two turns in a row by one speaker would mean a merge failed.
    speakers = [s for s, _ in turns]
    assert all(a != b for a, b in zip(speakers, speakers[1:])), speakers
    for speaker, text in turns:
        assert text.strip() == text and text, (speaker, text)
        # The label itself is never part of the turn's text.
        assert not re.match(rf"^\**\s*(Interviewer|{stem})\s*\**\s*:", text), text
    # Every turn is a span of the normalised text.
    for t in doc.turns:
        assert 0 <= t.start < t.end <= len(doc.text)
    starts = [t.start for t in doc.turns]
    assert starts == sorted(starts)


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_file_text_is_normalised(study_docs, name):
    text = study_docs[name].text
    assert "\r" not in text
    assert "\ufeff" not in text
    assert "\x00" not in text


def test_p05_cp1252_read_with_warning_naming_file(study, study_docs):
    doc = study_docs["P05.txt"]
    assert any("cp1252" in w or "Windows-1252" in w for w in doc.warnings)
    p05_warnings = [w for w in study.warnings if "P05.txt" in w]
    assert len(p05_warnings) == 1 and "Windows-1252" in p05_warnings[0]
    # Only P05 is not UTF-8.
    assert all("P05.txt" in w for w in study.warnings)
    # Curly apostrophes and en dashes decoded, not mojibake.
    assert "I\u2019m a GP partner" in doc.text
    assert "Drayhampton \u2013 been there" in doc.text
    assert "\u00e2\u20ac" not in doc.text


def test_p08_bom_and_crlf(study_docs):
    raw = (EXAMPLES / "P08.txt").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw  # the fixture is what it claims
    doc = study_docs["P08.txt"]
    assert "\r" not in doc.text and "\ufeff" not in doc.text
    assert doc.text.startswith("Interviewer: Is it all right if I record this?\n\nP08: ")
    # The BOM did not hide the first label.
    assert turn_texts(doc)[:2] == [("Interviewer", "Is it all right if I record this?"),
                                   ("P08", "Yes, that's fine.")]
    assert doc.warnings == ()


def test_p09_bold_run_labels(study_docs):
    import docx

    word = docx.Document(str(EXAMPLES / "P09.docx"))
    bold = [p.runs[0].text for p in word.paragraphs if p.runs and p.runs[0].bold]
    assert bold and set(bold) == {"Interviewer:", "P09:"}  # labels really are separate bold runs
    doc = study_docs["P09.docx"]
    texts = turn_texts(doc)
    assert texts[1] == ("Interviewer", "Thanks for agreeing to talk to me. Are you okay with this being recorded?")
    assert texts[2] == ("P09", "Yes, no problem.")
    assert sum(1 for s, _ in texts if s in ("Interviewer", "P09")) == len(bold)


def _expected_caption_turns(path: Path) -> tuple[int, list[tuple[str, str]]]:
    """Read a .vtt independently of the ingester: (number of cues, merged (speaker, text) turns)."""
    blocks = [b for b in path.read_text(encoding="utf-8").split("\n\n") if "-->" in b]
    cues: list[tuple[str, str]] = []
    for block in blocks:
        body = " ".join(block.split("\n")[[i for i, l in enumerate(block.split("\n")) if "-->" in l][0] + 1:])
        voice = re.fullmatch(r"<v ([^>]+)>(.*?)</v>", body.strip())
        if voice:
            cues.append((voice.group(1), " ".join(voice.group(2).split())))
        else:
            label, _, rest = body.partition(": ")
            cues.append((label.strip(), " ".join(rest.split())))
    merged: list[tuple[str, list[str]]] = []
    for speaker, text in cues:
        if merged and merged[-1][0] == speaker:
            merged[-1][1].append(text)
        else:
            merged.append((speaker, [text]))
    return len(cues), [(s, " ".join(parts)) for s, parts in merged]


@pytest.mark.parametrize("name", ["P04.vtt", "P07.vtt", "P10.vtt"])
def test_captions_merge_cues_of_one_speaker(study_docs, name):
    raw = (EXAMPLES / name).read_text(encoding="utf-8")
    if name == "P10.vtt":
        assert "<v " not in raw and "\nP10: " in raw  # Zoom prefixes
    else:
        assert "<v Interviewer>" in raw  # Teams voice tags
    n_cues, expected = _expected_caption_turns(EXAMPLES / name)
    doc = study_docs[name]
    got = turn_texts(doc)
    assert n_cues > len(got)  # some cues were merged
    assert got == expected
    assert [t.index for t in doc.turns] == list(range(len(doc.turns)))
    assert "-->" not in doc.text and "<v" not in doc.text and "</v>" not in doc.text


def test_p02_timestamps_not_in_turn_text(study_docs):
    doc = study_docs["P02.txt"]
    stamp = re.compile(r"\[\d{2}:\d{2}:\d{2}\]")
    labelled_lines = [l for l in doc.text.split("\n") if stamp.match(l)]
    assert len(labelled_lines) >= 30  # the timestamps are still in the source text ...
    assert len(doc.turns) == len(labelled_lines)
    for speaker, text in turn_texts(doc):  # ... but in no turn
        assert not stamp.search(text), text
        assert speaker in ("Interviewer", "P02")
    assert turn_texts(doc)[0] == ("Interviewer", "Could you tell me a little about yourself and the service you manage?")


# -- .txt edge cases -------------------------------------------------------------------------------
def test_label_on_its_own_line(tmp_path, ingester):
    path = write(tmp_path / "own.txt",
                 "Interviewer:\nHow did the rollout go?\n\nP01:\nIt went well in the end, after a slow start.\n"
                 "We learned a lot.\n\nInterviewer:\nThanks.\n")
    doc = ingester.read(path)
    assert turn_texts(doc) == [
        ("Interviewer", "How did the rollout go?"),
        ("P01", "It went well in the end, after a slow start.\nWe learned a lot."),
        ("Interviewer", "Thanks."),
    ]
    assert [t.index for t in doc.turns] == [0, 1, 2]


def test_note_inside_turn_stays_text(tmp_path, ingester):
    path = write(tmp_path / "note.txt",
                 "Interviewer: How did it go?\nP01: It went well overall.\nNote: the participant laughed here.\n"
                 "Then we scaled it up across the county.\nInterviewer: Thanks.\nP01: No problem at all.\n")
    doc = ingester.read(path)
    assert [s for s, _ in turn_texts(doc)] == ["Interviewer", "P01", "Interviewer", "P01"]
    assert turn_texts(doc)[1] == ("P01", "It went well overall.\nNote: the participant laughed here.\n"
                                         "Then we scaled it up across the county.")


def test_unlabelled_text_is_one_participant(tmp_path, ingester, segmenter):
    path = write(tmp_path / "diary-07.txt",
                 "I think online therapy works for some people. It is not for everyone though.\n\n"
                 "We saw long waiting lists during the pandemic: digital options helped a lot.\n")
    doc = ingester.read(path)
    assert [t.speaker for t in doc.turns] == [None, None]
    segments = segmenter.segment_document(doc)
    assert segments
    assert {s.case for s in segments} == {"diary-07"}
    assert {s.role for s in segments} == {PARTICIPANT}
    assert all(s.clusterable for s in segments)


def test_preamble_is_not_participant_text(tmp_path, ingester, segmenter):
    path = write(tmp_path / "int02.txt",
                 "Interview with a service manager, 12 March 2023\nLocation: Leeds, by video\n\n"
                 "Interviewer: Tell me about your service.\n"
                 "P02: We run a talking therapies service across two boroughs.\n"
                 "Interviewer: Thanks.\nP02: You're welcome, happy to help with the study.\n")
    doc = ingester.read(path)
    assert turn_texts(doc)[0] == (None, "Interview with a service manager, 12 March 2023\nLocation: Leeds, by video")
    segments = segmenter.segment_document(doc)
    participant = [s.text for s in segments if s.role == PARTICIPANT]
    assert participant == ["We run a talking therapies service across two boroughs.",
                           "You're welcome, happy to help with the study."]
    preamble = [s for s in segments if s.speaker is None]
    assert preamble and all(not s.clusterable and s.role != PARTICIPANT and s.case is None for s in preamble)


def test_generic_label_case_is_file_stem(tmp_path, ingester, segmenter):
    path = write(tmp_path / "resp-114.txt",
                 "Interviewer: Tell me about your service.\n"
                 "Respondent: We run a talking therapies service across two boroughs.\n"
                 "Interviewer: Thanks.\nRespondent: You're welcome, happy to help with the study.\n")
    doc = ingester.read(path)
    assert [t.speaker for t in doc.turns] == ["Interviewer", "Respondent", "Interviewer", "Respondent"]
    segments = segmenter.segment_document(doc)
    assert {s.case for s in segments if s.role == PARTICIPANT} == {"resp-114"}
    assert {s.case for s in segments if s.role == INTERVIEWER} == {None}


def test_focus_group_one_case_per_speaker(tmp_path, ingester, segmenter):
    path = write(tmp_path / "focus-group-1.txt",
                 "Moderator: Welcome everyone. What do you think of online therapy?\n"
                 "Alice: I think it works well for anxiety in younger people.\n"
                 "Bob: I am less sure, older patients struggle with the apps.\n"
                 "Moderator: Why is that?\n"
                 "Alice: Some of them have never used a smartphone before.\n"
                 "Bob: And broadband in rural areas is patchy at best.\n"
                 "Chidi Okafor: Cost matters too, data is not free for everyone.\n"
                 "Chidi Okafor: Sorry, and devices are shared in many homes.\n")
    doc = ingester.read(path)
    assert [t.speaker for t in doc.turns] == ["Moderator", "Alice", "Bob", "Moderator", "Alice", "Bob",
                                              "Chidi Okafor", "Chidi Okafor"]
    segments = segmenter.segment_document(doc)
    by_case = Counter(s.case for s in segments if s.clusterable)
    assert by_case == {"Alice": 2, "Bob": 2, "Chidi Okafor": 2}
    assert all(s.role == INTERVIEWER and not s.clusterable for s in segments if s.speaker == "Moderator")


NAMED = ("Jane Smith: Thanks for joining. How long have you worked in the service?\n"
         "Amir Khan: About six years now, mostly in the community team.\n"
         "Jane Smith: What changed when the online programme came in?\n"
         "Amir Khan: The waiting list went down, but some people never logged in at all.\n"
         "Jane Smith: Why do you think that was?\n"
         "Amir Khan: Many of them had no device of their own, or shared one with the family.\n"
         "Jane Smith: That makes sense. And the staff?\n"
         "Amir Khan: They were wary at first. Would you trust an app with a patient at risk? Most came round.\n")


def test_a_named_interviewer_is_found_by_their_questions(tmp_path, ingester, segmenter):
    """A Teams or Zoom transcript names people: no label matches interviewer_pattern, so the interviewer's
    questions would be clustered with the answers. The one speaker asking in most turns, while the other
    rarely does, is taken as the interviewer, with a note that gives the figures."""
    doc = ingester.read(write(tmp_path / "call-03.txt", NAMED))
    asker = segmenter.questioner(doc)
    assert (asker.speaker, asker.questions, asker.turns) == ("Jane Smith", 4, 4)
    assert asker.note("call-03.txt") == (
        "call-03.txt: 'Jane Smith' taken as the interviewer (4 of 4 turns ask a question; kept as context, not "
        "clustered); name the interviewer in segment.interviewer_pattern to choose otherwise")
    segments = segmenter.segment_document(doc)
    assert all(s.role == INTERVIEWER and not s.clusterable for s in segments if s.speaker == "Jane Smith")
    assert {s.case for s in segments if s.clusterable} == {"Amir Khan"}
    # not where both ask as much, nor where a label already says who interviews, nor when switched off
    both = NAMED.replace("Most came round.", "Did it work?").replace("at all.", "at all, why?").replace(
        "family.", "family, no?")
    for other, cut in ((both, segmenter), (NAMED.replace("Jane Smith:", "Interviewer:"), segmenter),
                       (NAMED, replace(segmenter, interviewer_question_share=None))):
        doc = ingester.read(write(tmp_path / "call-04.txt", other))
        assert cut.questioner(doc) is None
    assert all(s.role == PARTICIPANT for s in replace(segmenter, interviewer_question_share=None)
               .segment_document(doc) if s.speaker)


def test_numbered_participants_in_one_file_stay_separate_cases(tmp_path, ingester, segmenter):
    """P1/P2 in one focus-group file are two people, not one case named after the file."""
    path = write(tmp_path / "group.txt",
                 "Facilitator: What stops people using the apps?\n"
                 "P1: Most of our older clients have no smartphone at all.\n"
                 "P2: For me the cost of mobile data is the real barrier here.\n"
                 "Participant 3: My broadband drops out every evening in the village.\n")
    segments = segmenter.segment_document(ingester.read(path))
    assert {s.case for s in segments if s.clusterable} == {"P1", "P2", "Participant 3"}


def test_otter_style_speaker_and_time_on_their_own_line(tmp_path, ingester):
    path = write(tmp_path / "otter.txt",
                 "Interviewer  0:03\nSo how was the roll-out?\n\n"
                 "Jane Smith  0:10\nIt was long. Very long indeed.\n\nInterviewer  1:02:20\nAnd then?\n")
    doc = ingester.read(path)
    assert [(t.speaker, doc.text[t.start:t.end]) for t in doc.turns] == [
        ("Interviewer", "So how was the roll-out?"), ("Jane Smith", "It was long. Very long indeed."),
        ("Interviewer", "And then?")]


SAID = [("Interviewer", "How long did you wait?"), ("P04", "Nine months, and nobody rang me back."),
        ("Interviewer", "And then?"), ("P04", "Then the letters came all at once.")]


@pytest.mark.parametrize("layout, text", [
    ("notes in parentheses", "Interviewer (IV): How long did you wait?\n"
                             "P04 (female, 45): Nine months, and nobody rang me back.\n"
                             "Interviewer (IV): And then?\nP04: Then the letters came all at once.\n"),
    ("brackets", "[Interviewer]: How long did you wait?\n[P04]: Nine months, and nobody rang me back.\n"
                 "[Interviewer]: And then?\n[P04]: Then the letters came all at once.\n"),
    ("brackets without a colon", "[Interviewer] How long did you wait?\n[P04] Nine months, and nobody rang me "
                                 "back.\n[Interviewer] And then?\n[P04] Then the letters came all at once.\n"),
    ("tab", "Interviewer\tHow long did you wait?\nP04\tNine months, and nobody rang me back.\n"
            "Interviewer\tAnd then?\nP04\tThen the letters came all at once.\n"),
    ("label alone on its line", "INTERVIEWER\nHow long did you wait?\n\nP04\nNine months, and nobody rang me "
                                "back.\n\nINTERVIEWER\nAnd then?\n\nP04\nThen the letters came all at once.\n"),
])
def test_common_transcript_layouts_give_the_same_turns(tmp_path, ingester, segmenter, layout, text):
    """Layouts transcription services and research teams use: a note after the label, brackets, a tab
    instead of a colon, the label alone above the words. Each gives the same speakers and words, and the
    interviewer stays context."""
    doc = ingester.read(write(tmp_path / "P04.txt", text))
    assert [(s.capitalize() if s.isupper() else s, said) for s, said in turn_texts(doc)] == SAID
    segments = segmenter.segment_document(doc)
    assert [s.text for s in segments if s.clusterable] == [SAID[1][1], SAID[3][1]]
    assert {s.case for s in segments if s.clusterable} == {"P04"}


def test_teams_cues_with_the_name_on_the_next_line(tmp_path, ingester):
    """Teams' transcript as text: a cue line ("0:0:3.450 --> 0:0:7.110"), the speaker's name alone on the
    next line, then the words. A caption text whose first line repeats after its cues is not a name, nor
    is a note in brackets at the start of lines ("[laughs]")."""
    path = write(tmp_path / "teams.txt",
                 "0:0:0.0 --> 0:0:3.450\nJane Smith\nHow long did you wait?\n\n"
                 "0:0:3.450 --> 0:0:7.110\nAmir Khan\nNine months, and nobody rang me back.\n\n"
                 "0:0:7.110 --> 0:0:8.0\nJane Smith\nAnd then?\n\n"
                 "0:0:8.0 --> 0:0:11.20\nAmir Khan\nThen the letters came all at once.\n")
    assert [s for s, _ in turn_texts(ingester.read(path))] == ["Jane Smith", "Amir Khan"] * 2
    captions = write(tmp_path / "captions.txt",
                     "00:01 --> 00:04\nYeah\nthe wait was long\n\n00:05 --> 00:07\nYeah\nand nobody rang\n\n"
                     "00:08 --> 00:09\nso what then\nthe letters came\n\n00:10 --> 00:12\nwell\nall at once\n\n"
                     "00:13 --> 00:15\nit was fine\nin the end\n")
    assert {s for s, _ in turn_texts(ingester.read(captions))} == {None}
    noted = write(tmp_path / "noted.txt", "[laughs] It was long.\n[laughs] Very long.\n[inaudible] then more.\n")
    assert {s for s, _ in turn_texts(ingester.read(noted))} == {None}  # a note in brackets is not a speaker


def test_csv_rows_with_extra_fields_are_warned_about(tmp_path, ingester):
    path = write(tmp_path / "one-col.csv", "comment\nGood, thanks\nFine\n")
    doc = ingester.read(path)
    assert any("1 rows have more fields than the header" in w for w in doc.warnings)


# -- other formats ---------------------------------------------------------------------------------
def test_srt(tmp_path, ingester):
    path = write(tmp_path / "call.srt",
                 "1\n00:00:01,000 --> 00:00:04,000\nInterviewer: How long have you worked here?\n\n"
                 "2\n00:00:04,500 --> 00:00:08,000\nP11: About six years now,\nmostly in primary care.\n\n"
                 "3\n00:00:08,100 --> 00:00:12,000\nP11: Before that I was in a hospital trust.\n\n"
                 "4\n00:00:12,500 --> 00:00:14,000\nInterviewer: Thanks.\n")
    doc = ingester.read(path)
    assert doc.format == "srt"
    assert turn_texts(doc) == [
        ("Interviewer", "How long have you worked here?"),
        ("P11", "About six years now, mostly in primary care. Before that I was in a hospital trust."),
        ("Interviewer", "Thanks."),
    ]
    assert "-->" not in doc.text and "00:00" not in doc.text


def test_markdown(tmp_path, ingester, segmenter):
    path = write(tmp_path / "P12.md",
                 "# Interview P12\n\n**Interviewer:** How is the service going?\n\n"
                 "**P12:** Really well, our waiting list has halved since January.\n\n"
                 "**Interviewer:** Why?\n\n**P12:** We added guided self-help online for mild anxiety.\n")
    doc = ingester.read(path)
    assert doc.format == "md"
    assert turn_texts(doc)[1:] == [
        ("Interviewer", "How is the service going?"),
        ("P12", "Really well, our waiting list has halved since January."),
        ("Interviewer", "Why?"),
        ("P12", "We added guided self-help online for mild anxiety."),
    ]
    segments = segmenter.segment_document(doc)
    assert [s.text for s in segments if s.clusterable] == [
        "Really well, our waiting list has halved since January.",
        "We added guided self-help online for mild anxiety."]
    assert all(s.role != PARTICIPANT for s in segments if "# Interview" in s.text)


@pytest.mark.parametrize("encoding,bom", [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff")])
def test_utf16_with_bom(tmp_path, ingester, encoding, bom):
    text = "Interviewer: Qu'en pensez-vous ?\r\nP13: Le caf\u00e9 est tr\u00e8s bon \u2013 merci.\r\n"
    path = tmp_path / f"P13-{encoding}.txt"
    path.write_bytes(bom + text.encode(encoding))
    doc = ingester.read(path)
    assert doc.warnings == ()
    assert "\ufeff" not in doc.text and "\r" not in doc.text
    assert turn_texts(doc) == [("Interviewer", "Qu'en pensez-vous ?"),
                               ("P13", "Le caf\u00e9 est tr\u00e8s bon \u2013 merci.")]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom_is_read_from_its_bytes(tmp_path, ingester, encoding):
    text = "Interviewer: How was it?\nP14: The caf\u00e9 was fine, the wait was long.\n"
    path = tmp_path / f"P14-{encoding}.txt"
    path.write_bytes(text.encode(encoding))
    doc = ingester.read(path)
    assert turn_texts(doc) == [("Interviewer", "How was it?"), ("P14", "The caf\u00e9 was fine, the wait was long.")]
    assert doc.warnings == (f"no byte-order mark; read as {encoding.upper()} from its bytes",)


def test_broken_utf16_is_skipped_by_name_and_the_rest_goes_on(tmp_path, ingester):
    """A UTF-16 file cut mid-character (odd byte count) or holding a lone surrogate is skipped with where
    it breaks; no byte of its text reaches the reason, and the other files are read."""
    secret = "P15: My neighbour Mrs Example told me about the clinic."
    (tmp_path / "truncated.txt").write_bytes(b"\xff\xfe" + secret.encode("utf-16-le")[:-1])
    (tmp_path / "surrogate.txt").write_bytes(b"\xff\xfe" + secret.encode("utf-16-le") + b"\x00\xd8A\x00")
    (tmp_path / "good.txt").write_text("Interviewer: And then?\nP16: Then it got better.\n", encoding="utf-8")
    result = ingester.collect([tmp_path])
    assert [d.name for d in result.documents] == ["good.txt"]
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert set(reasons) == {"truncated.txt", "surrogate.txt"}
    for reason in reasons.values():
        assert reason.startswith("broken UTF-16 (") and "re-save" in reason
        assert "neighbour" not in reason and "Example" not in reason


def test_docx_two_column_table(tmp_path, ingester, segmenter):
    import docx

    word = docx.Document()
    word.add_paragraph("Interview P20, community mental health team")
    table = word.add_table(rows=0, cols=2)
    rows = [
        ("Interviewer", "How do referrals reach you?"),
        ("P20", "Mostly through GPs, and self-referral online has grown a lot since 2020."),
        ("Interviewer:", "And waiting times?"),
        ("P20:", "About six weeks for step two at the moment. Step three is much longer."),
    ]
    for label, said in rows:
        cells = table.add_row().cells
        cells[0].text, cells[1].text = label, said
    path = tmp_path / "P20.docx"
    word.save(str(path))

    doc = ingester.read(path)
    assert doc.format == "docx"
    assert turn_texts(doc) == [(None, "Interview P20, community mental health team")] + [
        (label.rstrip(":"), said) for label, said in rows]
    segments = segmenter.segment_document(doc)
    assert [s.text for s in segments if s.role == PARTICIPANT] == [rows[1][1], rows[3][1]]
    assert {s.case for s in segments if s.role == PARTICIPANT} == {"P20"}


def docx_with_body(path: Path, body: str) -> Path:
    """A real .docx (python-docx's own package) whose body is ``body``, WordprocessingML as Word writes it."""
    import io
    import zipfile

    import docx

    buffer = io.BytesIO()
    docx.Document().save(buffer)
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "word/document.xml":
                head, rest = data.split(b"<w:body>", 1)
                data = head + b"<w:body>" + body.encode() + rest[rest.index(b"<w:sectPr"):]  # keeps the section
            out.writestr(item.filename, data)
    return path


def test_docx_tracked_changes_content_controls_and_smart_tags_are_read_as_word_shows_them(tmp_path, ingester):
    """A transcript corrected with Track Changes keeps its corrections in w:ins / w:moveTo; templates wrap
    answers in content controls; python-docx's Paragraph.text dropped all of those words. Read with every
    change accepted: insertions and moved-in text in, deletions and moved-away text out, in table cells too."""
    when = 'w:author="Transcriber" w:date="2024-03-01T10:00:00Z"'

    def run(text: str) -> str:
        return f'<w:r><w:t xml:space="preserve">{text}</w:t></w:r>'

    def change(kind: str, n: int, text: str) -> str:
        inner = f'<w:r><w:delText xml:space="preserve">{text}</w:delText></w:r>' if kind == "del" else run(text)
        return f'<w:{kind} w:id="{n}" {when}>{inner}</w:{kind}>'

    def para(*parts: str) -> str:
        return "<w:p>" + "".join(parts) + "</w:p>"

    smart = '<w:smartTag w:uri="urn:schemas-microsoft-com:office:smarttags" w:element="place">'
    body = "".join([
        para(run("Interviewer: How long did you wait?")),
        para(run("P07: About "), change("del", 1, "three"), change("ins", 2, "nine"),
             run(" months, and nobody "), change("ins", 3, "ever "), run("rang me back.")),
        '<w:sdt><w:sdtPr><w:alias w:val="Answer"/></w:sdtPr><w:sdtContent>',
        para(run("Interviewer: And the therapy itself?")),
        para(run("P07: The "), smart, run("Drayhampton"), "</w:smartTag>", run(" hub was "),
             "<w:sdt><w:sdtContent>", run("excellent"), "</w:sdtContent></w:sdt>", run(".")),
        "</w:sdtContent></w:sdt>",
        para(change("moveFrom", 4, "P07: Moved away.")),
        para(change("moveTo", 5, "P07: Moved here.")),
        "<w:tbl><w:tblGrid><w:gridCol/><w:gridCol/></w:tblGrid><w:tr>",
        "<w:tc>", para(run("P07")), "</w:tc>",
        "<w:tc>", para(run("The letters "), change("ins", 6, "finally "), run("came.")), "</w:tc>",
        "</w:tr></w:tbl>",
    ])
    doc = ingester.read(docx_with_body(tmp_path / "P07.docx", body))
    assert turn_texts(doc) == [
        ("Interviewer", "How long did you wait?"),
        ("P07", "About nine months, and nobody ever rang me back."),
        ("Interviewer", "And the therapy itself?"),
        ("P07", "The Drayhampton hub was excellent."),
        ("P07", "Moved here."),
        ("P07", "The letters finally came."),
    ]
    assert "three" not in doc.text and "Moved away" not in doc.text


def zip_bomb_docx(path: Path, xml_mb: float, extra_member_mb: float = 0) -> Path:
    """A real .docx (python-docx's own) whose word/document.xml is inflated to ``xml_mb`` MB of repeated
    paragraphs, and optionally a media part of ``extra_member_mb`` MB of zero bytes: tens of KB on disk."""
    import io
    import zipfile

    import docx

    word = docx.Document()
    word.add_paragraph("P01: placeholder")
    buffer = io.BytesIO()
    word.save(buffer)
    paragraph = b"<w:p><w:r><w:t>P01: The waiting list was long and nobody called me back.</w:t></w:r></w:p>"
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "word/document.xml":
                head, tail = data.split(b"<w:body>", 1)
                data = head + b"<w:body>" + paragraph * int(xml_mb * 1e6 / len(paragraph)) + tail
            out.writestr(item.filename, data)
        if extra_member_mb:
            out.writestr("word/media/image1.png", bytes(int(extra_member_mb * 1e6)))
    return path


def test_docx_zip_bomb_is_skipped_naming_the_limit_and_the_rest_goes_on(tmp_path):
    """20 MB of XML in a .docx of a few tens of KB passes max_file_mb (the compressed size) but not
    max_xml_mb, counted while unpacking; a small XML beside 30 MB of other parts passes max_xml_mb but not
    max_unpacked_mb. Both are skipped by name with the setting in the reason; the other files are read."""
    folder = tmp_path / "study"
    folder.mkdir()
    bomb = zip_bomb_docx(folder / "bomb.docx", 20)
    padded = zip_bomb_docx(folder / "padded.docx", 0.01, extra_member_mb=30)
    small = zip_bomb_docx(folder / "small.docx", 0.01)
    write(folder / "good.txt", "Interviewer: And then?\nP16: Then it got better.\n")
    assert bomb.stat().st_size < 200_000 and padded.stat().st_size < 200_000
    ingester = Ingester.from_config(
        load_config(overrides={"ingest": {"max_file_mb": 1, "max_xml_mb": 2, "max_unpacked_mb": 25}})["ingest"])

    result = ingester.collect([folder])

    assert [d.name for d in result.documents] == ["good.txt", "small.docx"]
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert reasons == {
        "bomb.docx": "Word file not read: part word/document.xml unpacks to more than the 2 MB allowed for one "
                     "XML part (ingest.max_xml_mb): a ZIP bomb, or raise the limit",
        "padded.docx": "Word file not read: its parts unpack to more than the 25 MB allowed in all "
                       "(ingest.max_unpacked_mb): a ZIP bomb, or raise the limit"}
    doc = result.documents[1]
    assert len(doc.turns) > 100 and {doc.text[t.start:t.end] for t in doc.turns} == {
        "The waiting list was long and nobody called me back.", "placeholder"}


# -- CSV -------------------------------------------------------------------------------------------
SURVEY = (
    "rid,resp,org,question,answer,ignored\n"
    'r1,A1,Trust X,q1,"The app was easy to use. Staff were friendly. But the wait was long. '
    'I nearly gave up. Then it got better, and the therapist was excellent. I would recommend it.",x\n'
    "r2,A2,Trust Y,q1,,x\n"
    "r3,A2,Trust Y,q2,   ,x\n"
    "r4,A1,Trust X,q2,Parking at the clinic is a nightmare.,x\n"
)


def csv_ingester(**columns) -> Ingester:
    return Ingester.from_config(load_config(overrides={"ingest": {"csv": columns}})["ingest"])


def test_csv_columns_row_ids_and_attributes(tmp_path, segmenter):
    ingester = csv_ingester(text_column="answer", case_column="resp", row_id_column="rid",
                            attribute_columns=["org", "question"])
    doc = ingester.read(write(tmp_path / "survey.csv", SURVEY))
    assert doc.format == "csv"
    # Empty and blank answers are skipped; the rest keep their row's id, case and attributes.
    assert [(t.row_id, t.case, t.attributes) for t in doc.turns] == [
        ("r1", "A1", (("org", "Trust X"), ("question", "q1"))),
        ("r4", "A1", (("org", "Trust X"), ("question", "q2"))),
    ]
    assert doc.text[doc.turns[1].start:doc.turns[1].end] == "Parking at the clinic is a nightmare."
    segments = segmenter.segment_document(doc)
    first_row = [s for s in segments if s.row_id == "r1"]
    assert len(first_row) >= 2  # a long answer gives several segments ...
    for s in first_row:  # ... and every one of them joins back to its row
        assert s.case == "A1" and s.attributes == (("org", "Trust X"), ("question", "q1"))
        assert s.role == PARTICIPANT
    assert " ".join(s.text for s in first_row).split() == doc.text[doc.turns[0].start:doc.turns[0].end].split()
    assert {s.row_id for s in segments} == {"r1", "r4"}


def test_csv_with_several_open_questions(tmp_path, segmenter):
    """A survey export holds one column per open question (``--text-col`` repeated, or a list in the
    configuration): each answer is a segment of its own with its respondent, its row and the column it
    answers; an empty answer is skipped, and a column the file lacks is named."""
    survey = ("resp,q_good,q_better,site\nA1,Friendly staff,Shorter waits please,North\n"
              "A2,,More parking,South\nA3,Kind nurses,,North\n")
    path = write(tmp_path / "survey.csv", survey)
    ingester = csv_ingester(text_column=["q_good", "q_better"], case_column="resp", attribute_columns=["site"])
    doc = ingester.read(path)
    assert [(doc.text[t.start:t.end], t.case, t.row_id, t.attributes) for t in doc.turns] == [
        ("Friendly staff", "A1", "1", (("site", "North"), ("text column", "q_good"))),
        ("Shorter waits please", "A1", "1", (("site", "North"), ("text column", "q_better"))),
        ("More parking", "A2", "2", (("site", "South"), ("text column", "q_better"))),
        ("Kind nurses", "A3", "3", (("site", "North"), ("text column", "q_good"))),
    ]
    segments = segmenter.segment_document(doc)
    assert [(s.text, s.case) for s in segments if s.clusterable] == [
        ("Friendly staff", "A1"), ("Shorter waits please", "A1"), ("More parking", "A2"), ("Kind nurses", "A3")]
    with pytest.raises(IngestError, match="text column 'q_worse' not found; columns are: resp, q_good"):
        csv_ingester(text_column=["q_good", "q_worse"]).read(path)
    # one column named in a list reads as that column alone, without the extra attribute
    assert {t.attributes for t in csv_ingester(text_column=["q_good"]).read(path).turns} == {()}


def test_excel_survey_export_reads_as_its_csv_would(tmp_path, segmenter):
    """An .xlsx survey export (Microsoft Forms writes nothing else): the first sheet's first row is the
    header, ids typed as numbers and dates read as Excel shows them, empty answers skipped; a second sheet
    is named in a warning. A corrupt workbook and an old .xls are skipped naming the file."""
    from datetime import datetime

    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Form1"
    sheet.append(["ID", "Completion time", "What went well?", "What could be better?", "Site", "Share"])
    sheet.append([1, datetime(2024, 3, 1, 9, 30), "The nurses were kind.", "Parking", "North", 0.25])
    sheet.append([2, datetime(2024, 3, 2), None, "Shorter waits for the clinic", "South", 0.125])
    sheet.append([3.0, datetime(2024, 3, 3), "Everything was fine.", "", "North", 1])
    for row, shown in ((2, "0%"), (3, "0.0%"), (4, "0%")):
        sheet.cell(row, 6).number_format = shown
    book.create_sheet("Summary").append(["not read"])
    path = tmp_path / "forms.xlsx"
    book.save(path)
    ingester = csv_ingester(text_column=["What went well?", "What could be better?"], row_id_column="ID",
                            attribute_columns=["Completion time", "Site"])
    doc = ingester.read(path)
    assert doc.format == "xlsx"
    shares = csv_ingester(text_column="What went well?", attribute_columns=["Share"]).read(path)
    assert [dict(t.attributes)["Share"] for t in shares.turns] == ["25%", "100%"]  # as Excel shows them
    assert csv_ingester(text_column="Share").read(path).text.split() == ["25%", "12.5%", "100%"]
    assert [(doc.text[t.start:t.end], t.row_id, t.attributes) for t in doc.turns] == [
        ("The nurses were kind.", "1", (("Completion time", "2024-03-01 09:30:00"), ("Site", "North"),
                                        ("text column", "What went well?"))),
        ("Parking", "1", (("Completion time", "2024-03-01 09:30:00"), ("Site", "North"),
                          ("text column", "What could be better?"))),
        ("Shorter waits for the clinic", "2", (("Completion time", "2024-03-02"), ("Site", "South"),
                                               ("text column", "What could be better?"))),
        ("Everything was fine.", "3", (("Completion time", "2024-03-03"), ("Site", "North"),
                              ("text column", "What went well?"))),
    ]
    assert doc.warnings == ("read the first sheet 'Form1' only; the other 1 sheet(s) were not read",)
    assert all(s.clusterable for s in segmenter.segment_document(doc))

    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0 an old workbook")
    result = ingester.collect([tmp_path])
    assert [d.name for d in result.documents] == ["forms.xlsx"]
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert reasons["broken.xlsx"].startswith("not a readable Excel .xlsx file")
    assert reasons["old.xls"] == "old Excel .xls format is not supported; save it as .xlsx or .csv"


def test_text_col_repeated_on_the_command_line_is_a_list_of_columns():
    from flows.commands import build_parser
    from flows.options import config_from_args

    def columns(*argv: str):
        return config_from_args(build_parser().parse_args(["suggest", "s.csv", "--study", "s", *argv]))[
            "ingest"]["csv"]["text_column"]

    assert columns() is None
    assert columns("--text-col", "q1") == "q1"
    assert columns("--text-col", "q1", "--text-col", "q2") == ["q1", "q2"]


def test_csv_default_row_id_is_row_number(tmp_path, ingester):
    doc = ingester.read(write(tmp_path / "fft.csv", "comment,ward\nGreat staff,A\n,B\nFood was cold,C\n"))
    assert [(t.row_id, t.case, doc.text[t.start:t.end]) for t in doc.turns] == [
        ("1", "1", "Great staff"), ("3", "3", "Food was cold")]


def test_csv_semicolon_delimiter_sniffed(tmp_path, ingester):
    path = write(tmp_path / "semi.csv",
                 "id;Comment;ward\n1;Staff were kind, helpful and quick;A\n2;Food was cold, again;B\n"
                 "3;Parking is hard, very hard, and costly;A\n")
    doc = ingester.read(path)
    assert [doc.text[t.start:t.end] for t in doc.turns] == [
        "Staff were kind, helpful and quick", "Food was cold, again", "Parking is hard, very hard, and costly"]


def test_csv_auto_detected_comment_column(tmp_path, ingester):
    path = write(tmp_path / "auto.csv", 'id,Comment,score\n7,"Quick, clean; friendly",5\n8,Too slow,2\n')
    doc = ingester.read(path)
    assert [doc.text[t.start:t.end] for t in doc.turns] == ["Quick, clean; friendly", "Too slow"]


def test_csv_missing_text_column(tmp_path, ingester):
    path = write(tmp_path / "nocol.csv", "id,remark,ward\n1,hello there,A\n")
    with pytest.raises(IngestError) as info:
        ingester.read(path)
    assert "nocol.csv" in str(info.value) and info.value.path == str(path)
    assert "id, remark, ward" in info.value.reason

    named = csv_ingester(text_column="answer")
    with pytest.raises(IngestError) as info:
        named.read(path)
    assert "nocol.csv" in str(info.value)
    assert "'answer'" in info.value.reason and "id, remark, ward" in info.value.reason


# -- bad input -------------------------------------------------------------------------------------
def test_bad_input_is_skipped_with_reasons(tmp_path, ingester):
    folder = tmp_path / "study"
    (folder / "sub").mkdir(parents=True)
    (folder / ".git").mkdir()
    good = "Interviewer: Hello.\nP01: The waiting list has grown since the pandemic.\n"
    write(folder / "a-good.txt", good)
    write(folder / "sub" / "b-good.vtt", "WEBVTT\n\n00:00:01.000 --> 00:00:03.000\n<v P02>Online therapy helped us.</v>\n")
    write(folder / "z-copy.txt", good)                                     # duplicate of a-good.txt
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blank.md").write_bytes(b"  \n\n\t\n")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02PNG\x00" * 50)
    (folder / "corrupt.docx").write_bytes(os.urandom(2048))
    (folder / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + os.urandom(256))
    (folder / "locked.docx").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + os.urandom(256))  # as Word encrypts
    (folder / "scan.pdf").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    (folder / "undecodable.txt").write_bytes(b"Interviewer: caf\x81 \x8d\x90 hello\n")
    write(folder / "stamps.txt", "[00:00:01]\n\n[00:00:05]\n")              # nothing but timestamps
    write(folder / "nocol.csv", "id,remark\n1,fine\n")
    write(folder / "broken.vtt", "this is not a caption file\n")
    write(folder / ".hidden.txt", "P09: hidden file, never read.\n")
    write(folder / ".git" / "notes.txt", "P09: inside a hidden folder.\n")
    (folder / "~$lock.docx").write_bytes(b"\x00lock")
    missing = tmp_path / "not-there.txt"

    result = ingester.collect([folder, missing])

    assert [Path(d.path).name for d in result.documents] == ["a-good.txt", "b-good.vtt"]
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert len(reasons) == len(result.skipped)  # each file reported once
    assert set(reasons) == {"z-copy.txt", "empty.txt", "blank.md", "binary.txt", "corrupt.docx", "old.doc",
                            "locked.docx",
                            "scan.pdf", "undecodable.txt", "stamps.txt", "nocol.csv", "broken.vtt",
                            "not-there.txt"}
    expect = {
        "z-copy.txt": r"same content as .*a-good\.txt",
        "empty.txt": r"empty",
        "blank.md": r"empty",
        "binary.txt": r"binary",
        "corrupt.docx": r"Word|docx",
        "old.doc": r"\.doc\b.*not supported",
        "locked.docx": r"^Word file is password-protected \(encrypted\).*remove the password in Word",
        "scan.pdf": r"unsupported file type '\.pdf'",
        "undecodable.txt": r"encoding",
        "stamps.txt": r"no text",
        "nocol.csv": r"text column.*id, remark",
        "broken.vtt": r"not a valid \.vtt",
        "not-there.txt": r"no such file",
    }
    for name, pattern in expect.items():
        assert re.search(pattern, reasons[name]), (name, reasons[name])
    skipped_paths = {s.path for s in result.skipped}
    assert str(missing) in skipped_paths
    assert all(Path(p).parent in (folder, tmp_path) for p in skipped_paths)
    everything = {Path(d.path).name for d in result.documents} | set(reasons)
    assert not any(n.startswith((".", "~$")) or n == "notes.txt" for n in everything)


def test_read_names_file_in_error(tmp_path, ingester):
    path = tmp_path / "nul.txt"
    path.write_bytes(b"P01: a\x00b\n")
    with pytest.raises(IngestError) as info:
        ingester.read(path)
    assert str(info.value).startswith(str(path)) and "binary" in info.value.reason


def test_dangling_and_looping_symlinks_are_listed_as_skipped(tmp_path, ingester):
    """A link to a file that is gone, and links that point at each other, are named as skipped with the
    reason; a link to a real file is read like the file, and the rest of the folder goes on."""
    folder = tmp_path / "study"
    folder.mkdir()
    target = write(tmp_path / "outside.txt", "Interviewer: And then?\nP17: Then the letter came.\n")
    write(folder / "a-good.txt", "Interviewer: Hello.\nP01: The waiting list has grown.\n")
    (folder / "b-link.txt").symlink_to(target)
    (folder / "dangling.txt").symlink_to(tmp_path / "deleted.txt")
    (folder / "loop-1.txt").symlink_to(folder / "loop-2.txt")
    (folder / "loop-2.txt").symlink_to(folder / "loop-1.txt")
    (folder / "self.docx").symlink_to(folder / "self.docx")
    (tmp_path / "gone.md").symlink_to(tmp_path / "nowhere.md")

    result = ingester.collect([folder, tmp_path / "gone.md"])

    assert [Path(d.path).name for d in result.documents] == ["a-good.txt", "b-link.txt"]
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert len(reasons) == len(result.skipped)
    assert set(reasons) == {"dangling.txt", "loop-1.txt", "loop-2.txt", "self.docx", "gone.md"}
    for name in ("dangling.txt", "gone.md"):
        assert reasons[name].startswith("broken symbolic link: its target"), reasons[name]
    for name in ("loop-1.txt", "loop-2.txt", "self.docx"):
        assert reasons[name].startswith("symbolic link loop"), reasons[name]


def test_utf8_bom_before_windows_1252_text_is_dropped(tmp_path):
    """An editor that writes a UTF-8 byte-order mark before cp1252 text: the cp1252 fallback drops the
    mark, so the CSV's first column is found by its name and the text starts with the file's own."""
    survey = "respondent,comment\nR1,Caf\u00e9 staff were kind \u2013 thank you\nR2,Too slow\n"
    path = tmp_path / "bom-cp1252.csv"
    path.write_bytes(b"\xef\xbb\xbf" + survey.encode("cp1252"))
    doc = csv_ingester(text_column="comment", case_column="respondent").read(path)
    assert [(t.case, doc.text[t.start:t.end]) for t in doc.turns] == [
        ("R1", "Caf\u00e9 staff were kind \u2013 thank you"), ("R2", "Too slow")]
    assert any("Windows-1252" in w for w in doc.warnings)


# -- files as a real project folder has them (found by a QA pass over messy folders) ---------------
def test_a_repeated_note_is_never_a_speaker(tmp_path, ingester, segmenter):
    """A transcriber's "Note:" twice is still text of the participant's turn, not a participant of its own."""
    path = write(tmp_path / "P07.txt",
                 "Interviewer: How did you find the waiting time?\nP07: Long. Eighteen weeks before anyone called.\n"
                 "Note: participant became upset here, recording paused.\nInterviewer: Shall we carry on?\n"
                 "P07: Yes, the waiting was the hardest part of all.\nNote: recording resumed after a break.\n")
    doc = ingester.read(path)
    assert [s for s, _ in turn_texts(doc)] == ["Interviewer", "P07", "Interviewer", "P07"]
    assert {s.case for s in segmenter.segment_document(doc) if s.role == PARTICIPANT} == {"P07"}


def test_a_heading_a_survey_repeats_loses_no_column(tmp_path):
    """Two columns headed "Comments" (a CSV and an .xlsx, as Forms and Qualtrics write them): both are read,
    the second as "Comments (2)", with a warning; names match without the spaces around them."""
    import csv
    import io

    import openpyxl

    text = "id,Comments ,Rating,Comments\n1,Warm welcome,5,Parking was hard\n2,Kind staff,4,Long wait\n"
    csv_path = write(tmp_path / "dup.csv", text)
    book = openpyxl.Workbook()
    for row in csv.reader(io.StringIO(text)):
        book.active.append(row)
    xlsx_path = tmp_path / "dup.xlsx"
    book.save(xlsx_path)
    for path in (csv_path, xlsx_path):
        doc = csv_ingester(text_column=["Comments", "Comments (2)"], row_id_column=" id").read(path)
        assert [(doc.text[t.start:t.end], t.row_id) for t in doc.turns] == [
            ("Warm welcome", "1"), ("Parking was hard", "1"), ("Kind staff", "2"), ("Long wait", "2")]
        assert any("2 columns are headed 'Comments'" in w for w in doc.warnings)


def test_a_qualtrics_export_s_extra_header_rows_are_not_answers(tmp_path):
    path = write(tmp_path / "qualtrics.csv",
                 'ResponseId,Q2_TEXT\nResponse ID,Please tell us why you gave that score\n'
                 '"{""ImportId"":""_recordId""}","{""ImportId"":""QID2_TEXT""}"\n'
                 'R_1,The staff were kind.\nR_2,I waited too long.\n')
    doc = csv_ingester(text_column="Q2_TEXT", case_column="ResponseId").read(path)
    assert [(doc.text[t.start:t.end], t.case) for t in doc.turns] == [
        ("The staff were kind.", "R_1"), ("I waited too long.", "R_2")]
    assert any("Qualtrics" in w for w in doc.warnings)


def test_captions_a_cue_of_two_voices_and_a_cue_that_cannot_be_read(tmp_path, ingester):
    path = write(tmp_path / "call.vtt",
                 "WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n<v Sarah Jones>How did you find the sessions?</v>\n"
                 "<v Tom Brien>They were really helpful for my anxiety.</v>\n\n"
                 "00:00:05,000 --> 00:00:07,000\n<v Sarah Jones>And the app?</v>\n\n"
                 "00:00:08.000 --> 00:00:11.000\n<v Tom Brien>Easy to use, most days.</v>\n")
    doc = ingester.read(path)
    assert speaker_turns(doc) == [("Sarah Jones", "How did you find the sessions?"),
                                  ("Tom Brien", "They were really helpful for my anxiety. Easy to use, most days.")]
    assert any("1 of 3 cues could not be read" in w for w in doc.warnings)


def test_a_word_table_of_time_speaker_and_words(tmp_path, ingester, segmenter):
    """Transcription services deliver Time | Speaker | Text tables: the time is not the speaker."""
    import docx

    word = docx.Document()
    table = word.add_table(rows=0, cols=3)
    for cell, heading in zip(table.add_row().cells, ("Time", "Speaker", "Transcript")):
        cell.text = heading  # the heading row is not a turn
    rows = [("00:00:00", "Interviewer", "Is it all right if I record this?"),
            ("00:00:17", "P08", "Yes, go ahead, that is fine with me."),
            ("00:00:21", "Interviewer", "How long did you wait?"),
            ("00:00:25", "P08", "About four months for the first appointment.")]
    for row in rows:
        for cell, value in zip(table.add_row().cells, row):
            cell.text = value
    path = tmp_path / "P08.docx"
    word.save(str(path))
    doc = ingester.read(path)
    assert turn_texts(doc) == [(speaker, said) for _, speaker, said in rows]
    assert {s.case for s in segmenter.segment_document(doc) if s.role == PARTICIPANT} == {"P08"}


def test_files_of_one_name_in_two_folders_and_one_interview_in_two_formats(tmp_path, ingester, segmenter):
    """siteA/P01.txt and siteB/P01.txt are two people: stored under their paths (a quote names its file),
    unlabelled text a case each, with a warning. An interview as .docx and as the .txt saved from it is one
    interview: read once."""
    text_a = "We waited four months for the first appointment and nobody called in between.\n"
    text_b = "The online course suited me because I work nights and could do it at three in the morning.\n"
    write((tmp_path / "siteA").mkdir() or tmp_path / "siteA" / "P01.txt", text_a)
    write((tmp_path / "siteB").mkdir() or tmp_path / "siteB" / "P01.txt", text_b)
    twin = "Interviewer: How was it?\nP03: Better than I expected, honestly, once I got going with it.\n"
    write(tmp_path / "P03.txt", twin)
    import docx

    word = docx.Document()
    for line in twin.splitlines():
        word.add_paragraph(line)
    word.save(str(tmp_path / "P03.docx"))
    result = ingester.collect([tmp_path])
    assert sorted(d.name for d in result.documents) == ["P03.txt", "siteA/P01.txt", "siteB/P01.txt"]
    assert any("2 files are named P01.txt" in w for w in result.warnings)
    assert [s.reason for s in result.skipped if "P03" in s.path] == [
        f"same text as {next(d.path for d in result.documents if 'P03' in d.name)}; processed once"]
    cases = {s.case for d in result.documents if "P01" in d.name for s in segmenter.segment_document(d)}
    assert cases == {"siteA/P01", "siteB/P01"}


def test_a_linked_folder_is_read_and_a_link_back_up_is_not_followed(tmp_path, ingester):
    """A shared folder linked into the project (``batch2 -> /data/batch2``) is read; a link to a folder
    holding it (a loop) is listed as skipped, not followed."""
    outside = tmp_path / "shared" / "batch2"
    outside.mkdir(parents=True)
    write(outside / "P11.txt", "Interviewer: Hello.\nP11: The waiting list has grown since spring.\n")
    folder = tmp_path / "study"
    folder.mkdir()
    write(folder / "P01.txt", "Interviewer: Hello.\nP01: The letters came late every time.\n")
    (folder / "batch2").symlink_to(outside)
    (folder / "up").symlink_to(tmp_path)
    result = ingester.collect([folder])
    assert sorted(d.name for d in result.documents) == ["P01.txt", "P11.txt"]
    assert [(Path(s.path).name, s.reason.split(" (")[0]) for s in result.skipped] == [
        ("up", "link to a folder that holds it or was read already")]


def test_a_spreadsheet_whose_header_is_below_a_title(tmp_path):
    """A title row and merged group headings above the header: the first row naming the columns asked for
    is the header, with a warning."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Patient experience survey - exported 04/03/2024"])
    sheet.merge_cells("A1:C1")
    sheet.append([])
    sheet.append(["About you", None, "Your views"])
    sheet.append(["ID", "Site", "What could we improve?"])
    sheet.append([1, "North", "Shorter waits at reception."])
    sheet.append([2, "South", "More parking near the clinic."])
    path = tmp_path / "survey.xlsx"
    book.save(path)
    doc = csv_ingester(text_column="What could we improve?", row_id_column="ID").read(path)
    assert [(doc.text[t.start:t.end], t.row_id) for t in doc.turns] == [
        ("Shorter waits at reception.", "1"), ("More parking near the clinic.", "2")]
    assert any("as the header; the 3 row(s) above it" in w for w in doc.warnings)


def test_what_changed_among_the_files_since_the_last_run():
    from pipeline.ingest.changes import changes_line, file_changes

    before = [("P01.txt", "a"), ("P02.txt", "b"), ("P10.vtt", "c"), ("P11.txt", "d")]
    now = [("P01.txt", "a"), ("P02.txt", "b2"), ("P11_final.txt", "d"), ("P12.docx", "e")]
    changes = file_changes(before, now)
    assert changes == {"new": ["P12.docx"], "changed": ["P02.txt"], "renamed": ["P11.txt -> P11_final.txt"],
                       "gone": ["P10.vtt"]}
    assert changes_line(3, changes) == ("files since run 3: 1 new (P12.docx); 1 changed (P02.txt); 1 renamed "
                                        "(P11.txt -> P11_final.txt); 1 gone (P10.vtt)")
    assert changes_line(3, file_changes(before, before)) == ""


def test_files_of_one_name_in_different_folders_are_told_apart_by_their_paths():
    """The names a run records and its file-change line compare: two x.txt read alike before."""
    from pipeline.ingest.changes import changes_line, file_changes
    from pipeline.ingest.read import distinct_names

    paths = ["in/siteA/x.txt", "in/siteB/X.txt", "in/otter.txt"]
    assert distinct_names(paths) == {"in/siteA/x.txt": "siteA/x.txt", "in/siteB/X.txt": "siteB/X.txt",
                                     "in/otter.txt": "otter.txt"}
    before = [("siteA/x.txt", "a"), ("siteB/X.txt", "b"), ("otter.txt", "c")]
    now = [(distinct_names(["in/x.txt", "in/otter.txt"])[p], sha) for p, sha in (("in/x.txt", "a"), ("in/otter.txt", "c"))]
    assert changes_line(1, file_changes(before, now)) == "files since run 1: 1 renamed (siteA/x.txt -> x.txt); 1 gone (siteB/X.txt)"


def test_a_known_file_is_only_hashed_where_it_was_and_read_again_under_a_new_name(tmp_path, ingester):
    """A participant named after an unlabelled file takes the file's new name when the file is renamed."""
    (tmp_path / "R1.txt").write_text("The wait for a first appointment was far too long for me.\n", encoding="utf-8")
    first = ingester.collect([tmp_path])
    known = {d.sha256: d.path for d in first.documents}
    again = ingester.collect([tmp_path], known=known)
    assert again.documents == () and [k.path for k in again.known] == [str(tmp_path / "R1.txt")]
    (tmp_path / "R1.txt").rename(tmp_path / "R01.txt")
    renamed = ingester.collect([tmp_path], known=known)
    assert [(d.name, d.sha256) for d in renamed.documents] == [("R01.txt", first.documents[0].sha256)]
    segmenter = Segmenter()
    assert {s.case for s in segmenter.transform(first.documents)} == {"R1"}
    assert {s.case for s in segmenter.transform(renamed.documents)} == {"R01"}


def test_a_docx_s_footnotes_are_counted_and_a_web_page_named_docx_is_named(tmp_path, ingester):
    """python-docx reads the body alone: a transcriber's footnote is said to be unread, not lost silently.
    A web page saved under a .docx name is named as one."""
    import zipfile

    path = tmp_path / "P11.docx"
    docx_with_body(path, '<w:p><w:r><w:t>P11: The wait was long.</w:t></w:r></w:p>')
    notes = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:footnotes xmlns:w="http://schemas.'
             'openxmlformats.org/wordprocessingml/2006/main"><w:footnote w:type="separator" w:id="-1"><w:p/>'
             '</w:footnote><w:footnote w:type="continuationSeparator" w:id="0"><w:p/></w:footnote><w:footnote '
             'w:id="1"><w:p><w:r><w:t>P11 later said closer to twenty-six weeks.</w:t></w:r></w:p></w:footnote>'
             '</w:footnotes>')
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("word/footnotes.xml", notes)
    assert any("1 footnote(s) or endnote(s) not read" in w for w in ingester.read(path).warnings)
    page = write(tmp_path / "export.docx", "<!DOCTYPE html><html><body><p>Interviewer: Hello</p></body></html>")
    with pytest.raises(IngestError, match=r"a web page \(HTML\) named \.docx"):
        ingester.read(page)


def test_a_csv_that_breaks_part_way_is_named_with_its_row(tmp_path):
    """A field over the csv module's limit on the third data row: the file is refused naming the row, as
    before the header was looked for on its own (the reader of the rows is not the parser)."""
    path = write(tmp_path / "long.csv", "id,text\n1,Short answer.\n2,Another one.\n3," + "x" * 140_000 + "\n")
    with pytest.raises(IngestError, match=r"long\.csv: malformed CSV near row 4"):
        csv_ingester(text_column="text").read(path)
