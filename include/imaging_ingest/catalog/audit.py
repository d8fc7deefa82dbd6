"""The quarantine queue's rows and the PREMIS-style audit trail."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from imaging_ingest.catalog.base import CHUNK, CatalogBase, audit_event
from imaging_ingest.catalog.models import (
    AuditEvent,
    Instance,
    QuarantineItem,
    Series,
)
from imaging_ingest.core.records import chunks

__all__ = ["AuditMixin"]


class AuditMixin(CatalogBase):
    """Catalog operations on the quarantine queue's rows and the PREMIS-style audit trail."""

    def add_quarantine(
        self,
        collection_id: str,
        submission_id: str,
        items: Iterable[tuple[int, str, str, str, str | None]],
    ) -> int:
        """Record quarantined files: (file_id, source_path, stage, reason, object_key); idempotent."""
        added = 0
        with self.session() as s:
            known = set(
                s.scalars(select(QuarantineItem.file_id).where(QuarantineItem.submission_id == submission_id))
            )
            for file_id, source_path, stage, reason, key in items:
                if file_id in known:
                    continue
                s.add(
                    QuarantineItem(
                        collection_id=collection_id,
                        submission_id=submission_id,
                        file_id=file_id,
                        source_path=source_path,
                        stage=stage,
                        reason=reason,
                        object_key=key,
                    )
                )
                added += 1
        return added

    def quarantine_items(
        self, collection_id: str | None = None, state: str | None = None
    ) -> list[QuarantineItem]:
        with self.session() as s:
            query = select(QuarantineItem)
            if collection_id:
                query = query.where(QuarantineItem.collection_id == collection_id)
            if state:
                query = query.where(QuarantineItem.state == state)
            return list(s.scalars(query.order_by(QuarantineItem.id)))

    def audit(
        self,
        event_type: str,
        agent: str,
        outcome: str,
        object_id: str,
        collection_id: str | None,
        detail: str | None = None,
        object_type: str = "object",
    ) -> None:
        with self.session() as s:
            s.add(audit_event(event_type, agent, outcome, object_id, collection_id, object_type, detail))

    def audit_events(self, object_id: str | None = None, limit: int = 1000) -> list[AuditEvent]:
        with self.session() as s:
            query = select(AuditEvent)
            if object_id:
                query = query.where(AuditEvent.object_id == object_id)
            return list(s.scalars(query.order_by(AuditEvent.id.desc()).limit(limit)))

    def audit_trail(self, target: str, collection_id: str | None = None) -> list[AuditEvent]:
        """Every event of an object key, a SOP Instance UID or a series UID (with its objects), oldest first."""
        with self.session() as s:
            ids = {target}
            series_query = select(Series.id, Series.uid).where(Series.uid == target)
            instance_query = select(Instance.object_key).where(Instance.sop_uid == target)
            if collection_id:
                series_query = series_query.where(Series.collection_id == collection_id)
                instance_query = instance_query.where(Instance.collection_id == collection_id)
            series_ids = [row_id for row_id, _ in s.execute(series_query).tuples()]
            if series_ids:
                ids |= set(s.scalars(select(Instance.object_key).where(Instance.series_id.in_(series_ids))))
            ids |= set(s.scalars(instance_query))
            events: list[AuditEvent] = []
            for chunk in chunks(sorted(ids), CHUNK):
                query = select(AuditEvent).where(AuditEvent.object_id.in_(chunk))
                if collection_id:
                    query = query.where(AuditEvent.collection_id == collection_id)
                events += s.scalars(query)
            return sorted(events, key=lambda e: (e.at, e.id))
