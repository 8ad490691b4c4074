"""Schema migrations (Alembic): every store is brought to the newest schema when it is opened."""

from __future__ import annotations

from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url)
    return config


@cache
def head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction that holds schema changes too, committed on success and rolled back on error.

    PostgreSQL's DDL is transactional as it is. Python's sqlite3 begins a transaction only before
    INSERT/UPDATE/DELETE, so an ALTER TABLE that comes first is committed at once and a migration that
    fails after it stays half-applied. Here pysqlite's own transaction handling is switched off for this
    one connection and ``BEGIN IMMEDIATE`` opens the transaction (it also makes a second process that
    upgrades at the same moment wait for this one), then it is restored before the connection goes back
    to the pool.
    """
    if engine.dialect.name != "sqlite":
        with engine.begin() as connection:
            yield connection
        return
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        legacy = driver.isolation_level
        driver.isolation_level = None
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
        finally:
            driver.isolation_level = legacy


def driver_message(exc: BaseException) -> str:
    """What the database driver said, on one line, without SQLAlchemy's wrapping (its SQL and link)."""
    cause = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(cause).__name__


class StoreUpgradeError(RuntimeError):
    """The store's schema could not be brought up to date; the message names the database."""


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate ``engine``'s database to ``revision``; a second process doing the same at once is harmless."""
    start = current(engine)
    if revision == "head" and start == head():
        return
    config = alembic_config()
    if start is not None and start not in {s.revision for s in ScriptDirectory.from_config(config).walk_revisions()}:
        where = engine.url.render_as_string(hide_password=True)
        raise StoreUpgradeError(f"{where}: this store was written by a newer Themesift (schema {start}; this one "
                                f"knows up to {head()}); nothing was changed: upgrade Themesift to use it")
    for attempt in range(2):
        try:
            with _transaction(engine) as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
            return
        except Exception as exc:
            if current(engine) == head():  # someone else finished the same upgrade
                return
            if attempt:
                where = engine.url.render_as_string(hide_password=True)
                raise StoreUpgradeError(f"{where}: upgrading the store from schema {start or 'none'} to {revision} "
                                        f"failed and the database was left as it was: {driver_message(exc)}") from exc
