"""What a download fetches: objects with the checksums the release index records, and how to cite them.

A selection comes from the release index of a collection version (all of it, some series,
or the series a DuckDB ``WHERE`` clause over the series table picks), or from a manifest
file in the form s5cmd or the AWS CLI take (``cp s3://bucket/key dest`` lines, ``aws s3
cp ...`` lines, or bare ``s3://`` URLs). Objects of a manifest are checked against the
indexes of every version of their collection (an old manifest names objects a newer
version no longer lists: they are still there, byte for byte).

The index and the objects are read from an S3 bucket (anonymously for the public tier);
the bytes may come through the API instead (``transfer.ApiSource``).
"""

from __future__ import annotations

import io
import re
import shlex
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from imaging_ingest.publish.index import download_path, index_key

__all__ = [
    "Item",
    "Selection",
    "from_index",
    "from_manifest",
    "parse_manifest",
    "write_citation",
    "write_tool_manifests",
]

_VERSION_INDEX = re.compile(r"^(?P<collection>[^/]+)/versions/(?P<version>\d+)/index/instances\.parquet$")


class S3Source(Protocol):
    """What a selection reads the index from (``transfer.S3Source`` is one)."""

    bucket: str

    def get(self, key: str) -> bytes: ...

    def keys(self, prefix: str) -> Iterable[str]: ...


@dataclass(frozen=True)
class Item:
    """One object to download: where it is, what it must hash to, and where it goes."""

    key: str
    size: int
    sha256: str
    md5: str
    path: str
    collection_id: str
    version: int
    series_uid: str | None = None
    sop_uid: str | None = None


@dataclass
class Selection:
    """The objects to fetch, and the collection versions they come from (for the citation)."""

    bucket: str
    items: list[Item] = field(default_factory=list)
    versions: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(i.size for i in self.items)


def _instances(source: S3Source, collection_id: str, version: int) -> pa.Table:
    return pq.read_table(io.BytesIO(source.get(index_key(collection_id, version, "instances"))))


def _collection_row(source: S3Source, collection_id: str, version: int) -> dict[str, Any]:
    rows: list[dict[str, Any]] = pq.read_table(
        io.BytesIO(source.get(index_key(collection_id, version, "collections")))
    ).to_pylist()
    if not rows:
        raise ValueError(f"{collection_id} version {version}: its index has no collections row")
    return rows[0]


def _items(rows: Iterable[dict[str, Any]], version: int) -> list[Item]:
    return [
        Item(
            key=r["key"], size=int(r["size"]), sha256=r["sha256"], md5=r["md5"],
            path=download_path(r["collection_id"], r), collection_id=r["collection_id"], version=version,
            series_uid=r.get("series_uid"), sop_uid=r.get("sop_uid"),
        )
        for r in rows
    ]


def latest_version(source: S3Source, collection_id: str) -> int:
    """The newest version of a collection that has an index (read from the bucket's listing)."""
    versions = _indexed_versions(source, collection_id)
    if not versions:
        raise ValueError(f"collection {collection_id!r} has no version with a release index in s3://{source.bucket}")
    return max(versions)


def _indexed_versions(source: S3Source, collection_id: str) -> list[int]:
    found = []
    for key in source.keys(f"{collection_id}/versions/"):
        match = _VERSION_INDEX.match(key)
        if match and match["collection"] == collection_id:
            found.append(int(match["version"]))
    return sorted(found)


def from_index(
    source: S3Source,
    collection_id: str,
    version: int | None = None,
    *,
    series: Sequence[str] = (),
    where: str | None = None,
) -> Selection:
    """A collection version's objects: all, the named series, or the series a query picks.

    ``where`` is a DuckDB SQL condition over the series table (columns as its JSON Schema
    names them), e.g. ``modality = 'CT' AND body_part = 'CHEST'``.
    """
    number = version if version is not None else latest_version(source, collection_id)
    table = _instances(source, collection_id, number)
    wanted: set[str] | None = None
    if series:
        wanted = set(series)
    if where:
        picked = _query_series(source.get(index_key(collection_id, number, "series")), where)
        wanted = picked if wanted is None else wanted & picked
    rows = table.to_pylist()
    if wanted is not None:
        listed = {r["series_uid"] for r in rows}
        unknown = sorted(set(series) - listed)
        if unknown:
            raise ValueError(f"series {unknown[0]} is not in {collection_id} version {number}")
        rows = [r for r in rows if r["series_uid"] in wanted]
    selection = Selection(source.bucket, _items(rows, number))
    selection.versions[(collection_id, number)] = _collection_row(source, collection_id, number)
    return selection


def _query_series(parquet: bytes, where: str) -> set[str]:
    """Series UIDs of the rows a DuckDB condition selects from a series table."""
    import duckdb

    connection = duckdb.connect()
    connection.register("series", pq.read_table(io.BytesIO(parquet)))
    try:
        rows = connection.execute(f"SELECT series_uid FROM series WHERE {where}").fetchall()
    except duckdb.Error as exc:
        raise ValueError(f"the query over the series index failed: {exc}") from None
    finally:
        connection.close()
    return {str(r[0]) for r in rows}


# -- manifests ----------------------------------------------------------------------------


def parse_manifest(text: str) -> list[tuple[str, str]]:
    """(bucket, key) of each object a manifest names: s5cmd ``cp`` lines, ``aws s3 cp`` lines or s3:// URLs.

    Blank lines and ``#`` comments are skipped; anything else is an error naming the line.
    """
    found: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        url = next((w for w in words if w.startswith("s3://")), None)
        if url is None:
            raise ValueError(f"manifest line {number}: no s3:// URL")
        bucket, _, key = url.removeprefix("s3://").partition("/")
        if not key or key.endswith("/") or "*" in key:
            raise ValueError(f"manifest line {number}: {url} does not name one object")
        found.append((bucket, key))
    return found


def from_manifest(source: S3Source, text: str) -> Selection:
    """The objects a manifest names, each checked against the index of a version that lists it.

    The newest version listing an object is the one cited for it; an object no version's
    index lists is refused (it is not a published object).
    """
    wanted = parse_manifest(text)
    by_collection: dict[str, set[str]] = defaultdict(set)
    for _, key in wanted:
        by_collection[PurePosixPath(key).parts[0]].add(key)
    known: dict[str, Item] = {}
    selection = Selection(source.bucket)
    for collection_id, keys in sorted(by_collection.items()):
        for number in _indexed_versions(source, collection_id):  # ascending: the newest listing wins
            rows = [r for r in _instances(source, collection_id, number).to_pylist() if r["key"] in keys]
            for item in _items(rows, number):
                known[item.key] = item
    missing = [key for _, key in wanted if key not in known]
    if missing:
        raise ValueError(f"{missing[0]} is not an object of any published version's index ({len(missing)} such)")
    seen: set[str] = set()
    for _, key in wanted:
        if key not in seen:
            seen.add(key)
            selection.items.append(known[key])
    for collection_id, number in sorted({(i.collection_id, i.version) for i in selection.items}):
        selection.versions[(collection_id, number)] = _collection_row(source, collection_id, number)
    return selection


def write_tool_manifests(selection: Selection, destination: Path, endpoint: str | None, anonymous: bool) -> list[Path]:
    """``manifest.s5cmd`` (``s5cmd run``) and ``manifest-aws.sh`` (AWS CLI) for the same objects and paths."""
    destination.mkdir(parents=True, exist_ok=True)
    items = sorted(selection.items, key=lambda i: i.key)
    s5cmd = destination / "manifest.s5cmd"
    s5cmd.write_text("".join(f"cp s3://{selection.bucket}/{i.key} {i.path}\n" for i in items), encoding="utf-8")
    options = (f" --endpoint-url {shlex.quote(endpoint)}" if endpoint else "") + (" --no-sign-request" if anonymous else "")
    aws = destination / "manifest-aws.sh"
    aws.write_text(
        "#!/bin/sh\n# AWS CLI commands for the same objects: sh manifest-aws.sh (in the download folder)\nset -e\n"
        + "".join(f"aws s3 cp{options} s3://{selection.bucket}/{i.key} {shlex.quote(i.path)}\n" for i in items),
        encoding="utf-8",
    )
    return [s5cmd, aws]


def write_citation(selection: Selection, destination: Path) -> Path:
    """``CITATION.txt``: how to cite each collection version the download holds objects of, and how many."""
    counts: dict[tuple[str, int], list[Item]] = defaultdict(list)
    for item in selection.items:
        counts[(item.collection_id, item.version)].append(item)
    lines = ["Please cite the data you downloaded as follows.", ""]
    for (collection_id, number), row in sorted(selection.versions.items()):
        items = counts.get((collection_id, number), [])
        series = len({i.series_uid for i in items if i.series_uid})
        lines += [
            str(row.get("citation") or f"{collection_id} version {number}"),
            f"  DOI: https://doi.org/{row['doi']}  Licence: {row['license']}",
            f"  Downloaded: {len(items)} objects ({series} series, {sum(i.size for i in items)} bytes) "
            f"of {collection_id} version {number}",
            "",
        ]
    path = destination / "CITATION.txt"
    destination.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
