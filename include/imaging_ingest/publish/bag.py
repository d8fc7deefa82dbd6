"""BagIt (RFC 8493) tag files for a collection version, kept beside its release manifest.

A version's folder ``{collection}/versions/{N}/`` is a "holey" bag: its tag files
(``bagit.txt``, ``bag-info.txt``, ``manifest-sha256.txt``, ``manifest-md5.txt``,
``fetch.txt``, tag manifests) are stored, and its payload is the version's objects,
which ``fetch.txt`` points at. Fetched to disk under ``data/`` (``imaging-ingest versions
fetch``), the folder is a complete bag that the Library of Congress ``bagit`` tool
validates, byte for byte, against the checksums recorded at publication.

Payload paths are the object keys without the collection prefix:
``data/{StudyUID}/{SeriesUID}/{SOPUID}.dcm``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

__all__ = ["BAG_TAG_FILES", "BagInfo", "bag_files", "payload_path"]

BAGIT_VERSION = "1.0"

#: Tag files of a version's bag, in the order they are written (the tag manifests last).
BAG_TAG_FILES = (
    "bagit.txt",
    "bag-info.txt",
    "manifest-sha256.txt",
    "manifest-md5.txt",
    "fetch.txt",
    "tagmanifest-sha256.txt",
    "tagmanifest-md5.txt",
)


@dataclass(frozen=True)
class BagInfo:
    """The bag-info.txt fields of a version (RFC 8493 section 2.2.2 reserved names)."""

    source_organization: str
    external_identifier: str
    external_description: str
    bagging_date: str
    group_identifier: str
    internal_sender_identifier: str
    software_agent: str


def payload_path(collection_id: str, key: str) -> str:
    """Where an object lies in the bag: ``data/`` plus its key below the collection."""
    relative = key.removeprefix(f"{collection_id}/")
    if relative == key or relative.startswith("/") or ".." in relative.split("/"):
        raise ValueError(f"object key {key!r} is not a safe path below collection {collection_id!r}")
    return f"data/{relative}"


def _tag_value(value: str) -> str:
    return " ".join(value.split())  # one line: no CR/LF inside a tag value


def bag_files(
    collection_id: str,
    objects: Iterable[Mapping[str, object]],
    info: BagInfo,
    url_of: Callable[[str], str],
    extra_tag_files: Mapping[str, bytes] | None = None,
) -> dict[str, bytes]:
    """The tag files of a version's bag, by name.

    ``objects`` are release entries (key, size, sha256, md5); ``url_of(key)`` gives the URL
    that ``fetch.txt`` lists for an object; ``extra_tag_files`` (the DataCite record, the
    citation) are covered by the tag manifests too.
    """
    listing = sorted(objects, key=lambda o: str(o["key"]))
    paths = [payload_path(collection_id, str(o["key"])) for o in listing]
    total = sum(int(str(o["size"])) for o in listing)
    files: dict[str, bytes] = {
        "bagit.txt": f"BagIt-Version: {BAGIT_VERSION}\nTag-File-Character-Encoding: UTF-8\n".encode(),
        "bag-info.txt": "".join(
            f"{name}: {_tag_value(value)}\n"
            for name, value in (
                ("Source-Organization", info.source_organization),
                ("External-Identifier", info.external_identifier),
                ("External-Description", info.external_description),
                ("Bagging-Date", info.bagging_date),
                ("Bag-Group-Identifier", info.group_identifier),
                ("Internal-Sender-Identifier", info.internal_sender_identifier),
                ("Bag-Software-Agent", info.software_agent),
                ("Payload-Oxum", f"{total}.{len(listing)}"),
            )
        ).encode(),
        "manifest-sha256.txt": "".join(f"{o['sha256']}  {p}\n" for o, p in zip(listing, paths, strict=True)).encode(),
        "manifest-md5.txt": "".join(f"{o['md5']}  {p}\n" for o, p in zip(listing, paths, strict=True)).encode(),
        "fetch.txt": "".join(
            f"{url_of(str(o['key']))} {o['size']} {p}\n" for o, p in zip(listing, paths, strict=True)
        ).encode(),
    }
    covered = dict(files) | dict(extra_tag_files or {})
    for algorithm in ("sha256", "md5"):
        files[f"tagmanifest-{algorithm}.txt"] = "".join(
            f"{hashlib.new(algorithm, data).hexdigest()}  {name}\n" for name, data in sorted(covered.items())
        ).encode()
    return files
