"""Compare codings: reading human codings, storing them, comparing every coder, the matrix and .qdpx out.

The pure parts are tested on small hand-made texts. The end-to-end tests use conftest's
``example_study`` (the real suggest flow, run once per session in a temporary workspace) and drive the
``themesift`` CLI on a private copy of its database (real flows on the session's Prefect test harness,
real SQLite).
"""

from __future__ import annotations

import csv
import math
import re
import xml.etree.ElementTree as ET
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from models.codings import Coding, replace_codings, stored_codings
from models.records import Segment, Source, Study
from models.store import Store
from pipeline.compare.agreement import map_selections, partition_to_coding
from pipeline.exchange.codings import (
    APPLY_USER_NAME,
    MACHINE_USER_NAME,
    CodingFileError,
    StudySource,
    TextLocator,
    coding_csv_selections,
    is_themesift_folder,
    qda_selections,
    read_codings,
    unmapped_selections,
)
from pipeline.compare.compare import compare_study
from qda_schema import assert_valid_qdpx
from pipeline.exchange.refi_qda import (
    PROJECT_NS,
    QdaCode,
    QdaCoding,
    QdaProject,
    QdaSource,
    QdaUser,
    read_qde,
    read_qdpx,
    stable_guid,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ipt-study"
CREATED = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)

P01 = ("Interviewer: How long is the wait?\n"
       "P01: The waiting list was  huge.\nWe had\n\u201cno staff\u201d \u2013 none at all.\n"
       "Interviewer: And money?\nP01: Money is tight. Money is tight.\n")
P02 = "P02: Video calls work for most people. Some have no broadband.\n"


def _sources() -> list[StudySource]:
    return [StudySource(1, "P01.txt", P01, frozenset({"P01"})),
            StudySource(2, "P02.docx", P02, frozenset({"P02"}))]


# ------------------------------------------------------------------ excerpts and CSV


def test_locator_is_whitespace_then_typography_tolerant():
    loc = TextLocator(P01)
    start = P01.index("The waiting")
    end = P01.index("none at all.") + len("none at all.")
    # blanks and line breaks compare equal; curly quotes and the en dash fold to ASCII
    assert loc.find_all('The waiting list was huge. We had "no staff" - none at all.') == [(start, end)]
    assert loc.find_all("  The waiting\n list ") == [(start, start + len("The waiting list"))]
    assert loc.find_all("money is TIGHT.") == [(P01.index("Money"), P01.index("Money") + 15),
                                               (P01.rindex("Money"), P01.rindex("Money") + 15)]
    assert loc.find_all("not in the text") == []


def test_coding_csv_by_text_case_and_offsets_reports_what_it_cannot_map():
    start = P02.index("Some have")
    data = (
        "Source,Case,Start,End,Text,Code,Coder\n"
        'P01.txt,,,,"The waiting list was huge. We had ""no staff"" - none at all.",capacity,ann\n'
        "p01,,,,The waiting list,capacity,bob\n"  # file name without extension, other case
        ",P02,,,Some have no broadband.,exclusion,ann\n"  # by case
        f"P02.docx,,{start},{len(P02) - 1},,exclusion,bob\n"  # by offsets
        ",P01,,,Money is tight.,costs,ann\n"  # twice in the text: first place, reported
        "P09.txt,,,,Anything,costs,ann\n"  # no such source
        "P01.txt,,,,A sentence nobody said.,costs,ann\n"  # not found
        "P02.docx,,10,999,,costs,ann\n"  # offsets outside the text
    )
    result = coding_csv_selections(data, _sources(), origin="c.csv")
    ws = P01.index("The waiting")
    assert result.selections[0] == (1, ws, P01.index("none at all.") + 12, "capacity", "ann")
    assert result.selections[1] == (1, ws, ws + len("The waiting list"), "capacity", "bob")
    assert result.selections[2] == (2, start, len(P02) - 1, "exclusion", "ann")
    assert result.selections[3] == (2, start, len(P02) - 1, "exclusion", "bob")
    assert result.selections[4] == (1, P01.index("Money"), P01.index("Money") + 15, "costs", "ann")
    assert len(result.selections) == 5
    assert result.ambiguous == 1
    assert result.unmatched_sources == ["P09.txt (1 row)"]
    assert len(result.not_found) == 2 and "line 8" in result.not_found[0] and "outside" in result.not_found[1]
    assert result.coders == ["ann", "bob"]
    assert any("P09.txt" in line for line in result.messages())


def test_coding_csv_coder_option_and_missing_columns():
    data = "source,text,code,coder\nP02.docx,Video calls work for most people.,video,ann\n" \
           "P02.docx,Video calls work for most people.,video,bob\n"
    assert [s[4] for s in coding_csv_selections(data, _sources(), coder="bob").selections] == ["bob"]
    nobody = coding_csv_selections(data, _sources(), coder="Bob")  # a name not in the file: says whose it holds
    assert nobody.selections == [] and "the file's coders: ann, bob" in " ".join(nobody.messages())
    no_coder = "source,text,code\nP02.docx,Video calls work for most people.,video\n"
    assert coding_csv_selections(no_coder, _sources(), coder="cy").selections[0][4] == "cy"
    with pytest.raises(CodingFileError, match="coder"):
        coding_csv_selections(no_coder, _sources())
    with pytest.raises(CodingFileError, match="source or case"):
        coding_csv_selections("text,code,coder\nx,y,z\n", _sources())
    semicolons = "source;text;code;coder\nP02.docx;Some have no broadband.;exclusion;ann\n"
    assert len(coding_csv_selections(semicolons, _sources()).selections) == 1


def test_a_survey_rows_excerpt_is_looked_for_in_that_respondents_answer():
    """In a survey CSV every respondent is a case of one source: 'No' of respondent 3 was placed inside
    respondent 1's 'Nothing.' (its first place in the file), and every later 'No' reused it."""
    text = "Nothing.\nThe staff were kind.\nNo\nNo\nParking was hard, no spaces.\n"
    rows = {"R1": "Nothing.", "R2": "The staff were kind.", "R3": "No", "R4": "No", "R5": "Parking was hard, no spaces."}
    starts, at = {}, 0
    for c, t in rows.items():
        starts[c] = text.index(t, at)
        at = starts[c] + len(t)
    survey = StudySource(7, "survey.csv", text, frozenset(rows),
                         tuple(sorted((c.casefold(), ((starts[c], starts[c] + len(t)),)) for c, t in rows.items())))
    data = "case,text,code,coder\nR3,No,refusal,ann\nR4,No,refusal,ann\nR1,Nothing.,none,ann\nR5,no,parking,ann\n"
    result = coding_csv_selections(data, [survey], origin="c.csv")
    placed = {(start, end): code for _, start, end, code, _ in result.selections}
    assert placed == {(starts["R3"], starts["R3"] + 2): "refusal", (starts["R4"], starts["R4"] + 2): "refusal",
                      (starts["R1"], starts["R1"] + 8): "none", (text.index("no spaces"), text.index("no spaces") + 2): "parking"}
    assert result.outside_case == 0 and not result.not_found
    # a row whose text is not in its respondent's answer is still placed, and said
    odd = coding_csv_selections("case,text,code,coder\nR2,Parking was hard,parking,ann\n", [survey], origin="c.csv")
    assert odd.outside_case == 1 and any("not in the text of the case their row names" in m for m in odd.messages())


# ------------------------------------------------------------------ REFI-QDA projects


def test_qda_sources_matched_by_name_then_text_and_relocated():
    ann = QdaUser(stable_guid("u", "ann"), "ann")
    machine = QdaUser(stable_guid("u", "m"), MACHINE_USER_NAME)
    code = QdaCode(stable_guid("c", "x"), "exclusion")
    moved = "Header added by another tool\n" + P02  # same name, text differs: offsets re-found by text
    by_text = QdaSource(stable_guid("s", "1"), "Interview one", P01)  # other name, same text
    renamed = QdaSource(stable_guid("s", "2"), "p02.DOCX", moved)
    stranger = QdaSource(stable_guid("s", "3"), "P77", "Nothing like the study's text.")
    at = moved.index("Some have")
    p01_at = P01.index("The waiting")
    project = QdaProject(
        name="x", origin="Themesift", users=(ann, machine), codes=(code,), sources=(by_text, renamed, stranger),
        codings=(QdaCoding(renamed.guid, at, at + 23, code.guid, ann.guid),
                 QdaCoding(by_text.guid, p01_at, p01_at + 16, code.guid, ann.guid),
                 QdaCoding(stranger.guid, 0, 7, code.guid, ann.guid),
                 QdaCoding(by_text.guid, 0, 5, code.guid, machine.guid)),
    )
    result = qda_selections(project, _sources(), origin="p.qdpx")
    start = P02.index("Some have")
    assert sorted(result.selections) == [(1, p01_at, p01_at + 16, "exclusion", "ann"),
                                         (2, start, start + 23, "exclusion", "ann")]
    assert result.relocated == 1
    assert result.matched_sources["Interview one"] == ("P01.txt", "text")
    assert result.matched_sources["p02.DOCX"] == ("P02.docx", "name, text differs")
    assert result.unmatched_sources == ["P77"]
    assert result.skipped_users and MACHINE_USER_NAME in result.skipped_users[0]


def test_a_user_named_like_our_machine_in_another_tools_file_is_a_person():
    """Only a file Themesift wrote (origin) has the machine in it; elsewhere the name is a person's."""
    impostor = QdaUser(stable_guid("u", "m"), MACHINE_USER_NAME)
    code = QdaCode(stable_guid("c", "x"), "exclusion")
    src = QdaSource(stable_guid("s", "1"), "P01.txt", P01)
    coding = QdaCoding(src.guid, 0, 5, code.guid, impostor.guid)
    foreign = QdaProject(name="x", origin="MAXQDA 2022", users=(impostor,), codes=(code,), sources=(src,),
                         codings=(coding,))
    result = qda_selections(foreign, _sources(), origin="team.qdpx")
    assert result.selections == [(1, 0, 5, "exclusion", f"{MACHINE_USER_NAME} (from team.qdpx)")]
    assert not result.skipped_users and any("is not Themesift's" in p for p in result.problems)
    ours = QdaProject(name="x", origin="Themesift", users=(impostor,), codes=(code,), sources=(src,),
                      codings=(coding,))
    result = qda_selections(ours, _sources(), origin="ours.qdpx")
    assert result.selections == [] and MACHINE_USER_NAME in result.skipped_users[0]


def test_users_without_a_name_or_sharing_one_stay_coders_of_their_own():
    """The schema makes a user's name optional: two such users (or two 'Admin's) were one coder, and the
    selections they both made were stored once."""
    code = QdaCode(stable_guid("c", "x"), "exclusion")
    src = QdaSource(stable_guid("s", "1"), "P01.txt", P01)
    for first, second in (("", ""), ("Admin", "Admin")):
        a, b = QdaUser(stable_guid("u", "a"), first), QdaUser(stable_guid("u", "b"), second)
        project = QdaProject(name="x", origin="ATLAS.ti", users=(a, b), codes=(code,), sources=(src,),
                             codings=(QdaCoding(src.guid, 0, 5, code.guid, a.guid),
                                      QdaCoding(src.guid, 0, 5, code.guid, b.guid)))
        result = qda_selections(project, _sources(), origin="team.qdpx")
        coders = sorted(who for *_, who in result.selections)
        if first:
            assert coders == sorted(f"Admin ({u.guid.split('-')[0]})" for u in (a, b))
            assert any("2 users are named 'Admin'" in p for p in result.problems)
        else:
            assert coders == sorted([a.guid, b.guid])
    # a user with an id but no name (the schema allows either) is filed under the id
    xml = _qde_with_user(f'<User guid="{stable_guid("u", "al")}" id="AL"/>')
    assert [u.name for u in read_qde(xml.encode()).users] == ["AL"]


def _qde_with_user(user: str) -> str:
    return ('<?xml version="1.0" encoding="utf-8"?><Project xmlns="urn:QDA-XML:project:1.0" name="p">'
            f'<Users>{user}</Users><CodeBook><Codes><Code guid="{stable_guid("c", "x")}" name="x" isCodable="true"/>'
            '</Codes></CodeBook></Project>')


def _export_study():
    """Two sources, a coder with codes from a tool's codebook, the confirmed codebook applied, a run."""
    from pipeline.exchange.codings import CodeInfo
    from pipeline.exchange.qda_export import ExportSegment, ExportTheme

    segments = [ExportSegment(10, 1, 0, 34, "P01"), ExportSegment(11, 1, 35, 66, "P01"),
                ExportSegment(20, 2, 0, 38, "P02")]
    humans = {"zoe": {10: ["Waiting"], 11: ["Staff"]}, "amira": {20: ["Staff", "Access"]},
              APPLY_USER_NAME: {10: ["Access"], 20: ["Remote care"]}}
    info = {"Barriers": CodeInfo(None, "#112233", "What stops people", codable=False),
            "Waiting": CodeInfo("Barriers", "#445566", "Time on lists"),
            "Unused": CodeInfo("Barriers", None, "nobody used it")}
    confirmed = [ExportTheme("Access", "Getting care", "#AA0000"), ExportTheme("Remote care", "Calls", None, "Access")]
    themes = [ExportTheme("T01 waiting list", "Themesift suggestion"), ExportTheme("T02 video", "")]
    machine = {10: "T01 waiting list", 11: None, 20: "T02 video"}
    return segments, humans, info, confirmed, themes, machine


def test_codes_that_share_a_name_keep_it_under_their_parents_through_a_round_trip(tmp_path):
    """MAXQDA's 'Other' under two codes: imported as 'Barriers/Other' and 'Enablers/Other' (one name each in
    Themesift), exported as 'Other' under each parent, as the coders' tool had them."""
    from pipeline.exchange.codings import CodeInfo, code_infos, code_names
    from pipeline.exchange.qda_export import ExportSegment, study_project
    from pipeline.exchange.refi_qda import write_qdpx

    def tree(parent: str) -> QdaCode:
        return QdaCode(stable_guid("c", parent), parent, children=(QdaCode(stable_guid("c", parent, "o"), "Other"),))

    names = code_names([tree("Barriers"), tree("Enablers")])
    assert sorted(names.values()) == ["Barriers", "Barriers/Other", "Enablers", "Enablers/Other"]
    info = code_infos([tree("Barriers"), tree("Enablers")])
    segments = [ExportSegment(10, 1, 0, 34, "P01"), ExportSegment(20, 2, 0, 38, "P02")]
    project = study_project("s", _sources(), segments, {}, (), {"zoe": {10: ["Barriers/Other"], 20: ["Enablers/Other"]}},
                            code_info=info)
    assert [(c.name, [k.name for k in c.children]) for c in project.codes] == [("Barriers", ["Other"]),
                                                                                ("Enablers", ["Other"])]
    write_qdpx(project, tmp_path / "s.qdpx", created=CREATED)
    back = qda_selections(read_qdpx(tmp_path / "s.qdpx"), _sources(), origin="s.qdpx")
    assert sorted(sel[3] for sel in back.selections) == ["Barriers/Other", "Enablers/Other"]
    assert isinstance(info["Barriers/Other"], CodeInfo) and info["Barriers/Other"].parent == "Barriers"


def test_export_tree_users_first_colours_and_a_faithful_re_import(tmp_path):
    from pipeline.exchange.qda_export import study_project
    from pipeline.exchange.refi_qda import write_qdpx

    segments, humans, info, confirmed, themes, machine = _export_study()
    project = study_project("s", _sources(), segments, machine, themes, humans, code_info=info, run_id=7,
                            confirmed=confirmed, applied={APPLY_USER_NAME})
    assert [u.name for u in project.users] == ["amira", "zoe", APPLY_USER_NAME, MACHINE_USER_NAME]
    tops = [(c.name, c.codable) for c in project.codes]
    assert tops == [("Access", True), ("Barriers", False), ("Staff", True), ("Confirmed codebook", False),
                    ("Themesift run 7", False)]
    _, barriers, _, book, run = project.codes
    assert [c.name for c in barriers.children] == ["Unused", "Waiting"] and barriers.color == "#112233"
    # a confirmed theme named as a coder's code is told apart: QDA tools keep one code per name
    assert [c.name for c in book.children] == ["Access (confirmed)"]
    assert book.children[0].children[0].name == "Remote care"
    names = [c.name for c in project.all_codes()]
    assert len(names) == len(set(names))
    assert [c.name for c in run.children] == ["T01 waiting list", "T02 video"]
    assert all(c.color for c in project.all_codes())
    path = tmp_path / "s.qdpx"
    write_qdpx(project, path, created=CREATED)
    assert_valid_qdpx(path)
    back = read_qdpx(path)  # every code, coding, user and colour
    assert back == project and back.problems == () and back.origin == "Themesift"
    assert [(c.guid, c.color, c.codable) for c in back.all_codes()] == [
        (c.guid, c.color, c.codable) for c in project.all_codes()]
    # what import codings keeps: the people's codings (the machine's are the run's own), the codes' places
    result = qda_selections(back, _sources(), origin=path.name)
    assert sorted(result.coders) == ["amira", "zoe"] and len(result.skipped_users) == 2
    assert result.code_info["Waiting"].parent == "Barriers" and result.code_info["Unused"].description
    assert not any(is_themesift_folder(n) or n.endswith("(confirmed)") for n in result.code_info)


def test_export_writes_a_coders_own_spans_where_they_were_kept():
    """A coder whose file's spans were kept is exported on them (one inside a segment, one on the
    interviewer's question that no segment carries); a coder without kept spans on their segments."""
    from pipeline.exchange.qda_export import study_project

    segments, humans, info, confirmed, themes, machine = _export_study()
    question = (1, P01.index("How long"), P01.index("wait?") + 5, "Waiting", "zoe")
    inside = (1, P01.index("waiting list"), P01.index("huge.") + 5, "Staff", "zoe")
    project = study_project("s", _sources(), segments, machine, themes, humans, code_info=info,
                            applied={APPLY_USER_NAME}, selections={"zoe": [question, inside]})
    users = {u.guid: u.name for u in project.users}
    names = {c.guid: c.name for c in project.all_codes()}
    spans = sorted((users[c.user_guid], c.start, c.end, names[c.code_guid]) for c in project.codings
                   if users[c.user_guid] in ("zoe", "amira"))
    assert spans == sorted([("zoe", question[1], question[2], "Waiting"), ("zoe", inside[1], inside[2], "Staff"),
                            ("amira", 0, 38, "Access"), ("amira", 0, 38, "Staff")])


def test_tolerant_hand_written_project_to_segments(tmp_path):
    """CRLF source text (offsets count the CR), braces and lower case in GUIDs, a prefixed namespace,
    the inner file named after the project: read, matched to the study source, mapped onto segments."""
    crlf = P01.replace("\n", "\r\n")
    start = crlf.index("The waiting")
    end = crlf.index("none at all.") + len("none at all.")
    src_guid = "{9f1c7c52-2f7e-4b0e-9d35-000000000001}"
    xml = f"""<?xml version="1.0" encoding="utf-8"?>
<qda:Project xmlns:qda="urn:QDA-XML:project:1.0" name="Hand made">
  <qda:Users><qda:User guid="{{aaaaaaaa-0000-0000-0000-000000000001}}" name="dora"/></qda:Users>
  <qda:CodeBook><qda:Codes>
    <qda:Code guid="{{cccccccc-0000-0000-0000-000000000001}}" name="Access" isCodable="true">
      <qda:Code guid="cccccccc-0000-0000-0000-000000000002" name="capacity" isCodable="true"/>
    </qda:Code>
  </qda:Codes></qda:CodeBook>
  <qda:Sources>
    <qda:TextSource guid="{src_guid}" name="P01.txt" plainTextPath="internal://{src_guid.strip('{}')}.txt">
      <qda:PlainTextSelection guid="{{bbbbbbbb-0000-0000-0000-000000000001}}" startPosition="{start}"
          endPosition="{end}" creatingUser="{{AAAAAAAA-0000-0000-0000-000000000001}}">
        <qda:Coding guid="dddddddd-0000-0000-0000-000000000001">
          <qda:CodeRef targetGUID="{{CCCCCCCC-0000-0000-0000-000000000002}}"/>
        </qda:Coding>
      </qda:PlainTextSelection>
    </qda:TextSource>
  </qda:Sources>
</qda:Project>"""
    path = tmp_path / "export.qdpx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("Hand made.qde", xml.encode("utf-8"))
        zf.writestr(f"Sources/{src_guid.strip('{}')}.txt", crlf.encode("utf-8"))
    result = read_codings(path, _sources())
    lf_start, lf_end = P01.index("The waiting"), P01.index("none at all.") + 12
    assert result.selections == [(1, lf_start, lf_end, "capacity", "dora")]
    assert result.problems == []
    # segments: one per participant sentence group; the selection covers the first fully
    segments = [("s1", 1, lf_start, P01.index("We had") - 1), ("s2", 1, P01.index("We had"), lf_end),
                ("s3", 1, P01.index("Money"), len(P01) - 1)]
    codings = map_selections(result.selections, segments)
    assert codings == {"dora": {"s1": frozenset({"capacity"}), "s2": frozenset({"capacity"})}}
    assert unmapped_selections(result.selections, segments, codings) == []


def test_half_cover_rule_and_lost_selections():
    segments = [("a", 1, 0, 10), ("b", 1, 10, 20)]
    # 5/10 covers a; [8, 13) has 2/10 of a and 3/10 of b, and at most 3 of its 5 characters in either,
    # so 3/5 >= 0.5 gives it to b; [25, 30) lies on no segment
    sels = [(1, 0, 5, "x", "ann"), (1, 8, 13, "y", "ann"), (1, 25, 30, "z", "ann")]
    codings = map_selections(sels, segments)
    assert codings == {"ann": {"a": frozenset({"x"}), "b": frozenset({"y"})}}
    assert unmapped_selections(sels, segments, codings) == [(1, 25, 30, "z", "ann")]
    strict = map_selections(sels, segments, min_cover=0.7)
    assert strict == {"ann": {"a": frozenset({"x"})}}  # [0, 5) lies wholly inside a
    assert unmapped_selections(sels, segments, strict) == [(1, 8, 13, "y", "ann"), (1, 25, 30, "z", "ann")]


# ------------------------------------------------------------------ the comparison on a small case


def test_compare_study_maps_machine_themes_by_hungarian_matching():
    units = [f"u{i}" for i in range(12)]
    cases = {u: f"P{i % 3 + 1}" for i, u in enumerate(units)}
    F = frozenset
    ann = {u: F({"cost"}) for u in units[:6]} | {u: F({"access"}) for u in units[6:10]}
    bob = {u: F({"cost"}) for u in units[:5]} | {u: F({"access"}) for u in units[5:10]}
    machine = {u: "T01 money" for u in units[:6]} | {u: "T02 reach" for u in units[6:9]} | {"u9": None}
    result = compare_study(units, cases, {"ann": ann, "bob": bob}, machine, ["T01 money", "T02 reach"], top_k=2,
                           min_positive=1)
    m_ann = result.machine[0]
    assert m_ann.match.mapping == {"T01 money": "cost", "T02 reach": "access"}
    # machine vs ann on "cost": identical -> kappa 1; on "access": ann 4, machine 3 (u9 outlier)
    assert m_ann.report.get(("machine", "ann"), "cost").kappa == pytest.approx(1.0)
    a = [1 if "access" in ann.get(u, ()) else 0 for u in units]
    m = [1 if machine.get(u) == "T02 reach" else 0 for u in units]
    assert m_ann.report.get(("machine", "ann"), "access").kappa == pytest.approx(cohen_kappa_score(a, m))
    assert result.all_report is not None and result.all_report.overall[-1].coders == ("ann", "bob", "machine")
    assert [r["case"] for r in result.coverage] == ["P1", "P2", "P3"]
    assert m_ann.overlap.tolist() == [[0, 6], [3, 0]]  # themes x codes (access, cost)
    # a stored coder of kind machine (the confirmed codebook applied) is compared by code name only
    applied = compare_study(units, cases, {"ann": ann, "bob": bob}, machine, kinds={"bob": "machine"},
                            min_positive=1)
    assert [m.human for m in applied.machine] == ["ann"]
    assert applied.human_report.get(("ann", "bob"), "cost").kappa == result.human_report.get(("ann", "bob"),
                                                                                             "cost").kappa
    mapping = next(r["mapping"] for r in applied.agreement_rows() if r["comparison"] == "ann vs bob")
    assert "confirmed codebook" in mapping


# ------------------------------------------------------------------ storage


def _tiny_store(tmp_path) -> tuple[Store, list[int]]:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with store.transaction() as session:
        study = Study(name="tiny")
        source = Source(study=study, name="a.txt", path="a.txt", format="txt", sha256="0" * 64, text=P02)
        session.add_all([study, source])
        session.flush()
        segs = [Segment(source_id=source.id, start=s, end=e, case="P02", speaker="P02", role="participant",
                        turn_index=0, text=P02[s:e], text_hash=str(s), clusterable=True)
                for s, e in ((5, 38), (39, 62))]
        session.add_all(segs)
        session.flush()
        return store, [s.id for s in segs]


def test_import_replaces_a_coders_earlier_import_in_one_transaction(tmp_path):
    store, (s1, s2) = _tiny_store(tmp_path)
    with store.transaction() as session:
        replace_codings(session, "tiny", {"ann": {s1: ["video"], s2: ["access", "video"]}, "bob": {s1: ["video"]}},
                        "first.csv")
    with store.transaction() as session:
        assert replace_codings(session, "tiny", {"ann": {s2: ["access"]}}, "second.csv") == {"ann": 1}
    with store.sessions() as session:
        codings, coders = stored_codings(session, "tiny")
    assert codings == {"ann": {s2: frozenset({"access"})}, "bob": {s1: frozenset({"video"})}}
    assert {c.name: c.origin for c in coders} == {"ann": "second.csv", "bob": "first.csv"}
    # a failing import (unknown segment: foreign key) leaves the earlier one as it was
    with pytest.raises(Exception):
        with store.transaction() as session:
            replace_codings(session, "tiny", {"ann": {s1: ["x"], 999_999: ["y"]}}, "broken.csv")
    with store.sessions() as session:
        assert stored_codings(session, "tiny")[0]["ann"] == {s2: frozenset({"access"})}
        assert session.query(Coding).count() == 2


# ------------------------------------------------------------------ end to end on the example study


@pytest.fixture(scope="session")
def ipt(example_study, tmp_path_factory):
    """A private copy of the example study (conftest's ``example_study``, suggested once per session)
    with a config file for the CLI: imports here must not show up in other tests' copies."""
    import sqlite3

    import yaml

    folder = tmp_path_factory.mktemp("compare-study")
    source_db = example_study.config["store"]["url"].removeprefix("sqlite:///")
    with sqlite3.connect(source_db) as src, sqlite3.connect(folder / "themesift.db") as dst:
        src.backup(dst)  # consistent even while the original is in WAL mode
    store_cfg = {"workspace": str(folder), "url": f"sqlite:///{folder / 'themesift.db'}"}
    cfg_file = folder / "config.yaml"
    cfg_file.write_text(yaml.safe_dump({"store": store_cfg}), encoding="utf-8")
    config = {**example_study.config, "store": {**example_study.config["store"], **store_cfg}}
    return SimpleNamespace(ws=folder, cfg=str(cfg_file), config=config, store=Store.from_config(config["store"]),
                           study=example_study.name)


def _cli(*argv: str) -> int:
    from flows.cli import main

    return main(list(argv))


@pytest.fixture(scope="session")
def imported(ipt):
    """The example's two human coders imported through the CLI (a real flow)."""
    assert _cli("import", "codings", str(EXAMPLE / "human_coding.csv"), "--study", "ipt", "--config", ipt.cfg) == 0
    with ipt.store.sessions() as session:
        return {k: v for k, v in stored_codings(session, "ipt")[0].items() if k in HUMANS}


HUMANS = ("amira", "ben")


def _view(ipt):
    from flows.compare import load_view

    return load_view(ipt.store, "ipt")


def _codebook() -> list[str]:
    with (EXAMPLE / "codebook.csv").open(encoding="utf-8") as handle:
        return [row["code"] for row in csv.DictReader(handle)]


def test_import_maps_both_coders_onto_the_runs_segments(ipt, imported):
    view = _view(ipt)
    units = set(view.unit_ids)
    assert set(imported) == set(HUMANS)
    for coding in imported.values():
        assert set(coding) <= units
        assert len(coding) > 0.9 * len(units)  # they coded every substantive passage
        assert {c for cs in coding.values() for c in cs} == set(_codebook())


def _vector(coding, units, code):
    return np.array([1 if code in coding.get(u, ()) else 0 for u in units])


def test_compare_end_to_end_figures_match_the_libraries(ipt, imported, capsys):
    capsys.readouterr()
    assert _cli("compare", "--study", "ipt", "--config", ipt.cfg) == 0
    out = capsys.readouterr().out
    for head in ("amira vs ben", "machine vs amira", "machine vs ben"):
        assert head in out
    assert "Hungarian" in out
    view = _view(ipt)
    folder = ipt.ws / "ipt"
    stem = f"compare-run{view.run_id}"
    report = folder / f"{stem}.html"
    assert report.exists()
    html = report.read_text(encoding="utf-8")
    assert html.count("<svg") >= 4  # kappa bars, a heatmap per human, coverage
    assert "http" not in html.replace("http://www.w3.org/2000/svg", "")  # self-contained

    with (folder / f"{stem}-agreement.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    with (folder / f"{stem}-mapping.csv").open(encoding="utf-8") as handle:
        mapping_rows = list(csv.DictReader(handle))
    units = view.unit_ids
    printed = {line.split()[0]: line for line in out.splitlines() if line.split()[:1]}
    human_kappas = []
    for code in _codebook():
        row = next(r for r in rows if r["comparison"] == "amira vs ben" and r["code"] == code)
        a, b = _vector(imported["amira"], units, code), _vector(imported["ben"], units, code)
        kappa = cohen_kappa_score(a, b)
        alpha = krippendorff.alpha(reliability_data=np.vstack([a, b]).astype(float), level_of_measurement="nominal")
        assert float(row["kappa"]) == pytest.approx(kappa, abs=1e-9)
        assert float(row["alpha"]) == pytest.approx(alpha, abs=1e-9)
        assert [int(row[k]) for k in ("both", "only_a", "only_b", "neither")] == [
            int(((a == 1) & (b == 1)).sum()), int(((a == 1) & (b == 0)).sum()),
            int(((a == 0) & (b == 1)).sum()), int(((a == 0) & (b == 0)).sum())]
        human_kappas.append(kappa)
        # printed: kappa and alpha for amira vs ben (then machine vs each) on the code's line
        assert re.search(rf"\b{kappa:.2f}\s+{alpha:.2f}\b", printed[code])
        assert f"<td>{kappa:.2f}</td>" in html
        for human in ("amira", "ben"):
            theme_to_code = {m["theme"]: m["code"] for m in mapping_rows
                             if m["human"] == human and m["theme"] and m["code"]}
            machine = {u: frozenset([theme_to_code.get(t, t)]) for u, t in view.partition.items() if t}
            mv, hv = _vector(machine, units, code), _vector(imported[human], units, code)
            mrow = next(r for r in rows if r["comparison"] == f"machine vs {human}" and r["code"] == code)
            assert float(mrow["kappa"]) == pytest.approx(cohen_kappa_score(mv, hv), abs=1e-9)
            m_alpha = krippendorff.alpha(reliability_data=np.vstack([mv, hv]).astype(float),
                                         level_of_measurement="nominal")
            assert float(mrow["alpha"]) == pytest.approx(m_alpha, abs=1e-9)
    # the two humans disagree on about 15% of passages: substantial to almost perfect agreement
    assert np.mean(human_kappas) > 0.8
    assert {m["method"] for m in mapping_rows} == {"hungarian"}
    from prefect.artifacts import Artifact

    artifact = Artifact.get("compare-ipt")  # the flow's summary on the Prefect run page
    assert artifact is not None and "amira vs ben" in artifact.data and "Hungarian" in artifact.data
    assert Artifact.get("compare-ipt-per-code") is not None
    clustering = list(csv.DictReader((folder / f"{stem}-clustering.csv").open(encoding="utf-8")))
    assert {r["human"] for r in clustering} == {"amira", "ben"}
    assert all(0 <= float(r["recovered_share"]) <= 1 and not math.isnan(float(r["nmi_all"])) for r in clustering)


def test_a_coding_table_of_survey_answers_carries_their_rows_and_columns_and_imports_again(tmp_path):
    """Codes of survey answers join back to the spreadsheet: the table carries each answer's row id and its
    CSV columns (a column named like a fixed one is prefixed), in CSV and JSON, and the CSV imports again."""
    import json

    from pipeline.exchange.codings import read_coding_csv, write_coding_table

    text = "Friendly staff\n\nMore parking please"
    rows = [{"source": "survey.csv", "case": "R1", "start": 0, "end": 14, "text": "Friendly staff", "code": "Staff",
             "coder": "machine", "kind": "machine", "via": "learner", "probability": 0.91, "row_id": "7",
             "attributes": {"site": "North", "code": "Q1"}},
            {"source": "survey.csv", "case": "R2", "start": 16, "end": 35, "text": "More parking please",
             "code": "Parking", "coder": "machine", "kind": "machine", "via": "learner", "probability": 0.8,
             "row_id": "8", "attributes": {"site": "South", "code": "Q2"}}]
    table = write_coding_table(rows, tmp_path / "codes.csv", "csv")
    read = list(csv.DictReader(table.open(encoding="utf-8")))
    assert [(r["code"], r["row_id"], r["site"], r["attribute code"]) for r in read] == [
        ("Staff", "7", "North", "Q1"), ("Parking", "8", "South", "Q2")]
    again = read_coding_csv(table, [StudySource(1, "survey.csv", text)])
    assert sorted((s[1], s[2], s[3]) for s in again.selections) == [(0, 14, "Staff"), (16, 35, "Parking")]
    as_json = json.loads(write_coding_table(rows, tmp_path / "codes.json", "json").read_text(encoding="utf-8"))
    assert as_json[1]["attributes"] == {"site": "South", "code": "Q2"} and as_json[1]["row_id"] == "8"


def test_matrix_exports(ipt, imported, tmp_path):
    from openpyxl import load_workbook

    view = _view(ipt)
    xlsx = tmp_path / "m.xlsx"
    assert _cli("matrix", "--study", "ipt", "--config", ipt.cfg, "-o", str(xlsx)) == 0
    wb = load_workbook(xlsx)
    assert wb.sheetnames == ["Matrix", "Counts", "Quotes", "Themes"]
    ws = wb["Matrix"]
    cases = [ws.cell(row=r, column=1).value for r in range(2, 12)]
    assert cases == [f"P{i:02d}" for i in range(1, 11)]
    assert ws.cell(row=1, column=3).value == view.themes[0].code
    counts = wb["Counts"]
    total = sum(counts.cell(row=r, column=c).value or 0 for r in range(2, 12) for c in range(3, 3 + len(view.themes)))
    assert total == sum(1 for t in view.partition.values() if t)
    some_cell = next(ws.cell(row=r, column=c).value for r in range(2, 12) for c in range(3, 8)
                     if ws.cell(row=r, column=c).value)
    assert "segment" in some_cell and "chars" in some_cell  # count, then quotes with their location
    quote = wb["Quotes"]
    for r in range(2, quote.max_row + 1):  # a data sheet: every quote whole, as its offsets select it
        source, start, end, text = (quote.cell(row=r, column=k).value for k in (3, 4, 5, 7))
        src = next(s for s in view.sources if s.name == source)
        assert " ".join(src.text[start:end].split()) == " ".join(text.split()), (r, text)

    out_csv = tmp_path / "amira.csv"
    assert _cli("matrix", "--study", "ipt", "--config", ipt.cfg, "--coder", "amira", "--format", "csv",
                "-o", str(out_csv)) == 0
    rows = list(csv.reader(out_csv.open(encoding="utf-8")))
    assert rows[0][2:] == sorted(_codebook())
    assert rows[-2][0] == "participants raising it"
    out_html = tmp_path / "m.html"
    assert _cli("matrix", "--study", "ipt", "--config", ipt.cfg, "--format", "html", "-o", str(out_html)) == 0
    assert "participants raising it" in out_html.read_text(encoding="utf-8")


def _check_structure(path: Path, run_id: int) -> None:
    """What ../shared/notes/refi-qda.md asks of a project (and QualCoder's reader relies on); ``run_id``: the
    run exported, whose themes sit in their own folder."""
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        assert "project.qde" in names
        root = ET.fromstring(zf.read("project.qde"))
        ns = f"{{{PROJECT_NS}}}"
        assert root.tag == f"{ns}Project" and root.get("name")
        order = ["Users", "CodeBook", "Variables", "Cases", "Sources", "Notes", "Links", "Sets", "Graphs",
                 "Description", "NoteRef"]
        children = [c.tag.removeprefix(ns) for c in root]
        assert children == sorted(children, key=order.index)
        users = {u.get("guid") for u in root.iter(f"{ns}User")}
        codes = {c.get("guid") for c in root.iter(f"{ns}Code")}
        code_names = [c.get("name") for c in root.iter(f"{ns}Code")]
        assert len(code_names) == len(set(code_names))
        folders = {c.get("guid") for c in root.iter(f"{ns}Code") if c.get("isCodable") == "false"}
        assert f"Themesift run {run_id}" in {c.get("name") for c in root.iter(f"{ns}Code") if c.get("guid") in folders}
        assert all(re.fullmatch(r"#[0-9A-F]{6}", c.get("color") or "") for c in root.iter(f"{ns}Code"))
        user_names = [u.get("name") for u in root.iter(f"{ns}User")]
        assert not user_names or not user_names[0].startswith("Themesift")  # a person is the active coder
        sources = {s.get("guid") for s in root.iter(f"{ns}TextSource")}
        for src in root.iter(f"{ns}TextSource"):
            target = src.get("plainTextPath").removeprefix("internal://")
            assert f"sources/{target}" in names
            text = zf.read(f"sources/{target}").decode("utf-8")
            for sel in src.iter(f"{ns}PlainTextSelection"):
                assert 0 <= int(sel.get("startPosition")) < int(sel.get("endPosition")) <= len(text)
                assert sel.get("creatingUser") in users and sel.get("creationDateTime")
                for coding in sel.iter(f"{ns}Coding"):
                    assert coding.get("creatingUser") in users
                    assert [r.get("targetGUID") for r in coding] and all(
                        r.get("targetGUID") in codes - folders for r in coding)
        for case in root.iter(f"{ns}Case"):
            assert all(r.get("targetGUID") in sources for r in case)


def test_qdpx_export_then_import_gives_back_the_same_codings(ipt, imported, tmp_path, capsys):
    from flows.compare import export_study_qdpx

    path = tmp_path / "ipt.qdpx"
    assert _cli("export", "qdpx", "--study", "ipt", "--config", ipt.cfg, "-o", str(path)) == 0
    view = _view(ipt)
    _check_structure(path, view.run_id)  # the example study's latest run: not run 1 once other tests ran it again
    assert_valid_qdpx(path)
    project = read_qdpx(path)
    assert project.problems == ()
    assert {"amira", "ben", MACHINE_USER_NAME} <= {u.name for u in project.users}
    assert len(project.sources) == 10 and len(project.cases) == 10
    said = capsys.readouterr().out  # the line counts what the file holds, as another tool will show it
    by = {u.guid: u.name for u in project.users}
    for name in ("amira", "ben", MACHINE_USER_NAME):
        n = sum(1 for c in project.codings if by.get(c.user_guid) == name)
        assert (f"{n} machine codings" if name == MACHINE_USER_NAME else f"{name} {n} codings") in said, said
    # humans back, exactly as stored
    result = qda_selections(project, view.sources, origin=path.name)
    assert not result.unmatched_sources and not result.not_found and result.relocated == 0
    back = map_selections(result.selections, view.segments)
    assert {k: back[k] for k in HUMANS} == imported
    # the machine's user gives back the run's partition
    machine = qda_selections(project, view.sources, coder=MACHINE_USER_NAME, skip_users=())
    assert map_selections(machine.selections, view.segments)[MACHINE_USER_NAME] == partition_to_coding(view.partition)
    # deterministic: a re-export is byte-identical but for the timestamp
    a, b = tmp_path / "a.qdpx", tmp_path / "b.qdpx"
    export_study_qdpx(view, a, created=CREATED)
    export_study_qdpx(view, b, created=CREATED)
    assert a.read_bytes() == b.read_bytes()
    # and importing our own export through the CLI stores the same codings again
    capsys.readouterr()
    assert _cli("import", "codings", str(path), "--study", "ipt", "--config", ipt.cfg) == 0
    assert MACHINE_USER_NAME in capsys.readouterr().out  # reported as skipped
    with ipt.store.sessions() as session:
        stored = stored_codings(session, "ipt")[0]
    assert {k: stored[k] for k in HUMANS} == imported


def test_a_coding_file_may_not_name_the_machine_or_the_applied_codebook_as_its_coder(ipt, tmp_path, capsys):
    """``export codings`` writes apply's coding under its reserved name: importing that file replaced apply's
    stored coding (its learner's probabilities gone) instead of adding a coder."""
    view = _view(ipt)
    text = view.sources[0].text.strip().splitlines()[0][:60]
    for coder, whose in (("Themesift (codebook applied)", "themesift apply's coding"), ("machine", "the machine")):
        table = tmp_path / "applied.csv"
        table.write_text(f"source,text,code,coder\n{view.sources[0].name},{text},x,{coder}\n", encoding="utf-8")
        capsys.readouterr()
        assert _cli("import", "codings", str(table), "--study", "ipt", "--config", ipt.cfg) == 2
        assert f"coder name '{coder}' is reserved for {whose}" in capsys.readouterr().err


def test_rows_matched_by_case_are_summed_up_per_source_not_listed_one_a_line(ipt, tmp_path, capsys):
    """A survey's import printed one line per respondent (10,334 lines) above the notes that matter."""
    view = _view(ipt)
    rows = []
    for source in view.sources[:3]:
        case = next(c for c in sorted(source.cases))
        rows.append(f"{case},\"{source.text.strip().splitlines()[-1][-40:]}\",x,cleo")
    table = tmp_path / "by_case.csv"
    table.write_text("case,text,code,coder\n" + "\n".join(rows) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert _cli("import", "codings", str(table), "--study", "ipt", "--config", ipt.cfg) == 0
    out = capsys.readouterr().out
    assert "(matched by case)" in out and out.count("matched by case") == 3  # one line per source
    assert all(f"1 case(s) -> {s.name} (matched by case)" in out for s in view.sources[:3])


def test_an_imported_coders_spans_go_out_as_they_selected_them(ipt, imported, tmp_path, capsys):
    """A coder's file selects part of a participant's answer and an interviewer's question (no compared segment
    carries it): both are stored as selected and exported on those spans, not widened to whole segments
    nor dropped, and importing the export again stores the same segment codings."""
    view = _view(ipt)
    source = next(s for s in view.sources if s.name == "P01.txt")
    part = "the ICB pays for separately from the main block contract"
    question = "What was the thinking behind commissioning it in the first place?"
    table = tmp_path / "cleo.csv"
    table.write_text("source,text,code,coder\n" + f"P01.txt,{part},costs_funding,cleo\n"
                     f"P01.txt,{question},why_commission,cleo\n", encoding="utf-8")
    capsys.readouterr()
    assert _cli("import", "codings", str(table), "--study", "ipt", "--config", ipt.cfg) == 0
    assert "1 of 2 selections put their code on no compared segment" in capsys.readouterr().out
    out = tmp_path / "out.qdpx"
    assert _cli("export", "qdpx", "--study", "ipt", "--config", ipt.cfg, "-o", str(out)) == 0
    assert_valid_qdpx(out)
    project = read_qdpx(out)
    cleo = next(u.guid for u in project.users if u.name == "cleo")
    names = {c.guid: c.name for c in project.all_codes()}
    text = next(s.text for s in project.sources if s.name == "P01.txt")
    assert text == source.text
    assert sorted((text[c.start:c.end], names[c.code_guid]) for c in project.codings if c.user_guid == cleo) == \
        sorted([(part, "costs_funding"), (question, "why_commission")])
    with ipt.store.sessions() as session:
        before = stored_codings(session, "ipt")[0]
    assert _cli("import", "codings", str(out), "--study", "ipt", "--config", ipt.cfg) == 0
    with ipt.store.sessions() as session:
        after = stored_codings(session, "ipt")[0]
    assert {k: after[k] for k in (*HUMANS, "cleo")} == {k: before[k] for k in (*HUMANS, "cleo")}
    assert len(before["cleo"]) == 1 and set(before["cleo"].values()) == {frozenset({"costs_funding"})}


def test_a_tools_code_tree_and_colours_survive_import_codings_and_export(ipt, imported, tmp_path, capsys):
    """Codings from another tool with its codes in folders and coloured: stored with the codings, and the
    next export puts them back in their place with their colours (and a person, not the machine, first)."""
    from dataclasses import replace

    from models.codings import stored_code_info
    from pipeline.exchange.refi_qda import write_qdpx

    ours = tmp_path / "ours.qdpx"
    assert _cli("export", "qdpx", "--study", "ipt", "--config", ipt.cfg, "-o", str(ours)) == 0
    project = read_qdpx(ours)
    people = {u.guid for u in project.users if u.name in HUMANS}
    used = {c.code_guid for c in project.codings if c.user_guid in people}
    human = [c for c in project.codes if c.guid in used]
    folder = QdaCode(stable_guid("c", "folder"), "Their folder", "grouped in the tool", "#010203",
                     tuple(replace(c, color="#0A0B0C") for c in human[:2]), codable=False)
    theirs = replace(project, users=tuple(u for u in project.users if u.guid in people),
                     codes=(folder, *human[2:]),
                     codings=tuple(c for c in project.codings if c.user_guid in people))
    foreign = tmp_path / "theirs.qdpx"
    write_qdpx(theirs, foreign, created=CREATED)
    with zipfile.ZipFile(foreign) as zf:  # as another tool would have written it
        entries = {n: zf.read(n) for n in zf.namelist()}
    entries["project.qde"] = entries["project.qde"].replace(b'origin="Themesift"', b'origin="ATLAS.ti 9"')
    with zipfile.ZipFile(foreign, "w") as zf:
        for n, data in entries.items():
            zf.writestr(n, data)
    capsys.readouterr()
    assert _cli("import", "codings", str(foreign), "--study", "ipt", "--config", ipt.cfg) == 0
    with ipt.store.sessions() as session:
        info = stored_code_info(session, "ipt")
        assert {k: stored_codings(session, "ipt")[0][k] for k in HUMANS} == imported
    moved = [c.name for c in folder.children]
    assert info["Their folder"].codable is False and all(info[n].parent == "Their folder" for n in moved)
    assert all(info[n].color == "#0A0B0C" for n in moved)
    again = tmp_path / "again.qdpx"
    assert _cli("export", "qdpx", "--study", "ipt", "--config", ipt.cfg, "-o", str(again)) == 0
    assert_valid_qdpx(again)
    out = read_qdpx(again)
    top = next(c for c in out.codes if c.name == "Their folder")
    assert not top.codable and top.color == "#010203"
    assert sorted(c.name for c in top.children) == sorted(moved) and all(c.color == "#0A0B0C" for c in top.children)
    assert out.users[0].name in HUMANS


def test_cli_refuses_bad_files_and_compares_a_file_without_storing_it(ipt, imported, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,code\nsomething,x\n", encoding="utf-8")
    capsys.readouterr()
    assert _cli("import", "codings", str(bad), "--study", "ipt", "--config", ipt.cfg) == 2
    assert "missing column(s): source or case" in capsys.readouterr().err
    assert _cli("compare", "--study", "nope", "--config", ipt.cfg) == 2
    # amira's rows without a coder column, filed under another name with --coder
    with (EXAMPLE / "human_coding.csv").open(encoding="utf-8") as handle:
        rows = [{k: r[k] for k in ("source", "text", "code")} for r in csv.DictReader(handle) if r["coder"] == "amira"]

    def write(path: Path, coder: str | None) -> Path:
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["source", "text", "code"] + (["coder"] if coder else []))
            writer.writeheader()
            writer.writerows({**r, **({"coder": coder} if coder else {})} for r in rows)
        return path

    assert _cli("import", "codings", str(write(tmp_path / "cy.csv", None)), "--study", "ipt", "--config", ipt.cfg,
                "--coder", "cy") == 0
    with ipt.store.sessions() as session:
        assert stored_codings(session, "ipt")[0]["cy"] == imported["amira"]
    # --human: compared as it is, not stored
    capsys.readouterr()
    dee = write(tmp_path / "dee.csv", "dee")
    assert _cli("compare", "--study", "ipt", "--config", ipt.cfg, "--human", str(dee)) == 0
    out = capsys.readouterr().out
    assert "amira vs dee" in out and "machine vs dee" in out
    with ipt.store.sessions() as session:
        assert "dee" not in stored_codings(session, "ipt")[0]


def test_cli_refuses_a_qdpx_zip_bomb_with_one_line_naming_the_limit(ipt, imported, tmp_path, capsys):
    """The ingest section's unpack limits hold for a coding import too: one line, nothing stored."""
    import yaml

    from flows.compare import export_study_qdpx, load_view
    from test_refi_qda import inflated_qdpx

    plain = tmp_path / "ours.qdpx"
    export_study_qdpx(load_view(ipt.store, "ipt"), plain, created=CREATED)
    bomb = inflated_qdpx(plain, tmp_path / "bomb.qdpx", qde_mb=3)
    config = tmp_path / "limits.yaml"
    config.write_text(yaml.safe_dump({"store": yaml.safe_load(Path(ipt.cfg).read_text())["store"],
                                      "ingest": {"max_xml_mb": 2}}), encoding="utf-8")
    capsys.readouterr()
    assert _cli("import", "codings", str(bomb), "--study", "ipt", "--config", str(config)) == 2
    err = capsys.readouterr().err
    assert err == (f"themesift: {bomb}: not read: part project.qde unpacks to more than the 2 MB allowed for one "
                   "XML part (ingest.max_xml_mb): a ZIP bomb, or raise the limit\n")
    with ipt.store.sessions() as session:
        assert {k: v for k, v in stored_codings(session, "ipt")[0].items() if k in HUMANS} == imported


def test_selections_on_no_segment_are_found_as_a_scan_of_every_segment_finds_them():
    """The search by start (bisect) gives what comparing every selection with every segment gave."""
    import random

    from pipeline.exchange.codings import unmapped_selections

    rng = random.Random(1)
    for _ in range(200):
        segs, pos = [], 0
        for i in range(rng.randint(0, 30)):
            start = pos + rng.randint(0, 5) - (rng.randint(0, 15) if rng.random() < 0.2 else 0)  # some overlap
            segs.append((i, rng.choice("xy"), max(0, start), max(0, start) + rng.randint(1, 20)))
            pos = segs[-1][3]
        coded = {"ann": {i: frozenset(rng.sample("abc", rng.randint(0, 2))) for i, *_ in segs}}
        sels = []
        for _ in range(20):
            start = rng.randint(0, pos + 5)
            sels.append((rng.choice("xy"), start, start + rng.randint(1, 30), rng.choice("abc"), "ann"))
        scan = [sel for sel in sels if not any(src == sel[0] and s < sel[2] and sel[1] < e and sel[3] in coded["ann"][i]
                                               for i, src, s, e in segs)]
        assert unmapped_selections(sels, segs, coded) == scan


def test_the_html_report_charts_the_participants_with_most_segments_when_there_are_very_many(monkeypatch):
    """A survey's every respondent is a participant: 10,334 rows made a 10 MB report."""
    from pipeline.compare import report
    from pipeline.compare.compare import compare_study

    units = [f"u{i}" for i in range(40)]
    cases = {u: f"R{i % 25}" for i, u in enumerate(units)}  # R0-R14 hold two segments, R15-R24 one
    coding = {u: frozenset({"cost" if i % 2 else "access"}) for i, u in enumerate(units)}
    result = compare_study(units, cases, {"ann": coding}, {u: "T01 money" for u in units}, ["T01 money"],
                           min_positive=1)
    monkeypatch.setattr(report, "REPORT_PARTICIPANTS", 15)
    page = report.render_html(result, "s", "run 1")
    assert "25 participants: the 15 with the most segments are shown" in page
    table = page[page.index("<h2>Coverage per participant</h2>"):]
    assert all(f'<td class="l">R{i}</td>' in table for i in range(15)) and '<td class="l">R20</td>' not in table
