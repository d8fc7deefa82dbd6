"""The release index: Parquet tables per collection version that query engines and bulk tools read as they are.

Beside each version's ``release.json`` the publication writes ``index/`` (before
``release.json``, so a visible version always has its index):

- ``collections.parquet``: the version (title, licence, DOI, citation, counts);
- ``series.parquet``: one row per series (patient pseudonym, UIDs, modality, body part,
  description, shifted study date, instance count, bytes, licence, DOI, object prefix,
  content hash and the key of the series version's manifest);
- ``instances.parquet``: one row per object with its checksums (downloads verify against it);
- ``changes.parquet``: series added, replaced and withdrawn since the previous version;
- ``<table>.schema.json``: each table's JSON Schema, the same files as the package's
  ``data/release_index/`` (the schemas are data; the Arrow schemas are derived from them).

**Series-level addressing.** Every series version has one manifest, an s5cmd command file
at ``{collection}/versions/series/{SeriesUID}/{series_hash}.s5cmd``. The key is its content hash,
so a manifest is written once and never changes: an old version's index keeps naming the
manifest that lists exactly the bytes that version had (objects are never overwritten, and
a replaced instance gets a key of its own). ``s5cmd run`` fetches the series with it.

DuckDB reads the tables directly::

    SELECT modality, count(*) FROM 's3://.../demo/versions/2/index/series.parquet' GROUP BY 1
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from functools import cache
from importlib import resources
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from imaging_ingest.catalog import Catalog
    from imaging_ingest.storage.objects import ObjectStore
from imaging_ingest.storage.transfers import Transfers

__all__ = [
    "INDEX_TABLES",
    "arrow_schema",
    "build_index",
    "index_key",
    "read_index_table",
    "series_hash",
    "series_manifest_key",
    "series_manifest_lines",
    "table_schema",
    "write_release_index",
]

#: The tables of a version's index, in the order they are written.
INDEX_TABLES = ("collections", "series", "instances", "changes")

Listing = Mapping[str, Mapping[str, Any]]


def _is_dicom(entry: Mapping[str, Any]) -> bool:
    return entry.get("kind", "dicom") == "dicom"


def index_prefix(collection_id: str, number: int) -> str:
    return f"{collection_id}/versions/{number}/index"


def index_key(collection_id: str, number: int, table: str) -> str:
    """Where one table of a version's index lies in the collection's tier."""
    if table not in INDEX_TABLES:
        raise ValueError(f"unknown index table {table!r}; expected one of {', '.join(INDEX_TABLES)}")
    return f"{index_prefix(collection_id, number)}/{table}.parquet"


# -- schemas (data files) -----------------------------------------------------------------


@cache
def _schema_bytes(table: str) -> bytes:
    if table not in INDEX_TABLES:
        raise ValueError(f"unknown index table {table!r}")
    return (
        resources.files("imaging_ingest") / "data" / "release_index" / f"{table}.schema.json"
    ).read_bytes()


def table_schema(table: str) -> dict[str, Any]:
    """A table's JSON Schema (one row is one object it describes)."""
    document: dict[str, Any] = json.loads(_schema_bytes(table))
    return document


def _arrow_type(spec: Mapping[str, Any]) -> tuple[pa.DataType, bool]:
    types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    nullable = "null" in types
    (kind,) = [t for t in types if t != "null"]
    if kind == "integer":
        return pa.int64(), nullable
    if kind == "string" and spec.get("format") == "date":
        return pa.date32(), nullable
    if kind == "string" and spec.get("format") == "date-time":
        return pa.timestamp("s", tz="UTC"), nullable
    if kind == "string":
        return pa.string(), nullable
    raise ValueError(f"no Arrow type for JSON Schema type {kind!r}")


@cache
def arrow_schema(table: str) -> pa.Schema:
    """The Parquet/Arrow schema of a table, derived from its JSON Schema (column order = property order)."""
    fields = []
    for name, spec in table_schema(table)["properties"].items():
        arrow_type, nullable = _arrow_type(spec)
        fields.append(pa.field(name, arrow_type, nullable=nullable))
    return pa.schema(fields)


# -- series addressing --------------------------------------------------------------------


def series_hash(instances: Iterable[Mapping[str, Any]]) -> str:
    """The content hash of a series version: SHA-256 of its sorted ``SOPInstanceUID SHA-256`` lines."""
    lines = sorted(f"{e['sop_uid']} {e['sha256']}\n" for e in instances)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def series_manifest_key(collection_id: str, series_uid: str, content_hash: str) -> str:
    return f"{collection_id}/versions/series/{series_uid}/{content_hash}.s5cmd"


def download_path(collection_id: str, entry: Mapping[str, Any]) -> str:
    """Where an object lands in a download: ``collection/study/series/SOP.dcm`` (no content discriminator)."""
    if _is_dicom(entry) and entry.get("sop_uid"):
        return f"{collection_id}/{entry['study_uid']}/{entry['series_uid']}/{entry['sop_uid']}.dcm"
    key = str(entry["key"])
    relative = key.removeprefix(f"{collection_id}/")
    if relative.startswith("/") or ".." in PurePosixPath(relative).parts:
        raise ValueError(f"object key {key!r} is not a safe path")
    return f"{collection_id}/{relative}"


def series_manifest_lines(bucket: str, collection_id: str, instances: Iterable[Mapping[str, Any]]) -> str:
    """An s5cmd command file (``s5cmd run FILE``): one ``cp`` per object, to its download path."""
    rows = sorted(instances, key=lambda e: str(e["key"]))
    return "".join(f"cp s3://{bucket}/{e['key']} {download_path(collection_id, e)}\n" for e in rows)


# -- building the tables ------------------------------------------------------------------


def _series_metadata(
    catalog: Catalog, collection_id: str, series_uids: list[str]
) -> dict[str, dict[str, Any]]:
    """Modality, body part, descriptions and shifted study date of series, from the catalog."""
    from sqlalchemy import select

    from imaging_ingest.catalog.models import Series, Study
    from imaging_ingest.core.records import chunks

    found: dict[str, dict[str, Any]] = {}
    with catalog.session() as s:
        for chunk in chunks(series_uids, 500):
            query = (
                select(
                    Series.uid,
                    Series.modality,
                    Series.body_part,
                    Series.description,
                    Study.description,
                    Study.study_date,
                )
                .join(Study, Study.id == Series.study_id)
                .where(Series.collection_id == collection_id, Series.uid.in_(chunk))
            )
            for uid, modality, body_part, description, study_description, study_date in s.execute(
                query
            ).tuples():
                found[uid] = {
                    "modality": modality,
                    "body_part": body_part,
                    "series_description": description,
                    "study_description": study_description,
                    "study_date": _dicom_date(study_date),
                }
    return found


def _dicom_date(value: str | None) -> date | None:
    if not value or len(value) != 8 or not value.isdigit():
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return None


def _by_series(listing: Listing) -> dict[str, list[Mapping[str, Any]]]:
    grouped: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for entry in listing.values():
        if _is_dicom(entry) and entry.get("series_uid"):
            grouped[str(entry["series_uid"])].append(entry)
    return grouped


def _table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    schema = arrow_schema(name)
    return pa.Table.from_pylist(rows, schema=schema) if rows else schema.empty_table()


def build_index(
    release: Mapping[str, Any],
    listing: Listing,
    previous_listing: Listing,
    *,
    tier: str,
    bucket: str,
    metadata: Mapping[str, Mapping[str, Any]],
) -> dict[str, pa.Table]:
    """The index tables of one version, from its release document, listings and the series' metadata.

    ``release`` carries the version's collection, number, title, licence, DOI, citation
    and creation time; ``metadata`` maps series UIDs to their catalog description.
    """
    collection_id, number = str(release["collection"]), int(release["version"])
    license_, doi = str(release["license"]), str(release["doi"])
    grouped = _by_series(listing)
    hashes = {uid: series_hash(entries) for uid, entries in grouped.items()}
    series_rows = []
    for uid in sorted(grouped):
        entries = grouped[uid]
        first = entries[0]
        prefix = str(PurePosixPath(str(first["key"])).parent) + "/"
        manifest = series_manifest_key(collection_id, uid, hashes[uid])
        meta = metadata.get(uid, {})
        series_rows.append(
            {
                "collection_id": collection_id,
                "version": number,
                "license": license_,
                "doi": doi,
                "patient_id": first.get("patient") or "",
                "study_uid": first["study_uid"],
                "series_uid": uid,
                "modality": meta.get("modality"),
                "body_part": meta.get("body_part"),
                "series_description": meta.get("series_description"),
                "study_description": meta.get("study_description"),
                "study_date": meta.get("study_date"),
                "instance_count": len(entries),
                "series_size_bytes": sum(int(e["size"]) for e in entries),
                "series_hash": hashes[uid],
                "object_prefix": prefix,
                "series_url": f"s3://{bucket}/{prefix}",
                "manifest_key": manifest,
                "manifest_url": f"s3://{bucket}/{manifest}",
            }
        )
    instance_rows = [
        {
            "collection_id": collection_id,
            "version": number,
            "kind": str(e.get("kind", "dicom")),
            "patient_id": e.get("patient") or None,
            "study_uid": e.get("study_uid"),
            "series_uid": e.get("series_uid"),
            "sop_uid": e.get("sop_uid"),
            "key": key,
            "size": int(e["size"]),
            "sha256": e["sha256"],
            "md5": e["md5"],
            "url": f"s3://{bucket}/{key}",
        }
        for key, e in sorted(listing.items())
    ]
    dicom = [e for e in listing.values() if _is_dicom(e)]
    created = datetime.fromisoformat(str(release["created"]))
    collection_row = {
        "collection_id": collection_id,
        "version": number,
        "previous_version": release.get("previous_version"),
        "kind": str(release.get("kind", "submission")),
        "title": str(release.get("title", "")),
        "license": license_,
        "doi": doi,
        "citation": str(release.get("citation", "")),
        "created": created,
        "tier": tier,
        "bucket": bucket,
        "release_key": f"{collection_id}/versions/{number}/release.json",
        "patients": len({e.get("patient") for e in listing.values() if e.get("patient")}),
        "studies": len({e["study_uid"] for e in dicom}),
        "series": len(grouped),
        "instances": len(dicom),
        "files": len(listing),
        "total_bytes": sum(int(e["size"]) for e in listing.values()),
    }
    return {
        "collections": _table("collections", [collection_row]),
        "series": _table("series", series_rows),
        "instances": _table("instances", instance_rows),
        "changes": _table("changes", _changes(release, grouped, hashes, previous_listing)),
    }


def _changes(
    release: Mapping[str, Any],
    grouped: Mapping[str, list[Mapping[str, Any]]],
    hashes: Mapping[str, str],
    previous_listing: Listing,
) -> list[dict[str, Any]]:
    before = _by_series(previous_listing)
    old = {uid: series_hash(entries) for uid, entries in before.items()}
    base = {
        "collection_id": release["collection"],
        "version": int(release["version"]),
        "previous_version": release.get("previous_version"),
    }
    rows = []
    for uid in sorted(set(grouped) | set(before)):
        entry = (grouped.get(uid) or before[uid])[0]
        if uid not in before:
            change = "added"
        elif uid not in grouped:
            change = "withdrawn"
        elif old[uid] != hashes[uid]:
            change = "replaced"
        else:
            continue
        rows.append(
            base
            | {
                "change": change,
                "patient_id": entry.get("patient") or None,
                "study_uid": entry["study_uid"],
                "series_uid": uid,
                "old_series_hash": old.get(uid),
                "new_series_hash": hashes.get(uid),
            }
        )
    return rows


# -- writing and reading ------------------------------------------------------------------


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def write_release_index(
    store: ObjectStore,
    catalog: Catalog,
    tier: str,
    release: Mapping[str, Any],
    listing: Listing,
    previous_listing: Listing,
    uploads: Transfers | None = None,
) -> dict[str, str]:
    """Write a version's index tables, their schemas, and the manifests of new series versions.

    Called by the publication before it writes ``release.json``; returns the tables' keys
    (release.json lists them). Series manifests are content-addressed: one already stored
    is not written again, so every key an older index names keeps its bytes. With
    ``uploads`` (the caller's bounded pool) the objects are sent on it and are stored once
    the caller's ``with`` block ends; without, on a pool of its own before returning.
    """
    if uploads is None:
        with Transfers() as own:
            return write_release_index(store, catalog, tier, release, listing, previous_listing, own)
    collection_id, number = str(release["collection"]), int(release["version"])
    bucket = store.bucket(tier)
    grouped = _by_series(listing)
    metadata = _series_metadata(catalog, collection_id, sorted(grouped))
    tables = build_index(release, listing, previous_listing, tier=tier, bucket=bucket, metadata=metadata)
    existing = store.sizes(tier, f"{collection_id}/versions/series/")

    def put(key: str, data: bytes, content_type: str) -> None:
        uploads.submit(lambda: store.put_bytes(tier, key, data, content_type), len(data))

    for uid, entries in sorted(grouped.items()):
        key = series_manifest_key(collection_id, uid, series_hash(entries))
        if key not in existing:
            put(
                key,
                series_manifest_lines(bucket, collection_id, entries).encode(),
                "text/plain; charset=utf-8",
            )
    keys: dict[str, str] = {}
    prefix = index_prefix(collection_id, number)
    for name in INDEX_TABLES:
        put(f"{prefix}/{name}.schema.json", _schema_bytes(name), "application/json")
        keys[name] = index_key(collection_id, number, name)
        put(keys[name], _parquet(tables[name]), "application/vnd.apache.parquet")
    return keys


def read_index_table(store: ObjectStore, tier: str, collection_id: str, number: int, table: str) -> pa.Table:
    """One table of a stored version's index."""
    return pq.read_table(io.BytesIO(store.get_bytes(tier, index_key(collection_id, number, table))))
