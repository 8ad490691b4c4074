"""The suggest flow: transcripts in, ranked candidate themes stored, one Prefect task per stage."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from prefect import Task, flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context
from prefect.utilities.annotations import quote
from tqdm.auto import tqdm

from flows.manifest import build_manifest, code_version, recorded_config
from flows.runtime import (forget_unused_reduced_spaces, heartbeats_off_without_server, require_loopback,
                           stop_requested)
from models.decisions import record_carried_keys
from models.review import honour_inputs
from models.store import LastRun, Store, StudyBusyError, workspace_dir
from pipeline.config import (
    ClusterSettings,
    DescribeSettings,
    EmbedSettings,
    NOT_RESULTS,
    IngestSettings,
    NameModelSettings,
    RankSettings,
    RunnerSettings,
    SegmentSettings,
    Settings,
    StabilitySettings,
    config_digest,
    settings,
)
from pipeline.embed.encoder import Embedder, text_hash
from pipeline.ingest.changes import changes_line, file_changes
from pipeline.ingest.read import SUPPORTED_SUFFIXES, Document, Ingester, IngestResult, distinct_names
from pipeline.ingest.segment import Segment, Segmenter
from pipeline.learn.honour import cluster_centroids, combine_labels, drop_rejected, name_carried, plan_segments
from pipeline.themes.assemble import SecondPass, Suggestions, assemble, cluster_left_out, score_passes
from pipeline.themes.cluster import REDUCE_RECIPE, CorpusTooSmallError, ThemeClusterer
from pipeline.themes.describe import ThemeDescriber
from pipeline.themes.join import JoinRule, join_outliers
from pipeline.themes.model_name import ModelNamer, Renamed


@dataclass
class SuggestOutcome:
    """What the caller (CLI, tests, schedules) needs to know about a run."""

    study: str
    status: str  # completed | failed | unchanged | busy
    run_id: int | None
    message: str | None = None
    skipped: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    database: str = ""
    files: str = ""  # what changed among the files since the study's last run, in one line
    settings: str = ""  # which settings changed since then, with their values, in one line


def load_vectors(store: Store, embedder: Embedder, texts: Sequence[str], chunk: int = 1024) -> tuple[np.ndarray, int]:
    """Vectors for ``texts`` from the store's cache, embedding only texts this model never saw.

    Returns the vectors in the order of ``texts`` and how many distinct texts had to be embedded now.
    """
    hashes = [text_hash(t) for t in texts]
    cached = store.cached_vectors(embedder.model_id, hashes)
    missing = list(dict.fromkeys(h for h in hashes if h not in cached))
    first_text = {h: t for h, t in zip(hashes, texts)}
    shown = len(missing) >= embedder.progress_min_texts  # one bar for the whole step, not one a chunk
    with tqdm(desc="Embedding", total=len(missing), unit=" texts", disable=not shown) as bar:

        def step(n: int) -> None:  # after each batch: Ctrl-C stops here, not after the last text
            stop_requested()
            bar.update(n)

        for i in range(0, len(missing), chunk):  # cached chunk by chunk: a killed run keeps what it embedded
            batch = missing[i:i + chunk]
            fresh = embedder.encode([first_text[h] for h in batch], progress=step if shown else None)
            store.cache_vectors(embedder.model_id, batch, fresh)
            cached.update(zip(batch, fresh))
    if not hashes:
        return np.zeros((0, embedder.encoder.get_sentence_embedding_dimension()), dtype=np.float32), 0
    return np.stack([cached[h] for h in hashes]), len(missing)


# -- tasks: thin wrappers over pipeline stages ----------------------------------------------------
@task(name="ingest", cache_policy=NO_CACHE)
def ingest_task(paths: list[str], ingest_cfg: IngestSettings, exclude: list[str], known: dict[str, str]) -> IngestResult:
    """Read new, changed and renamed files; those in ``known`` (hash -> path) at the same path are only hashed."""
    result = Ingester.from_config(ingest_cfg).collect(paths, exclude, known)
    logger = get_run_logger()
    for s in result.skipped:
        logger.info("skipped %s: %s", s.path, s.reason)
    return result


@task(name="segment", cache_policy=NO_CACHE)
def segment_task(documents: Sequence[Document], segment_cfg: SegmentSettings,
                 embed_cfg: EmbedSettings) -> tuple[list[Segment], list[str]]:
    """The documents' segments, and a note for each transcript whose interviewer was found by their questions."""
    embedder = Embedder.from_config(embed_cfg)
    segmenter = Segmenter.from_config(segment_cfg, embedder.count_tokens, embedder.max_tokens)
    notes = [asker.note(doc.path) for doc in documents if (asker := segmenter.questioner(doc))]
    return segmenter.transform(documents), notes


@task(name="embed", cache_policy=NO_CACHE)
def embed_task(texts: list[str], embed_cfg: EmbedSettings, store_url: str, sqlite_timeout_s: float = 30) -> int:
    """Embed ``texts`` into the store's cache; returns how many it embedded (others may have meanwhile)."""
    store = Store(store_url, sqlite_timeout_s)
    return load_vectors(store, Embedder.from_config(embed_cfg), texts, embed_cfg.cache_chunk)[1]


def reduced_space_key(vectors: np.ndarray, params: Mapping[str, Any]) -> str:
    """Name of a reduced space: the vectors' bytes, the UMAP settings and seed, the recipe, umap's version."""
    import umap

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    digest = hashlib.sha256(vectors.tobytes())
    digest.update(repr((vectors.shape, sorted(params.items()), REDUCE_RECIPE, umap.__version__)).encode())
    return f"reduce-{digest.hexdigest()}"


@task(name="reduce", cache_key_fn=lambda _context, parameters: parameters["key"], persist_result=True)
def reduce_task(vectors: np.ndarray, params: dict, key: str) -> np.ndarray:
    """UMAP coordinates; cached by Prefect under ``key`` (:func:`reduced_space_key` of the same vectors and
    params, computed once by the flow, which also marks the space as used), so a run that changes only
    clustering or ranking settings skips the slowest step."""
    return ThemeClusterer(**params).reduce(vectors)


@task(name="cluster", cache_policy=NO_CACHE)
def cluster_task(vectors: np.ndarray, reduced: np.ndarray, cluster_cfg: ClusterSettings,
                 stability_cfg: StabilitySettings) -> tuple[ThemeClusterer, dict]:
    clusterer = ThemeClusterer.from_config(cluster_cfg, len(vectors)).fit(vectors, reduced=reduced)
    stability = clusterer.stability(stability_cfg.n_resamples, stability_cfg.sample_fraction,
                                    stability_cfg.found_again_jaccard)
    return clusterer, stability


@task(name="describe", cache_policy=NO_CACHE)
def describe_task(texts, labels, vectors, cases, strengths, describe_cfg: DescribeSettings, embed_cfg: EmbedSettings,
                  store: Store):
    """Keywords, labels and quotes; candidate keyphrases are embedded through the store's cache, so a
    re-run with the same themes embeds none of them again."""
    # Names' phrases and sentences take seconds: no progress bar of theirs beside the segments' own.
    embedder = replace(Embedder.from_config(embed_cfg), progress_min_texts=sys.maxsize)
    describer = ThemeDescriber.from_config(describe_cfg, lambda phrases: load_vectors(store, embedder, phrases)[0])
    return describer.describe(texts, labels, vectors, cases, strengths)


@task(name="name", cache_policy=NO_CACHE)
def name_task(descriptions, texts, model_cfg: NameModelSettings) -> Renamed:
    """Names and inclusion criteria from the local generative model the configuration names; a theme it
    gives no usable answer for keeps its extractive name (one warning, logged and returned)."""
    renamed = ModelNamer.from_config(model_cfg).rename(descriptions, texts)
    if renamed.warning:
        get_run_logger().warning(renamed.warning)
    return renamed


@task(name="rank", cache_policy=NO_CACHE)
def rank_task(descriptions, vectors, labels, cases, stability, rank_cfg: RankSettings, second_pass: tuple[int, ...]):
    return score_passes(descriptions, vectors, labels, cases, stability, rank_cfg.weights.parts(),
                        rank_cfg.stability.n_resamples, second_pass, rank_cfg.stability.min_segments)


@task(name="store", cache_policy=NO_CACHE)
def store_task(store: Store, study: str, documents, segments, suggestions: Suggestions, manifest: dict,
               skipped: list[dict], started_at: datetime, cut: str, carried: Mapping[str, int]) -> int:
    """Store the run; kept themes carry their stable keys (from the decision log) into it."""
    run_id = store.record_run(study, documents, segments, suggestions, manifest, skipped, started_at, cut=cut)
    if carried:
        with store.transaction() as session:
            record_carried_keys(session, run_id, carried)
    create_table_artifact(
        key=artifact_key(study),
        table=[{"rank": t.rank, "label": t.label, "description": t.description, "score": t.score, **t.parts, "cases": len(t.cases),
                "segments": len(t.members), "reasons": "; ".join(t.reasons)} for t in suggestions.themes],
        description=f"Candidate themes of study '{study}', run {run_id}",
    )
    return run_id


def artifact_key(study: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in study.lower()).strip("-") or "study"
    return f"themes-{slug}"


def embed_in_batches(texts: Sequence[str], embed_cfg: EmbedSettings, store: Store,
                     sqlite_timeout_s: float, spread: bool) -> tuple[int, int]:
    """Embed the texts the store's cache lacks. With ``spread`` (a Dask task runner) they are mapped as
    tasks over batches of ``embed.task_texts``, spread over the workers; else one task embeds them all,
    since tasks in threads of one machine would only share its cores (and each draw a bar of its own).
    The store is the one cache: a re-run whose texts are all cached starts no task. Returns (tasks,
    texts embedded)."""
    embedder = Embedder.from_config(embed_cfg)
    missing = store.uncached_texts(embedder.model_id, texts)
    if missing:
        embedder.prepare()  # export once here, not in each task at the same time
    size = embed_cfg.task_texts if spread else max(1, len(missing))
    futures = [embed_task.submit(missing[i:i + size], embed_cfg, store.url, sqlite_timeout_s)
               for i in range(0, len(missing), size)]
    return len(futures), sum(future.result() for future in futures)


def task_runner(runner_cfg: RunnerSettings):
    """The task runner the ``runner`` section asks for: None (Prefect's default threads) or a Dask cluster
    (its address is checked to be set when the configuration is loaded)."""
    if runner_cfg.kind == "local":
        return None
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=runner_cfg.dask_address)


def run_suggest(paths: list[str], study: str, config: dict, force: bool = False) -> dict:
    """Run :func:`suggest_flow` on the task runner named in the configuration."""
    require_loopback()  # else Prefect waits for its temporary server for minutes, then says only "timed out"
    runner = task_runner(settings(config).runner)
    flow_ = suggest_flow if runner is None else suggest_flow.with_options(task_runner=runner)
    with heartbeats_off_without_server():
        return flow_(paths=paths, study=study, config=config, force=force)


def changed_settings(before: Mapping, now: Mapping, at: str) -> list[str]:
    """Dotted names of the settings under ``at`` whose values differ between two configurations."""
    keys = sorted(set(before) | set(now))
    out: list[str] = []
    for k in keys:
        a, b = before.get(k), now.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += changed_settings(a, b, f"{at}.{k}")
        elif a != b:
            out.append(f"{at}.{k}")
    return out


def settings_line(run_id: int, before: Mapping, now: Mapping, shown: int = 6) -> str:
    """``settings since run 3: cluster.seed 42 -> 7, rank.weights.size 0.1 -> 0.2``; "" when none changed
    (where results are kept and which runner computes them left out, as the fingerprint leaves them)."""
    def kept(config: Mapping) -> dict:
        return {k: v for k, v in config.items() if k not in NOT_RESULTS}

    def value(config: Any, name: str) -> str:
        for part in name.split("."):
            config = config.get(part) if isinstance(config, Mapping) else None
        text = json.dumps(config, default=str)
        return text if len(text) <= 40 else text[:37] + "..."

    names = [n.lstrip(".") for n in changed_settings(kept(before), kept(now), "")]
    if not names:
        return ""
    listed = ", ".join(f"{n} {value(before, n)} -> {value(now, n)}" for n in names[:shown])
    return f"settings since run {run_id}: {listed}" + (f", and {len(names) - shown} more" if len(names) > shown else "")


def read_before_warning(last: LastRun | None, config: Mapping, n_known: int) -> list[str]:
    """A warning when the ``ingest`` settings changed since the study's last run while some of its files
    were read then: those files are not read again, so they keep how they were read (a text column added
    later, say, is not taken from them)."""
    if not n_known or last is None or "ingest" not in last.config:
        return []
    changed = changed_settings(last.config["ingest"], config["ingest"], "ingest")
    if not changed:
        return []
    return [f"{', '.join(changed)} changed since run {last.run_id}: the {n_known} file(s) read before keep how "
            "they were read then (a study of another name reads them with the new settings)"]


# -- the flow -------------------------------------------------------------------------------------
def segment_cut(config: Mapping, embed_cfg: EmbedSettings) -> str:
    """Fingerprint of what decides a file's segments: the segment settings (as written in ``config``, so
    that stored cuts keep their names) and the tokenizer's model."""
    return config_digest({"segment": config["segment"], "model": Embedder.from_config(embed_cfg).model_id})


@flow(name="suggest-themes")
def suggest_flow(paths: list[str], study: str, config: dict, force: bool = False) -> dict:
    """Ingest, segment, embed, cluster, describe, rank and store; returns a :class:`SuggestOutcome` as a dict.

    Unless ``force``, a run that would see the same files with the same configuration as the study's
    latest run stops at once with status ``unchanged``. One run at a time per study: a second one waits
    ``store.run_lock_wait_s`` seconds, then is refused with status ``busy``.
    """
    s = settings(config)  # checked here too: a deployment's parameters may come from elsewhere
    store = Store.from_config(s.store)
    try:
        with store.study_lock(study, s.store.run_lock_wait_s):
            return asdict(_suggest(store, paths, study, config, s, force))
    except StudyBusyError as exc:
        return asdict(SuggestOutcome(study, "busy", None, message=str(exc), database=store.url))


def _suggest(store: Store, paths: list[str], study: str, config: dict, s: Settings, force: bool) -> SuggestOutcome:
    """The run; ``config`` as given is only fingerprinted and stored in the manifest, each stage gets its
    section of ``s``."""
    started_at = datetime.now(timezone.utc)
    code = code_version()  # the code the run starts with: a commit made while it runs is not its code
    timings: dict[str, float] = {}

    def timed(name, fn, *args):
        t0 = time.perf_counter()
        if isinstance(fn, Task):  # Prefect would walk every element of the big arguments looking for
            args = tuple(quote(a) for a in args)  # futures: about 1 s per run on 10,000 segments
        value = fn(*args)
        timings[name] = round(time.perf_counter() - t0, 3)
        return value

    cut = segment_cut(config, s.embed)
    known = store.known_sources(study, cut)
    ingested = timed("ingest", ingest_task, paths, s.ingest, [str(workspace_dir(s.store))], known)
    outcome = SuggestOutcome(study, "failed", None, skipped=[asdict(s) for s in ingested.skipped],
                             warnings=list(ingested.warnings), database=store.url)
    sources = ingested.sources()
    previous = store.latest_inputs(study)
    outcome.warnings += read_before_warning(previous, config, len(ingested.known))
    honour = honour_inputs(store, study)  # the coders' decisions so far; None before the first
    last_decision = honour.last_uid if honour else None
    names = distinct_names([p for p, _ in sources])  # siteA/x.txt and siteB/x.txt told apart, as stored
    files = sorted((names[p], sha) for p, sha in sources)
    if previous is not None:
        outcome.files = changes_line(previous.run_id, file_changes(previous.files, files))
        if previous.config:
            outcome.settings = settings_line(previous.run_id, previous.config, recorded_config(config))  # as recorded
    if not force and previous is not None and (previous.files, previous.config_digest, previous.last_decision) \
            == (files, config_digest(config), last_decision):
        outcome.status, outcome.run_id = "unchanged", previous.run_id
        outcome.message = (f"nothing changed since run {previous.run_id} "
                           "(same files under the same names, same configuration, no new decisions)")
        return outcome

    fresh, notes = timed("segment", segment_task, ingested.documents, s.segment, s.embed)
    outcome.warnings += notes
    by_source = store.stored_segments(study, [k.sha256 for k in ingested.known], cut)
    for seg in fresh:
        by_source.setdefault(seg.source_sha256, []).append(seg)
    # a segment stored by a run under other settings at the same offsets keeps its row; its flag is this run's
    segments = Segmenter.from_config(s.segment).flag([seg for _, sha in sources for seg in by_source.get(sha, [])])
    with_text = {s.source_sha256 for s in segments if s.clusterable}
    outcome.skipped += [{"path": path, "reason": "no participant text to cluster (only interviewer or very short turns)"}
                        for path, sha in sources if sha not in with_text]
    clustered = [i for i, s in enumerate(segments) if s.clusterable]
    texts = [segments[i].text for i in clustered]
    n_tasks, embedded = timed("embed", embed_in_batches, texts, s.embed, store, s.store.sqlite_timeout_s,
                              s.runner.kind != "local")
    embedder = Embedder.from_config(s.embed)
    vectors, late = timed("load-vectors", load_vectors, store, embedder, texts, s.embed.cache_chunk)
    embedding = {"texts": len(texts), "distinct_texts": len(set(texts)), "tasks": n_tasks,
                 "newly_embedded": embedded + late}
    inputs = [{"name": names[path], "path": path, "format": Path(path).suffix.lower().lstrip("."), "sha256": sha,
               "read_now": sha not in known} for path, sha in sources]

    def manifest() -> dict:
        return {**build_manifest(config, embedder, inputs, segments, timings, started_at,
                                 flow_run_id=str(get_run_context().flow_run.id), code=code), "embedding": embedding,
                "segment_cut": cut}

    # Decisions first: kept themes take their members and the new segments that fit them; segments a
    # coder moved stay where they were put; only the rest is clustered for new suggestions.
    review = s.review
    rows = [segments[i] for i in clustered]
    named = honour.name_texts() if honour is not None and review.learner_names else {}
    name_vectors = dict(zip(named, embedder.encode(list(named.values())))) if named else None  # each an example
    plan = None if honour is None else plan_segments(
        honour.fixed_for(rows), honour.assignments(vectors, rows, review, name_vectors=name_vectors), honour.kept)
    rest = list(plan.remaining) if plan is not None else list(range(len(vectors)))
    reduction = {"segments": len(rest), "cached": False}
    try:
        params = ThemeClusterer.from_config(s.cluster, len(rest)).reduce_params()
        key = reduced_space_key(vectors[rest], params)
        future = reduce_task.submit(vectors[rest], params, key)
        reduced = timed("reduce", future.result)
        reduction["cached"] = future.state.name == "Cached"
        forget_unused_reduced_spaces(key, s.runner.reduced_space_days)
        clusterer, stability = timed("cluster", lambda: cluster_task.submit(
            vectors[rest], reduced, s.cluster, s.rank.stability).result())
        rest_labels, rest_strengths = clusterer.labels_.copy(), clusterer.probabilities_
    except CorpusTooSmallError as exc:
        if plan is None or not honour.kept:
            outcome.message = (str(exc) if sources else "no file could be read (each is listed above with its "
                               "reason), so there is nothing to cluster" if outcome.skipped else
                               "no file of a kind Themesift reads was found (" + " ".join(sorted(SUPPORTED_SUFFIXES))
                               + "), so there is nothing to cluster")
            outcome.run_id = store.record_failed_run(study, manifest(), outcome.message, outcome.skipped, started_at)
            return outcome
        clusterer, stability = None, {}  # too little left over: it waits in the outlier queue
        rest_labels, rest_strengths = np.full(len(rest), -1), np.zeros(len(rest))
        outcome.warnings.append(f"{len(rest)} segments outside the kept themes are too few to cluster: {exc}")
    dropped: list = []

    def drop_like_rejected(rest_labels: np.ndarray) -> None:
        """New themes like ones a coder rejected are not suggested again: their segments wait in the queue."""
        if plan is not None:
            _, found = drop_rejected(cluster_centroids(vectors[rest], rest_labels), honour.rejected_centroids(),
                                     review.rejected_similarity, honour.rejected_names)
            rest_labels[np.isin(rest_labels, [d.cluster for d in found])] = -1
            dropped.extend(found)

    drop_like_rejected(rest_labels)
    # Left-out segments of this clustering may join its new themes (kept themes took theirs by the review
    # rule); those still left are clustered again at a finer grain, for the themes too small for the first pass.
    joined_rest = join_outliers(vectors[rest], rest_labels, range(len(rest)), sorted(set(rest_labels.tolist()) - {-1}),
                                JoinRule.from_config(s.cluster.join_outliers))
    second: tuple[int, ...] = ()
    if clusterer is not None:
        rest_labels, rest_strengths, more, second = cluster_left_out(
            clusterer, rest_labels, rest_strengths, range(len(rest)), joined_rest,
            SecondPass.from_config(s.cluster.second_pass), s.rank.stability)
        stability = {**stability, **more}
        drop_like_rejected(rest_labels)
    joined = {rest[i]: found for i, found in joined_rest.items()}
    labels, strengths, label_of = rest_labels, rest_strengths, {}
    if plan is not None:
        labels, strengths, label_of = combine_labels(len(vectors), plan, rest_labels, rest_strengths, list(honour.kept))
        n_resamples = s.rank.stability.n_resamples
        stability = {**stability, **{label: (1.0, n_resamples) for label in label_of.values()}}
        outcome.warnings += [f"not suggested: a new theme {d.reason}" for d in dropped]
    cases = [segments[i].case for i in clustered]
    descriptions = timed("describe", describe_task, texts, labels, vectors, cases, strengths,
                         s.describe, s.embed, store)
    name_model = None
    if ModelNamer.from_config(s.describe.name.model).enabled:
        renamed = timed("name", name_task, descriptions, texts, s.describe.name.model)
        descriptions, name_model = renamed.descriptions, renamed.record
        outcome.warnings += [renamed.warning] if renamed.warning else []
    second = tuple(t for t in second if (labels == t).any())  # a rejected one was dropped
    scores = timed("rank", rank_task, descriptions, vectors, labels, cases, stability, s.rank, second)
    split_from = clusterer.split_from_ if clusterer is not None else {}
    suggestions = assemble(clustered, labels, vectors, descriptions, scores,
                           s.cluster.outlier_suggestion_min_similarity, joined, second, split_from)
    if label_of:
        names = {key: kept[0] for key, kept in honour.kept.items()}
        suggestions = Suggestions(tuple(name_carried(suggestions.themes, label_of, names)), suggestions.outliers)
    run_manifest = manifest()
    run_manifest["reduction"] = reduction
    run_manifest["name_model"] = name_model  # the model, its version and the prompt; None: names are extractive
    run_manifest["joined_outliers"] = len(joined)
    run_manifest["second_pass"] = {"themes": sum(t.second_pass for t in suggestions.themes),
                                   "segments": sum(len(t.members) for t in suggestions.themes if t.second_pass)}
    run_manifest["split_broad"] = {"themes_split": len(set(split_from.values())), "themes_made": len(split_from)}
    run_manifest["cluster_params"] = ({k: v for k, v in vars(clusterer).items() if not k.endswith("_")}
                                      if clusterer is not None else None)
    run_manifest["honour"] = {
        "last_decision": last_decision, "decisions": honour.decisions if honour else 0,
        "kept_themes": sorted(label_of), "clustered_anew": len(rest),
        "not_suggested_again": [d.reason for d in dropped]}
    if not suggestions.themes:
        outcome.message = (f"no themes found: all {len(texts)} segments are in the outlier queue; "
                           "try a smaller cluster.hdbscan.min_cluster_size")
    outcome.run_id = timed("store", store_task, store, study, ingested.documents, segments, suggestions,
                           run_manifest, outcome.skipped, started_at, cut, label_of)
    outcome.status = "completed"
    return outcome
