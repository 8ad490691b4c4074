"""Does QualCoder's own importer keep what Themesift's ``.qdpx`` export holds? (issue 22)

``python -m bench qualcoder --qualcoder-src DIR --python PY``: optional, not part of ``make test``: it needs
QualCoder's source (not on PyPI: a checkout of github.com/ccbogel/QualCoder, ``DIR`` its ``src/``) and a
separate Python environment ``PY`` with PyQt6, Pillow, PyMuPDF and qtawesome (see docs/compare.md).

1. The example study through the real commands (``flows.commands.run``) in a temporary workspace:
   ``suggest``, ``import codings`` (the two coders' CSV), two themes confirmed (``decisions import``; the
   first named like a coder's code, as happens), ``apply``, ``export qdpx``.
2. QualCoder's ``RefiImport`` reads that file into a fresh QualCoder project, headless, in ``PY``
   (``bench/qualcoder_import.py``, which says what of QualCoder runs and what is stood in for).
3. QualCoder's SQLite (``source``, ``code_name``, ``code_cat``, ``code_text``, ``coder_names``, ``cases``,
   ``case_text``) is compared with the ``.qdpx``'s XML, read here with ElementTree rather than Themesift's
   reader so that the file, not our reading of it, is the reference: every source and its text, user,
   code (name, place in the tree, description, colour), coding (source, span, code, user, selected text)
   and case.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from pathlib import Path

from bench.datasets import EXAMPLE

STUDY = "ipt"
CONFIRM = (  # (rank, name, definition): the first takes a coder's code name, which QualCoder must not merge
    (1, "covid_acceptance", "confirmed under a name one coder's code also has"),
    (2, "Waiting lists", "how online therapy shortens waits"),
)


def _themesift(*argv: str) -> None:
    from flows.commands import run

    if run(list(argv)) != 0:
        raise SystemExit(f"themesift: bench qualcoder: `themesift {' '.join(argv)}` failed (see above)")


def export_example(tmp: Path) -> Path:
    """The example study suggested, coded by its two coders, two themes confirmed and applied, exported."""
    import yaml

    os.environ["PREFECT_HOME"] = str(tmp / "prefect")
    os.environ.pop("PREFECT_API_URL", None)
    import flows  # noqa: F401  (Prefect's environment, before Prefect loads)
    from models.decisions import run_theme_keys
    from models.store import Store
    from pipeline.config import load_config

    store = {"workspace": str(tmp / "ws"), "url": f"sqlite:///{tmp / 'ws' / 'themesift.db'}"}
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump({"store": store}), encoding="utf-8")
    _themesift("suggest", str(EXAMPLE / "transcripts"), "--study", STUDY, "--config", str(cfg))
    _themesift("import", "codings", str(EXAMPLE / "human_coding.csv"), "--study", STUDY, "--config", str(cfg))
    suggestions = tmp / "suggestions.json"
    _themesift("export", "suggestions", "--study", STUDY, "--config", str(cfg), "--format", "json",
               "-o", str(suggestions))
    data = json.loads(suggestions.read_text(encoding="utf-8"))
    by_rank = {t["rank"]: t["theme_id"] for t in data["themes"]}
    with Store.from_config(load_config(str(cfg))["store"]).sessions() as session:
        keys = run_theme_keys(session, data["run_id"])
    decisions = tmp / "decisions.csv"
    from pipeline import csvsafe

    with decisions.open("w", encoding="utf-8", newline="") as f:
        w = csvsafe.writer(f)
        w.writerow(["coder", "action", "theme_key", "name", "definition"])
        w.writerows(["amira", "confirm", keys[by_rank[rank]], name, definition] for rank, name, definition in CONFIRM)
    _themesift("decisions", "import", str(decisions), "--study", STUDY, "--config", str(cfg))
    _themesift("apply", "--study", STUDY, "--config", str(cfg))
    out = tmp / "ipt.qdpx"
    _themesift("export", "qdpx", "--study", STUDY, "--config", str(cfg), "-o", str(out))
    return out


def read_export(path: Path) -> dict:
    """What the ``.qdpx`` holds, straight from its XML."""
    with zipfile.ZipFile(path) as zf:
        root = ET.fromstring(zf.read("project.qde"))
        ns = root.tag.partition("}")[0] + "}"
        users = {u.get("guid"): u.get("name") for u in root.iter(f"{ns}User")}
        codes = []

        def walk(el: ET.Element, parent: str | None) -> None:
            for c in el.findall(f"{ns}Code"):
                desc = c.find(f"{ns}Description")
                codes.append({"guid": c.get("guid"), "name": c.get("name"), "parent": parent,
                              "codable": c.get("isCodable", "true") != "false", "color": (c.get("color") or "").upper(),
                              "description": (desc.text or "") if desc is not None else ""})
                walk(c, c.get("name"))

        book = root.find(f"{ns}CodeBook/{ns}Codes")
        walk(book if book is not None else ET.Element("x"), None)
        name_of = {c["guid"]: c["name"] for c in codes}
        sources, codings = {}, []
        for s in root.iter(f"{ns}TextSource"):
            text = zf.read("sources/" + s.get("plainTextPath").removeprefix("internal://")).decode("utf-8")
            sources[s.get("name")] = text
            for sel in s.findall(f"{ns}PlainTextSelection"):
                start, end = int(sel.get("startPosition")), int(sel.get("endPosition"))
                for coding in sel.findall(f"{ns}Coding"):
                    for ref in coding.findall(f"{ns}CodeRef"):
                        codings.append((s.get("name"), start, end, name_of[ref.get("targetGUID")],
                                        users[coding.get("creatingUser")]))
        source_name = {s.get("guid"): s.get("name") for s in root.iter(f"{ns}TextSource")}
        cases = {c.get("name"): sorted(source_name[r.get("targetGUID")] for r in c.findall(f"{ns}SourceRef"))
                 for c in root.iter(f"{ns}Case")}
    return {"users": list(users.values()), "codes": codes, "sources": sources, "codings": codings, "cases": cases}


def read_qualcoder(db: Path) -> dict:
    """The same from QualCoder's project database."""
    con = sqlite3.connect(db)
    try:
        cats = {cid: (name, sup, memo) for cid, name, sup, memo in con.execute(
            "select catid, name, supercatid, memo from code_cat")}
        names = {cid: name for cid, name in con.execute("select cid, name from code_name")}
        codes = []
        for cid, name, catid, supercid, color, memo in con.execute(
                "select cid, name, catid, supercid, color, memo from code_name"):
            parent = names.get(supercid) if supercid is not None else (cats[catid][0] if catid in cats else None)
            codes.append({"name": name, "parent": parent, "codable": True, "color": (color or "").upper(),
                          "description": memo or ""})
        for catid, (name, sup, memo) in cats.items():
            codes.append({"name": name, "parent": cats[sup][0] if sup in cats else None, "codable": False,
                          "color": None, "description": memo or ""})
        sources = dict(con.execute("select name, fulltext from source"))
        codings, seltext_wrong = [], 0
        for src, pos0, pos1, code, owner, seltext, full in con.execute(
                "select s.name, t.pos0, t.pos1, n.name, t.owner, t.seltext, s.fulltext from code_text t "
                "left join source s on s.id = t.fid left join code_name n on n.cid = t.cid"):
            codings.append((src, pos0, pos1, code, owner))
            seltext_wrong += seltext != (full or "")[pos0:pos1]
        coders = [n for (n,) in con.execute("select name from coder_names")]
        cases = {name: [] for (name,) in con.execute("select name from cases")}
        for case, src in con.execute("select c.name, s.name from case_text t join cases c on c.caseid = t.caseid "
                                     "join source s on s.id = t.fid"):
            cases.setdefault(case, []).append(src)
    finally:
        con.close()
    return {"codes": codes, "sources": sources, "codings": codings, "coders": coders, "cases": cases,
            "seltext_wrong": seltext_wrong}


def compare(ours: dict, qc: dict, active_coder: str) -> dict:
    """Per kind of thing: how many the ``.qdpx`` holds, how many QualCoder has as they were, and what differs."""
    rows: dict[str, dict] = {}

    def row(what: str, total: int, kept: int, lost: list, note: str = "") -> None:
        rows[what] = {"in_qdpx": total, "kept": kept, "lost": lost[:10], "n_lost": total - kept, "note": note}

    row("sources (name and text)", len(ours["sources"]),
        sum(qc["sources"].get(n) == t for n, t in ours["sources"].items()),
        [n for n, t in ours["sources"].items() if qc["sources"].get(n) != t])
    row("users (QualCoder's coder names)", len(ours["users"]), sum(u in qc["coders"] for u in ours["users"]),
        [u for u in ours["users"] if u not in qc["coders"]],
        f"active coder: {active_coder!r} (the file's first user: {ours['users'][0]!r})" if ours["users"] else "")
    theirs = {(c["name"], c["codable"]): c for c in qc["codes"]}

    def same(c: dict, *fields: str) -> bool:
        t = theirs.get((c["name"], c["codable"]))
        return t is not None and all(t[f] == c[f] for f in fields)

    codable = [c for c in ours["codes"] if c["codable"]]
    folders = [c for c in ours["codes"] if not c["codable"]]
    row("codes (name, parent, description)", len(codable), sum(same(c, "parent", "description") for c in codable),
        [c["name"] for c in codable if not same(c, "parent", "description")])
    row("folders (non-codable codes -> categories)", len(folders),
        sum(same(c, "parent", "description") for c in folders),
        [c["name"] for c in folders if not same(c, "parent", "description")],
        "QualCoder's categories have no colour: the folders' grey is not kept")
    recoloured = [f"{c['name']}: {c['color']} -> {theirs[(c['name'], True)]['color']}" for c in codable
                  if (c["name"], True) in theirs and not same(c, "color")]
    row("code colours", len(codable), sum(same(c, "color") for c in codable), recoloured,
        "QualCoder's importer replaces a colour not among its own 120 by the nearest of them")
    ours_c, theirs_c = Counter(ours["codings"]), Counter(qc["codings"])
    row("codings (source, span, code, user)", sum(ours_c.values()), sum((ours_c & theirs_c).values()),
        [list(k) for k in (ours_c - theirs_c)],
        f"selected text stored by QualCoder differs from its text at the span: {qc['seltext_wrong']}")
    linked = sum(sorted(qc["cases"].get(n, [])) == s for n, s in ours["cases"].items())
    row("cases (name)", len(ours["cases"]), sum(n in qc["cases"] for n in ours["cases"]),
        [n for n in ours["cases"] if n not in qc["cases"]],
        f"case -> source links kept: {linked} of {len(ours['cases'])} (QualCoder's importer reads a named "
        "Case's name, description and variables, not its SourceRef)")
    extra = Counter(qc["codings"]) - ours_c
    return {"rows": rows, "codings_only_in_qualcoder": sum(extra.values()),
            "codes_only_in_qualcoder": sorted({c["name"] for c in qc["codes"]}
                                              - {c["name"] for c in ours["codes"]})}


def qualcoder_check(src: Path, python: str, commit: str | None = None) -> dict:
    """The whole check in a temporary folder; the result as a dict (``kind``: ``qualcoder-check``)."""
    tmp = Path(tempfile.mkdtemp(prefix="themesift-bench-qualcoder-"))
    qdpx = export_example(tmp)
    work = tmp / "qualcoder"
    work.mkdir()
    driver = Path(__file__).with_name("qualcoder_import.py")
    done = subprocess.run([python, str(driver), "--qualcoder-src", str(src), "--qdpx", str(qdpx), "--work", str(work)],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not (work / "result.json").exists():
        raise SystemExit(f"themesift: bench qualcoder: QualCoder's importer failed (exit {done.returncode}):\n"
                         + done.stderr[-3000:])
    imported = json.loads((work / "result.json").read_text(encoding="utf-8"))
    ours = read_export(qdpx)
    result = compare(ours, read_qualcoder(Path(imported["database"])), imported["active_coder"])
    head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True)
    return {"kind": "qualcoder-check", "dataset": "example-study", "qdpx": str(qdpx),
            "qualcoder": {"version": imported["qualcoder_version"], "database_version": imported["database_version"],
                          "source": str(src), "commit": commit or head.stdout.strip() or None,
                          "ai_stand_in": imported["ai_stand_in"],
                          "log": imported["log"].splitlines(), "messages": [m["title"] for m in imported["messages"]]},
            **result}


def print_table(result: dict) -> None:
    print(f"{'what':44s}{'in .qdpx':>10s}{'kept':>8s}{'lost':>6s}")
    for what, r in result["rows"].items():
        print(f"{what:44s}{r['in_qdpx']:>10d}{r['kept']:>8d}{r['n_lost']:>6d}")
        for lost in r["lost"]:
            print(f"    {lost}")
        if r["note"]:
            print(f"    {r['note']}")
    print(f"codings only in QualCoder: {result['codings_only_in_qualcoder']}; codes only in QualCoder: "
          f"{result['codes_only_in_qualcoder'] or 'none'}")


if __name__ == "__main__":
    sys.exit("run it as: python -m bench qualcoder --qualcoder-src DIR --python PY")
