"""Manifests: one Parquet table per stage, one row per submitted file, kept in the staging tier.

Stages hand each other manifests by object key (never rows through XCom). The staging
tier is restricted: manifests hold original identifiers next to the new ones, which is
what makes verification and curator review possible. Anything that leaves the restricted
tiers (logs, gate reports, XComs) is a PHI-free projection (``public_projection``).
"""

from __future__ import annotations

import bisect
import io
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from imaging_ingest.deid.uids import keyed_hash
from imaging_ingest.storage.objects import ObjectStore

__all__ = [
    "ROWS_PER_GROUP",
    "STATUS_OK",
    "STATUS_QUARANTINED",
    "ManifestStore",
    "public_projection",
    "rows_with_file_ids",
    "rows_with_ids",
    "status_counts",
]

STATUS_OK = "ok"
STATUS_QUARANTINED = "quarantined"
PARQUET = "application/vnd.apache.parquet"

#: Columns that never leave the restricted tiers as they are.
PHI_COLUMNS = ("source_path", "patient_id", "study_uid", "series_uid", "sop_uid")

#: Rows per Parquet row group. A streamed read (``iter_frames``) decodes one group at a
#: time, so whole-submission stages hold a bounded number of rows whatever the file count.
ROWS_PER_GROUP = 2048


class ManifestStore:
    """Read and write a submission's manifests in the staging tier."""

    def __init__(self, store: ObjectStore, collection_id: str, submission_id: str) -> None:
        self.store = store
        self.prefix = f"{collection_id}/{submission_id}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/manifests/{name}.parquet"

    def write(self, name: str, frame: pd.DataFrame) -> str:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False, row_group_size=ROWS_PER_GROUP)
        key = self.key(name)
        self.store.put_bytes("staging", key, buffer.getvalue(), PARQUET)
        return key

    def write_frames(self, name: str, frames: Iterable[pd.DataFrame]) -> str:
        """Write a manifest given as consecutive parts, holding one part in memory at a time.

        Parts may disagree on which columns they have, or on a column's type where it has
        no values in a part (all None or NaN there, text elsewhere): such a column says
        nothing about its type in that part. Each part is spooled to disk, and the manifest
        is written with the schema that covers them all.
        """
        key = self.key(name)
        with tempfile.TemporaryDirectory(prefix="manifest-") as tmp:
            parts: list[Path] = []
            fallback: dict[str, pa.DataType] = {}  # a column's type where no part gives it a value
            for number, frame in enumerate(frames):
                table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
                for field in table.schema:
                    fallback.setdefault(field.name, field.type)
                parts.append(Path(tmp) / f"{number:06d}.parquet")
                pq.write_table(_without_empty_types(table), parts[-1])
            if not parts:
                raise ValueError(f"manifest {name}: no parts to write")
            schema = pa.unify_schemas([pq.read_schema(p) for p in parts], promote_options="permissive")
            schema = pa.schema(
                [pa.field(f.name, fallback[f.name]) if pa.types.is_null(f.type) else f for f in schema]
            )
            out = Path(tmp) / "manifest.parquet"
            with pq.ParquetWriter(out, schema) as writer:
                for part in parts:
                    writer.write_table(_conform(pq.read_table(part), schema), row_group_size=ROWS_PER_GROUP)
            self.store.put_file("staging", key, out, content_type=PARQUET)
        return key

    def read_key(self, key: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """A manifest as one frame; ``columns`` reads only those (the ones it has)."""
        parquet = self.parquet_key(key)
        return parquet.read(columns=_present(parquet, columns)).to_pandas()

    def read(self, name: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return self.read_key(self.key(name), columns)

    def parquet(self, name: str) -> pq.ParquetFile:
        """A manifest opened for reading parts of it (see ``rows_with_file_ids``); compressed, in memory."""
        return self.parquet_key(self.key(name))

    def parquet_key(self, key: str) -> pq.ParquetFile:
        return pq.ParquetFile(io.BytesIO(self.store.get_bytes("staging", key)))

    def iter_frames(
        self, name: str, columns: Sequence[str] | None = None, rows: int | None = None
    ) -> Iterator[pd.DataFrame]:
        """A manifest as consecutive frames of at most ``rows`` rows (``ROWS_PER_GROUP``), in order.

        Yields at least one frame (an empty one, with the manifest's columns, when it has
        no rows), so a stage that transforms part by part always writes a manifest.
        """
        parquet = self.parquet(name)
        wanted = _present(parquet, columns)
        empty = True
        for batch in parquet.iter_batches(batch_size=rows or ROWS_PER_GROUP, columns=wanted):
            empty = False
            yield pa.Table.from_batches([batch]).to_pandas()
        if empty:
            yield parquet.schema_arrow.empty_table().select(wanted or parquet.schema_arrow.names).to_pandas()

    def exists(self, name: str) -> bool:
        return self.store.head("staging", self.key(name)) is not None


def _present(parquet: pq.ParquetFile, columns: Sequence[str] | None) -> list[str] | None:
    if columns is None:
        return None
    names = set(parquet.schema_arrow.names)
    return [c for c in dict.fromkeys(columns) if c in names]


def _without_empty_types(table: pa.Table) -> pa.Table:
    """``table`` with every column that holds no value typed as null (it tells no type)."""
    columns = [pa.nulls(len(table)) if c.null_count == len(table) else c for c in table.columns]
    return pa.Table.from_arrays(columns, names=table.column_names)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns, in its order and types (missing ones all null)."""
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def rows_with_file_ids(parquet: pq.ParquetFile, file_ids: Iterable[int]) -> pd.DataFrame:
    """The rows of a manifest whose ``file_id`` is one of ``file_ids``, in the manifest's order.

    Only the row groups whose ``file_id`` range can hold a wanted id are decoded, so
    picking a batch out of a large manifest costs a few groups, not the whole table.
    """
    wanted = sorted({int(i) for i in file_ids})
    column = parquet.schema_arrow.get_field_index("file_id")
    groups = []
    for number in range(parquet.num_row_groups):
        stats = parquet.metadata.row_group(number).column(column).statistics
        if stats is None or not stats.has_min_max:
            groups.append(number)
            continue
        first = bisect.bisect_left(wanted, stats.min)
        if first < len(wanted) and wanted[first] <= stats.max:
            groups.append(number)
    table = parquet.read_row_groups(groups) if groups else parquet.schema_arrow.empty_table()
    return rows_with_ids(table.replace_schema_metadata(None), wanted)


def rows_with_ids(table: pa.Table, file_ids: Iterable[int]) -> pd.DataFrame:
    """The rows of ``table`` whose ``file_id`` is one of ``file_ids``, as a frame, in the table's order."""
    import pyarrow.compute as pc

    wanted = pa.array([int(i) for i in file_ids], pa.int64())
    return table.filter(pc.is_in(table.column("file_id"), value_set=wanted)).to_pandas()


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
