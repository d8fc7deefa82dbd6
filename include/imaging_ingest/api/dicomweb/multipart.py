"""``multipart/related`` answers (RFC 2387), as WADO-RS sends instances, frames and bulk data.

Parts are streamed: each part's body is an iterable of chunks, written as it is read, so
a study of many instances is never held in memory. The boundary is random per answer
(it must not occur in any part; 32 random hex digits make that practically certain).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["Part", "content_type", "multipart_body", "new_boundary"]


@dataclass(frozen=True)
class Part:
    """One part: its media type (with parameters) and its body in chunks."""

    media_type: str
    body: Iterable[bytes]
    location: str | None = None


def new_boundary() -> str:
    return f"imaging-ingest-{secrets.token_hex(16)}"


def content_type(part_type: str, boundary: str, transfer_syntax: str | None = None) -> str:
    """The answer's Content-Type: ``multipart/related; type="..."; boundary=...``."""
    value = f'multipart/related; type="{part_type}"; boundary={boundary}'
    if transfer_syntax:
        value += f"; transfer-syntax={transfer_syntax}"
    return value


def multipart_body(parts: Iterable[Part], boundary: str) -> Iterator[bytes]:
    """The encoded body, part after part; ends with the closing delimiter."""
    delimiter = f"--{boundary}".encode("ascii")
    for part in parts:
        head = delimiter + b"\r\nContent-Type: " + part.media_type.encode("ascii")
        if part.location:
            head += b"\r\nContent-Location: " + part.location.encode("ascii")
        yield head + b"\r\n\r\n"
        yield from part.body
        yield b"\r\n"
    yield delimiter + b"--\r\n"
