"""Helpers for tests that start real servers: a Prefect server, processes stopped by their group ids."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict, log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """A process in a session of its own, so that it and its children stop together."""
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(log: Path, n: int = 4000) -> str:
    return log.read_text(errors="replace")[-n:] if log.exists() else "(no log)"


def wait_for(what: str, condition, timeout_s: float, *procs_and_logs, every_s: float = 0.5):
    """Poll ``condition`` until it returns something truthy; fail with the logs if a process dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        for proc, log in procs_and_logs:
            if proc.poll() is not None:
                pytest.fail(f"{what}: {proc.args[:3]} exited with {proc.returncode}\n{tail(log)}")
        time.sleep(every_s)
    logs = "\n".join(f"--- {log.name}\n{tail(log)}" for _, log in procs_and_logs)
    pytest.fail(f"{what}: not within {timeout_s} s\n{logs}")


@functools.cache
def _migrated_prefect_database() -> Path:
    """A Prefect API database migrated once per test session (``prefect server database upgrade``)."""
    folder = Path(tempfile.mkdtemp(prefix="themesift-test-prefect-db-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(folder)
    subprocess.run([str(BIN / "prefect"), "server", "database", "upgrade", "-y"], env=env, check=True,
                   capture_output=True, timeout=300)
    return folder / "prefect.db"


def prefect_home(folder: Path) -> Path:
    """``folder`` as a Prefect home whose API database is already migrated, as on a user's second run: a
    new home's temporary API server first spends 8-13 s (2 cores) migrating it, which no test here is about
    (the session's own home, shared by the other command tests, is migrated on first use as a user's is)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_migrated_prefect_database(), folder / "prefect.db")
    return folder


def prefect_env(folder: Path, port: int) -> dict:
    """Environment for processes that talk to a Prefect server on ``port`` (and for the server itself)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "THEMESIFT_"))}
    env.update({
        "PREFECT_HOME": str(folder / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{folder / 'prefect-server.db'}",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PYTHONUNBUFFERED": "1",
    })
    return env


@contextmanager
def prefect_server(folder: Path) -> Iterator[dict]:
    """A real ``prefect server start`` on loopback; yields the environment that points at it."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = prefect_env(folder, port)
    shutil.copyfile(_migrated_prefect_database(), folder / "prefect-server.db")  # migrated: see prefect_home
    log = folder / "prefect-server.log"
    server = start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, log)
    try:
        wait_for("Prefect server healthy", lambda: healthy(port), 120, (server, log))
        yield env
    finally:
        stop(server)


def temporary_servers(prefect_home: Path) -> dict[int, int]:
    """``{pid: port}`` of the live (not zombie) temporary Prefect API servers started with ``prefect_home`` as
    PREFECT_HOME: found by their command line and environment in /proc, whoever their parent is now."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            if b"--factory" not in command or b"--port" not in command:  # a uvicorn, not a watchdog naming it
                continue
            if command[command.index(b"--factory") + 1] != b"prefect.server.api.server:create_app":
                continue
            if f"PREFECT_HOME={prefect_home}".encode() not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
        except OSError:  # gone meanwhile
            continue
        found[int(entry.name)] = int(command[command.index(b"--port") + 1])
    return found


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@functools.cache
def mount_namespace() -> list[str] | None:
    """The ``unshare`` prefix that gives a command a mount namespace of its own, where it may mount a real tmpfs
    or a read-only bind mount that vanish with it: ``unshare -m`` as root, ``unshare -rm`` (a user namespace)
    otherwise; None where neither is allowed."""
    for prefix in (["unshare", "-m"], ["unshare", "-r", "-m"]):
        try:
            probe = subprocess.run(prefix + ["sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                                   capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return None


def on_tmpfs(folder: Path, size_kb: int, command: list[str]) -> list[str] | None:
    """``command`` run with a fresh tmpfs of ``size_kb`` KB mounted on ``folder`` (a full disk, made real)."""
    prefix = mount_namespace()
    return None if prefix is None else prefix + [
        "sh", "-c", f'mount -t tmpfs -o size={size_kb}k tmpfs "$0" && exec "$@"', str(folder), *command]


def read_only(folder: Path, command: list[str]) -> list[str] | None:
    """``command`` run with ``folder`` bind-mounted read-only on itself (root is refused writes too)."""
    prefix = mount_namespace()
    return None if prefix is None else prefix + [
        "sh", "-c", 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"', str(folder), *command]


@functools.cache
def network_namespace() -> list[str] | None:
    """The ``unshare`` prefix that runs a command in a network namespace of its own, where loopback is down:
    ``unshare -n`` as root, ``unshare -rn`` otherwise; None where neither is allowed."""
    for prefix in (["unshare", "-n"], ["unshare", "-r", "-n"]):
        try:
            probe = subprocess.run(prefix + ["true"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return None
