"""``themesift schedule``: run the suggest flow on a schedule, served to a Prefect server.

* ``themesift schedule --study NAME (--cron EXPR | --interval SECONDS) [--folder PATH] [--config FILE]``
  creates (or updates) the deployment ``suggest-themes/suggest-<study slug>`` on the Prefect server that
  ``PREFECT_API_URL`` points to and serves it from this process (``flow.serve``): every scheduled run
  reads the whole folder again. The command blocks; Ctrl+C stops it and pauses the schedule.
* ``themesift schedule --list``: the Themesift deployments on the server, their schedules, next and last runs.
* ``themesift schedule --remove --study NAME``: deletes that study's deployment (a ``themesift schedule``
  still serving it notices within seconds and stops).

A schedule needs a real Prefect server (``prefect server start``): the temporary API that ``themesift
suggest`` starts on its own lives only as long as one process, so no one would be there to start the
scheduled runs. Registered in ``flows.commands.build_parser`` through :func:`add_commands`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import flows  # noqa: F401  (Prefect settings before Prefect is imported)
from flows.options import checked, load
from pipeline.config import number

SUGGEST_FLOW = "suggest-themes"         # the @flow name of flows.suggest.suggest_flow
TAG = "themesift"                       # every Themesift deployment carries it (prefect.yaml's too)
WATCH_SECONDS = 5.0                     # how often a serving process looks at its deployment's runs
INTERVAL = number(above=0, high=365 * 86400, what="a number of seconds")  # --interval, checked as a setting
START_SERVER_HELP = """\
Start one in another terminal (it keeps its database in ~/.prefect; the UI is at http://127.0.0.1:4200):

    prefect server start --analytics-off

then point Themesift at it, in this terminal and in any that runs themesift schedule:

    export PREFECT_API_URL=http://127.0.0.1:4200/api
"""


class ScheduleError(Exception):
    """A schedule command that cannot go on; the message says what to do."""


def slug(study: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in study.lower()).strip("-") or "study"


def deployment_name(study: str) -> str:
    """The deployment of a study's schedule (the flow's name comes first in Prefect's full name)."""
    return f"suggest-{slug(study)}"


def full_name(study: str) -> str:
    return f"{SUGGEST_FLOW}/{deployment_name(study)}"


# -- command line ---------------------------------------------------------------------------------
def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "schedule", help="suggest themes on a schedule as transcripts arrive (needs a Prefect server)",
        description="Serve a scheduled deployment of the suggest flow for one study; each run reads the "
                    "whole folder again. Needs a running Prefect server and PREFECT_API_URL (see docs/scaling.md).",
        epilog="examples:\n"
               "  themesift schedule --study my-study --folder transcripts/ --cron '0 7 * * 1-5'\n"
               "  themesift schedule --study my-study --folder transcripts/ --interval 3600\n"
               "  themesift schedule --list\n"
               "  themesift schedule --remove --study my-study",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", help="study name (its runs are stored under it, as with themesift suggest)")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--cron", metavar="EXPR", help="cron expression, e.g. '0 7 * * 1-5' (07:00 on weekdays)")
    when.add_argument("--interval", type=checked(INTERVAL, "--interval"), metavar="SECONDS",
                      help="run every this many seconds (at most 365 days)")
    p.add_argument("--timezone", metavar="ZONE",
                   help="IANA time zone of a --cron schedule, e.g. Europe/London (default: this machine's)")
    p.add_argument("--folder", type=Path, help="folder (or file) of transcripts to read (default: the current folder)")
    p.add_argument("--config", type=Path, help="YAML file overriding configs/default.yaml (read once, now)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="list Themesift deployments, their schedules and runs")
    what.add_argument("--remove", action="store_true", help="delete the study's scheduled deployment")
    p.set_defaults(handler=cmd_schedule)


def cmd_schedule(args: argparse.Namespace) -> int:
    try:
        if args.list:
            return list_schedules()
        if args.remove:
            if not args.study:
                raise ScheduleError("--remove needs --study NAME")
            return remove_schedule(args.study)
        if not args.study:
            raise ScheduleError("--study NAME is required (or --list)")
        if args.cron is None and args.interval is None:
            raise ScheduleError("say when to run: --cron EXPR or --interval SECONDS")
        return serve_schedule(args)
    except ScheduleError as exc:
        print(f"themesift: {exc}", file=sys.stderr)
        return 2


# -- the server -----------------------------------------------------------------------------------
def require_server() -> str:
    """PREFECT_API_URL, after checking that a server answers there; never a temporary server."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise ScheduleError("a schedule needs a running Prefect server, and PREFECT_API_URL is not set.\n"
                            + START_SERVER_HELP)
    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is not None:
        raise ScheduleError(f"no Prefect server answers at PREFECT_API_URL={url} ({type(problem).__name__}: "
                            f"{problem}).\n" + START_SERVER_HELP)
    return url


def ui_url() -> str | None:
    from prefect.settings import PREFECT_UI_URL

    return PREFECT_UI_URL.value() or None


# -- serve ----------------------------------------------------------------------------------------
def serve_schedule(args: argparse.Namespace) -> int:
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import EntrypointType
    from prefect.exceptions import ObjectNotFound
    from prefect.schedules import Cron, Interval

    from flows.options import config_from_args
    from models.store import database_url, workspace_dir
    from pipeline.config import url_without_password

    folder = (args.folder or Path.cwd()).expanduser().resolve()
    if not folder.exists():
        raise ScheduleError(f"no such folder: {folder}")
    config = config_from_args(args)
    # The runs may start from another folder (a worker): make the workspace absolute now.
    config["store"]["workspace"] = str(workspace_dir(config["store"]))
    if args.cron is not None:
        tz = args.timezone or local_timezone()
        if not _known_timezone(tz):
            raise ScheduleError(f"unknown time zone {tz!r}: use an IANA name such as Europe/London or UTC")
        try:
            schedule = Cron(args.cron, timezone=tz)
        except ValueError as exc:
            raise ScheduleError(f"cannot use --cron {args.cron!r} --timezone {tz}: {_first_line(exc)}") from None
        when = f"cron '{args.cron}' ({tz})"
    else:
        if args.timezone:
            raise ScheduleError("--timezone goes with --cron")
        schedule = Interval(timedelta(seconds=args.interval))
        when = f"every {_duration(args.interval)}"
    url = require_server()
    _refuse_other_study(args.study)

    from flows.suggest import suggest_flow

    name = deployment_name(args.study)
    print(f"Serving deployment '{full_name(args.study)}' of study '{args.study}', {when}.\n"
          f"  reads:    {folder}\n"
          f"  stores:   {url_without_password(database_url(config['store']))}\n"
          f"  server:   {url}" + (f"  (UI: {ui_url()}/deployments)" if ui_url() else "") + "\n"
          f"Stop with Ctrl+C (the schedule pauses until this command runs again); delete it with\n"
          f"  themesift schedule --remove --study {_quote(args.study)}\n"
          f"Run it now, besides the schedule: prefect deployment run '{full_name(args.study)}'", flush=True)
    watcher = _Watcher(args.study, config)
    watcher.start()
    try:
        suggest_flow.serve(
            name=name,
            schedule=schedule,
            parameters={"paths": [str(folder)], "study": args.study, "config": config},
            description=f"Suggest themes for study '{args.study}' from {folder} ({when}); "
                        f"created by themesift schedule.",
            tags=[TAG, f"study:{slug(args.study)}"],
            # One run at a time per study: a tick that comes while the last run is still going is cancelled.
            global_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
            # An installed package, not a file next to the working directory: any folder can serve it.
            entrypoint_type=EntrypointType.MODULE_PATH,
            print_starting_message=False,
        )
    except ObjectNotFound:
        if not watcher.removed:  # serve pauses the schedule on the way out: fails once it was deleted
            raise
    finally:
        watcher.stop()
    print(f"Stopped serving '{full_name(args.study)}'.", flush=True)
    return 0


def _refuse_other_study(study: str) -> None:
    """Two study names with one slug ('My study', 'my-study') would share a deployment: refuse the second."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            existing = client.read_deployment_by_name(full_name(study))
        except ObjectNotFound:
            return
    other = (existing.parameters or {}).get("study")
    if other not in (None, study):
        raise ScheduleError(f"deployment '{full_name(study)}' already belongs to study '{other}'; "
                            f"remove it first (themesift schedule --remove --study {_quote(other)}) "
                            "or choose a study name that differs in more than case and punctuation")


class _Watcher:
    """Beside ``serve``: reports each finished run, and stops serving once the deployment is deleted."""

    def __init__(self, study: str, config: dict):
        self.study, self.config = study, config
        self.started = datetime.now().astimezone()
        self.reported: set[Any] = set()
        self.last_stored: int | None = None
        self.removed = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="themesift-schedule-watch", daemon=True)

    def start(self) -> None:
        self.last_stored = self._latest_stored()[0]
        self._thread.start()

    def stop(self) -> None:
        self._done.set()

    def _loop(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        seen = False
        with get_client(sync_client=True) as client:
            while not self._done.wait(WATCH_SECONDS):
                try:
                    deployment = client.read_deployment_by_name(full_name(self.study))
                except ObjectNotFound:
                    if seen:  # it existed while we served it, and now it is gone: --remove
                        print(f"Deployment '{full_name(self.study)}' was removed; stopping.", flush=True)
                        self.removed = True
                        self._done.set()
                        os.kill(os.getpid(), signal.SIGTERM)  # the runner shuts down gracefully on SIGTERM
                        return
                    continue
                except Exception:  # the server restarting, a network hiccup: look again later
                    continue
                seen = True
                try:
                    self._report(client, deployment.id)
                except Exception:
                    pass

    def _report(self, client, deployment_id) -> None:
        from prefect.client.schemas.filters import (
            FlowRunFilter, FlowRunFilterDeploymentId, FlowRunFilterEndTime, FlowRunFilterState,
            FlowRunFilterStateType)
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import FlowRunSort

        finished = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
                end_time=FlowRunFilterEndTime(after_=self.started),
                state=FlowRunFilterState(type=FlowRunFilterStateType(
                    any_=[StateType.COMPLETED, StateType.FAILED, StateType.CRASHED]))),
            sort=FlowRunSort.END_TIME_DESC, limit=20)
        for run in reversed(finished):
            if run.id in self.reported:
                continue
            self.reported.add(run.id)
            try:
                stored, summary = self._latest_stored()
            except Exception:  # the store unreachable (the reason the run failed, as like as not)
                stored, summary = None, ""
            if stored is not None and stored != self.last_stored:
                self.last_stored = stored
                what = summary
            else:
                what = "nothing new stored"
            why = " ".join((run.state.message or "").split()) if run.state and run.state_type != StateType.COMPLETED \
                else ""
            why = why if len(why) <= 240 else why[:237] + "..."
            print(f"{_local(run.end_time)}  flow run {run.name}: {run.state_name}"
                  + (f" ({why})" if why else "") + f"; {what}", flush=True)

    def _latest_stored(self) -> tuple[int | None, str]:
        from models.store import Store, StudyNotFoundError

        try:
            store = Store.from_config(self.config["store"])
            with store.sessions() as session:
                run = store.latest_run(session, self.study, completed=False)
                if run is None:
                    return None, ""
                inputs = len((run.manifest or {}).get("inputs") or [])
                if run.status == "completed":
                    return run.id, (f"run {run.id} stored: {run.n_themes} candidate themes from {inputs} sources "
                                    f"(themesift themes --study {_quote(self.study)})")
                return run.id, f"run {run.id} {run.status}: {run.message}"
        except StudyNotFoundError:
            return None, ""
        except Exception as exc:  # the report is a courtesy: never stop serving for it
            return None, f"(could not read the store: {exc})"


# -- list and remove ------------------------------------------------------------------------------
def list_schedules() -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags

    url = require_server()
    with get_client(sync_client=True) as client:
        deployments = client.read_deployments(deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[TAG])))
        if not deployments:
            print(f"No Themesift deployments on {url}.\n"
                  "Create one with: themesift schedule --study NAME --folder PATH (--cron EXPR | --interval SECONDS)")
            return 0
        flow_names = {}
        print(f"Themesift deployments on {url}:")
        for d in sorted(deployments, key=lambda d: d.name):
            if d.flow_id not in flow_names:
                flow_names[d.flow_id] = client.read_flow(d.flow_id).name
            _print_deployment(client, d, flow_names[d.flow_id])
    return 0


def _print_deployment(client, d, flow_name: str) -> None:
    from prefect.client.schemas.filters import (
        FlowRunFilter, FlowRunFilterDeploymentId, FlowRunFilterState, FlowRunFilterStateType)
    from prefect.client.schemas.objects import DeploymentStatus, StateType
    from prefect.client.schemas.sorting import FlowRunSort

    params = d.parameters or {}
    schedules = [describe_schedule(s.schedule) + ("" if s.active else " (inactive)") for s in d.schedules] or [
        f"none (run it with: prefect deployment run '{flow_name}/{d.name}')"]
    paused = d.paused or bool(d.schedules) and not any(s.active for s in d.schedules)
    polled = ""
    if d.last_polled:
        ago = (datetime.now(d.last_polled.tzinfo) - d.last_polled).total_seconds()
        polled = f" (last polled {_duration(round(max(ago, 0)))} ago)"
    served = ("served by a worker" if d.work_pool_name else "served") + polled if d.status == DeploymentStatus.READY else (
        f"waiting for a worker of pool '{d.work_pool_name}'" if d.work_pool_name
        else "not served (run themesift schedule again to serve it)")
    print(f"\n  {flow_name}/{d.name}" + (f"   study '{params['study']}'" if "study" in params else ""))
    print(f"    schedule:  {'; '.join(schedules)}" + ("   PAUSED" if paused else ""))
    print(f"    status:    {served}")
    if params.get("paths"):
        print(f"    reads:     {', '.join(map(str, params['paths']))}")

    def runs(types, sort, limit):
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[d.id]),
                                          state=FlowRunFilterState(type=FlowRunFilterStateType(any_=types))),
            sort=sort, limit=limit)

    upcoming = runs([StateType.SCHEDULED], FlowRunSort.EXPECTED_START_TIME_ASC, 3)
    print("    next runs: " + (", ".join(_local(r.expected_start_time) for r in upcoming) or
                               ("none (paused)" if paused else "none" if not d.schedules else "none scheduled yet")))
    last = runs([StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.RUNNING],
                FlowRunSort.EXPECTED_START_TIME_DESC, 1)
    if last:
        r = last[0]
        print(f"    last run:  {r.name} {r.state_name}, started {_local(r.start_time)}"
              + (f", took {_duration(r.total_run_time.total_seconds())}" if r.state_type != StateType.RUNNING else ""))
    else:
        print("    last run:  none yet")


def remove_schedule(study: str) -> int:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    require_server()
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(full_name(study))
        except ObjectNotFound:
            print(f"themesift: no deployment '{full_name(study)}' for study '{study}' "
                  "(themesift schedule --list shows those there are)", file=sys.stderr)
            return 1
        # Deleting a deployment under a running flow run fails that run (its concurrency slot goes with the
        # deployment): pause first, let a run in progress finish, then delete.
        client.pause_deployment(deployment.id)
        _wait_for_runs_in_progress(client, deployment.id)
        client.delete_deployment(deployment.id)
    print(f"Deleted deployment '{full_name(study)}' and its scheduled runs; a themesift schedule serving it "
          "stops within seconds. Stored results are kept.")
    return 0


def _wait_for_runs_in_progress(client, deployment_id, poll_s: float = 1.0) -> None:
    import time

    from prefect.client.schemas.filters import (
        FlowRunFilter, FlowRunFilterDeploymentId, FlowRunFilterState, FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType

    told: set = set()
    quiet = 0
    while quiet < 2:  # twice in a row: a run the serving process was about to start shows up in between
        active = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]))))
        quiet = 0 if active else quiet + 1
        for run in active:
            if run.id not in told:
                told.add(run.id)
                print(f"Schedule paused; waiting for flow run {run.name} ({run.state_name}) to finish "
                      "(Ctrl+C leaves the deployment paused; run --remove again later).", flush=True)
        time.sleep(poll_s)


# -- prefect.yaml ---------------------------------------------------------------------------------
def deployment_config(config_file: str | None = None, overrides: dict | None = None) -> dict[str, dict]:
    """A ``prefect deploy`` build step: the full configuration, for ``config: "{{ themesift.config }}"``.

    The flows take a complete configuration; this step builds it when deploying, from the packaged
    defaults, a study's YAML (``config_file``, relative to the folder ``prefect deploy`` runs in) and
    ``overrides``, exactly as ``themesift suggest --config FILE`` does, so prefect.yaml need not copy it.
    """

    return {"config": load(config_file, overrides)}


# -- small helpers --------------------------------------------------------------------------------
def describe_schedule(schedule: Any) -> str:
    if getattr(schedule, "interval", None) is not None:
        return f"every {_duration(schedule.interval.total_seconds())}"
    if getattr(schedule, "cron", None) is not None:
        return f"cron '{schedule.cron}' ({schedule.timezone or 'UTC'})"
    if getattr(schedule, "rrule", None) is not None:
        return f"rrule '{schedule.rrule}'"
    return str(schedule)


def local_timezone() -> str:
    """This machine's IANA time zone name (cron schedules would otherwise run on UTC), else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    try:
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    except OSError:
        pass
    for name in candidates:
        if name and ("/" in name or name == "UTC") and _known_timezone(name):
            return name
    return "UTC"


def _known_timezone(name: str) -> bool:
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(name)
        return True
    except (ValueError, OSError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        return False


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{round(seconds, 1):g} s"


def _local(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if moment else "-"


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
