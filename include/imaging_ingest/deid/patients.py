"""Patients: keyed hashes of original IDs, catalog pseudonyms and per-patient date offsets.

A patient is known to the archive only by a keyed hash of (collection, original
PatientID). The catalog maps that hash to a pseudonym such as ``DEMO-0007`` that stays the
same across submissions and reruns; the same hash, with the secret, gives the patient's
date offset.
"""

from __future__ import annotations

import pandas as pd

from imaging_ingest.catalog import Catalog
from imaging_ingest.config import CollectionConfig
from imaging_ingest.deid import date_offset_days, keyed_hash

__all__ = ["assign_patients", "patient_key"]


def patient_key(secret: bytes, collection_id: str, patient_id: str) -> str:
    return keyed_hash(secret, "patient", f"{collection_id}\x00{patient_id}").hex()


#: The stand-in Patient ID of a study whose files state none: a patient of its own, per study.
NO_PATIENT_ID = "(no PatientID) study "


def _without_patient_id(frame: pd.DataFrame, config: CollectionConfig) -> None:
    """DICOM rows still ok without a Patient ID: a patient per study, or quarantined, as the collection says."""
    if "patient_id" not in frame.columns or "study_uid" not in frame.columns:
        return
    missing = (frame["status"] == "ok") & frame["patient_id"].isna() & frame["study_uid"].notna()
    if "kind" in frame.columns:
        missing &= frame["kind"] == "dicom"
    if not missing.any():
        return
    if config.missing_patient_id == "quarantine":
        frame.loc[missing, ["status", "reason"]] = ["quarantined", "missing PatientID"]
    else:
        frame["patient_id"] = frame["patient_id"].astype(object)
        frame.loc[missing, "patient_id"] = NO_PATIENT_ID + frame.loc[missing, "study_uid"].astype(str)


def assign_patients(
    frame: pd.DataFrame, secret: bytes, catalog: Catalog, config: CollectionConfig, *, copy: bool = True
) -> pd.DataFrame:
    """Add ``patient_key``, ``pseudo_patient_id``, ``date_offset_days`` and ``patients_in_series`` to ok rows.

    ``copy=False`` adds them to ``frame`` itself (for a caller that owns it).
    """
    if copy:
        frame = frame.copy()
    _without_patient_id(frame, config)
    ok = frame["status"] == "ok"
    keys = {pid: patient_key(secret, config.id, pid) for pid in frame.loc[ok, "patient_id"].dropna().unique()}
    pseudonyms = catalog.assign_pseudonyms(config.id, config.pseudonym_prefix, keys.values())
    low, high = config.deid.date_shift_days
    frame["patient_key"] = [keys.get(p) if o else None for p, o in zip(frame["patient_id"], ok, strict=True)]
    frame["pseudo_patient_id"] = [pseudonyms.get(k) if k else None for k in frame["patient_key"]]
    frame["date_offset_days"] = [date_offset_days(secret, k, low, high) if k else None for k in frame["patient_key"]]
    series_patients = frame[ok].groupby("series_uid")["patient_id"].nunique()
    frame["patients_in_series"] = frame["series_uid"].map(series_patients).where(ok)
    return frame
