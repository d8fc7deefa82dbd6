"""Series downloads as NBIA shapes them: a zip with a LICENSE, the images, optionally MD5s.

NBIA's getImage zip holds ``LICENSE`` first, then the images named ``00000001.dcm``,
``00000002.dcm``, ... (or ``1-01.dcm``, ``1-02.dcm``, ... with ``NewFileNames=Yes``),
and with ``IncludeMD5=Yes`` (always, for getImageWithMD5Hash) a ``md5hashes.csv`` of
``Filename,MD5Hash`` rows. Images are in object-key order (that is, SOP Instance UID
order): the catalog does not keep instance numbers, and reading every header to sort by
them would delay the first byte.

Every image is read from object storage chunk by chunk while the archive is written, and
its MD5 is checked against the catalog on the way (``ZipStream``): a series is never held
in memory, and a corrupted object ends the download rather than reach a user.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from imaging_ingest.api.nbia import license_for
from imaging_ingest.api.releases import CollectionView, InstanceView, SeriesView
from imaging_ingest.api.zipstream import IntegrityError, ZipEntry, ZipStream

if TYPE_CHECKING:
    from imaging_ingest.storage.objects import ObjectStore

__all__ = ["image_names", "object_chunks", "series_zip", "verified_chunks"]


def object_chunks(store: ObjectStore, tier: str, key: str, chunk_size: int) -> Iterator[bytes]:
    """An object's bytes in chunks, the connection released however the reading ends."""
    body: Any = store.client.get_object(Bucket=store.bucket(tier), Key=key)["Body"]
    try:
        yield from body.iter_chunks(chunk_size)
    finally:
        body.close()


def verified_chunks(chunks: Iterable[bytes], size: int, md5: str, name: str) -> Iterator[bytes]:
    """Pass chunks on, holding the last one back until size and MD5 are confirmed.

    A damaged object therefore never reaches a client whole: the response ends short of
    its ``Content-Length`` and the client reports an incomplete download.
    """
    digest, count, pending = hashlib.md5(usedforsecurity=False), 0, b""
    for chunk in chunks:
        if pending:
            yield pending
        digest.update(chunk)
        count += len(chunk)
        pending = chunk
    if count != size or digest.hexdigest() != md5.lower():
        raise IntegrityError(f"{name} does not match its catalogued size and MD5; not delivered")
    if pending:
        yield pending


def image_names(instances: tuple[InstanceView, ...], new_file_names: bool) -> list[str]:
    if not new_file_names:
        return [f"{n:08d}.dcm" for n in range(1, len(instances) + 1)]
    width = max(2, len(str(len(instances))))
    return [f"1-{n:0{width}d}.dcm" for n in range(1, len(instances) + 1)]


def series_zip(
    store: ObjectStore,
    view: CollectionView,
    series: SeriesView,
    *,
    new_file_names: bool,
    include_md5: bool,
    chunk_size: int,
) -> ZipStream:
    licence = license_for(view).text(view).encode("utf-8")
    entries = [ZipEntry("LICENSE", len(licence), lambda: iter((licence,)))]
    names = image_names(series.instances, new_file_names)
    for name, instance in zip(names, series.instances, strict=True):
        entries.append(
            ZipEntry(
                name,
                instance.size,
                lambda i=instance: object_chunks(store, i.tier, i.key, chunk_size),  # type: ignore[misc]
                md5=instance.md5,
            )
        )
    if include_md5:
        rows = "".join(f"{name},{instance.md5}\n" for name, instance in zip(names, series.instances, strict=True))
        csv = ("Filename,MD5Hash\n" + rows).encode("utf-8")
        entries.append(ZipEntry("md5hashes.csv", len(csv), lambda: iter((csv,))))
    return ZipStream(entries, modified=view.released)
