"""The catalog's schema migrations (Alembic), as the library and the CLI run them.

``Catalog.from_url(create=True)`` calls :func:`ensure_head` so that every catalog a caller
opens is at the newest schema: the first opening of a database in a process checks its
revision (and migrates if needed), later openings in the same process trust that check
instead of querying ``alembic_version`` again. That check is plain SQLAlchemy against the head
revision read from the migration files' ``revision``/``down_revision`` lines, so opening a catalog
at head never imports Alembic (about 0.4 s of start-up); Alembic is imported only to migrate
or stamp. ``imaging-ingest catalog upgrade`` migrates
explicitly, for deployments that open catalogs with ``create=False``. Concurrent openers (mapped Airflow tasks, several
workers) serialise on a lock: an advisory lock on PostgreSQL, a lock file beside a
SQLite database; the one that comes second finds the schema already at head.
"""

from __future__ import annotations

import ast
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, column, inspect, select, table, text

if TYPE_CHECKING:
    from alembic.config import Config

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
VERSIONS = Path(__file__).with_name("migrations") / "versions"

#: Alembic's version table (its default name; env.py does not change it).
_VERSION_TABLE = table("alembic_version", column("version_num"))

#: Databases (by URL) this process has seen at the head revision.
_AT_HEAD: set[str] = set()

#: An arbitrary, fixed key for PostgreSQL's advisory lock around migrations.
_PG_LOCK_KEY = 0x1A6E_C0DE


class SchemaPredatesMigrations(RuntimeError):
    """The database has catalog tables but no Alembic version: it was made by create_all."""


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """Alembic's configuration for the catalog, bound to a connection or a URL."""
    from alembic.config import Config  # deferred: only migrations need Alembic (see the module docstring)

    config = Config(str(ALEMBIC_INI))
    config.attributes["configure_logging"] = False
    if connection is not None:
        config.attributes["connection"] = connection
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _declared_revisions() -> dict[str, str | None] | None:
    """``revision -> down_revision`` as the migration files assign them; None where one is not a plain string."""
    chain: dict[str, str | None] = {}
    for path in sorted(VERSIONS.glob("*.py")):
        assigned: dict[str, object] = {}
        try:
            body = ast.parse(path.read_text(encoding="utf-8")).body
        except SyntaxError:
            return None  # Alembic reports it
        for node in body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                name, value = node.target.id, node.value
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                name, value = node.targets[0].id, node.value
            else:
                continue
            try:
                assigned[name] = ast.literal_eval(value)
            except (ValueError, TypeError):
                assigned[name] = ...  # not a literal: Alembic has to read this file
        revision, down = assigned.get("revision"), assigned.get("down_revision")
        if not isinstance(revision, str) or not (down is None or isinstance(down, str)) or revision in chain:
            return None
        if assigned.get("branch_labels") is not None or assigned.get("depends_on") is not None:
            return None
        chain[revision] = down
    return chain


def _linear_head(chain: dict[str, str | None] | None) -> str | None:
    """The one revision nothing revises, when the migrations form a single chain from one base; else None."""
    if not chain:
        return None
    heads = set(chain) - {down for down in chain.values() if down is not None}
    bases = [revision for revision, down in chain.items() if down is None]
    if len(heads) != 1 or len(bases) != 1 or any(down is not None and down not in chain for down in chain.values()):
        return None
    return heads.pop()


@cache
def head_revision() -> str:
    """The newest migration's revision id: read from the migration files (Alembic itself where they are not a plain chain)."""
    if (head := _linear_head(_declared_revisions())) is not None:
        return head
    from alembic.script import ScriptDirectory  # deferred: only a branched history needs Alembic here

    alembic_head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if alembic_head is None:
        raise RuntimeError("the catalog has no migrations")
    return alembic_head


def current_revision(engine: Engine) -> str | None:
    """The revision ``alembic_version`` records (None without one), read as Alembic's MigrationContext reads it."""
    with engine.connect() as connection:
        if not inspect(connection).has_table(_VERSION_TABLE.name):
            return None
        heads = connection.execute(select(_VERSION_TABLE.c.version_num)).scalars().all()
        if len(heads) <= 1:
            return heads[0] if heads else None
        from alembic.runtime.migration import MigrationContext  # deferred: its error for a branched database

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
        from alembic import command  # deferred: only migrations need Alembic

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
        from alembic import command  # deferred: only migrations need Alembic

        command.downgrade(alembic_config(connection), revision)


def stamp(engine: Engine, revision: str) -> None:
    """Record ``revision`` as the catalog's schema without running migrations (for adopting old catalogs)."""
    _forget(engine)
    with _migration(engine) as connection:
        from alembic import command  # deferred: only migrations need Alembic

        command.stamp(alembic_config(connection), revision)
