"""End to end in a real headless Chromium (Debian's package, driven by Playwright's Python API).

A coder opens the list, confirms a theme, rejects one, merges two, moves a quote; the server is restarted
and everything is still there, in a browser with JavaScript switched off too. Run with
THEMESIFT_DOCS_SCREENSHOTS=1 to refresh docs/review-list.png and docs/review-theme.png.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from review_helpers import keys_and_outliers

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DOCS = Path(__file__).resolve().parent.parent / "docs"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (apt-get install chromium)"),
]


class Server:
    """The review app under uvicorn on 127.0.0.1 and a free port, in a thread, as `themesift review` runs it."""

    def __init__(self, url: str, study: str, team: bool = False):
        import uvicorn

        from models.store import Store
        from web.app import create_app

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(create_app(Store(url), study, team=team), host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "review server did not start"
            time.sleep(0.05)
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def human_entry(store, study: str, members) -> tuple[str, str]:
    """The example codebook's entry (name, definition) most of ``members`` carry in amira's coding, as a
    coder who knows the material would name the theme."""
    from collections import Counter

    from sqlalchemy import select

    from conftest import EXAMPLE
    from models.records import Segment, Source
    from pipeline.compare.agreement import map_selections

    with store.sessions() as session:
        sources = {s.name: s.text for s in session.scalars(select(Source))}
        segments = session.execute(select(Segment.id, Source.name, Segment.start, Segment.end)
                                   .join(Segment.source).where(Segment.id.in_(list(members)))).all()
    selections = []
    with (EXAMPLE / "human_coding.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            start = sources.get(row["source"], "").find(row["text"])
            if start >= 0 and row["coder"] == "amira":
                selections.append((row["source"], start, start + len(row["text"]), row["code"], row["coder"]))
    coded = map_selections(selections, [tuple(s) for s in segments]).get("amira", {})
    code = Counter(c for codes in coded.values() for c in codes).most_common(1)[0][0]
    with (EXAMPLE / "codebook.csv").open(encoding="utf-8") as handle:
        row = next(r for r in csv.DictReader(handle) if r["code"] == code)
    return row["name"], row["definition"]


def sign_in(page, base: str, name: str) -> None:
    page.goto(base + "/themes")
    assert "/login" in page.url
    page.fill("#name", name)
    page.click("button:has-text('Start reviewing')")
    page.wait_for_url(base + "/themes")


def test_review_in_a_real_browser_survives_a_restart(study, tmp_path):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    url = study.config["store"]["url"]
    keys, _, view = keys_and_outliers(study.store, study.name)
    confirm, reject, merge_a, merge_b, source = keys[:5]
    target = keys[5]
    moved = sorted(view.members(source), key=lambda s: (-view.strength.get(s, 0.0), s))[0]
    name, definition = human_entry(study.store, study.name, view.members(confirm))
    merged_title = view.title(merge_a)
    shots = tmp_path / "shots"
    shots.mkdir()
    server = Server(url, study.name)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            sign_in(page, server.base, "amira")
            expect(page.locator("h1")).to_have_text("Candidate themes")
            assert page.locator(".theme-row").count() == len(keys)
            # keyboard comfort: j selects the next theme
            page.keyboard.press("j")
            expect(page.locator(".theme-row.selected")).to_have_count(1)

            # confirm the first theme with a name and a definition
            page.click(f".theme-row[data-key='{confirm}'] h2 a")
            page.fill("#c-name", name)
            page.fill("#c-def", definition)
            page.click("#confirm-form button[type=submit]")
            expect(page.locator(".flash")).to_have_text("Confirmed.")
            expect(page.locator("h1")).not_to_contain_text(name)  # on to the next undecided theme
            page.goto(f"{server.base}/themes/{confirm}")
            expect(page.locator("h1")).to_contain_text(name)
            page.locator(".quote details summary").first.click()
            expect(page.locator(".quote .transcript mark").first).to_be_visible()
            page.set_viewport_size({"width": 1280, "height": 1300})
            page.screenshot(path=str(shots / "review-theme.png"))
            page.set_viewport_size({"width": 1280, "height": 900})

            # reject the second
            page.goto(f"{server.base}/themes/{reject}")
            page.fill("#x-reason", "Describes the service rather than a view participants hold")
            page.click("#reject-form button[type=submit]")
            expect(page.locator(".flash")).to_have_text("Rejected.")

            # merge two from the list: tick both, keep the first
            page.goto(f"{server.base}/themes")
            page.check(f"#m-{merge_a}")
            page.check(f"#m-{merge_b}")
            page.check(f".theme-row[data-key='{merge_a}'] input[type=radio]")
            page.click("#merge-form button[type=submit]")
            expect(page.locator(".flash")).to_have_text("Merged.")
            expect(page.locator("h1")).to_contain_text(merged_title)

            # move a quote of another theme elsewhere
            page.goto(f"{server.base}/themes/{source}")
            item = page.locator(f"#seg-{moved}")
            item.locator("form.move select").select_option(target)
            item.locator("button:has-text('Move')").click()
            expect(page.locator(".flash")).to_have_text("Moved.")
            expect(page.locator(f"#seg-{moved}")).to_have_count(0)

            page.goto(f"{server.base}/themes")
            page.set_viewport_size({"width": 1280, "height": 1300})
            page.screenshot(path=str(shots / "review-list.png"))
            browser.close()
    finally:
        server.stop()

    # a fresh server on the same database, and a browser without JavaScript
    server = Server(url, study.name)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_context(java_script_enabled=False).new_page()
            sign_in(page, server.base, "ben")
            row = page.locator(f".theme-row[data-key='{confirm}']")
            expect(row.locator("h2")).to_contain_text(name)
            expect(row.locator(".badge.s-confirmed")).to_have_count(1)
            expect(page.locator(f".theme-row[data-key='{reject}'] .badge.s-rejected")).to_have_count(1)
            expect(page.locator(f".theme-row[data-key='{merge_b}'] .badge.s-merged")).to_have_count(1)
            expect(page.locator(f".theme-row[data-key='{merge_a}'] h2")).to_contain_text(merged_title)
            expect(row.locator(".decided")).to_contain_text("amira: confirmed")
            assert moved in keys_and_outliers(study.store, study.name)[2].members(target)
            # deciding works without JavaScript too
            page.goto(f"{server.base}/themes/{target}")
            page.fill("#x-reason", "not a theme")
            page.click("#reject-form button[type=submit]")
            expect(page.locator(".flash")).to_have_text("Rejected.")
            page.goto(f"{server.base}/decisions")
            expect(page.locator("table.log tbody tr")).to_have_count(5)
            browser.close()
    finally:
        server.stop()
    _, _, after = keys_and_outliers(study.store, study.name)
    assert after.partition.get(moved) is None  # its theme was then rejected by ben
    assert [e.coder for e in after.entries] == ["amira"] * 4 + ["ben"]
    if os.environ.get("THEMESIFT_DOCS_SCREENSHOTS"):
        DOCS.mkdir(exist_ok=True)
        for name in ("review-list.png", "review-theme.png"):
            shutil.copy(shots / name, DOCS / name)


def test_keys_leave_a_focused_link_its_enter_and_work_after_a_box_ticked_by_mouse(study):  # noqa: F811
    """On the list, after j has selected a row, Enter on a focused link follows that link (it opened the
    selected theme); a box ticked with the mouse keeps the focus, and c still confirms what is ticked; on a
    theme page s then Enter opens the split's preview."""
    from playwright.sync_api import sync_playwright

    store = study.store
    keys, _, _ = keys_and_outliers(store, study.name)
    server = Server(study.config["store"]["url"], study.name)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            sign_in(page, server.base, "amira")
            page.keyboard.press("j")
            page.focus("header a[href='/outliers']")
            page.keyboard.press("Enter")
            page.wait_for_url(server.base + "/outliers")
            page.goto(server.base + "/themes")
            page.check(f"#m-{keys[1]}")
            page.keyboard.press("c")
            page.wait_for_url("**/themes?msg=confirm.1")
            page.goto(server.base + f"/themes/{keys[2]}")  # s, then Enter: the split's preview
            page.keyboard.press("s")
            page.keyboard.press("Enter")
            page.wait_for_url(f"**/themes/{keys[2]}/split?k=2")
            browser.close()
        confirmed = keys_and_outliers(store, study.name)[2].state.confirmed()
        assert [t.key for t in confirmed] == [keys[1]]
    finally:
        server.stop()


def test_teach_questions_are_answered_by_key_without_a_page_reload(study):  # noqa: F811
    """Twenty answers from the keyboard: each is posted in the background, the next question shows at once
    and the next batch is fetched into the same page (a marker set in the page survives); without
    JavaScript the same questions work as plain forms."""
    from playwright.sync_api import expect, sync_playwright

    from models.review import decide

    store = study.store
    keys, _, _ = keys_and_outliers(store, study.name)
    for key, name in ((keys[0], "First"), (keys[1], "Second")):
        decide(store, study.name, "amira", {"action": "confirm", "theme_key": key, "name": name, "definition": "d"})
    server = Server(study.config["store"]["url"], study.name)

    def answers() -> list:
        return [e for e in keys_and_outliers(store, study.name)[2].entries if e.action == "answer"]

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            sign_in(page, server.base, "amira")
            page.goto(server.base + "/teach")
            expect(page.locator(".question.current")).to_have_count(1)
            page.evaluate("window.__same_page = 1")
            first = page.locator(".question.current").get_attribute("data-segment")
            page.keyboard.press("y")
            expect(page.locator(".question.current")).not_to_have_attribute("data-segment", first)
            page.keyboard.press("w")
            page.keyboard.type("Parking")
            page.keyboard.press("Enter")
            for n in range(18):  # a batch fetched while the machine is busy may take longer than 5 s
                expect(page.locator(".question.current")).to_have_count(1, timeout=60_000)
                page.keyboard.press("n" if n % 2 else "y")
            expect(page.locator(".question.current")).to_have_count(1, timeout=60_000)
            assert page.evaluate("window.__same_page") == 1 and page.url == server.base + "/teach"
            deadline = time.monotonic() + 30
            while len(answers()) < 20 and time.monotonic() < deadline:
                time.sleep(0.1)
            asked = []  # "Undo my last" follows the answers posted in the background, not the page as loaded
            page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
            last = answers()[-1].uid
            expect(page.locator("#undo-form input[name=undoes]")).to_have_value(last, timeout=30_000)
            page.keyboard.press("u")
            page.wait_for_url(server.base + "/teach?msg=undo")
            browser.close()
        undo = keys_and_outliers(store, study.name)[2].entries[-1]
        assert asked and asked[0].startswith("Undo: Teach") and undo.action == "undo"
        logged = answers()
        assert undo.after["undoes"] == logged[-1].uid
        assert len(logged) == 20 and len({e.after["segment_ids"][0] for e in logged}) == 20
        assert [e.after["answer"] for e in logged[:2]] == ["yes", "new"] and logged[1].after["name"] == "Parking"
        assert {e.after["answer"] for e in logged[2:]} == {"yes", "no"}

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_context(java_script_enabled=False).new_page()
            sign_in(page, server.base, "ben")
            page.goto(server.base + "/teach")
            asked = {page.locator(".question").nth(i).get_attribute("data-segment")
                     for i in range(page.locator(".question").count())}
            assert not asked & {str(e.after["segment_ids"][0]) for e in logged[:-1]}  # the last was undone
            first = page.locator(".question").first
            first.locator("input[type=checkbox]").nth(1).check()   # ticked: the proposed theme and another
            first.locator("button[value=ticked]").click()
            expect(page.locator(".flash")).to_have_text("Answer recorded.")
            browser.close()
        assert len(answers()) == 21 and answers()[-1].coder == "ben"
        assert answers()[-1].after["answer"] in ("yes", "other")
    finally:
        server.stop()
