"""Prefect settings for Themesift: process-wide defaults set before Prefect is imported, and per-run ones."""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

RUN_MARKER = "THEMESIFT_RUN"  # in the environment of this process, so of every process it starts
SERVER_COMMAND = "prefect.server.api.server:create_app"  # in the command line of Prefect's temporary API
# The watchdog: waits for its standard input to close (the command ended, however it ended: even SIGKILL
# closes the pipe), then stops the temporary API servers that carry the command's marker: SIGTERM, then
# SIGKILL after 5 s. pidfds: a process found is the one signalled, even if its pid were reused meanwhile.
_WATCHDOG = """
import os, select, signal, sys
for s in (signal.SIGINT, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
marker, needle = sys.argv[1].encode(), sys.argv[2].encode()
sys.stdin.buffer.read()
found = []
for name in os.listdir("/proc"):
    if name.isdigit() and name != str(os.getpid()):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if needle not in f.read():
                    continue
            with open(f"/proc/{name}/environ", "rb") as f:
                if marker in f.read().split(b"\\0"):
                    found.append(os.pidfd_open(int(name)))
        except OSError:
            continue
for fd in found:
    try:
        signal.pidfd_send_signal(fd, signal.SIGTERM)
    except ProcessLookupError:
        pass
for fd in found:
    if not select.select([fd], [], [], 5)[0]:
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            pass
"""
_watchdog: subprocess.Popen | None = None
_temporary_api: tuple[subprocess.Popen, str] | None = None  # start_temporary_api: the process, its health URL


def configure_prefect() -> None:
    """Defaults only: anything the user set (PREFECT_API_URL for a real server, say) wins.

    - analytics off: transcripts are sensitive and Themesift never phones home;
    - PREFECT_HOME under the user's cache folder, out of their way, instead of ~/.prefect;
    - with no PREFECT_API_URL, Prefect starts a temporary local API for the process.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    os.environ.setdefault("PREFECT_HOME", str(cache / "themesift" / "prefect"))
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)  # Prefect will not
    # A 2-core laptop can take longer than Prefect's default to bring up the temporary server.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


class LoopbackDownError(RuntimeError):
    """The temporary Prefect API server could not be reached on 127.0.0.1 (a user can fix it)."""


def require_loopback(timeout_s: float = 2.0) -> None:
    """Before a flow starts Prefect's temporary API server (no PREFECT_API_URL), check that 127.0.0.1 takes a
    connection: with loopback down Prefect waits for the server's whole startup timeout (105 s measured) and
    fails with a message that does not say why. A listening socket and one connection to it: milliseconds.
    With a server :func:`start_temporary_api` started, waits until it answers instead."""
    if _temporary_api is not None:
        _wait_for_temporary_api()
        return
    if os.environ.get("PREFECT_API_URL"):
        require_server_answers(os.environ["PREFECT_API_URL"])
        return
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            with socket.create_connection(server.getsockname(), timeout=timeout_s):
                pass
    except OSError as exc:
        raise LoopbackDownError(
            f"the loopback network (127.0.0.1) is down ({exc.strerror or exc}), so Prefect's temporary API "
            "server cannot be reached; bring loopback up (ip link set lo up) or set PREFECT_API_URL to a "
            "running Prefect server") from None


class ServerDownError(RuntimeError):
    """No Prefect server answers at the PREFECT_API_URL the user set (a team's server down or restarting)."""


def require_server_answers(url: str, timeout_s: float = 5.0) -> None:
    """One health request to the Prefect server at ``url`` (PREFECT_API_URL): a server that is down fails the
    command at once in one line, where Prefect would print a hundred lines of retries."""
    import httpx

    try:
        ok = httpx.get(url.rstrip("/") + "/health", timeout=timeout_s).status_code == 200
        problem = "" if ok else "it did not answer its health check"
    except httpx.HTTPError as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        raise ServerDownError(f"no Prefect server answers at PREFECT_API_URL={url} ({problem}); start it, or unset "
                              "PREFECT_API_URL to run on a temporary server of this command's own")


class TemporaryApiError(RuntimeError):
    """The temporary Prefect API server this command started did not come up."""


def start_temporary_api() -> None:
    """Start Prefect's temporary API server now, for a command (a process) that will run a flow.

    Without PREFECT_API_URL Prefect starts this server itself when the flow first needs its API: it imports the
    server's code in this process (about 5 s on 2 cores), then starts it in a new one and waits for it (about
    7 s more), half of a small study's run. Started here, at the command's first line, with the command Prefect
    uses for it (uvicorn on 127.0.0.1 with Prefect's app, its ephemeral settings), the server loads while the
    command loads its stages, and this process never imports it. PREFECT_API_URL then points at it, and
    :func:`require_loopback`, which every flow entry point calls first, waits for it to answer. It stops when
    the command ends (atexit; :func:`guard_temporary_server`'s watchdog after a kill: call that first so the
    server carries the command's marker). Nothing where PREFECT_API_URL is set or loopback is down (the flow's
    check then says why). For the command line only: it sets PREFECT_API_URL for the whole process.
    """
    global _temporary_api
    if _temporary_api is not None or os.environ.get("PREFECT_API_URL"):
        return
    try:
        require_loopback()
    except LoopbackDownError:
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site = Path(importlib.util.find_spec("prefect").origin).parent.parent
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "--app-dir", str(site), "--factory", SERVER_COMMAND,
                                "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
                               env=env, start_new_session=True)  # Ctrl-C in a terminal reaches its whole process
    # group: in its own session the server lives on until this command has told it the run was stopped
    atexit.register(_stop_temporary_api)
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    _temporary_api = (process, f"http://127.0.0.1:{port}/api/health")


def temporary_api_started() -> bool:
    """Whether PREFECT_API_URL is the temporary server :func:`start_temporary_api` started (not a real one)."""
    return _temporary_api is not None


def _wait_for_temporary_api() -> None:
    import httpx

    process, health = _temporary_api
    timeout_s = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS") or 90)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TemporaryApiError(f"Prefect's temporary API server ended at start (exit code {process.returncode}); "
                                    "its messages are above. Set PREFECT_API_URL to a running Prefect server instead")
        try:
            if httpx.get(health, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TemporaryApiError(f"Prefect's temporary API server did not answer at {health} within "
                            f"{timeout_s:.0f} s; set PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS "
                            "higher, or PREFECT_API_URL to a running Prefect server")


def _stop_temporary_api() -> None:
    if _temporary_api is None or _temporary_api[0].poll() is not None:
        return
    process = _temporary_api[0]
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def heartbeats_off_without_server() -> Iterator[None]:
    """Flow-run heartbeats let a Prefect server mark runs that crashed. Without PREFECT_API_URL the
    API is a temporary one that ends with the process, so nobody reads them, and they cost time:
    Prefect waits up to a second at the end of every run for the heartbeat thread to stop
    (about 0.4 s a run measured here). With a real server they stay on."""
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    if PREFECT_API_URL.value() and not temporary_api_started():
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def forget_unused_reduced_spaces(used: str | None, max_age_days: float | None) -> list[str]:
    """Delete cached reduced (UMAP) spaces that no run has used for ``max_age_days`` days.

    The reduce task's results live in Prefect's local result storage, one file per (vectors, UMAP
    settings) under the cache key; a study that grows every week leaves one behind per run. The file
    of the space this run used (``used``) is touched, so its age counts from its last use; a deleted
    space is only recomputed if it is ever needed again. Storage other than the local folder (a
    result-storage block on a Prefect server) is left to its owner. Returns the names deleted.
    """
    if max_age_days is None:
        return []
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK

    if PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK.value():
        return []
    folder = Path(PREFECT_LOCAL_STORAGE_PATH.value()).expanduser()
    if used and (folder / used).is_file():
        (folder / used).touch()
    cutoff = time.time() - float(max_age_days) * 86400
    deleted = []
    for path in folder.glob("reduce-*"):
        try:
            if path.name != used and path.stat().st_mtime < cutoff:
                path.unlink()
                deleted.append(path.name)
        except FileNotFoundError:  # another run deleted it first
            continue
    return deleted


def guard_temporary_server() -> None:
    """Make sure Prefect's temporary API server (started when a flow first runs with no PREFECT_API_URL)
    does not outlive this command, however it ends.

    Prefect stops the server at a normal exit and after Ctrl-C (atexit), but not after SIGKILL, nor after
    SIGTERM (no handler: no atexit); each such run left a uvicorn of about 230 MB behind. This process's
    environment gets a marker of its own (the server inherits it), and a small watchdog process (Linux:
    /proc and pidfds) holds a pipe from this one: when the pipe closes, it stops the servers with the
    marker. It costs one idle Python process; nothing polls. Once per process; nothing without /proc or
    with a real server (PREFECT_API_URL).
    """
    global _watchdog
    if _watchdog is not None or os.environ.get("PREFECT_API_URL") or not hasattr(os, "pidfd_open") \
            or not Path("/proc/self/environ").exists():
        return
    marker = f"{RUN_MARKER}={os.getpid()}-{secrets.token_hex(8)}"
    os.environ[RUN_MARKER] = marker.split("=", 1)[1]  # a themesift started by this one replaces it with its own
    _watchdog = subprocess.Popen([sys.executable, "-I", "-S", "-c", _WATCHDOG, marker, SERVER_COMMAND],
                                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)  # not ended by the terminal's Ctrl-C: by the pipe alone


#: Set by Ctrl-C or SIGTERM during a command: work in a task's thread (embedding) stops at its next batch
#: instead of running to its end while the main thread waits for it (a minute on 10,000 texts).
STOP = threading.Event()


def stop_requested() -> None:
    """Raise KeyboardInterrupt in a worker thread once the command was told to stop (:data:`STOP`)."""
    if STOP.is_set():
        raise KeyboardInterrupt("stopped")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside: SIGTERM ends a command as Ctrl-C does (KeyboardInterrupt in the main thread), so its context
    managers run (the study lock is released) and Prefect marks the run and stops its temporary server at
    exit; both set :data:`STOP` for work in other threads. The previous handlers are back afterwards;
    nothing changes outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        STOP.set()
        raise KeyboardInterrupt(signal.Signals(signum).name if signum != signal.SIGINT else "")

    STOP.clear()
    previous = {s: signal.signal(s, terminate) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class _WriteFaultsFilter(logging.Filter):
    """Drops Prefect's task and flow run error records (tracebacks included) about a store or file that cannot
    be written, and its "Crash detected!" records of a command told to stop: the command says each in one
    line (``flows.commands.run``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from models.store import WRITE_FAULT_ERRNOS, StoreWriteError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, StoreWriteError) or (isinstance(error, OSError) and error.errno in WRITE_FAULT_ERRNOS):
            return False
        if STOP.is_set() and "interrupt signal" in record.getMessage():  # Ctrl-C: the command says it in one line
            return False
        return "StoreWriteError" not in record.getMessage()  # "Finished in state Failed('... StoreWriteError: ...')"


def leave_write_faults_to_the_command() -> None:
    """Install :class:`_WriteFaultsFilter` on Prefect's run loggers (once per process)."""
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _WriteFaultsFilter) for f in logger.filters):
            logger.addFilter(_WriteFaultsFilter())


class _DrainNoticeFilter(logging.Filter):
    """Drops Prefect's "Still processing items: N items remaining..." warning: at the end of every command its
    events worker still sends the run's last events to the API (it goes on doing so), and the line read as
    if something had gone wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Still processing items")


def quiet_event_drain() -> None:
    """Install :class:`_DrainNoticeFilter` on Prefect's events worker logger (once per process)."""
    logger = logging.getLogger("EventsWorker")
    if not any(isinstance(f, _DrainNoticeFilter) for f in logger.filters):
        logger.addFilter(_DrainNoticeFilter())
