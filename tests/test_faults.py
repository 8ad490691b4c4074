"""Faults: a run killed half-way, and two runs on one study at once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import delete, func, select

from conftest import ROOT, TRANSCRIPTS, fft_comments, study_config
from processes import (healthy, network_namespace, on_tmpfs, prefect_home, read_only, start, stop,
                       temporary_servers, wait_for)
from flows.suggest import suggest_flow
from models.records import Embedding, Run, Segment, StudyLock
from models.store import Store, StudyBusyError


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
    with store.transaction() as session:
        session.add(StudyLock(study="ipt", owner=f"{socket.gethostname()}:{dead.stdout.strip()}"))
    with store.study_lock("ipt"):
        pass
    with store.sessions() as session:
        assert session.get(StudyLock, "ipt") is None


def test_a_lock_left_by_a_run_on_another_machine_is_released_by_unlock(example_study, tmp_path, capsys):
    """A run that died on another machine (a laptop sharing the team's store) leaves a lock this host cannot
    judge: the refusal says how to release it, ``themesift unlock`` does, and a live run of this host is
    never released."""
    from flows.cli import main

    store = example_study.store
    config = tmp_path / "unlock.yaml"
    config.write_text(yaml.safe_dump({"store": example_study.config["store"]}), encoding="utf-8")
    with store.transaction() as session:
        session.add(StudyLock(study="ipt", owner="laptop-a.invalid:14412"))
    with pytest.raises(StudyBusyError, match="themesift unlock --study ipt"):
        with store.study_lock("ipt"):
            pass
    assert main(["unlock", "--study", "ipt", "--config", str(config)]) == 0
    assert "released study 'ipt' from run laptop-a.invalid:14412" in capsys.readouterr().out
    with store.sessions() as session:
        assert session.get(StudyLock, "ipt") is None
    assert main(["unlock", "--study", "ipt", "--config", str(config)]) == 0
    assert "is not locked" in capsys.readouterr().out
    assert main(["unlock", "--study", "ipy", "--config", str(config)]) == 2  # a typo is not "not locked"
    assert "no study named 'ipy' (studies: " in capsys.readouterr().err
    with store.transaction() as session:  # this very process: alive, on this host
        session.add(StudyLock(study="ipt", owner=f"{socket.gethostname()}:{os.getpid()}"))
    try:
        assert main(["unlock", "--study", "ipt", "--config", str(config)]) == 3
        assert "still running" in capsys.readouterr().err
    finally:
        with store.transaction() as session:
            session.execute(delete(StudyLock).where(StudyLock.study == "ipt"))


def test_a_killed_run_leaves_the_store_as_before_and_the_next_run_reuses_its_embeddings(tmp_path):
    data, _ = fft_comments(tmp_path, 640)
    cfg = study_config(tmp_path / "ws")
    cfg["embed"]["cache_chunk"] = 128
    config_file = tmp_path / "cfg.yaml"
    config_file.write_text(yaml.safe_dump({"store": cfg["store"], "embed": {"cache_chunk": 128}}), encoding="utf-8")
    store = Store.from_config(cfg["store"])
    env = {**os.environ, "PREFECT_HOME": str(prefect_home(tmp_path / "prefect-home"))}
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


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["SIGKILL", "SIGTERM", "Ctrl-C"])
def test_a_killed_suggest_leaves_no_temporary_prefect_server(tmp_path, how):
    """``themesift suggest`` with no PREFECT_API_URL starts Prefect's temporary API server; killing the
    command alone (its pid, not its group) with SIGKILL or SIGTERM must not leave the server running.
    SIGTERM ends it as Ctrl-C does: one ``themesift:`` line, no traceback, exit status 128 + 15. Ctrl-C in a
    terminal signals the whole process group: the server, in a session of its own, is still there to be told
    the run stopped, so the command ends with its one line and 130 (before, the server died with it and the
    command printed a hundred lines of Prefect's connection errors)."""
    home = prefect_home(tmp_path / "prefect-home")
    env = {**os.environ, "PREFECT_HOME": str(home), "THEMESIFT_HOME": str(tmp_path / "ws")}
    env.pop("PREFECT_API_URL", None)
    log = tmp_path / "suggest.log"
    run = start([sys.executable, "-m", "flows.cli", "suggest", str(TRANSCRIPTS), "--study", "killed"], env, log,
                cwd=ROOT)
    try:
        servers = wait_for("temporary Prefect server up", lambda: {
            pid: port for pid, port in temporary_servers(home).items() if healthy(port)}, 120, (run, log))
        if how == signal.SIGINT:  # as a terminal's Ctrl-C, inside the flow: the command's whole process group
            wait_for("the flow embedding", lambda: "Embedding" in log.read_text(errors="replace"), 120, (run, log),
                     every_s=0.05)
            os.killpg(run.pid, how)
        else:
            os.kill(run.pid, how)
        run.wait(120)
        deadline = time.monotonic() + 30  # the server may take a few seconds to shut down
        while temporary_servers(home) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = temporary_servers(home)
    finally:
        stop(run)  # its group: anything left behind by a failure goes too
    assert servers and not left, f"server(s) {sorted(left)} left running after {how.name}"
    if how != signal.SIGKILL:
        assert run.returncode == (130 if how == signal.SIGINT else 128 + signal.SIGTERM)
        output = log.read_text()
        assert "Traceback" not in output and "Crash detected" not in output  # the command's line alone says it
        name = "SIGINT" if how == signal.SIGINT else "SIGTERM"
        assert output.splitlines()[-1] == (f"themesift: stopped by {name}; what it had not finished is not stored "
                                           "(earlier runs are kept)")


def test_a_run_with_loopback_down_fails_at_once_with_one_line(tmp_path):
    """In a network namespace of its own, loopback is down: Prefect's temporary API server cannot be reached.
    The run must say so in one line (exit 2) instead of waiting for Prefect's startup timeout (105 s) and
    printing its traceback. The bound is generous: the point is minutes against seconds."""
    prefix = network_namespace()
    if prefix is None:
        pytest.skip("no network namespace here (unshare -n and unshare -rn refused)")
    env = {**os.environ, "PREFECT_HOME": str(prefect_home(tmp_path / "prefect-home")),
           "THEMESIFT_HOME": str(tmp_path / "ws")}
    env.pop("PREFECT_API_URL", None)
    began = time.monotonic()
    done = subprocess.run(prefix + [sys.executable, "-m", "flows.cli", "suggest", str(TRANSCRIPTS), "--study",
                                    "offline"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    took = time.monotonic() - began
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("themesift:")]
    assert lines[-1].startswith("themesift: the loopback network (127.0.0.1) is down"), done.stderr[-2000:]
    assert "PREFECT_API_URL" in lines[-1]
    assert took < 60, f"took {took:.0f} s"


def test_a_team_prefect_server_that_is_down_ends_the_run_in_one_line(tmp_path):
    """PREFECT_API_URL names a team's server that is down (nothing listens there): one line that names it and
    what to do (exit 2), before anything is stored; Prefect alone printed a hundred lines of retries."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens on it
    env = {**os.environ, "THEMESIFT_HOME": str(tmp_path / "ws"), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    done = subprocess.run([sys.executable, "-m", "flows.cli", "suggest", str(TRANSCRIPTS), "--study", "down"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("themesift:")]
    assert lines[-1].startswith(f"themesift: no Prefect server answers at PREFECT_API_URL=http://127.0.0.1:{port}/api")
    with Store.from_config({"workspace": str(tmp_path / "ws")}).sessions() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 0


def test_a_temporary_prefect_server_that_cannot_start_ends_the_run_in_one_line(tmp_path):
    """``themesift suggest`` starts Prefect's temporary API server as its first step (flows.runtime.
    start_temporary_api). One whose database cannot be opened ends at start: the command says so in one
    line naming what to do (exit 2) and leaves no server behind; Prefect's own start would have tried other
    ports until its startup timeout and then printed a traceback."""
    home = prefect_home(tmp_path / "prefect-home")
    env = {**os.environ, "PREFECT_HOME": str(home), "THEMESIFT_HOME": str(tmp_path / "ws"),
           "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'no-such-folder' / 'p.db'}"}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run([sys.executable, "-m", "flows.cli", "suggest", str(TRANSCRIPTS), "--study", "nope"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("themesift: Prefect's temporary API server ended at start"), done.stderr[-2000:]
    assert "PREFECT_API_URL" in last and "themesift: Traceback" not in done.stderr
    assert not temporary_servers(home)
    assert not (tmp_path / "ws").exists() or not list((tmp_path / "ws").rglob("*.db"))  # nothing stored


def _copy_of_example(example_study, folder: Path) -> dict:
    """The example study's database copied into ``folder``; the environment of a command that uses it."""
    import sqlite3

    folder.mkdir(parents=True)
    with sqlite3.connect(example_study.config["store"]["url"].removeprefix("sqlite:///")) as source, \
            sqlite3.connect(folder / "themesift.db") as copy:
        source.backup(copy)
    return _command_env(folder)


def _command_env(workspace: Path) -> dict:
    env = {**os.environ, "PREFECT_HOME": str(prefect_home(workspace.parent / "prefect-home")),
           "THEMESIFT_HOME": str(workspace)}
    env.pop("PREFECT_API_URL", None)
    return env


def _run_with_read_only(folder: Path, command: list[str], env: dict) -> subprocess.CompletedProcess:
    """``command`` run while ``folder`` is read-only: a read-only bind mount in a mount namespace of its own as
    root (root ignores file modes), chmod a-w on the folder and its files otherwise."""
    if os.geteuid() != 0:
        for path in (folder, *folder.iterdir()):
            path.chmod(0o555)
    else:
        command = read_only(folder, command)
        if command is None:
            pytest.skip("running as root without a mount namespace (unshare -m refused): no read-only folder")
    try:
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    finally:
        for path in (folder, *folder.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)


def _one_line(finished: subprocess.CompletedProcess) -> str:
    assert finished.returncode == 2, finished.stderr[-3000:]
    assert "Traceback" not in finished.stderr and "Traceback" not in finished.stdout, finished.stderr[-3000:]
    lines = [line for line in finished.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("themesift: "), finished.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("command", [["themes", "--study", "ipt"], ["suggest", str(TRANSCRIPTS), "--study", "ipt",
                                                                      "--force"]], ids=["themes", "suggest"])
def test_a_read_only_workspace_ends_in_one_line_naming_it(example_study, tmp_path, command):
    """A workspace on a read-only mount (real: a read-only bind mount in a mount namespace of the command's own,
    as root ignores file modes; chmod where the tests do not run as root): one line naming the database and
    the folder, no traceback, and the store as it was, even for the read-only ``themes``."""
    workspace = tmp_path / "ws"
    env = _copy_of_example(example_study, workspace)
    before = (workspace / "themesift.db").read_bytes()
    finished = _run_with_read_only(workspace, [sys.executable, "-m", "flows.cli", *command], env)
    line = _one_line(finished)
    assert line.startswith(f"themesift: {workspace / 'themesift.db'}: cannot be written: {workspace} is read-only ("
                           ), line
    assert line.endswith("make it writable, or set THEMESIFT_HOME (store.workspace) to a writable folder")
    assert (workspace / "themesift.db").read_bytes() == before


def test_a_full_disk_ends_in_one_line_naming_the_store(tmp_path):
    """The workspace on a real 1.5 MB tmpfs (the example study's store needs about 2.6 MB): the run stops at
    the first write that finds the disk full, with one line naming the database and what to do; Prefect's
    tracebacks of the failed task are not printed."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    config = tmp_path / "quiet.yaml"
    config.write_text("embed: {progress_min_texts: 1000000}\n", encoding="utf-8")
    command = on_tmpfs(workspace, 1500, [sys.executable, "-m", "flows.cli", "suggest", str(TRANSCRIPTS),
                                         "--study", "ipt", "--config", str(config)])
    if command is None:
        pytest.skip("no mount namespace here (unshare -m and unshare -rm refused): no tmpfs to fill")
    finished = subprocess.run(command, cwd=ROOT, env=_command_env(workspace), capture_output=True, text=True,
                              timeout=600)
    line = _one_line(finished)
    assert line.startswith(f"themesift: {workspace / 'themesift.db'}: cannot be written: the disk is full ("), line
    assert line.endswith("free some space, or set THEMESIFT_HOME (store.workspace) to a folder on another disk. "
                         "Earlier runs are kept")


def test_an_export_to_a_read_only_folder_ends_in_one_line_naming_the_file(example_study, tmp_path):
    """A file written beside the store (here an export asked for in a read-only folder) fails with an OSError,
    not a database error: the same one line, naming the file."""
    env = _copy_of_example(example_study, tmp_path / "ws")
    out = tmp_path / "out"
    out.mkdir()
    finished = _run_with_read_only(out, [sys.executable, "-m", "flows.cli", "export", "suggestions", "--study", "ipt",
                                         "-o", str(out / "s.csv")], env)
    line = _one_line(finished)
    assert line.startswith(f"themesift: {out / 's.csv'}") and f": cannot be written: {out} is read-only (" in line, line
    assert not (out / "s.csv").exists()


@pytest.mark.parametrize("command", [["themes", "--study", "ipt"], ["suggest", str(TRANSCRIPTS), "--study", "ipt"]],
                         ids=["themes", "suggest"])
def test_a_damaged_database_or_a_workspace_that_cannot_be_made_ends_in_one_line(tmp_path, command):
    """A file that is not a database where the store should be (a failed copy, a truncated backup) gave 270
    lines of traceback; so did a workspace under a plain file. The damaged file is left as it was."""
    garbage = tmp_path / "ws" / "themesift.db"
    garbage.parent.mkdir()
    garbage.write_bytes(b"not a database " * 4000)
    env = _command_env(garbage.parent)
    for workspace, said in ((garbage.parent, "not a Themesift database, or a damaged one"),
                            (garbage / "sub", "cannot make the store's folder")):
        env["THEMESIFT_HOME"] = str(workspace)
        finished = subprocess.run([sys.executable, "-m", "flows.cli", *command], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=600)
        assert said in _one_line(finished)
    assert garbage.read_bytes() == b"not a database " * 4000
