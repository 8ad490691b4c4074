"""The transcript view and the Framework matrix in a real headless Chromium: jump from a quote to its place,
select text over two segments and code it, the same without JavaScript, a 100k-character transcript, and a
matrix cell to its quotes and on to the transcript. Run with THEMESIFT_DOCS_SCREENSHOTS=1 to refresh
docs/review-transcript.png and docs/review-matrix.png."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from review_helpers import keys_and_outliers
from test_review_browser import ARGS, CHROMIUM, DOCS, Server, sign_in
from test_review_speed_browser import OVERFLOW_JS
from test_transcript_matrix import long_source

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (apt-get install chromium)"),
]

IN_VIEW = """id => { const r = document.getElementById(id).getBoundingClientRect();
                     return r.top >= 0 && r.top < window.innerHeight; }"""


def test_transcript_view_jumps_to_a_quote_and_codes_a_selected_span(study, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    store = study.store
    keys, _, view = keys_and_outliers(store, study.name)
    long_id, long_ids = long_source(store, study.name)
    shots = tmp_path / "shots"
    shots.mkdir()
    server = Server(study.config["store"]["url"], study.name)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            sign_in(page, server.base, "amira")
            # from a theme's quote to its place in the whole transcript
            page.goto(f"{server.base}/themes/{keys[0]}")
            link = page.locator(".quote a.in-transcript").last
            target = link.get_attribute("href").split("#")[1]
            link.click()
            page.wait_for_url(f"**/sources/*#{target}")
            expect(page.locator(f"#{target}")).to_be_visible()
            assert page.evaluate(IN_VIEW, target), "the quote is not scrolled into view"
            assert page.evaluate("() => document.querySelector(':target').id") == target
            assert page.locator(f"#{target} .stripe").count() >= 1

            # select from the middle of one segment to the middle of the next: both are ticked and coded whole
            order = page.locator(".seg").evaluate_all("els => els.map(e => +e.dataset.seg)")
            first = next(i for i in range(len(order) - 1)
                         if not {order[i], order[i + 1]} & {int(target[4:])}
                         and all(keys[3] not in view.codes.get(s, ()) for s in order[i:i + 2]))
            a, b = page.locator(f"#seg-{order[first]}"), page.locator(f"#seg-{order[first + 1]}")
            a.scroll_into_view_if_needed()
            box_a, box_b = a.locator(".text").bounding_box(), b.locator(".text").bounding_box()
            page.mouse.move(box_a["x"] + box_a["width"] / 2, box_a["y"] + 4)
            page.mouse.down()
            page.mouse.move(box_b["x"] + 40, box_b["y"] + 4, steps=5)
            page.mouse.up()
            expect(page.locator("#code-status")).to_contain_text("2 segments overlap your selection")
            assert a.locator("input").is_checked() and b.locator("input").is_checked()
            assert page.locator(".seg input:checked").count() == 2
            c = page.locator(f"#seg-{order[first + 2]} input[type=checkbox]")  # ticked by hand after the selection:
            c.check()                                                            # it stays ticked
            assert c.is_checked() and page.locator(".seg input:checked").count() == 3
            c.uncheck()
            page.select_option("#code-to", keys[3])
            page.click("#code-form button[type=submit]")
            expect(page.locator(".flash")).to_have_text("Code added to 2 segments.")
            ids = [a.get_attribute("data-seg"), b.get_attribute("data-seg")]
            assert page.url.endswith(f"#seg-{ids[0]}")
            for sid in ids:
                expect(page.locator(f"#seg-{sid} .stripe[href='/themes/{keys[3]}']")).to_have_count(1)
            coded = keys_and_outliers(store, study.name)[2]
            assert all(keys[3] in coded.codes.get(int(s), ()) for s in ids)
            page.set_viewport_size({"width": 1280, "height": 1100})
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(shots / "review-transcript.png"))
            page.set_viewport_size({"width": 1280, "height": 900})

            # a 100k-character transcript: one page, every segment there, a jump to the last one works
            page.goto(f"{server.base}/sources/{long_id}#seg-{long_ids[-1]}")
            expect(page.locator(".seg")).to_have_count(len(long_ids))
            assert page.evaluate("() => document.getElementById('transcript-text').textContent.length") > 100_000
            assert page.evaluate(IN_VIEW, f"seg-{long_ids[-1]}")
            page.goto(f"{server.base}/sources/{long_id}#seg-{long_ids[len(long_ids) // 2]}")
            assert page.evaluate(IN_VIEW, f"seg-{long_ids[len(long_ids) // 2]}")

            # the matrix: a cell's count to its quotes, a quote to the transcript
            page.goto(f"{server.base}/matrix?themes=open")
            expect(page.locator("table.matrix")).to_be_visible()
            page.screenshot(path=str(shots / "review-matrix.png"), clip={"x": 0, "y": 0, "width": 1280, "height": 900})
            cell = page.locator("table.matrix a.n").first
            n = int(cell.text_content().split()[0])
            cell.click()
            expect(page.locator("li.segment")).to_have_count(n)
            quote = page.locator("li.segment a.in-transcript").first
            target = quote.get_attribute("href").split("#")[1]
            quote.click()
            page.wait_for_url(f"**#{target}")
            assert page.evaluate(IN_VIEW, target)

            # a phone: nothing scrolls sideways (the matrix scrolls inside its own box)
            cell_url = page.url.split("#")[0]
            page.set_viewport_size({"width": 390, "height": 844})
            for path in ("/sources", cell_url.removeprefix(server.base), "/matrix?themes=open",
                         f"/matrix/cell?case=x&theme={keys[0]}"):
                page.goto(server.base + path)
                found = page.evaluate(OVERFLOW_JS)
                assert found["scroll"] <= found["width"] and not found["cut"], (path, found)
            browser.close()

        # without JavaScript: tick a segment, choose the theme, code it
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_context(java_script_enabled=False).new_page()
            sign_in(page, server.base, "ben")
            seg = next(s for s in view.members(keys[0]) if keys[4] not in view.codes.get(s, ()))
            with store.sessions() as session:
                from models.records import Segment

                source = session.get(Segment, seg).source_id
            page.goto(f"{server.base}/sources/{source}")
            page.check(f"#seg-{seg} input[type=checkbox]")
            page.select_option("#code-to", keys[4])
            page.click("#code-form button[type=submit]")
            expect(page.locator(".flash")).to_have_text("Code added.")
            expect(page.locator(f"#seg-{seg} .stripe[href='/themes/{keys[4]}']")).to_have_count(1)
            browser.close()
    finally:
        server.stop()
    if os.environ.get("THEMESIFT_DOCS_SCREENSHOTS"):
        DOCS.mkdir(exist_ok=True)
        for name in ("review-transcript.png", "review-matrix.png"):
            shutil.copy(shots / name, DOCS / name)
