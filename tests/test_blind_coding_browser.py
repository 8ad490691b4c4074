"""Done-when of blind double coding, in a real headless Chromium: two coders code the example study blind
(the browser drives both), the lead opens the comparison, sees the coders' and the machine's agreement,
settles every difference there, and ``themesift codebook`` prints the consensus. Run with
THEMESIFT_DOCS_SCREENSHOTS=1 to refresh docs/review-compare.png."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from review_helpers import keys_and_outliers
from test_blind_coding import tokens
from test_review_browser import ARGS, CHROMIUM, DOCS, Server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (apt-get install chromium)"),
]


def sign_in_with(page, base: str, token: str) -> None:
    page.goto(base + "/themes")
    page.fill("#token", token)
    page.click("button:has-text('Start reviewing')")
    page.wait_for_url(base + "/themes")


def confirm(page, base: str, key: str, name: str) -> None:
    page.goto(f"{base}/themes/{key}")
    page.fill("#c-name", name)
    page.fill("#c-def", f"What participants say about {name.lower()}.")
    page.click("#confirm-form button[type=submit]")


def reject(page, base: str, key: str) -> None:
    page.goto(f"{base}/themes/{key}")
    page.fill("#x-reason", "not a view participants hold")
    page.click("#reject-form button[type=submit]")


def test_two_coders_code_blind_and_the_lead_settles_every_difference(study, capsys, tmp_path):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    from flows.cli import main

    token = tokens(study, capsys, "amira", "ben", lead="amira")
    keys, _, view = keys_and_outliers(study.store, study.name)
    moved = sorted(view.members(keys[0]), key=lambda s: (-view.strength.get(s, 0.0), s))[0]
    server = Server(study.config["store"]["url"], study.name, team=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            amira = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            ben = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            sign_in_with(amira, server.base, token["amira"])
            sign_in_with(ben, server.base, token["ben"])
            # amira: four themes confirmed, one rejected, a quote moved
            for key, name in zip(keys[:4], ("Access", "Waiting", "Cost", "Stigma")):
                confirm(amira, server.base, key, name)
                expect(amira.locator(".flash")).to_have_text("Confirmed.")
            reject(amira, server.base, keys[4])
            amira.goto(f"{server.base}/themes/{keys[0]}")
            item = amira.locator(f"#seg-{moved}")
            item.locator("form.move select").select_option(keys[1])
            item.locator("button:has-text('Move')").click()
            expect(amira.locator(".flash")).to_have_text("Moved.")
            # ben, blind: none of amira's decisions in his pages; he decides as if alone
            ben.goto(f"{server.base}/themes")
            expect(ben.locator(f".theme-row[data-key='{keys[0]}'] .badge.s-new")).to_have_count(1)
            expect(ben.locator("body")).not_to_contain_text("amira")
            confirm(ben, server.base, keys[0], "access")
            reject(ben, server.base, keys[1])
            confirm(ben, server.base, keys[2], "Money worries")
            confirm(ben, server.base, keys[3], "Stigma")
            confirm(ben, server.base, keys[4], "Family")
            ben.goto(f"{server.base}/compare")
            expect(ben.locator(".errors")).to_contain_text("Only the study's lead, amira")

            # the lead opens the comparison: agreement between the coders and of the machine with each
            amira.click("nav >> text=Compare coders")
            amira.click("#open-comparison")
            expect(amira.locator(".flash")).to_contain_text("Comparison opened")
            for pair in ("amira vs ben", "machine vs amira", "machine vs ben"):
                expect(amira.locator(f"table.agreement[data-pair='{pair}']")).to_have_count(1)
            expect(amira.locator("table.agreement[data-pair='amira vs ben'] .mean-kappa")).not_to_have_text("-")
            expect(amira.locator("#theme .difference")).to_have_count(3)  # waiting, cost's name, family
            amira.set_viewport_size({"width": 1280, "height": 1400})
            amira.screenshot(path=str(tmp_path / "review-compare.png"), full_page=False)
            # settle every difference: the themes, one as a new decision, then every segment
            waiting = amira.locator(f"#theme .difference[data-key='{keys[1]}']")
            waiting.locator("button:has-text(\"Take amira's\")").click()
            expect(amira.locator(".flash")).to_have_text("Settled.")
            cost = amira.locator(f"#theme .difference[data-key='{keys[2]}']")
            cost.locator("summary").click()
            cost.locator("input[name=name]").fill("Cost of treatment")
            cost.locator("textarea[name=definition]").fill("Money spent or lost to take part.")
            cost.locator("button:has-text('Settle')").click()
            expect(amira.locator(".flash")).to_have_text("Settled.")
            amira.locator(f"#theme .difference[data-key='{keys[4]}'] button:has-text(\"Take ben's\")").click()
            expect(amira.locator("#theme .difference")).to_have_count(0)
            for _ in range(200):
                buttons = amira.locator("#segments .difference button:has-text(\"Take amira's\")")
                if buttons.count() == 0:
                    break
                buttons.first.click()
                expect(amira.locator(".flash")).to_have_text("Settled.")
            expect(amira.locator("#open-count strong")).to_have_text("0")
            ben.goto(f"{server.base}/themes")
            expect(ben.locator(f".theme-row[data-key='{keys[2]}'] h2")).to_contain_text("Cost of treatment")
            browser.close()
    finally:
        server.stop()
    _, _, after = keys_and_outliers(study.store, study.name)
    assert moved in after.members(keys[1])  # amira's move, taken at the segment's settlement
    settles = [e for e in after.entries if e.action == "settle"]
    assert settles and {e.coder for e in settles} == {"amira"}
    config = str(study.config_file())
    capsys.readouterr()
    assert main(["codebook", "--study", study.name, "--config", config]) == 0
    out = capsys.readouterr().out
    assert f"consensus of amira, ben: {len(settles)} differences settled" in out
    for name in ("access", "Waiting", "Cost of treatment", "Stigma", "Family"):  # agreed up to case: the latest
        assert f"\n{name}  [" in out
    assert main(["codebook", "--study", study.name, "--config", config, "--coder", "ben"]) == 0
    assert "Money worries" in capsys.readouterr().out  # ben's own coding stays his
    if os.environ.get("THEMESIFT_DOCS_SCREENSHOTS"):
        shutil.copy(tmp_path / "review-compare.png", DOCS / "review-compare.png")
