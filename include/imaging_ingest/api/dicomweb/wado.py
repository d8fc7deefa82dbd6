"""WADO-RS (PS3.18 10.4): what a retrieval names, what the client accepts, and the objects' bytes.

A study, series or instance is looked up through the request's ``Scope``: one that is not
published, and one in a restricted collection the caller holds no grant for, both answer
the same 404. Instances are sent in the transfer syntax they are stored in; every byte
read is checked against the catalog's size and MD5 before it leaves (a damaged object ends
the answer short rather than reach a client).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import HTTPException

from imaging_ingest.api.access import Scope
from imaging_ingest.api.auth import NOT_FOUND
from imaging_ingest.api.dicomweb.rendered import FRAME_MEDIA_TYPES
from imaging_ingest.api.downloads import object_chunks, verified_chunks
from imaging_ingest.api.releases import CollectionView, InstanceView, SeriesView
from imaging_ingest.api.zipstream import IntegrityError

__all__ = ["Target", "accepts_frames", "instance_bytes", "instance_range", "instance_stream", "resolve",
           "resolve_instance", "wants_png"]


@dataclass(frozen=True)
class Target:
    """The instances a retrieval names, each with its series (in study, series, key order)."""

    view: CollectionView
    items: tuple[tuple[SeriesView, InstanceView], ...]


def resolve(scope: Scope, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None) -> Target:
    """The study, series or instance named, if published and visible; else 404 (the same for both)."""
    if series_uid is None:
        found_study = scope.find_study(study_uid)
        if found_study is None:
            raise HTTPException(404, NOT_FOUND)
        view, study = found_study
        return Target(view, tuple((s, i) for s in study.series for i in s.instances))
    found = scope.find_series(series_uid)
    if found is None or found[1].study_uid != study_uid:
        raise HTTPException(404, NOT_FOUND)
    view, series = found
    instances = series.instances if sop_uid is None else tuple(i for i in series.instances if i.sop_uid == sop_uid)
    if not instances:
        raise HTTPException(404, NOT_FOUND)
    return Target(view, tuple((series, i) for i in instances))


def resolve_instance(scope: Scope, study_uid: str, series_uid: str, sop_uid: str) -> InstanceView:
    """One instance named by its UIDs, if published and visible; else 404 (one query, no series listing)."""
    found = scope.find_instance(study_uid, series_uid, sop_uid)
    if found is None:
        raise HTTPException(404, NOT_FOUND)
    return found[1]


def instance_range(store: object, instance: InstanceView, start: int, end: int) -> bytes:
    """Bytes ``start`` to ``end`` (exclusive) of an instance: one ranged GET (the caller checks them)."""
    client = store.client  # type: ignore[attr-defined]
    bucket = store.bucket(instance.tier)  # type: ignore[attr-defined]
    data: bytes = client.get_object(Bucket=bucket, Key=instance.key, Range=f"bytes={start}-{end - 1}")["Body"].read()
    return data


def instance_stream(store: object, instance: InstanceView, chunk_size: int) -> Iterator[bytes]:
    """An instance's bytes, streamed, checked against the catalog (the last chunk waits for the check)."""
    chunks = object_chunks(store, instance.tier, instance.key, chunk_size)  # type: ignore[arg-type]
    return verified_chunks(chunks, instance.size, instance.md5, instance.key)


def instance_bytes(store: object, instance: InstanceView) -> bytes:
    """An instance's bytes whole (for frames and rendering), checked against the catalog."""
    data: bytes = store.get_bytes(instance.tier, instance.key)  # type: ignore[attr-defined]
    if len(data) != instance.size or hashlib.md5(data, usedforsecurity=False).hexdigest() != instance.md5.lower():
        raise IntegrityError(f"{instance.key} does not match its catalogued size and MD5; not delivered")
    return data


def _accept_items(accept: str | None) -> list[tuple[str, dict[str, str]]]:
    items = []
    for raw in (accept or "*/*").split(","):
        parts = [p.strip() for p in raw.split(";")]
        if not parts[0]:
            continue
        params = {}
        for p in parts[1:]:
            name, _, value = p.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        items.append((parts[0].lower(), params))
    return items


def accepts_frames(accept: str | None, syntax: str, compressed: bool) -> str | None:
    """The media type of the frame parts the client accepts for frames in ``syntax``; None: nothing fits.

    ``application/octet-stream`` means explicit VR little endian unless ``transfer-syntax`` says
    otherwise (``*``: as stored); an image type (``image/jpeg``, ...) must be the stored one's.
    """
    native = FRAME_MEDIA_TYPES.get(syntax)
    for media, params in _accept_items(accept):
        part = params.get("type", "application/octet-stream") if media == "multipart/related" else media
        wanted = params.get("transfer-syntax")
        if part in ("*/*", "*", "application/octet-stream"):
            if wanted == "*" or wanted == syntax or (wanted is None and (not compressed or part != "application/octet-stream")):
                return f"application/octet-stream; transfer-syntax={syntax}"
        elif native is not None and part == native and wanted in (None, "*", syntax):
            return f"{native}; transfer-syntax={syntax}"
    return None


def wants_png(accept: str | None) -> bool:
    """Rendered answers are JPEG unless the client prefers PNG."""
    for media, _params in _accept_items(accept):
        if media == "image/png":
            return True
        if media in ("image/jpeg", "image/*", "*/*"):
            return False
    return False
