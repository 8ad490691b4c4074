"""``themesift schedule`` against a real Prefect server started here, and the repository's prefect.yaml.

The end-to-end test starts ``prefect server start`` (its own home and SQLite database under tmp_path,
analytics off), serves an interval schedule with ``themesift schedule``, waits for a stored run, drops
a fourth transcript into the folder, waits for a later run that read it, then lists and removes the
deployment. It polls, so it ends as soon as each condition holds; the timeouts are only ceilings. The
processes it starts are stopped by their process-group ids (tests/processes.py).
"""

from __future__ import annotations

import inspect
import shutil
import time
from pathlib import Path

import pytest
import yaml
from processes import BIN, free_port, start, stop, tail, wait_for

from flows.cli import main
from models.store import Store, StudyNotFoundError
from pipeline.config import default_config

ROOT = Path(__file__).resolve().parent.parent
TRANSCRIPTS = ROOT / "examples" / "ipt-study" / "transcripts"
FIRST = ["P01.txt", "P02.txt", "P05.txt"]
DROPPED = "P08.txt"


class _Phases:
    """Seconds since the test began at each step, kept in a file beside the logs and shown on failure."""

    def __init__(self, path: Path):
        self.path, self.t0 = path, time.monotonic()
        path.write_text("")

    def mark(self, what: str) -> None:
        with open(self.path, "a") as f:
            f.write(f"{time.monotonic() - self.t0:7.1f} s  {what}\n")

    def wait_for(self, what: str, condition, timeout_s: float, *procs_and_logs):
        try:
            value = wait_for(what, condition, timeout_s, *procs_and_logs)
        except BaseException:
            self.mark(f"gave up waiting for: {what}")
            print(self.path.read_text())
            raise
        self.mark(what)
        return value


_stores: dict[str, Store] = {}


def _latest_completed(store_cfg: dict, study: str):
    """(run id, input file names) of the study's latest completed run, or None while there is none."""
    db = Path(store_cfg["workspace"]) / "themesift.db"
    if not db.exists():
        return None
    try:
        if db.as_posix() not in _stores:
            _stores[db.as_posix()] = Store.from_config(store_cfg)
        store = _stores[db.as_posix()]
        with store.sessions() as session:
            run = store.latest_run(session, study)
            if run is None:
                return None
            return run.id, {i["name"] for i in run.manifest["inputs"]}
    except StudyNotFoundError:
        return None
    except Exception as exc:  # the flow may be creating the database this very moment
        if "locked" in str(exc) or "no such table" in str(exc) or "already exists" in str(exc):
            return None
        raise


def test_schedule_picks_up_a_dropped_transcript(prefect_server_env, tmp_path, capsys):
    folder = tmp_path / "incoming"
    folder.mkdir()
    for name in FIRST:
        shutil.copy(TRANSCRIPTS / name, folder / name)
    workspace = tmp_path / "work"
    store_cfg = {**default_config()["store"], "workspace": str(workspace)}
    config = tmp_path / "study.yaml"
    # Fewer re-clusterings than the default keep each run short; the schedule is what is under test.
    config.write_text(yaml.safe_dump({"store": {"workspace": str(workspace)},
                                      "rank": {"stability": {"n_resamples": 2}}}))
    phases = _Phases(tmp_path / "phases.txt")
    serve = None
    # serve asks the server for due runs every 10 s by default; 2 s only shortens the test.
    env = {**prefect_server_env, "DO_NOT_TRACK": "1", "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    serve_log = tmp_path / "serve.log"
    try:
        serve = start([str(BIN / "themesift"), "schedule", "--study", "s", "--interval", "5",
                       "--folder", str(folder), "--config", str(config)], env, serve_log)
        first_id, first_inputs = phases.wait_for(
            "a first scheduled run stored", lambda: _latest_completed(store_cfg, "s"), 300, (serve, serve_log))
        assert first_inputs == set(FIRST)
        assert "Serving deployment 'suggest-themes/suggest-s'" in serve_log.read_text()

        shutil.copy(TRANSCRIPTS / DROPPED, folder / DROPPED)

        def picked_up():
            latest = _latest_completed(store_cfg, "s")
            return latest if latest and latest[0] > first_id and DROPPED in latest[1] else None

        _, later_inputs = phases.wait_for("a later scheduled run that read the dropped transcript", picked_up,
                                          300, (serve, serve_log))
        assert later_inputs == set(FIRST) | {DROPPED}

        # --list and --remove in this process (the server's URL as a temporary setting): no second start-up.
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
            assert main(["schedule", "--list"]) == 0
            listed = capsys.readouterr().out
            assert "suggest-themes/suggest-s" in listed and "study 's'" in listed, listed
            assert "every 5 s" in listed and str(folder) in listed, listed

            assert main(["schedule", "--remove", "--study", "s"]) == 0
            assert "Deleted deployment 'suggest-themes/suggest-s'" in capsys.readouterr().out
            # The serving process notices and stops on its own.
            serve.wait(60)
            phases.mark("the serving process stopped")
            assert "was removed; stopping" in serve_log.read_text(), tail(serve_log)
            assert serve.returncode == 0, tail(serve_log)

            assert main(["schedule", "--list"]) == 0
            assert "No Themesift deployments" in capsys.readouterr().out
            assert main(["schedule", "--remove", "--study", "s"]) == 1
            assert "no deployment 'suggest-themes/suggest-s'" in capsys.readouterr().err
    finally:
        stop(serve)


def test_schedule_without_a_server_says_how_to_start_one(capsys, monkeypatch, tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):  # also when a test harness set one
        assert main(["schedule", "--study", "s", "--interval", "60", "--folder", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "PREFECT_API_URL is not set" in err
    assert "prefect server start" in err and "export PREFECT_API_URL=http://127.0.0.1:4200/api" in err

    nobody = f"http://127.0.0.1:{free_port()}/api"
    with temporary_settings(updates={PREFECT_API_URL: nobody}):
        assert main(["schedule", "--list"]) == 2
    err = capsys.readouterr().err
    assert f"no Prefect server answers at PREFECT_API_URL={nobody}" in err and "prefect server start" in err


def test_schedule_refuses_what_it_cannot_run(capsys, tmp_path):
    assert main(["schedule", "--study", "s"]) == 2
    assert "--cron EXPR or --interval SECONDS" in capsys.readouterr().err
    assert main(["schedule", "--remove"]) == 2
    assert "--remove needs --study" in capsys.readouterr().err
    assert main(["schedule", "--study", "s", "--cron", "not a cron", "--folder", str(tmp_path)]) == 2
    assert "cannot use --cron 'not a cron'" in capsys.readouterr().err
    assert main(["schedule", "--study", "s", "--cron", "0 7 * * *", "--timezone", "Mars/Olympus",
                 "--folder", str(tmp_path)]) == 2
    assert "unknown time zone 'Mars/Olympus'" in capsys.readouterr().err
    assert main(["schedule", "--study", "s", "--interval", "60", "--folder", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["schedule", "--study", "s", "--interval", "0"])


def test_deployment_names_follow_the_study():
    from flows.schedule import deployment_name, describe_schedule, full_name
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
    from datetime import timedelta

    assert deployment_name("IPT study 2024") == "suggest-ipt-study-2024"
    assert full_name("s") == "suggest-themes/suggest-s"
    assert describe_schedule(IntervalSchedule(interval=timedelta(hours=1))) == "every 1 h"
    assert describe_schedule(CronSchedule(cron="0 7 * * 1-5", timezone="Europe/London")) == \
        "cron '0 7 * * 1-5' (Europe/London)"


def test_prefect_yaml_names_real_flows_and_builds_their_config(prefect_harness):
    """What `prefect deploy` does with prefect.yaml, short of deploying: build steps, templating, flows (the
    steps open an API client: the session's server, not a temporary one started for this test alone)."""
    import asyncio
    import importlib

    from prefect.deployments.steps.core import run_steps
    from prefect.utilities.templating import apply_values

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    outputs = asyncio.run(run_steps(spec["build"], print_function=lambda *a, **k: None))
    assert outputs["themesift"]["config"] == default_config()
    names = {d["name"] for d in spec["deployments"]}
    assert {"suggest-ipt-example", "compare-ipt-example"} <= names
    for raw in spec["deployments"]:
        d = apply_values(raw, outputs, remove_notset=False)
        path, func = d["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        fl = getattr(module, func)
        assert hasattr(fl, "serve"), f"{d['entrypoint']} is not a Prefect flow"
        accepted = inspect.signature(fl.fn).parameters
        assert set(d["parameters"]) <= set(accepted), (d["name"], set(d["parameters"]) - set(accepted))
        required = {n for n, p in accepted.items() if p.default is inspect.Parameter.empty}
        assert required <= set(d["parameters"]), (d["name"], required - set(d["parameters"]))
        assert d["parameters"]["config"] == default_config(), d["name"]
        for p in d["parameters"].get("paths", []) + (d["parameters"].get("human_files") or []):
            assert (ROOT / p).exists(), p
        assert d["work_pool"]["name"] == "themesift"
        assert "themesift" in d["tags"]


def test_deployment_config_step_reads_a_study_file(tmp_path):
    from flows.schedule import deployment_config

    study = tmp_path / "study.yaml"
    study.write_text("cluster: {seed: 7}\n")
    config = deployment_config(str(study), {"store": {"workspace": "elsewhere"}})["config"]
    assert config["cluster"]["seed"] == 7 and config["store"]["workspace"] == "elsewhere"
    assert config["embed"] == default_config()["embed"]
