"""The study as a REFI-QDA project: sources, codebook, the machine's codings and each human's.

Pure: builds a :class:`pipeline.exchange.refi_qda.QdaProject` that ``write_qdpx`` writes. GUIDs are derived
from content (study, names, offsets) with ``stable_guid``, so exporting the same study twice gives
the same bytes but for the creation timestamp. Offsets are Unicode code point offsets into the
study's plain text, which is exported as the source text.

The codebook, as QDA tools show it: the human coders' codes first (with the place, colour and description
their own tool gave them where an import kept it), then the confirmed codebook as its own tree under a
non-codable folder ``Confirmed codebook`` (present as soon as a theme is confirmed; ``apply``'s codings point
into it), then the run's themes under one non-codable folder ``Themesift run N`` (``T01 name``, with the
theme's one-line description and keywords). Every code has a colour. Users: the people first (QDA tools make
the first user the active coder), then the confirmed codebook as applied, then the machine. A human coder
whose file's spans were kept is exported on those spans, as they selected them (those that fell on no
compared segment too), so importing the export again maps the same spans onto the same segments; a coder
imported before spans were kept is exported on the spans of the segments their codes were mapped to.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Collection, Hashable, Iterable, Mapping, Sequence

from pipeline.compare.agreement import Selection, natural_key
from pipeline.exchange.codings import CONFIRMED_FOLDER, MACHINE_USER_NAME, RUN_FOLDER, CodeInfo, StudySource
from pipeline.exchange.refi_qda import (
    QdaCode,
    QdaCoding,
    QdaProject,
    QdaSource,
    QdaUser,
    palette_color,
    stable_guid,
)

FOLDER_COLOR = "#7F7F7F"  # the non-codable folders: grey, so the codes stand out


@dataclass(frozen=True)
class ExportSegment:
    segment_id: Hashable
    source_key: Hashable
    start: int
    end: int
    case: str | None


@dataclass(frozen=True)
class ExportTheme:
    """A code Themesift made: a run's theme (``code``: ``T01 name``) or a confirmed theme (its name)."""

    code: str
    description: str = ""
    color: str | None = None
    parent: str | None = None  # confirmed themes: the name of the confirmed theme it sits under
    codable: bool = True       # confirmed themes: False for an imported category


def user_guid(name: str) -> str:
    return stable_guid("user", name)


def source_guid(study: str, name: str) -> str:
    return stable_guid("source", study, name)


def code_guid(study: str, kind: str, code: str) -> str:
    return stable_guid("code", study, kind, code)


def _tree(study: str, kind: str, names: Sequence[str], info: Mapping[str, CodeInfo], first_color: int
          ) -> list[QdaCode]:
    """``names`` as a tree by each one's ``parent`` (a parent outside ``names`` puts it at the top); a code
    without a colour of its own takes the palette's next."""
    index = {n: i for i, n in enumerate(names)}
    kids: dict[str | None, list[str]] = {}
    for n in names:
        parent = info[n].parent if n in info else None
        kids.setdefault(parent if parent in index and parent != n else None, []).append(n)

    def build(name: str, seen: frozenset[str]) -> QdaCode:
        meta = info.get(name, CodeInfo())
        children = tuple(build(c, seen | {c}) for c in kids.get(name, ()) if c not in seen)
        return QdaCode(code_guid(study, kind, name), _own_name(name, meta.parent), meta.description,
                       meta.color or palette_color(first_color + index[name]), children, meta.codable)

    placed = kids.get(None, [])
    return [build(n, frozenset({n})) for n in placed]


def _own_name(name: str, parent: str | None) -> str:
    """A code's name inside its parent: an import names codes that share a name by their path
    (``Barriers/Other``, ``pipeline.exchange.codings.code_names``); under ``Barriers`` it is ``Other`` again, as
    the coders' own tool had it."""
    head, _, leaf = name.rpartition("/")
    return leaf if parent and head and leaf and head.rsplit("/", 1)[-1] == parent.rsplit("/", 1)[-1] else name


def _unique(codes: Sequence[QdaCode], taken: set[str], tag: str) -> list[QdaCode]:
    """The codes with any name already ``taken`` (a coder's code of the same name) made ``name (tag)``:
    QDA tools such as QualCoder keep one code per name. ``taken`` grows with the names given."""
    out = []
    for c in codes:
        name = c.name if c.name not in taken else f"{c.name} ({tag})"
        taken.add(name)
        out.append(replace(c, name=name, children=tuple(_unique(c.children, taken, tag))))
    return out


def study_project(
    study: str,
    sources: Sequence[StudySource],
    segments: Sequence[ExportSegment],
    machine: Mapping[Hashable, str | None] | None = None,
    themes: Sequence[ExportTheme] = (),
    humans: Mapping[str, Mapping[Hashable, Iterable[str]]] | None = None,
    code_info: Mapping[str, CodeInfo] | None = None,
    machine_user: str = MACHINE_USER_NAME,
    run_id: int = 1,
    confirmed: Sequence[ExportTheme] = (),
    applied: Collection[str] = (),
    selections: Mapping[str, Sequence[Selection]] | None = None,
) -> QdaProject:
    """A project with the sources and three code trees (see the module docstring).

    ``machine``: segment id -> theme code (None: outlier, not exported); ``humans``: coder -> segment id ->
    codes (the coders named in ``applied`` are the confirmed codebook as applied: their codes go in the
    confirmed tree); ``code_info``: code name -> what an imported codebook said of it (codes there without a
    coding are exported too); ``confirmed``: the confirmed themes in list order; ``selections``: coder -> the
    ``(source key, start, end, code, coder)`` spans their import selected, written instead of their
    segments' spans. A human code with the same name as a theme stays a separate code.
    """
    spans = {n: list(v) for n, v in (selections or {}).items() if n in humans and n not in applied and v}
    humans = humans or {}
    info = dict(code_info or {})
    by_id = {s.segment_id: s for s in segments}
    sources = sorted(sources, key=lambda s: natural_key(s.name))
    sguid = {s.key: source_guid(study, s.name) for s in sources}
    qsources = [QdaSource(sguid[s.key], s.name, s.text) for s in sources]
    people = sorted((n for n in humans if n not in applied), key=natural_key)
    appliers = sorted((n for n in humans if n in applied), key=natural_key)
    used = {c for n in people for codes in humans[n].values() for c in codes}
    used |= {sel[3] for v in spans.values() for sel in v}
    human_codes = sorted(used | set(info), key=natural_key)
    codes = _tree(study, "human", human_codes, info, 0)
    confirmed_info = {t.code: CodeInfo(t.parent, t.color, t.description, t.codable) for t in confirmed}
    confirmed_names = [t.code for t in confirmed]
    confirmed_names += sorted({c for n in appliers for cs in humans[n].values() for c in cs} - set(confirmed_names),
                              key=natural_key)
    taken = set(human_codes)
    if confirmed_names:
        book = _unique(_tree(study, "confirmed", confirmed_names, confirmed_info, len(human_codes)), taken,
                       "confirmed")
        codes.append(QdaCode(code_guid(study, "folder", CONFIRMED_FOLDER), CONFIRMED_FOLDER,
                             "The codebook the coders confirmed in Themesift's review", FOLDER_COLOR,
                             tuple(book), codable=False))
    if themes:
        folder = RUN_FOLDER.format(run=run_id)
        run_codes = [QdaCode(code_guid(study, "machine", t.code), t.code, t.description, t.color or palette_color(i))
                     for i, t in enumerate(themes)]
        codes.append(QdaCode(code_guid(study, "folder", folder), folder,
                             f"Themes Themesift suggested in run {run_id}, by rank", FOLDER_COLOR,
                             tuple(_unique(run_codes, taken, f"run {run_id}")), codable=False))
    known_theme = {t.code for t in themes}
    users: list[QdaUser] = []
    codings: list[QdaCoding] = []
    problems: list[str] = []
    for name in people + appliers:
        if name == machine_user:
            raise ValueError(f"a human coder may not be called {machine_user!r}")
        kind = "confirmed" if name in applied else "human"
        huser = QdaUser(user_guid(name), name)
        users.append(huser)
        if name in spans:
            codings += [QdaCoding(sguid[src], start, end, code_guid(study, kind, code), huser.guid)
                        for src, start, end, code, _ in spans[name] if src in sguid]
            continue
        for seg_id, seg_codes in humans[name].items():
            seg = by_id.get(seg_id)
            if seg is None or seg.source_key not in sguid:
                continue
            for code in sorted(set(seg_codes)):
                codings.append(QdaCoding(sguid[seg.source_key], seg.start, seg.end,
                                         code_guid(study, kind, code), huser.guid))
    if machine is not None:
        muser = QdaUser(user_guid(machine_user), machine_user)
        users.append(muser)
        for seg_id, theme in machine.items():
            seg = by_id.get(seg_id)
            if theme is None or seg is None or seg.source_key not in sguid:
                continue
            if theme not in known_theme:
                problems.append(f"segment {seg_id}: theme {theme!r} not among the exported themes")
                continue
            codings.append(QdaCoding(sguid[seg.source_key], seg.start, seg.end,
                                     code_guid(study, "machine", theme), muser.guid))
    cases: dict[str, set[str]] = {}
    for seg in segments:
        if seg.case and seg.source_key in sguid:
            cases.setdefault(seg.case, set()).add(sguid[seg.source_key])
    if problems:
        raise ValueError("; ".join(problems[:5]))
    return QdaProject(
        name=study,
        users=tuple(users),
        codes=tuple(codes),
        sources=tuple(qsources),
        codings=tuple(codings),
        cases={k: tuple(v) for k, v in cases.items()},
    )
