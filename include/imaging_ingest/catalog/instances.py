"""Registering de-identified instances: patients, studies, series and objects, idempotently."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from imaging_ingest.catalog.base import CHUNK, CatalogBase, event_row, patients_by_hash
from imaging_ingest.catalog.models import (
    EventType,
    Instance,
    Patient,
    Series,
    Study,
    utcnow,
)
from imaging_ingest.catalog.types import (
    InstanceRecord,
    RegisteredObject,
    replacement_key,
)
from imaging_ingest.core.records import chunks

__all__ = ["InstancesMixin"]


class InstancesMixin(CatalogBase):
    """Catalog operations on registering de-identified instances."""

    def register(self, collection_id: str, submission_id: str, records: Sequence[InstanceRecord]) -> int:
        """Upsert patients' studies, series and instances; return how many instance rows were new.

        An instance whose bytes the catalog already holds (same SOP Instance UID, same
        SHA-256, pending or listed) is not registered again. New bytes for a known SOP
        Instance UID are a replacement: a new row under ``replacement_key`` that the next
        version lists instead of the old one (see ``apply_release``).
        """
        if not records:
            return 0
        new_rows: list[dict[str, Any]] = []
        with self.session() as s:
            id_hashes = sorted({r.id_hash for r in records})
            patients: dict[str, int] = patients_by_hash(s, collection_id, id_hashes, Patient.id)
            studies: dict[str, int] = {}
            series: dict[str, int] = {}
            existing = self._objects_by_sop(s, collection_id, sorted({r.sop_uid for r in records}))
            stale: list[int] = []
            seen: set[str] = set()
            for r in records:
                if r.sop_uid in seen:
                    continue
                seen.add(r.sop_uid)
                if r.study_uid not in studies:
                    studies[r.study_uid] = self._upsert_study(s, collection_id, r, patients[r.id_hash])
                if r.series_uid not in series:
                    series[r.series_uid] = self._upsert_series(
                        s, collection_id, submission_id, r, studies[r.study_uid]
                    )
                rows = existing.get(r.sop_uid, [])
                if any(o.sha256 == r.sha256 and o.live for o in rows):
                    continue
                stale += [
                    o.id
                    for o in rows
                    if o.published_version is None and o.live and o.submission_id == submission_id
                ]
                same_bytes = [o for o in rows if o.sha256 == r.sha256]
                if same_bytes:
                    key = same_bytes[0].object_key  # bytes an older version listed come back: same object
                elif any(o.object_key == r.object_key for o in rows):
                    key = replacement_key(r.object_key, r.sha256)
                else:
                    key = r.object_key
                new_rows.append(
                    {
                        "collection_id": collection_id,
                        "sop_uid": r.sop_uid,
                        "sop_class_uid": r.sop_class_uid,
                        "series_id": series[r.series_uid],
                        "object_key": key,
                        "tier": r.tier,
                        "size": r.size,
                        "sha256": r.sha256,
                        "md5": r.md5,
                        "submission_id": submission_id,
                        "created_at": utcnow(),
                    }
                )
            for chunk in chunks(stale, CHUNK):
                s.execute(delete(Instance).where(Instance.id.in_(chunk)))
            if new_rows:
                s.execute(insert(Instance), new_rows)
                detail = f"submission {submission_id}"
                self.add_events(
                    s,
                    [
                        event_row(
                            EventType.DEIDENTIFICATION,
                            "deidentify",
                            "success",
                            row["object_key"],
                            collection_id,
                            "object",
                            f"de-identified and leak-scanned; {detail}",
                        )
                        for row in new_rows
                    ]
                    + [
                        event_row(
                            EventType.INGESTION,
                            "register",
                            "success",
                            row["object_key"],
                            collection_id,
                            "object",
                            f"registered; {detail}; sha256 {row['sha256']}",
                        )
                        for row in new_rows
                    ],
                )
        return len(new_rows)

    @staticmethod
    def _objects_by_sop(
        s: Session, collection_id: str, sop_uids: Sequence[str]
    ) -> dict[str, list[RegisteredObject]]:
        found: dict[str, list[RegisteredObject]] = defaultdict(list)
        for chunk in chunks(sop_uids, CHUNK):
            for row in s.execute(
                select(
                    Instance.id,
                    Instance.sop_uid,
                    Instance.sha256,
                    Instance.object_key,
                    Instance.submission_id,
                    Instance.published_version,
                    Instance.retired_version,
                ).where(Instance.collection_id == collection_id, Instance.sop_uid.in_(chunk))
            ):
                found[row.sop_uid].append(RegisteredObject(*row))
        return found

    @staticmethod
    def _upsert_study(s: Session, collection_id: str, r: InstanceRecord, patient_id: int) -> int:
        row = s.scalar(select(Study).where(Study.collection_id == collection_id, Study.uid == r.study_uid))
        if row is None:
            row = Study(
                collection_id=collection_id,
                uid=r.study_uid,
                patient_id=patient_id,
                study_date=r.study_date,
                description=r.study_description,
            )
            s.add(row)
            s.flush()
        return row.id

    @staticmethod
    def _upsert_series(
        s: Session, collection_id: str, submission_id: str, r: InstanceRecord, study_id: int
    ) -> int:
        row = s.scalar(
            select(Series).where(Series.collection_id == collection_id, Series.uid == r.series_uid)
        )
        if row is None:
            row = Series(
                collection_id=collection_id,
                uid=r.series_uid,
                study_id=study_id,
                modality=r.modality,
                body_part=r.body_part,
                manufacturer=r.manufacturer,
                description=r.series_description,
                submission_id=submission_id,
            )
            s.add(row)
            s.flush()
        return row.id

    def registered_objects(
        self, collection_id: str, sop_uids: Iterable[str]
    ) -> dict[str, list[RegisteredObject]]:
        """Every instance row of these SOP Instance UIDs (pending, listed and retired)."""
        with self.session() as s:
            return dict(self._objects_by_sop(s, collection_id, sorted(set(sop_uids))))

    def instances(self, collection_id: str, sop_uids: Iterable[str] | None = None) -> list[Instance]:
        """Instance rows of a collection (every span: pending, listed and retired)."""
        with self.session() as s:
            query = select(Instance).where(Instance.collection_id == collection_id)
            if sop_uids is None:
                return list(s.scalars(query.order_by(Instance.object_key, Instance.id)))
            rows: list[Instance] = []
            for chunk in chunks(sorted(set(sop_uids)), CHUNK):
                rows += s.scalars(query.where(Instance.sop_uid.in_(chunk)))
            return sorted(rows, key=lambda i: (i.object_key, i.id))
