"""Blind double coding: each coder's own codebook, the lead's comparison, settlements as decisions.

The fold and the comparison are pure (plain entries); the page runs on a private copy of the example
study (real SQLite, FastAPI's TestClient); the team settings also on PostgreSQL (``store_url``).
"""

from __future__ import annotations

import csv
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from models.decisions import Decision, set_team_setting, team_settings
from models.store import Store
from pipeline.compare.team import settlement, team_comparison
from pipeline.learn import codebook as cb
from review_helpers import CSRF, keys_and_outliers, login
from test_store import store_url  # noqa: F401  (SQLite and PostgreSQL)
from web.app import create_app


def entry(n: int, coder: str, action: str, key: str | None = None, **after) -> cb.Entry:
    return cb.Entry(uid=f"u{n}", action=action, coder=coder, theme_key=key, after=after)


BASE = {1: "a", 2: "a", 3: "a", 4: "b", 5: "b", 6: "b", 7: None}


def test_each_coder_folds_alone_and_a_settlement_is_the_teams_not_the_settlers():
    log = [entry(1, "amira", "confirm", "a", name="Access", definition="d"),
           entry(2, "ben", "reject", "a", reason="too broad"),
           entry(3, "amira", "confirm", "b", name="Cost", definition="d"),
           entry(4, "ben", "confirm", "b", name="cost ", definition="other words"),
           entry(5, "ben", "move", "b", segment_ids=[3], to="b"),
           entry(6, "amira", "settle", "a", kind="theme", status="confirmed", name="Access to care", took="amira")]
    own = cb.by_coder(log)
    assert sorted(own) == ["amira", "ben"]
    assert own["amira"].themes["a"].name == "Access"          # her settlement is not part of her own coding
    assert own["ben"].themes["a"].status == cb.REJECTED
    consensus = cb.fold(log)
    assert consensus.themes["a"].status == cb.CONFIRMED and consensus.themes["a"].name == "Access to care"
    assert consensus.themes["a"].decided_by["amira"] == "settle"

    result = team_comparison(log, BASE, {"a", "b"}, sorted(BASE), {s: f"P{s}" for s in BASE}, ["a", "b"],
                             min_positive=1)
    assert result.settled == 1 and [d.key for d in result.themes] == []  # "a" settled; "b": same name, case aside
    assert result.codings["ben"] == {3: frozenset({"b"}), 4: frozenset({"b"}), 5: frozenset({"b"}), 6: frozenset({"b"})}
    assert [(d.segment, dict(d.codes)) for d in result.segments] == [(3, {"amira": (), "ben": ("b",)})]
    assert dict(result.segments[0].taken) == {"amira": ("a",), "ben": ("b",)}  # "a" is confirmed now
    report = result.comparison.report_for(("amira", "ben"))
    table = report.get(("amira", "ben"), "b").table
    assert (table.both, table.only_a, table.only_b, table.neither) == (3, 0, 1, 3)
    assert [p for p in result.comparison.pairs()] == [("amira", "ben"), ("machine", "amira"), ("machine", "ben")]

    assert settlement(result.segments[0], "amira")["codes"] == ["a"]
    intent = settlement(result.segments[0], "ben")
    assert intent == {"action": "settle", "kind": "segment", "segment_ids": [3], "codes": ["b"], "took": "ben"}
    settled = cb.fold(log + [entry(7, "amira", "settle", "b", **{k: v for k, v in intent.items() if k != "action"})])
    assert settled.codes(BASE, {"a", "b"})[3] == ("b",)


def test_a_coders_coding_is_what_they_decided_not_what_a_later_run_added():
    """Amira confirmed theme "a" when it held segments 1 and 2; the next run's learner put 3 in it too, and
    ben placed 5 there by hand. Each coder's coding holds what their decisions listed or placed: 3 is the
    machine's until someone confirms "a" again; a confirm that listed no members keeps them all."""
    confirm = cb.Entry(uid="u1", action="confirm", coder="amira", theme_key="a", after={"name": "Access"},
                       before={"members": [1, 2]})
    log = [confirm, entry(2, "ben", "confirm", "a", name="Access"), entry(3, "ben", "move", "a", segment_ids=[5], to="a")]
    later = {1: "a", 2: "a", 3: "a", 4: "b", 5: "b", 6: "b", 7: None}
    result = team_comparison(log, later, {"a", "b"}, sorted(later), {}, ["a", "b"], min_positive=1)
    assert result.codings["amira"] == {1: frozenset({"a"}), 2: frozenset({"a"})}
    assert result.codings["ben"] == {1: frozenset({"a"}), 2: frozenset({"a"}), 3: frozenset({"a"}), 5: frozenset({"a"})}
    again = cb.Entry(uid="u4", action="confirm", coder="amira", theme_key="a", after={"name": "Access"},
                     before={"members": [1, 2, 3]})
    assert cb.by_coder(log + [again])["amira"].decided_codes(later)[3] == ("a",)


def test_a_theme_one_coder_did_not_decide_is_a_difference_and_settles_to_a_new_decision():
    log = [entry(1, "amira", "confirm", "a", name="Access", definition="d"),
           entry(2, "ben", "confirm", "b", name="Cost", definition="d")]
    result = team_comparison(log, BASE, {"a", "b"}, sorted(BASE), {}, ["a", "b"], min_positive=1)
    assert [(d.key, d.views["amira"].words(), d.views["ben"].words()) for d in result.themes] == [
        ("a", "confirmed as 'Access'", "not decided"), ("b", "not decided", "confirmed as 'Cost'")]
    intent = settlement(result.themes[0], None, {"status": "rejected", "reason": "a code of its own"})
    assert intent["status"] == "rejected" and intent["took"] is None
    e = cb.Entry("s1", "settle", "lead", "a", after={k: v for k, v in intent.items() if k not in ("action", "theme_key")})
    assert cb.validate(cb.fold(log), e, {"a", "b"}, set(BASE)) == []
    assert cb.fold(log + [e]).themes["a"].status == cb.REJECTED
    bad = cb.Entry("s2", "settle", "lead", "a", after={"kind": "theme", "status": "confirmed"})
    assert cb.validate(cb.fold(log), bad, {"a", "b"}, set(BASE)) == ["a name is required"]


def test_a_theme_two_coders_named_apart_carries_both_names_until_it_is_settled():
    log = [entry(1, "amira", "confirm", "a", name="Clinical outcomes", definition="d"),
           entry(2, "ben", "confirm", "a", name="Recovery outcomes", definition="d"),
           entry(3, "amira", "confirm", "b", name="Cost", definition="d"),
           entry(4, "ben", "confirm", "b", name="Cost", definition="d")]
    result = team_comparison(log, BASE, {"a", "b"}, sorted(BASE), {}, ["a", "b"], min_positive=1)
    assert result.names == {"a": "Clinical outcomes (amira) / Recovery outcomes (ben)"}  # not ben's, the last
    took = settlement(next(d for d in result.themes if d.key == "a"), "amira")
    settle = cb.Entry("s1", "settle", "amira", "a", after={k: v for k, v in took.items() if k not in ("action", "theme_key")})
    assert team_comparison(log + [settle], BASE, {"a", "b"}, sorted(BASE), {}, ["a", "b"], min_positive=1).names == {}


def test_a_settlement_undoes_a_merge_or_makes_one_and_is_undone_like_any_decision():
    log = [entry(1, "ben", "merge", "b", themes=["a", "b"], into="b")]
    keep = entry(2, "amira", "settle", "a", kind="theme", status="confirmed", name="Access", took="amira")
    state = cb.fold(log + [keep])
    assert state.themes["a"].status == cb.CONFIRMED and state.themes["a"].merged_into is None
    assert state.codes(BASE, {"a", "b"})[1] == ("a",)  # its segments are its own again
    merge = entry(3, "amira", "settle", "a", kind="theme", status="merged", into="b", took="ben")
    assert cb.fold(log[:0] + [merge]).codes(BASE, {"a", "b"})[1] == ("b",)
    undo = entry(4, "amira", "undo", "a", undoes="u2")
    assert cb.validate(state, undo, {"a", "b"}, set(BASE)) == []
    assert cb.fold(log + [keep, undo]).themes["a"].status == cb.MERGED
    wrong = entry(5, "amira", "settle", "a", kind="theme", status="merged", into="a")
    assert cb.validate(cb.fold([]), wrong, {"a", "b"}, set(BASE)) == ["cannot merge into 'a': choose an open theme"]


def test_a_split_is_not_taken_from_one_side_and_later_decisions_leave_the_blind_coding_alone():
    """"Take amira's" on a theme amira split gave the consensus an unsplit theme and said "Settled."; it is
    refused, saying how to settle it. What a coder decides after the comparison opened is the team's: their
    own coding, compared blind, is what they decided before."""
    from datetime import datetime, timedelta, timezone

    from pipeline.compare.team import ThemeDifference, ThemeView

    assert ThemeView(cb.NEW, "part 1").same(ThemeView("not decided", "part 1"))  # not a difference to settle
    assert not ThemeView(cb.CONFIRMED, "a").same(ThemeView("not decided", "a"))
    split = ThemeDifference("a", {"amira": ThemeView(cb.SPLIT_UP, "a"), "ben": ThemeView("not decided", "a")})
    with pytest.raises(cb.DecisionError, match="split this theme"):
        settlement(split, "amira")
    assert settlement(split, "ben")["status"] == cb.NEW
    opened = datetime(2026, 12, 8, 12, tzinfo=timezone.utc)
    at = {n: opened + timedelta(minutes=n - 3) for n in range(1, 5)}  # 1, 2 before it; 4 after
    log = [replace(entry(1, "amira", cb.CONFIRM, "a", name="Cost"), created_at=at[1]),
           replace(entry(2, "ben", cb.CONFIRM, "a", name="Cost"), created_at=at[2]),
           replace(entry(4, "ben", cb.CONFIRM, "b", name="Waiting"), created_at=at[4])]
    units = sorted(BASE)
    cases = {u: f"P{u}" for u in units}
    blind = team_comparison(log, BASE, {"a", "b"}, units, cases, ["a", "b"], min_positive=1, blind_until=opened)
    assert blind.codings["ben"] == blind.codings["amira"] and not blind.themes  # ben's later "Waiting" is the team's
    whole = team_comparison(log, BASE, {"a", "b"}, units, cases, ["a", "b"], min_positive=1)
    assert [d.key for d in whole.themes] == ["b"]


def test_team_settings_are_stored_on_sqlite_and_postgresql(store_url):  # noqa: F811
    store = Store(store_url)
    with store.transaction() as session:
        from models.store import _study

        _study(session, "s", create=True)
    with store.transaction() as session:
        assert team_settings(session, "s").blind(team=True) and not team_settings(session, "s").blind(team=False)
        set_team_setting(session, "s", "lead", "amira", "cli")
        set_team_setting(session, "s", "coding", "shared", "cli")
    with store.transaction() as session:
        settings = team_settings(session, "s")
        assert (settings.coding, settings.lead, settings.blind(True)) == ("shared", "amira", False)
        with pytest.raises(ValueError, match="blind or shared"):
            set_team_setting(session, "s", "coding", "secret")
        set_team_setting(session, "s", "coding", "blind")
        set_team_setting(session, "s", "opened_at", "2026-12-05T08:00:00+00:00", "amira")
    with store.sessions() as session:
        settings = team_settings(session, "s")
        assert settings.coding == "blind" and settings.opened_at.year == 2026 and not settings.blind(True)
    store.engine.dispose()


def tokens(study, capsys, *names: str, lead: str | None = None) -> dict[str, str]:
    from flows.cli import main

    config = str(study.config_file())
    out = {}
    for name in names:
        assert main(["coders", "add", name, "--study", study.name, "--config", config]
                    + (["--lead"] if name == lead else [])) == 0
        out[name] = capsys.readouterr().out.split("\n\n  ")[1].split()[0]
    return out


def test_blind_by_default_in_team_mode_until_the_lead_opens_the_comparison(study, capsys):
    from flows.cli import main

    token = tokens(study, capsys, "amira", "ben", lead="amira")
    store = study.store
    app = create_app(store, study.name, team=True)
    a, b = TestClient(app), TestClient(app)
    csrf_a, csrf_b = login(a, token=token["amira"]), login(b, token=token["ben"])
    keys, _, view = keys_and_outliers(store, study.name)
    assert a.post("/decide", data={"csrf": csrf_a, "action": "confirm", "theme_key": keys[0], "name": "Cost",
                                   "definition": "d"}).status_code == 200
    # ben decides blind: amira's confirm is not in his view, so he can reject and merge as if alone
    assert b.post("/decide", data={"csrf": csrf_b, "action": "reject", "theme_key": keys[0],
                                   "reason": "too broad"}).status_code == 200
    assert b.post("/decide", data={"csrf": csrf_b, "action": "confirm", "theme_key": keys[1], "name": "Waiting",
                                   "definition": "d"}).status_code == 200
    listing_b = b.get("/themes").text
    assert "amira" not in listing_b and "coders differ" not in listing_b
    assert "Cost" not in b.get(f"/themes/{keys[0]}").text
    assert "Waiting" not in a.get("/themes").text and "ben" not in a.get("/decisions").text
    assert "Only the study&#39;s lead, amira" in b.get("/compare").text
    assert b.post("/compare/open", data={"csrf": csrf_b}).status_code == 403
    assert a.post("/settle", data={"csrf": csrf_a, "kind": "theme", "ref": keys[0], "took": "amira"}).status_code == 403

    page = a.get("/compare").text
    assert "Open the comparison" in page and "Waiting" not in page
    capsys.readouterr()
    assert main(["codebook", "--study", study.name, "--config", str(study.config_file())]) == 0
    assert "note: 2 differences between amira, ben not settled yet" in capsys.readouterr().out
    assert a.post("/compare/open", data={"csrf": csrf_a}).status_code == 200
    page = a.get("/compare").text
    assert "amira vs ben" in page and "machine vs amira" in page and "machine vs ben" in page
    assert "confirmed as &#39;Cost&#39;" in page and "rejected (too broad)" in page
    assert "amira: confirm" in b.get("/themes").text  # open now: ben sees the team's decisions
    assert b.post("/settle", data={"csrf": csrf_b, "kind": "theme", "ref": keys[0], "took": "ben"}).status_code == 403
    for key in (keys[0], keys[1]):
        r = a.post("/settle", data={"csrf": csrf_a, "kind": "theme", "ref": key, "took": "amira" if key == keys[0] else "ben"})
        assert r.status_code == 200 and "Settled." in r.text
    r = a.post("/settle", data={"csrf": csrf_a, "kind": "theme", "ref": keys[0], "took": "ben"})
    assert r.status_code == 400 and "settled already" in r.text
    # ben, on a page from before the settlement, cannot undo the lead's settlement by deciding again
    r = b.post("/decide", data={"csrf": csrf_b, "action": "confirm", "theme_key": keys[0], "name": "Costs again",
                                "definition": "d"})
    assert r.status_code == 400 and "the lead (amira) settled theme" in r.text
    assert r.headers["cache-control"] == "no-store"  # Back shows a page as it is now
    page = a.get("/compare").text
    while 'name="kind" value="segment"' in page:  # every segment difference: take ben's
        seg = page.split('name="kind" value="segment">')[1].split('name="ref" value="')[1].split('"')[0]
        assert a.post("/settle", data={"csrf": csrf_a, "kind": "segment", "ref": seg, "took": "ben"}).status_code == 200
        page = a.get("/compare").text
    assert '<strong>0</strong> differences open' in page
    assert "coders differ" not in a.get("/themes").text  # settled: no longer marked
    with store.sessions() as session:
        settles = [(d.coder, d.payload["after"]["took"]) for d in session.scalars(select(Decision))
                   if d.action == "settle"]
    assert settles[:2] == [("amira", "amira"), ("amira", "ben")]
    config = str(study.config_file())
    capsys.readouterr()
    assert main(["codebook", "--study", study.name, "--config", config]) == 0
    out = capsys.readouterr().out
    assert "consensus of amira, ben" in out and "Cost  [" in out and "Waiting  [" in out
    assert main(["codebook", "--study", study.name, "--config", config, "--coder", "ben"]) == 0
    out = capsys.readouterr().out
    assert "Waiting  [" in out and "Cost" not in out  # ben's own coding stays as he made it
    exported = study.folder / "review.csv"
    assert main(["export", "codings", "--review", "--study", study.name, "--config", config, "-o", str(exported)]) == 0
    with exported.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    codes = {c: {r["code"] for r in rows if r["coder"] == c} for c in ("amira", "ben", "consensus")}
    assert codes == {"amira": {"Cost"}, "ben": {"Waiting"}, "consensus": {"Cost", "Waiting"}}
    # the .qdpx holds the same: each coder's own coding and the consensus, on the confirmed codebook
    from pipeline.exchange.refi_qda import read_qdpx

    qdpx = study.folder / "team.qdpx"
    assert main(["export", "qdpx", "--study", study.name, "--config", config, "-o", str(qdpx)]) == 0
    project = read_qdpx(qdpx)
    users = {u.guid: u.name for u in project.users}
    names = {c.guid: c.name for c in project.all_codes()}
    exported = {}
    for c in project.codings:
        exported.setdefault(users[c.user_guid], set()).add(names[c.code_guid])
    assert {k: exported[k] for k in ("amira", "ben", "consensus")} == codes
    book = next(c for c in project.codes if c.name == "Confirmed codebook")
    assert {c.name for c in book.children} == {"Cost", "Waiting"}  # each once: the review's codes, one tree
    # the consensus's matrix, as the page shows it, before any apply; a name nobody coded under is refused
    team_matrix = study.folder / "team-matrix.csv"
    assert main(["matrix", "--study", study.name, "--config", config, "--coder", "consensus", "--format", "csv",
                 "-o", str(team_matrix)]) == 0
    header = team_matrix.read_text(encoding="utf-8").splitlines()[0]
    assert "Cost" in header and "Waiting" in header
    assert main(["matrix", "--study", study.name, "--config", config, "--coder", "nobody"]) == 2
    # apply codes with the consensus, and the matrix shows it
    assert main(["apply", "--study", study.name, "--config", config]) == 0
    matrix = study.folder / "matrix.csv"
    assert main(["matrix", "--study", study.name, "--config", config, "--format", "csv", "-o", str(matrix)]) == 0
    header = matrix.read_text(encoding="utf-8").splitlines()[0]
    assert "Cost" in header and "Waiting" in header


def test_study_set_shared_shows_every_decision_and_local_mode_is_unchanged(study, capsys):
    from flows.cli import main

    token = tokens(study, capsys, "amira", "ben")
    config = str(study.config_file())
    assert main(["study", "set", "--study", study.name, "--config", config, "--lead", "nobody"]) == 2
    assert "add them first" in capsys.readouterr().err
    assert main(["study", "set", "--study", study.name, "--config", config, "--coding", "shared",
                 "--lead", "ben"]) == 0
    assert "team coding shared; lead ben; comparison not opened yet" in capsys.readouterr().out
    store = study.store
    keys, _, _ = keys_and_outliers(store, study.name)
    a = TestClient(create_app(store, study.name, team=True))
    csrf_a = login(a, token=token["amira"])
    a.post("/decide", data={"csrf": csrf_a, "action": "confirm", "theme_key": keys[0], "name": "Cost", "definition": "d"})
    b = TestClient(create_app(store, study.name, team=True))
    login(b, token=token["ben"])
    assert "amira: confirm" in b.get("/themes").text
    assert "vs" not in b.get("/compare").text  # one coder so far: nothing to compare yet
    local = TestClient(create_app(store, study.name))
    login(local, name="carol")
    assert "amira: confirm" in local.get("/themes").text
    page = local.get("/compare").text
    assert "Only 1 coder has decided so far" in page and CSRF.search(page)


def test_a_blind_log_exports_and_imports_again_checked_coder_by_coder(study, review_template, example_study, tmp_path):
    from flows.cli import main
    from models.review import decide, export_decisions
    from review_helpers import private_study

    store = study.store
    keys, _, _ = keys_and_outliers(store, study.name)
    decide(store, study.name, "amira", {"action": "merge", "themes": [keys[3], keys[2]], "into": keys[3]}, blind=True)
    decide(store, study.name, "ben", {"action": "rename", "theme_key": keys[2], "name": "Cost"}, blind=True)
    with pytest.raises(cb.DecisionError, match="merged"):  # seen together, ben's rename comes too late
        decide(store, study.name, "ben", {"action": "rename", "theme_key": keys[2], "name": "Money"})
    with store.sessions() as session:
        log = export_decisions(session, study.name)
    path = tmp_path / "log.csv"
    path.write_text(log, encoding="utf-8")
    copy = private_study(review_template, example_study.name, example_study.config, tmp_path / "copy")
    config = str(copy.config_file())
    assert main(["decisions", "import", str(path), "--study", copy.name, "--config", config]) == 1
    assert main(["decisions", "import", str(path), "--study", copy.name, "--config", config, "--blind"]) == 0
    with copy.store.sessions() as session:
        assert export_decisions(session, copy.name) == log


def test_the_consensus_matrix_before_anything_is_confirmed_says_why_it_is_empty(study, capsys):
    from flows.cli import main

    assert main(["matrix", "--study", study.name, "--config", str(study.config_file()), "--coder", "consensus"]) == 2
    assert "no theme is confirmed in the review yet" in capsys.readouterr().err
