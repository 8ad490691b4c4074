"""Speed and memory: embedding backends side by side, the whole flow cold and warm, BERTopic end to end,
and growth with corpus size.

Every comparison runs in one process (growth: one fresh process per size, for clean memory peaks) so
that a busy shared machine slows both sides alike; the embedding comparison also interleaves the two
backends chunk by chunk. Report ratios; absolute seconds depend on what else the machine was doing.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline import csvsafe
from bench.datasets import SHARED, CsvSpec, load_csv

COMMENTS = SHARED / "nhs-fft" / "comments.csv"
MIB = 2**20
#: Issue 17's targets for the whole flow, by ratio: a warm re-run at most this share of a cold run, and a
#: cold run at most this share of BERTopic's embedding and fitting, on the default path.
FLOW_TARGETS = {"warm / cold": 0.1, "Themesift cold / BERTopic embedding+fit": 0.5}


def nhs_comment_segments(config: dict, limit: int | None = None) -> list[str]:
    """Clusterable segments of all NHS FFT comments (every row, non-answers included)."""
    return load_csv(CsvSpec(str(COMMENTS), "feedback", "label"), config, "nhs-fft-all", limit).texts


def _embedder(config: dict, backend: str):
    from pipeline.embed.encoder import Embedder

    return Embedder.from_config({**config["embed"], "backend": backend, "progress_min_texts": 10**9})


# -- embedding: ONNX Runtime vs sentence-transformers ---------------------------------------------
def embed_speed(config: dict, limit: int | None = None, rounds: int = 8, st_batch_sizes: tuple[int, ...] = (16, 32),
                int8_fp32_layers: tuple[int, ...] = ()) -> dict:
    """Segments/s of both backends on the NHS FFT comments, interleaved in ``rounds`` chunks.

    Contenders: sentence-transformers at the configured ``embed.batch_size`` (the baseline) and at each of
    ``st_batch_sizes`` (so the ONNX gain is not inflated by a poor PyTorch batch size), and ONNX Runtime
    at ``embed.onnx.batch_size`` in fp32 and in int8 (one int8 contender per value of ``int8_fp32_layers``,
    default the configured ``embed.onnx.fp32_layers``). Each chunk is embedded by every contender, the
    order rotating from chunk to chunk; model loading and the ONNX export happen before timing starts.
    """
    from dataclasses import replace

    texts = nhs_comment_segments(config, limit)
    st = _embedder(config, "sentence-transformers")
    ox = _embedder(config, "onnx")
    contenders = {f"sentence-transformers, batch {st.batch_size} (configured)": st}
    for bs in st_batch_sizes:
        if bs != st.batch_size:
            contenders[f"sentence-transformers, batch {bs}"] = replace(st, batch_size=bs)
    onnx_names = [f"onnx fp32, batch {ox.onnx_batch_size}"]
    contenders[onnx_names[0]] = replace(ox, onnx_precision="fp32")
    for layers in int8_fp32_layers or (ox.onnx_int8.fp32_layers,):
        kept = f" (fp32 feed-forward down-projection in {layers} layers)" if layers else ""
        name = f"onnx int8{kept}, batch {ox.onnx_batch_size}"
        contenders[name] = replace(ox, onnx_precision="int8", onnx_int8=replace(ox.onnx_int8, fp32_layers=layers))
        onnx_names.append(name)
    for e in contenders.values():
        e.encode(texts[:32])  # load (and export) outside the timing
    names = list(contenders)
    st_names = [n for n in names if n not in onnx_names]
    baseline = names[0]
    chunks = [texts[i::rounds] for i in range(rounds)]  # every chunk has the same length mix
    seconds = {k: 0.0 for k in names}
    per_round: dict[str, list[float]] = {n: [] for n in onnx_names}
    first: dict[str, np.ndarray] = {}
    for r, chunk in enumerate(chunks):
        order = names[r % len(names):] + names[:r % len(names)]
        took = {}
        for name in order:
            t0 = time.perf_counter()
            vectors = contenders[name].encode(chunk)
            took[name] = time.perf_counter() - t0
            seconds[name] += took[name]
            if r == 0:
                first[name] = vectors
        for n in onnx_names:
            per_round[n].append(min(took[s] for s in st_names) / took[n])
    best_st = min(seconds[n] for n in st_names)
    onnx = {}
    for n in onnx_names:
        cosine = (first[baseline] * first[n]).sum(axis=1)
        onnx[n] = {"vs_best_sentence_transformers": best_st / seconds[n],
                   "round_ratio_median": float(np.median(per_round[n])), "round_ratio_min": float(min(per_round[n])),
                   "round_ratio_max": float(max(per_round[n])), "per_round": [round(x, 3) for x in per_round[n]],
                   "min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean())}
    return {
        "kind": "embed-speed",
        "description": (f"all {len(texts)} clusterable segments of the NHS FFT comments (every row), embedded by "
                        f"every contender in {rounds} interleaved rounds (rotating order); ONNX threads "
                        f"{ox.encoder.threads}, {ox.encoder.streams} batches at once, spinning "
                        f"{'on' if ox.onnx_allow_spinning else 'off'}; "
                        "sentence-transformers with torch's default threads; cosine is to the configured "
                        "sentence-transformers vectors of the first round's segments"),
        "rounds": rounds,
        "backends": {name: {"segments": len(texts), "seconds": round(s, 2), "per_second": len(texts) / s,
                            "ratio": seconds[baseline] / s} for name, s in seconds.items()},
        "onnx": onnx,
        "load_average_at_end": list(os.getloadavg()),
    }


# -- the whole flow, cold and warm, and BERTopic end to end ---------------------------------------
def _stage_windows(flow_run_id: str) -> dict[str, tuple[float, float]]:
    """Wall-clock (start, end) of each task of a flow run, from the Prefect API the run reported to."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])))
    windows: dict[str, tuple[float, float]] = {}
    for r in runs:
        if r.start_time is None or r.end_time is None:
            continue
        name = r.name.rsplit("-", 1)[0]
        start, end = r.start_time.timestamp(), r.end_time.timestamp()
        if name in windows:  # several embed batches: one window around them all
            start, end = min(start, windows[name][0]), max(end, windows[name][1])
        windows[name] = (start, end)
    return windows


def _run_flow(paths: list[str], study: str, config: dict, sampler) -> dict:
    from flows import suggest
    from models.store import Store

    t0, w0 = time.perf_counter(), time.time()
    runner = getattr(suggest, "run_suggest", None)
    outcome = runner(paths, study, config, True) if runner else suggest.suggest_flow(paths=paths, study=study, config=config)
    seconds = time.perf_counter() - t0
    w1 = time.time()
    if outcome["status"] != "completed":
        raise SystemExit(f"flow run failed: {outcome}")
    store = Store.from_config(config["store"])
    with store.sessions() as session:
        manifest = dict(store.latest_run(session, study).manifest)
    timings = manifest.get("timings_s", {})
    try:
        windows = _stage_windows(manifest["prefect_flow_run_id"])
    except Exception as exc:  # noqa: BLE001  (memory per stage is a bonus; the timings come from the manifest)
        print(f"no per-stage memory: {exc}", file=sys.stderr)
        windows = {}
    stages = {}
    for name, secs in timings.items():
        window = windows.get(name)
        if name == "load-vectors" and "embed" in windows and "reduce" in windows:
            window = (windows["embed"][1], windows["reduce"][0])
        peak = sampler.peak_wall(*window) if window else float("nan")
        stages[name] = {"seconds": float(secs), "peak_mib": peak / MIB if window else float("nan")}
    stages["other (store, Prefect, locks)"] = {"seconds": seconds - sum(timings.values()),
                                               "peak_mib": sampler.peak_wall(w0, w1) / MIB}
    return {"seconds": seconds, "peak_mib": sampler.peak_wall(w0, w1) / MIB, "stages": stages,
            "embedding": manifest.get("embedding"), "n_themes": None}


def flow_speed(config: dict, limit: int | None = None, peer: bool = True, rounds: int = 3) -> dict:
    """Cold run, BERTopic (its own embedding + fit), warm run with a changed clustering setting; ``rounds``
    times, each cold run on an empty store with no cached reduced space. The ratios are the medians over
    the rounds (a warm run takes a few seconds, so one round moves its ratio by +-0.01); the stage table
    is the round with the median warm / cold ratio."""
    tmp = Path(tempfile.mkdtemp(prefix="themesift-bench-flow-"))
    os.environ["PREFECT_HOME"] = str(tmp / "prefect")  # a private Prefect database: no locks shared with others
    os.environ.pop("PREFECT_API_URL", None)
    import flows  # noqa: F401  (Prefect settings before Prefect is imported)
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    from bench.machine import RssSampler

    rows = [r for r in csv.DictReader(COMMENTS.open(encoding="utf-8", newline="")) if r["feedback"].strip()]
    rows = rows[:limit] if limit else rows
    data = tmp / "comments.csv"
    with data.open("w", encoding="utf-8", newline="") as f:
        w = csvsafe.writer(f)
        w.writerow(["row", "feedback"])
        w.writerows([[r["row_index"], r["feedback"]] for r in rows])
    warmup = None
    per_round: list[dict[str, dict]] = []
    with RssSampler(0.1) as sampler:
        for r in range(rounds):
            cfg = copy.deepcopy(config)
            cfg["store"]["workspace"] = str(tmp / f"ws-{r}")
            cfg["store"]["url"] = f"sqlite:///{tmp / f'ws-{r}' / 'themesift.db'}"
            cfg["ingest"]["csv"] = {**cfg["ingest"]["csv"], "text_column": "feedback", "row_id_column": "row"}
            warm_cfg = copy.deepcopy(cfg)
            hdb = warm_cfg["cluster"]["hdbscan"]
            ms = hdb["min_samples"]
            hdb["min_samples"] = {**ms, "max": int(ms["max"]) + 5} if isinstance(ms, dict) else int(ms) + 5
            if warmup is None:
                warmup = _warm_up(cfg)
            for cached in Path(PREFECT_LOCAL_STORAGE_PATH.value()).expanduser().glob("reduce-*"):
                cached.unlink()  # cold: no reduced space from an earlier round
            runs: dict[str, dict] = {"themesift cold": _run_flow([str(data)], "bench", cfg, sampler)}
            if peer:
                runs["bertopic"] = _bertopic_end_to_end([r["feedback"] for r in rows], cfg, sampler)
            runs["themesift warm"] = _run_flow([str(data)], "bench", warm_cfg, sampler)
            per_round.append(runs)
    warm_key, peer_key = "warm / cold", "Themesift cold / BERTopic embedding+fit"
    round_ratios = []
    for runs in per_round:
        ratio = {warm_key: runs["themesift warm"]["seconds"] / runs["themesift cold"]["seconds"]}
        if peer:
            ratio[peer_key] = runs["themesift cold"]["seconds"] / runs["bertopic"]["seconds"]
        round_ratios.append(ratio)
    ratios = {k: round(float(np.median([x[k] for x in round_ratios])), 3) for k in round_ratios[0]}
    middle = int(np.argsort([x[warm_key] for x in round_ratios])[len(round_ratios) // 2])
    runs = per_round[middle]
    return {
        "kind": "flow-speed",
        "description": (f"{rounds} rounds, medians reported; each round: {len(rows)} NHS FFT comments (every non-empty "
                        "row) as one CSV through the real suggest flow "
                        f"(Prefect, SQLite store), embed.backend {config['embed']['backend']} "
                        f"(onnx precision {config['embed']['onnx']['precision']}, fp32_layers {config['embed']['onnx']['fp32_layers']}); cold = empty store, no cached reduced space; "
                        "warm = same study again with cluster.hdbscan.min_samples changed (embeddings cached, "
                        "segments reused); BERTopic = BERTopic() with the same seeded UMAP, embedding the same "
                        "comments itself with the same local model through sentence-transformers, then fitting. "
                        "Themesift clusters only segments of at least segment.min_words words; BERTopic takes every "
                        "comment. Peak MiB = largest resident memory of this process sampled in the stage"),
        "runs": runs,
        "ratios": ratios,
        "rounds": [{k: round(v, 3) for k, v in x.items()} for x in round_ratios],
        "table_round": middle + 1,
        "warm_up_seconds": warmup,
        "load_average_at_end": list(os.getloadavg()),
    }


def _unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _compile_themesift(config: dict, dim: int = 384) -> None:
    """numba compiles UMAP's and HDBSCAN's code on first use in each process (seconds): run Themesift's
    clusterer and its stability resamples once on random points, so no timed stage pays for it."""
    from pipeline.themes.cluster import ThemeClusterer

    clusterer = ThemeClusterer.from_config(config["cluster"], 400).fit(_unit_rows(np.random.default_rng(0), 400, dim))
    st = config["rank"]["stability"]
    clusterer.stability(st["n_resamples"], st["sample_fraction"], st["found_again_jaccard"])


def _warm_up(config: dict) -> dict:
    """Per-process costs paid once before any timing, for both tools alike: numba compiling the exact
    UMAP / pynndescent / HDBSCAN code paths each tool uses (Themesift's clusterer with its stability
    resamples, BERTopic's fit), and (Themesift only) Prefect's temporary API starting up. Without this
    the tool timed first pays the compilation and the other one gets it for free."""
    from prefect import flow

    from bench.peer import fit_bertopic

    out = {}
    t0 = time.perf_counter()
    _compile_themesift(config)
    # 4,500 points: above 4,096 UMAP switches from exact distances to NN-descent, BERTopic's path on
    # the full corpus (Themesift computes its neighbour graph itself up to cluster.umap.exact_knn_max).
    rng = np.random.default_rng(0)
    x = _unit_rows(rng, 4500, 384)
    words = ["waiting", "staff", "parking", "food", "nurse", "doctor", "kind", "clean", "noise", "time"]
    fit_bertopic([" ".join(rng.choice(words, 6)) for _ in range(len(x))], x, int(config["cluster"]["seed"]))
    out["numba compile (UMAP, pynndescent, HDBSCAN; both tools' code paths)"] = round(time.perf_counter() - t0, 2)

    @flow(name="bench-warm-up")
    def _noop() -> int:
        return 1

    t0 = time.perf_counter()
    _noop()
    out["Prefect temporary API start (Themesift only)"] = round(time.perf_counter() - t0, 2)
    return out


def _bertopic_end_to_end(texts: list[str], config: dict, sampler) -> dict:
    from sentence_transformers import SentenceTransformer

    from bench.peer import fit_bertopic
    from pipeline.embed.encoder import resolve_model

    from bertopic.backend._utils import select_backend

    t0, w0 = time.perf_counter(), time.time()
    model = SentenceTransformer(resolve_model(config["embed"]["model"])[0], device="cpu", local_files_only=True)
    backend = select_backend(model)  # what BERTopic(embedding_model=model) uses: its own batch size and settings
    t_load = time.perf_counter()
    embeddings = backend.embed(texts, verbose=False)
    t_embed, w_embed = time.perf_counter(), time.time()
    result = fit_bertopic(texts, embeddings, int(config["cluster"]["seed"]), embedding_model=model)
    t_fit, w1 = time.perf_counter(), time.time()
    return {"seconds": t_fit - t0, "peak_mib": sampler.peak_wall(w0, w1) / MIB, "n_themes": len(result.ranking),
            "stages": {"load model": {"seconds": t_load - t0, "peak_mib": float("nan")},
                       "embed": {"seconds": t_embed - t_load, "peak_mib": sampler.peak_wall(w0, w_embed) / MIB},
                       "fit": {"seconds": t_fit - t_embed, "peak_mib": sampler.peak_wall(w_embed, w1) / MIB}}}


# -- growth ---------------------------------------------------------------------------------------
POOL_SOURCES = (
    (SHARED / "nhs-fft" / "comments.csv", "feedback"),
    (SHARED / "nhs-fft" / "v6framework.csv", "FFT answer"),
    (SHARED / "banking77" / "train.csv", "text"),
    (SHARED / "banking77" / "test.csv", "text"),
)


def pooled_segments(config: dict) -> list[str]:
    """Clusterable segments of every shared dataset pooled, in a fixed shuffled order (seed 42)."""
    texts: list[str] = []
    for path, col in POOL_SOURCES:
        with path.open(encoding="utf-8-sig", newline="") as f:
            label = next(c for c in csv.DictReader(f).fieldnames if c != col)
        texts += load_csv(CsvSpec(str(path), col, label), config, path.stem).texts
    order = np.random.default_rng(42).permutation(len(texts))
    return [texts[i] for i in order]


def growth_point(config: dict, n: int, embed: bool, out: Path) -> None:
    """One size, in a fresh process: (optionally) embed for real, then cluster..rank on cached vectors."""
    from bench.datasets import Corpus
    from bench.harness import run_themesift
    from bench.machine import RssSampler
    from pipeline.ingest.segment import Segment

    spec = json.loads(out.read_text()) if out.is_file() else {}
    texts = json.loads(Path(spec["pool_file"]).read_text())[:n]
    vectors = np.load(spec["vectors_file"], mmap_mode="r")[:n].astype(np.float32)
    embedder = _embedder(config, config["embed"]["backend"])
    embedder.encode(["warm up the model"])
    _compile_themesift(config, vectors.shape[1])  # else the small sizes look slow and the exponent too low
    import psutil
    base = psutil.Process().memory_info().rss
    segs = [Segment("pool", "", f"c{i}", None, "participant", i, 0, len(t), t, True, str(i)) for i, t in enumerate(texts)]
    corpus = Corpus(f"pool-{n}", segs, {}, "pool")
    with RssSampler(0.1) as sampler:
        embed_seconds = None
        if embed:
            t0 = time.perf_counter()
            fresh = embedder.encode(texts)
            embed_seconds = time.perf_counter() - t0
            assert float((fresh * vectors).sum(axis=1).mean()) > 0.98  # the pool's vectors, as embedded here
        run = run_themesift(corpus, vectors, config, embedder)
    spec.update({"n": n, "embed_seconds": embed_seconds, "post_embed_seconds": run.seconds,
                 "peak_mib": sampler.peak() / MIB, "base_mib": base / MIB, "n_themes": len(run.ranking)})
    out.write_text(json.dumps(spec))


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares fit of log y = a + b log x; returns (b, a)."""
    b, a = np.polyfit(np.log(xs), np.log(ys), 1)
    return float(b), float(a)


def growth(config: dict, sizes: list[int], embed_sizes: list[int]) -> dict:
    from bench.harness import embed_corpus

    pool = pooled_segments(config)
    backend = config["embed"]["backend"]
    precision = config["embed"]["onnx"]["precision"] if backend == "onnx" else "fp32"
    # fp32: the same vectors as either backend; int8 vectors are its own
    vectors, vec_seconds, cached = embed_corpus(pool, _embedder(config, "onnx"))
    tmp = Path(tempfile.mkdtemp(prefix="themesift-bench-growth-"))
    (tmp / "pool.json").write_text(json.dumps(pool))
    np.save(tmp / "vectors.npy", vectors)
    points = []
    usable = [n for n in sizes if n <= len(pool)]
    if len(usable) < len(sizes):
        usable.append(len(pool))
    for n in usable:
        out = tmp / f"point-{n}.json"
        out.write_text(json.dumps({"pool_file": str(tmp / "pool.json"), "vectors_file": str(tmp / "vectors.npy")}))
        cmd = [sys.executable, "-m", "bench", "growth-point", "--n", str(n), "--json", str(out), "--no-report",
               "--backend", backend, "--precision", precision] + (["--embed"] if n in embed_sizes else [])
        subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parent.parent)
        points.append(json.loads(out.read_text()))
        print(f"growth: {n} segments done", file=sys.stderr)
    measured = [p for p in points if p["embed_seconds"] is not None]
    per_segment = max(p["embed_seconds"] / p["n"] for p in measured) if measured else float("nan")
    for p in points:
        p["embed_measured"] = p["embed_seconds"] is not None
        if not p["embed_measured"]:
            p["embed_seconds"] = per_segment * p["n"]
        p["total_seconds"] = p["embed_seconds"] + p["post_embed_seconds"]
    ns = [p["n"] for p in points]
    t_exp, _ = _fit(ns, [p["total_seconds"] for p in points])
    c_exp, c_a = _fit(ns, [p["post_embed_seconds"] for p in points])
    extra = [max(p["peak_mib"] - p["base_mib"], 1.0) for p in points]
    m_exp, m_a = _fit(ns, extra)
    base = float(np.median([p["base_mib"] for p in points]))
    # 1M: embedding linear at the measured rate + the clustering stages' fitted power law.
    embed_1m = per_segment * 1e6
    post_1m = math.exp(c_a) * 1e6 ** c_exp
    return {
        "kind": "growth",
        "description": (f"a pool of {len(pool)} clusterable segments from every shared dataset (NHS FFT comments and "
                        "v6 framework answers, Banking77 train and test), shuffled with seed 42; each size is its first "
                        f"n segments, run in a fresh process. Embedding ({backend}) timed for real at "
                        f"{', '.join(map(str, embed_sizes))} segments and taken as linear above; the clustering, "
                        "stability, describe and rank stages run for real at every size on cached vectors"
                        + ("" if len(pool) >= max(sizes) else f"; the pool holds fewer than {max(sizes)} segments, so the "
                           f"largest point is {len(pool)}")),
        "pool_size": len(pool),
        "points": points,
        "fit": {"time_exponent": t_exp, "post_embed_exponent": c_exp, "memory_exponent": m_exp,
                "embed_seconds_per_segment": per_segment,
                "extrapolated_1m_embed_hours": embed_1m / 3600, "extrapolated_1m_post_embed_hours": post_1m / 3600,
                "extrapolated_1m_hours": (embed_1m + post_1m) / 3600,
                "extrapolated_1m_gib": (base + math.exp(m_a) * 1e6 ** m_exp) / 1024},
        "load_average_at_end": list(os.getloadavg()),
    }
