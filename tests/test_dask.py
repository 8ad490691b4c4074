"""The suggest flow on a Dask cluster (LocalCluster) through prefect-dask, with a real Prefect server."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from sqlalchemy import select

from conftest import ROOT, TRANSCRIPTS
from models.records import Run, Segment
from models.store import Store
from pipeline.config import load_config, settings
from pipeline.embed.encoder import Embedder, text_hash

distributed = pytest.importorskip("distributed")


def test_dask_runner_maps_embedding_batches_and_gives_the_same_vectors(prefect_server_env, tmp_path, monkeypatch):
    folder = tmp_path / "transcripts"
    folder.mkdir()
    for name in ("P01.txt", "P04.vtt", "P06.docx", "P08.txt"):
        shutil.copy(TRANSCRIPTS / name, folder / name)
    workspace = tmp_path / "dask"
    workspace.mkdir()
    cfg = workspace / "cfg.yaml"
    env = prefect_server_env
    for key in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED"):
        monkeypatch.setenv(key, env[key])  # the workers (spawned now) talk to the same server
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        cfg.write_text(yaml.safe_dump({"store": {"workspace": str(workspace)}, "embed": {"task_texts": 40},
                                       "runner": {"kind": "dask", "dask_address": cluster.scheduler_address}}),
                       encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "flows.cli", "suggest", str(folder), "--study", "d",
                               "--config", str(cfg)], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        with distributed.Client(cluster) as client:
            executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    store = Store(f"sqlite:///{workspace / 'themesift.db'}")
    with store.sessions() as session:
        run = session.scalars(select(Run)).one()
        manifest, n_themes = run.manifest, run.n_themes
        texts = sorted({s.text for s in session.scalars(select(Segment))})
    embedding = manifest["embedding"]
    assert run.status == "completed" and n_themes >= 1
    assert embedding["tasks"] == -(-embedding["newly_embedded"] // 40) >= 3  # batches mapped as tasks
    assert len(executed) == 2 and sum(executed.values()) >= embedding["tasks"] + 1  # + the clustering task
    # The workers' vectors are the ones this process's encoder gives for the same texts (Dask workers run
    # with one thread each, so the last float bits may differ; UMAP magnifies such differences on a corpus
    # this small, so the same themes are checked within one runner, in test_suggest_flow).
    embedder = Embedder.from_config(settings(load_config()).embed)
    assert manifest["model"]["id"] == embedder.model_id
    on_dask = store.cached_vectors(embedder.model_id, [text_hash(t) for t in texts])  # the texts clustered
    texts = [t for t in texts if text_hash(t) in on_dask]
    assert len(texts) == embedding["distinct_texts"] == embedding["newly_embedded"]
    here = embedder.encode(texts)
    assert min(float(on_dask[text_hash(t)] @ v) for t, v in zip(texts, here)) >= 0.9999
