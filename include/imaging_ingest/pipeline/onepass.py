"""One read per file: the leak scan runs where the output is written, on the same bytes.

The verify stage reads every source and every output again, and parses both. For
``imaging-ingest deidentify`` those reads are a good share of the time, so the
de-identification worker reads each source once, writes the output, and runs the leak scan
right there on the source's bytes and the bytes it wrote (``deid.batch``'s follow-up). The
verifier's logic is untouched: the same ``verify.leaks`` scan with its own reading of the
bytes; only the file reads are shared.

A verdict holds for the output it scanned and nothing else: the verify stage takes it only
while the row's output SHA-256 is the one scanned. Screening that redacts pixels rewrites an
output (a new checksum), which is then scanned again like any other. The DAG does the same:
its deidentify task keeps the verdicts in the batch's rows (``VERDICT_COLUMNS``), and its
verify task scans only what has none, or whose output changed since.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imaging_ingest.core.raw_elements import RawFile
from imaging_ingest.deid.batch import FileJob
from imaging_ingest.verify.leaks import Verdict, row_scan_arguments, scan_bytes

if TYPE_CHECKING:  # workers import this module: they never need pandas
    import pandas as pd

__all__ = ["VERDICT_COLUMNS", "LeakCheck", "known_verdicts", "leak_check_of", "leak_scan", "with_verdicts"]


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
        return LeakCheck(opts, *row_scan_arguments(record))

    return check_of


def leak_scan(job: FileJob, source: bytes, output: bytes, parsed: RawFile | None) -> Verdict:
    """The follow-up ``deid.batch`` runs in its worker: the leak scan of one output, on bytes in memory.

    ``parsed``: the source's raw parse the engine used; the scan gathers the source's identifying
    values from it and parses the output itself.
    """
    check: LeakCheck = job.check
    return scan_bytes(source, output, check.options, check.pseudonym, check.kept, raw_source=parsed)


#: Where a batch keeps its verdicts (plain columns: the DAG stores batches as Parquet): the number of
#: leaks found (-1: the output could not be read), the first one's reason, the output SHA-256 scanned.
VERDICT_COLUMNS = ("leak_scan_leaks", "leak_scan_reason", "leak_scan_sha256")


def with_verdicts(results: pd.DataFrame) -> pd.DataFrame:
    """``deidentify_frame``'s results with its ``checked`` cells turned into ``VERDICT_COLUMNS``."""
    if "checked" not in results.columns:
        return results
    scanned = results["checked"].notna() & (results["status"] == "ok")
    results = results.assign(
        leak_scan_leaks=[int(v[0]) if s else None for v, s in zip(results["checked"], scanned, strict=True)],
        leak_scan_reason=[v[1] if s else None for v, s in zip(results["checked"], scanned, strict=True)],
        leak_scan_sha256=results["sha256"].where(scanned, None),
    )
    return results.drop(columns="checked")


def known_verdicts(frame: pd.DataFrame) -> dict[int, tuple[str, Verdict]]:
    """The verdicts a frame carries (``with_verdicts``): file id -> (output SHA-256 scanned, verdict).

    ``verify_frame`` takes one only while the row's output still has that checksum.
    """
    if not set(VERDICT_COLUMNS) <= set(frame.columns):
        return {}
    done = frame[frame["leak_scan_sha256"].notna() & frame["leak_scan_leaks"].notna()]
    return {
        int(file_id): (str(sha256), (int(leaks), reason if isinstance(reason, str) else None))
        for file_id, leaks, reason, sha256 in zip(
            done["file_id"], done["leak_scan_leaks"], done["leak_scan_reason"], done["leak_scan_sha256"], strict=True
        )
    }
