"""REFI-QDA exchange: write and read ``.qdpx`` projects and ``.qdc`` codebooks.

Why: coders work in QDA tools (ATLAS.ti, MAXQDA, NVivo, QDA Miner...). REFI-QDA lets Themesift hand
its suggested themes to them as a separate user, and read their codings back for agreement figures.

Strict in what we write (namespace ``urn:QDA-XML:project:1.0``, fixed child order, validated
references, deterministic bytes), tolerant in what we read (any inner ``.qde`` name, any or no
namespace, GUIDs in braces or any case, CRLF source text, missing pieces reported in
``QdaProject.problems`` instead of raised).

Offsets (``start``/``end``) are half-open ``[start, end)`` Unicode code point offsets into the
source's plain text (Python ``str`` indices). Texts are held with LF line ends.
GUIDs are held upper case without braces (``8-4-4-4-12``).
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
import zipfile
from bisect import bisect_left
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from pipeline.ingest.unzip import BoundedZip, UnpackLimitError, ZipLimits
from pipeline.xmlsafe import xml_text

PROJECT_NS = "urn:QDA-XML:project:1.0"
CODEBOOK_NS = "urn:QDA-XML:codebook:1.0"
ORIGIN = "Themesift"

# Fixed namespace for stable_guid: uuid5(NAMESPACE_URL, "https://themesift.invalid/refi-qda").
_GUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://themesift.invalid/refi-qda")
_GUID_RE = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)

SourceLoader = Callable[[str], "bytes | None"]


# ---------------------------------------------------------------------------------------------
# GUIDs
# ---------------------------------------------------------------------------------------------


def normalize_guid(guid: str) -> str:
    """Upper case, no braces, no surrounding blanks: the one form GUIDs are compared in."""
    return guid.strip().strip("{}").strip().upper()


def is_valid_guid(guid: str) -> bool:
    """True for a normalised 8-4-4-4-12 hex GUID."""
    return bool(_GUID_RE.match(guid))


def stable_guid(*parts: str) -> str:
    """Deterministic GUID (uuid5 of a fixed namespace, upper case) so re-exports keep their ids."""
    if not parts:
        raise ValueError("stable_guid needs at least one part")
    return str(uuid.uuid5(_GUID_NAMESPACE, "\x1f".join(map(str, parts)))).upper()


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QdaUser:
    """A coder; give the machine a user of its own so its codings are told apart."""

    guid: str
    name: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "guid", normalize_guid(self.guid))


@dataclass(frozen=True)
class QdaCode:
    """A code of the codebook; ``children`` are its sub-codes (sub-themes). ``codable`` False: a folder
    that only groups codes (QDA tools let no one code with it)."""

    guid: str
    name: str
    description: str = ""
    color: str | None = None
    children: tuple["QdaCode", ...] = ()
    codable: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "guid", normalize_guid(self.guid))
        object.__setattr__(self, "children", tuple(self.children))


@dataclass(frozen=True)
class QdaSource:
    """A text source with its plain text (LF line ends when read)."""

    guid: str
    name: str
    text: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "guid", normalize_guid(self.guid))


@dataclass(frozen=True)
class QdaCoding:
    """One code applied by one user to ``text[start:end]`` of one source (code point offsets)."""

    source_guid: str
    start: int
    end: int
    code_guid: str
    user_guid: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "source_guid", normalize_guid(self.source_guid))
        object.__setattr__(self, "code_guid", normalize_guid(self.code_guid))
        if self.user_guid is not None:
            object.__setattr__(self, "user_guid", normalize_guid(self.user_guid))


def _coding_key(c: QdaCoding) -> tuple:
    return (c.source_guid, c.start, c.end, c.user_guid or "", c.code_guid)


@dataclass(frozen=True)
class QdaProject:
    """A REFI-QDA project as plain data.

    Order carries no meaning except in ``codes`` and ``users`` (kept as given: QDA tools make the
    first user the active coder, so an export lists the people first): sources are sorted by
    (name, guid), codings by (source, start, end, user, code), cases by name with sorted source
    guids, so two equal projects compare equal. ``cases`` maps a case name to source guids (a dict,
    so a project compares by value but is not hashable). ``problems`` lists what a reader could not
    map, ``not_used`` what it read and does not use (element name -> count, e.g. ``Notes``), and
    ``origin`` the producing tool as the file names it (``Themesift`` for ours).
    """

    name: str
    users: tuple[QdaUser, ...] = ()
    codes: tuple[QdaCode, ...] = ()
    sources: tuple[QdaSource, ...] = ()
    codings: tuple[QdaCoding, ...] = ()
    cases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    origin: str = field(default="", compare=False)
    not_used: Mapping[str, int] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("users", tuple(self.users))
        set_("not_used", {k: v for k, v in sorted(dict(self.not_used).items()) if v})
        set_("codes", tuple(self.codes))
        set_("sources", tuple(sorted(self.sources, key=lambda s: (s.name, s.guid))))
        set_("codings", tuple(sorted(self.codings, key=_coding_key)))
        set_(
            "cases",
            {
                name: tuple(sorted({normalize_guid(g) for g in guids}))
                for name, guids in sorted(dict(self.cases).items())
            },
        )
        set_("problems", tuple(self.problems))

    def all_codes(self) -> Iterator[QdaCode]:
        """Every code, depth first, parents before children."""
        return _walk_codes(self.codes)


def _walk_codes(codes: Iterable[QdaCode]) -> Iterator[QdaCode]:
    for code in codes:
        yield code
        yield from _walk_codes(code.children)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _format_time(moment: datetime) -> str:
    """xs:dateTime in UTC with a Z; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_guid(guid: str, what: str) -> None:
    if not is_valid_guid(guid):
        raise ValueError(f"{what}: GUID {guid!r} is not 8-4-4-4-12 hex")


def _code_element(code: QdaCode) -> ET.Element:
    el = ET.Element("Code", {"guid": code.guid, "name": code.name,
                             "isCodable": "true" if code.codable else "false"})
    if _color(code.color):
        el.set("color", _color(code.color))
    if code.description:
        ET.SubElement(el, "Description").text = code.description
    for child in code.children:
        el.append(_code_element(child))
    return el


def _codes_element(codes: Sequence[QdaCode]) -> ET.Element:
    el = ET.Element("Codes")
    for code in codes:
        el.append(_code_element(code))
    return el


def _serialize(root: ET.Element) -> bytes:
    """UTF-8 with declaration, two-space indent, only characters XML 1.0 allows. Elements carry local names
    and the root an ``xmlns`` attribute (ElementTree's default_namespace refuses unqualified attributes)."""
    for el in root.iter():
        if el.text:
            el.text = xml_text(el.text)
        for name, value in el.attrib.items():
            el.set(name, xml_text(value))
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _validate(project: QdaProject) -> None:
    """Refuse to write a project other tools would choke on: strict in what we write."""
    seen: set[str] = set()
    for what, guid in (
        [("User", u.guid) for u in project.users]
        + [("Code", c.guid) for c in _walk_codes(project.codes)]
        + [("TextSource", s.guid) for s in project.sources]
    ):
        _check_guid(guid, what)
        if guid in seen:
            raise ValueError(f"{what}: GUID {guid} used twice")
        seen.add(guid)
    users = {u.guid for u in project.users}
    codes = {c.guid for c in _walk_codes(project.codes)}
    texts = {s.guid: s.text for s in project.sources}
    for c in project.codings:
        if c.source_guid not in texts:
            raise ValueError(f"coding {c}: unknown source GUID")
        if c.code_guid not in codes:
            raise ValueError(f"coding {c}: unknown code GUID")
        if c.user_guid is not None and c.user_guid not in users:
            raise ValueError(f"coding {c}: unknown user GUID")
        if not 0 <= c.start < c.end <= len(texts[c.source_guid]):
            raise ValueError(f"coding {c}: span outside the source text")
    for name, guids in project.cases.items():
        for g in guids:
            if g not in texts:
                raise ValueError(f"case {name!r}: unknown source GUID {g}")


def project_xml(project: QdaProject, created: datetime) -> bytes:
    """The ``project.qde`` document. Selections group codings of one span by one user."""
    _validate(project)
    stamp = _format_time(created)
    root = ET.Element(
        "Project",
        {"xmlns": PROJECT_NS, "name": project.name, "origin": ORIGIN, "creationDateTime": stamp},
    )
    if project.users:
        users = ET.SubElement(root, "Users")
        for u in project.users:
            ET.SubElement(users, "User", {"guid": u.guid, "name": u.name})
    if project.codes:
        book = ET.SubElement(root, "CodeBook")
        book.append(_codes_element(project.codes))
    if project.cases:
        cases = ET.SubElement(root, "Cases")
        for name, guids in project.cases.items():
            case = ET.SubElement(
                cases, "Case", {"guid": stable_guid("case", name), "name": name}
            )
            for g in guids:
                ET.SubElement(case, "SourceRef", {"targetGUID": g})
    if project.sources:
        groups: dict[str, dict[tuple[int, int, str], list[str]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for c in project.codings:  # already sorted
            groups[c.source_guid][(c.start, c.end, c.user_guid or "")].append(c.code_guid)
        sources = ET.SubElement(root, "Sources")
        for s in project.sources:
            src = ET.SubElement(
                sources,
                "TextSource",
                {"guid": s.guid, "name": s.name, "plainTextPath": f"internal://{s.guid}.txt"},
            )
            for (start, end, user), code_guids in sorted(groups[s.guid].items()):
                sel_attrs = {
                    "guid": stable_guid("selection", s.guid, str(start), str(end), user),
                    "startPosition": str(start),
                    "endPosition": str(end),
                }
                if user:
                    sel_attrs["creatingUser"] = user
                sel_attrs["creationDateTime"] = stamp
                sel = ET.SubElement(src, "PlainTextSelection", sel_attrs)
                for code_guid in sorted(set(code_guids)):
                    attrs = {
                        "guid": stable_guid(
                            "coding", s.guid, str(start), str(end), user, code_guid
                        )
                    }
                    if user:
                        attrs["creatingUser"] = user
                    attrs["creationDateTime"] = stamp
                    coding = ET.SubElement(sel, "Coding", attrs)
                    ET.SubElement(coding, "CodeRef", {"targetGUID": code_guid})
    return _serialize(root)


def _zip_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    info.external_attr = 0o644 << 16
    return info


def write_qdpx(
    project: QdaProject, path: str | PathLike[str], *, created: datetime | None = None
) -> None:
    """Write ``project`` as a ``.qdpx`` ZIP: ``project.qde`` plus ``sources/<GUID>.txt`` (UTF-8).

    Output is deterministic: same project and same ``created`` give the same bytes (ZIP entries
    carry a fixed date). ``created`` (default: now, UTC) is the only timestamp written. Source
    text is written as given; give LF text for an exact round trip (the reader turns CRLF to LF).
    Raises ``ValueError`` for invalid GUIDs or codings pointing at unknown sources, codes, users
    or outside the text.
    """
    created = created or datetime.now(timezone.utc)
    xml = project_xml(project, created)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(_zip_entry("project.qde"), xml)
        for s in project.sources:
            zf.writestr(_zip_entry(f"sources/{s.guid}.txt"), s.text.encode("utf-8"))


def codebook_xml(codes: Sequence[QdaCode]) -> bytes:
    """The ``.qdc`` codebook document (at least one code: the schema refuses an empty ``<Codes/>``)."""
    if not codes:
        raise ValueError("an empty codebook cannot be written as .qdc (the schema wants at least one code)")
    for code in _walk_codes(codes):
        _check_guid(code.guid, "Code")
    root = ET.Element("CodeBook", {"xmlns": CODEBOOK_NS, "origin": ORIGIN})
    root.append(_codes_element(codes))
    return _serialize(root)


def write_qdc(codes: Sequence[QdaCode], path: str | PathLike[str]) -> None:
    """Write a codebook-only ``.qdc`` file (namespace ``urn:QDA-XML:codebook:1.0``)."""
    Path(path).write_bytes(codebook_xml(codes))


# ---------------------------------------------------------------------------------------------
# Reading (tolerant)
# ---------------------------------------------------------------------------------------------


def _local(tag: object) -> str:
    """Tag name without its namespace: readers match on local names only."""
    if not isinstance(tag, str):  # comments, processing instructions
        return ""
    return tag.rsplit("}", 1)[-1]


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def _child(el: ET.Element, name: str) -> ET.Element | None:
    found = _children(el, name)
    return found[0] if found else None


def _attr(el: ET.Element, name: str) -> str | None:
    """Attribute by local name, whatever namespace prefix a tool put on it."""
    if name in el.attrib:
        return el.attrib[name]
    for key, value in el.attrib.items():
        if _local(key) == name:
            return value
    return None


def _decode_text(data: bytes, label: str, problems: list[str]) -> str:
    """UTF-8 (BOM stripped), UTF-16 when it has a BOM; undecodable bytes replaced and reported."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        problems.append(f"{label}: text is not valid UTF-8; undecodable bytes replaced")
        return data.decode("utf-8-sig", errors="replace")


_PTC_RE = re.compile(
    rb"(<(?:[\w.-]+:)?PlainTextContent(?:\s[^>]*)?>)(.*?)(</(?:[\w.-]+:)?PlainTextContent\s*>)",
    re.DOTALL,
)


def _keep_carriage_returns(xml_bytes: bytes) -> bytes:
    """Escape CRs inside <PlainTextContent> so the XML parser does not fold CRLF into LF.

    XML parsers normalise line ends; offsets from tools that counted CRLF would then be off.
    Only ASCII-compatible encodings are touched.
    """
    head = xml_bytes[:200].lower()
    if xml_bytes.startswith((b"\xff\xfe", b"\xfe\xff")) or b"utf-16" in head:
        return xml_bytes
    return _PTC_RE.sub(lambda m: m.group(1) + _escape_cr(m.group(2)) + m.group(3), xml_bytes)


_CDATA_RE = re.compile(rb"(<!\[CDATA\[.*?\]\]>)", re.DOTALL)


def _escape_cr(content: bytes) -> bytes:
    """CR -> ``&#13;`` in character data; inside CDATA the section is split around the CR."""
    parts = _CDATA_RE.split(content)
    return b"".join(
        part.replace(b"\r", b"]]>&#13;<![CDATA[") if part.startswith(b"<![CDATA[")
        else part.replace(b"\r", b"&#13;")
        for part in parts
    )


@dataclass(frozen=True)
class _LineEnds:
    """CRLF -> LF conversion of a text and of offsets into it."""

    text: str
    crlf_at: tuple[int, ...]  # positions of the CR of each CRLF in the original text

    @classmethod
    def of(cls, raw: str) -> "_LineEnds":
        crlf = tuple(m.start() for m in re.finditer("\r\n", raw))
        text = raw.replace("\r\n", "\n").replace("\r", "\n")
        return cls(text, crlf)

    def offset(self, original: int) -> int:
        """Each CRLF before ``original`` is one character shorter in the LF text."""
        return original - bisect_left(self.crlf_at, original)


POSITION_UNITS = ("auto", "codepoints", "utf16", "codepoints-lf", "utf16-lf")


def _is_word_boundary(text: str, pos: int) -> bool:
    """A selection end that does not split a run of letters/digits."""
    return pos <= 0 or pos >= len(text) or not (text[pos - 1].isalnum() and text[pos].isalnum())


def _utf16_to_cp(text: str) -> dict[int, int]:
    """UTF-16 code-unit offset -> code-point offset (offsets inside a surrogate pair are absent)."""
    out, units = {0: 0}, 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        out[units] = i + 1
    return out


def _map_positions(
    raw: str, ends: _LineEnds, unit: str, spans: Sequence[tuple[int, int]]
) -> list[tuple[int, int] | None]:
    """Map file positions to code-point offsets into the LF text under one reading of the units."""
    base = ends.text if unit.endswith("-lf") else raw
    table = _utf16_to_cp(base) if unit.startswith("utf16") else None
    out: list[tuple[int, int] | None] = []
    for start, end in spans:
        if table is not None:
            s, e = table.get(start), table.get(end)
        else:
            s, e = start, end
        if s is None or e is None or not 0 <= s < e <= len(base):
            out.append(None)
            continue
        out.append((s, e) if base is ends.text else (ends.offset(s), ends.offset(e)))
    return out


def _on_word_boundaries(text: str, span: tuple[int, int]) -> bool:
    """Neither end of a selection splits a word."""
    return _is_word_boundary(text, span[0]) and _is_word_boundary(text, span[1])


def _boundary_score(text: str, mapped: Sequence[tuple[int, int] | None]) -> int:
    return sum(1 for m in mapped if m is not None and _on_word_boundaries(text, m))


def _choose_units(
    raw: str, ends: _LineEnds, spans: Sequence[tuple[int, int]], origin: str, forced: str
) -> tuple[str, str]:
    """Pick how a source's positions count characters; returns (unit, why).

    The standard says code points; NVivo counts UTF-16 code units; some tools count CRLF once.
    The readings differ only after a non-BMP character or a CRLF, so only then is the choice
    made, by the number of selections whose both ends fall on word boundaries (ties: the
    producing tool's habit, then the standard).
    """
    if forced != "auto":
        return forced, "forced by the position-units option"
    has_astral = any(ord(ch) > 0xFFFF for ch in raw)
    has_crlf = bool(ends.crlf_at)
    if not spans or not (has_astral or has_crlf):
        return "codepoints", "no character outside the BMP and no CRLF: all readings agree"
    preferred = "utf16" if "nvivo" in origin.lower() else "codepoints"
    candidates = [preferred] + [u for u in POSITION_UNITS[1:] if u != preferred]
    scores = {u: _boundary_score(ends.text, _map_positions(raw, ends, u, spans)) for u in candidates}
    best = max(candidates, key=lambda u: scores[u])  # first wins ties: the tool's habit
    detail = ", ".join(f"{u} {scores[u]}" for u in candidates)
    tool = f"; file from {origin!r}" if origin else ""
    return best, f"{scores[best]} of {len(spans)} selections on word boundaries ({detail}){tool}"


def _read_code(el: ET.Element, problems: list[str], label: str) -> QdaCode | None:
    guid = _attr(el, "guid")
    name = _attr(el, "name") or ""
    children = tuple(
        c for c in (_read_code(ch, problems, label) for ch in _children(el, "Code")) if c
    )
    if not guid:
        problems.append(f"{label}: Code {name!r} has no guid; skipped with its sub-codes")
        return None
    desc_el = _child(el, "Description")
    description = (desc_el.text or "") if desc_el is not None else ""
    codable = (_attr(el, "isCodable") or "true").strip().lower() not in ("false", "0")
    return QdaCode(normalize_guid(guid), name, description, _color(_attr(el, "color")), children, codable)


# Codes without a colour of their own take these in turn: the nearest (CIELAB) to Tableau 10's colours, told
# apart on screen and in print, among QualCoder's 120 code colours. QualCoder's importer replaces any other
# colour by the nearest of its own (Tableau's brown became plum), so these come across unchanged in every tool.
PALETTE = ("#3D6CB3", "#FF8B33", "#C54949", "#7EA793", "#487E4B", "#F7D358", "#B76E95", "#F5A9A9",
           "#D8866D", "#B8B8B8")


def palette_color(index: int) -> str:
    """The ``index``-th colour of :data:`PALETTE`, round and round."""
    return PALETTE[index % len(PALETTE)]


_COLOR_RE = re.compile(r"^#?([0-9A-Fa-f]{6})([0-9A-Fa-f]{2})?$")


def _color(value: str | None) -> str | None:
    """``#RRGGBB`` upper case (the schema's form); tools write ``#rrggbb``, some add alpha or drop the
    ``#``. Anything else is not a colour: None."""
    m = _COLOR_RE.match((value or "").strip())
    return f"#{m.group(1).upper()}" if m else None


def _read_codes(parent: ET.Element | None, problems: list[str], label: str) -> tuple[QdaCode, ...]:
    if parent is None:
        return ()
    codes_el = _child(parent, "Codes")
    container = codes_el if codes_el is not None else parent
    return tuple(
        c for c in (_read_code(el, problems, label) for el in _children(container, "Code")) if c
    )


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def read_qde(
    xml_bytes: bytes,
    source_loader: SourceLoader | None = None,
    *,
    label: str = "project.qde",
    position_units: str = "auto",
) -> QdaProject:
    """Read a REFI-QDA project document tolerantly.

    ``position_units`` says how selection positions count characters (one of
    ``POSITION_UNITS``); ``auto`` decides per source (see :func:`_choose_units`) and reports
    the choice and the reason in ``problems``, with a warning when selections cut words.

    ``source_loader(plainTextPath)`` returns the bytes of a referenced source file or None.
    Namespaces are ignored (local names), GUIDs normalised, CRLF text turned to LF with offsets
    shifted (when a text has CRLF its offsets are taken to count them). Codings with unknown code
    GUIDs, spans outside the text, sources that cannot be loaded, non-text sources and the like
    are listed in ``problems``. Raises ``ValueError`` (naming ``label``) only for XML that
    cannot be parsed or whose root is not ``Project``.
    """
    if position_units not in POSITION_UNITS:
        raise ValueError(f"position units {position_units!r}: use one of {', '.join(POSITION_UNITS)}")
    problems: list[str] = []
    try:
        root = ET.fromstring(_keep_carriage_returns(xml_bytes))
    except ET.ParseError as exc:
        raise ValueError(f"{label}: not well-formed XML ({exc})") from exc
    if _local(root.tag) != "Project":
        raise ValueError(f"{label}: root element is {_local(root.tag)!r}, expected 'Project'")

    def guid_of(el: ET.Element, attr: str, what: str) -> str | None:
        raw = _attr(el, attr)
        if raw is None or not raw.strip():
            return None
        guid = normalize_guid(raw)
        if not is_valid_guid(guid):
            problems.append(f"{label}: {what} GUID {raw!r} is not 8-4-4-4-12 hex; kept as is")
        return guid

    users: list[QdaUser] = []
    users_el = _child(root, "Users")
    for el in _children(users_el, "User") if users_el is not None else []:
        guid = guid_of(el, "guid", "User")
        if guid is None:
            problems.append(f"{label}: User {_attr(el, 'name')!r} without guid; skipped")
            continue
        users.append(QdaUser(guid, _attr(el, "name") or _attr(el, "id") or ""))  # the schema makes both optional
    user_guids = {u.guid for u in users}

    codes = _read_codes(_child(root, "CodeBook"), problems, label)
    for code in _walk_codes(codes):
        if not is_valid_guid(code.guid):
            problems.append(f"{label}: Code {code.name!r} GUID {code.guid!r} is not 8-4-4-4-12 hex")
    code_guids = {c.guid for c in _walk_codes(codes)}

    sources: list[QdaSource] = []
    codings: list[QdaCoding] = []
    unknown_users: Counter[str] = Counter()
    unknown_codes: dict[str, list[str]] = defaultdict(list)
    no_ref: Counter[str] = Counter()
    not_used: Counter[str] = Counter()
    sources_el = _child(root, "Sources")
    for src in list(sources_el) if sources_el is not None else []:
        kind = _local(src.tag)
        name = _attr(src, "name") or ""
        if kind != "TextSource":
            if kind:
                not_used[kind] += 1
            continue
        guid = guid_of(src, "guid", "TextSource")
        where = f"{label}: TextSource {name!r}"
        if guid is None:
            problems.append(f"{where} has no guid; skipped with its codings")
            continue
        content = _child(src, "PlainTextContent")
        path = _attr(src, "plainTextPath")
        raw: str | None = None
        if content is not None:
            raw = content.text or ""
            if path:
                problems.append(f"{where} has both PlainTextContent and plainTextPath; used the content")
        elif path:
            data = source_loader(path) if source_loader else None
            if data is None:
                problems.append(f"{where}: source file {path!r} missing; source and codings dropped")
                continue
            raw = _decode_text(data, f"{where} ({path})", problems)
        else:
            problems.append(f"{where} has no text (no plainTextPath or PlainTextContent); dropped")
            continue
        ends = _LineEnds.of(raw)
        sources.append(QdaSource(guid, name, ends.text))
        valid: list[tuple[ET.Element, int, int]] = []
        no_positions: list[str] = []
        for sel in _children(src, "PlainTextSelection"):
            start, end = _int(_attr(sel, "startPosition")), _int(_attr(sel, "endPosition"))
            if start is None or end is None:
                no_positions.append(_attr(sel, "guid") or "?")
                continue
            valid.append((sel, start, end))
        if no_positions:
            problems.append(f"{where}: {len(no_positions)} selection(s) without valid positions; dropped: "
                            + ", ".join(no_positions[:3]) + (", ..." if len(no_positions) > 3 else ""))
        unit, why = _choose_units(
            raw, ends, [(s, e) for _, s, e in valid], _attr(root, "origin") or "", position_units
        )
        if valid and (unit != "codepoints" or position_units != "auto"):  # the standard's reading is silent
            problems.append(f"{where}: positions read as {unit}: {why}")
        mapped = _map_positions(raw, ends, unit, [(s, e) for _, s, e in valid])
        cutting = 0
        outside: list[str] = []
        for (sel, start, end), span in zip(valid, mapped):
            sel_id = _attr(sel, "guid") or "?"
            if span is None:
                outside.append(f"{sel_id} [{start}, {end})")
                continue
            if not _on_word_boundaries(ends.text, span):
                cutting += 1
            sel_user = guid_of(sel, "creatingUser", "creatingUser")
            for coding in _children(sel, "Coding"):
                user = guid_of(coding, "creatingUser", "creatingUser") or sel_user
                refs = _children(coding, "CodeRef")
                if not refs:
                    no_ref[where] += 1
                for ref in refs:
                    code_guid = guid_of(ref, "targetGUID", "CodeRef")
                    if code_guid is None or code_guid not in code_guids:
                        unknown_codes[where].append(str(_attr(ref, "targetGUID")))
                        continue
                    if user is not None and user not in user_guids:
                        unknown_users[user] += 1
                    codings.append(QdaCoding(guid, span[0], span[1], code_guid, user))
        if outside:
            problems.append(
                f"{where}: {len(outside)} selection(s) outside the text (length {len(raw)}, read as "
                f"{unit}) or empty; dropped: " + ", ".join(outside[:3]) + (", ..." if len(outside) > 3 else "")
            )
        if cutting:
            problems.append(
                f"{where}: {cutting} of {len(valid)} selections start or end inside a word "
                f"(read as {unit}); check them, or force the position units"
            )

    for where, missing in sorted(unknown_codes.items()):
        named = sorted(set(missing))
        problems.append(f"{where}: {len(missing)} coding(s) refer to unknown code GUID(s) "
                        + ", ".join(named[:3]) + (", ..." if len(named) > 3 else "") + "; dropped")
    for where, n in sorted(no_ref.items()):
        problems.append(f"{where}: {n} coding(s) without a CodeRef; dropped")
    if unknown_users:
        n = sum(unknown_users.values())
        problems.append(
            f"{label}: " + ("the file lists no <Users>" if users_el is None else "users not in <Users>")
            + f": {n} coding(s) by {len(unknown_users)} user GUID(s) kept, each user named by its GUID"
        )
    for el in root:
        what = _local(el.tag)
        if what in _COUNTED:
            not_used[what] += sum(1 for c in el if _local(c.tag)) if what != "Description" else 1
    not_used["VariableValue"] += sum(1 for el in root.iter() if _local(el.tag) == "VariableValue")
    not_used = +not_used  # zero counts out
    if not_used:
        problems.append(f"{label}: read and not used: " + not_used_summary(not_used))

    source_guids = {s.guid for s in sources}
    cases: dict[str, set[str]] = {}
    cases_el = _child(root, "Cases")
    for case in _children(cases_el, "Case") if cases_el is not None else []:
        case_name = _attr(case, "name") or _attr(case, "guid") or ""
        if case_name in cases:
            problems.append(f"{label}: case name {case_name!r} used twice; source lists merged")
        refs = cases.setdefault(case_name, set())
        for ref in _children(case, "SourceRef"):
            target = guid_of(ref, "targetGUID", "SourceRef")
            if target is None or target not in source_guids:
                problems.append(
                    f"{label}: case {case_name!r} refers to unknown source "
                    f"{_attr(ref, 'targetGUID')!r}; reference dropped"
                )
                continue
            refs.add(target)

    return QdaProject(
        name=_attr(root, "name") or "",
        users=tuple(users),
        codes=codes,
        sources=tuple(sources),
        codings=tuple(codings),
        cases={k: tuple(v) for k, v in cases.items()},
        problems=tuple(problems),
        origin=_attr(root, "origin") or "",
        not_used=dict(not_used),
    )


# Project-level elements Themesift does not use: counted (their children) in one summary line.
_COUNTED = ("Variables", "Notes", "Links", "Sets", "Graphs", "Description")


def not_used_summary(counts: Mapping[str, int]) -> str:
    """``3 Notes, 2 Sets, ...``: what a file held that Themesift read and does not use."""
    return ", ".join(f"{n} {what}" for what, n in sorted(counts.items()) if n) + (
        " (Themesift keeps sources, codes with their hierarchy, colours and descriptions, codings, "
        "users and cases)"
    )


def _pick_qde(names: Sequence[str]) -> str | None:
    """The project document: ``project.qde`` at the root first, else the shallowest ``.qde``."""
    qdes = [n for n in names if n.lower().endswith(".qde") and not n.endswith("/")]
    if not qdes:
        return None
    return min(qdes, key=lambda n: (n.count("/"), n.lower() != "project.qde", n.lower(), n))


def _zip_loader(zf: BoundedZip, qde_name: str) -> SourceLoader:
    """Find ``internal://name`` (or any path's file name) in the ZIP, case-insensitively.

    Preference: ``sources/`` next to the .qde, then ``sources/`` anywhere, then anywhere.
    """
    names = [n for n in zf.zf.namelist() if not n.endswith("/")]
    base = str(PurePosixPath(qde_name).parent)
    base = "" if base == "." else base + "/"

    def load(path: str) -> bytes | None:
        target = re.sub(r"^[a-zA-Z]+://", "", path.strip()).replace("\\", "/")
        file_name = target.rsplit("/", 1)[-1].lower()
        if not file_name:
            return None
        wanted = [
            (base + "sources/" + target).lower(),
            ("sources/" + target).lower(),
            (base + target).lower(),
            target.lower(),
        ]
        lower = {n.lower(): n for n in names}
        for w in wanted:
            if w in lower:
                return zf.read(lower[w])
        candidates = [n for n in names if n.rsplit("/", 1)[-1].lower() == file_name]
        if not candidates:
            return None
        best = min(candidates, key=lambda n: ("/sources/" not in "/" + n.lower(), n.count("/"), n))
        return zf.read(best)

    return load


def read_qdpx(
    path: str | PathLike[str], limits: ZipLimits = ZipLimits(), *, position_units: str = "auto"
) -> QdaProject:
    """Read a ``.qdpx`` project tolerantly (see :func:`read_qde`).

    The inner ``.qde`` may have any name and sit in a subfolder; source files are looked up
    case-insensitively under ``sources/`` and elsewhere in the ZIP. Raises ``ValueError`` naming
    the file when it is not a ZIP, holds no ``.qde``, or unpacks to more than ``limits`` allow
    (counted while reading: the ``.qde`` against ``max_xml_mb``, all it reads against ``max_unpacked_mb``).
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a ZIP archive, so not a REFI-QDA .qdpx project")
    try:
        with zipfile.ZipFile(path) as zf:
            _check_readable(zf, path)
            names = zf.namelist()
            qde = _pick_qde(names)
            if qde is None:
                raise ValueError(f"{path}: no .qde project document inside the ZIP")
            others = [n for n in names if n.lower().endswith(".qde") and n != qde]
            bounded = BoundedZip(zf, limits)
            project = read_qde(
                bounded.read(qde), _zip_loader(bounded, qde), label=f"{path.name}:{qde}",
                position_units=position_units,
            )
    except UnpackLimitError as exc:
        raise ValueError(f"{path}: not read: {exc}") from None
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{path}: damaged ZIP archive ({exc})") from exc
    except RecursionError:
        raise ValueError(f"{path}: codes nested too deep to read (more than Python's recursion limit)") from None
    if others:
        extra = f"{path.name}: several .qde files; read {qde!r}, ignored {others!r}"
        project = replace(project, problems=project.problems + (extra,))
    return project


_READABLE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


def _check_readable(zf: zipfile.ZipFile, path: Path) -> None:
    """A password-protected ZIP, or one packed with a method Python's zipfile lacks (Deflate64, as 7-Zip
    offers), is refused in words before any entry is read."""
    if any(info.flag_bits & 0x1 for info in zf.infolist()):
        raise ValueError(f"{path}: password-protected (encrypted) ZIP; export or zip the project again "
                         "without a password")
    odd = sorted({info.compress_type for info in zf.infolist()} - set(_READABLE_METHODS))
    if odd:
        raise ValueError(f"{path}: packed with a compression method this program cannot read (method "
                         f"{', '.join(map(str, odd))}, e.g. Deflate64); zip it again with ordinary compression")


def read_qdc(path: str | PathLike[str], problems: list[str] | None = None) -> tuple[QdaCode, ...]:
    """Read a ``.qdc`` codebook (any namespace: QDA-XML 1.0, ATLAS.ti's 0.4, none). Codes without a
    guid are skipped and said in ``problems`` when a list is given."""
    path = Path(path)
    try:
        root = ET.fromstring(path.read_bytes())
    except ET.ParseError as exc:
        raise ValueError(f"{path}: not well-formed XML ({exc})") from exc
    if _local(root.tag) != "CodeBook":
        raise ValueError(f"{path}: root element is {_local(root.tag)!r}, expected 'CodeBook'")
    problems = problems if problems is not None else []
    others = Counter(_local(el.tag) for el in root if _local(el.tag) != "Codes")  # ATLAS.ti's code groups: Sets
    if others:
        problems.append(f"{path.name}: read and not used: {not_used_summary(dict(others))}")
    try:
        return _read_codes(root, problems, path.name)
    except RecursionError:
        raise ValueError(f"{path}: codes nested too deep to read (more than Python's recursion limit)") from None


def read_codebook(
    path: str | PathLike[str], limits: ZipLimits = ZipLimits()
) -> tuple[tuple[QdaCode, ...], list[str]]:
    """The codes of a ``.qdc`` codebook or of the ``<CodeBook>`` of a ``.qdpx`` project (also one sent
    renamed ``.zip``), with their hierarchy, colours and descriptions, and what was read and not used.

    Raises ``ValueError`` naming the file for a file of another kind, one that cannot be read, or a
    codebook without a single code.
    """
    path = Path(path)
    problems: list[str] = []
    suffix = path.suffix.lower()
    if suffix == ".qdc":
        codes = read_qdc(path, problems)
    elif suffix in (".qdpx", ".zip"):
        project = read_qdpx(path, limits)
        codes = project.codes
        problems.extend(p for p in project.problems if "read and not used" not in p and "positions read" not in p
                        and "inside a word" not in p)
        kept = dict(project.not_used)
        if project.sources:
            kept["TextSource"] = kept.get("TextSource", 0) + len(project.sources)
        if project.codings:
            kept["Coding"] = len(project.codings)
        if kept:
            problems.append(f"{path.name}: read and not used by a codebook import: "
                            + ", ".join(f"{n} {w}" for w, n in sorted(kept.items()))
                            + " (themesift import codings reads the codings)")
    else:
        raise ValueError(f"{path}: use a .qdc codebook or a .qdpx REFI-QDA project (or one renamed .zip)")
    if not codes:
        raise ValueError(f"{path}: the codebook holds no code; nothing to import")
    return codes, problems


__all__ = [
    "CODEBOOK_NS",
    "PROJECT_NS",
    "QdaCode",
    "QdaCoding",
    "QdaProject",
    "QdaSource",
    "QdaUser",
    "codebook_xml",
    "is_valid_guid",
    "normalize_guid",
    "project_xml",
    "PALETTE",
    "not_used_summary",
    "palette_color",
    "read_codebook",
    "read_qdc",
    "read_qde",
    "read_qdpx",
    "stable_guid",
    "write_qdc",
    "write_qdpx",
]
