"""Faults: a run killed half-way, and two runs on one study at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from sqlalchemy import func, select

from conftest import ROOT, TRANSCRIPTS, fft_comments, study_config
from processes import healthy, start, stop, temporary_servers, wait_for
from flows.suggest import suggest_flow
from models.records import Embedding, Run, Segment, StudyLock
from models.store import Store


def test_a_second_run_on_a_busy_study_is_refused_with_a_message(example_study):
    store = example_study.store
    with store.study_lock("ipt"):
        outcome = suggest_flow(paths=[str(TRANSCRIPTS)], study="ipt", config=example_study.config, force=True)
    assert outcome["status"] == "busy" and outcome["run_id"] is None
    assert "study 'ipt' is being processed by another run" in outcome["message"]
    with store.sessions() as session:
        assert session.get(StudyLock, "ipt") is None  # the holder released it


def test_a_lock_left_by_a_dead_process_is_taken_over(example_study):
    store = example_study.store
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    with store.transaction() as session:
        session.add(StudyLock(study="ipt", owner=f"{socket.gethostname()}:{dead.stdout.strip()}"))
    with store.study_lock("ipt"):
        pass
    with store.sessions() as session:
        assert session.get(StudyLock, "ipt") is None


def test_a_killed_run_leaves_the_store_as_before_and_the_next_run_reuses_its_embeddings(tmp_path):
    data, _ = fft_comments(tmp_path, 1500)
    cfg = study_config(tmp_path / "ws")
    cfg["embed"]["cache_chunk"] = 128
    config_file = tmp_path / "cfg.yaml"
    config_file.write_text(yaml.safe_dump({"store": cfg["store"], "embed": {"cache_chunk": 128}}), encoding="utf-8")
    store = Store.from_config(cfg["store"])
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    command = [sys.executable, "-m", "flows.cli", "suggest", str(data), "--study", "killed", "--config",
               str(config_file), "--text-col", "feedback", "--row-id-col", "row_index"]
    # A session of its own: the kill below reaches the run and the temporary Prefect API server it
    # started, which a killed parent would otherwise leave running for ever.
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        cached = 0
        while time.monotonic() < deadline and process.poll() is None:
            with store.sessions() as session:
                cached = session.scalar(select(func.count()).select_from(Embedding))
            if cached >= 256:
                break
            time.sleep(0.2)
        assert process.poll() is None, "the run ended before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    with store.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 0
        assert session.scalar(select(func.count()).select_from(Segment)) == 0
        cached = session.scalar(select(func.count()).select_from(Embedding))
        assert session.get(StudyLock, "killed") is not None  # left behind by the killed process
    assert cached >= 256

    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    with store.sessions() as session:
        run = session.scalars(select(Run)).one()
        assert run.status == "completed"
        assert run.manifest["embedding"]["newly_embedded"] <= run.manifest["embedding"]["distinct_texts"] - cached
        n_segments = session.scalar(select(func.count()).select_from(Segment))
        distinct = session.scalar(select(func.count()).select_from(
            select(Segment.source_id, Segment.start, Segment.end).distinct().subquery()))
        assert n_segments == distinct
        assert session.get(StudyLock, "killed") is None


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_suggest_leaves_no_temporary_prefect_server(tmp_path, how):
    """``themesift suggest`` with no PREFECT_API_URL starts Prefect's temporary API server; killing the
    command alone (its pid, not its group) with SIGKILL or SIGTERM must not leave the server running.
    SIGTERM ends it as Ctrl-C does: one ``themesift:`` line, no traceback, exit status 128 + 15."""
    home = tmp_path / "prefect-home"
    env = {**os.environ, "PREFECT_HOME": str(home), "THEMESIFT_HOME": str(tmp_path / "ws")}
    env.pop("PREFECT_API_URL", None)
    log = tmp_path / "suggest.log"
    run = start([sys.executable, "-m", "flows.cli", "suggest", str(TRANSCRIPTS), "--study", "killed"], env, log,
                cwd=ROOT)
    try:
        servers = wait_for("temporary Prefect server up", lambda: {
            pid: port for pid, port in temporary_servers(home).items() if healthy(port)}, 120, (run, log))
        os.kill(run.pid, how)
        run.wait(120)
        deadline = time.monotonic() + 30  # the server may take a few seconds to shut down
        while temporary_servers(home) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = temporary_servers(home)
    finally:
        stop(run)  # its group: anything left behind by a failure goes too
    assert servers and not left, f"server(s) {sorted(left)} left running after {how.name}"
    if how == signal.SIGTERM:
        assert run.returncode == 128 + signal.SIGTERM
        output = log.read_text()
        assert "Traceback" not in output
        assert output.splitlines()[-1] == ("themesift: stopped by SIGTERM; what it had not finished is not stored "
                                           "(earlier runs are kept)")
