"""The review's defects of issue 21 (item 7), each found by a test that fails without its fix, and review at
speed without a browser (bulk decisions, the next undecided theme, an optional definition). The page
itself (keys, contrast, a narrow screen) is driven in Chromium in test_review_speed_browser.py."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from models.review import decide, search_segments
from pipeline import csvsafe
from pipeline.learn.codebook import DecisionError
from pipeline.textquery import highlight, matches, parse_query, stem
from review_helpers import CSRF, keys_and_outliers, login, n_decisions
from test_store import _example, store_url  # noqa: F401  (a fixture: the store on SQLite and PostgreSQL)
from web.app import create_app
from web.views import load_view

ROOT = Path(__file__).resolve().parent.parent
FLASH = re.compile(r'class="flash" role="status">([^<]*)<')


def client_for(study, name: str = "amira") -> tuple[TestClient, str]:
    client = TestClient(create_app(study.store, study.name))
    return client, login(client, name=name)


def post(client: TestClient, csrf: str, **data):
    return client.post("/decide", data={"csrf": csrf, **data}, follow_redirects=False)


def flash(client: TestClient, response) -> str:
    assert response.status_code == 303, response.text
    found = FLASH.search(client.get(response.headers["location"]).text)
    return found.group(1) if found else ""


# -- 3: CSV formula injection ----------------------------------------------------------------------
def test_every_csv_the_project_writes_goes_through_the_safe_writer():
    """One way to write CSV: nothing outside pipeline/csvsafe.py calls csv.writer or csv.DictWriter."""
    offenders = []
    for folder in ("pipeline", "models", "flows", "web", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name != "csvsafe.py" and re.search(r"csv\.(writer|DictWriter)\(", path.read_text(encoding="utf-8")):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


@pytest.mark.parametrize("value", ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", "'=already", "''@x"])
def test_a_formula_is_written_as_text_and_read_back_as_it_was(value):
    out = io.StringIO()
    csvsafe.dict_writer(out, ["name", "n"]).writerow({"name": value, "n": -0.5})
    cell, number = next(csv.reader(io.StringIO(out.getvalue())))
    assert cell.startswith("'") and number == "-0.5"
    assert csvsafe.read_cell(cell) == value
    assert csvsafe.read_cell("plain") == "plain" and csvsafe.safe_cell("-0.5") == "-0.5"


def test_decisions_export_and_codebook_csv_neutralise_formulas(study, tmp_path, capsys):
    from flows.cli import main

    config = str(study.config_file())
    keys, _, _ = keys_and_outliers(study.store, study.name)
    decide(study.store, study.name, "amira", {"action": "confirm", "theme_key": keys[0], "name": "=1+1",
                                              "definition": "@SUM(1)"})
    out = tmp_path / "decisions.csv"
    assert main(["decisions", "export", str(out), "--study", study.name, "--config", config]) == 0
    row = next(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert row["name"] == "'=1+1" and row["definition"] == "'@SUM(1)"
    assert main(["decisions", "import", str(out), "--study", study.name, "--config", config]) == 0
    again = tmp_path / "again.csv"
    assert main(["decisions", "export", str(again), "--study", study.name, "--config", config]) == 0
    assert again.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(["codebook", "--study", study.name, "--config", config, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["name"] == "'=1+1"
    with study.store.sessions() as session:
        assert load_view(session, study.name).title(keys[0]) == "=1+1"  # stored as typed


# -- 2: a name is used once ---------------------------------------------------------------------------
def test_a_name_already_in_the_codebook_is_refused(study):
    store, name = study.store, study.name
    keys, outliers, _ = keys_and_outliers(store, name)
    decide(store, name, "amira", {"action": "confirm", "theme_key": keys[0], "name": "Waiting times"})
    for intent in ({"action": "confirm", "theme_key": keys[1], "name": "waiting  TIMES"},
                   {"action": "rename", "theme_key": keys[1], "name": "Waiting times"},
                   {"action": "add_theme", "name": "Waiting times", "definition": "d", "segment_ids": outliers[:1]},
                   {"action": "merge", "themes": [keys[1], keys[2]], "name": "Waiting times"}):
        with pytest.raises(DecisionError, match="already used by theme"):
            decide(store, name, "ben", intent)
    decide(store, name, "amira", {"action": "confirm", "theme_key": keys[0], "name": "Waiting times",
                                  "definition": "its own name again is fine"})
    decide(store, name, "amira", {"action": "reject", "theme_key": keys[0], "reason": "too broad"})
    decide(store, name, "ben", {"action": "confirm", "theme_key": keys[1], "name": "Waiting times"})  # free again


# -- 4: search's assign says what it does -------------------------------------------------------------
def test_a_segment_in_a_theme_found_by_search_is_moved_and_says_moved(study):
    client, csrf = client_for(study)
    keys, _, view = keys_and_outliers(study.store, study.name)
    with study.store.sessions() as session:
        found, _ = search_segments(session, view.study, "wait")
    seg = next(s.id for s in found if view.partition.get(s.id))
    here = view.partition[seg]
    target = next(k for k in keys if k != here)
    page = client.get("/search?q=wait").text
    item = page[page.index(f'id="seg-{seg}"'):].split("</li>")[0]
    assert 'value="move"' in item and "Move to" in item and "Assign" not in item
    assert 'value="code"' in item  # keeping its theme is the other button
    assert flash(client, post(client, csrf, action="move", segment_ids=str(seg), to=target,
                              back="/search?q=wait")) == "Moved."
    assert "moved 1 segment to" in client.get("/decisions").text
    # an add_segment (as a CSV import writes it) of a placed segment is logged as a move too
    other = next(k for k in keys if k not in (here, target))
    decide(study.store, study.name, "amira", {"action": "add_segment", "segment_ids": [seg], "to": other})
    log = client.get("/decisions").text
    assert "added 1 segment" not in log
    assert log.count("moved 1 segment to") == 3  # two in the log, one in the Undo button's title


def test_search_names_every_theme_a_segment_carries_and_offers_only_the_others(study):
    """A segment coded also as a second theme says both where it is found, and "Also code as" no longer
    offers the theme it carries (choosing it again was refused)."""
    client, csrf = client_for(study)
    keys, _, view = keys_and_outliers(study.store, study.name)
    with study.store.sessions() as session:
        found, _ = search_segments(session, view.study, "wait")
    seg = next(s.id for s in found if view.partition.get(s.id))
    here, also = view.partition[seg], next(k for k in keys if k != view.partition[seg])
    assert flash(client, post(client, csrf, action="code", segment_ids=str(seg), to=also,
                              back="/search?q=wait")) == "Code added."
    item = client.get("/search?q=wait").text.split(f'id="seg-{seg}"')[1].split("</li>")[0]
    now_in = item.split("now in:")[1].split("</p>")[0]
    assert f'href="/themes/{here}"' in now_in and f'href="/themes/{also}"' in now_in
    offered = item.split(f'id="also-{seg}"')[1].split("</select>")[0]
    assert f'value="{also}"' not in offered and f'value="{here}"' not in offered


def test_undoing_a_split_from_one_of_its_parts_returns_to_the_list(study):
    """The part's page is gone once the split is undone: the undo lands on the list, not on a 404."""
    client, csrf = client_for(study)
    keys, _, view = keys_and_outliers(study.store, study.name)
    key = max(keys[:6], key=lambda k: len(view.members(k)))
    assert post(client, csrf, action="split", theme_key=key, k="2", names=["One", "Two"]).status_code == 303
    uid = keys_and_outliers(study.store, study.name)[2].entries[-1].uid
    undone = post(client, csrf, action="undo", undoes=uid, back=f"/themes/{key}.1")
    assert undone.status_code == 303 and undone.headers["location"].startswith("/themes?")
    assert client.get(undone.headers["location"]).status_code == 200


# -- 5 and 7: split preview, parts' quotes, hints ----------------------------------------------------
def test_split_preview_lists_every_member_and_parts_quote_whole_answers(study):
    client, csrf = client_for(study)
    keys, _, view = keys_and_outliers(study.store, study.name)
    key = max(keys[:6], key=lambda k: len(view.members(k)))
    n = len(view.members(key))
    preview = client.get(f"/themes/{key}/split?k=2").text
    listed = re.findall(r'<ol class="part-members">(.*?)</ol>', preview, re.S)
    assert len(listed) == 2 and sum(part.count("<li>") for part in listed) == n
    names = ["First part", "Second part"]
    assert post(client, csrf, action="split", theme_key=key, k="2", names=names, back="/themes").status_code == 303
    _, _, after = keys_and_outliers(study.store, study.name)
    for part in after.state.themes[key].split_into:
        page = client.get(f"/themes/{part}").text
        quotes = re.findall(r'<article class="quote">\s*<blockquote>“(.*?)”</blockquote>', page, re.S)
        assert quotes and all(len(q.split()) >= 8 for q in quotes), quotes  # no "Yes, loud and clear."
        assert "strength" not in page  # the clustering's strength belonged to the theme that was split


def test_an_outliers_closest_theme_hint_never_names_a_split_theme(study):
    client, csrf = client_for(study)
    _, outliers, view = keys_and_outliers(study.store, study.name)
    counts: dict = {}
    for s in outliers:
        if s in view.suggested:
            counts[view.suggested[s][0]] = counts.get(view.suggested[s][0], 0) + 1
    key = max(counts, key=lambda k: (counts[k], k))
    title = view.title(key)
    assert f"closest theme “{title}”" in client.get("/outliers").text
    assert post(client, csrf, action="split", theme_key=key, k="2", names=["One", "Two"]).status_code == 303
    page = client.get("/outliers").text
    assert f"closest theme “{title}”" not in page and f'value="{key}"' not in page


# -- 6: search ---------------------------------------------------------------------------------------
def test_search_terms_phrases_prefixes_and_stems():
    terms = parse_query('"face to face" broadband* waiting')
    assert [t.kind for t in terms] == ["phrase", "prefix", "word"]
    text = "We met face-to-face while broadbands were waited for."
    assert matches(text, terms)
    assert not matches("face the music to face it", parse_query('"face to face"'))
    assert not matches("a broad band", parse_query("broadband*"))
    assert stem("studies") == stem("study") == stem("studied") and stem("stopped") == stem("stop")
    assert [p for p, hit in highlight(text, terms) if hit] == ["face-to-face", "broadbands", "waited"]


def test_search_page_finds_quoted_phrases_prefixes_and_stems(study):
    client, _ = client_for(study)

    def total(q: str) -> int:
        found = re.search(r"<p>(\d+) participant segments? holds?", client.get("/search", params={"q": q}).text)
        return int(found.group(1)) if found else 0

    phrase, words = total('"face to face"'), total("face to face")
    assert 0 < phrase <= words
    assert total("wait*") >= total("waiting") > 0
    assert total("waited") == total("waiting") == total("waits")  # one stem
    with study.store.sessions() as session:
        view = load_view(session, study.name)
        found, n = search_segments(session, view.study, '"face to face"', limit=500)
    assert n == phrase and all(re.search(r"face\W+to\W+face", s.text, re.I) for s in found)


# -- 8, 9: the page's message and bad addresses ------------------------------------------------------
def test_a_link_cannot_put_its_own_words_in_the_system_message(study):
    client, csrf = client_for(study)
    assert "Your account is locked" not in client.get("/themes?msg=Your+account+is+locked").text
    assert 'class="flash"' not in client.get("/themes?msg=Your+account+is+locked").text
    keys, _, _ = keys_and_outliers(study.store, study.name)
    assert flash(client, post(client, csrf, action="confirm", theme_key=keys[0], name="Kept",
                              back=f"/themes/{keys[0]}")) == "Confirmed."


def test_a_bad_page_number_is_an_html_page_not_json(study):
    client, _ = client_for(study)
    keys, _, _ = keys_and_outliers(study.store, study.name)
    for url in (f"/themes/{keys[0]}?page_no=abc", "/outliers?page_no=x", "/search?q=a&page_no=1.5"):
        response = client.get(url)
        assert response.status_code == 400 and response.headers["content-type"].startswith("text/html"), url
        assert "page_no" in response.text and "<!doctype html>" in response.text and '"detail"' not in response.text


# -- 10: tokens listed, revoked, rotated --------------------------------------------------------------
def test_review_on_a_port_in_use_says_so_in_one_line_before_announcing_the_page(study, capsys):
    import socket

    from flows.cli import main

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert main(["review", "--study", study.name, "--config", str(study.config_file()), "--no-browser",
                     "--port", str(port)]) == 2
    said = capsys.readouterr()
    assert "Reviewing study" not in said.out
    assert said.err.startswith(f"themesift: cannot listen on 127.0.0.1:{port}") and f"--port {port + 1}" in said.err


def test_coders_list_revoke_and_a_new_token_ends_the_old_one(study, capsys):
    from flows.cli import main

    config = str(study.config_file())

    said = []

    def add(name: str) -> str:
        assert main(["coders", "add", name, "--study", study.name, "--config", config]) == 0
        said.append(capsys.readouterr().out)
        return said[-1].split("\n\n  ")[1].split()[0]

    old, ben = add("amira"), add("ben")
    assert "before no longer works" not in said[0]  # a first token replaces nothing
    app = create_app(study.store, study.name, team=True)
    signed_in = TestClient(app)
    login(signed_in, token=old)
    assert signed_in.get("/themes", follow_redirects=False).status_code == 200
    new = add("amira")
    assert new != old and "The token given to them before no longer works." in said[-1]
    fresh = TestClient(app)
    csrf = CSRF.search(fresh.get("/login").text).group(1)
    assert fresh.post("/login", data={"csrf": csrf, "token": old, "next": "/themes"}).status_code == 400
    assert signed_in.get("/themes", follow_redirects=False).status_code == 303  # the old session ended too
    login(fresh, token=new)
    assert main(["coders", "list", "--study", study.name, "--config", config]) == 0
    listed = capsys.readouterr().out
    assert [line.split("\t")[0] for line in listed.strip().splitlines()] == ["amira", "ben"]
    assert old not in listed and new not in listed
    assert main(["coders", "revoke", "ben", "--study", study.name, "--config", config]) == 0
    capsys.readouterr()
    assert fresh.post("/login", data={"csrf": csrf, "token": ben, "next": "/themes"}).status_code == 400
    assert main(["coders", "revoke", "ben", "--study", study.name, "--config", config]) == 2
    assert "themesift: coder 'ben' has no token" in capsys.readouterr().err
    assert main(["coders", "list", "--study", study.name, "--config", config]) == 0
    assert capsys.readouterr().out.strip().splitlines()[0].startswith("amira")


# -- 13, 14: a rejected theme's segments, counts and words -----------------------------------------------
def test_a_rejected_theme_still_lists_its_segments(study):
    client, csrf = client_for(study)
    keys, _, view = keys_and_outliers(study.store, study.name)
    members = view.members(keys[1])
    post(client, csrf, action="reject", theme_key=keys[1], reason="too vague")
    page = client.get(f"/themes/{keys[1]}").text
    assert f"The {len(members)} segments it had when it was rejected" in page
    listed = [int(s) for s in re.findall(r'<li class="segment" id="seg-(\d+)"', page)]
    assert len(listed) == min(20, len(members)) and set(listed) <= set(members)


def test_counts_agree_the_log_speaks_words_and_placed_segments_have_no_strength(study):
    client, csrf = client_for(study)
    keys, outliers, view = keys_and_outliers(study.store, study.name)
    listing = client.get("/themes").text
    for row in view.rows():
        item = listing[listing.index(f'data-key="{row.key}"'):].split("</li>\n")[0]
        said = {int(n) for n in re.findall(r"<li>(\d+) segments", item)}
        shown = {int(n) for n in re.findall(r"<span>(\d+) segments</span>", item)}
        assert said == shown == {row.n_segments}, row.key
    seg = outliers[0]
    decide(study.store, study.name, "amira", {"action": "confirm", "theme_key": keys[0], "name": "First"})
    post(client, csrf, action="add_segment", segment_ids=str(seg), to=keys[0], back="/outliers")
    listing = client.get("/themes").text
    assert "amira: added a segment" in listing and "add_segment" not in listing
    page = client.get(f"/themes/{keys[0]}?order=weakest").text
    item = page[page.index(f'id="seg-{seg}"'):].split("</li>")[0]
    assert "placed here by a coder" in item and "strength" not in item


# -- 1 and 6 without a browser: going on, bulk decisions, optional definition ---------------------------
def test_a_decision_goes_on_to_the_next_undecided_theme_and_the_page_keeps_its_links(study):
    client, csrf = client_for(study)
    keys, _, _ = keys_and_outliers(study.store, study.name)
    decide(study.store, study.name, "ben", {"action": "reject", "theme_key": keys[2], "reason": "no"})
    r = post(client, csrf, action="confirm", theme_key=keys[1], name="Second", go="next", back=f"/themes/{keys[1]}")
    assert r.headers["location"].startswith(f"/themes/{keys[3]}?")  # keys[2] was decided already
    r = post(client, csrf, action="reject", theme_key=keys[3], reason="mixed", go="next", back=f"/themes/{keys[3]}")
    assert r.headers["location"].startswith(f"/themes/{keys[4]}?")
    for key in (keys[1], keys[3]):  # decided themes keep previous / next
        page = client.get(f"/themes/{key}").text
        assert 'data-key="prev"' in page and 'data-key="next"' in page and 'data-key="undecided"' in page
    _, _, view = keys_and_outliers(study.store, study.name)
    assert view.state.themes[keys[1]].definition == ""  # the definition can come later


def test_bulk_confirm_and_reject_of_ticked_themes_all_or_none(study):
    client, csrf = client_for(study)
    keys, _, view = keys_and_outliers(study.store, study.name)
    titles = [view.title(k) for k in keys[:3]]
    r = post(client, csrf, action="merge", bulk="confirm", themes=keys[:3], back="/themes")
    assert flash(client, r) == "Confirmed 3 themes."
    r = post(client, csrf, action="merge", bulk="enter", themes=keys[3:5], reason="too vague", back="/themes")
    assert flash(client, r) == "Rejected 2 themes."
    assert post(client, csrf, action="merge", bulk="reject", themes=keys[5:7], back="/themes").status_code == 400
    _, _, after = keys_and_outliers(study.store, study.name)
    assert [after.state.themes[k].name for k in keys[:3]] == titles
    assert [after.status(k) for k in keys[:7]] == ["confirmed"] * 3 + ["rejected"] * 2 + ["new"] * 2
    assert [e.action for e in after.entries] == ["confirm"] * 3 + ["reject"] * 2


@pytest.mark.parametrize("query", ['"face to face"', "wait*", "waited", "Émotion", "therapy online"])
def test_search_finds_the_same_segments_on_sqlite_and_postgresql(store_url, query):
    """The database only narrows the rows; the terms are matched in Python, so both find exactly the
    segments the matcher accepts (PostgreSQL runs where THEMESIFT_TEST_PG_URL is set, as in CI)."""
    from datetime import datetime, timezone

    from sqlalchemy import select

    from models.records import Segment, Study
    from models.store import Store

    store = Store(store_url)
    docs, segments, suggestions = _example(4)
    store.record_run("s", docs, segments, suggestions, {}, [], datetime.now(timezone.utc))
    with store.sessions() as session:
        study = session.scalars(select(Study).where(Study.name == "s")).one()
        found, n = search_segments(session, study, query, limit=1000)
        rows = session.scalars(select(Segment).where(Segment.role == "participant")).all()
        expected = sorted(s.id for s in rows if matches(s.text, parse_query(query)))
    assert sorted(s.id for s in found) == expected and n == len(expected)
    if query != "Émotion":
        assert expected  # the example transcripts hold every other query


def test_the_comparison_in_local_mode_does_not_say_the_coders_coded_blind(study):
    """Without --team every coder sees every decision: the comparison says so, not "blind"."""
    client, _ = client_for(study)
    keys, _, _ = keys_and_outliers(study.store, study.name)
    decide(study.store, study.name, "amira", {"action": "confirm", "theme_key": keys[0], "name": "A", "definition": "d"})
    decide(study.store, study.name, "ben", {"action": "confirm", "theme_key": keys[0], "name": "A", "definition": "d"})
    page = client.get("/compare").text
    assert "with each other's decisions in sight" in page and "\nblind." not in page


# -- two coders on one theme: a decision sent from a page drawn before a colleague's is refused -------------
SEEN = re.compile(r'name="seen" value="(\d+)"')


def test_a_decision_from_a_page_a_colleague_overtook_is_refused_and_nothing_changes(study):
    amira, amira_csrf = client_for(study, "amira")
    ben, ben_csrf = client_for(study, "ben")
    keys, _, view = keys_and_outliers(study.store, study.name)
    key = keys[0]
    assert "No disagreements (nobody has decided yet)." in ben.get("/decisions").text
    ben_page = ben.get(f"/themes/{key}").text  # ben opens the theme ...
    seen = SEEN.search(ben_page).group(1)
    assert flash(amira, post(amira, amira_csrf, action="confirm", theme_key=key, name="Waiting times",
                             seen=SEEN.search(amira.get(f"/themes/{key}").text).group(1))) == "Confirmed."
    # ... and, without reloading, rejects it: amira's confirmation is newer than his page
    refused = post(ben, ben_csrf, action="reject", theme_key=key, reason="too broad", seen=seen)
    assert refused.status_code == 400
    assert "amira confirmed theme &#39;Waiting times&#39;" in refused.text and "since this page was opened" in refused.text
    keys_now, _, view_now = keys_and_outliers(study.store, study.name)
    assert view_now.status(key) == "confirmed" and view_now.title(key) == "Waiting times"
    # the page drawn now shows amira's decision, and the same reject from it goes in
    seen = SEEN.search(ben.get(f"/themes/{key}").text).group(1)
    assert flash(ben, post(ben, ben_csrf, action="reject", theme_key=key, reason="too broad", seen=seen)) == "Rejected."
    # a colleague's decision on another theme does not stop it; one's own from another tab does
    other = keys[1]
    seen = SEEN.search(ben.get(f"/themes/{other}").text).group(1)
    decide(study.store, study.name, "amira", {"action": "rename", "theme_key": keys[2], "name": "Costs"})
    assert flash(ben, post(ben, ben_csrf, action="confirm", theme_key=other, name="Licence fees", seen=seen)) \
        == "Confirmed."
    decide(study.store, study.name, "ben", {"action": "rename", "theme_key": other, "name": "Licences"})
    refused = post(ben, ben_csrf, action="reject", theme_key=other, reason="thin", seen=seen)
    assert refused.status_code == 400 and "you (in another tab or window) renamed theme" in refused.text
    # a form posted twice (a double click) records one decision
    seen = SEEN.search(ben.get(f"/themes/{other}").text).group(1)
    before = n_decisions(study.store)
    assert flash(ben, post(ben, ben_csrf, action="reject", theme_key=other, reason="thin", seen=seen)) == "Rejected."
    assert post(ben, ben_csrf, action="reject", theme_key=other, reason="thin", seen=seen).status_code == 400
    assert n_decisions(study.store) == before + 1
    # a segment a colleague moved after the page was drawn is not moved again from it
    seg = view.members(keys[3])[0]
    seen = SEEN.search(ben.get(f"/themes/{keys[3]}").text).group(1)
    decide(study.store, study.name, "amira", {"action": "move", "segment_ids": [seg], "to": keys[4]})
    refused = post(ben, ben_csrf, action="move", segment_ids=str(seg), to=keys[5], seen=seen)
    assert refused.status_code == 400 and f"amira placed segment {seg}" in refused.text
    assert keys_and_outliers(study.store, study.name)[2].partition[seg] == keys[4]


def test_the_bulk_bar_and_the_merge_bar_carry_the_page_they_were_drawn_on(study):
    amira, amira_csrf = client_for(study, "amira")
    ben, ben_csrf = client_for(study, "ben")
    keys, _, _ = keys_and_outliers(study.store, study.name)
    page = ben.get("/themes").text
    assert page.count('name="seen"') >= 1
    seen = SEEN.search(page).group(1)
    decide(study.store, study.name, "amira", {"action": "reject", "theme_key": keys[1], "reason": "noise"})
    refused = ben.post("/decide", data={"csrf": ben_csrf, "bulk": "confirm", "themes": [keys[0], keys[1]],
                                        "back": "/themes", "seen": seen}, follow_redirects=False)
    assert refused.status_code == 400 and "amira rejected theme" in refused.text
    view = keys_and_outliers(study.store, study.name)[2]
    assert view.status(keys[0]) != "confirmed" and view.status(keys[1]) == "rejected"  # all or none
