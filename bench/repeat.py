"""Same input, same themes (issue 18, item 10): one CSV through the real ``themesift suggest`` twice, once
on a fresh store and once on a store whose embedding cache already holds the vectors of its first rows.

Each run is the command line itself (``python -m flows.cli suggest``, a process of its own) in a fresh
temporary workspace with its own Prefect home, so that no reduced (UMAP) space is shared between the two:
a difference anywhere (vectors, layout, clustering) shows in the themes. The comparison says how many
themes each run found, whether every segment sits with the same other segments (or in the outlier queue)
in both, whether names and order agree, and whether the vectors the two stores hold for the same texts are
the same to the bit.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
STUDY = "repeat"


def _env(workspace: Path) -> dict[str, str]:
    """The environment of a run in ``workspace``: its own store and its own Prefect home (no shared
    reduced spaces, no shared Prefect database)."""
    env = {**os.environ, "THEMESIFT_HOME": str(workspace), "PREFECT_HOME": str(workspace / "prefect")}
    env.pop("PREFECT_API_URL", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _suggest(workspace: Path, data: Path, text_col: str, study: str, config: Path | None, log: Path) -> float:
    """``themesift suggest DATA --study STUDY --text-col COL`` in ``workspace``; its seconds, output to ``log``."""
    cmd = [sys.executable, "-m", "flows.cli", "suggest", str(data), "--study", study, "--text-col", text_col]
    cmd += ["--config", str(config)] if config else []
    workspace.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(cmd, env=_env(workspace), cwd=workspace, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise SystemExit(f"bench repeat: {' '.join(cmd)} ended with {done.returncode}:\n{tail}")
    return seconds


def _first_rows(data: Path, n: int, out: Path) -> int:
    """The header and the first ``n`` rows of ``data`` (a CSV) copied to ``out`` as they are written there (a
    row may span lines; no cell rewritten, so the texts and their vectors stay the same); how many rows."""
    consumed: list[str] = []

    def lines(f):
        for line in f:
            consumed.append(line)
            yield line

    with data.open(encoding="utf-8", newline="") as f, out.open("w", encoding="utf-8", newline="") as g:
        reader = csv.reader(lines(f))
        written = -1  # the header first
        for _ in reader:
            g.write("".join(consumed))
            consumed.clear()
            written += 1
            if written == n:
                break
    return max(written, 0)


def _prime_by_embedding(workspace: Path, first: Path, text_col: str, config: Path | None) -> int:
    """The flow's embedding step alone on the segments of ``first``: their vectors cached in ``workspace``'s
    store (in the embedder's own batches, one process), nothing clustered; how many vectors are cached."""
    from flows.suggest import load_vectors
    from models.store import Store
    from pipeline.config import load_config, settings
    from pipeline.embed.encoder import Embedder
    from pipeline.ingest.read import Ingester
    from pipeline.ingest.segment import Segmenter

    cfg = load_config(config, {"ingest": {"csv": {"text_column": text_col}}, "embed": {"progress_min_texts": 10**9},
                               "store": {"url": f"sqlite:///{workspace / 'themesift.db'}"}})
    s = settings(cfg)
    embedder = Embedder.from_config(s.embed)
    documents = Ingester.from_config(s.ingest).collect([str(first)], []).documents
    segments = Segmenter.from_config(s.segment, embedder.count_tokens, embedder.max_tokens).transform(documents)
    texts = [seg.text for seg in segments if seg.clusterable]
    workspace.mkdir(parents=True, exist_ok=True)
    store = Store.from_config(s.store)
    return load_vectors(store, embedder, texts, s.embed.cache_chunk)[1]


def _run_of(workspace: Path) -> dict:
    """The study's latest run in ``workspace``: themes (rank, name, second pass, members) and the outlier
    queue by segment key (source sha256, start, end), each clustered text's hash, the manifest's timings."""
    from sqlalchemy import select

    from models.records import Membership, Segment, Source
    from models.store import Store

    store = Store(f"sqlite:///{workspace / 'themesift.db'}")
    with store.sessions() as session:
        run = store.latest_run(session, STUDY)
        themes = {t.id: (t.rank, t.label, t.second_pass) for t in run.themes}
        rows = session.execute(
            select(Source.sha256, Segment.start, Segment.end, Segment.text_hash, Membership.theme_id)
            .join(Segment, Membership.segment_id == Segment.id).join(Source, Segment.source_id == Source.id)
            .where(Membership.run_id == run.id)).all()
        manifest = dict(run.manifest)
    members: dict[int, set] = defaultdict(set)
    outliers, hashes = set(), {}
    for sha, start, end, text_hash, theme_id in rows:
        key = (sha, start, end)
        hashes[key] = text_hash
        (outliers if theme_id is None else members[theme_id]).add(key)
    ordered = sorted(themes, key=lambda t: themes[t][0])
    return {"themes": [(*themes[t], frozenset(members[t])) for t in ordered], "outliers": frozenset(outliers),
            "hashes": hashes, "manifest": manifest}


def _vectors(workspace: Path, hashes: list[str]) -> dict[str, bytes]:
    """The cached vectors (raw bytes) of ``hashes`` in ``workspace``'s store, whatever the model id (one
    model per bench run)."""
    from sqlalchemy import select

    from models.records import Embedding
    from models.store import Store

    store = Store(f"sqlite:///{workspace / 'themesift.db'}")
    wanted = set(hashes)
    with store.sessions() as session:
        return {h: v for h, v in session.execute(select(Embedding.text_hash, Embedding.vector)) if h in wanted}


def compare_runs(cold: dict, warm: dict, cold_vectors: dict[str, bytes], warm_vectors: dict[str, bytes]) -> dict:
    """What differs between two runs over the same segments: theme counts, groups, names and order, vectors."""
    from sklearn.metrics import adjusted_rand_score

    def groups(run: dict) -> dict:
        group = {key: run["outliers"] for key in run["outliers"]}
        for *_, members in run["themes"]:
            group.update({key: members for key in members})
        return group

    g_cold, g_warm = groups(cold), groups(warm)
    keys = sorted(set(g_cold) | set(g_warm))
    same_group = sum(g_cold.get(k) == g_warm.get(k) for k in keys)
    label = {}
    for run, name in ((cold, "cold"), (warm, "warm")):
        index = {k: -1 for k in run["outliers"]}
        for i, (*_, members) in enumerate(run["themes"]):
            index.update({k: i for k in members})
        label[name] = [index.get(k, -2) for k in keys]
    common = sorted(set(cold_vectors) & set(warm_vectors))
    differ = [h for h in common if cold_vectors[h] != warm_vectors[h]]
    max_abs = max((float(np.abs(np.frombuffer(cold_vectors[h], np.float32) - np.frombuffer(warm_vectors[h], np.float32)).max())
                   for h in differ), default=0.0)
    partition = ({m for *_, m in cold["themes"]} == {m for *_, m in warm["themes"]}
                 and cold["outliers"] == warm["outliers"])
    return {
        "n_themes": {"cold": len(cold["themes"]), "warm": len(warm["themes"])},
        "n_outliers": {"cold": len(cold["outliers"]), "warm": len(warm["outliers"])},
        "segments": len(keys),
        "same_segments": set(g_cold) == set(g_warm),
        "membership_identical": partition,
        "segments_with_same_group": same_group,
        "adjusted_rand_index": float(adjusted_rand_score(label["cold"], label["warm"])),
        "themes_identical": cold["themes"] == warm["themes"] and cold["outliers"] == warm["outliers"],
        "vectors_compared": len(common),
        "vectors_differing": len(differ),
        "vectors_max_abs_difference": max_abs,
    }


def repeat(data: Path, text_col: str, warm: int = 4096, config: Path | None = None, prime: str = "run",
           keep: Path | None = None) -> dict:
    """Cold run, then a run on a store primed with the first ``warm`` rows' vectors (``prime`` "run": a
    ``themesift suggest`` run on those rows alone, as study ``primer``; "embed": the flow's embedding step
    alone), each on the whole of ``data``; their themes compared (:func:`compare_runs`)."""
    data = Path(data).resolve()
    tmp = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="themesift-bench-repeat-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        cold_ws, warm_ws = tmp / "cold", tmp / "warm"
        print(f"bench repeat: cold run in {cold_ws}", file=sys.stderr, flush=True)
        cold_s = _suggest(cold_ws, data, text_col, STUDY, config, tmp / "cold.log")
        first = tmp / f"first{warm}.csv"
        n_first = _first_rows(data, warm, first)
        print(f"bench repeat: priming {warm_ws} with the first {n_first} rows ({prime})", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        if prime == "run":
            _suggest(warm_ws, first, text_col, "primer", config, tmp / "primer.log")
        else:
            _prime_by_embedding(warm_ws, first, text_col, config)
        prime_s = time.perf_counter() - t0
        primed = len(_vectors(warm_ws, list(_all_hashes(warm_ws))))
        print(f"bench repeat: warm run ({primed} vectors cached)", file=sys.stderr, flush=True)
        warm_s = _suggest(warm_ws, data, text_col, STUDY, config, tmp / "warm.log")
        cold_run, warm_run = _run_of(cold_ws), _run_of(warm_ws)
        hashes = sorted(set(cold_run["hashes"].values()) | set(warm_run["hashes"].values()))
        figures = compare_runs(cold_run, warm_run, _vectors(cold_ws, hashes), _vectors(warm_ws, hashes))
        runs = {}
        for name, run, seconds in (("cold", cold_run, cold_s), ("warm", warm_run, warm_s)):
            m = run["manifest"]
            runs[name] = {"seconds": round(seconds, 1), "n_themes": len(run["themes"]),
                          "embedding": m.get("embedding"), "timings_s": m.get("timings_s")}
        return {
            "kind": "repeat",
            "dataset": data.name + (f" (config {Path(config).name})" if config else ""),
            "description": (f"{data.name} ({_rows(data)} rows, column {text_col}) through `themesift suggest` "
                            f"({'--config ' + config.name if config else 'default configuration'}) twice, each a "
                            "process of its own in a fresh workspace with its own Prefect home: cold = empty "
                            f"store; warm = a store whose embedding cache first held the vectors of the first "
                            f"{n_first} rows ({'a suggest run on those rows alone' if prime == 'run' else 'the embedding step alone'}, "
                            f"{primed} vectors). Seconds are each command's wall clock, start-up included"),
            "config_file": ({"path": str(config), "text": Path(config).read_text(encoding="utf-8")} if config
                            else None),
            "warm_rows": n_first,
            "prime": prime,
            "primed_vectors": primed,
            "prime_seconds": round(prime_s, 1),
            "runs": runs,
            "comparison": figures,
            "load_average_at_end": list(os.getloadavg()),
        }
    finally:
        if keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


def _all_hashes(workspace: Path) -> list[str]:
    from sqlalchemy import select

    from models.records import Embedding
    from models.store import Store

    with Store(f"sqlite:///{workspace / 'themesift.db'}").sessions() as session:
        return list(session.scalars(select(Embedding.text_hash)))


def _rows(data: Path) -> int:
    with data.open(encoding="utf-8", newline="") as f:
        return sum(1 for _ in csv.reader(f)) - 1


def summary(result: dict) -> str:
    c = result["comparison"]
    return (f"{result['dataset']}: themes cold {c['n_themes']['cold']}, warm {c['n_themes']['warm']}; membership "
            f"{'identical' if c['membership_identical'] else 'differs'} ({c['segments_with_same_group']}/{c['segments']} "
            f"segments with the same group, ARI {c['adjusted_rand_index']:.4f}); names and order "
            f"{'identical' if c['themes_identical'] else 'differ'}; vectors differing {c['vectors_differing']}/"
            f"{c['vectors_compared']}; seconds cold {result['runs']['cold']['seconds']}, warm "
            f"{result['runs']['warm']['seconds']}")
