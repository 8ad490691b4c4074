"""Simulated review: a scripted coder who knows the human codes drives the real review loop.

This file holds the coder's rules, all of them:

1. The coder reviews the run's suggestions in rank order, the first ``k`` of them (``k`` = 5, 10, 20, 40;
   each larger budget continues the smaller one's log, so the curve is one review that goes on).
2. For a reviewed suggestion they look at its current members' human codes. When one code is carried
   by at least 60% of the members (purity >= 0.6, :data:`MIN_PURITY`) they **confirm** it, named after
   that code; otherwise they **reject** it ("mixed"). A second suggestion dominated by a code already
   confirmed is **merged** into the first (a name is used once in a codebook, so both code that code).
3. In a confirmed theme they **move** up to ``m`` (:data:`MOVES_PER_THEME`, 3) members that do not carry
   the theme's code out of the theme (to no theme): the quotes shown first, then members in stored order.
4. The decisions are written to a decision CSV and appended with ``themesift decisions import``; then
   ``themesift apply`` codes the whole corpus with the confirmed codebook (the machine's coding).
5. Scoring: on the segments the coder never touched (not moved, and not among the up to 4 quotes
   shown of a theme they reviewed), per human code Cohen's kappa and F1 of "machine gave this code" vs
   "a human gave this code"; reported as the mean over human codes (macro). Codes the coder never
   confirmed count with the machine never giving them (kappa 0, F1 0), so the curve shows how much
   agreement each decision buys.

Decisions counted: one per reviewed suggestion (confirm or reject) plus every move.
"""

from __future__ import annotations

import copy
import csv
import io
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import yaml

from pipeline import csvsafe
from bench.datasets import EXAMPLE, PRESETS, CsvSpec, _locate, read_labels

MIN_PURITY = 0.6
MOVES_PER_THEME = 3
QUOTES_SEEN = 4
CODER = "scripted-coder"
BUDGETS = (5, 10, 20, 40)
SEEDS = (42, 43, 44, 45, 46)  # UMAP seeds, as in the quality figures


def _prepare(preset: str, tmp: Path) -> tuple[list[str], dict, Any]:
    """Input paths, config overrides for ingest, and a function (session, study) -> {segment id: codes}."""
    if preset == "example-study":
        return [str(EXAMPLE / "transcripts")], {}, _example_human
    spec = PRESETS[preset]
    assert isinstance(spec, CsvSpec)
    rows, _ = read_labels(spec)
    data = tmp / "data.csv"
    with data.open("w", encoding="utf-8", newline="") as f:
        w = csvsafe.writer(f)
        w.writerow(["row", "text"])
        w.writerows([[i, r[spec.text_col]] for i, r in enumerate(rows)])
    labels = {str(i): frozenset(r["_labels"]) for i, r in enumerate(rows)}

    def human(session, study):
        from sqlalchemy import select

        from models.records import Segment, Source, Study
        q = (select(Segment.id, Segment.row_id).join(Source, Source.id == Segment.source_id)
             .join(Study, Study.id == Source.study_id).where(Study.name == study, Segment.clusterable))
        return {sid: labels[row] for sid, row in session.execute(q) if row in labels}

    return [str(data)], {"csv": {"text_column": "text", "row_id_column": "row"}}, human


def _example_human(session, study) -> dict[int, frozenset[str]]:
    """Both coders' excerpts located in the stored sources' text, mapped onto stored segments (union)."""
    from sqlalchemy import select

    from models.records import Segment, Source, Study
    from pipeline.compare.agreement import map_selections
    from pipeline.ingest.read import Ingester
    from pipeline.config import load_config

    docs = {d.name: d for d in Ingester.from_config(load_config()["ingest"]).collect([str(EXAMPLE / "transcripts")]).documents}
    selections = []
    with (EXAMPLE / "human_coding.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            doc = docs.get(row["source"])
            span = _locate(doc.text, row["text"].strip()) if doc else None
            if span:
                selections.append((row["source"], span[0], span[1], row["code"], row["coder"]))
    q = (select(Segment.id, Source.name, Segment.start, Segment.end).join(Source, Source.id == Segment.source_id)
         .join(Study, Study.id == Source.study_id).where(Study.name == study, Segment.clusterable))
    segs = [(sid, name, start, end) for sid, name, start, end in session.execute(q)]
    union: dict[int, set[str]] = {}
    for coding in map_selections(selections, segs).values():
        for unit, codes in coding.items():
            union.setdefault(unit, set()).update(codes)
    return {s: frozenset(union.get(s, ())) for s, *_ in segs}


def decide(view, human: Mapping[int, frozenset[str]], start: int, stop: int) -> tuple[list[dict], set[int]]:
    """The coder's decisions on suggestions ``start..stop-1`` (rank order) and the segments they touched."""
    rows = [r for r in view.rows() if r.rank is not None]
    rows.sort(key=lambda r: r.rank)
    decisions: list[dict] = []
    touched: set[int] = set()
    named = {r.name: r.key for r in view.rows() if r.status == "confirmed" and r.name}  # a name is used once
    for row in rows[start:stop]:
        members = view.members(row.key)
        touched.update(row.quote_ids[:QUOTES_SEEN])
        counts = Counter(c for s in members for c in human.get(s, ()))
        code, n = counts.most_common(1)[0] if counts else (None, 0)
        if code is not None and members and n / len(members) >= MIN_PURITY - 1e-9:
            if code in named:  # a second theme of the same code: merged into the first, as a coder would
                decisions.append({"action": "merge", "themes": f"{named[code]};{row.key}", "into": named[code]})
            else:
                named[code] = row.key
                decisions.append({"action": "confirm", "theme_key": row.key, "name": code,
                                  "definition": f"confirmed by the scripted coder: {n} of {len(members)} members "
                                                "carry it"})
            shown_first = [s for s in row.quote_ids if s in members] + [s for s in members if s not in row.quote_ids]
            misplaced = [s for s in shown_first if code not in human.get(s, ())][:MOVES_PER_THEME]
            for s in misplaced:
                decisions.append({"action": "move", "theme_key": row.key, "segment_ids": str(s), "to": ""})
                touched.add(s)
        else:
            decisions.append({"action": "reject", "theme_key": row.key,
                              "reason": f"mixed: best code covers {n} of {len(members)} members"})
    return decisions, touched


def _csv(decisions: list[dict]) -> str:
    from pipeline.exchange.decision_log import CSV_COLUMNS

    buf = io.StringIO()
    w = csvsafe.dict_writer(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    w.writeheader()
    for d in decisions:
        w.writerow({"coder": CODER, **d})
    return buf.getvalue()


def agreement_on(machine: Mapping[int, frozenset[str]], human: Mapping[int, frozenset[str]], units: list[int]) -> dict:
    """Mean Cohen's kappa and macro-F1 over the human codes, on ``units``."""
    from pipeline.compare.agreement import binary_table, cohen_kappa

    codes = sorted({c for u in units for c in human.get(u, ())})
    kappas, f1s = [], []
    for code in codes:
        t = binary_table(machine, human, units, code)
        kappas.append(cohen_kappa(t))
        denom = 2 * t.both + t.only_a + t.only_b
        f1s.append(2 * t.both / denom if denom else 0.0)
    return {"n_units": len(units), "n_codes": len(codes), "mean_kappa": sum(kappas) / len(kappas) if codes else None,
            "macro_f1": sum(f1s) / len(f1s) if codes else None,
            "per_code": {c: {"kappa": round(k, 4), "f1": round(f, 4)} for c, k, f in zip(codes, kappas, f1s)}}


def mean_kappa(machine: Mapping[int, frozenset[str]], human: Mapping[int, frozenset[str]], units: list[int]) -> float:
    """Cohen's kappa macro over the human codes carried by some of ``units`` (0 when none is).

    Why only those: where the machine never gives a code none of ``units`` carries, its kappa there is 0/0,
    and counting it 1.0, as ``compare`` reports a degenerate table, pays an arm for having touched every
    segment of a rare code; such a code is left out whatever the machine gave. A code carried there that
    the machine never gives counts 0."""
    return agreement_on(machine, human, units)["mean_kappa"] or 0.0


def review_once(preset: str, config: dict, budgets: tuple[int, ...], seed: int) -> dict:
    """One review of the run made with UMAP seed ``seed``, in a fresh store: its curve."""
    tmp = Path(tempfile.mkdtemp(prefix="themesift-bench-review-"))
    os.environ["PREFECT_HOME"] = str(tmp / "prefect")
    os.environ.pop("PREFECT_API_URL", None)
    import flows  # noqa: F401
    from flows import suggest
    from flows.commands import run as themesift
    from models.codings import stored_codings
    from models.store import Store
    from pipeline.learn.apply import APPLY_CODER
    from web.views import load_view

    paths, ingest_override, human_of = _prepare(preset, tmp)
    cfg = copy.deepcopy(config)
    cfg["cluster"]["seed"] = int(seed)
    cfg["store"]["workspace"] = str(tmp / "ws")
    cfg["store"]["url"] = f"sqlite:///{tmp / 'ws' / 'themesift.db'}"
    if ingest_override:
        cfg["ingest"]["csv"] = {**cfg["ingest"]["csv"], **ingest_override["csv"]}
    cfg_file = tmp / "config.yaml"
    cfg_file.write_text(yaml.safe_dump({"store": cfg["store"], "ingest": cfg["ingest"], "embed": cfg["embed"]}))
    study = "review-" + preset
    t0 = time.perf_counter()
    runner = getattr(suggest, "run_suggest", None)
    outcome = runner(paths, study, cfg, True) if runner else suggest.suggest_flow(paths=paths, study=study, config=cfg)
    if outcome["status"] != "completed":
        raise SystemExit(f"suggest failed: {outcome}")
    store = Store.from_config(cfg["store"])
    with store.sessions() as session:
        human = human_of(session, study)
        n_themes = len([r for r in load_view(session, study).rows() if r.rank is not None])
    points, touched, done, n_decisions = [], set(), 0, 0
    for k in budgets:
        with store.sessions() as session:
            view = load_view(session, study)
        decisions, seen = decide(view, human, done, k)
        touched |= seen
        done = k
        n_decisions += len(decisions)
        if decisions:
            csv_file = tmp / f"decisions-{k}.csv"
            csv_file.write_text(_csv(decisions), encoding="utf-8")
            if themesift(["decisions", "import", str(csv_file), "--study", study, "--config", str(cfg_file)]) != 0:
                raise SystemExit(f"decision import failed at k={k}")
        with store.sessions() as session:
            confirmed = [r for r in load_view(session, study).rows() if r.status == "confirmed"]
        if confirmed:
            if themesift(["apply", "--study", study, "--config", str(cfg_file)]) != 0:
                raise SystemExit(f"apply failed at k={k}")
            with store.sessions() as session:
                machine = stored_codings(session, study)[0].get(APPLY_CODER, {})
        else:
            machine = {}
        units = sorted(u for u in human if u not in touched)
        scores = agreement_on(machine, human, units)
        points.append({"k": k, "reviewed": min(k, n_themes), "decisions": n_decisions,
                       "confirmed": len(confirmed), "touched": len(touched), **scores})
        print(f"review {preset} seed {seed}: k={k} decisions={n_decisions} kappa={scores['mean_kappa']} macroF1={scores['macro_f1']}")
    return {"seed": int(seed), "n_segments": len(human), "n_themes_suggested": n_themes,
            "seconds": round(time.perf_counter() - t0, 1), "points": points}


def simulate(preset: str, config: dict, budgets: tuple[int, ...] = BUDGETS,
             seeds: tuple[int, ...] = SEEDS) -> dict:
    """The review once per UMAP seed (each on its own run and store); each point averaged over the seeds.

    One layout can move the curve a lot on a small corpus: on the example study, vectors that agree to
    cosine 0.9999999 (ONNX fp32 instead of PyTorch) gave kappa 0.21 instead of 0.37 after 40
    suggestions with one seed. The mean over several seeds is the figure to compare.
    """
    runs = [review_once(preset, config, budgets, seed) for seed in seeds]
    points = []
    for i, k in enumerate(budgets):
        at_k = [r["points"][i] for r in runs]
        point = {"k": k}
        for key in ("reviewed", "decisions", "confirmed", "touched", "n_units", "mean_kappa", "macro_f1"):
            values = [p[key] for p in at_k]
            point[key] = sum(values) / len(values)
            point[f"{key}_per_seed"] = values
        points.append(point)
    return {"kind": "review", "dataset": preset, "seeds": [int(s) for s in seeds],
            "n_segments": runs[0]["n_segments"],
            "n_themes_suggested": sum(r["n_themes_suggested"] for r in runs) / len(runs),
            "n_themes_per_seed": [r["n_themes_suggested"] for r in runs],
            "rules": {"min_purity": MIN_PURITY, "moves_per_theme": MOVES_PER_THEME, "quotes_seen": QUOTES_SEEN},
            "seconds": round(sum(r["seconds"] for r in runs), 1), "points": points,
            "embed_backend": config["embed"]["backend"], "apply_rule": config["review"]["learner"]}
