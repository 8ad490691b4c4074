"""Labelled corpora for the benchmarks, read through Themesift's own ingest and segment stages.

Every corpus becomes the same thing: the clusterable segments Themesift would cluster (the *units*),
their texts and cases, and the human codes of each unit (a frozenset: multi-label allowed). Both
Themesift and BERTopic are scored on exactly these units.

* A labelled CSV (any file, no code changes): one row per answer, a label column (optionally several
  labels joined by a separator) or one indicator column per code (a row carries the code when its cell
  is set: a number other than 0, or a word other than :data:`UNSET`'s), and optionally a case column.
  The file is decoded and its delimiter found as ``themesift suggest`` reads a CSV. Excluded labels are dropped; a row left with
  none is left out before ingest. A row cut into several segments gives each segment the row's labels.
* The example study: human coders' excerpts (``human_coding.csv``) are located in each source's plain
  text as Themesift reads it, then mapped to segments with :func:`pipeline.compare.agreement.map_selections`
  (a segment carries a code when the code's excerpts cover >= 50% of its characters). The human coding
  used is the union of both coders' codes.
"""

from __future__ import annotations

import csv
import io
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from pipeline import csvsafe
from pipeline.compare.agreement import map_selections
from pipeline.config import load_config
from pipeline.embed.encoder import Embedder
from pipeline.ingest.read import IngestError, Ingester, decode, delimiter
from pipeline.ingest.segment import Segment, Segmenter

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "datasets"
EXAMPLE = ROOT / "examples" / "ipt-study"
ROW_COLUMN = "_bench_row"


@dataclass
class Corpus:
    """Units to cluster with their human codes; ``segments[i]`` is unit ``i``."""

    name: str
    segments: list[Segment]
    human: dict[int, frozenset[str]]
    source: str
    notes: list[str] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.segments]

    @property
    def cases(self) -> list[str | None]:
        return [s.case for s in self.segments]

    @property
    def units(self) -> list[int]:
        return list(range(len(self.segments)))

    @property
    def codes(self) -> list[str]:
        return sorted({c for cs in self.human.values() for c in cs})

    def subset(self, indices: Sequence[int], name: str | None = None) -> "Corpus":
        keep = list(indices)
        return Corpus(name or self.name, [self.segments[i] for i in keep],
                      {new: self.human[old] for new, old in enumerate(keep) if old in self.human},
                      self.source, list(self.notes))


@dataclass(frozen=True)
class CsvSpec:
    """How to read a labelled CSV."""

    path: str
    text_col: str
    label_col: str | None
    case_col: str | None = None
    multi_label_sep: str | None = None
    exclude_labels: tuple[str, ...] = ()
    #: Rows left out whatever their label: (column, value) pairs.
    exclude_where: tuple[tuple[str, str], ...] = ()
    #: One column per code instead of ``label_col`` (multi-label, as NHS FFT framework files have them).
    indicator_cols: tuple[str, ...] = ()

    def labels(self, row: dict) -> list[str]:
        """The codes of one row, excluded ones dropped."""
        if self.indicator_cols:
            found = [c for c in self.indicator_cols if indicator_set(row.get(c) or "")]
        else:
            raw = (row.get(self.label_col) or "").strip()
            found = [p.strip() for p in raw.split(self.multi_label_sep)] if self.multi_label_sep else [raw]
        return [x for x in found if x and x not in self.exclude_labels]


#: Indicator cells that do not set their code (compared in lower case), as spreadsheets and stats packages
#: write "no": a number sets its code unless it is 0.
UNSET = frozenset({"", "0", "false", "f", "no", "n", "none", "null", "nan", "na", "n/a", "-"})


def indicator_set(cell: str) -> bool:
    """Whether an indicator column's cell gives its row the code ("1", "1.0", "TRUE", "yes", "x": set;
    "0", "0.0", "FALSE", "no", empty: not set)."""
    value = cell.strip().lower()
    if value in UNSET:
        return False
    try:
        return float(value) != 0
    except ValueError:
        return True


NON_ANSWER = ("label", "Couldn't be improved")
#: The NHS FFT framework (v6) file's code columns; its two non-codes are left out.
V6_CODES = ("Organisation & efficiency", "Funding & use of financial resources", "Staff manner & personal attributes",
            "Number & deployment of staff", "Staff responsiveness", "Staff continuity", "Competence & training",
            "Unspecified communication", "Staff listening, understanding & involving patients",
            "Information directly from staff during care", "Information provision & guidance",
            "Being kept informed, clarity & consistency of information", "Contacting services",
            "Appointment arrangements", "Appointment method", "Timeliness of care", "Pain management",
            "Diagnosis & triage", "Referals & continuity of care", "Discharge", "Care plans", "Patient records",
            "Cleanliness, tidiness & infection control", "Provision of medical equipment", "Service location",
            "Transport to/ from services", "Parking", "Electronic entertainment", "Feeling safe",
            "Patient appearance & grooming", "Mental Health Act", "Equality, Diversity & Inclusion", "Admission",
            "Safeguarding concerns?", "Environment & Facilities", "Supplying & understanding medication",
            "Activities & access to fresh air", "Food & drink provision & facilities", "Sensory experience",
            "Impact of treatment/ care", "Psychological therapy arrangements", "Existence of services",
            "Choice of services", "Out of hours support (community services)", "Learning organisation",
            "Interaction with family/ carers", "Negative experience & dissatisfaction",
            "Positive experience & gratitude")
PRESETS: dict[str, CsvSpec | str] = {
    "nhs-fft-subcategory": CsvSpec(str(SHARED / "nhs-fft" / "comments.csv"), "feedback", "subcategory",
                                   exclude_where=(NON_ANSWER,)),
    "nhs-fft-label": CsvSpec(str(SHARED / "nhs-fft" / "comments.csv"), "feedback", "label",
                             exclude_where=(NON_ANSWER,)),
    "banking77": CsvSpec(str(SHARED / "banking77" / "test.csv"), "text", "category"),
    "example-study": "example-study",
    # Held out: never used to choose a default, only to check the chosen ones on text not tuned on.
    "nhs-fft-v6": CsvSpec(str(SHARED / "nhs-fft" / "v6framework.csv"), "FFT answer", None, "Respondent ID",
                          indicator_cols=V6_CODES),
    "banking77-train": CsvSpec(str(SHARED / "banking77" / "train.csv"), "text", "category"),
}
#: Presets the defaults were tuned on; the others are held out.
TUNED_ON = ("nhs-fft-subcategory", "nhs-fft-label", "banking77", "example-study")

PRESET_NOTES = {
    "nhs-fft-subcategory": "NHS FFT comments (phase 1), 44 subcategories; rows of the non-answer label "
                           "\"Couldn't be improved\" left out",
    "nhs-fft-label": "NHS FFT comments (phase 1), 9 major labels; the non-answer label \"Couldn't be improved\" left out",
    "banking77": "Banking77 test split, 77 intents (Casanueva et al. 2020, arXiv:2003.04807, CC BY 4.0)",
    "example-study": "examples/ipt-study, 10 fictional interviews; union of both coders' codes",
    "nhs-fft-v6": "NHS FFT comments coded with the v6 framework (two trusts), 48 codes, several per comment; "
                  "held out: not used to choose any default",
    "banking77-train": "Banking77 train split, 77 intents; held out: not used to choose any default",
}


def _segmenter(config: dict) -> Segmenter:
    embedder = Embedder.from_config(config["embed"])
    return Segmenter.from_config(config["segment"], embedder.count_tokens, embedder.max_tokens)


def read_labels(spec: CsvSpec) -> tuple[list[dict], list[str]]:
    """Kept rows (with their labels as a list) and the file's columns. The file is read as ``themesift
    suggest`` reads a CSV (UTF-8, UTF-16 or Windows-1252; comma, semicolon, tab or bar between fields)."""
    warnings: list[str] = []
    try:
        text = decode(Path(spec.path).read_bytes(), spec.path, warnings)
    except IngestError as exc:
        raise SystemExit(str(exc)) from None
    except OSError as exc:
        raise SystemExit(f"{spec.path}: {exc.strerror or exc}") from None
    for warning in warnings:
        print(f"warning {spec.path}: {warning}", file=sys.stderr)
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter(text))
    columns = list(reader.fieldnames or [])
    for col in (spec.text_col, spec.label_col, spec.case_col, *spec.indicator_cols):
        if col is not None and col not in columns:
            raise SystemExit(f"{spec.path}: column '{col}' not found; columns are: "
                             + ", ".join(repr(c) for c in columns))
    rows = []
    for row in reader:
        if any((row.get(col) or "").strip() == value for col, value in spec.exclude_where):
            continue
        labels = spec.labels(row)
        if not labels or not (row.get(spec.text_col) or "").strip():
            continue
        row["_labels"] = labels
        rows.append(row)
    if spec.label_col and not spec.multi_label_sep and rows:
        for sep in (";", "|"):
            joined = sum(sep in row["_labels"][0] for row in rows)
            if joined >= 0.05 * len(rows):
                print(f"warning {spec.path}: {joined} of {len(rows)} labels hold '{sep}'; each is read as one "
                      f"code: give --multi-label-sep '{sep}' if they hold several", file=sys.stderr)
    return rows, columns


def load_csv(spec: CsvSpec, config: dict | None = None, name: str | None = None, limit: int | None = None) -> Corpus:
    """Ingest and segment a labelled CSV with Themesift's stages; units are the clusterable segments."""
    config = config or load_config()
    rows, _ = read_labels(spec)
    if limit is not None:
        rows = rows[:limit]
    with tempfile.TemporaryDirectory(prefix="themesift-bench-") as tmp:
        kept = Path(tmp) / Path(spec.path).name
        fields = [ROW_COLUMN, "text"] + (["case"] if spec.case_col else [])
        with kept.open("w", encoding="utf-8", newline="") as f:
            writer = csvsafe.dict_writer(f, fields)
            writer.writeheader()
            for i, row in enumerate(rows):
                out = {ROW_COLUMN: str(i), "text": row[spec.text_col]}
                if spec.case_col:
                    out["case"] = row[spec.case_col]
                writer.writerow(out)
        ingest_cfg = {**config["ingest"], "csv": {**config["ingest"]["csv"], "text_column": "text",
                                                  "case_column": "case" if spec.case_col else None,
                                                  "row_id_column": ROW_COLUMN, "attribute_columns": []}}
        result = Ingester.from_config(ingest_cfg).collect([str(kept)])
        if not result.documents:
            raise SystemExit(f"{spec.path}: nothing could be read: {[s.reason for s in result.skipped]}")
        segments = [s for s in _segmenter(config).transform(result.documents) if s.clusterable]
    human = {i: frozenset(rows[int(s.row_id)]["_labels"]) for i, s in enumerate(segments)}
    notes = [f"{len(rows)} labelled rows kept, {len(segments)} clusterable segments "
             f"(segments under segment.min_words={config['segment']['min_words']} words are not clustered, "
             f"an answer kept whole from answer_min_words={config['segment'].get('answer_min_words', 1)})"]
    if spec.exclude_labels or spec.exclude_where:
        notes.append("excluded: " + ", ".join([*(f"{spec.label_col}={v}" for v in spec.exclude_labels),
                                               *(f"{c}={v}" for c, v in spec.exclude_where)]))
    return Corpus(name or Path(spec.path).stem, segments, human, spec.path, notes)


def _locate(text: str, excerpt: str, start_hint: int = 0) -> tuple[int, int] | None:
    """Where ``excerpt`` lies in ``text``: exactly, else with any run of whitespace matching any other."""
    at = text.find(excerpt, start_hint)
    if at < 0:
        at = text.find(excerpt)
    if at >= 0:
        return at, at + len(excerpt)
    words = excerpt.split()
    if not words:
        return None
    pattern = re.compile(r"\s+".join(re.escape(w) for w in words))
    match = pattern.search(text, start_hint) or pattern.search(text)
    return (match.start(), match.end()) if match else None


def load_example_study(config: dict | None = None, folder: Path = EXAMPLE) -> Corpus:
    """The example study's clusterable segments with both coders' codes mapped onto them (union)."""
    config = config or load_config()
    result = Ingester.from_config(config["ingest"]).collect([str(folder / "transcripts")])
    docs = {d.name: d for d in result.documents}
    all_segments = _segmenter(config).transform(result.documents)
    selections, missing = [], 0
    with (folder / "human_coding.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            doc = docs.get(row["source"])
            span = _locate(doc.text, row["text"].strip()) if doc else None
            if span is None:
                missing += 1
                continue
            selections.append((row["source"], span[0], span[1], row["code"], row["coder"]))
    seg_tuples = [(i, s.source, s.start, s.end) for i, s in enumerate(all_segments) if s.clusterable]
    by_coder = map_selections(selections, seg_tuples)
    union: dict[int, set[str]] = {}
    for coding in by_coder.values():
        for unit, codes in coding.items():
            union.setdefault(unit, set()).update(codes)
    clusterable = [i for i, s in enumerate(all_segments) if s.clusterable]
    segments = [all_segments[i] for i in clusterable]
    human = {new: frozenset(union[old]) for new, old in enumerate(clusterable) if old in union}
    notes = [f"{len(selections)} excerpts located in the sources ({missing} not found); "
             f"{len(human)} of {len(segments)} clusterable segments carry a human code; uncoded segments "
             "form one group of their own in ARI/NMI and never count towards a code"]
    return Corpus("example-study", segments, human, str(folder), notes)


def load_preset(name: str, config: dict | None = None, limit: int | None = None) -> Corpus:
    if name not in PRESETS:
        raise SystemExit(f"unknown preset '{name}'; presets: {', '.join(PRESETS)}")
    spec = PRESETS[name]
    if spec == "example-study":
        return load_example_study(config)
    corpus = load_csv(spec, config, name, limit)
    corpus.notes.insert(0, PRESET_NOTES[name])
    return corpus
