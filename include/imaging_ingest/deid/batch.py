"""De-identify many files, optionally in a process pool, one outcome per file.

Used by the DAG's de-identify task (one call per batch) and by ``imaging-ingest
deidentify``, so both run exactly the same code. A file that fails becomes an outcome
with a PHI-free reason; it never stops the batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imaging_ingest.config import DeidOption
from imaging_ingest.core.pool import process_pool
from imaging_ingest.core.raw_elements import RawFile
from imaging_ingest.core.raw_elements import read as read_raw
from imaging_ingest.core.records import iter_records
from imaging_ingest.deid.engine import Deidentifier, DeidError, DeidOutput, PatientContext
from imaging_ingest.deid.freetext.element import parse_counts
from imaging_ingest.deid.profile import ResolvedProfile
from imaging_ingest.deid.review import FreeTextHeld, SeenText, TextPolicy
from imaging_ingest.deid.uids import remap_uid

if TYPE_CHECKING:  # pandas is imported where frames are handled: worker processes never need it
    import pandas as pd

__all__ = [
    "FileJob",
    "FileOutcome",
    "deidentify_files",
    "deidentify_frame",
    "freetext_counts",
    "iter_outcomes",
    "merge_results",
    "output_key",
]


@dataclass(frozen=True)
class FileJob:
    file_id: int
    src: str
    dst: str
    patient: PatientContext
    #: what the caller's follow-up check needs for this file (see ``iter_outcomes``); opaque here
    check: Any = None


#: A check run right after a file is written, on the source's and the output's bytes while both are
#: in memory, with the source's raw parse (None off its fast path): ``check(job, source, output, parsed)``.
#: A picklable module-level function (it goes to workers).
FollowUp = Callable[[FileJob, bytes, bytes, RawFile | None], Any]
#: Sources up to this size are read whole for a follow-up; bigger ones stream, and the check comes later.
FOLLOW_UP_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class FileOutcome:
    file_id: int
    output: DeidOutput | None
    reason: str | None = None
    #: the file's kept free-text values (``review.py``), also when the review held the file back
    texts: tuple[SeenText, ...] = ()
    #: the follow-up check's result (None: no follow-up ran for this file)
    checked: Any = None


_worker: tuple[Deidentifier, FollowUp | None] | None = None


def _init_worker(
    profile: ResolvedProfile,
    secret: bytes,
    keep_uids: frozenset[str] = frozenset(),
    review: TextPolicy | None = None,
    follow_up: FollowUp | None = None,
    md5: bool = True,
) -> None:
    global _worker
    _worker = (Deidentifier(profile, secret, keep_uids, review, md5=md5), follow_up)


def _run(deidentifier: Deidentifier, job: FileJob, follow_up: FollowUp | None = None) -> FileOutcome:
    try:
        if follow_up is not None and job.check is not None and os.path.getsize(job.src) <= FOLLOW_UP_MAX_BYTES:
            with open(job.src, "rb") as fh:
                source = fh.read()
            parsed = read_raw(source)  # one parse of the source header, for the engine and the check
            output, written = deidentifier.deidentify_data(source, job.dst, job.patient, parsed)
            checked = follow_up(job, source, written, parsed)
            return FileOutcome(job.file_id, output, texts=output.texts, checked=checked)
        output = deidentifier.deidentify_file(job.src, job.dst, job.patient)
        return FileOutcome(job.file_id, output, texts=output.texts)
    except FreeTextHeld as exc:
        return FileOutcome(job.file_id, None, str(exc), texts=exc.texts)
    except DeidError as exc:
        return FileOutcome(job.file_id, None, str(exc))
    except RecursionError:
        return FileOutcome(job.file_id, None, "sequences nested too deeply to parse")
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch; the type names the cause
        return FileOutcome(job.file_id, None, f"de-identification failed ({type(exc).__name__})")


def _run_in_worker(job: FileJob) -> FileOutcome:
    assert _worker is not None
    deidentifier, follow_up = _worker
    return _run(deidentifier, job, follow_up)


def iter_outcomes(
    jobs: Sequence[FileJob],
    profile: ResolvedProfile,
    secret: bytes,
    *,
    workers: int = 1,
    keep_uids: frozenset[str] = frozenset(),
    review: TextPolicy | None = None,
    follow_up: FollowUp | None = None,
    md5: bool = True,
) -> Iterator[FileOutcome]:
    """Run every job and yield its outcome as soon as it is known, in the order of ``jobs``.

    ``review``: the collection's free-text decisions and mode (plain data, sent to each worker once).
    ``follow_up``: a check to run on each written file whose job has a ``check``, in the same
    process and on the same bytes (the source read once, the output as written: no file is read
    again); its result comes back as ``FileOutcome.checked``. Sources over ``FOLLOW_UP_MAX_BYTES``
    stream as usual and come back unchecked. ``md5=False``: no output MD5 (see ``Deidentifier``).
    """
    if workers <= 1 or len(jobs) < 2 * workers:
        deidentifier = Deidentifier(profile, secret, keep_uids, review, md5=md5)
        for job in jobs:
            yield _run(deidentifier, job, follow_up)
        return
    initargs = (profile, secret, keep_uids, review, follow_up, md5)
    with process_pool(workers, initializer=_init_worker, initargs=initargs) as pool:
        yield from pool.map(_run_in_worker, jobs, chunksize=max(1, min(32, len(jobs) // (workers * 4))))


def deidentify_files(
    jobs: Sequence[FileJob],
    profile: ResolvedProfile,
    secret: bytes,
    *,
    workers: int = 1,
    on_done: Callable[[FileOutcome], None] | None = None,
) -> list[FileOutcome]:
    """Run every job; outcomes come back in the order of ``jobs``."""
    outcomes: list[FileOutcome] = []
    for outcome in iter_outcomes(jobs, profile, secret, workers=workers):
        outcomes.append(outcome)
        if on_done:
            on_done(outcome)
    return outcomes


def output_key(
    record: dict[str, object], secret: bytes, retain_uids: bool, keep_uids: frozenset[str] = frozenset()
) -> str:
    """``<study>/<series>/<sop>.dcm`` from the new UIDs: known before the file is written, same on every rerun."""
    uids = [str(record[c]) for c in ("study_uid", "series_uid", "sop_uid")]
    if not retain_uids:
        uids = [u if u in keep_uids else remap_uid(secret, u) for u in uids]
    return "/".join(uids) + ".dcm"


def deidentify_frame(
    frame: pd.DataFrame,
    profile: ResolvedProfile,
    secret: bytes,
    *,
    source_of: Callable[[dict[str, Any]], Path],
    destination_of: Callable[[str], Path],
    workers: int = 1,
    on_output: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[], None] | None = None,
    keep_uids: frozenset[str] = frozenset(),
    review: TextPolicy | None = None,
    on_texts: Callable[[int, tuple[SeenText, ...]], None] | None = None,
    follow_up: FollowUp | None = None,
    check_of: Callable[[dict[str, Any]], Any] | None = None,
    md5: bool = True,
) -> pd.DataFrame:
    """De-identify a manifest's rows; return one result row per input row (``file_id`` first).

    ``destination_of`` maps an output key to the local path to write; ``on_output`` sees
    each successful result row (the pipeline uploads the file there). ``review`` applies
    curators' free-text decisions; ``on_texts`` sees each file's kept free-text values (restricted:
    the pipeline keeps them for the review report, never in the manifest).
    ``follow_up`` runs on each file as it is written (see ``iter_outcomes``), with what
    ``check_of(record)`` gives it; its result is the row's ``checked`` cell (None: not run).
    ``md5=False``: the rows' ``md5`` is None (a caller that publishes no MD5 need not compute it).
    """
    import pandas as pd

    retain_uids = DeidOption.RETAIN_UIDS in profile.options
    jobs, keys = [], {}
    for record in iter_records(frame):
        key = output_key(record, secret, retain_uids, keep_uids)
        keys[int(record["file_id"])] = key
        patient = PatientContext(
            pseudonym=str(record["pseudo_patient_id"]),
            date_offset_days=int(record["date_offset_days"]),
            identifiers=(str(record["patient_id"]),),
        )
        check = check_of(record) if check_of is not None else None
        jobs.append(FileJob(int(record["file_id"]), str(source_of(record)), str(destination_of(key)), patient, check))
    rows = []
    outcomes = iter_outcomes(
        jobs, profile, secret, workers=workers, keep_uids=keep_uids, review=review, follow_up=follow_up, md5=md5
    )
    for outcome in outcomes:
        if progress:
            progress()
        if on_texts is not None and outcome.texts:
            on_texts(outcome.file_id, outcome.texts)
        row: dict[str, Any] = {"file_id": outcome.file_id, "deid_key": keys[outcome.file_id]}
        if outcome.output is None:
            row.update(status="quarantined", reason=outcome.reason)
        else:
            out = outcome.output
            row.update(
                status="ok",
                reason=None,
                deid_study_uid=out.study_uid,
                deid_series_uid=out.series_uid,
                deid_sop_uid=out.sop_uid,
                deid_sop_class_uid=out.sop_class_uid,
                sha256=out.sha256,
                md5=out.md5,
                size_out=out.size,
                **{f"out_{k}": v for k, v in out.attributes.items()},
                **{f"n_{k}": v for k, v in out.stats.as_dict().items()},
            )
            if follow_up is not None:
                row["checked"] = outcome.checked
            if on_output is not None:
                on_output(row)
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["file_id", "deid_key", "status", "reason"])


#: What the free-text detector did, per attribute: ``n_<name>`` cells of ``deidentify_frame``'s rows.
FREETEXT_COUNTS = ("freetext_removed", "freetext_flagged")


def freetext_counts(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """The detector's counts summed over a batch, per attribute keyword (counts only, never values).

    ``freetext_removed``: PHI spans replaced (or cut) per attribute; ``freetext_flagged``: values
    left with a suspect span. Rows without the cells (quarantined before cleaning, supporting files)
    count nothing.
    """
    totals: dict[str, dict[str, int]] = {}
    for name in FREETEXT_COUNTS:
        summed: dict[str, int] = {}
        if f"n_{name}" in frame.columns:
            for cell in frame[f"n_{name}"]:
                for key, n in parse_counts(cell).items():
                    summed[key] = summed.get(key, 0) + n
        totals[name] = dict(sorted(summed.items()))
    return totals


#: The columns every de-identification result has (``deidentify_frame``), besides ``file_id``.
RESULT_COLUMNS = (
    "deid_key", "status", "reason", "deid_study_uid", "deid_series_uid", "deid_sop_uid", "deid_sop_class_uid",
    "sha256", "md5", "size_out",
)


def merge_results(manifest: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Fold de-identification results into a manifest; rows that went in ok and failed are quarantined."""
    # no batch at all (every file stopped at inventory): the results have no columns, the gates still expect them
    missing = {c: None for c in RESULT_COLUMNS if c not in results.columns}
    if missing:
        results = results.assign(**missing)
    frame = manifest.merge(results, on="file_id", how="left", suffixes=("", "_deid"))
    went_on = frame["status"] == "ok"
    failed = went_on & (frame["status_deid"] != "ok")
    frame.loc[failed, "reason"] = frame.loc[failed, "reason_deid"].fillna("not de-identified (missing from every batch)")
    frame.loc[failed, "status"] = "quarantined"
    return frame.drop(columns=["status_deid", "reason_deid"])
