"""Ingest: read transcripts and survey answers into plain text with speaker turns.

Every format is turned into one normalised plain text (LF line ends) per source, and every turn is a
span of that text, so later stages can quote, show context and export offsets without re-reading files.
"""

from __future__ import annotations

import codecs
import csv
import errno
import hashlib
import io
import itertools
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

from pipeline.config import IngestSettings
from pipeline.csvsafe import read_cell
from pipeline.ingest.unzip import BoundedZip, UnpackLimitError, ZipLimits

TEXT_SUFFIXES = {".txt", ".md"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | {".docx", ".vtt", ".srt", ".csv", ".xlsx"}
_TEXT_COLUMN_NAMES = ("text", "comment", "comments", "answer", "response", "feedback")
T = TypeVar("T")
#: How an OLE compound file starts: what Office writes for an encrypted .docx / .xlsx (and for .doc / .xls).
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
#: The attribute naming the column an answer came from, when a CSV has several text columns.
TEXT_COLUMN_ATTRIBUTE = "text column"

# Minutes and seconds of one or two digits: Teams writes "0:0:3.450 --> 0:0:7.110".
_TS = r"[\[(]?\d{1,2}:\d{1,2}(?::\d{1,2})?(?:[.,]\d{1,3})?[\])]?"
# A speaker label, perhaps in brackets ("[Interviewer]") or bold ("**P01**"), perhaps with a note in
# parentheses that is not part of it ("Interviewer (IV)", "Participant 3 (female, 45)").
_LABEL = r"\**\[?(?P<label>[^\W\d_][\w.'\u2019 -]*?)\]?(?:[ \t]*\([^()\n]{1,40}\))?\**"
# "Label: words" or "Label<TAB>words", timestamps before or after the label tolerated.
_LABEL_LINE = re.compile(
    rf"^[ \t]*(?:{_TS}[ \t]*[-\u2013]?[ \t]*)?{_LABEL}"
    rf"(?:[ \t]*(?:{_TS})?[ \t]*:\**[ \t]*|\t[ \t]*)(?P<body>.*)$"
)
# "[P04] words": a label in brackets with no colon, trusted only where it is one of the usual labels, so
# that "[laughs] ..." and "[inaudible] ..." stay text.
_BRACKET_LABEL = re.compile(
    rf"^[ \t]*(?:{_TS}[ \t]*[-\u2013]?[ \t]*)?\[(?P<label>[^\W\d_][\w.'\u2019 -]*?)\][ \t]+(?P<body>\S.*)$")
# A label alone on its line, the words on the next lines ("INTERVIEWER", or a name under a Teams cue).
_LABEL_ALONE = re.compile(rf"^[ \t]*{_LABEL}[ \t]*(?P<body>)$")
# Otter.ai and similar put "Speaker Name  0:03" on a line of its own, the words on the next lines.
_LABEL_THEN_TIME = re.compile(r"^[ \t]*(?P<label>[^\W\d_][\w.'\u2019 -]*?)[ \t]+\d{1,2}:\d{2}(?::\d{2})?[ \t]*(?P<body>)$")
# A WebVTT voice span, "<v Name>words</v>" (the closing tag optional), and any other tag in a cue.
_VOICE = re.compile(r"<v(?:\.[^\s>]*)?\s+([^>]+)>(.*?)(?=</v>|<v[\s.]|\Z)", re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
#: Words a transcriber writes before a colon that never name a speaker, however often they recur
#: ("Note: recording paused"): they stay text of the turn they are in.
NOT_SPEAKERS = frozenset({"note", "notes", "nb", "n.b", "transcriber", "transcriber's note", "transcriber note",
                          "transcription note", "editor's note", "inaudible", "crosstalk", "laughter", "pause",
                          "silence", "break", "redacted", "comment"})
#: The headings a transcript table's first row holds, where it has them.
_TABLE_HEADINGS = frozenset({"time", "timestamp", "time stamp", "start", "speaker", "name", "who", "text",
                             "transcript", "transcription", "dialogue", "utterance", "words", "what was said"})
_TIME_CELL = re.compile(rf"^{_TS}(?:[ \t]*(?:-->|[-\u2013])[ \t]*{_TS})?$")  # a table cell of a time alone
_TIMESTAMP_ONLY = re.compile(rf"^[ \t]*{_TS}(?:[ \t]*-->[ \t]*{_TS})?[ \t]*$")


def _docx_notes(raw: bytes) -> int:
    """How many footnotes and endnotes a .docx holds (Word's separator notes aside): python-docx, and so the
    reader, takes the body alone, so a transcriber's note there would be lost without a word."""
    count = 0
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        for part in ("word/footnotes.xml", "word/endnotes.xml"):
            if part in zf.namelist():
                xml = zf.read(part)
                count += len(re.findall(rb"<w:(?:foot|end)note\b(?![^>]*w:type=)", xml))
    return count


def distinct_names(paths: Sequence[str]) -> dict[str, str]:
    """Path -> the file's name, or for files that share a name in different folders (``siteA/P01.txt``,
    ``siteB/P01.txt``) as much of the path as tells them apart."""
    by_name: dict[str, list[str]] = {}
    for path in paths:
        by_name.setdefault(Path(path).name.lower(), []).append(path)
    out = {path: Path(path).name for path in paths}
    for same in (group for group in by_name.values() if len(group) > 1):
        parts = [Path(p).parts for p in same]
        for k in range(2, max(len(p) for p in parts) + 1):
            names = ["/".join(p[-k:]) for p in parts]
            if len(set(names)) == len(names):
                break
        out.update(zip(same, names))
    return out


def _distinct_names(documents: list[Document]) -> tuple[list[Document], tuple[str, ...]]:
    """Documents that share a file name in different folders named by :func:`distinct_names`, so a quote
    names its file; a warning for each such name."""
    named = distinct_names([d.path for d in documents])
    by_name: dict[str, list[Document]] = {}
    for doc in documents:
        by_name.setdefault(doc.name.lower(), []).append(doc)
    warnings = tuple(f"{len(same)} files are named {same[0].name}: stored as " + ", ".join(named[d.path] for d in same)
                     + "; where they give a participant the same label, it counts as one participant"
                     for same in by_name.values() if len(same) > 1)
    return [replace(d, name=named[d.path]) for d in documents], warnings


class IngestError(Exception):
    """A file that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class Turn:
    """One paragraph spoken by one speaker: the span ``text[start:end]`` of its document.

    A speaker turn of several paragraphs gives several ``Turn`` records with the same ``index``.
    """

    index: int
    speaker: str | None
    start: int
    end: int
    case: str | None = None
    row_id: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Document:
    """A source as read: its normalised plain text, its turns and what was noticed on the way."""

    name: str
    path: str
    format: str
    sha256: str
    text: str
    turns: tuple[Turn, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Skipped:
    """A file that was not used, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Seen:
    """A file whose content (by hash) is already known to the caller: not parsed again."""

    path: str
    sha256: str


@dataclass(frozen=True)
class IngestResult:
    documents: tuple[Document, ...]
    skipped: tuple[Skipped, ...] = ()
    warnings: tuple[str, ...] = ()
    known: tuple[Seen, ...] = ()

    def sources(self) -> list[tuple[str, str]]:
        """``(path, sha256)`` of every file taken, new or known, in path order."""
        return sorted([(d.path, d.sha256) for d in self.documents] + [(k.path, k.sha256) for k in self.known])


@dataclass
class Ingester:
    """Reads .txt/.md, .docx, .vtt/.srt, .csv and .xlsx files into :class:`Document` records.

    Parameters mirror the ``ingest`` section of the configuration.
    """

    known_label_pattern: str = r"^(interviewer|participant|respondent|p|r|i)\s*\d*$"
    min_label_repeats: int = 2
    max_label_words: int = 4
    max_file_mb: float = 200
    max_unpacked_mb: float = 200
    max_xml_mb: float = 20
    text_column: str | Sequence[str] | None = None
    case_column: str | None = None
    row_id_column: str | None = None
    attribute_columns: Sequence[str] = field(default_factory=tuple)

    @classmethod
    def from_config(cls, cfg: IngestSettings | Mapping) -> "Ingester":
        """From the ``ingest`` section (a mapping of it is checked and completed from the defaults)."""
        cfg = IngestSettings.of(cfg)
        return cls(
            known_label_pattern=cfg.known_label_pattern,
            min_label_repeats=cfg.min_label_repeats,
            max_label_words=cfg.max_label_words,
            max_file_mb=cfg.max_file_mb,
            max_unpacked_mb=cfg.max_unpacked_mb,
            max_xml_mb=cfg.max_xml_mb,
            text_column=cfg.csv.text_column,
            case_column=cfg.csv.case_column,
            row_id_column=cfg.csv.row_id_column,
            attribute_columns=cfg.csv.attribute_columns,
        )

    # -- many files -------------------------------------------------------------------------------
    def collect(self, paths: Iterable[str | Path], exclude: Iterable[str | Path] = (),
                known: Mapping[str, str] | None = None) -> IngestResult:
        """Read every supported file under ``paths`` (folders under ``exclude`` left out, e.g. the
        workspace); bad files are skipped with a reason, never fatal.

        ``known``: SHA-256 -> path of the files the caller has already; those found at the same path are
        only hashed, not parsed. A known file under another name or folder is read again, so that it is
        stored under its name now (and a participant named after the file takes the new name).
        """
        known = known or {}
        documents: list[Document] = []
        reused: list[Seen] = []
        skipped: list[Skipped] = []
        files = expand_paths(paths, skipped, exclude)
        shas = {path: _sha256_of(path) for path in files}
        # of files with the same bytes, the shortest name is read ("P01.txt", not "P01-copy.txt"): a coding
        # file or another tool's project names the original
        kept: dict[str, Path] = {}
        for path in sorted(files, key=lambda p: (len(p.name), str(p))):
            if shas[path] is not None:
                kept.setdefault(shas[path], path)
        for path in files:
            sha = shas[path]
            if sha is not None and kept[sha] != path:
                skipped.append(Skipped(str(path), f"same content as {kept[sha]}; processed once"))
                continue
            if sha is not None and known.get(sha) == str(path):
                reused.append(Seen(str(path), sha))
                continue
            try:
                doc = self.read(path)
            except IngestError as exc:
                skipped.append(Skipped(exc.path, exc.reason))
                continue
            documents.append(doc)
        documents = self._once_per_text(documents, skipped)
        documents, named = _distinct_names(documents)
        warnings = tuple(f"{d.path}: {w}" for d in documents for w in d.warnings) + named
        return IngestResult(tuple(documents), tuple(skipped), warnings, tuple(reused))

    @staticmethod
    def _once_per_text(documents: list[Document], skipped: list[Skipped]) -> list[Document]:
        """Of documents with the same text in other files (an interview as .docx and as the .txt saved from
        it), the first in name order is read and the others skipped: read twice, its words would count
        twice in every theme."""
        first: dict[str, Document] = {}
        for doc in sorted(documents, key=lambda d: (len(d.name), d.path)):
            key = hashlib.sha256(" ".join(doc.text.split()).encode()).hexdigest()
            if key in first:
                skipped.append(Skipped(doc.path, f"same text as {first[key].path}; processed once"))
                continue
            first[key] = doc
        kept = {id(d) for d in first.values()}
        return [d for d in documents if id(d) in kept]

    # -- one file ---------------------------------------------------------------------------------
    def read(self, path: str | Path) -> Document:
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".doc":
            raise IngestError(path, "old Word .doc format is not supported; save it as .docx")
        if suffix == ".xls":
            raise IngestError(path, "old Excel .xls format is not supported; save it as .xlsx or .csv")
        if suffix not in SUPPORTED_SUFFIXES:
            raise IngestError(path, f"unsupported file type '{suffix or path.name}'")
        try:
            size = path.stat().st_size
            if size > self.max_file_mb * 1e6:
                raise IngestError(path, f"file is {size / 1e6:.0f} MB, over the {self.max_file_mb} MB limit")
            raw = path.read_bytes()
        except OSError as exc:
            raise IngestError(path, f"cannot read file ({exc.strerror or exc})") from exc
        if not raw.strip():
            raise IngestError(path, "empty file")
        sha = hashlib.sha256(raw).hexdigest()
        warnings: list[str] = []
        if suffix == ".docx":
            text, turns = self._read_docx(path, raw)
            if notes := _docx_notes(raw):
                warnings.append(f"{notes} footnote(s) or endnote(s) not read: the body text is read, notes are not")
        elif suffix == ".csv":
            text, turns = self._read_csv(path, decode(raw, path, warnings), warnings)
        elif suffix == ".xlsx":
            text, turns = self._read_xlsx(path, raw, warnings)
        elif suffix in (".vtt", ".srt"):
            text, turns = self._read_captions(path, decode(raw, path, warnings), suffix, warnings)
        else:
            text = decode(raw, path, warnings)
            turns = self.parse_turns(text)
        if not any(text[t.start:t.end].strip() for t in turns):
            raise IngestError(path, "no text found")
        return Document(path.name, str(path), suffix.lstrip("."), sha, text, tuple(turns), tuple(warnings))

    # -- formats ----------------------------------------------------------------------------------
    def parse_turns(self, text: str) -> list[Turn]:
        """Split speaker-labelled text into turns.

        A line ``Label: words`` or ``Label<TAB>words`` (timestamps before or after the label tolerated)
        starts a turn when the label matches ``known_label_pattern`` or starts at least
        ``min_label_repeats`` lines (never one of :data:`NOT_SPEAKERS`, so "Note: ..." stays text). A label alone on its line,
        the words below it, starts a turn when it matches ``known_label_pattern`` ("INTERVIEWER") or
        comes straight after a timestamp-only line at least ``min_label_repeats`` times (a name under each
        cue, as Teams writes); any other short line stays text. Lines without a label continue the
        current speaker; blank lines and timestamp-only lines end a paragraph.
        """
        lines = _lines_with_offsets(text)
        known = re.compile(self.known_label_pattern, re.IGNORECASE)
        candidates = [self._label_of(line) for _, line in lines]
        counts = Counter(m.group("label").strip() for m in candidates if m)
        accepted = {lab for lab, n in counts.items() if (n >= self.min_label_repeats or known.match(lab))
                    and lab.lower().rstrip(".") not in NOT_SPEAKERS}
        accepted |= {m.group("label").strip() for m in candidates if m and m.re is _LABEL_THEN_TIME}
        alone = self._labels_alone(lines, candidates, known)
        candidates = [m or alone.get(i) for i, m in enumerate(candidates)]
        accepted |= {m.group("label").strip() for m in alone.values()}

        turns: list[Turn] = []
        speaker: str | None = None
        index = -1
        piece: list[int] | None = None  # [start, end] of the open paragraph

        def close() -> None:
            nonlocal piece
            if piece is not None and piece[1] > piece[0]:
                turns.append(Turn(index, speaker, piece[0], piece[1]))
            piece = None

        for (offset, line), match in zip(lines, candidates):
            if match and match.group("label").strip() in accepted:
                close()
                speaker, index = match.group("label").strip(), index + 1
                body_start = offset + match.start("body")
                body = line[match.start("body"):].rstrip()
                piece = [body_start, body_start + len(body)] if body else None
            elif not line.strip() or _TIMESTAMP_ONLY.match(line):
                close()
            else:
                start = offset + len(line) - len(line.lstrip())
                end = offset + len(line.rstrip())
                if piece is None:
                    if speaker is None:
                        index += 1
                    piece = [start, end]
                else:
                    piece[1] = end
        close()
        return turns

    def _labels_alone(self, lines: list[tuple[int, str]], candidates: list[re.Match | None],
                      known: re.Pattern) -> dict[int, re.Match]:
        """Lines that are a speaker label alone, by line number, each followed by a line of words: a label
        of ``known``, or a capitalised name that comes after a timestamp-only line ``min_label_repeats``
        times where names follow at least half of those lines (a caption's first words are not names)."""
        found: dict[int, re.Match] = {}
        for i, (_, line) in enumerate(lines[:-1]):
            match = None if candidates[i] else _LABEL_ALONE.match(line)
            following = lines[i + 1][1]
            if (match and self._short_label(match.group("label")) and following.strip()
                    and not candidates[i + 1] and not _TIMESTAMP_ONLY.match(following)):
                found[i] = match
        cues = [i for i, (_, line) in enumerate(lines) if _TIMESTAMP_ONLY.match(line)]
        named = [found[i + 1].group("label").strip() for i in cues if i + 1 in found
                 and all(w[0].isupper() or w[0].isdigit() for w in found[i + 1].group("label").split())]
        after_cue = Counter(named) if len(named) >= len(cues) / 2 else Counter()
        return {i: m for i, m in found.items() if known.match(m.group("label").strip())
                or (after_cue[m.group("label").strip()] >= self.min_label_repeats
                    and i > 0 and _TIMESTAMP_ONLY.match(lines[i - 1][1]))}

    def _short_label(self, label: str) -> bool:
        label = label.strip()
        return bool(label) and len(label.split()) <= self.max_label_words and len(label) <= 40

    def _label_of(self, line: str) -> re.Match | None:
        match = _LABEL_THEN_TIME.match(line) or _LABEL_LINE.match(line)
        if not match:
            match = _BRACKET_LABEL.match(line)
            if match and not re.match(self.known_label_pattern, match.group("label").strip(), re.IGNORECASE):
                return None
        if not match:
            return None
        return match if self._short_label(match.group("label")) else None

    def _open_office(self, path: Path, raw: bytes, app: str, load: Callable[[io.BytesIO], T]) -> T:
        """A Word or Excel file (a ZIP) opened by ``load`` once its parts are within the unpack limits."""
        suffix = ".docx" if app == "Word" else ".xlsx"
        if raw.startswith(_OLE_MAGIC):
            raise IngestError(path, f"{app} file is password-protected (encrypted), or an old binary file renamed; "
                                    f"remove the password in {app} (File > Info > Protect) and save it as "
                                    f"{suffix} again")
        if b"<html" in raw[:2048].lower():
            raise IngestError(path, f"a web page (HTML) named {suffix}, as some systems export one; open it in "
                                    f"{app} and save it as {suffix}")
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:  # within the limits before the library parses it
                BoundedZip(zf, ZipLimits(self.max_unpacked_mb, self.max_xml_mb)).check_all()
            return load(io.BytesIO(raw))
        except UnpackLimitError as exc:
            raise IngestError(path, f"{app} file not read: {exc}") from None
        except (zipfile.BadZipFile, KeyError, ValueError) as exc:
            raise IngestError(path, f"not a readable {app} {suffix} file ({type(exc).__name__}: {exc})") from exc
        except Exception as exc:  # python-docx and openpyxl raise a variety of XML/package errors on corrupt files
            raise IngestError(path, f"corrupt {app} file ({type(exc).__name__}: {exc})") from exc

    def _read_docx(self, path: Path, raw: bytes) -> tuple[str, list[Turn]]:
        import docx  # python-docx
        from docx.table import Table

        from pipeline.ingest.word import blocks, cell_text, paragraph_text

        document = self._open_office(path, raw, "Word", docx.Document)
        lines: list[str] = []
        for child in blocks(document.element.body):  # tracked changes accepted, as Word shows them
            if child.tag.endswith("}p"):
                lines.append(paragraph_text(child))
            else:
                for number, row in enumerate(Table(child, document).rows):
                    cells = [cell_text(c._tc).strip() for c in row.cells]
                    cells = [c for i, c in enumerate(cells) if c and c not in cells[:i]]
                    if number == 0 and cells and all(c.lower().rstrip(":") in _TABLE_HEADINGS for c in cells):
                        continue  # "Time | Speaker | Transcript": the table's heading, not a turn
                    if len(cells) >= 3 and _TIME_CELL.match(cells[0]):  # Time | Speaker | Text, as transcription
                        cells = cells[1:]  # services deliver it: the speaker is the second cell
                    if len(cells) >= 2 and len(cells[0].split()) <= self.max_label_words:
                        lines.append(f"{cells[0].rstrip(':')}: {' '.join(cells[1:])}")
                    elif cells:
                        lines.append(" ".join(cells))
        text = normalise_newlines("\n".join(lines))
        return text, self.parse_turns(text)

    def _read_captions(self, path: Path, text: str, suffix: str, warnings: list[str]) -> tuple[str, list[Turn]]:
        import webvtt

        try:
            if suffix == ".vtt":
                captions = webvtt.from_string(text)
            else:
                captions = webvtt.from_buffer(io.StringIO(text), format="srt")
        except Exception as exc:  # webvtt raises its own MalformedFileError/MalformedCaptionError
            raise IngestError(path, f"not a valid {suffix} caption file ({exc})") from exc
        timings = sum("-->" in line for line in text.splitlines())
        if timings > len(captions):  # webvtt passes over a cue whose timing line it cannot read
            warnings.append(f"{timings - len(captions)} of {timings} cues could not be read (a timing line "
                            "written otherwise than the format says, such as a comma in a .vtt time); their "
                            "words are missing")
        merged: list[list] = []  # [speaker, [texts]]
        for caption in captions:
            for speaker, body in self._cue_voices(caption):
                if not body:
                    continue
                if merged and (speaker is None or speaker == merged[-1][0]):
                    merged[-1][1].append(body)
                else:
                    merged.append([speaker, [body]])
        parts: list[str] = []
        turns: list[Turn] = []
        offset = 0
        for index, (speaker, bodies) in enumerate(merged):
            prefix = f"{speaker}: " if speaker else ""
            body = " ".join(bodies)
            turns.append(Turn(index, speaker, offset + len(prefix), offset + len(prefix) + len(body)))
            parts.append(prefix + body)
            offset += len(prefix) + len(body) + 2
        if not turns:
            raise IngestError(path, "caption file holds no cues with text")
        return "\n\n".join(parts), turns

    def _cue_voices(self, caption) -> list[tuple[str | None, str]]:
        """A cue's words by speaker: each ``<v Name>`` span its own (a cue may hold two voices), else the
        cue's voice, else a ``Name:`` label at its start (Zoom), else no speaker."""
        spans = _VOICE.findall(getattr(caption, "raw_text", "") or "")
        if len(spans) > 1:
            return [(name.strip(), " ".join(_TAG.sub("", words).split())) for name, words in spans]
        body = " ".join(caption.text.split())
        speaker = getattr(caption, "voice", None)
        if speaker is None:
            match = self._label_of(body)
            if match:
                speaker, body = match.group("label").strip(), match.group("body").strip()
        return [(speaker, body)]

    def _read_csv(self, path: Path, text: str, warnings: list[str]) -> tuple[str, list[Turn]]:
        reader = csv.reader(io.StringIO(text), delimiter=delimiter(text))
        try:
            header, table = self._header(reader, warnings)
        except csv.Error as exc:
            raise IngestError(path, f"malformed CSV near row {reader.line_num}: {exc}") from exc
        if header is None:
            raise IngestError(path, "CSV file has no header row")
        columns = table_columns(header, warnings)
        overlong = 0

        def rows() -> Iterator[Mapping[str, str | None]]:
            nonlocal overlong
            for row in table:
                if not row:
                    continue  # a blank line
                overlong += len(row) > len(columns)  # more fields than the header: an unquoted delimiter
                yield dict(zip(columns, row))

        try:
            text, turns = self._answers(path, columns, without_survey_headers(rows(), warnings))
        except csv.Error as exc:
            raise IngestError(path, f"malformed CSV near row {reader.line_num}: {exc}") from exc
        if overlong:
            warnings.append(f"{overlong} rows have more fields than the header (a delimiter inside unquoted "
                            "text?); the extra fields were ignored")
        return text, turns

    def _read_xlsx(self, path: Path, raw: bytes, warnings: list[str]) -> tuple[str, list[Turn]]:
        """An Excel survey export (Microsoft Forms writes nothing else): its first sheet read as a CSV is,
        the first row that holds anything as the header; cells as Excel shows their values."""
        import openpyxl

        book = self._open_office(path, raw, "Excel",
                                 lambda f: openpyxl.load_workbook(f, read_only=True, data_only=True))
        try:
            sheets = book.worksheets
            if not sheets:
                raise IngestError(path, "Excel file has no worksheet")
            if len(sheets) > 1:
                warnings.append(f"read the first sheet '{sheets[0].title}' only; the other "
                                f"{len(sheets) - 1} sheet(s) were not read")
            rows = (tuple(_cell_text(c.value, getattr(c, "number_format", None)) for c in row)
                    for row in sheets[0].iter_rows())
            header, rows = self._header(rows, warnings)
            if header is None:
                raise IngestError(path, "Excel sheet is empty")
            columns = table_columns(header, warnings)
            return self._answers(path, columns, without_survey_headers((dict(zip(columns, row)) for row in rows),
                                                                       warnings))
        finally:
            book.close()

    def _header(self, rows: Iterator[Sequence[str]], warnings: list[str]
                ) -> tuple[Sequence[str] | None, Iterator[Sequence[str]]]:
        """A table's header row and the rows after it: the first row that holds anything, or, where that row
        lacks a column named in the settings (a title row, merged group headings above the header), the first
        of the next rows that names them all; the rest of ``rows`` unread."""
        named = [self.text_column] if isinstance(self.text_column, str) else list(self.text_column or ())
        wanted = {c.strip() for c in (*named, self.case_column, self.row_id_column, *self.attribute_columns) if c}
        ahead: list[Sequence[str]] = []
        for row in rows:
            if not any((cell or "").strip() for cell in row) and not ahead:
                continue
            ahead.append(row)
            names = {(cell or "").strip() for cell in row}
            if wanted <= names or len(ahead) > HEADER_SEARCH_ROWS:
                break
        if not ahead:
            return None, rows
        at = next((i for i, row in enumerate(ahead) if wanted <= {(c or "").strip() for c in row}), 0)
        if at:
            warnings.append("took the first row that names " + ", ".join(repr(c) for c in sorted(wanted))
                            + f" as the header; the {at} row(s) above it (a title?) were not read")
        return ahead[at], itertools.chain(ahead[at + 1:], rows)

    def _answers(self, path: Path, columns: Sequence[str],
                 rows: Iterable[Mapping[str, str | None]]) -> tuple[str, list[Turn]]:
        """A table's answers as turns, one per non-empty cell of the text column(s), with each row's id,
        case and attributes; ``columns``: the header."""
        named = [self.text_column] if isinstance(self.text_column, str) else list(self.text_column or ())
        text_cols = [c.strip() for c in named] or [c for c in [_guess_text_column(columns)] if c]
        if not text_cols:
            raise IngestError(path, f"name the text column (--text-col); columns are: {', '.join(columns)}")
        case_col, row_id_col = (c.strip() if c else c for c in (self.case_column, self.row_id_column))
        attribute_cols = [a.strip() for a in self.attribute_columns]
        for role, col in (*(("text", c) for c in text_cols), ("case", case_col),
                          ("row id", row_id_col), *(("attribute", a) for a in attribute_cols)):
            if col is not None and col not in columns:
                raise IngestError(path, f"{role} column '{col}' not found; columns are: {', '.join(columns)}")
        parts: list[str] = []
        turns: list[Turn] = []
        offset = 0
        for number, row in enumerate(rows, start=1):
            row_id = read_cell((row.get(row_id_col) or "").strip()) if row_id_col else str(number)
            case = read_cell((row.get(case_col) or "").strip()) if case_col else row_id
            attributes = tuple((a, read_cell((row.get(a) or "").strip())) for a in attribute_cols)
            for col in text_cols:  # several open questions: each answer a turn, its column kept
                answer = read_cell((row.get(col) or "").strip())
                if not answer:
                    continue
                asked = ((TEXT_COLUMN_ATTRIBUTE, col),) if len(text_cols) > 1 else ()
                turns.append(Turn(len(turns), None, offset, offset + len(answer), case or row_id, row_id,
                                  attributes + asked))
                parts.append(answer)
                offset += len(answer) + 2
        if not turns:
            raise IngestError(path, f"column{'s' if len(text_cols) > 1 else ''} "
                                    f"{', '.join(repr(c) for c in text_cols)} empty in every row")
        return "\n\n".join(parts), turns


def _cell_text(value: object, number_format: str | None = None) -> str:
    """A spreadsheet cell as text: dates as ISO dates, percentages as Excel shows them ("25%", not 0.25),
    whole numbers without ".0", empty as ""."""
    if value is None:
        return ""
    percent = _PERCENT.search(number_format or "")
    if percent and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{100 * value:.{len(percent.group(1) or '')}f}%"
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


_PERCENT = re.compile(r"0(?:\.(0*))?%")  # "0%", "0.0%": the digits Excel shows after the point


def _sha256_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None  # read() reports it


def _utf16_without_bom(head: bytes) -> str | None:
    """``utf-16-le`` / ``utf-16-be`` when ``head`` looks like UTF-16 text without a byte-order mark (most
    characters of a transcript are ASCII: one byte of each pair is zero, always the same one), else None."""
    pairs = len(head) // 2
    if pairs < 2:
        return None
    odd_zero = sum(1 for b in head[1:2 * pairs:2] if b == 0) / pairs
    even_zero = sum(1 for b in head[0:2 * pairs:2] if b == 0) / pairs
    if odd_zero >= 0.6 and even_zero <= 0.05:
        return "utf-16-le"
    if even_zero >= 0.6 and odd_zero <= 0.05:
        return "utf-16-be"
    return None


def _decode_utf16(raw: bytes, encoding: str, path: str | Path) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:  # truncated, or a lone surrogate: say where, never what
        raise IngestError(path, f"broken UTF-16 ({exc.reason} at byte {exc.start} of {len(raw)}); "
                                "re-save the file as UTF-8 or UTF-16") from None


def decode(raw: bytes, path: str | Path, warnings: list[str]) -> str:
    """Bytes to text: UTF-8 (with or without BOM), UTF-16 (with a BOM, or without one where the bytes
    show it), else cp1252 with a warning. Broken UTF-16 is refused with where it breaks. A UTF-8 BOM before
    cp1252 text (an editor's mix) is dropped, else it reads as ``ï»¿`` glued to a CSV's first column name."""
    head = raw[:8192]
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = _decode_utf16(raw, "utf-16", path)
    elif b"\x00" in head:  # UTF-16 without a byte-order mark, or binary
        utf16 = _utf16_without_bom(head)
        if utf16 is None:
            raise IngestError(path, "binary file, not text")
        text = _decode_utf16(raw, utf16, path)
        warnings.append(f"no byte-order mark; read as {utf16.upper()} from its bytes")
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text = raw.removeprefix(codecs.BOM_UTF8).decode("cp1252")
            except UnicodeDecodeError:
                raise IngestError(path, "unknown text encoding (neither UTF-8 nor Windows-1252)") from None
            warnings.append("not valid UTF-8; read as Windows-1252 (cp1252): check accented characters")
    text = normalise_newlines(text)
    if not text.strip():
        raise IngestError(path, "empty file")
    return text


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def expand_paths(paths: Iterable[str | Path], skipped: list[Skipped], exclude: Iterable[str | Path] = ()) -> list[Path]:
    """Files named directly plus the supported files inside folders, in a stable sorted order.

    Hidden files, Word lock files (``~$...``) and anything under ``exclude`` are passed over silently;
    a symbolic link whose target is missing, or that loops, is listed as skipped; a link to a folder is read.
    """
    excluded = [Path(e).resolve() for e in exclude]
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files += _folder_files(path, skipped, excluded, set())
        elif (why := missing(path)) is None:
            files.append(path)
        else:
            skipped.append(Skipped(str(path), why))
    return sorted(dict.fromkeys(files))


def _folder_files(path: Path, skipped: list[Skipped], excluded: list[Path], seen: set[Path]) -> list[Path]:
    """The files of :func:`expand_paths` under one folder; a link to a folder inside it (a shared or synced
    folder linked into the project) is read as a folder of its own, once, unless it holds the folder it is
    in (a loop)."""
    seen.add(path.resolve())
    files: list[Path] = []
    for child in sorted(p for p in path.rglob("*") if p.is_file() or p.is_symlink()):
        if any(part.startswith((".", "~$")) for part in child.relative_to(path).parts):
            continue
        broken = _broken_link(child)
        if broken:
            skipped.append(Skipped(str(child), broken))
            continue
        if any(child.resolve().is_relative_to(e) for e in excluded):
            continue
        if child.is_dir():  # a link to a folder: rglob does not go into it
            target = child.resolve()
            if target in seen or any(target in s.parents for s in seen):
                skipped.append(Skipped(str(child), f"link to a folder that holds it or was read already ({target}); "
                                                   "not followed"))
            else:
                files += _folder_files(child, skipped, excluded, seen)
            continue
        if child.suffix.lower() in SUPPORTED_SUFFIXES | {".doc", ".xls"}:
            files.append(child)
        else:
            skipped.append(Skipped(str(child), f"unsupported file type '{child.suffix or child.name}'"))
    return files


def missing(path: Path) -> str | None:
    """Why ``path`` cannot be read at all (it does not exist, or is a broken link), else None: one wording for
    a named path that :func:`expand_paths` skips and one that ``themesift suggest`` refuses outright."""
    if path.exists():
        return None
    return _broken_link(path) or "no such file or folder"


def _broken_link(path: Path) -> str | None:
    """Why the symbolic link ``path`` cannot be followed (its target is missing, or links loop), else None."""
    if not path.is_symlink():
        return None
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (links that point at each other); fix or remove the link"
        return "broken symbolic link: its target does not exist; fix or remove the link"
    return None


def _lines_with_offsets(text: str) -> list[tuple[int, str]]:
    out, offset = [], 0
    for line in text.split("\n"):
        out.append((offset, line))
        offset += len(line) + 1
    return out


def delimiter(text: str) -> str:
    """The delimiter that occurs most in the header line (csv.Sniffer guesses wrong on quoted free text)."""
    header = text.split("\n", 1)[0]
    return max(",;\t|", key=lambda d: (header.count(d), d == ","))


def table_columns(header: Sequence[str | None], warnings: list[str]) -> list[str]:
    """A table's column names as its rows are read by: each stripped of spaces around it, a blank one
    ``column N``, and a name the header repeats (survey tools head several questions "Please explain")
    made unique as ``name (2)``, with a warning, so no column's answers are lost under another's name."""
    columns: list[str] = []
    repeated: dict[str, int] = {}
    for i, name in enumerate(header):
        base = (name or "").strip() or f"column {i + 1}"
        column, n = base, 1
        while column in columns:
            n += 1
            column = f"{base} ({n})"
        if n > 1:
            repeated[base] = n
        columns.append(column)
    for base, n in repeated.items():
        warnings.append(f"{n} columns are headed '{base}': read as '{base}', " + ", ".join(
            f"'{base} ({k})'" for k in range(2, n + 1)) + "; name each you want with --text-col")
    return columns


#: How many rows below a table's first one its header is looked for (a title, merged group headings).
HEADER_SEARCH_ROWS = 20
#: How a Qualtrics export marks its third header row: every question's import id.
_QUALTRICS_IMPORT_ID = '{"ImportId":'


def without_survey_headers(rows: Iterator[Mapping[str, str | None]], warnings: list[str]
                           ) -> Iterator[Mapping[str, str | None]]:
    """``rows`` without a Qualtrics export's two extra header rows (its question texts, then its
    ``{"ImportId": ...}`` cells), which would otherwise be read as two respondents' answers."""
    first = [row for _, row in zip(range(2), rows)]
    if len(first) == 2 and any((v or "").lstrip().startswith(_QUALTRICS_IMPORT_ID) for v in first[1].values()):
        warnings.append("read as a Qualtrics export: its question-text and ImportId rows (rows 2 and 3) are "
                        "headers, not answers")
        first = []
    yield from first
    yield from rows


def _guess_text_column(columns: Sequence[str]) -> str | None:
    lowered = {c.strip().lower(): c for c in columns}
    hits = [lowered[name] for name in _TEXT_COLUMN_NAMES if name in lowered]
    return hits[0] if len(hits) == 1 else None
