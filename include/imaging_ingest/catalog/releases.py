"""Collection versions: members, releases applied to the catalog, and fixity targets and results."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from imaging_ingest.catalog.base import CHUNK, CatalogBase, event_row
from imaging_ingest.catalog.curation import SupportingFile
from imaging_ingest.catalog.models import (
    CollectionVersion,
    EventType,
    Instance,
    Patient,
    Series,
    Study,
    VersionKind,
    utcnow,
)
from imaging_ingest.catalog.types import (
    CatalogOutOfSync,
    FixityTarget,
    Member,
)
from imaging_ingest.core.records import chunks

__all__ = ["ReleasesMixin"]


def _live_span(version: int) -> Any:
    """Instances listed in ``version``: published at or before it and not retired by then."""
    return and_(
        Instance.published_version.is_not(None),
        Instance.published_version <= version,
        or_(Instance.retired_version.is_(None), Instance.retired_version > version),
    )


class ReleasesMixin(CatalogBase):
    """Catalog operations on collection versions."""

    def latest_version(self, collection_id: str) -> CollectionVersion | None:
        with self.session() as s:
            return s.scalar(
                select(CollectionVersion)
                .where(CollectionVersion.collection_id == collection_id)
                .order_by(CollectionVersion.number.desc())
                .limit(1)
            )

    def version(self, collection_id: str, number: int) -> CollectionVersion | None:
        with self.session() as s:
            return s.scalar(
                select(CollectionVersion).where(
                    CollectionVersion.collection_id == collection_id, CollectionVersion.number == number
                )
            )

    def versions(self, collection_id: str) -> list[CollectionVersion]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(CollectionVersion)
                    .where(CollectionVersion.collection_id == collection_id)
                    .order_by(CollectionVersion.number)
                )
            )

    def members_query(self, collection_id: str, version: int) -> Any:
        """The SELECT behind :meth:`members` (the benchmark EXPLAINs it)."""
        return (
            select(
                Instance.object_key,
                Instance.size,
                Instance.sha256,
                Instance.md5,
                Instance.tier,
                Patient.pseudonym,
                Study.uid,
                Series.uid,
                Instance.sop_uid,
                Instance.sop_class_uid,
                Series.modality,
            )
            # The collection predicates on every table let each join use its (collection_id, ...) index.
            .join(Series, and_(Series.id == Instance.series_id, Series.collection_id == collection_id))
            .join(Study, and_(Study.id == Series.study_id, Study.collection_id == collection_id))
            .join(Patient, and_(Patient.id == Study.patient_id, Patient.collection_id == collection_id))
            .where(Instance.collection_id == collection_id, _live_span(version))
            .order_by(Instance.object_key)
        )

    def members(self, collection_id: str, version: int) -> Iterator[Member]:
        """The objects the catalog lists in a version, by key (streamed: a version may be large)."""
        with self.engine.connect() as connection:
            result = connection.execution_options(yield_per=5000).execute(
                self.members_query(collection_id, version)
            )
            for row in result:
                yield Member(*row)

    def apply_release(
        self,
        collection_id: str,
        number: int,
        release_key: str,
        keys: Iterable[str],
        *,
        total_bytes: int,
        submission_id: str | None = None,
        kind: str = VersionKind.SUBMISSION,
        reason: str | None = None,
        doi: str | None = None,
        changed_series: Iterable[str] = (),
        agent: str = "publish",
    ) -> bool:
        """Make the catalog list exactly ``keys`` as version ``number``; False if it already does.

        Rows listed in the previous version but not in ``keys`` are retired at ``number``;
        pending rows whose keys are listed are published at ``number``. Called after the
        version's ``release.json`` is written, so a release the catalog missed (a crash in
        between) can be applied later from the release itself.
        """
        listed = set(keys)
        retired_type = EventType.WITHDRAWAL if kind == VersionKind.WITHDRAWAL else EventType.REPLACEMENT
        with self.session() as s:
            if s.scalar(
                select(CollectionVersion.id).where(
                    CollectionVersion.collection_id == collection_id, CollectionVersion.number == number
                )
            ):
                return False
            latest = s.scalar(
                select(func.max(CollectionVersion.number)).where(
                    CollectionVersion.collection_id == collection_id
                )
            )
            if latest is not None and number != latest + 1:
                raise CatalogOutOfSync(f"{collection_id}: version {number} cannot follow version {latest}")
            current: dict[str, list[int]] = defaultdict(list)
            for row_id, key in s.execute(
                select(Instance.id, Instance.object_key).where(
                    Instance.collection_id == collection_id,
                    Instance.published_version.is_not(None),
                    Instance.retired_version.is_(None),
                )
            ).tuples():
                current[key].append(row_id)
            retire = {key: ids for key, ids in current.items() if key not in listed}
            missing = sorted(listed - current.keys())
            pending: dict[str, int] = {}
            if missing:  # every registered, unpublished row of the collection: one indexed range
                for row_id, key in s.execute(
                    select(Instance.id, Instance.object_key)
                    .where(
                        Instance.collection_id == collection_id,
                        Instance.published_version.is_(None),
                        Instance.retired_version.is_(None),
                    )
                    .order_by(Instance.id)
                ).tuples():
                    pending.setdefault(key, row_id)
            publish = {key: pending[key] for key in missing if key in pending}
            unknown = [key for key in missing if key not in pending]
            if unknown:
                raise CatalogOutOfSync(
                    f"{collection_id} version {number} lists {len(unknown)} object(s) the catalog has not "
                    f"registered, e.g. {unknown[0]}"
                )
            retire_ids = sorted(i for ids in retire.values() for i in ids)
            for chunk in chunks(retire_ids, CHUNK):
                s.execute(update(Instance).where(Instance.id.in_(chunk)).values(retired_version=number))
            publish_ids = sorted(publish.values())
            for chunk in chunks(publish_ids, CHUNK):
                s.execute(update(Instance).where(Instance.id.in_(chunk)).values(published_version=number))
            s.add(
                CollectionVersion(
                    collection_id=collection_id,
                    number=number,
                    release_key=release_key,
                    objects=len(listed),
                    bytes=total_bytes,
                    submission_id=submission_id,
                    kind=str(kind),
                    reason=reason,
                    doi=doi,
                )
            )
            events = [
                event_row(
                    EventType.PUBLICATION,
                    agent,
                    "success",
                    release_key,
                    collection_id,
                    "version",
                    f"version {number}: {len(listed)} objects, {len(publish)} new, {len(retire)} dropped",
                )
            ]
            events += [
                event_row(retired_type, agent, "success", uid, collection_id, "series", reason)
                for uid in sorted(set(changed_series))
            ]
            events += [
                event_row(
                    EventType.PUBLICATION,
                    agent,
                    "success",
                    key,
                    collection_id,
                    "object",
                    f"first listed in version {number}",
                )
                for key in sorted(publish)
            ]
            events += [
                event_row(
                    retired_type,
                    agent,
                    "success",
                    key,
                    collection_id,
                    "object",
                    f"not listed from version {number}",
                )
                for key in sorted(retire)
            ]
            self.add_events(s, events)
        return True

    def fixity_query(
        self, collection_id: str, *, version: int | None = None, limit: int | None = None
    ) -> Any:
        """Published instances, least recently checked first (one indexed range per collection)."""
        query = select(
            Instance.object_key,
            Instance.tier,
            Instance.size,
            Instance.sha256,
            Instance.md5,
            Instance.fixity_checked_at,
        ).where(Instance.collection_id == collection_id, Instance.published_version.is_not(None))
        if version is not None:
            query = query.where(Instance.published_version == version)
        query = query.order_by(Instance.fixity_checked_at.asc().nulls_first(), Instance.object_key)
        if limit is not None:
            query = query.limit(limit)
        return query

    def _supporting_fixity_query(self, collection_id: str, *, version: int | None, limit: int | None) -> Any:
        """The same for published supporting files (de-identified slides and clinical tables)."""
        query = select(
            SupportingFile.object_key,
            SupportingFile.tier,
            SupportingFile.size,
            SupportingFile.sha256,
            SupportingFile.md5,
            SupportingFile.fixity_checked_at,
        ).where(SupportingFile.collection_id == collection_id, SupportingFile.published_version.is_not(None))
        if version is not None:
            query = query.where(SupportingFile.published_version == version)
        query = query.order_by(
            SupportingFile.fixity_checked_at.asc().nulls_first(), SupportingFile.object_key
        )
        if limit is not None:
            query = query.limit(limit)
        return query

    def fixity_targets(
        self, collection_id: str, *, version: int | None = None, limit: int | None = None
    ) -> list[FixityTarget]:
        """Published objects (of every version), least recently checked first; one per key.

        ``version`` restricts them to the objects first listed in that version (what a
        publication just copied); ``limit`` takes the first ones (a daily sample). DICOM
        instances and supporting files are each read least-checked-first with the limit,
        then merged, so the instance query keeps using its index.
        """
        with self.session() as s:
            rows = [
                *s.execute(self.fixity_query(collection_id, version=version, limit=limit)),
                *s.execute(self._supporting_fixity_query(collection_id, version=version, limit=limit)),
            ]
        never = datetime.min
        rows.sort(key=lambda r: (r[5] is not None, r[5] or never, r[0]))
        targets: dict[str, FixityTarget] = {}
        for key, tier, size, sha256, md5, _checked in rows[:limit] if limit is not None else rows:
            targets.setdefault(key, FixityTarget(collection_id, key, tier, int(size), sha256, md5))
        return list(targets.values())

    def published_object_count(self, collection_id: str) -> int:
        with self.session() as s:
            instances = s.scalar(
                select(func.count(func.distinct(Instance.object_key))).where(
                    Instance.collection_id == collection_id, Instance.published_version.is_not(None)
                )
            )
            supporting = s.scalar(
                select(func.count(SupportingFile.id)).where(
                    SupportingFile.collection_id == collection_id,
                    SupportingFile.published_version.is_not(None),
                )
            )
            return int(instances or 0) + int(supporting or 0)

    def record_fixity(
        self, collection_id: str, results: Iterable[tuple[str, bool, str]], *, agent: str = "fixity-audit"
    ) -> None:
        """Record fixity checks: (object key, passed, detail) each; stamps the objects' last check."""
        results = list(results)
        now = utcnow()
        with self.session() as s:
            self.add_events(
                s,
                [
                    event_row(
                        EventType.FIXITY_CHECK,
                        agent,
                        "success" if ok else "failure",
                        key,
                        collection_id,
                        "object",
                        detail,
                        now,
                    )
                    for key, ok, detail in results
                ],
            )
            keys = sorted({key for key, _, _ in results})
            for chunk in chunks(keys, CHUNK):
                for table in (Instance, SupportingFile):
                    s.execute(
                        update(table)
                        .where(table.collection_id == collection_id, table.object_key.in_(chunk))
                        .values(fixity_checked_at=now)
                    )
