"""The DICOMweb endpoints (QIDO-RS search, WADO-RS retrieval), mounted at ``/dicomweb``.

They serve the latest published version of every collection the caller may see, as the
NBIA API does, from the same catalog, object store and access rules. What each endpoint
answers, and how it matches and pages, is in docs/api.md ("DICOMweb").
"""


import io
import json
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import pydicom
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from imaging_ingest.api.access import Scope
from imaging_ingest.api.auth import NOT_FOUND
from imaging_ingest.api.dicomweb.dicom_json import link_bulk_data, tag_of
from imaging_ingest.api.dicomweb.multipart import Part, content_type, multipart_body, new_boundary
from imaging_ingest.api.dicomweb.qido import BadQuery, parse_query, search
from imaging_ingest.api.dicomweb.rendered import NoPixelData, read_frames, render
from imaging_ingest.api.dicomweb.wado import (
    Target,
    accepts_frames,
    instance_bytes,
    instance_stream,
    resolve,
    resolve_instance,
    wants_png,
)

__all__ = ["dicomweb_router"]

DICOM_JSON = "application/dicom+json"
UID = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9.]+$")]
#: The longer side of a thumbnail, in pixels.
THUMBNAIL_SIZE = 128


def _state(request: Request) -> Any:
    return request.app.state.api


def _json(document: Any, warnings: list[str] | None = None) -> Response:
    headers = {}
    if warnings:
        names = ", ".join(sorted(set(warnings)))
        headers["Warning"] = f'299 imaging-ingest "Not supported, ignored: {names}"'
    return Response(json.dumps(document, separators=(",", ":")).encode("utf-8"), media_type=DICOM_JSON,
                    headers=headers)


def _base(request: Request, study: str, series: str, sop: str) -> str:
    public = (_state(request).settings.public_url or "").rstrip("/")
    return f"{public}/dicomweb/studies/{study}/series/{series}/instances/{sop}"


def dicomweb_router(scope: Callable[..., Scope]) -> APIRouter:
    """The endpoints over the collection versions ``scope`` resolves (sync: object reads block, so
    FastAPI runs them in its thread pool)."""
    router = APIRouter(tags=["DICOMweb"])
    ScopeDep = Annotated[Scope, Depends(scope)]

    # -- QIDO-RS -------------------------------------------------------------------------------

    def _search(request: Request, s: Scope, level: str, study: str | None = None, series: str | None = None) -> Response:
        try:
            query = parse_query(request.query_params.multi_items())
        except BadQuery as exc:
            raise HTTPException(400, str(exc)) from None
        if study is not None:
            query.filters.pop("0020000D", None)
        rows = search(s, level, query, _state(request).metadata, study_uid=study, series_uid=series)
        return _json(rows, query.warnings)

    @router.get("/studies", summary="Search for studies (QIDO-RS)")
    def search_studies(request: Request, s: ScopeDep) -> Response:
        return _search(request, s, "studies")

    @router.get("/series", summary="Search for series (QIDO-RS)")
    def search_series(request: Request, s: ScopeDep) -> Response:
        return _search(request, s, "series")

    @router.get("/instances", summary="Search for instances (QIDO-RS)")
    def search_instances(request: Request, s: ScopeDep) -> Response:
        return _search(request, s, "instances")

    @router.get("/studies/{study}/series", summary="Search for a study's series (QIDO-RS)")
    def search_study_series(request: Request, s: ScopeDep, study: UID) -> Response:
        if s.find_study(study) is None:
            return _json([])
        return _search(request, s, "series", study)

    @router.get("/studies/{study}/instances", summary="Search for a study's instances (QIDO-RS)")
    def search_study_instances(request: Request, s: ScopeDep, study: UID) -> Response:
        if s.find_study(study) is None:
            return _json([])
        return _search(request, s, "instances", study)

    @router.get("/studies/{study}/series/{series}/instances", summary="Search for a series' instances (QIDO-RS)")
    def search_series_instances(request: Request, s: ScopeDep, study: UID, series: UID) -> Response:
        return _search(request, s, "instances", study, series)

    # -- WADO-RS: instances ---------------------------------------------------------------------

    def _instances(request: Request, target: Target) -> Response:
        state = _state(request)
        boundary = new_boundary()

        def parts() -> Iterator[Part]:
            for _series, instance in target.items:
                yield Part("application/dicom", instance_stream(state.store, instance, state.settings.chunk_size))

        return StreamingResponse(multipart_body(parts(), boundary),
                                 media_type=content_type("application/dicom", boundary))

    @router.get("/studies/{study}", summary="Retrieve a study (WADO-RS, multipart/related application/dicom)")
    def retrieve_study(request: Request, s: ScopeDep, study: UID) -> Response:
        return _instances(request, resolve(s, study))

    @router.get("/studies/{study}/series/{series}", summary="Retrieve a series (WADO-RS)")
    def retrieve_series(request: Request, s: ScopeDep, study: UID, series: UID) -> Response:
        return _instances(request, resolve(s, study, series))

    @router.get("/studies/{study}/series/{series}/instances/{sop}", summary="Retrieve an instance (WADO-RS)")
    def retrieve_instance(request: Request, s: ScopeDep, study: UID, series: UID, sop: UID) -> Response:
        return _instances(request, resolve(s, study, series, sop))

    # -- WADO-RS: metadata ----------------------------------------------------------------------

    def _metadata(request: Request, target: Target) -> Response:
        documents = _state(request).metadata.get_many((i.tier, i.key, i.size) for _, i in target.items)
        answer = []
        for series, instance in target.items:
            document = documents.get(instance.key) or {}
            answer.append(link_bulk_data(document, _base(request, series.study_uid, series.uid, instance.sop_uid)))
        return _json(answer)

    @router.get("/studies/{study}/metadata", summary="A study's metadata (DICOM JSON)")
    def study_metadata(request: Request, s: ScopeDep, study: UID) -> Response:
        return _metadata(request, resolve(s, study))

    @router.get("/studies/{study}/series/{series}/metadata", summary="A series' metadata (DICOM JSON)")
    def series_metadata(request: Request, s: ScopeDep, study: UID, series: UID) -> Response:
        return _metadata(request, resolve(s, study, series))

    @router.get("/studies/{study}/series/{series}/instances/{sop}/metadata", summary="An instance's metadata")
    def instance_metadata(request: Request, s: ScopeDep, study: UID, series: UID, sop: UID) -> Response:
        return _metadata(request, resolve(s, study, series, sop))

    # -- WADO-RS: frames, rendered, thumbnails, bulk data ---------------------------------------

    def _frames_of(request: Request, target: Target) -> Any:
        instance = target.items[0][1]
        try:
            return read_frames(instance_bytes(_state(request).store, instance))
        except NoPixelData:
            raise HTTPException(404, "The instance has no pixel data.") from None

    @router.get("/studies/{study}/series/{series}/instances/{sop}/frames/{frames}",
                summary="Frames of an instance (multipart/related application/octet-stream)")
    def retrieve_frames(request: Request, s: ScopeDep, study: UID, series: UID, sop: UID,
                        frames: Annotated[str, Path(pattern=r"^[0-9]+(,[0-9]+)*$")]) -> Response:
        numbers = [int(n) for n in frames.split(",")]
        instance = resolve_instance(s, study, series, sop)
        try:
            pixels = _state(request).frames.open(instance)
        except NoPixelData:
            raise HTTPException(404, "The instance has no pixel data.") from None
        syntax = pixels.served_syntax
        media = accepts_frames(request.headers.get("accept"), syntax, pixels.compressed)
        if media is None:
            raise HTTPException(406, f"The frames are stored as {syntax} and are sent only in it "
                                     "(ask transfer-syntax=* or that syntax).")
        missing = [n for n in numbers if not 1 <= n <= pixels.count]
        if missing:
            raise HTTPException(404, f"the instance has {pixels.count} frame(s); there is no frame {missing[0]}")
        boundary = new_boundary()
        answer_type = content_type(media.split(";")[0], boundary, syntax)
        if len(numbers) == 1:  # one frame: one body, no streaming machinery
            try:
                body = b"".join(multipart_body([Part(media, (pixels.frame(numbers[0]),))], boundary))
            except NoPixelData as exc:
                raise HTTPException(404, str(exc)) from None
            return Response(body, media_type=answer_type)

        def frame(number: int) -> Iterator[bytes]:  # read when its part is sent
            yield pixels.frame(number)

        parts = (Part(media, frame(n)) for n in numbers)
        return StreamingResponse(multipart_body(parts, boundary), media_type=answer_type)

    def _rendered(request: Request, target: Target, number: int, size: int | None) -> Response:
        pixels = _frames_of(request, target)
        media = "image/png" if wants_png(request.headers.get("accept")) else "image/jpeg"
        quality = request.query_params.get("quality", "90")
        try:
            image = render(pixels, number, media, size=size, quality=min(100, max(1, int(quality))))
        except NoPixelData as exc:
            raise HTTPException(404, str(exc)) from None
        except ValueError:
            raise HTTPException(400, "quality must be a whole number from 1 to 100") from None
        return Response(image, media_type=media)

    def _viewport(value: str | None) -> int | None:
        if not value:
            return None
        try:
            sides = [int(v) for v in value.split(",")[:2] if v]
        except ValueError:
            raise HTTPException(400, "viewport must be vw,vh in pixels") from None
        return max(sides) if sides else None

    Viewport = Annotated[str | None, Query(description="vw,vh: bound the image to this many pixels")]

    @router.get("/studies/{study}/series/{series}/instances/{sop}/rendered", summary="An instance rendered (JPEG/PNG)")
    def rendered_instance(request: Request, s: ScopeDep, study: UID, series: UID, sop: UID,
                          viewport: Viewport = None) -> Response:
        return _rendered(request, resolve(s, study, series, sop), 1, _viewport(viewport))

    @router.get("/studies/{study}/series/{series}/instances/{sop}/frames/{frame}/rendered",
                summary="A frame rendered (JPEG/PNG)")
    def rendered_frame(request: Request, s: ScopeDep, study: UID, series: UID, sop: UID,
                       frame: Annotated[int, Path(ge=1)], viewport: Viewport = None) -> Response:
        return _rendered(request, resolve(s, study, series, sop), frame, _viewport(viewport))

    def _middle(target: Target) -> Target:
        return Target(target.view, (target.items[len(target.items) // 2],))

    @router.get("/studies/{study}/series/{series}/instances/{sop}/thumbnail", summary="An instance's thumbnail")
    def instance_thumbnail(request: Request, s: ScopeDep, study: UID, series: UID, sop: UID,
                           viewport: Viewport = None) -> Response:
        return _rendered(request, resolve(s, study, series, sop), 1, _viewport(viewport) or THUMBNAIL_SIZE)

    @router.get("/studies/{study}/series/{series}/thumbnail", summary="A series' thumbnail (its middle instance)")
    def series_thumbnail(request: Request, s: ScopeDep, study: UID, series: UID, viewport: Viewport = None) -> Response:
        return _rendered(request, _middle(resolve(s, study, series)), 1, _viewport(viewport) or THUMBNAIL_SIZE)

    @router.get("/studies/{study}/thumbnail", summary="A study's thumbnail (its first series' middle instance)")
    def study_thumbnail(request: Request, s: ScopeDep, study: UID, viewport: Viewport = None) -> Response:
        target = resolve(s, study)
        first = target.items[0][0].uid
        series_items = Target(target.view, tuple(x for x in target.items if x[0].uid == first))
        return _rendered(request, _middle(series_items), 1, _viewport(viewport) or THUMBNAIL_SIZE)

    @router.get("/studies/{study}/series/{series}/instances/{sop}/bulk/{tag}",
                summary="One bulk data element of an instance (multipart/related application/octet-stream)")
    def bulk_data(request: Request, s: ScopeDep, study: UID, series: UID, sop: UID,
                  tag: Annotated[str, Path(pattern=r"^[0-9A-Fa-f]{8}$")]) -> Response:
        target = resolve(s, study, series, sop)
        instance = target.items[0][1]
        wanted = tag_of(tag)
        dataset = pydicom.dcmread(io.BytesIO(instance_bytes(_state(request).store, instance)), force=True)
        element = dataset.get(int(wanted or "0", 16))
        if element is None or not isinstance(element.value, (bytes, bytearray)):
            raise HTTPException(404, NOT_FOUND)
        boundary = new_boundary()
        body = b"".join(multipart_body([Part("application/octet-stream", (bytes(element.value),))], boundary))
        return Response(body, media_type=content_type("application/octet-stream", boundary))

    return router
