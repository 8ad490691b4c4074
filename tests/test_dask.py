"""The suggest flow on a Dask cluster (LocalCluster) through prefect-dask, with a real Prefect server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, TRANSCRIPTS
from models.store import Store
from pipeline.embed.encoder import text_hash
from processes import prefect_server

distributed = pytest.importorskip("distributed")


def _suggest(folder, workspace, env, runner: dict) -> dict:
    workspace.mkdir(parents=True, exist_ok=True)
    cfg = workspace / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"workspace": str(workspace)}, "runner": runner,
                                   "embed": {"task_texts": 40}}), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "flows.cli", "suggest", str(folder), "--study", "d", "--config",
                           str(cfg)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    export = workspace / "export.json"
    subprocess.run([sys.executable, "-m", "flows.cli", "export", "suggestions", "--study", "d", "--config", str(cfg),
                    "--format", "json", "-o", str(export)], cwd=ROOT, env=env, check=True, capture_output=True)
    return json.loads(export.read_text(encoding="utf-8"))


def test_dask_runner_maps_embedding_batches_and_gives_the_same_themes(tmp_path, monkeypatch):
    folder = tmp_path / "transcripts"
    folder.mkdir()
    for name in ("P01.txt", "P04.vtt", "P06.docx", "P08.txt"):
        shutil.copy(TRANSCRIPTS / name, folder / name)
    with prefect_server(tmp_path / "server") as env:
        for key in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED"):
            monkeypatch.setenv(key, env[key])  # the workers (spawned now) talk to the same server
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster:
            on_dask = _suggest(folder, tmp_path / "dask", env, {"kind": "dask", "dask_address": cluster.scheduler_address})
            with distributed.Client(cluster) as client:
                executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
        local = _suggest(folder, tmp_path / "local", env, {"kind": "local", "dask_address": None})
    embedding = on_dask["manifest"]["embedding"]
    assert embedding["tasks"] == -(-embedding["newly_embedded"] // 40) >= 3  # batches mapped as tasks
    assert len(executed) == 2 and sum(executed.values()) >= embedding["tasks"] + 1  # + the clustering task
    # Dask workers run torch with one thread (Dask sets OMP_NUM_THREADS=1), so their vectors differ from
    # the local ones in the last float bits; UMAP magnifies such differences on a corpus this small, so
    # the same vectors are checked here and the same themes only within one runner (test_suggest_flow).
    dask_vectors = Store(f"sqlite:///{tmp_path / 'dask' / 'themesift.db'}").cached_vectors
    local_vectors = Store(f"sqlite:///{tmp_path / 'local' / 'themesift.db'}").cached_vectors
    hashes = [text_hash(m["text"]) for t in local["themes"] for m in t["members"]] + \
        [text_hash(m["text"]) for m in local["outliers"]]
    model = local["manifest"]["model"]["id"]
    d, l = dask_vectors(model, hashes), local_vectors(model, hashes)
    assert len(d) == len(l) == len(set(hashes))
    assert min(float(d[h] @ l[h]) for h in l) >= 0.9999
    assert on_dask["themes"] and local["themes"]
