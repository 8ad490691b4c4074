"""The study as a REFI-QDA project: sources, codebook, the machine's codings and each human's.

Pure: builds a :class:`pipeline.exchange.refi_qda.QdaProject` that ``write_qdpx`` writes. GUIDs are derived
from content (study, names, offsets) with ``stable_guid``, so exporting the same study twice gives
the same bytes but for the creation timestamp. Offsets are Unicode code point offsets into the
study's plain text, which is exported as the source text.

Every coder is a ``User``: the machine is ``Themesift (machine)``; its codes are the run's themes
(``T01 name``, with the theme's one-line description and keywords as the code's description). Human codings are exported on the spans of the
segments they were mapped to (the unit every comparison uses), so importing the export again gives
back exactly the same segment codings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Iterable, Mapping, Sequence

from pipeline.compare.agreement import natural_key
from pipeline.exchange.codings import MACHINE_USER_NAME, StudySource
from pipeline.exchange.refi_qda import QdaCode, QdaCoding, QdaProject, QdaSource, QdaUser, stable_guid

MACHINE_COLOR = "#4C72B0"
HUMAN_COLOR = "#DD8452"


@dataclass(frozen=True)
class ExportSegment:
    segment_id: Hashable
    source_key: Hashable
    start: int
    end: int
    case: str | None


@dataclass(frozen=True)
class ExportTheme:
    code: str
    description: str = ""


def user_guid(name: str) -> str:
    return stable_guid("user", name)


def source_guid(study: str, name: str) -> str:
    return stable_guid("source", study, name)


def code_guid(study: str, kind: str, code: str) -> str:
    return stable_guid("code", study, kind, code)


def study_project(
    study: str,
    sources: Sequence[StudySource],
    segments: Sequence[ExportSegment],
    machine: Mapping[Hashable, str | None] | None = None,
    themes: Sequence[ExportTheme] = (),
    humans: Mapping[str, Mapping[Hashable, Iterable[str]]] | None = None,
    code_descriptions: Mapping[str, str] | None = None,
    machine_user: str = MACHINE_USER_NAME,
) -> QdaProject:
    """A project with the sources, the machine's themes and the human codes as two code groups.

    ``machine``: segment id -> theme code (None: outlier, not exported); ``humans``: coder ->
    segment id -> codes. Codes: the human codes (sorted) first, then the machine's themes in rank
    order. A human code that has the same name as a theme stays a separate code.
    """
    humans = humans or {}
    descriptions = dict(code_descriptions or {})
    by_id = {s.segment_id: s for s in segments}
    sources = sorted(sources, key=lambda s: natural_key(s.name))
    sguid = {s.key: source_guid(study, s.name) for s in sources}
    qsources = [QdaSource(sguid[s.key], s.name, s.text) for s in sources]
    human_codes = sorted({c for coding in humans.values() for codes in coding.values() for c in codes},
                         key=natural_key)
    codes = [QdaCode(code_guid(study, "human", c), c, descriptions.get(c, ""), HUMAN_COLOR) for c in human_codes]
    codes += [QdaCode(code_guid(study, "machine", t.code), t.code, t.description, MACHINE_COLOR) for t in themes]
    known_theme = {t.code for t in themes}
    users: list[QdaUser] = []
    codings: list[QdaCoding] = []
    problems: list[str] = []
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
    for name in sorted(humans, key=natural_key):
        if name == machine_user:
            raise ValueError(f"a human coder may not be called {machine_user!r}")
        huser = QdaUser(user_guid(name), name)
        users.append(huser)
        for seg_id, seg_codes in humans[name].items():
            seg = by_id.get(seg_id)
            if seg is None or seg.source_key not in sguid:
                continue
            for code in sorted(set(seg_codes)):
                codings.append(QdaCoding(sguid[seg.source_key], seg.start, seg.end,
                                         code_guid(study, "human", code), huser.guid))
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
