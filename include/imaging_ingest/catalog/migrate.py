"""The catalog's schema migrations (Alembic), as the library and the CLI run them.

``Catalog.from_url(create=True)`` calls :func:`ensure_head` so that every catalog a caller
opens is at the newest schema: the first opening of a database in a process checks its
revision (and migrates if needed), later openings in the same process trust that check
instead of querying ``alembic_version`` again. ``imaging-ingest catalog upgrade`` migrates
explicitly, for deployments that open catalogs with ``create=False``. Concurrent openers (mapped Airflow tasks, several
workers) serialise on a lock: an advisory lock on PostgreSQL, a lock file beside a
SQLite database; the one that comes second finds the schema already at head.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

__all__ = [
    "ALEMBIC_INI",
    "SchemaPredatesMigrations",
    "alembic_config",
    "current_revision",
    "downgrade",
    "ensure_head",
    "head_revision",
    "upgrade",
]

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")

#: Databases (by URL) this process has seen at the head revision.
_AT_HEAD: set[str] = set()

#: An arbitrary, fixed key for PostgreSQL's advisory lock around migrations.
_PG_LOCK_KEY = 0x1A6E_C0DE


class SchemaPredatesMigrations(RuntimeError):
    """The database has catalog tables but no Alembic version: it was made by create_all."""


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """Alembic's configuration for the catalog, bound to a connection or a URL."""
    config = Config(str(ALEMBIC_INI))
    config.attributes["configure_logging"] = False
    if connection is not None:
        config.attributes["connection"] = connection
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the catalog has no migrations")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """Serialise migrations of a SQLite file (held until the migration has committed)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate.lock")
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def _migration(engine: Engine) -> Iterator[Connection]:
    """A transaction that no other migration runs beside (advisory lock on PostgreSQL, a lock file on SQLite)."""
    with _file_lock(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        yield connection


def _check_not_legacy(connection: Connection) -> None:
    tables = set(inspect(connection).get_table_names())
    if "collections" in tables and "alembic_version" not in tables:
        raise SchemaPredatesMigrations(
            "the catalog has tables but no Alembic version (it was created before migrations existed); "
            "move it aside and let the pipeline create a new one, or stamp it after checking its schema "
            "(imaging-ingest catalog stamp REVISION)"
        )


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the catalog up to ``revision``; a no-op when it is there already."""
    if revision == "head" and current_revision(engine) == head_revision():
        return
    with _migration(engine) as connection:
        _check_not_legacy(connection)
        command.upgrade(alembic_config(connection), revision)


def _database_key(engine: Engine) -> str | None:
    """Which database an engine opens; for a SQLite file, that very file (a new file is another database)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return None
        try:
            st = os.stat(url.database)
        except FileNotFoundError:
            return None
        return f"{url.render_as_string(hide_password=False)}#{st.st_dev}:{st.st_ino}"
    return url.render_as_string(hide_password=False)


def ensure_head(engine: Engine) -> None:
    """Bring the catalog to the newest schema, once per database and process."""
    if (key := _database_key(engine)) is not None and key in _AT_HEAD:
        return
    upgrade(engine)
    if (key := _database_key(engine)) is not None:
        _AT_HEAD.add(key)


def _forget(engine: Engine) -> None:
    if (key := _database_key(engine)) is not None:
        _AT_HEAD.discard(key)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the catalog down to ``revision`` (``base`` drops every catalog table)."""
    _forget(engine)
    with _migration(engine) as connection:
        command.downgrade(alembic_config(connection), revision)


def stamp(engine: Engine, revision: str) -> None:
    """Record ``revision`` as the catalog's schema without running migrations (for adopting old catalogs)."""
    _forget(engine)
    with _migration(engine) as connection:
        command.stamp(alembic_config(connection), revision)
