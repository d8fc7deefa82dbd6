"""From drop entries to the rows of the ``staged`` manifest: what is taken, what is quarantined and why.

Shared by the pipeline's stage-raw step and by ``imaging-ingest deidentify`` so that both
treat hostile input the same way:

- symbolic links and special files (devices, pipes, sockets) are never opened;
- files whose names carry newlines, control characters or invalid UTF-8 are staged (a
  curator may want them) but quarantined;
- zip and tar archives are kept as they are and expanded safely (``archives.py``): each
  member becomes a row of its own named ``<archive path>/<member path>``; a member that
  cannot be taken is quarantined with its reason; an archive that cannot be opened, or
  that is over a limit, is one quarantined row.

Count conservation therefore counts files and archive members: every row ends published
or quarantined.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from imaging_ingest.config import ArchiveLimits
from imaging_ingest.intake.archives import ArchiveRejected, read_archive
from imaging_ingest.intake.drops import DropEntry, is_archive_name

__all__ = ["REASON_SPECIAL", "REASON_SYMLINK", "stage_entries"]

REASON_SYMLINK = "symbolic link (never followed)"
REASON_SPECIAL = "not a regular file (device, pipe or socket)"

#: ``stage_entry(entry)`` and ``stage_file(path)`` store one file and return at least
#: ``sha256_source``, ``size`` and ``local`` (where the staged copy now is), plus whatever
#: the caller keeps (the pipeline: ``raw_key``).
StageEntry = Callable[[DropEntry], dict[str, Any]]
StageFile = Callable[[Path], dict[str, Any]]


def _row(source_path: str, size: int, status: str = "ok", reason: str | None = None) -> dict[str, Any]:
    return {
        "source_path": source_path,
        "size": size,
        "sha256_source": None,
        "status": status,
        "reason": reason,
    }


def stage_entries(
    entries: Iterable[DropEntry],
    stage_entry: StageEntry,
    stage_file: StageFile,
    limits: ArchiveLimits,
    work: Path,
) -> Iterator[dict[str, Any]]:
    """One row per file or archive member, in a stable order; ``file_id`` is the row's position.

    Rows are yielded as each entry is staged, so the caller decides how many it keeps.
    """
    file_id = 0
    for entry in sorted(entries, key=lambda e: e.path):
        if entry.kind == "symlink":
            rows = [_row(entry.path, entry.size, "quarantined", REASON_SYMLINK)]
        elif entry.kind != "file":
            rows = [_row(entry.path, entry.size, "quarantined", REASON_SPECIAL)]
        else:
            row = _row(entry.path, entry.size) | stage_entry(entry)
            if entry.name_problem:
                row.update(status="quarantined", reason=entry.name_problem)
                rows = [row]
            elif is_archive_name(entry.path):
                rows = _expand(row, stage_file, limits, work / f"archive-{file_id:06d}")
            else:
                rows = [row]
        for row in rows:
            row["file_id"] = file_id
            row.pop("local", None)
            file_id += 1
            yield row


def _expand(
    archive_row: dict[str, Any], stage_file: StageFile, limits: ArchiveLimits, work: Path
) -> list[dict[str, Any]]:
    """The archive's members as rows; the archive itself is already staged (kept in raw)."""
    rows: list[dict[str, Any]] = []
    container = archive_row.get("raw_key") or archive_row["sha256_source"]
    try:
        for member in read_archive(Path(archive_row["local"]), work, limits):
            path = f"{archive_row['source_path']}/{member.path}"
            if member.local is None:
                rows.append(_row(path, member.size, "quarantined", member.reason) | {"archive": container})
                continue
            row = _row(path, member.size) | stage_file(member.local) | {"archive": container}
            if member.reason:
                row.update(status="quarantined", reason=member.reason)
            rows.append(row)
    except ArchiveRejected as exc:
        # Nothing of a rejected archive goes on: the archive itself is the one quarantined row.
        return [archive_row | {"status": "quarantined", "reason": str(exc)}]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not rows:
        return [archive_row | {"status": "quarantined", "reason": "archive has no files"}]
    return rows
