"""The source collection versions an analysis collection's version was made on (DataCite ``IsDerivedFrom``).

An analysis result shares the study of the published series it was made on (its
references are kept, see ``references``). For each source collection the derived
collection names, the cited source version is the newest version that lists instances of
those studies: the data the results describe, as the archive published it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imaging_ingest.catalog import Catalog

__all__ = ["source_dois", "source_versions"]


def source_versions(catalog: Catalog, sources: Iterable[str], study_uids: Iterable[str]) -> list[tuple[str, int, str | None]]:
    """(collection, version, DOI) of each source collection version the studies come from."""
    from sqlalchemy import func, select

    from imaging_ingest.catalog.models import CollectionVersion, Instance, Series, Study
    from imaging_ingest.core.records import chunks

    studies = sorted(set(study_uids))
    found: list[tuple[str, int, str | None]] = []
    for source in sorted(set(sources)):
        latest = catalog.latest_version(source)
        if latest is None or not studies:
            continue
        newest = 0
        with catalog.session() as s:
            for chunk in chunks(studies, 500):
                # an instance still listed is in the latest version; a retired one last in the version before
                listed_until = func.coalesce(Instance.retired_version - 1, latest.number)
                value = s.scalar(
                    select(func.max(listed_until))
                    .join(Series, Series.id == Instance.series_id)
                    .join(Study, Study.id == Series.study_id)
                    .where(Study.collection_id == source, Study.uid.in_(chunk), Instance.published_version.is_not(None))
                )
                newest = max(newest, int(value or 0))
            if newest:
                doi = s.scalar(select(CollectionVersion.doi).where(
                    CollectionVersion.collection_id == source, CollectionVersion.number == newest))
                found.append((source, newest, doi))
    return found


def source_dois(catalog: Catalog, sources: Iterable[str], study_uids: Iterable[str]) -> tuple[str, ...]:
    """The DOIs of :func:`source_versions` (empty for a collection that derives from nothing)."""
    sources = list(sources)
    if not sources:
        return ()
    return tuple(doi for _, _, doi in source_versions(catalog, sources, study_uids) if doi)
