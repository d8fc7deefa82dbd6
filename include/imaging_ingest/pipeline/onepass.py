"""One read per file: the leak scan runs where the output is written, on the same bytes.

The verify stage reads every source and every output again, and parses both. For
``imaging-ingest deidentify`` those reads are a good share of the time, so the
de-identification worker reads each source once, writes the output, and runs the leak scan
right there on the source's bytes and the bytes it wrote (``deid.batch``'s follow-up). The
verifier's logic is untouched: the same ``verify.leaks`` scan with its own reading of the
bytes; only the file reads are shared.

A verdict holds for the output it scanned and nothing else: the verify stage takes it only
while the row's output SHA-256 is the one scanned. Screening that redacts pixels rewrites an
output (a new checksum), which is then scanned again like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imaging_ingest.deid.batch import FileJob
from imaging_ingest.verify.leaks import Verdict, scan_bytes

if TYPE_CHECKING:  # workers import this module: they never need pandas
    import pandas as pd

__all__ = ["LeakCheck", "known_verdicts", "leak_check_of", "leak_scan"]


@dataclass(frozen=True)
class LeakCheck:
    """What the leak scan needs besides the bytes (``verify.leaks.find_leaks``'s arguments)."""

    options: tuple[str, ...] | None
    pseudonym: str | None
    kept: tuple[str, ...]


def leak_check_of(options: Iterable[str] | None) -> Callable[[dict[str, Any]], LeakCheck]:
    """The ``check_of`` for ``deidentify_frame``: each row's scan arguments, as the verify stage gives them."""
    opts = tuple(str(o) for o in options) if options is not None else None

    def check_of(record: dict[str, Any]) -> LeakCheck:
        pseudonym = record.get("pseudo_patient_id")
        kept = str(record.get("kept_uids") or "").split()
        return LeakCheck(opts, pseudonym if isinstance(pseudonym, str) and pseudonym else None, tuple(kept))

    return check_of


def leak_scan(job: FileJob, source: bytes, output: bytes) -> Verdict:
    """The follow-up ``deid.batch`` runs in its worker: the leak scan of one output, on bytes in memory."""
    check: LeakCheck = job.check
    return scan_bytes(source, output, check.options, check.pseudonym, check.kept)


def known_verdicts(results: pd.DataFrame) -> dict[int, tuple[str, Verdict]]:
    """The verdicts a de-identification batch came back with: file id -> (output SHA-256 scanned, verdict)."""
    if "checked" not in results.columns:
        return {}
    done = results[results["checked"].notna() & (results["status"] == "ok")]
    return {
        int(file_id): (str(sha256), verdict)
        for file_id, sha256, verdict in zip(done["file_id"], done["sha256"], done["checked"], strict=True)
    }
