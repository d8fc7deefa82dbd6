"""Drops: where sites leave submissions (a local folder, an S3 prefix, an SFTP folder: ``sftp.py``).

A drop holds one sub-folder (or prefix) per submission, or one zip/tar archive per
submission at its top level. A submission is complete when its marker file exists (for
an archive: a sidecar ``<archive>.<marker>``), or, for drops configured
``completion: stable``, when its listing did not change between two polls. Listing never follows a symbolic link out of the
submission and never opens a device or a pipe: such entries are listed as what they are
so that they can be quarantined with a reason instead of silently skipped.
"""

from __future__ import annotations

import hashlib
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlparse

from .config import DropConfig
from .settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

__all__ = [
    "Drop",
    "DropEntry",
    "DropSubmission",
    "LocalDrop",
    "S3Drop",
    "display_path",
    "is_archive_name",
    "open_drop",
    "open_local",
    "unsafe_name_reason",
    "walk_tree",
]

#: File name endings read as archives: a submission may be one, and members of one are entries.
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def unsafe_name_reason(raw: bytes | str) -> str | None:
    """Why a file name cannot be trusted (newlines, control characters, invalid UTF-8), or None.

    Such names break line-oriented tools and logs and can smuggle text into reports; the
    file is quarantined with this reason, its content kept for a curator.
    """
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return "file name is not valid UTF-8"
    else:
        text = raw
        if any(0xDC80 <= ord(c) <= 0xDCFF for c in text):  # surrogate-escaped bytes from os.fsdecode
            return "file name is not valid UTF-8"
    if any(c in "\n\r" for c in text):
        return "file name contains a newline"
    if any(not c.isprintable() for c in text):
        return "file name contains control characters"
    return None


def display_path(raw: bytes) -> str:
    """A file name as text that is safe to store and show: bad bytes and control characters escaped."""
    text = raw.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


@dataclass(frozen=True)
class DropEntry:
    """One entry of a submission; ``kind`` is 'file', 'symlink' or 'special'.

    ``name_problem`` says why the entry's raw name is unsafe (see ``unsafe_name_reason``).
    """

    path: str
    size: int
    kind: str
    token: str
    locator: str
    name_problem: str | None = None


@dataclass(frozen=True)
class DropSubmission:
    name: str
    url: str
    entries: tuple[DropEntry, ...]
    marker_present: bool

    @property
    def fingerprint(self) -> str:
        """A digest of the listing: names, sizes and modification tokens."""
        digest = hashlib.sha256()
        for entry in sorted(self.entries, key=lambda e: e.path):
            digest.update(f"{entry.path}\x00{entry.size}\x00{entry.kind}\x00{entry.token}\n".encode())
        return digest.hexdigest()


def walk_tree(root: Path) -> list[DropEntry]:
    """Every entry under ``root``, without following symbolic links (a link is an entry of kind 'symlink')."""
    entries = []
    base_bytes = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(base_bytes, followlinks=False):
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        dirnames[:] = sorted(d for d in dirnames if d not in links)
        for fname in sorted([*filenames, *links]):
            full = os.path.join(dirpath, fname)
            rel = os.path.relpath(full, base_bytes)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                kind = "symlink"
            elif stat.S_ISREG(st.st_mode):
                kind = "file"
            else:
                kind = "special"
            entries.append(
                DropEntry(
                    path=display_path(rel),
                    size=st.st_size if kind == "file" else 0,
                    kind=kind,
                    token=str(st.st_mtime_ns),
                    locator=os.fsdecode(full),
                    name_problem=unsafe_name_reason(rel),
                )
            )
    return sorted(entries, key=lambda e: e.path)


def open_local(entry: DropEntry) -> IO[bytes]:
    """Open a listed regular file, refusing to follow a link swapped in since the listing."""
    if entry.kind != "file":
        raise ValueError(f"{entry.path}: not a regular file ({entry.kind})")
    fd = os.open(entry.locator, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    return os.fdopen(fd, "rb")


class Drop(ABC):
    """A place submissions arrive in."""

    def __init__(self, config: DropConfig) -> None:
        self.config = config

    @abstractmethod
    def submission_names(self) -> list[str]: ...

    @abstractmethod
    def submission(self, name: str) -> DropSubmission: ...

    @abstractmethod
    @contextmanager
    def open(self, entry: DropEntry) -> Iterator[IO[bytes]]: ...

    def submissions(self) -> list[DropSubmission]:
        return [self.submission(name) for name in self.submission_names()]


class LocalDrop(Drop):
    """A folder on a local or mounted file system: ``file:///path``."""

    def __init__(self, config: DropConfig) -> None:
        super().__init__(config)
        self.root = Path(urlparse(config.url).path) if config.url.startswith("file://") else Path(config.url)

    def submission_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            e.name
            for e in os.scandir(self.root)
            if not e.name.startswith(".")
            and (e.is_dir(follow_symlinks=False) or (e.is_file(follow_symlinks=False) and is_archive_name(e.name)))
        )

    def submission(self, name: str) -> DropSubmission:
        base = self.root / name
        if is_archive_name(name) and base.is_file():
            st = os.lstat(base)
            entry = DropEntry(name, st.st_size, "file", str(st.st_mtime_ns), str(base), unsafe_name_reason(name))
            marker_path = self.root / f"{name}.{self.config.marker}"
            return DropSubmission(name, base.as_uri(), (entry,), marker_path.is_file())
        entries = walk_tree(base)
        marker = any(e.path == self.config.marker for e in entries)
        entries = [e for e in entries if e.path != self.config.marker]
        return DropSubmission(name=name, url=base.as_uri(), entries=tuple(entries), marker_present=marker)

    @contextmanager
    def open(self, entry: DropEntry) -> Iterator[IO[bytes]]:
        with open_local(entry) as fh:
            yield fh


class S3Drop(Drop):
    """A bucket prefix: ``s3://bucket/prefix``; one sub-prefix per submission."""

    def __init__(self, config: DropConfig, client: S3Client) -> None:
        super().__init__(config)
        parsed = urlparse(config.url)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.client = client

    def _prefix(self, name: str = "") -> str:
        parts = [p for p in (self.prefix, name) if p]
        return "/".join(parts) + "/" if parts else ""

    def submission_names(self) -> list[str]:
        names = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._prefix(), Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                names.append(common["Prefix"][len(self._prefix()) :].rstrip("/"))
            for item in page.get("Contents", []):
                rel = item["Key"][len(self._prefix()) :]
                if is_archive_name(rel):
                    names.append(rel)
        return sorted(names)

    def submission(self, name: str) -> DropSubmission:
        if is_archive_name(name):
            key = self._prefix() + name
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=key)
            except self.client.exceptions.ClientError:
                head = None
            if head is not None:
                entry = DropEntry(
                    name, int(head["ContentLength"]), "file", str(head.get("ETag", "")).strip('"'), key,
                    unsafe_name_reason(name),
                )
                listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{key}.{self.config.marker}")
                marker = any(o["Key"] == f"{key}.{self.config.marker}" for o in listing.get("Contents", []))
                return DropSubmission(name, f"s3://{self.bucket}/{key}", (entry,), marker)
        prefix = self._prefix(name)
        entries = []
        marker = False
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                rel = item["Key"][len(prefix) :]
                if rel == self.config.marker:
                    marker = True
                    continue
                if not rel or rel.endswith("/"):
                    continue
                entries.append(
                    DropEntry(
                        path=display_path(rel.encode()),
                        size=int(item["Size"]),
                        kind="file",
                        token=str(item.get("ETag", "")).strip('"'),
                        locator=item["Key"],
                        name_problem=unsafe_name_reason(rel),
                    )
                )
        return DropSubmission(
            name=name, url=f"s3://{self.bucket}/{prefix}", entries=tuple(entries), marker_present=marker
        )

    @contextmanager
    def open(self, entry: DropEntry) -> Iterator[IO[bytes]]:
        body = self.client.get_object(Bucket=self.bucket, Key=entry.locator)["Body"]
        try:
            yield body
        finally:
            body.close()


def open_drop(
    config: DropConfig, settings: Settings, s3_client: S3Client | None = None, sftp_connect: Any = None
) -> Drop:
    """The drop a collection config names; clients for remote drops may be passed in (Airflow hooks).

    ``sftp_connect`` is a callable returning a connected ``paramiko.SFTPClient`` (see
    ``sftp.connector``); without it an SFTP drop connects with the key and known-hosts
    files named by ``IMAGING_INGEST_SFTP_KEY_FILE`` and ``IMAGING_INGEST_SFTP_KNOWN_HOSTS``.
    """
    scheme = urlparse(config.url).scheme
    if scheme == "sftp":
        from .sftp import SFTPDrop, connector_from_env

        return SFTPDrop(config, sftp_connect or connector_from_env(config.url))
    if scheme == "file":
        return LocalDrop(config)
    if scheme == "s3":
        if s3_client is None:
            from .storage import ObjectStore

            s3_client = ObjectStore(settings).client
        return S3Drop(config, s3_client)
    raise NotImplementedError(f"drops of scheme {scheme!r} are not supported yet")
