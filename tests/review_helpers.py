"""Helpers for the review tests: private copies of the example study's database, signing in."""

from __future__ import annotations

import copy
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from models.decisions import Decision
from models.store import Store
from web.views import load_view

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def sqlite_path(url: str) -> Path:
    assert url.startswith("sqlite:///"), url
    return Path(url.removeprefix("sqlite:///"))


def copy_database(src: Path, dst: Path) -> Path:
    """A consistent copy of a (WAL) SQLite database, through SQLite's backup API."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(src) as source, sqlite3.connect(dst) as target:
        source.backup(target)
    return dst


@dataclass
class ReviewStudy:
    """A private copy of the example study: its name, a config pointing at the copy, the store."""

    name: str
    config: dict
    folder: Path

    @property
    def store(self) -> Store:
        store = Store.from_config(self.config["store"])
        return store

    def config_file(self) -> Path:
        path = self.folder / "config.yaml"
        path.write_text(yaml.safe_dump({"store": {k: self.config["store"][k] for k in ("workspace", "url")}}))
        return path


def private_study(template: Path, name: str, config: dict, folder: Path) -> ReviewStudy:
    db = copy_database(template, folder / "themesift.db")
    cfg = copy.deepcopy(config)
    cfg["store"]["workspace"] = str(folder)
    cfg["store"]["url"] = f"sqlite:///{db}"
    return ReviewStudy(name, cfg, folder)


def login(client, name: str | None = None, token: str | None = None) -> str:
    """Sign a TestClient in (local mode: a name; team mode: a token); returns its CSRF token."""
    page = client.get("/login")
    csrf = CSRF.search(page.text).group(1)
    data = {"csrf": csrf, "next": "/themes"}
    data.update({"name": name} if name is not None else {"token": token})
    response = client.post("/login", data=data, follow_redirects=False)
    assert response.status_code == 303, response.text
    return csrf


def n_decisions(store: Store) -> int:
    with store.sessions() as session:
        return session.scalar(select(func.count()).select_from(Decision))


def keys_and_outliers(store: Store, name: str):
    """The study's theme keys in list order, its outlier queue, and the whole view."""
    with store.sessions() as session:
        view = load_view(session, name)
        return [r.key for r in view.rows()], view.outliers(), view


def segments_outside(view, keys, n: int) -> list[int]:
    """``n`` segments in none of ``keys``' themes: the outlier queue first, then other themes' members."""
    pool = list(view.outliers()) + [s for r in view.rows() if r.key not in keys for s in view.members(r.key)]
    assert len(pool) >= n, f"only {len(pool)} segments outside {keys}"
    return pool[:n]


# -- fixtures (import them into a test module to use them) ------------------------------------------
@pytest.fixture(scope="session")
def review_template(example_study, tmp_path_factory) -> Path:
    """The example study's database (conftest's ``example_study``), copied once with the review tables."""
    folder = tmp_path_factory.mktemp("review-template")
    db = copy_database(sqlite_path(example_study.config["store"]["url"]), folder / "themesift.db")
    store = Store(f"sqlite:///{db}")
    store.engine.dispose()
    return db


@pytest.fixture
def study(review_template, example_study, tmp_path) -> ReviewStudy:
    """A private copy of the example study for one test."""
    return private_study(review_template, example_study.name, example_study.config, tmp_path)
