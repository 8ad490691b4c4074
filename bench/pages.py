"""How fast the review page answers on a stored study: each page read several times through the real app.

Why: a coder waits on every page, and what is instant on the example study (292 segments) may not be on a
survey of 10,000 answers (the Teach queue once took 31 s a batch there). Read only: pages are fetched, no
decision is posted, so a team's own store can be measured. The first Teach batch of a process includes the
study's neighbour search, which later batches reuse; it is reported apart.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

PAGES = ("/themes", "/themes/{first}", "/outliers", "/search?q={word}", "/teach", "/matrix", "/decisions", "/sources")


def page_speed(store_url: str, study: str, rounds: int = 3, word: str = "wait") -> dict[str, Any]:
    """Seconds per page (median and slowest of ``rounds`` reads after the first) and its size, on ``study``
    of the store at ``store_url``, signed in as a coder of a local-mode page."""
    from fastapi.testclient import TestClient

    from models.review import load_view
    from models.store import Store
    from web.app import create_app

    store = Store(store_url)
    with store.sessions() as session:
        view = load_view(session, study)
        keys = view.keys()
    client = TestClient(create_app(store, study))
    login = client.get("/login").text
    csrf = login.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    client.post("/login", data={"csrf": csrf, "name": "bench", "next": "/themes"})
    rows = []
    for template in PAGES:
        path = template.format(first=keys[0] if keys else "", word=word)
        times, size = [], 0
        for _ in range(rounds + 1):
            t0 = time.perf_counter()
            response = client.get(path)
            times.append(time.perf_counter() - t0)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {response.status_code}")
            size = len(response.content)
        rows.append({"page": path, "first_s": round(times[0], 3), "median_s": round(statistics.median(times[1:]), 3),
                     "slowest_s": round(max(times[1:]), 3), "kib": round(size / 1024)})
    return {"study": study, "segments": len(view.base), "themes": len(keys), "decisions": len(view.entries),
            "rounds": rounds, "rows": rows}


def print_table(result: dict) -> None:
    print(f"study '{result['study']}': {result['segments']} segments, {result['themes']} themes, "
          f"{result['decisions']} decisions; {result['rounds']} reads after the first")
    print(f"{'page':40s} {'first s':>8s} {'median s':>9s} {'slowest s':>10s} {'KiB':>7s}")
    for r in result["rows"]:
        print(f"{r['page']:40s} {r['first_s']:8.2f} {r['median_s']:9.2f} {r['slowest_s']:10.2f} {r['kib']:7d}")
