"""Tests for pipeline.exchange.refi_qda: strict deterministic writing, tolerant reading."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pipeline.exchange.refi_qda import (
    CODEBOOK_NS,
    PROJECT_NS,
    QdaCode,
    QdaCoding,
    QdaProject,
    QdaSource,
    QdaUser,
    normalize_guid,
    read_qdc,
    read_qde,
    read_qdpx,
    stable_guid,
    write_qdc,
    write_qdpx,
)

from qda_schema import assert_valid_qdc, assert_valid_qde, assert_valid_qdpx

CREATED = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
G = stable_guid


def _project() -> QdaProject:
    human = QdaUser(G("user", "ann"), "Ann")
    machine = QdaUser(G("user", "themesift"), "Themesift (machine)")
    cost = QdaCode(G("code", "cost"), "Cost", "Money worries", "#FF0000")
    rent = QdaCode(G("code", "rent"), "Rent", "", "#00FF00")
    housing = QdaCode(G("code", "housing"), "Housing", "Where people live", None, (rent,))
    trust = QdaCode(G("code", "trust"), "Trust & <care>", "Quotes \"and\" ampersands & more")
    text1 = "Rent went up 😀 again.\nWe can't afford it — really.\n"
    text2 = "I trust my GP.\nThe clinic is far.\n"
    s1 = QdaSource(G("source", "p01"), "P01 interview", text1)
    s2 = QdaSource(G("source", "p02"), "P02 interview", text2)
    rent_at = text1.index("Rent went up 😀 again.")
    afford = text1.index("We can't afford it")
    codings = (
        QdaCoding(s1.guid, rent_at, rent_at + len("Rent went up 😀 again."), rent.guid, human.guid),
        QdaCoding(s1.guid, rent_at, rent_at + len("Rent went up 😀 again."), cost.guid, human.guid),
        QdaCoding(s1.guid, afford, afford + len("We can't afford it"), cost.guid, machine.guid),
        QdaCoding(s2.guid, 0, len("I trust my GP."), trust.guid, human.guid),
        QdaCoding(s2.guid, 0, len("I trust my GP."), trust.guid, machine.guid),
        QdaCoding(s2.guid, 15, 33, housing.guid, None),
    )
    return QdaProject(
        name="Housing study",
        users=(machine, human),
        codes=(cost, housing, trust),
        sources=(s2, s1),
        codings=codings,
        cases={"Participant 1": (s1.guid,), "Participant 2": (s2.guid,)},
    )


def test_stable_guid_is_deterministic_and_well_formed():
    a = stable_guid("code", "cost")
    assert a == stable_guid("code", "cost")
    assert a != stable_guid("code", "costs") != stable_guid("codecost")
    assert re.fullmatch(r"[0-9A-F]{8}-[0-9A-F]{4}-5[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}", a)
    assert uuid.UUID(a).version == 5
    assert normalize_guid("{" + a.lower() + "}") == a


def test_round_trip(tmp_path):
    project = _project()
    path = tmp_path / "study.qdpx"
    write_qdpx(project, path, created=CREATED)
    assert_valid_qdpx(path)
    back = read_qdpx(path)
    assert back.problems == ()
    assert back == project
    # offsets are code points: the emoji counts as one character
    s1 = next(s for s in back.sources if s.name == "P01 interview")
    first = next(c for c in back.codings if c.source_guid == s1.guid)
    assert s1.text[first.start:first.end] == "Rent went up 😀 again."
    assert [c.name for c in back.codes] == ["Cost", "Housing", "Trust & <care>"]
    assert back.codes[1].children[0].name == "Rent"
    assert back.codes[2].description == 'Quotes "and" ampersands & more'


def test_characters_xml_cannot_hold_are_left_out_of_names_and_descriptions(tmp_path):
    """A quote with Word's manual line break (U+000B) pasted as text made the whole export unreadable."""
    pasted = QdaCode(G("code", "vt"), "Waits\x0bfor therapy", "\u201cWhen we first rolled it out,\x0bsome\x0c\x01 of my PWPs\u201d")
    project = QdaProject(name="Study\x07", users=(QdaUser(G("user", "ann"), "Ann\x1b"),), codes=(pasted,),
                         sources=(QdaSource(G("source", "p"), "P01", "some of my PWPs\x0bsaid"),),
                         codings=(QdaCoding(G("source", "p"), 0, 4, pasted.guid, G("user", "ann")),))
    write_qdpx(project, tmp_path / "vt.qdpx", created=CREATED)
    assert_valid_qdpx(tmp_path / "vt.qdpx")
    back = read_qdpx(tmp_path / "vt.qdpx")
    assert back.problems == ()
    assert back.codes[0].name == "Waits for therapy"
    assert back.codes[0].description == "\u201cWhen we first rolled it out, some  of my PWPs\u201d"
    assert back.users[0].name == "Ann" and back.name == "Study"
    assert back.sources[0].text == "some of my PWPs\x0bsaid"  # the text file keeps the transcript as it is
    write_qdc((pasted,), tmp_path / "vt.qdc")
    assert read_qdc(tmp_path / "vt.qdc")[0].name == "Waits for therapy"


def test_zip_layout_and_xml_shape(tmp_path):
    project = _project()
    path = tmp_path / "study.qdpx"
    write_qdpx(project, path, created=CREATED)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert names[0] == "project.qde"
        assert sorted(names[1:]) == sorted(f"sources/{s.guid}.txt" for s in project.sources)
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
        root = ET.fromstring(zf.read("project.qde"))
        s1 = next(s for s in project.sources if s.name == "P01 interview")
        assert zf.read(f"sources/{s1.guid}.txt").decode("utf-8") == s1.text
    ns = "{" + PROJECT_NS + "}"
    assert root.tag == ns + "Project" and root.get("name") == "Housing study"
    assert [child.tag for child in root] == [ns + "Users", ns + "CodeBook", ns + "Cases", ns + "Sources"]
    sources = root.find(ns + "Sources")
    assert all(
        ts.get("plainTextPath") == f"internal://{ts.get('guid')}.txt"
        for ts in sources.iter(ns + "TextSource")
    )
    # Ann's Rent+Cost on the same span share one selection with two Coding elements
    selections = list(sources.iter(ns + "PlainTextSelection"))
    assert len(selections) == 5
    assert sorted(len(sel.findall(ns + "Coding")) for sel in selections) == [1, 1, 1, 1, 2]
    code = root.find(f"{ns}CodeBook/{ns}Codes/{ns}Code")
    assert code.get("isCodable") == "true" and code.get("color") == "#FF0000"


def test_re_export_is_byte_identical(tmp_path):
    project = _project()
    a, b, c = tmp_path / "a.qdpx", tmp_path / "b.qdpx", tmp_path / "c.qdpx"
    write_qdpx(project, a, created=CREATED)
    write_qdpx(read_qdpx(a), b, created=CREATED)
    assert a.read_bytes() == b.read_bytes()
    write_qdpx(project, c, created=datetime(2025, 1, 1, tzinfo=timezone.utc))
    assert a.read_bytes() != c.read_bytes()
    # ... and only the timestamps differ
    with zipfile.ZipFile(a) as za, zipfile.ZipFile(c) as zc:
        xa = za.read("project.qde").decode()
        xc = zc.read("project.qde").decode()
    assert xa.replace("2024-05-06T07:08:09Z", "T") == xc.replace("2025-01-01T00:00:00Z", "T")


def test_writer_is_strict(tmp_path):
    project = _project()
    bad = QdaProject(
        project.name, project.users, project.codes, project.sources,
        project.codings + (QdaCoding(project.sources[0].guid, 0, 3, G("code", "nope"), None),),
    )
    with pytest.raises(ValueError, match="unknown code"):
        write_qdpx(bad, tmp_path / "bad.qdpx", created=CREATED)
    too_long = QdaProject(
        project.name, project.users, project.codes, project.sources,
        (QdaCoding(project.sources[0].guid, 0, 10_000, project.codes[0].guid, None),),
    )
    with pytest.raises(ValueError, match="outside"):
        write_qdpx(too_long, tmp_path / "bad.qdpx", created=CREATED)


def test_codebook_round_trip(tmp_path):
    codes = _project().codes
    path = tmp_path / "codes.qdc"
    write_qdc(codes, path)
    assert_valid_qdc(path.read_bytes())
    root = ET.fromstring(path.read_bytes())
    assert root.tag == "{" + CODEBOOK_NS + "}CodeBook"
    assert read_qdc(path) == codes


# ------------------------------------------------------------------ tolerant reading

SRC1 = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
SRC2 = "3f2504e0-4f89-11d3-9a0c-0305e82c3302"
SRC3 = "3f2504e0-4f89-11d3-9a0c-0305e82c3303"
CODE_A = "aaaaaaaa-0000-4000-8000-000000000001"
CODE_B = "aaaaaaaa-0000-4000-8000-000000000002"
CODE_B1 = "aaaaaaaa-0000-4000-8000-000000000003"
USER = "bbbbbbbb-0000-4000-8000-000000000001"
MACHINE = "bbbbbbbb-0000-4000-8000-000000000002"

# CRLF text: "Hello\r\nWorld\r\nBye"; "World" = [7, 12) and "Bye" = [14, 17) counted with CRs,
# [6, 11) and [12, 15) in the LF text.
TOLERANT_QDE = (
    '<?xml version="1.0" encoding="UTF-8"?>\r\n'
    '<qda:Project xmlns:qda="urn:QDA-XML:project:0.9" name="My Study">\r\n'
    "  <qda:Users>\r\n"
    f'    <qda:User guid="{{{USER}}}" name="Coder One"/>\r\n'
    f'    <qda:User guid="{MACHINE.upper()}" name="Machine"/>\r\n'
    "  </qda:Users>\r\n"
    "  <qda:CodeBook><qda:Codes>\r\n"
    f'    <qda:Code guid="{{{CODE_A.upper()}}}" name="Greeting" isCodable="true"/>\r\n'
    f'    <qda:Code guid="{CODE_B}" name="Place" isCodable="true" color="#123456">\r\n'
    "      <qda:Description>Where</qda:Description>\r\n"
    f'      <qda:Code guid="{{{CODE_B1}}}" name="World" isCodable="true"/>\r\n'
    "    </qda:Code>\r\n"
    "  </qda:Codes></qda:CodeBook>\r\n"
    "  <qda:Cases>\r\n"
    '    <qda:Case guid="cccccccc-0000-4000-8000-000000000001" name="P1">\r\n'
    f'      <qda:SourceRef targetGUID="{{{SRC1.upper()}}}"/>\r\n'
    f'      <qda:SourceRef targetGUID="{SRC2}"/>\r\n'
    "    </qda:Case>\r\n"
    "  </qda:Cases>\r\n"
    "  <qda:Sources>\r\n"
    f'    <qda:TextSource guid="{{{SRC1}}}" name="inline">\r\n'
    "      <qda:PlainTextContent>Hello\r\nWorld\r\nBye</qda:PlainTextContent>\r\n"
    '      <qda:PlainTextSelection guid="s1" startPosition="7" endPosition="12"'
    f' creatingUser="{{{USER}}}">\r\n'
    f'        <qda:Coding guid="c1"><qda:CodeRef targetGUID="{CODE_B1.upper()}"/></qda:Coding>\r\n'
    f'        <qda:Coding guid="c2" creatingUser="{MACHINE}">'
    f'<qda:CodeRef targetGUID="{{{CODE_B}}}"/></qda:Coding>\r\n'
    "      </qda:PlainTextSelection>\r\n"
    '      <qda:PlainTextSelection guid="s2" startPosition="14" endPosition="17">\r\n'
    '        <qda:Coding guid="c3" creatingUser="{' + USER + '}">'
    '<qda:CodeRef targetGUID="dddddddd-0000-4000-8000-00000000dead"/></qda:Coding>\r\n'
    "      </qda:PlainTextSelection>\r\n"
    "    </qda:TextSource>\r\n"
    f'    <qda:TextSource guid="{SRC2.upper()}" name="in file"'
    f' plainTextPath="internal://{SRC2.upper()}.txt">\r\n'
    '      <qda:PlainTextSelection guid="s3" startPosition="0" endPosition="5">\r\n'
    f'        <qda:Coding guid="c4" creatingUser="{USER}"><qda:CodeRef targetGUID="{CODE_A}"/>'
    "</qda:Coding>\r\n"
    "      </qda:PlainTextSelection>\r\n"
    '      <qda:PlainTextSelection guid="s4" startPosition="14" endPosition="17">\r\n'
    f'        <qda:Coding guid="c5" creatingUser="{USER}"><qda:CodeRef targetGUID="{CODE_A}"/>'
    "</qda:Coding>\r\n"
    "      </qda:PlainTextSelection>\r\n"
    '      <qda:PlainTextSelection guid="s5" startPosition="15" endPosition="99">\r\n'
    f'        <qda:Coding guid="c6" creatingUser="{USER}"><qda:CodeRef targetGUID="{CODE_A}"/>'
    "</qda:Coding>\r\n"
    "      </qda:PlainTextSelection>\r\n"
    "    </qda:TextSource>\r\n"
    f'    <qda:TextSource guid="{SRC3}" name="lost" plainTextPath="internal://{SRC3}.txt"/>\r\n'
    "  </qda:Sources>\r\n"
    "</qda:Project>\r\n"
)


def _tolerant_zip(path: Path, inner_name: str, source_entry: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(inner_name, TOLERANT_QDE.encode("utf-8"))
        zf.writestr(source_entry, "\ufeffHello\r\nWorld\r\nBye".encode("utf-8"))
    return path


@pytest.mark.parametrize(
    "inner_name, source_entry",
    [
        ("My Study.qde", f"Sources/{SRC2}.TXT"),  # other name, other case
        ("My Study/My Study.qde", f"My Study/sources/{SRC2}.txt"),  # in a subfolder
        ("My Study.qde", f"texts/{SRC2}.txt"),  # not under sources/ at all
    ],
)
def test_tolerant_project(tmp_path, inner_name, source_entry):
    project = read_qdpx(_tolerant_zip(tmp_path / "study.qdpx", inner_name, source_entry))
    up = str.upper
    assert project.name == "My Study"
    assert [(u.guid, u.name) for u in project.users] == [(up(USER), "Coder One"), (up(MACHINE), "Machine")]
    assert [c.name for c in project.all_codes()] == ["Greeting", "Place", "World"]
    place = project.codes[1]
    assert place.guid == up(CODE_B) and place.color == "#123456" and place.description == "Where"
    assert place.children[0].guid == up(CODE_B1)
    texts = {s.guid: s.text for s in project.sources}
    assert texts == {up(SRC1): "Hello\nWorld\nBye", up(SRC2): "Hello\nWorld\nBye"}
    assert set(project.codings) == {
        # selection creatingUser is the fallback; the Coding's own creatingUser wins
        QdaCoding(up(SRC1), 6, 11, up(CODE_B1), up(USER)),
        QdaCoding(up(SRC1), 6, 11, up(CODE_B), up(MACHINE)),
        QdaCoding(up(SRC2), 0, 5, up(CODE_A), up(USER)),
        QdaCoding(up(SRC2), 12, 15, up(CODE_A), up(USER)),
    }
    for c in project.codings:
        assert texts[c.source_guid][c.start:c.end] in {"World", "Hello", "Bye"}
    assert project.cases == {"P1": tuple(sorted([up(SRC1), up(SRC2)]))}
    problems = "\n".join(project.problems)
    assert len(project.problems) == 3, problems
    assert "DDDDDDDD-0000-4000-8000-00000000DEAD" in problems.upper() and "unknown code" in problems
    assert "[15, 99)" in problems
    assert "missing" in problems and SRC3 in problems


def test_read_qde_with_loader_directly():
    seen = []

    def loader(path: str) -> bytes | None:
        seen.append(path)
        return b"Hello\r\nWorld\r\nBye" if SRC2.upper() in path else None

    project = read_qde(TOLERANT_QDE.encode("utf-8"), loader, label="My Study.qde")
    assert f"internal://{SRC2.upper()}.txt" in seen
    assert all(p.startswith("My Study.qde:") for p in project.problems)
    assert len(project.sources) == 2


def test_lf_text_offsets_unchanged():
    xml = (
        f'<Project name="p"><CodeBook><Codes><Code guid="{CODE_A}" name="a" isCodable="true"/>'
        f'</Codes></CodeBook><Sources><TextSource guid="{SRC1}" name="s">'
        "<PlainTextContent>ab\ncd</PlainTextContent>"
        '<PlainTextSelection guid="x" startPosition="3" endPosition="5">'
        f'<Coding guid="y"><CodeRef targetGUID="{CODE_A}"/></Coding></PlainTextSelection>'
        "</TextSource></Sources></Project>"
    ).encode()
    project = read_qde(xml)  # no namespace at all
    (coding,) = project.codings
    assert (coding.start, coding.end, coding.user_guid) == (3, 5, None)
    assert project.sources[0].text[3:5] == "cd"


def test_a_password_an_odd_compression_or_codes_nested_too_deep_are_refused_in_words(tmp_path):
    """Each gave a Python traceback: zipfile's RuntimeError, NotImplementedError, a RecursionError."""
    good = tmp_path / "good.qdpx"
    write_qdpx(_project(), good, created=CREATED)
    data = good.read_bytes()

    def patched(name: str, at_local: int, at_central: int, value: bytes) -> Path:
        """The ZIP with ``value`` written into every local and central header field at those offsets."""
        out = bytearray(data)
        for sig, at in ((b"PK\x03\x04", at_local), (b"PK\x01\x02", at_central)):
            for m in re.finditer(re.escape(sig), data):
                out[m.start() + at:m.start() + at + 2] = value
        (tmp_path / name).write_bytes(bytes(out))
        return tmp_path / name

    locked = patched("locked.qdpx", 6, 8, b"\x01\x00")  # general-purpose flag bit 0: encrypted
    with pytest.raises(ValueError, match=r"locked\.qdpx: password-protected"):
        read_qdpx(locked)
    packed = patched("packed.qdpx", 8, 10, b"\x09\x00")  # compression method 9: Deflate64
    with pytest.raises(ValueError, match=r"packed\.qdpx: packed with a compression method .*method 9"):
        read_qdpx(packed)
    nested = "".join(f'<Code guid="{G("deep", str(i))}" name="c{i}" isCodable="true">' for i in range(3000))
    deep = tmp_path / "deep.qdc"
    deep.write_text(f'<CodeBook xmlns="{CODEBOOK_NS}"><Codes>{nested}{"</Code>" * 3000}</Codes></CodeBook>')
    with pytest.raises(ValueError, match=r"deep\.qdc: codes nested too deep"):
        read_qdc(deep)


def test_not_a_zip_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.qdpx"
    path.write_text("this is not a zip")
    with pytest.raises(ValueError, match=r"notes\.qdpx.*not a ZIP"):
        read_qdpx(path)
    empty = tmp_path / "empty.qdpx"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("readme.txt", "nothing here")
    with pytest.raises(ValueError, match=r"empty\.qdpx.*no \.qde"):
        read_qdpx(empty)


def inflated_qdpx(source: Path, path: Path, qde_mb: float = 0, text_mb: float = 0) -> Path:
    """A copy of the project ``source`` whose project.qde carries ``qde_mb`` MB of XML comment, or whose
    source files are followed by ``text_mb`` MB of spaces: tens of KB on disk, a ZIP bomb unpacked."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "project.qde" and qde_mb:
                declaration, rest = data.split(b"?>", 1)
                data = declaration + b"?><!--" + b"x" * int(qde_mb * 1e6) + b"-->" + rest
            elif item.filename.startswith("sources/") and text_mb:
                data += b" " * int(text_mb * 1e6)
            out.writestr(item.filename, data)
    return path


def test_a_qdpx_zip_bomb_is_refused_naming_the_limit(tmp_path):
    """The .qde is held to max_xml_mb and everything read to max_unpacked_mb, counted while unpacking: a
    project of a few tens of KB that unpacks past either is refused with the setting named; within the
    limits the same files are read as usual."""
    from pipeline.ingest.unzip import ZipLimits

    plain = tmp_path / "plain.qdpx"
    write_qdpx(_project(), plain, created=CREATED)
    big_qde = inflated_qdpx(plain, tmp_path / "big-qde.qdpx", qde_mb=6)
    big_text = inflated_qdpx(plain, tmp_path / "big-text.qdpx", text_mb=8)
    assert big_qde.stat().st_size < 100_000 and big_text.stat().st_size < 100_000
    limits = ZipLimits(max_unpacked_mb=10, max_xml_mb=5)
    with pytest.raises(ValueError) as caught:
        read_qdpx(big_qde, limits)
    assert str(caught.value) == (f"{big_qde}: not read: part project.qde unpacks to more than the 5 MB allowed for "
                                 "one XML part (ingest.max_xml_mb): a ZIP bomb, or raise the limit")
    with pytest.raises(ValueError) as caught:
        read_qdpx(big_text, limits)
    assert str(caught.value) == (f"{big_text}: not read: its parts unpack to more than the 10 MB allowed in all "
                                 "(ingest.max_unpacked_mb): a ZIP bomb, or raise the limit")
    for path in (plain, big_qde, big_text):  # the defaults (200 MB, 100 MB) read them all
        assert [c.name for c in read_qdpx(path).codes] == ["Cost", "Housing", "Trust & <care>"]


def test_crlf_inside_cdata_shifts_offsets():
    xml = (
        f'<Project xmlns="urn:QDA-XML:project:1.0" name="p"><CodeBook><Codes>'
        f'<Code guid="{CODE_A}" name="a" isCodable="true"/></Codes></CodeBook><Sources>'
        f'<TextSource guid="{SRC1}" name="s">'
        "<PlainTextContent><![CDATA[a&b\r\nc<d]]>\r\nzz</PlainTextContent>"
        # "zz" sits at [10, 12) in "a&b\r\nc<d\r\nzz", at [8, 10) in the LF text
        '<PlainTextSelection guid="x" startPosition="10" endPosition="12">'
        f'<Coding guid="y"><CodeRef targetGUID="{CODE_A}"/></Coding></PlainTextSelection>'
        "</TextSource></Sources></Project>"
    ).encode()
    project = read_qde(xml)
    assert project.sources[0].text == "a&b\nc<d\nzz"
    (coding,) = project.codings
    assert (coding.start, coding.end) == (8, 10)


NVIVO = Path("../shared/datasets/refi-qda/nvivo-12.6-windows-oltas0517.qdpx")


@pytest.mark.skipif(not NVIVO.exists(), reason="shared REFI-QDA datasets not present")
def test_nvivo_positions_detected_as_utf16_and_land_on_words():
    project = read_qdpx(NVIVO)
    report = [p for p in project.problems if "positions read as" in p]
    assert any("positions read as utf16" in p for p in report)
    texts = {s.guid: s.text for s in project.sources}
    on_words = sum(
        1 for c in project.codings
        if (c.start == 0 or not (texts[c.source_guid][c.start - 1].isalnum()
                                 and texts[c.source_guid][c.start].isalnum()))
        and (c.end == len(texts[c.source_guid]) or not (texts[c.source_guid][c.end - 1].isalnum()
                                                         and texts[c.source_guid][c.end].isalnum()))
    )
    assert on_words >= 0.95 * len(project.codings) > 250
    # Read as code points (forced), most selections fall mid-word: the old silent failure.
    forced = read_qdpx(NVIVO, position_units="codepoints")
    assert any("forced" in p for p in forced.problems)
    assert any("inside a word" in p for p in forced.problems)


def _crlf_once_qde() -> bytes:
    # Text "one two\r\nthree four\r\nfive six\r\nseven": selections written by a tool that counts
    # CRLF as one character (positions into "one two\nthree four\nfive six\nseven").
    lf = "one two\nthree four\nfive six\nseven"
    sels = "".join(
        f'<PlainTextSelection guid="s{i}" startPosition="{lf.index(w)}" endPosition="{lf.index(w) + len(w)}">'
        f'<Coding guid="c{i}"><CodeRef targetGUID="{CODE_A}"/></Coding></PlainTextSelection>'
        for i, w in enumerate(["four", "six", "seven", "five"])
    )
    return (
        f'<Project xmlns="urn:QDA-XML:project:1.0" name="p"><CodeBook><Codes>'
        f'<Code guid="{CODE_A}" name="a" isCodable="true"/></Codes></CodeBook><Sources>'
        f'<TextSource guid="{SRC1}" name="s"><PlainTextContent>one two&#13;\nthree four&#13;\n'
        f"five six&#13;\nseven</PlainTextContent>{sels}</TextSource></Sources></Project>"
    ).encode()


def test_crlf_counted_once_is_detected():
    project = read_qde(_crlf_once_qde())
    text = project.sources[0].text
    assert sorted(text[c.start:c.end] for c in project.codings) == ["five", "four", "seven", "six"]
    assert any("positions read as codepoints-lf" in p for p in project.problems)


def test_unknown_position_units_refused():
    with pytest.raises(ValueError, match="position units"):
        read_qde(_crlf_once_qde(), position_units="bytes")


def test_qdpx_named_zip_is_read_as_codings(tmp_path):
    from pipeline.exchange.codings import StudySource, read_codings

    project = _project()
    path = tmp_path / "sent by MAXQDA.zip"
    write_qdpx(project, path, created=CREATED)
    sources = [StudySource(s.guid, s.name, s.text) for s in project.sources]
    imported = read_codings(path, sources)
    assert imported.origin == "sent by MAXQDA.zip" and len(imported.selections) >= 4  # the machine's are skipped


def test_empty_qdc_refused(tmp_path):
    with pytest.raises(ValueError, match="empty codebook"):
        write_qdc([], tmp_path / "empty.qdc")
    assert not (tmp_path / "empty.qdc").exists()


def test_schema_check_refuses_what_the_schema_refuses():
    """The checks the export tests rely on do fail on a file the schema refuses."""
    with pytest.raises(AssertionError):
        assert_valid_qdc(f'<CodeBook xmlns="{CODEBOOK_NS}"><Codes/></CodeBook>'.encode())
    with pytest.raises(AssertionError):
        assert_valid_qdc(f'<CodeBook xmlns="{CODEBOOK_NS}"><Codes><Code guid="x" name="a" isCodable="true"/>'
                         "</Codes></CodeBook>".encode())
    with pytest.raises(AssertionError):
        assert_valid_qde(f'<Project xmlns="{PROJECT_NS}" name="p"><Sources/></Project>'.encode())


# ------------------------------------------------------------------ nothing dropped silently, codebooks in

_FOREIGN = """<?xml version="1.0" encoding="utf-8"?>
<Project xmlns="urn:QDA-XML:project:1.0" name="Foreign" origin="MAXQDA 2022">
  <CodeBook><Codes>
    <Code guid="c0000000-0000-0000-0000-000000000001" name="Access" isCodable="false" color="#1f77b4">
      <Description>Getting to care</Description>
      <Code guid="c0000000-0000-0000-0000-000000000002" name="Waiting" isCodable="true" color="#ff7f0eff"/>
      <Code guid="c0000000-0000-0000-0000-000000000003" name="Distance" isCodable="true" color="not a colour"/>
    </Code>
  </Codes></CodeBook>
  <Variables><Variable guid="v0000000-0000-0000-0000-000000000001" name="Age" typeOfVariable="Integer"/>
    <Variable guid="v0000000-0000-0000-0000-000000000002" name="Site" typeOfVariable="Text"/></Variables>
  <Cases><Case guid="a0000000-0000-0000-0000-000000000001" name="P1">
    <VariableValue><VariableRef targetGUID="v0000000-0000-0000-0000-000000000001"/><IntegerValue>40</IntegerValue>
    </VariableValue><SourceRef targetGUID="50000000-0000-0000-0000-000000000001"/></Case></Cases>
  <Sources>
    <TextSource guid="50000000-0000-0000-0000-000000000001" name="P1">
      <PlainTextContent>We waited weeks. The clinic is far away. Weeks!</PlainTextContent>
      {selections}
    </TextSource>
    <PDFSource guid="50000000-0000-0000-0000-000000000002" name="scan.pdf" path="relative:///scan.pdf"/>
  </Sources>
  <Notes><Note guid="60000000-0000-0000-0000-000000000001" name="memo"/>
    <Note guid="60000000-0000-0000-0000-000000000002" name="memo 2"/></Notes>
  <Links><Link guid="70000000-0000-0000-0000-000000000001"/></Links>
  <Sets><Set guid="80000000-0000-0000-0000-000000000001" name="s"/></Sets>
  <Graphs><Graph guid="90000000-0000-0000-0000-000000000001"/></Graphs>
</Project>"""


def test_a_foreign_file_without_users_gives_one_summary_line_each_not_one_per_coding():
    sel = ('<PlainTextSelection guid="b0000000-0000-0000-0000-0000000000{n:02d}" startPosition="0" endPosition="9" '
           'creatingUser="d0000000-0000-0000-0000-0000000000{n:02d}"><Coding guid="e0000000-0000-0000-0000-0000000000'
           '{n:02d}"><CodeRef targetGUID="c0000000-0000-0000-0000-000000000002"/></Coding></PlainTextSelection>')
    xml = _FOREIGN.format(selections="\n".join(sel.format(n=n) for n in range(40)))
    project = read_qde(xml.encode())
    assert len(project.codings) == 40 and project.origin == "MAXQDA 2022"
    users = [p for p in project.problems if "Users" in p]
    assert len(users) == 1 and "40 coding(s) by 40 user GUID(s)" in users[0]
    unused = [p for p in project.problems if "read and not used" in p]
    assert len(unused) == 1
    for what in ("1 Graphs", "1 Links", "2 Notes", "1 PDFSource", "1 Sets", "2 Variables", "1 VariableValue"):
        assert what in unused[0], (what, unused[0])
    assert project.not_used == {"Graphs": 1, "Links": 1, "Notes": 2, "PDFSource": 1, "Sets": 1, "Variables": 2,
                                "VariableValue": 1}
    assert len(project.problems) == 2, project.problems
    # the codebook as the tool wrote it: a folder, colours in the schema's form (alpha dropped, junk refused)
    access = project.codes[0]
    assert (access.codable, access.color, access.description) == (False, "#1F77B4", "Getting to care")
    assert [(c.name, c.color, c.codable) for c in access.children] == [("Waiting", "#FF7F0E", True),
                                                                        ("Distance", None, True)]


def test_codebooks_in_from_qdc_of_either_namespace_and_from_a_qdpx(tmp_path):
    from pipeline.exchange.refi_qda import read_codebook

    atlas = tmp_path / "atlas.qdc"  # ATLAS.ti 9 writes the 0.4 draft's namespace
    atlas.write_text("""<?xml version="1.0" encoding="utf-8"?>
<CodeBook xmlns="urn:QDA-XML:codebook:0:4" origin="ATLAS.ti">
 <Codes>
  <Code guid="{11111111-0000-0000-0000-000000000001}" name="Barriers" isCodable="true" color="#AA0000">
   <Description>What stops people</Description>
   <Code guid="11111111-0000-0000-0000-000000000002" name="Cost" isCodable="true"/>
  </Code>
  <Code name="no guid" isCodable="true"/>
 </Codes>
 <Sets><Set guid="11111111-0000-0000-0000-000000000009" name="Money"><MemberCode targetGUID="11111111-0000-0000-0000-000000000002"/></Set></Sets>
</CodeBook>""", encoding="utf-8")
    codes, notes = read_codebook(atlas)
    assert [(c.name, c.color, c.description) for c in codes] == [("Barriers", "#AA0000", "What stops people")]
    assert codes[0].children[0].name == "Cost" and codes[0].children[0].guid == "11111111-0000-0000-0000-000000000002"
    assert len(notes) == 2 and "'no guid' has no guid" in notes[1]
    assert notes[0].startswith("atlas.qdc: read and not used: 1 Sets")  # ATLAS.ti's code groups, said
    # the <CodeBook> of a project with codes and no selection (as MAXQDA sends a codebook), named .zip
    project = QdaProject("Book", codes=_project().codes)
    book = tmp_path / "book.zip"
    write_qdpx(project, book, created=CREATED)
    codes, notes = read_codebook(book)
    assert codes == project.codes and notes == []
    # one with sources and codings: those are said, in one line
    full = tmp_path / "full.qdpx"
    write_qdpx(_project(), full, created=CREATED)
    codes, notes = read_codebook(full)
    assert len(codes) == 3 and len(notes) == 1 and "6 Coding, 2 TextSource" in notes[0]
    empty = tmp_path / "empty.qdc"
    empty.write_text(f'<CodeBook xmlns="{CODEBOOK_NS}"><Codes/></CodeBook>', encoding="utf-8")
    with pytest.raises(ValueError, match="holds no code"):
        read_codebook(empty)
    with pytest.raises(ValueError, match="use a .qdc codebook"):
        read_codebook(tmp_path / "codes.csv")


def test_folders_and_colours_written_valid_and_read_back(tmp_path):
    leaf = QdaCode(G("code", "leaf"), "Leaf", "", "#00aa00")
    folder = QdaCode(G("code", "folder"), "Folder", "Groups", "#123456", (leaf,), codable=False)
    path = tmp_path / "f.qdc"
    write_qdc([folder], path)
    assert_valid_qdc(path.read_bytes())
    back = read_qdc(path)
    assert back[0].codable is False and back[0].children[0].color == "#00AA00"


@pytest.mark.skipif(not NVIVO.exists(), reason="shared REFI-QDA datasets not present")
def test_nvivo_codebook_comes_in_with_its_hierarchy(tmp_path):
    """The codebook of a real NVivo project: every code with its place; what is not used, in one line."""
    from pipeline.exchange.refi_qda import read_codebook

    codes, notes = read_codebook(NVIVO)
    project = read_qdpx(NVIVO)
    assert len(codes) == 12 and sum(1 for _ in project.all_codes()) == 152
    assert codes == project.codes and all(c.children for c in codes)
    assert len(notes) == 1 and "303 Coding" in notes[0]
    # and it goes out again as a schema-valid .qdc with the same tree
    out = tmp_path / "nvivo.qdc"
    write_qdc(codes, out)
    assert_valid_qdc(out.read_bytes())
    assert read_qdc(out) == codes
