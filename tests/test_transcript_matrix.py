"""The transcript view and the Framework matrix page on the example study (TestClient; the browser side,
selecting text and jumping to a quote, is tests/test_transcript_browser.py)."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlencode

from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import select

from models.records import Segment, Source, Study
from pipeline.embed.encoder import text_hash
from review_helpers import keys_and_outliers, login
from test_blind_coding import tokens
from web.app import create_app


def long_source(store, study: str, chars: int = 100_000) -> tuple[int, list[int]]:
    """A transcript of at least ``chars`` characters (interviewer and participant turns), stored with its
    segments as ingest stores them; returns its id and its segment ids in text order."""
    parts, spans, pos, n = [], [], 0, 0
    while pos < chars:
        question = f"Interviewer: Question {n}, what happened next with the service?\n\n"
        label = "P99: "
        answer = (f"Answer {n}: the waiting list was long and the app helped a little while I waited. "
                  "I tried the modules at night when the house was quiet, and my therapist checked in weekly. ") * 3
        q_start = pos + len("Interviewer: ")
        spans.append((q_start, q_start + len(question.strip()) - len("Interviewer: "), "interviewer", 2 * n))
        a_start = pos + len(question) + len(label)
        spans.append((a_start, a_start + len(answer.strip()), "participant", 2 * n + 1))
        parts += [question, label, answer.strip() + "\n\n"]
        pos += len(question) + len(label) + len(answer.strip()) + 2
        n += 1
    body = "".join(parts)
    with store.transaction() as session:
        srow = session.scalars(select(Study).where(Study.name == study)).one()
        source = Source(study_id=srow.id, name="P99-long.txt", path="P99-long.txt", format="txt",
                        sha256=text_hash(body), text=body)
        session.add(source)
        session.flush()
        ids = []
        for start, end, role, turn in spans:
            seg = Segment(source_id=source.id, start=start, end=end, case="P99" if role == "participant" else None,
                          speaker="P99" if role == "participant" else "Interviewer", role=role, turn_index=turn,
                          text=body[start:end], text_hash=text_hash(body[start:end]),
                          clusterable=role == "participant", attributes={})
            session.add(seg)
            session.flush()
            ids.append(seg.id)
        return source.id, ids


def source_of(store, segment: int) -> int:
    with store.sessions() as session:
        return session.get(Segment, segment).source_id


def stripes(page: str, segment: int) -> list[str]:
    """The theme keys of the stripes in ``segment``'s margin."""
    block = re.search(rf'id="seg-{segment}" data-seg="{segment}"><span class="stripes">(.*?)</span><input', page)
    assert block, f"segment {segment} is not in the page"
    return re.findall(r'href="/themes/([^"]+)"', block.group(1))


def test_the_transcript_view_shows_a_whole_source_with_every_segments_themes(study):
    store = study.store
    client = TestClient(create_app(store, study.name))
    csrf = login(client, "amira")
    keys, _, view = keys_and_outliers(store, study.name)
    member = view.members(keys[0])[0]
    source = source_of(store, member)
    page = client.get(f"/sources/{source}").text
    with store.sessions() as session:
        src = session.get(Source, source)
        segs = list(session.scalars(select(Segment).where(Segment.source_id == source)))
        assert str(escape(src.name)) in page
    for s in segs:  # every segment, at its anchor, with its words
        assert f'id="seg-{s.id}"' in page and str(escape(s.text)) in page
    assert stripes(page, member) == [keys[0]]
    assert "Interviewer:" in page  # the speaker turns
    assert client.get("/sources").text.count("/sources/") >= 10
    assert client.get("/sources/999999").status_code == 404

    # code two segments to a second theme (what a selection over both sends): both carry two stripes now
    pair = sorted(s.id for s in segs if s.id in view.base and keys[0] in view.codes.get(s.id, ()))[:1]
    pair += [next(s.id for s in segs
                  if s.id in view.base and s.id not in pair and keys[1] not in view.codes.get(s.id, ()))]
    response = client.post("/decide", data={"csrf": csrf, "action": "code", "to": keys[1], "segment_ids": pair,
                                            "back": f"/sources/{source}#seg-{pair[0]}"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].endswith(f"#seg-{pair[0]}")
    page = client.get(response.headers["location"].split("#")[0]).text
    assert "Code added to 2 segments." in page
    assert stripes(page, pair[0]) == [keys[0], keys[1]] and keys[1] in stripes(page, pair[1])


def test_every_quote_links_to_its_place_in_the_transcript(study):
    store = study.store
    client = TestClient(create_app(store, study.name))
    login(client, "amira")
    keys, outliers, view = keys_and_outliers(store, study.name)
    quote = view.quote_ids(keys[0])[0]
    link = f'href="/sources/{source_of(store, quote)}#seg-{quote}"'
    assert link in client.get(f"/themes/{keys[0]}").text
    first = outliers[0] if outliers else None
    if first is not None:
        assert f"#seg-{first}\"" in client.get("/outliers").text
    found = client.get("/search?" + urlencode({"q": "waiting"})).text
    assert re.search(r'href="/sources/\d+#seg-\d+"', found)


def test_a_100k_character_transcript_renders_in_one_page(study):
    store = study.store
    source, ids = long_source(store, study.name)
    client = TestClient(create_app(store, study.name))
    login(client, "amira")
    page = client.get(f"/sources/{source}").text
    assert page.count('class="seg"') == len(ids) and f'id="seg-{ids[-1]}"' in page
    assert page.count('class="turn ') == len(ids)


def test_the_matrix_page_is_the_matrix_command_on_the_run(study):
    """Before any decision the page's open themes are the run's themes: the same counts per participant and
    theme as ``themesift matrix`` gives (flows.compare.build_study_matrix, the machine's themes)."""
    from flows.compare import build_study_matrix, load_view as compare_view

    store = study.store
    client = TestClient(create_app(store, study.name))
    csrf = login(client, "amira")
    keys, _, view = keys_and_outliers(store, study.name)
    command = build_study_matrix(compare_view(store, study.name), "machine", 2)
    page = client.get("/matrix?themes=open").text
    assert "Framework matrix" in page
    cells = re.findall(r'href="/matrix/cell\?case=([^&]+)&amp;theme=([^"]+)">(\d+) segments?</a>', page)
    shown = {(unquote_plus(c), unquote_plus(k)): int(n) for c, k, n in cells}
    rank = {view.themes[k].rank: k for k in view.themes}
    expected = {}
    for case in command.cases:
        for col in command.columns:
            n = command.cell(case, col.code).count
            if n:
                expected[(case, rank[int(col.code[1:3])])] = n
    assert shown == expected and shown
    # a cell lists all its segments, each linked to its place in the transcript
    (case, key), n = next(iter(shown.items()))
    cell = client.get("/matrix/cell?" + urlencode({"case": case, "theme": key})).text
    assert cell.count('class="segment"') == n and cell.count('class="in-transcript"') == n

    # with a confirmed theme the page shows the codebook
    client.post("/decide", data={"csrf": csrf, "action": "confirm", "theme_key": keys[2], "name": "Cost"})
    page = client.get("/matrix").text
    assert len(re.findall(r'<th scope="col">.*?</th>', page)) == 2 and ">Cost</a>" in page


def test_a_matrix_of_many_rows_is_paged_and_its_totals_stay_the_studys(study, monkeypatch):
    """A survey's every answer is a row: 10,000 rows made a page of 34 MB."""
    import web.app

    monkeypatch.setattr(web.app, "MATRIX_ROWS", 4)
    client = TestClient(create_app(study.store, study.name))
    login(client, "amira")
    rows = [re.findall(r'<tr><th scope="row">([^<]+)<br>', client.get(f"/matrix?themes=open&page_no={n}").text)
            for n in (1, 2, 3)]
    assert [len(r) for r in rows] == [4, 4, 2] and len({c for r in rows for c in r}) == 10  # ten participants
    last = client.get("/matrix?themes=open&page_no=3").text
    assert "Rows 9-10 of 10" in last and 'rel="prev"' in last and 'rel="next"' not in last
    assert re.search(r"\d+ of 10</td>", last)  # a total counts every participant, not the page's
    assert client.get("/matrix?themes=open&page_no=99").status_code == 200


def test_the_matrix_page_charts_by_a_column_as_the_command_does(study):
    """Segments that carry a CSV column (here a site per transcript) can be charted by it in the page, with
    the counts of ``themesift matrix --by site``; a cell lists the segments of its site only."""
    from sqlalchemy import update

    from flows.compare import build_study_matrix, load_view as compare_view

    store = study.store
    with store.transaction() as session:
        for source_id, name in session.execute(select(Source.id, Source.name)).all():
            site = "North" if name < "P05" else "South"
            session.execute(update(Segment).where(Segment.source_id == source_id).values(attributes={"site": site}))
    client = TestClient(create_app(store, study.name))
    login(client, "amira")
    keys, _, view = keys_and_outliers(store, study.name)
    assert "Rows:" in client.get("/matrix?themes=open").text
    page = client.get("/matrix?themes=open&by=site").text
    assert '<th scope="col">site</th>' in page and "site values raising it" in page
    cells = re.findall(r'href="/matrix/cell\?case=([^&]+)&amp;theme=([^&]+)&amp;by=site">(\d+) segments?</a>', page)
    shown = {(unquote_plus(c), unquote_plus(k)): int(n) for c, k, n in cells}
    command = build_study_matrix(compare_view(store, study.name), "machine", 2, by="site")
    rank = {view.themes[k].rank: k for k in view.themes}
    expected = {(case, rank[int(col.code[1:3])]): command.cell(case, col.code).count
                for case in command.cases for col in command.columns if command.cell(case, col.code).count}
    assert shown == expected and {c for c, _ in shown} == {"North", "South"}
    (case, key), n = next(iter(shown.items()))
    cell = client.get("/matrix/cell?" + urlencode({"case": case, "theme": key, "by": "site"})).text
    assert cell.count('class="segment"') == n and cell.count(f"site: {case}") == n


def test_blind_coders_see_their_own_codes_in_the_transcript_and_the_matrix(study, capsys):
    token = tokens(study, capsys, "amira", "ben", lead="amira")
    store = study.store
    app = create_app(store, study.name, team=True)
    a, b = TestClient(app), TestClient(app)
    csrf_a, csrf_b = login(a, token=token["amira"]), login(b, token=token["ben"])
    keys, _, view = keys_and_outliers(store, study.name)
    seg = view.members(keys[0])[0]
    source = source_of(store, seg)
    assert a.post("/decide", data={"csrf": csrf_a, "action": "code", "to": keys[1], "segment_ids": [seg],
                                   "back": f"/sources/{source}"}).status_code == 200
    assert stripes(a.get(f"/sources/{source}").text, seg) == [keys[0], keys[1]]
    assert stripes(b.get(f"/sources/{source}").text, seg) == [keys[0]]  # amira's code is not in ben's view
    case = view.segments[seg].case
    cell = "/matrix/cell?" + urlencode({"case": case, "theme": keys[1]})
    assert f'id="seg-{seg}"' in a.get(cell).text and f'id="seg-{seg}"' not in b.get(cell).text
    assert b.post("/decide", data={"csrf": csrf_b, "action": "confirm", "theme_key": keys[1],
                                   "name": "Waiting"}).status_code == 200
    assert "Waiting" in b.get("/matrix").text and "Waiting" not in a.get("/matrix").text


def test_a_quote_with_a_control_character_goes_into_the_workbook_as_a_space(tmp_path):
    """A survey answer holding Word's manual line break (U+000B) made `themesift matrix` fail in openpyxl."""
    from dataclasses import dataclass

    from openpyxl import load_workbook

    from pipeline.compare.matrix import Column, build_matrix, write_xlsx

    @dataclass(frozen=True)
    class Unit:
        segment_id: int
        source: str
        case: str | None
        start: int
        end: int
        text: str
        attributes: tuple = ()

    units = [Unit(1, "survey.csv", "R1", 0, 30, "The therapist kept\x0bbringing it up"),
             Unit(2, "survey.csv", "R2", 31, 50, "Parking\x01 was hard")]
    matrix = build_matrix(units, {1: frozenset({"a"}), 2: frozenset({"a"})}, [Column("a", "Care\x0c")], "t")
    path = write_xlsx(matrix, tmp_path / "m.xlsx")
    quotes = [row[-1] for row in load_workbook(path)["Quotes"].iter_rows(min_row=2, values_only=True)]
    assert quotes == ["The therapist kept bringing it up", "Parking was hard"]
    assert load_workbook(path)["Themes"]["A2"].value == "Care "
