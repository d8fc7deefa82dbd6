"""Supporting files (slides and clinical tables) through the same stages as the DICOM files.

The DICOM path batches files by series; supporting files take their own work items
(``batches/slide-<file id>``, ``batches/clinical-<file id>``) that the same mapped
``deidentify`` task processes, so a submission's slides are de-identified in parallel
with its series. Their manifest rows get the same columns as DICOM rows (``status``,
``reason``, ``deid_key``, ``sha256``, ``md5``, ``size_out``), so screening (which leaves
them alone), verification, registration, publication and the release treat them alike.

Published keys never use a submitted file name (names carry PHI):

- a slide: ``pathology/<pseudonym>/slide-<keyed hash of its content>.svs`` (or ``.tif``);
- a clinical table: ``supporting/collection/<submission id>/<table name>.<csv|tsv|xlsx>``.

A slide belongs to the patient named by ``pathology.slide_patients`` (a slide-to-patient
table) or ``pathology.patient_id_from_path``, which need no DICOM image of that patient
(pathology-only collections), or else to the one patient whose DICOM files share the slide's
nearest folder. Clinical tables map
their patient column through the same keyed hash as PatientID, so a table row and the
images of its patient get the same pseudonym and the same date offset.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from pydicom import dcmread

from imaging_ingest.catalog import Catalog
from imaging_ingest.config import CollectionConfig
from imaging_ingest.core.checksum import file_digests
from imaging_ingest.curation.quarantine import SupportingRecord, known_pseudonyms
from imaging_ingest.deid import date_offset_days, keyed_hash
from imaging_ingest.deid.batch import merge_results
from imaging_ingest.deid.patients import patient_key
from imaging_ingest.screen.clinical import (
    PatientInfo,
    TableError,
    deidentify_table,
    gate_projection,
    patient_column,
    read_table,
    table_format,
    table_leaks,
    write_table,
)
from imaging_ingest.screen.slides import SlideError, deidentify_slide, removed_values, verify_slide
from imaging_ingest.verify.leaks import Verdict, identifying_values, verify_frame

__all__ = [
    "SUPPORTING_KINDS",
    "SupportingEnv",
    "accept_supporting",
    "deidentify_supporting",
    "is_supporting_batch",
    "merge_all",
    "plan_supporting",
    "supporting_records",
    "verify_all",
]

log = logging.getLogger(__name__)

SUPPORTING_KINDS = ("slide", "clinical")
_SLIDE_SUFFIXES = {".svs": ".svs", ".tif": ".tif", ".tiff": ".tif"}


def accept_supporting(config: CollectionConfig) -> Callable[[str, str], str | None]:
    """For the inventory: None when the collection takes a supporting file, else the reason (PHI-free)."""

    def accept(kind: str, source_path: str) -> str | None:
        if kind == "clinical":
            if config.clinical.table_for(source_path) is None:
                return "supporting file of type 'clinical' is not declared in the collection config (clinical.tables)"
            if table_format(source_path) == "unsupported":
                return f"clinical table format {PurePosixPath(source_path).suffix.lower()} is not supported (CSV, TSV, XLSX)"
            return None
        if kind == "slide":
            if not config.pathology.enabled:
                return "supporting file of type 'slide' is not declared in the collection config (pathology.enabled)"
            suffix = PurePosixPath(source_path).suffix.lower()
            if suffix not in _SLIDE_SUFFIXES:
                return f"slide format {suffix} is not supported (Aperio SVS and pyramidal TIFF are)"
            return None
        return f"supporting file of type '{kind}' is not declared in the collection config"

    return accept


def plan_supporting(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One work item per supporting file still ok: (manifest name, its one-row manifest)."""
    if "kind" not in frame.columns:
        return []
    ok = frame[(frame["status"] == "ok") & frame["kind"].isin(SUPPORTING_KINDS)].sort_values("file_id")
    return [(f"batches/{row.kind}-{int(row.file_id):06d}", ok.loc[[index]]) for index, row in ok.iterrows()]


def is_supporting_batch(batch: pd.DataFrame) -> bool:
    return "kind" in batch.columns and len(batch) > 0 and bool(batch["kind"].isin(SUPPORTING_KINDS).all())


@dataclass
class SupportingEnv:
    """What de-identifying and verifying supporting files need from the pipeline (or the local run)."""

    config: CollectionConfig
    secret: bytes
    catalog: Catalog
    submission_id: str
    inventory: pd.DataFrame
    source_of: Callable[[dict[str, Any]], Path]
    destination_of: Callable[[str], Path]
    on_output: Callable[[dict[str, Any]], None] | None = None
    _identifiers: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)

    def pseudonyms(self, patient_ids: Iterable[str], create: bool = False) -> dict[str, str]:
        keys = {pid: patient_key(self.secret, self.config.id, pid) for pid in set(patient_ids)}
        if create:
            by_key = self.catalog.assign_pseudonyms(self.config.id, self.config.pseudonym_prefix, keys.values())
        else:
            by_key = known_pseudonyms(self.catalog, self.config.id, keys.values())
        return {pid: by_key[key] for pid, key in keys.items() if key in by_key}

    def offset(self, patient_id: str) -> int:
        low, high = self.config.deid.date_shift_days
        return date_offset_days(self.secret, patient_key(self.secret, self.config.id, patient_id), low, high)

    def identifiers(self, patient_id: str) -> tuple[str, ...]:
        """The identifying values the patient's own DICOM files state (one header per series)."""
        if patient_id in self._identifiers:
            return self._identifiers[patient_id]
        values: dict[str, None] = {}
        frame = self.inventory
        if "kind" in frame.columns and "patient_id" in frame.columns:
            mine = frame[(frame["kind"] == "dicom") & (frame["patient_id"] == patient_id) & frame["raw_or_locator"]]
            for _, series in mine.groupby(mine["series_uid"].fillna(""), sort=True):
                record = series.iloc[0].to_dict()
                try:
                    header = dcmread(self.source_of(record), stop_before_pixels=True, force=True)
                    for needle in identifying_values(header):
                        values.setdefault(needle.value.decode("utf-8", "replace"), None)
                except Exception as exc:  # noqa: BLE001 - an unreadable header adds no identifiers
                    log.debug("no identifiers from file %s (%s)", record.get("file_id"), type(exc).__name__)
        self._identifiers[patient_id] = tuple(values)
        return self._identifiers[patient_id]


def _inventory_view(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    has = pd.Series(False, index=frame.index)
    for column in ("raw_key", "locator"):
        if column in frame.columns:
            has |= frame[column].notna()
    frame["raw_or_locator"] = has
    return frame


def _quarantined(record: dict[str, Any], reason: str) -> dict[str, Any]:
    return {"file_id": int(record["file_id"]), "deid_key": None, "status": "quarantined", "reason": reason}


def deidentify_supporting(batch: pd.DataFrame, env: SupportingEnv) -> pd.DataFrame:
    """De-identify a batch of supporting files; one result row per file (``file_id`` first)."""
    env.inventory = _inventory_view(env.inventory)
    rows = []
    for record in batch.to_dict("records"):
        try:
            row = _slide(record, env) if record["kind"] == "slide" else _clinical(record, env)
        except (SlideError, TableError) as exc:
            row = _quarantined(record, str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch; the type names the cause
            log.warning("file %s: %s de-identification failed (%s)", record["file_id"], record["kind"], type(exc).__name__)
            row = _quarantined(record, f"{record['kind']} de-identification failed ({type(exc).__name__})")
        if row["status"] == "ok" and env.on_output is not None:
            env.on_output(row)
        rows.append(row)
    return pd.DataFrame(rows)


# -- slides ---------------------------------------------------------------------------------


def _slide_patient(record: dict[str, Any], env: SupportingEnv) -> tuple[str, bool]:
    """The slide's patient ID, and whether the collection named it (then it needs no DICOM image)."""
    path = str(record["source_path"])
    table = env.config.pathology.slide_patients
    named = table.get(path) or table.get(PurePosixPath(path).name)
    if named:
        return named.strip(), True
    pattern = env.config.pathology.patient_id_from_path
    if pattern:
        match = re.search(pattern, path)
        if not match or not match.group("patient_id"):
            raise SlideError("the slide's path does not match pathology.patient_id_from_path")
        return str(match.group("patient_id")), True
    frame = env.inventory
    dicom = frame[(frame["kind"] == "dicom") & frame["patient_id"].notna()]
    for folder in PurePosixPath(path).parents:
        prefix = "" if str(folder) == "." else f"{folder}/"
        near = dicom[dicom["source_path"].str.startswith(prefix)] if prefix else dicom
        patients = set(near["patient_id"])
        if len(patients) == 1:
            return str(patients.pop()), False
        if len(patients) > 1:
            raise SlideError(
                f"cannot tell which of {len(patients)} patients the slide belongs to; "
                "set pathology.patient_id_from_path or put it in its patient's folder"
            )
    raise SlideError(
        "no DICOM file of any patient shares the slide's folder; set pathology.patient_id_from_path or slide_patients"
    )


def slide_key(secret: bytes, collection_id: str, pseudonym: str, sha256_source: str, source_path: str) -> str:
    """``pathology/<pseudonym>/slide-<hash>.svs``: from the slide's content, never its name."""
    digest = keyed_hash(secret, "slide", f"{collection_id}\x00{sha256_source}").hex()[:16]
    suffix = _SLIDE_SUFFIXES.get(PurePosixPath(source_path).suffix.lower(), ".tif")
    return f"pathology/{pseudonym}/slide-{digest}{suffix}"


def _slide(record: dict[str, Any], env: SupportingEnv) -> dict[str, Any]:
    patient_id, named = _slide_patient(record, env)
    # a patient the collection names (path rule or table) may have slides only: it gets a pseudonym here
    pseudonym = env.pseudonyms([patient_id], create=named).get(patient_id)
    if pseudonym is None:
        raise SlideError("the slide's patient has no images in this collection (no pseudonym)")
    sha = str(record.get("sha256_source") or file_digests(env.source_of(record)).sha256)
    key = slide_key(env.secret, env.config.id, pseudonym, sha, str(record["source_path"]))
    destination = env.destination_of(key)
    destination.parent.mkdir(parents=True, exist_ok=True)
    result = deidentify_slide(
        env.source_of(record),
        destination,
        keep_description_keys=env.config.pathology.keep_description_keys,
        keep_thumbnail=env.config.pathology.keep_thumbnail,
    )
    return _written(
        record, key, destination, result.summary(), pseudonym, patient_key(env.secret, env.config.id, patient_id)
    )


# -- clinical tables --------------------------------------------------------------------------


def _table_patients(frame: pd.DataFrame, table: Any, env: SupportingEnv) -> dict[str, PatientInfo]:
    ids = {v.strip() for v in frame[patient_column(table)] if v.strip()}
    pseudonyms = env.pseudonyms(ids)
    unknown = ids - set(pseudonyms)
    if unknown and table.allow_unknown_patients:
        pseudonyms |= env.pseudonyms(unknown, create=True)
    elif unknown:
        raise TableError(
            f"clinical table names {len(unknown)} patient(s) with no images in this collection "
            "(clinical.tables[].allow_unknown_patients is off)"
        )
    return {pid: PatientInfo(pseudonyms[pid], env.offset(pid), env.identifiers(pid)) for pid in sorted(ids)}


def clinical_key(submission_id: str, table_name: str, source_path: str) -> str:
    return f"supporting/collection/{submission_id}/{table_name}.{table_format(source_path)}"


def _clinical(record: dict[str, Any], env: SupportingEnv) -> dict[str, Any]:
    source_path = str(record["source_path"])
    table = env.config.clinical.table_for(source_path)
    if table is None:
        raise TableError("clinical table not declared in the collection config")
    frame = read_table(env.source_of(record), source_path, table)
    patients = _table_patients(frame, table, env)
    out, result = deidentify_table(frame, table, patients)
    key = clinical_key(env.submission_id, table.name, source_path)
    destination = env.destination_of(key)
    write_table(out, destination, table_format(source_path), sheet=table.name)
    return _written(record, key, destination, result.summary(), None, None)


# -- merge, verify, register ----------------------------------------------------------------


def merge_all(inventory: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """``merge_results`` plus the pseudonym a slide was given (the inventory knows none for it)."""
    frame = merge_results(inventory, results)
    for column, source in (("pseudo_patient_id", "supporting_pseudonym"), ("patient_key", "supporting_patient_key")):
        if source in frame.columns and column in frame.columns:
            frame[column] = frame[column].where(frame[column].notna(), frame[source])
    return frame


def _is_dicom(frame: pd.DataFrame) -> pd.Series:
    if "kind" not in frame.columns:
        return pd.Series(True, index=frame.index)
    return ~frame["kind"].isin(SUPPORTING_KINDS)


def verify_all(
    frame: pd.DataFrame,
    source_of: Callable[[dict[str, Any]], Path],
    output_of: Callable[[dict[str, Any]], Path],
    env: SupportingEnv | None,
    *,
    options: Iterable[str] | None = None,
    workers: int = 1,
    pool: Executor | None = None,
    known: Mapping[int, tuple[str, Verdict]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Verify DICOM rows with the leak scan and supporting rows with their own checks.

    ``options`` are the de-identification options applied (values a Retain option keeps
    on purpose are not leaks); ``workers`` > 1 runs the leak scan in a process pool, or
    ``pool`` in a shared one (``verify.leak_scan_pool``); ``known``: verdicts already reached
    on the outputs (``verify_frame``).
    Returns the verified manifest and the clinical gate's PHI-free projection (empty when
    there are no clinical tables).
    """
    dicom = _is_dicom(frame)
    verified = verify_frame(
        frame[dicom], source_of, output_of, options=options, workers=workers, pool=pool, known=known
    )
    others = frame[~dicom].copy()
    others["leaks"] = 0
    others["verified"] = False
    projections = []
    for index in others.index[others["status"] == "ok"]:
        record = others.loc[index].to_dict()
        try:
            if record["kind"] == "slide":
                problems = _verify_slide(record, source_of, output_of, env)
            else:
                problems, projection = _verify_clinical(record, source_of, output_of, env)
                projections.append(projection)
        except Exception as exc:  # noqa: BLE001 - a file the checks cannot read is not published
            problems = [f"could not be verified ({type(exc).__name__})"]
        others.loc[index, ["leaks", "verified"]] = [len(problems), True]
        if problems:
            others.loc[index, ["status", "reason"]] = ["quarantined", f"{record['kind']} verification: {problems[0]}"]
    out = pd.concat([verified, others]).loc[frame.index] if len(others) else verified
    projection = pd.concat(projections, ignore_index=True) if projections else pd.DataFrame()
    return out, projection


def _verify_slide(
    record: dict[str, Any],
    source_of: Callable[[dict[str, Any]], Path],
    output_of: Callable[[dict[str, Any]], Path],
    env: SupportingEnv | None,
) -> list[str]:
    pathology = env.config.pathology if env else None
    source = source_of(record)
    needles = removed_values(
        source,
        keep_description_keys=pathology.keep_description_keys if pathology else (),
        keep_thumbnail=pathology.keep_thumbnail if pathology else True,
    )
    stem = PurePosixPath(str(record["source_path"])).stem
    needles += [p for p in re.split(r"[\s_.,-]+", stem) if len(p) >= 6]
    return verify_slide(source, output_of(record), needles)


def _verify_clinical(
    record: dict[str, Any],
    source_of: Callable[[dict[str, Any]], Path],
    output_of: Callable[[dict[str, Any]], Path],
    env: SupportingEnv | None,
) -> tuple[list[str], pd.DataFrame]:
    if env is None:
        raise RuntimeError("clinical verification needs the collection's patients")
    env.inventory = _inventory_view(env.inventory)
    source_path = str(record["source_path"])
    table = env.config.clinical.table_for(source_path)
    if table is None:
        return ["the table is no longer declared"], pd.DataFrame()
    source = read_table(source_of(record), source_path, table)
    output = read_table(output_of(record), str(record["deid_key"]), table.model_copy(update={"sheet": None}))
    id_column = patient_column(table)
    ids = [v.strip() for v in source[id_column]]
    pseudonyms = env.pseudonyms(ids)
    patients = {pid: PatientInfo(pseudonyms[pid], env.offset(pid)) for pid in ids if pid in pseudonyms}
    projection = gate_projection(source, output, table, patients, env.config.deid.date_shift_days, int(record["file_id"]))
    all_ids = [i for i in ids if len(i) >= 4]

    def needles(row: int) -> list[str]:
        pid = ids[row] if row < len(ids) else ""
        dropped = [str(source[c].iloc[row]) for c, role in table.columns.items() if role.value == "drop"]
        return [*all_ids, *dropped, *(v for v in env.identifiers(pid) if len(v) >= 6)]

    problems = []
    if len(output) != len(source):
        problems.append(f"the output has {len(output)} rows, the source {len(source)}")
    leaks = table_leaks(output, needles)
    if leaks:
        problems.append(f"PHI leak: {leaks} row(s) still hold identifying values")
    return problems, projection


def supporting_records(frame: pd.DataFrame, tier: str, object_key: Callable[[str], str]) -> list[SupportingRecord]:
    ok = frame[(frame["status"] == "ok") & ~_is_dicom(frame)]
    return [
        SupportingRecord(
            kind=str(r["kind"]),
            pseudonym=r["pseudo_patient_id"] if isinstance(r.get("pseudo_patient_id"), str) else None,
            object_key=object_key(str(r["deid_key"])),
            tier=tier,
            size=int(r["size_out"]),
            sha256=str(r["sha256"]),
            md5=str(r["md5"]),
        )
        for r in ok.to_dict("records")
    ]


def _written(
    record: dict[str, Any],
    key: str,
    destination: Path,
    summary: dict[str, Any],
    pseudonym: str | None,
    id_key: str | None,
) -> dict[str, Any]:
    """The manifest row of a de-identified supporting file: its key, checksums and what was done."""
    digests = file_digests(destination)
    return {
        "file_id": int(record["file_id"]),
        "deid_key": key,
        "status": "ok",
        "reason": None,
        "sha256": digests.sha256,
        "md5": digests.md5,
        "size_out": digests.size,
        "supporting_pseudonym": pseudonym,
        "supporting_patient_key": id_key,
        **summary,
    }
