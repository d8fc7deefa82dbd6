"""A small local index of each collection's known submissions, for the Airflow trigger form.

The trigger form offers the known submission ids as suggestions. The catalog holds them,
but a DAG file may not query a database while it is parsed; so the pipeline writes this
index (a few kilobytes of JSON under ``IMAGING_INGEST_HOME/index/``) whenever it discovers
or publishes, and the DAG factory reads it, if present, without touching the catalog.

It lists submission ids, states and counts only: never a drop folder's name (a site's
choice, which can identify a patient). It is a convenience, not a source of truth: the
run validates a requested id against the catalog.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["MAX_ENTRIES", "index_path", "known_submission_ids", "read_index", "write_index"]

#: The newest submissions the index keeps (the form offers them as suggestions).
MAX_ENTRIES = 100


def index_path(home: str | Path, collection_id: str) -> Path:
    return Path(home) / "index" / f"{collection_id}.submissions.json"


def write_index(home: str | Path, collection_id: str, submissions: Iterable[Any]) -> Path:
    """Write the index atomically from catalog ``Submission`` rows (newest first)."""
    rows = sorted(submissions, key=lambda s: (s.updated_at, s.id), reverse=True)[:MAX_ENTRIES]
    document = {
        "collection": collection_id,
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "submissions": [
            {
                "id": s.id,
                "state": s.state,
                "files_in": s.files_in,
                "published": s.published,
                "quarantined": s.quarantined,
                "version": s.version,
                "updated": s.updated_at.isoformat(timespec="seconds"),
            }
            for s in rows
        ],
    }
    path = index_path(home, collection_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(document, out, indent=1)
    os.replace(tmp, path)
    return path


def read_index(home: str | Path | None, collection_id: str) -> list[dict[str, Any]]:
    """The index's entries, or an empty list when there is none or it cannot be read (never raises)."""
    if not home:
        return []
    try:
        document = json.loads(index_path(home, collection_id).read_text(encoding="utf-8"))
        entries = document["submissions"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)]


def known_submission_ids(home: str | Path | None, collection_id: str, limit: int = 25) -> list[str]:
    """The newest known submission ids, for a form's suggestions."""
    return [e["id"] for e in read_index(home, collection_id)][:limit]
