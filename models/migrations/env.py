"""Alembic environment: migrations run on the connection the store hands over (models/migrate.py)."""

from alembic import context

from models.records import Base
import models  # noqa: F401  (registers every table on Base.metadata)

target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        from sqlalchemy import create_engine

        connection = create_engine(context.config.get_main_option("sqlalchemy.url")).connect()
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")  # SQLite alters tables by copying
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
