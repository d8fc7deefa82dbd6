"""Manifests: one Parquet table per stage, one row per submitted file, kept in the staging tier.

Stages hand each other manifests by object key (never rows through XCom). The staging
tier is restricted: manifests hold original identifiers next to the new ones, which is
what makes verification and curator review possible. Anything that leaves the restricted
tiers (logs, gate reports, XComs) is a PHI-free projection (``public_projection``).
"""

from __future__ import annotations

import io

import pandas as pd

from .deid.uids import keyed_hash
from .storage import ObjectStore

__all__ = ["STATUS_OK", "STATUS_QUARANTINED", "ManifestStore", "public_projection", "status_counts"]

STATUS_OK = "ok"
STATUS_QUARANTINED = "quarantined"

#: Columns that never leave the restricted tiers as they are.
PHI_COLUMNS = ("source_path", "patient_id", "study_uid", "series_uid", "sop_uid")


class ManifestStore:
    """Read and write a submission's manifests in the staging tier."""

    def __init__(self, store: ObjectStore, collection_id: str, submission_id: str) -> None:
        self.store = store
        self.prefix = f"{collection_id}/{submission_id}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/manifests/{name}.parquet"

    def write(self, name: str, frame: pd.DataFrame) -> str:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        key = self.key(name)
        self.store.put_bytes("staging", key, buffer.getvalue(), "application/vnd.apache.parquet")
        return key

    def read_key(self, key: str) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(self.store.get_bytes("staging", key)))

    def read(self, name: str) -> pd.DataFrame:
        return self.read_key(self.key(name))

    def exists(self, name: str) -> bool:
        return self.store.head("staging", self.key(name)) is not None


def public_projection(frame: pd.DataFrame, secret: bytes) -> pd.DataFrame:
    """The manifest without PHI: original UIDs replaced by short keyed hashes, paths dropped."""
    out = frame.drop(columns=[c for c in PHI_COLUMNS if c in frame.columns])
    for column in ("sop_uid", "series_uid", "study_uid"):
        if column in frame.columns:
            out[f"{column}_h"] = [
                keyed_hash(secret, "gate", v).hex()[:16] if isinstance(v, str) and v else None for v in frame[column]
            ]
    return out


def status_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Files, and how many are still ok or quarantined: the counts every stage reports."""
    status = frame["status"].value_counts()
    return {
        "files": len(frame),
        "ok": int(status.get(STATUS_OK, 0)),
        "quarantined": int(status.get(STATUS_QUARANTINED, 0)),
    }
