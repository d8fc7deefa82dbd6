"""Opening a catalog: the engine, SQLite's pragmas, sessions, migrations, and audit rows every part writes."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Self

from sqlalchemy import Engine, create_engine, event, insert, select
from sqlalchemy.orm import Session, sessionmaker

from imaging_ingest.catalog import migrate
from imaging_ingest.catalog.models import (
    AuditEvent,
    Patient,
    utcnow,
)
from imaging_ingest.core.records import chunks

__all__ = ["CHUNK", "CatalogBase", "audit_event", "event_row", "patients_by_hash"]


#: Rows per IN (...) list: well under SQLite's bound-parameter limit.
CHUNK = 500


#: How long a SQLite catalog connection waits for another's lock.
SQLITE_BUSY_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    _use_wal(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL, waiting out concurrent openers.

    SQLite answers a journal-mode switch that meets another connection's lock with
    "database is locked" at once, without its busy handler; several processes opening a
    new catalog together (task workers, the API) would fail. So: retry within the busy
    timeout. WAL is a property of the file, so only the first openers ever race.
    """
    deadline = time.monotonic() + SQLITE_BUSY_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def patients_by_hash(s: Session, collection_id: str, id_hashes: Sequence[str], column: Any) -> dict[str, Any]:
    """``id_hash -> column`` for the collection's patients among these keyed hashes."""
    found: dict[str, Any] = {}
    for chunk in chunks(id_hashes, CHUNK):
        found.update(
            s.execute(
                select(Patient.id_hash, column).where(
                    Patient.collection_id == collection_id, Patient.id_hash.in_(chunk)
                )
            )
            .tuples()
            .all()
        )
    return found


def audit_event(
    event_type: str,
    agent: str,
    outcome: str,
    object_id: str,
    collection_id: str | None,
    object_type: str = "object",
    detail: str | None = None,
) -> AuditEvent:
    return AuditEvent(**event_row(event_type, agent, outcome, object_id, collection_id, object_type, detail))


def event_row(
    event_type: str,
    agent: str,
    outcome: str,
    object_id: str,
    collection_id: str | None,
    object_type: str = "object",
    detail: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    return {
        "at": at or utcnow(),
        "event_type": str(event_type),
        "agent": f"imaging-ingest:{agent}",
        "outcome": str(outcome),
        "object_id": object_id,
        "object_type": object_type,
        "collection_id": collection_id,
        "detail": detail,
    }


class CatalogBase:
    """The catalog's engine and sessions; each concern's operations are a mixin on top."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str, *, create: bool = True) -> Self:
        """Open a catalog; with ``create`` (the default) its schema is migrated to the newest revision.

        The revision is checked once per database and process (``migrate.ensure_head``).
        """
        if url.startswith("sqlite:///"):
            from pathlib import Path

            Path(url.removeprefix("sqlite:///").split("?", 1)[0]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, pool_pre_ping=True)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        catalog = cls(engine)
        if create:
            migrate.ensure_head(engine)
        return catalog

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema up (Alembic); a no-op at head."""
        migrate.upgrade(self.engine, revision)

    def downgrade(self, revision: str) -> None:
        migrate.downgrade(self.engine, revision)

    def schema_revision(self) -> str | None:
        return migrate.current_revision(self.engine)

    def create_schema(self) -> None:
        """Kept for callers of the pre-migration API: the same as ``upgrade()``."""
        self.upgrade()

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    @staticmethod
    def add_events(s: Session, rows: list[dict[str, Any]]) -> None:
        for chunk in chunks(rows, 5000):
            s.execute(insert(AuditEvent), list(chunk))
