"""Checksums: SHA-256 (fixity, S3 integrity) and MD5 (what NBIA-style downloads carry).

Both are computed in the same pass over the bytes, while they are written or read, so
that no file is read twice just to be hashed.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["CHUNK", "Digests", "HashingWriter", "copy_range", "file_digests", "file_sha256", "iter_chunks"]

CHUNK = 1 << 20


class Digests:
    """SHA-256 and MD5 of a byte stream, fed in pieces.

    ``md5=False`` leaves the MD5 out (``has_md5`` is False), for a caller that publishes
    nothing that carries it (``imaging-ingest deidentify``'s manifest has the SHA-256 only):
    it costs twice the SHA-256's time.
    """

    def __init__(self, *, md5: bool = True) -> None:
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        self._sha256.update(data)
        if self._md5 is not None:
            self._md5.update(data)
        self.size += len(data)

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    @property
    def sha256_b64(self) -> str:
        """The form S3 takes in ``ChecksumSHA256``."""
        return base64.b64encode(self._sha256.digest()).decode("ascii")

    @property
    def has_md5(self) -> bool:
        return self._md5 is not None

    @property
    def md5(self) -> str:
        if self._md5 is None:
            raise ValueError("no MD5: these digests were made with md5=False")
        return self._md5.hexdigest()


class HashingWriter:
    """A write-only file wrapper that hashes what passes through it."""

    def __init__(self, fh: BinaryIO, *, md5: bool = True) -> None:
        self._fh = fh
        self.digests = Digests(md5=md5)

    def write(self, data: bytes | memoryview) -> int:
        self.digests.update(data)
        return self._fh.write(data)


def iter_chunks(fh: BinaryIO, length: int | None = None, chunk: int = CHUNK) -> Iterator[bytes]:
    """Yield ``length`` bytes (or all that is left) in pieces; constant memory."""
    remaining = length
    while remaining is None or remaining > 0:
        size = chunk if remaining is None else min(chunk, remaining)
        data = fh.read(size)
        if not data:
            if remaining:
                raise EOFError(f"{remaining} bytes missing")
            return
        if remaining is not None:
            remaining -= len(data)
        yield data


def copy_range(src: BinaryIO, dst: HashingWriter | BinaryIO, length: int) -> None:
    for data in iter_chunks(src, length):
        dst.write(data)


def file_digests(path: str | Path) -> Digests:
    digests = Digests()
    with open(path, "rb") as fh:
        for data in iter_chunks(fh):
            digests.update(data)
    return digests


def file_sha256(path: str | Path) -> tuple[str, int]:
    """SHA-256 and size of a file, for callers that need no MD5 (a source's fixity): one pass, one hash."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for data in iter_chunks(fh):
            digest.update(data)
            size += len(data)
    return digest.hexdigest(), size


def sha256_b64_from_hex(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")
