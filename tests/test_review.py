"""The review on the example study: web app (escaping, CSRF, validation), two coders at once on SQLite,
the decision CSV round trip, the CLI, deductive coding, and what the next run gets from the log."""

from __future__ import annotations

import csv
import inspect
import io
import threading
from urllib.parse import urlencode

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from models.codings import Coding, Coder
from models.decisions import AppendOnlyError, Decision
from models.records import Membership, Run, Segment, Source, Study, Theme
from models.review import (apply_codebook, decide, export_decisions, honour_inputs, import_decisions,
                           review_coding_rows, segments_by_id)
from models.store import Store
from pipeline.embed.encoder import text_hash
from pipeline.learn.apply import APPLY_CODER
from pipeline.learn.codebook import DecisionError
from pipeline.learn.honour import FIXED_NONE, drop_rejected, plan_segments
from review_helpers import CSRF, keys_and_outliers, login, n_decisions, private_study, segments_outside
from web.app import create_app
from web.views import load_view

REVIEW = {"calibration_percentile": 10.0, "min_similarity": 0.35, "uncertain_margin": 0.05,
          "rejected_similarity": 0.85, "diff_match_jaccard": 0.5, "learner": "logistic",
          "learner_unlabelled_weight": 0.05, "learner_C": 1.0}
CENTROID = {**REVIEW, "learner": "centroid"}
WORDS = {**REVIEW, "learner_words": 1.0, "learner_word_components": 50}  # the segments' words beside their vectors


def add_hostile_segment(store: Store, name: str) -> int:
    """A transcript line holding markup, put in the latest run's outlier queue."""
    with store.transaction() as session:
        study = session.scalars(select(Study).where(Study.name == name)).one()
        body = 'P99: I said <script>alert("owned")</script> & left the room "quietly".'
        source = Source(study_id=study.id, name="<b>P99</b>.txt", path="x", format="txt", sha256="0" * 64, text=body)
        session.add(source)
        session.flush()
        start = body.index("I said")
        seg = Segment(source_id=source.id, start=start, end=len(body), case="<i>P99</i>", speaker="P99",
                      role="participant", turn_index=0, text=body[start:], text_hash=text_hash(body[start:]),
                      clusterable=True, attributes={})
        session.add(seg)
        session.flush()
        run = session.scalars(select(Run).where(Run.study_id == study.id).order_by(Run.id.desc())).first()
        session.add(Membership(run_id=run.id, segment_id=seg.id, theme_id=None))
        return seg.id


# ---------------------------------------------------------------------------------------------
# Web: escaping, CSRF, validation
# ---------------------------------------------------------------------------------------------


def test_a_survey_answer_shows_its_row_and_columns_where_it_is_reviewed(study):
    """A coder reviewing survey answers sees the row each came from and its extra columns (--attr-col, and
    the question where a CSV holds several) beside the respondent, escaped like any stored text."""
    with study.store.transaction() as session:
        row = session.scalars(select(Study).where(Study.name == study.name)).one()
        body = "The car park was full every time I came."
        source = Source(study_id=row.id, name="survey.csv", path="x", format="csv", sha256="1" * 64, text=body)
        session.add(source)
        session.flush()
        seg = Segment(source_id=source.id, start=0, end=len(body), case="R17", speaker=None, role="participant",
                      turn_index=0, text=body, text_hash=text_hash(body), clusterable=True, row_id="42",
                      attributes={"site": "<b>North</b>", "text column": "What could be better?"})
        session.add(seg)
        session.flush()
        run = session.scalars(select(Run).where(Run.study_id == row.id).order_by(Run.id.desc())).first()
        session.add(Membership(run_id=run.id, segment_id=seg.id, theme_id=None))
    client = TestClient(create_app(study.store, study.name))
    login(client, name="amira")
    page = client.get("/outliers").text
    assert "R17 · row 42 · site: &lt;b&gt;North&lt;/b&gt; · text column: What could be better? · " in page


def test_untrusted_text_is_escaped_everywhere(study):
    store = study.store
    seg = add_hostile_segment(store, study.name)
    client = TestClient(create_app(store, study.name))
    csrf = login(client, name="amira")
    keys, _, _ = keys_and_outliers(store, study.name)
    decide(store, study.name, "<b>ben</b>", {"action": "confirm", "theme_key": keys[1], "name": "<u>x</u>",
                                              "definition": "<script>alert(2)</script>"})  # as an import could
    hostile = '<img src=x onerror="alert(1)">'
    for data in ({"action": "rename", "theme_key": keys[0], "name": hostile},
                 {"action": "add_segment", "segment_ids": str(seg), "to": keys[0]}):
        assert client.post("/decide", data={"csrf": csrf, **data}, follow_redirects=False).status_code == 303
    with store.sessions() as session:
        source = session.get(Segment, seg).source_id
    pages = ["/themes", f"/themes/{keys[0]}?order=weakest", f"/themes/{keys[1]}", "/search?q=alert", "/decisions",
             f"/themes/{keys[0]}/split?k=2", "/sources", f"/sources/{source}", "/matrix?themes=open",
             "/matrix/cell?" + urlencode({"case": "<i>P99</i>", "theme": keys[0]})]
    for url in pages:
        body = client.get(url).text
        assert "<script>alert" not in body and "<img src=x" not in body and "<b>amira" not in body, url
        assert "<i>P99" not in body and "<b>P99" not in body and "<u>x" not in body, url
        assert "<script>alert(2)" not in body, url
    theme_page = client.get(f"/themes/{keys[0]}?order=weakest").text
    assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in theme_page   # shown, as text
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in theme_page
    assert "&lt;b&gt;ben&lt;/b&gt;" in client.get("/decisions").text
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in client.get(f"/themes/{keys[1]}").text
    assert "&lt;script&gt;alert(&#34;owned&#34;)" in client.get(f"/sources/{source}").text
    assert "&lt;i&gt;P99&lt;/i&gt;" in client.get("/matrix?themes=open").text
    search = client.get("/search?q=alert").text
    assert "<mark>alert</mark>" in search and "&lt;script&gt;" in search
    response = client.get("/themes")
    assert "script-src 'self'" in response.headers["content-security-policy"]


def test_segments_that_joined_from_the_queue_are_marked_on_the_page_and_in_exports(study):
    """The flow's run of the example study: left-out segments that fit a theme joined it, visibly."""
    from models.export import suggestion_export

    store = study.store
    keys, outliers, view = keys_and_outliers(store, study.name)
    joined = {sid: view.joined(sid) for key in keys for sid in view.members(key) if view.joined(sid) is not None}
    assert joined and outliers  # some joined, some still wait in the queue
    with store.sessions() as session:
        run = session.get(Run, view.run.id)
        assert run.manifest["joined_outliers"] == len(joined)
        export = suggestion_export(session, run)
    exported = {m["segment_id"]: m["joined_similarity"] for t in export["themes"] for m in t["members"]}
    assert {sid: round(sim, 6) for sid, sim in joined.items()} == {k: v for k, v in exported.items() if v is not None}
    assert all(view.strength[sid] == 0.0 and sim >= 0.35 for sid, sim in joined.items())
    sid, sim = next(iter(joined.items()))
    client = TestClient(create_app(store, study.name))
    csrf = login(client, name="amira")
    key = view.base[sid]
    page = client.get(f"/themes/{key}?order=weakest").text
    item = page[page.index(f'id="seg-{sid}"'):]
    item = item[:item.index("</li>")]
    assert f"joined from the outlier queue (similarity {sim:.2f})" in item and "· strength" not in item
    assert f"{len(joined)} more segments the clustering left out fitted a theme" in client.get("/outliers").text
    clustered = max((m for m in view.members(key) if m not in joined), key=lambda m: view.strength[m])
    page = client.get(f"/themes/{key}").text  # strongest first
    item = page[page.index(f'id="seg-{clustered}"'):]
    assert "joined from the outlier queue" not in item[:item.index("</li>")]
    # one decision sends the theme's joined segments back to the queue; the clustered ones stay
    here = sorted(s for s in joined if view.base[s] == key)
    assert ("Send the segment that joined" if len(here) == 1 else f"Send the {len(here)} segments that joined") in page
    form = [("csrf", csrf), ("action", "move"), ("to", "__none__"), *[("segment_ids", str(s)) for s in here]]
    assert client.post("/decide", content=urlencode(form), headers={"content-type": "application/x-www-form-urlencoded"},
                       follow_redirects=False).status_code == 303
    with store.sessions() as session:
        after = load_view(session, study.name)
    assert here and all(after.partition.get(s) is None for s in here) and clustered in after.members(key)
    assert "Send the" not in client.get(f"/themes/{key}").text


def test_forms_without_a_valid_csrf_token_are_refused(study):
    store = study.store
    app = create_app(store, study.name)
    keys, _, _ = keys_and_outliers(store, study.name)
    a, b = TestClient(app), TestClient(app)
    csrf_a = login(a, name="amira")
    login(b, name="ben")
    data = {"action": "reject", "theme_key": keys[0], "reason": "r"}
    before = n_decisions(store)
    assert a.post("/decide", data=data).status_code == 403                          # no token
    assert a.post("/decide", data={**data, "csrf": "forged"}).status_code == 403   # wrong token
    assert b.post("/decide", data={**data, "csrf": csrf_a}).status_code == 403     # someone else's token
    stranger = TestClient(app)
    assert stranger.post("/decide", data={**data, "csrf": csrf_a}).status_code == 403  # no cookies at all
    assert stranger.post("/login", data={"name": "x", "csrf": csrf_a}).status_code == 403
    assert n_decisions(store) == before
    forged = TestClient(app)
    forged.cookies.set("ts_nonce", a.cookies.get("ts_nonce"))
    forged.cookies.set("ts_coder", "YmVu.0000")  # "ben" with a made-up signature: not signed in
    assert forged.get("/themes", follow_redirects=False).status_code == 303
    for path in ("/themes", f"/themes/{keys[0]}", f"/themes/{keys[0]}/split", "/outliers", "/search?q=wait",
                 "/decisions", "/changes"):  # every page needing a coder sends a stranger to sign in, and back
        response = TestClient(app).get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login?" + urlencode({"next": path})
        assert "ts_nonce" in response.cookies and response.headers["X-Frame-Options"] == "DENY"
    assert a.post("/decide", data={**data, "csrf": csrf_a}, follow_redirects=False).status_code == 303
    assert n_decisions(store) == before + 1


def test_a_decision_that_fails_validation_changes_nothing(study):
    store = study.store
    client = TestClient(create_app(store, study.name))
    csrf = login(client, name="amira")
    keys, outliers, view = keys_and_outliers(store, study.name)
    member = view.members(keys[0])[0]
    bad = [
        {"action": "confirm", "theme_key": keys[0], "name": " ", "definition": "d"},
        {"action": "confirm", "theme_key": keys[0], "name": "n", "definition": "x" * 5001},  # none is fine
        {"action": "confirm", "theme_key": "theme-999999", "name": "n", "definition": "d"},
        {"action": "reject", "theme_key": keys[0], "reason": ""},
        {"action": "merge", "themes": keys[0]},
        {"action": "move", "segment_ids": "999999", "to": keys[0]},
        {"action": "move", "segment_ids": "abc", "to": keys[0]},
        {"action": "move", "segment_ids": str(member), "to": keys[0]},
        {"action": "move", "segment_ids": str(member), "to": ""},                 # the placeholder
        {"action": "add_theme", "name": "mine", "definition": "d"},
        {"action": "undo"},
        {"action": "frobnicate"},
        {"action": "split", "theme_key": keys[0], "k": "abc"},                    # a hand-made request: 500 before
        {"action": "split", "theme_key": keys[0], "k": "1"},
        {"action": "confirm", "theme_key": keys[0], "name": "x" * 500, "definition": "d"},
    ]
    before = n_decisions(store)
    with store.sessions() as session:
        partition = load_view(session, study.name).partition
    for data in bad:
        response = client.post("/decide", data={"csrf": csrf, **data})
        assert response.status_code == 400, (data, response.status_code)
        assert "Nothing was changed" in response.text
    assert n_decisions(store) == before
    with store.sessions() as session:
        assert load_view(session, study.name).partition == partition
        assert session.scalar(select(func.count()).select_from(Coder).where(Coder.name == "amira")) in (0, 1)


def test_every_decision_through_the_web_and_the_log_is_append_only(study):
    store = study.store
    client = TestClient(create_app(store, study.name))
    csrf = login(client, name="amira")
    keys, outliers, view = keys_and_outliers(store, study.name)

    def post(**data):
        response = client.post("/decide", data={"csrf": csrf, "back": "/themes", **data}, follow_redirects=False)
        assert response.status_code == 303, response.text
        return response

    post(action="confirm", theme_key=keys[0], name="Relationship", definition="The therapeutic alliance online")
    post(action="rename", theme_key=keys[0], name="Therapeutic relationship")
    post(action="reject", theme_key=keys[1], reason="too broad")
    post(action="merge", themes=[keys[2], keys[3]], into=keys[2], name="Waiting and steps")
    post(action="move", segment_ids=str(view.members(keys[4])[0]), to=keys[0])
    outliers = segments_outside(view, keys[:7], 3)  # the queue holds 1-10 segments, by the CPU's last bits
    post(action="add_segment", segment_ids=str(outliers[0]), to=keys[0])
    to_none = view.members(keys[6])[0]
    post(action="move", segment_ids=str(to_none), to="__none__")
    post(action="add_theme", name="Own theme", definition="Mine", segment_ids=[str(outliers[1]), str(outliers[2])])
    split = post(action="split", theme_key=keys[5], k="2", method="kmeans", names=["Part one", "Part two"])
    assert split.headers["location"].startswith("/themes")
    with store.sessions() as session:
        view = load_view(session, study.name)
    state = view.state
    assert state.themes[keys[0]].name == "Therapeutic relationship" and state.themes[keys[0]].status == "confirmed"
    renamed = view.row(keys[0])  # the coder's name wins; the machine's name and description stay beside it
    assert view.title(keys[0]) == "Therapeutic relationship" != renamed.label and renamed.description
    page = client.get(f"/themes/{keys[0]}").text
    assert "Therapeutic relationship" in page and f"suggested as \u201c{renamed.label}" in page.replace("&#34;", '"')
    assert state.themes[keys[1]].status == "rejected"
    assert state.themes[keys[3]].merged_into == keys[2] and view.title(keys[2]) == "Waiting and steps"
    assert outliers[0] in view.members(keys[0])
    assert view.partition[to_none] is None and to_none in view.outliers()
    own = next(t for t in state.themes.values() if t.origin == "own")
    assert sorted(view.members(own.key)) == sorted(outliers[1:3])
    parts = state.themes[keys[5]].split_into
    assert len(parts) == 2 and [view.title(p) for p in parts] == ["Part one", "Part two"]
    assert all(view.members(p) for p in parts)
    # undo: the form names the decision it takes back
    page = client.get("/themes").text
    assert "Undo my last" in page
    uid = page.split('name="undoes" value="')[1].split('"')[0]
    post(action="undo", undoes=uid)
    with store.sessions() as session:
        view = load_view(session, study.name)
    assert view.status(keys[5]) == "new"
    assert client.post("/decide", data={"csrf": csrf, "action": "undo", "undoes": uid}).status_code == 400
    for url in ("/themes", "/themes?status=confirmed", f"/themes/{keys[0]}", f"/themes/{keys[3]}", "/outliers",
                "/decisions", "/changes", f"/themes/{own.key}", "/search?q=waiting"):
        assert client.get(url).status_code == 200, url
    assert client.get("/themes/no-such-theme").status_code == 404
    # append-only: neither the ORM nor SQL may change or delete a decision
    with pytest.raises(AppendOnlyError):
        with store.transaction() as session:
            session.scalars(select(Decision)).first().action = "reject"
    with pytest.raises(AppendOnlyError):
        with store.transaction() as session:
            session.delete(session.scalars(select(Decision)).first())
    for statement in ("UPDATE decision SET coder = 'x'", "DELETE FROM decision"):
        with pytest.raises(Exception, match="append-only"):
            with store.engine.begin() as conn:
                conn.execute(text(statement))
    assert n_decisions(store) == 10


def test_team_mode_needs_a_token_and_coders_see_each_others_decisions(study, capsys):
    from flows.cli import main

    config = study.config_file()
    assert main(["coders", "add", "amira", "--study", study.name, "--config", str(config)]) == 0
    token_a = capsys.readouterr().out.split("\n\n  ")[1].split()[0]
    assert main(["coders", "add", "ben", "--study", study.name, "--config", str(config)]) == 0
    token_b = capsys.readouterr().out.split("\n\n  ")[1].split()[0]
    # shared coding (blind is the default in team mode: tests/test_blind_coding.py)
    assert main(["study", "set", "--coding", "shared", "--study", study.name, "--config", str(config)]) == 0
    store = study.store
    app = create_app(store, study.name, team=True)
    a, b, c = TestClient(app), TestClient(app), TestClient(app)
    page = c.get("/login").text
    csrf = CSRF.search(page).group(1)
    assert c.post("/login", data={"csrf": csrf, "token": "wrong", "next": "/themes"}).status_code == 400
    assert c.post("/login", data={"csrf": csrf, "name": "amira", "next": "/themes"}).status_code == 400
    csrf_a, csrf_b = login(a, token=token_a), login(b, token=token_b)
    keys, _, _ = keys_and_outliers(store, study.name)
    a.post("/decide", data={"csrf": csrf_a, "action": "confirm", "theme_key": keys[0], "name": "Cost",
                            "definition": "d"})
    b.post("/decide", data={"csrf": csrf_b, "action": "confirm", "theme_key": keys[0], "name": "Money",
                            "definition": "d"})
    with store.sessions() as session:
        coders = [d.coder for d in session.scalars(select(Decision))]
    assert coders == ["amira", "ben"]
    listing = a.get("/themes").text
    assert "amira: confirmed" in listing and "ben: confirmed" in listing and "coders differ" in listing
    log = a.get("/decisions").text
    assert "confirmed as &#39;Cost&#39;" in log and "confirmed as &#39;Money&#39;" in log


# ---------------------------------------------------------------------------------------------
# Two coders at once on SQLite
# ---------------------------------------------------------------------------------------------


def test_two_coders_deciding_at_once_lose_nothing(study):
    url = study.config["store"]["url"]
    keys, _, view = keys_and_outliers(study.store, study.name)
    servers = [create_app(Store(url), study.name), create_app(Store(url), study.name)]  # two processes' worth
    clients = [TestClient(s) for s in servers]
    tokens = [login(clients[0], name="amira"), login(clients[1], name="ben")]
    n = 12
    outliers = segments_outside(view, keys[:2], 2 * n)
    work = {0: [(s, keys[0]) for s in outliers[:n]], 1: [(s, keys[1]) for s in outliers[n:2 * n]]}
    statuses: dict[int, list[int]] = {0: [], 1: []}
    start = threading.Barrier(2)

    def coder(i: int) -> None:
        start.wait()
        for seg, key in work[i]:
            r = clients[i].post("/decide", data={"csrf": tokens[i], "action": "add_segment", "segment_ids": str(seg),
                                                 "to": key}, follow_redirects=False)
            statuses[i].append(r.status_code)

    threads = [threading.Thread(target=coder, args=(i,)) for i in (0, 1)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert statuses == {0: [303] * n, 1: [303] * n}
    store = study.store
    with store.sessions() as session:
        rows = list(session.scalars(select(Decision).order_by(Decision.id)))
        view = load_view(session, study.name)
    assert len(rows) == 2 * n and len({r.uid for r in rows}) == 2 * n
    assert {r.coder for r in rows} == {"amira", "ben"}
    assert all(s in view.members(keys[0]) for s in outliers[:n])
    assert all(s in view.members(keys[1]) for s in outliers[n:2 * n])
    assert view.state.ignored == []
    # the same theme merged two ways at the same moment: validation is serialised, one wins
    results: list[int] = []

    def merge(i: int, into: str) -> None:
        start.wait()
        r = clients[i].post("/decide", data={"csrf": tokens[i], "action": "merge", "themes": [keys[2], into],
                                             "into": into}, follow_redirects=False)
        results.append(r.status_code)

    threads = [threading.Thread(target=merge, args=(0, keys[3])), threading.Thread(target=merge, args=(1, keys[4]))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(results) == [303, 400]
    with store.sessions() as session:
        state = load_view(session, study.name).state
    assert state.themes[keys[2]].status == "merged" and state.ignored == []


# ---------------------------------------------------------------------------------------------
# The decision CSV, the codebook, apply
# ---------------------------------------------------------------------------------------------


def some_decisions(store: Store, name: str) -> list[str]:
    keys, outliers, view = keys_and_outliers(store, name)
    decide(store, name, "amira", {"action": "confirm", "theme_key": keys[0], "name": "Relationship, \"online\"",
                                  "definition": "Line one\nline two; with, commas"})
    decide(store, name, "ben", {"action": "reject", "theme_key": keys[1], "reason": "vague"})
    decide(store, name, "amira", {"action": "merge", "themes": [keys[2], keys[3]], "into": keys[2]})
    decide(store, name, "ben", {"action": "move", "segment_ids": [view.members(keys[4])[0]], "to": None})
    decide(store, name, "amira", {"action": "add_theme", "name": "Mine", "definition": "d",
                                  "segment_ids": outliers[:2]})
    decide(store, name, "ben", {"action": "split", "theme_key": keys[5], "k": 2, "names": ["A", "B"]})
    decide(store, name, "ben", {"action": "undo"})
    decide(store, name, "amira", {"action": "rename", "theme_key": keys[0], "name": "Therapeutic relationship"})
    return keys


def test_decision_csv_round_trip(study, review_template, example_study, tmp_path):
    some_decisions(study.store, study.name)
    with study.store.sessions() as session:
        exported = export_decisions(session, study.name)
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert len(rows) == 8 and rows[0]["name"] == 'Relationship, "online"' and rows[6]["action"] == "undo"
    fresh = private_study(review_template, example_study.name, example_study.config, tmp_path / "fresh")
    assert import_decisions(fresh.store, fresh.name, exported) == (8, 0)
    with fresh.store.sessions() as session:
        again = export_decisions(session, fresh.name)
        assert again == exported                                   # byte for byte
        a = load_view(session, fresh.name)
    with study.store.sessions() as session:
        b = load_view(session, study.name)
    assert a.partition == b.partition
    assert import_decisions(fresh.store, fresh.name, exported) == (0, 8)  # known uids are skipped
    # a spreadsheet or script may give only the plain columns
    keys = [r.key for r in a.rows()]
    script = ("coder,action,theme_key,name,definition,reason,themes,into,segment_ids,to\n"
              f"carol,confirm,{keys[6]},Stigma,People worry what others think,,,,,\n"
              f"carol,merge,,,,,{keys[7]};{keys[8]},{keys[7]},,\n")
    assert import_decisions(fresh.store, fresh.name, script) == (2, 0)
    # one bad row: nothing from the file goes in
    before = n_decisions(fresh.store)
    bad = ("coder,action,theme_key,name,definition\n"
           f"carol,confirm,{keys[9]},Fine,ok\n"
           f"carol,confirm,{keys[10]},,missing definition and name\n")
    with pytest.raises(DecisionError, match="row 2"):
        import_decisions(fresh.store, fresh.name, bad)
    with pytest.raises(DecisionError, match="row 1: .*theme-999999"):  # a file of one row names it too
        import_decisions(fresh.store, fresh.name, "coder,action,theme_key\ncarol,reject,theme-999999\n")
    with pytest.raises(DecisionError, match="columns"):
        import_decisions(fresh.store, fresh.name, "who,what\nx,y\n")
    assert n_decisions(fresh.store) == before


def test_cli_export_import_codebook_and_apply(study, tmp_path, capsys):
    from flows.cli import main

    config = str(study.config_file())
    empty = tmp_path / "empty.qdc"  # nothing confirmed yet: refused, not a schema-invalid <Codes/>
    assert main(["codebook", "--study", study.name, "--config", config, "--format", "qdc", "-o", str(empty)]) == 2
    assert "no confirmed theme" in capsys.readouterr().err and not empty.exists()
    some_decisions(study.store, study.name)
    out = tmp_path / "decisions.csv"
    assert main(["decisions", "export", str(out), "--study", study.name, "--config", config]) == 0
    assert len(list(csv.DictReader(io.StringIO(out.read_text())))) == 8
    assert "wrote 8 decisions" in capsys.readouterr().out
    assert main(["decisions", "import", str(out), "--study", study.name, "--config", config]) == 0
    assert "imported 0 decisions" in capsys.readouterr().out
    assert main(["codebook", "--study", study.name, "--config", config]) == 0
    printed = capsys.readouterr().out
    assert "Therapeutic relationship" in printed and "Mine" in printed
    assert main(["codebook", "--study", study.name, "--config", config, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["name"] for r in rows] == ["Therapeutic relationship", "Mine"]
    qdc = tmp_path / "codebook.qdc"
    assert main(["codebook", "--study", study.name, "--config", config, "--format", "qdc", "-o", str(qdc)]) == 0
    from pipeline.exchange.refi_qda import read_qdc
    from qda_schema import assert_valid_qdc

    assert_valid_qdc(qdc.read_bytes())
    assert [c.name for c in read_qdc(qdc)] == ["Therapeutic relationship", "Mine"]
    assert main(["codebook", "--study", study.name, "--config", config, "--coder", "ben"]) == 0
    assert "0 themes" in capsys.readouterr().out
    assert main(["apply", "--study", study.name, "--config", config]) == 0
    assert "confirmed themes" in capsys.readouterr().out


@pytest.mark.parametrize("rule", [REVIEW, CENTROID, WORDS], ids=["logistic", "centroid", "logistic-with-words"])
def test_apply_codes_every_segment_with_the_confirmed_codebook(study, rule):
    store = study.store
    keys, _, view = keys_and_outliers(store, study.name)
    with pytest.raises(DecisionError):
        apply_codebook(store, study.name, rule)
    for key, name in ((keys[0], "First"), (keys[2], "Third")):
        decide(store, study.name, "amira", {"action": "confirm", "theme_key": key, "name": name, "definition": "d"})
    result = apply_codebook(store, study.name, rule)
    assert result.themes == 2 and result.n_segments == len(view.base)
    own = [s for s in view.members(keys[0]) if "First" in result.assigned.get(s, ())]
    assert len(own) >= 0.75 * len(view.members(keys[0]))      # the examples mostly code as their theme
    assert {n for names in result.assigned.values() for n in names} <= {"First", "Third"}
    with store.sessions() as session:
        rows = session.execute(select(Coding.segment_id, Coding.code).join(Coder).where(Coder.name == APPLY_CODER)).all()
        assert session.scalars(select(Coder.kind).where(Coder.name == APPLY_CODER)).one() == "machine"
    stored: dict[int, set[str]] = {}
    for seg, code in rows:
        stored.setdefault(seg, set()).add(code)
    assert stored == {s: set(n) for s, n in result.assigned.items()}
    apply_codebook(store, study.name, rule)   # a second apply replaces the first
    with store.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Coding)) == len(rows)


def test_the_learner_takes_what_coders_said_against_a_theme(study):
    """Members a coder moved out of a confirmed theme are its negatives: the coder's word wins over the
    learner, so they are coded without it afterwards while its remaining members keep it (how negatives
    move the learner's boundary: tests/test_learner.py)."""
    store = study.store
    keys, _, view = keys_and_outliers(store, study.name)
    decide(store, study.name, "amira", {"action": "confirm", "theme_key": keys[0], "name": "First", "definition": "d"})
    decide(store, study.name, "amira", {"action": "confirm", "theme_key": keys[1], "name": "Second", "definition": "d"})
    before = apply_codebook(store, study.name, REVIEW)
    moved = view.members(keys[0])[-3:]
    decide(store, study.name, "amira", {"action": "move", "theme_key": keys[0], "segment_ids": moved, "to": None})
    after = apply_codebook(store, study.name, REVIEW)
    assert any("First" in before.assigned.get(s, ()) for s in moved)
    assert all("First" not in after.assigned.get(s, ()) for s in moved)
    kept = [s for s in view.members(keys[0]) if s not in moved]
    assert all("First" in after.assigned.get(s, ()) for s in kept)


def test_several_codes_per_segment_from_decisions_to_apply_and_export(study, tmp_path, capsys):
    """A coder gives a segment a second theme without taking it out of its first; the view, apply (with the
    coder's links marked and the learner's probabilities) and ``export codings`` carry both codes; taking
    a code off leaves the other."""
    from flows.cli import main

    store = study.store
    keys, _, view = keys_and_outliers(store, study.name)
    for key, name in ((keys[0], "First"), (keys[1], "Second")):
        decide(store, study.name, "amira", {"action": "confirm", "theme_key": key, "name": name, "definition": "d"})
    both = view.members(keys[0])[:2]
    decide(store, study.name, "amira", {"action": "code", "segment_ids": both, "to": keys[1]})
    with pytest.raises(DecisionError, match="already carry"):
        decide(store, study.name, "amira", {"action": "code", "segment_ids": both, "to": keys[1]})
    with store.sessions() as session:
        now = load_view(session, study.name)
    assert all(now.codes[s] == (keys[0], keys[1]) for s in both)
    assert set(both) <= set(now.members(keys[0])) & set(now.members(keys[1]))
    result = apply_codebook(store, study.name, REVIEW)
    assert all(set(result.assigned[s]) >= {"First", "Second"} for s in both)
    assert all(result.links[s]["Second"] == ("coder", None) for s in both)
    learned = [p for links in result.links.values() for via, p in links.values() if via == "learner"]
    assert learned and all(0.0 < p <= 1.0 for p in learned)
    out = tmp_path / "codings.csv"
    assert main(["export", "codings", "--study", study.name, "--config", str(study.config_file()), "-o", str(out)]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == sum(len(c) for c in result.assigned.values())
    with store.sessions() as session:
        seg = session.get(Segment, both[0])
        mine = {r["code"]: r for r in rows if (int(r["start"]), int(r["end"])) == (seg.start, seg.end)
                and r["source"] == seg.source.name}
    assert {"First", "Second"} <= set(mine) and mine["Second"]["via"] == "coder"
    assert {r["via"] for r in rows} >= {"coder", "learner"}
    assert all(r["probability"] for r in rows if r["via"] == "learner")
    decide(store, study.name, "amira", {"action": "uncode", "segment_ids": both[:1], "from": keys[0]})
    with store.sessions() as session:
        now = load_view(session, study.name)
    assert now.codes[both[0]] == (keys[1],) and both[0] not in now.members(keys[0])
    after = apply_codebook(store, study.name, REVIEW)
    assert "First" not in after.assigned[both[0]] and "Second" in after.assigned[both[0]]


def test_teach_queue_in_the_page_asks_what_teaches_most_and_records_each_answer(study, review_template, example_study,
                                                                                tmp_path):
    """Before any theme is confirmed the Teach page asks without proposing; after, each question proposes a
    confirmed theme; a yes adds that code, a no records the segment against it, a new answer makes a
    confirmed theme with the segment as its first example; answered and skipped segments are not asked
    again, and the page works as plain form posts."""
    from models.review import teach_questions

    store = study.store
    client = TestClient(create_app(store, study.name))
    csrf = login(client, name="amira")
    keys, _, _ = keys_and_outliers(store, study.name)
    first = teach_questions(store, study.name, REVIEW)
    assert first and all(q.proposed is None for q in first)
    assert "Nothing is confirmed yet" in client.get("/teach").text
    for key, name in ((keys[0], "First"), (keys[1], "Second")):
        decide(store, study.name, "amira", {"action": "confirm", "theme_key": key, "name": name, "definition": "d"})
    batch = teach_questions(store, study.name, REVIEW)
    assert len(batch) == 10 and len({q.segment for q in batch}) == 10
    assert {q.proposed for q in batch} <= {keys[0], keys[1]} and {q.reason for q in batch} >= {"far"}
    assert teach_questions(store, study.name, REVIEW) == batch   # the same log gives the same questions
    worded = teach_questions(store, study.name, WORDS)           # the learner reading words too
    assert len({q.segment for q in worded}) == 10
    page = client.get("/teach").text
    assert all(f'id="q-{q.segment}"' in page for q in batch) and "Tick every theme" in page
    yes, no, new = batch[:3]

    def answer(q, **fields):
        data = {"csrf": csrf, "action": "answer", "back": "/teach", "segment_ids": str(q.segment),
                "proposed": q.proposed or "", **fields}
        return client.post("/decide", data=data, follow_redirects=False)

    shown = [keys[0], keys[1]]
    assert answer(yes, answer="ticked", to=[yes.proposed], shown=shown).status_code == 303
    assert answer(no, answer="none", shown=shown).status_code == 303
    assert answer(new, answer="new", name="Parking").status_code == 303
    both = batch[4]
    assert answer(both, answer="ticked", to=shown, shown=shown).status_code == 303
    refused = answer(batch[5], answer="other")
    assert refused.status_code == 400 and "choose the themes" in refused.text
    with store.sessions() as session:
        now = load_view(session, study.name)
    assert yes.proposed in now.codes[yes.segment]
    assert no.segment in now.state.against[keys[0]] and no.segment in now.state.against[keys[1]]
    assert yes.segment in now.state.against[({keys[0], keys[1]} - {yes.proposed}).pop()]  # left unticked
    assert set(now.codes[both.segment]) >= set(shown)   # its place in an unconfirmed theme stays
    assert now.entries[-1].after["answer"] == "other" and now.entries[-4].after["answer"] == "yes"
    own = [t for t in now.state.confirmed() if t.name == "Parking"]
    assert len(own) == 1 and now.codes[new.segment][-1] == own[0].key
    assert [e.action for e in now.entries[-4:]] == ["answer"] * 4
    assert "Teach: yes" in client.get("/decisions").text
    after = teach_questions(store, study.name, REVIEW, skip=[batch[3].segment])
    assert not {yes.segment, no.segment, new.segment, batch[3].segment} & {q.segment for q in after}
    assert "Parking" in apply_codebook(store, study.name, REVIEW).assigned[new.segment]
    # the answers' log travels as CSV to another copy of the study: the same codes, the same unticked themes
    with store.sessions() as session:
        exported = export_decisions(session, study.name)
    assert f"{keys[0]};{keys[1]}" in exported and "['" not in exported
    fresh = private_study(review_template, example_study.name, example_study.config, tmp_path / "fresh")
    assert import_decisions(fresh.store, fresh.name, exported)[0] == len(now.entries)
    with fresh.store.sessions() as session:
        assert export_decisions(session, fresh.name) == exported
        copy = load_view(session, fresh.name)
    assert copy.codes == now.codes and copy.state.against == now.state.against


def test_second_pass_themes_compete_in_apply_only_once_rejected(study):
    """An unreviewed theme of the second pass over the left-out segments leaves its segments to the
    codebook, as the outlier queue they came from did; once rejected it competes like any rejected theme.
    Whether the second pass finds a theme in the example study hangs on the CPU's last bits (none on an AMD
    EPYC without AVX-512), so where it found none the run's two last-ranked themes are marked as its."""
    store = study.store
    _, _, view = keys_and_outliers(store, study.name)
    if not any(t.second_pass for t in view.themes.values()):
        with store.sessions() as session, session.begin():
            for theme in session.scalars(select(Theme).where(Theme.run_id == view.run.id)
                                         .order_by(Theme.rank.desc()).limit(2)):
                theme.second_pass = True
        _, _, view = keys_and_outliers(store, study.name)
    second = [k for k, t in view.themes.items() if t.second_pass]
    first = [k for k in view.themes if k not in second]
    assert second and first
    for key in first:
        decide(store, study.name, "amira", {"action": "confirm", "theme_key": key, "name": key, "definition": "d"})
    unreviewed = apply_codebook(store, study.name, CENTROID).assigned  # the centroid rule's competition
    for key in second:
        decide(store, study.name, "amira", {"action": "reject", "theme_key": key, "reason": "not a theme"})
    rejected = apply_codebook(store, study.name, CENTROID).assigned
    in_second = {s for k in second for s in view.members(k)}
    assert rejected.items() <= unreviewed.items()  # a rejected theme only takes codings away
    before, after = in_second & set(unreviewed), in_second & set(rejected)
    # Rejected, the themes' centroids keep their members from the codebook, except a member that lies nearer a
    # confirmed theme than its own centroid (how many hangs on the CPU's last bits: 0 on one machine, 1 on another).
    assert before and len(after) <= len(before) // 4


# ---------------------------------------------------------------------------------------------
# What the next run gets from the log
# ---------------------------------------------------------------------------------------------


def test_honour_inputs_keep_confirmed_drop_rejected_and_fix_moves(study):
    store = study.store
    keys, _, view = keys_and_outliers(store, study.name)
    assert honour_inputs(store, study.name) is None
    moved = view.members(keys[2])[0]
    decide(store, study.name, "amira", {"action": "confirm", "theme_key": keys[0], "name": "Kept", "definition": "d"})
    decide(store, study.name, "amira", {"action": "reject", "theme_key": keys[1], "reason": "no"})
    decide(store, study.name, "amira", {"action": "move", "segment_ids": [moved], "to": None})
    inputs = honour_inputs(store, study.name)
    assert list(inputs.kept) == [keys[0]] and inputs.kept[keys[0]][0] == "Kept"
    assert inputs.example_vectors[keys[0]].shape[0] == len(view.members(keys[0]))
    assert list(inputs.rejected_vectors) == [keys[1]]
    # the same run's segments, as the next run would see them
    with store.sessions() as session:
        rows = session.execute(select(Segment.id, Source.sha256, Segment.start, Segment.end, Segment.text, Segment.text_hash)
                               .join(Source).join(Membership, Membership.segment_id == Segment.id)
                               .where(Membership.run_id == view.run.id).order_by(Segment.id)).all()
        model = view.run.manifest["model"]["id"]

    class Seg:
        def __init__(self, sha, start, end, text):
            self.source_sha256, self.start, self.end, self.text = sha, start, end, text

    segs = [Seg(sha, start, end, text) for _, sha, start, end, text, _ in rows]
    cached = store.cached_vectors(model, [h for *_, h in rows])
    vectors = np.stack([cached[h] for *_, h in rows])
    fixed = inputs.fixed_for(segs)
    ids = [r[0] for r in rows]
    assert fixed[ids.index(moved)] == FIXED_NONE
    plan = plan_segments(fixed, inputs.assignments(vectors, segs, REVIEW), inputs.kept)
    taken = {ids[i] for i, k in plan.assigned.items() if k == keys[0]}
    assert taken >= set(view.members(keys[0]))
    assert not taken & set(view.members(keys[1]))   # the rejected theme's members count against it
    assert len(taken) < len(ids) / 2                  # it takes what the learner accepts, not the corpus
    assert ids.index(moved) in plan.excluded
    worded = plan_segments(fixed, inputs.assignments(vectors, segs, WORDS), inputs.kept)  # words beside vectors
    assert {ids[i] for i, k in worded.assigned.items() if k == keys[0]} >= set(view.members(keys[0]))
    # the rejected theme's own cluster would be dropped if it came back
    rejected = view.members(keys[1])
    centroid = vectors[[ids.index(s) for s in rejected]].mean(axis=0)
    kept, dropped = drop_rejected({"again": centroid}, inputs.rejected_centroids(), REVIEW["rejected_similarity"],
                                  inputs.rejected_names)
    assert kept == [] and dropped[0].rejected_key == keys[1]


NEW_TRANSCRIPT = """Interviewer: Could you tell me about your service?

P11: I manage a small Talking Therapies team on the coast. Our waiting list for step 2 was about sixteen weeks last winter, and the online programme is how we brought it down, because one practitioner can support far more people online than face to face.

Interviewer: What about people who cannot get online?

P11: That is the worry. A lot of our older clients have no broadband or only a pay-as-you-go phone, and some share a house with no private room to talk. We lend tablets and offer phone sessions instead, but digital exclusion is real here.

Interviewer: And the money side?

P11: The licence is paid per seat and the ICB renews it one year at a time, which makes planning staff almost impossible. I would rather have a three-year contract and a national price.

Interviewer: How do clients find the relationship with the practitioner online?

P11: Most say it feels personal once they have had the first video call. The alliance seems to hold up, provided the practitioner checks in regularly and does not leave people alone with the modules.
"""


@pytest.mark.skipif("honour" not in inspect.getsource(__import__("flows.suggest", fromlist=["x"])),
                    reason="flows/suggest.py does not call pipeline.learn.honour yet (the lead wires it)")
def test_second_suggest_honours_the_decisions(study, tmp_path_factory):
    from conftest import TRANSCRIPTS
    from flows.suggest import suggest_flow
    from models.decisions import run_theme_keys
    from models.records import Theme

    store = study.store
    keys, outliers, view = keys_and_outliers(store, study.name)
    moved = view.members(keys[2])[0]
    decide(store, study.name, "amira", {"action": "confirm", "theme_key": keys[0], "name": "Kept theme",
                                        "definition": "d"})
    decide(store, study.name, "amira", {"action": "reject", "theme_key": keys[1], "reason": "no"})
    decide(store, study.name, "amira", {"action": "move", "segment_ids": [moved], "to": None})
    # an own theme of two segments from the outlier queue: too few examples to say how common it is
    decide(store, study.name, "ben", {"action": "add_theme", "name": "Own", "definition": "d",
                                      "segment_ids": outliers[:2]})
    old_members = set(view.members(keys[0]))
    extra = tmp_path_factory.mktemp("new-transcripts")  # outside the workspace, which ingest skips
    (extra / "P11.txt").write_text(NEW_TRANSCRIPT)
    outcome = suggest_flow(paths=[str(TRANSCRIPTS), str(extra)], study=study.name, config=study.config)
    assert outcome["status"] == "completed"
    with store.sessions() as session:
        new = load_view(session, study.name)
        assert new.run.id == outcome["run_id"] != view.run.id
        new_keys = run_theme_keys(session, new.run.id)
        kept = [t for t, k in new_keys.items() if k == keys[0]]
        assert len(kept) == 1 and session.get(Theme, kept[0]).label in ("Kept theme", view.title(keys[0]))
        assert keys[1] not in new_keys.values()
    assert new.title(keys[0]) == "Kept theme"
    assert "P11" in {new.segments[s].case for s in new.base}
    assert len(new.members(keys[0])) <= 2 * len(old_members)  # gains what the learner accepts, not the rest
    assert old_members <= set(new.members(keys[0]))
    assert new.partition.get(moved) is None
    assert new.base.get(moved) is None  # the run itself left it out: it never joins a theme
    own = next(t.key for t in new.state.confirmed() if t.name == "Own")
    # two examples take about the share they hold among the labelled segments (their name not counted);
    # before, the F1 rule on three rows (its name one of them) or a fixed 0.5 took up to half the study
    share = 2 / (len(old_members) + len(view.members(keys[1])) + 1 + 2)
    assert set(outliers[:2]) <= set(new.members(own)) and len(new.members(own)) <= 2 + 2 * share * len(new.base)
    # the coders' own coding is what they decided: what the learner added to a kept theme is the machine's
    with store.sessions() as session:
        where = {s: (seg.source_id, seg.start) for s, seg in segments_by_id(session, list(new.base)).items()}
        amira, ben = (review_coding_rows(session, study.name, coder) for coder in ("amira", "ben"))
    spans = {(r["start"], r["end"]) for r in amira if r["code"] == "Kept theme"}
    assert len(spans) == len(old_members) and {start for _, start in map(where.get, old_members)} == {a for a, _ in spans}
    assert {start for _, start in map(where.get, outliers[:2])} == {r["start"] for r in ben}


def test_a_theme_too_small_for_its_stability_figure_says_so(study):
    """Under rank.stability.min_segments (8) clustered segments the theme page says 'weak', not a figure (issue 24)."""
    from web.views import load_view  # the rows the page shows

    client = TestClient(create_app(study.store, study.name))
    login(client, name="amira")
    with study.store.sessions() as session:
        rows = load_view(session, study.name).rows()
    weak = [r for r in rows if r.parts and r.stability_weak]
    firm = [r for r in rows if r.parts and not r.stability_weak]
    assert weak and firm  # the example study has both
    assert "stability weak (too few segments)" in client.get(f"/themes/{weak[0].key}").text
    page = client.get(f"/themes/{firm[0].key}").text
    assert f"stability {firm[0].parts['stability']:.2f}" in page and "stability weak" not in page


def test_cli_import_codebook_is_a_deductive_start(study, review_template, example_study, tmp_path, capsys):
    """A QDA tool's codebook becomes the study's: themes with no segment, hierarchy and colours kept; coders
    give examples and confirm; apply codes with them; the .qdc and .qdpx carry the tree and the colours."""
    from flows.cli import main
    from models.review import confirmed_codebook, imported_codes
    from pipeline.exchange.refi_qda import read_qdc, read_qdpx
    from qda_schema import assert_valid_qdc, assert_valid_qdpx

    config = str(study.config_file())
    book = tmp_path / "book.qdc"
    book.write_text("""<?xml version="1.0" encoding="utf-8"?>
<CodeBook xmlns="urn:QDA-XML:codebook:1.0" origin="MAXQDA 2022"><Codes>
  <Code guid="AAAAAAAA-0000-0000-0000-000000000001" name="Barriers" isCodable="false" color="#aa0000">
    <Description>What stops people getting help</Description>
    <Code guid="AAAAAAAA-0000-0000-0000-000000000002" name="Cost" isCodable="true" color="#00AA00"/>
  </Code>
  <Code guid="AAAAAAAA-0000-0000-0000-000000000003" name="Hope" isCodable="true"/>
</Codes></CodeBook>""", encoding="utf-8")
    capsys.readouterr()
    assert main(["import", "codebook", str(book), "--study", study.name, "--config", config]) == 0
    said = capsys.readouterr().out
    assert "3 of 3 codes added" in said and "1 of them categories, not codable in the file" in said
    assert main(["import", "codebook", str(book), "--study", study.name, "--config", config]) == 0
    assert "0 of 3 codes added" in capsys.readouterr().out and n_decisions(study.store) == 3
    with study.store.sessions() as session:
        codes = {t.name: t for t in imported_codes(session, study.name)}
    assert set(codes) == {"Barriers", "Cost", "Hope"}
    assert main(["codebook", "--study", study.name, "--config", config]) == 0
    assert "3 imported code(s) wait for examples" in capsys.readouterr().out
    assert codes["Cost"].parent == codes["Barriers"].key and codes["Barriers"].color == "#AA0000"
    assert not codes["Barriers"].codable and codes["Cost"].codable  # QualCoder's category, MAXQDA's folder
    assert codes["Barriers"].definition == "What stops people getting help"
    client = TestClient(create_app(study.store, study.name))
    login(client, "amira")
    page = client.get("/themes")
    assert page.status_code == 200 and "Barriers" in page.text
    assert client.get(f"/themes/{codes['Cost'].key}").status_code == 200
    assert "imported code" in client.get("/decisions").text
    # coders give examples and confirm: the imported codes join the confirmed codebook
    keys, _, view = keys_and_outliers(study.store, study.name)
    outliers = segments_outside(view, [], 6)
    for name, segs in (("Barriers", outliers[:3]), ("Cost", outliers[3:6])):
        decide(study.store, study.name, "amira", {"action": "code", "segment_ids": segs, "to": codes[name].key})
        decide(study.store, study.name, "amira", {"action": "confirm", "theme_key": codes[name].key, "name": name,
                                                  "definition": codes["Barriers"].definition if name == "Barriers"
                                                  else "Money"})
    # the confirmed codebook is in the .qdpx before any apply, as its own tree, with the imported colours
    out = tmp_path / "before-apply.qdpx"
    assert main(["export", "qdpx", "--study", study.name, "--config", config, "-o", str(out)]) == 0
    assert_valid_qdpx(out)
    project = read_qdpx(out)
    folder = next(c for c in project.codes if c.name == "Confirmed codebook")
    assert not folder.codable and [(c.name, c.color, c.codable) for c in folder.children] == [
        ("Barriers", "#AA0000", False)]  # a category goes back as one
    assert [(c.name, c.color) for c in folder.children[0].children] == [("Cost", "#00AA00")]
    assert any(c.name.startswith("Themesift run ") and not c.codable for c in project.codes)
    qdc = tmp_path / "out.qdc"
    assert main(["codebook", "--study", study.name, "--config", config, "--format", "qdc", "-o", str(qdc)]) == 0
    assert_valid_qdc(qdc.read_bytes())
    [barriers] = read_qdc(qdc)
    assert (barriers.name, barriers.color, [c.name for c in barriers.children]) == ("Barriers", "#AA0000", ["Cost"])
    assert not barriers.codable and barriers.children[0].codable
    # the decision log carries the imported codes to another copy of the study, colours and places kept
    with study.store.sessions() as session:
        exported = export_decisions(session, study.name)
    fresh = private_study(review_template, example_study.name, example_study.config, tmp_path / "fresh")
    assert import_decisions(fresh.store, fresh.name, exported)[0] == 7
    with fresh.store.sessions() as session:
        assert [(e.name, e.color, e.parent, e.codable) for e in confirmed_codebook(session, fresh.name)] == [
            ("Barriers", "#AA0000", None, False), ("Cost", "#00AA00", "Barriers", True)]
    # apply codes with the codebook the coders confirmed
    assert main(["apply", "--study", study.name, "--config", config]) == 0
    with study.store.sessions() as session:
        applied = {c for row in session.execute(select(Coding.code).join(Coder).where(Coder.name == APPLY_CODER))
                   for c in row}
    assert applied <= {"Barriers", "Cost"} and applied


def test_the_theme_list_points_to_teach_once_reviewed_themes_stop_becoming_codes_of_their_own(study):
    store = study.store
    client = TestClient(create_app(store, study.name, review={"teach_hint_window": 3, "teach_hint_share": 0.5}))
    csrf = login(client, name="amira")
    keys, _, _ = keys_and_outliers(store, study.name)

    def post(**data):
        assert client.post("/decide", data={"csrf": csrf, "back": "/themes", **data},
                           follow_redirects=False).status_code == 303

    post(action="confirm", theme_key=keys[0], name="Relationship")
    post(action="confirm", theme_key=keys[1], name="Waiting")
    post(action="reject", theme_key=keys[2], reason="mixed")
    assert 'id="teach-hint"' not in client.get("/themes").text  # 2 of the last 3 are codes of their own
    post(action="merge", themes=[keys[1], keys[3]], into=keys[1])
    page = client.get("/themes").text  # keys 1-3: one own code, one rejected, one merged into another
    assert 'id="teach-hint"' in page and "Of the last 3 themes reviewed, 1 became a code of its own" in page
    assert 'href="/teach"' in page.split('id="teach-hint"')[1]
