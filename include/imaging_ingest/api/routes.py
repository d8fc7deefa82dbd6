"""The NBIA v4 search API, endpoint by endpoint, as the ``tcia_utils`` client calls it.

Paths, parameter names, answers and errors follow NBIA's v4 services: an unknown query
parameter is a 400 naming the allowed ones, a missing required one a 400 saying which,
and an empty result an HTTP 200 with an empty body. Filters on names and codes
(Collection, PatientID, Modality, BodyPartExamined, Manufacturer, ManufacturerModelName)
ignore case, as NBIA's do; UIDs match exactly.

The same router is mounted twice: at ``/nbia-api/services/v4`` over the latest version
of every collection, and at ``/collections/{collection}/versions/{version}/nbia-api/services/v4``
over one named version of one collection (a citable snapshot that NBIA clients can be
pointed at unchanged).
"""


import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response
from fastapi.dependencies.utils import get_flat_dependant
from fastapi.responses import StreamingResponse

from imaging_ingest.api.access import Scope
from imaging_ingest.api.downloads import object_chunks, series_zip, verified_chunks
from imaging_ingest.api.nbia import (
    METADATA_COLUMNS,
    PATIENT_COLUMNS,
    SERIES_COLUMNS,
    STUDY_COLUMNS,
    csv_chunks,
    json_chunks,
    json_parts,
    metadata_row,
    patient_row,
    render_json,
    series_row,
    study_row,
)
from imaging_ingest.api.releases import CollectionView, SeriesView, StudyView
from imaging_ingest.api.schemas import (
    BodyPartValue,
    CollectionValue,
    ManufacturerValue,
    ModalityValue,
    PatientByModality,
    PatientRecord,
    SeriesRecord,
    SeriesSize,
    SopInstanceUid,
    StudyRecord,
)

__all__ = ["nbia_router", "reject_unknown_parameters"]

#: The most series UIDs one getSeriesMetadata call may name (tcia_utils sends 10,000 at most).
MAX_METADATA_SERIES = 10_000


def reject_unknown_parameters(request: Request) -> None:
    """NBIA answers 400 to a query parameter it does not know; so do we (typos fail loudly)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    allowed = {param.alias for param in get_flat_dependant(dependant).query_params}
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise HTTPException(
            400,
            f"Invalid query parameter: '{unknown[0]}'. Allowed parameters are: [{', '.join(sorted(allowed))}]",
        )


def _format(value: str | None) -> str:
    fmt = (value or "json").lower()
    if fmt not in ("json", "csv"):
        raise HTTPException(400, f"format must be JSON or CSV, not {value!r}")
    return fmt


def _first(items: Iterable[Any]) -> Iterator[Any] | None:
    """The items again, or None when there are none (the first is read to know)."""
    iterator = iter(items)
    first = next(iterator, _NONE)
    return None if first is _NONE else itertools.chain([first], iterator)


_NONE = object()


def _answer(rows: Iterable[dict[str, Any]], columns: Sequence[str], fmt: str,
            headers: dict[str, str] | None = None) -> Response:
    """NBIA's answer: an empty 200 for no rows, else JSON (or CSV), streamed as the rows are made.

    Rows are built and encoded a chunk at a time (``nbia.CHUNK_ROWS``) while the answer is
    sent, so a listing of a whole archive is never held in memory as one body; the bytes are
    those of the whole answer (``render_json`` / ``render_csv`` are the same chunks joined).
    """
    found = _first(rows)
    if found is None:
        return Response(status_code=200)
    if fmt == "csv":
        return StreamingResponse(csv_chunks(columns, found), media_type="text/csv", headers=headers)
    return StreamingResponse(json_chunks(found), media_type="application/json", headers=headers)


def _values(column: str, values: Iterable[str | None], fmt: str, *, as_stored: bool = False) -> Response:
    """Distinct values, sorted; upper-cased as NBIA lists codes, or ``as_stored`` (names getSeries reports too)."""
    if as_stored:
        distinct = sorted({v for v in values if v}, key=lambda v: (v.upper(), v))
        return _answer([{column: v} for v in distinct], (column,), fmt)
    distinct = sorted({v.upper() for v in values if v})
    return _answer([{column: v} for v in distinct], (column,), fmt)


def _same(value: str | None, wanted: str | None) -> bool:
    """NBIA's filter: no filter, or equal ignoring case."""
    return not wanted or (value is not None and value.upper() == wanted.upper())


def _from_date(value: str | None, default: date | None = None) -> date:
    if not value:
        if default is None:
            raise HTTPException(400, "A parameter, fromDate, is required for this API call (MM-DD-YYYY).")
        return default
    for pattern in ("%m-%d-%Y", "%m/%d/%Y", "%Y-%m-%d", "%Y/%m/%d"):
        try:
            return datetime.strptime(value, pattern).date()
        except ValueError:
            continue
    raise HTTPException(400, f"fromDate must be a date written MM-DD-YYYY (for example 01-31-2024), not {value!r}")


def _yes(value: str | None) -> bool:
    return (value or "").strip().lower() in ("yes", "y", "true", "1")


def _cached_row(view: CollectionView, kind: str, key: str, build: Callable[[], Any]) -> Any:
    """Rows of an immutable version never change: format each once."""
    cache = view.cache
    row = cache.get((kind, key))
    if row is None:
        row = cache[(kind, key)] = build()
    return row


def _series_rows(pairs: Iterable[tuple[CollectionView, SeriesView]]) -> Iterator[dict[str, Any]]:
    return (_cached_row(v, "series", s.uid, lambda v=v, s=s: series_row(v, s)) for v, s in pairs)  # type: ignore[misc]


def _series_answer(pairs: Iterable[tuple[CollectionView, SeriesView]], fmt: str) -> Response:
    """Series rows, streamed; in JSON from each row's encoding, made once per version (listing 5,000 is a join)."""
    found = _first(pairs)
    if found is None:
        return Response(status_code=200)
    if fmt == "csv":
        return _answer(_series_rows(found), SERIES_COLUMNS, fmt)
    parts = (
        _cached_row(v, "series-json", s.uid, lambda v=v, s=s: render_json([series_row(v, s)])[1:-1])  # type: ignore[misc]
        for v, s in found
    )
    return StreamingResponse(json_parts(parts), media_type="application/json")


Text = Annotated[str | None, Query()]


def _required(name: str, description: str) -> Any:
    return Query(..., alias=name, min_length=1, description=description)


def nbia_router(scope: Callable[..., Scope], tag: str) -> APIRouter:
    """The v4 endpoints over the collection versions that ``scope`` resolves for a request."""
    router = APIRouter(tags=[tag], dependencies=[Depends(reject_unknown_parameters)])
    ScopeDep = Annotated[Scope, Depends(scope)]
    json_or_csv = {"content": {"text/csv": {"schema": {"type": "string"}}}}

    def listing(model: Any, what: str) -> dict[int | str, dict[str, Any]]:
        return {200: {"model": list[model], "description": f"{what}; an empty body when there is none.", **json_or_csv}}

    @router.get("/getCollectionValues", responses=listing(CollectionValue, "Collections"))
    def get_collection_values(s: ScopeDep, format: Text = None) -> Response:
        """The collections you may see (restricted ones only with a token that grants them)."""
        return _answer([{"Collection": v.id} for v in sorted(s.visible(), key=lambda v: v.id.upper())],
                       ("Collection",), _format(format))

    @router.get("/getBodyPartValues", responses=listing(BodyPartValue, "Body parts examined"))
    def get_body_part_values(s: ScopeDep, Collection: Text = None, Modality: Text = None,
                             format: Text = None) -> Response:
        fmt = _format(format)
        return _values("BodyPartExamined",
                       (x.body_part for _, x in s.series(Collection) if _same(x.modality, Modality)), fmt)

    @router.get("/getModalityValues", responses=listing(ModalityValue, "Modalities"))
    def get_modality_values(s: ScopeDep, Collection: Text = None, BodyPartExamined: Text = None,
                            format: Text = None) -> Response:
        fmt = _format(format)
        return _values("Modality",
                       (x.modality for _, x in s.series(Collection) if _same(x.body_part, BodyPartExamined)), fmt)

    @router.get("/getManufacturerValues", responses=listing(ManufacturerValue, "Manufacturers"))
    def get_manufacturer_values(s: ScopeDep, Collection: Text = None, Modality: Text = None,
                                BodyPartExamined: Text = None, format: Text = None) -> Response:
        fmt = _format(format)
        return _values("Manufacturer", (
            x.manufacturer for _, x in s.series(Collection)
            if _same(x.modality, Modality) and _same(x.body_part, BodyPartExamined)
        ), fmt, as_stored=True)  # as getSeries reports it: tcia_utils users cross-check the two

    @router.get("/getPatient", responses=listing(PatientRecord, "Patients"))
    def get_patient(s: ScopeDep, Collection: Text = None, PatientId: Text = None, format: Text = None) -> Response:
        fmt = _format(format)
        found = s.find_patients(Collection, PatientId) if PatientId else s.patients(Collection)
        return _answer((patient_row(v, p) for v, p in found), PATIENT_COLUMNS, fmt)

    @router.get("/getPatientByCollectionAndModality", responses=listing(PatientByModality, "Patient IDs"))
    def get_patient_by_collection_and_modality(
        s: ScopeDep,
        Collection: Annotated[str, _required("Collection", "Collection name")],
        Modality: Annotated[str, _required("Modality", "Modality, e.g. CT")],
        format: Text = None,
    ) -> Response:
        fmt = _format(format)
        rows = ({"PatientId": p.id, "Authorized": 1} for _, p in s.patients(Collection)
                if any(_same(x.modality, Modality) for x in p.series))
        return _answer(rows, ("PatientId", "Authorized"), fmt)

    @router.get("/getPatientStudy", responses=listing(StudyRecord, "Studies"))
    def get_patient_study(s: ScopeDep, Collection: Text = None, PatientID: Text = None,
                          StudyInstanceUID: Text = None, format: Text = None) -> Response:
        fmt = _format(format)
        pairs: Iterable[tuple[CollectionView, StudyView]]
        if StudyInstanceUID:
            found = s.find_study(StudyInstanceUID)
            pairs = [found] if found and _same(found[0].id, Collection) else []
        elif PatientID:
            pairs = [(v, st) for v, p in s.find_patients(Collection, PatientID) for st in p.studies]
        else:
            pairs = s.studies(Collection)
        rows = (study_row(v, st) for v, st in pairs if _same(st.patient_id, PatientID))
        return _answer(rows, STUDY_COLUMNS, fmt)

    @router.get("/getSeries", responses=listing(SeriesRecord, "Series"))
    def get_series(s: ScopeDep, Collection: Text = None, PatientID: Text = None, StudyInstanceUID: Text = None,
                   Modality: Text = None, BodyPartExamined: Text = None, ManufacturerModelName: Text = None,
                   Manufacturer: Text = None, SeriesInstanceUID: Text = None, format: Text = None) -> Response:
        fmt = _format(format)
        if SeriesInstanceUID:
            found = s.find_series(SeriesInstanceUID)
            candidates: Iterable[tuple[CollectionView, SeriesView]] = (
                [found] if found and _same(found[0].id, Collection) else []
            )
        elif StudyInstanceUID:
            study = s.find_study(StudyInstanceUID)
            candidates = [(study[0], x) for x in study[1].series] if study and _same(study[0].id, Collection) else []
        elif PatientID:
            candidates = [(v, x) for v, p in s.find_patients(Collection, PatientID) for x in p.series]
        else:
            candidates = s.series(Collection)
        pairs = (
            (v, x) for v, x in candidates
            if _same(x.patient_id, PatientID) and _same(x.modality, Modality) and _same(x.body_part, BodyPartExamined)
            and _same(x.manufacturer, Manufacturer)
            and _same(x.header.get("ManufacturerModelName"), ManufacturerModelName)
        )
        return _series_answer(pairs, fmt)

    @router.get("/getUpdatedSeries", responses=listing(SeriesRecord, "Series released on or after fromDate"))
    def get_updated_series(s: ScopeDep, fromDate: Text = None, format: Text = None) -> Response:
        """Series released on or after ``fromDate`` (MM-DD-YYYY; all series when absent)."""
        fmt = _format(format)
        since = _from_date(fromDate, default=date(1900, 1, 1))
        return _series_answer(((v, x) for v, x in s.series() if x.released.date() >= since), fmt)

    @router.post(
        "/getSeriesMetadata",
        responses={200: {"description": "One row per series you may see (CSV unless format=JSON); "
                                        "an empty body when there is none.",
                         "content": {"text/csv": {"schema": {"type": "string"}}}}},
    )
    def get_series_metadata(
        s: ScopeDep,
        list: Annotated[list[str], Form(description="Series Instance UIDs, comma-separated and/or repeated")],
        format: Annotated[str | None, Form()] = None,
    ) -> Response:
        """Metadata of the listed series, as NBIA's CSV; series you may not see are left out."""
        fmt = (format or "csv").lower()
        if fmt not in ("csv", "json"):
            raise HTTPException(400, f"format must be CSV or JSON, not {format!r}")
        uids = dict.fromkeys(u.strip() for item in list for u in item.split(",") if u.strip())
        if not uids:
            raise HTTPException(400, "A form parameter, list, containing at least one SeriesInstanceUID is required.")
        if len(uids) > MAX_METADATA_SERIES:
            raise HTTPException(400, f"list names {len(uids)} series; send at most {MAX_METADATA_SERIES} per call")
        visible = s.visible()

        def rows() -> Iterator[dict[str, Any]]:
            for uid in uids:
                for view in visible:
                    series = view.series.get(uid)
                    if series is not None:
                        yield metadata_row(view, series)
                        break

        if fmt == "json":
            return _answer(rows(), METADATA_COLUMNS, fmt)
        return _answer(rows(), METADATA_COLUMNS, fmt,
                       headers={"Content-Disposition": 'attachment; filename="SeriesMetaData.csv"'})

    @router.get("/getSeriesSize", responses=listing(SeriesSize, "Size and instance count of a series"))
    def get_series_size(
        s: ScopeDep,
        SeriesInstanceUID: Annotated[str, _required("SeriesInstanceUID", "Series Instance UID")],
        format: Text = None,
    ) -> Response:
        fmt = _format(format)
        found = s.find_series(SeriesInstanceUID)
        rows = [{"TotalSizeInBytes": found[1].total_bytes, "ObjectCount": found[1].image_count}] if found else []
        return _answer(rows, ("TotalSizeInBytes", "ObjectCount"), fmt)

    @router.get("/getSOPInstanceUIDs", responses=listing(SopInstanceUid, "SOP Instance UIDs of a series"))
    def get_sop_instance_uids(
        s: ScopeDep,
        SeriesInstanceUID: Annotated[str, _required("SeriesInstanceUID", "Series Instance UID")],
        format: Text = None,
    ) -> Response:
        fmt = _format(format)
        found = s.find_series(SeriesInstanceUID)
        rows = [{"SOPInstanceUID": i.sop_uid} for i in found[1].instances] if found else []
        return _answer(rows, ("SOPInstanceUID",), fmt)

    zip_response: dict[int | str, dict[str, Any]] = {200: {"description": "The series as a zip (streamed).",
                          "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}},
                    404: {"description": "No such series is published."}}

    def _zip(request: Request, s: Scope, uid: str, new_file_names: bool, include_md5: bool) -> Response:
        found = s.find_series(uid)
        if found is None:
            raise HTTPException(404, f"No published series has SeriesInstanceUID {uid}.")
        state = request.app.state.api
        archive = series_zip(state.store, found[0], found[1], new_file_names=new_file_names,
                             include_md5=include_md5, chunk_size=state.settings.chunk_size)
        return StreamingResponse(
            iter(archive),
            media_type="application/zip",
            headers={"Content-Length": str(archive.size),
                     "Content-Disposition": f'attachment; filename="{uid}.zip"'},
        )

    @router.get("/getImage", response_class=StreamingResponse, responses=zip_response)
    def get_image(
        request: Request,
        s: ScopeDep,
        SeriesInstanceUID: Annotated[str, _required("SeriesInstanceUID", "Series Instance UID")],
        NewFileNames: Text = None,
        IncludeMD5: Text = None,
    ) -> Response:
        """The series' images in a zip, with a LICENSE and (``IncludeMD5=Yes``) md5hashes.csv."""
        return _zip(request, s, SeriesInstanceUID, _yes(NewFileNames), _yes(IncludeMD5))

    @router.get("/getImageWithMD5Hash", response_class=StreamingResponse, responses=zip_response)
    def get_image_with_md5_hash(
        request: Request,
        s: ScopeDep,
        SeriesInstanceUID: Annotated[str, _required("SeriesInstanceUID", "Series Instance UID")],
    ) -> Response:
        """The series' images in a zip with md5hashes.csv (``Filename,MD5Hash``)."""
        return _zip(request, s, SeriesInstanceUID, False, True)

    @router.get(
        "/getSingleImage",
        response_class=StreamingResponse,
        responses={200: {"description": "One DICOM file.",
                         "content": {"application/dicom": {"schema": {"type": "string", "format": "binary"}}}},
                   404: {"description": "No such image is published."}},
    )
    def get_single_image(
        request: Request,
        s: ScopeDep,
        SeriesInstanceUID: Annotated[str, _required("SeriesInstanceUID", "Series Instance UID")],
        SOPInstanceUID: Annotated[str, _required("SOPInstanceUID", "SOP Instance UID")],
    ) -> Response:
        found = s.find_series(SeriesInstanceUID)
        instance = next((i for i in found[1].instances if i.sop_uid == SOPInstanceUID), None) if found else None
        if instance is None:
            raise HTTPException(404, f"No published image has SOPInstanceUID {SOPInstanceUID} "
                                     f"in series {SeriesInstanceUID}.")
        state = request.app.state.api
        chunks = object_chunks(state.store, instance.tier, instance.key, state.settings.chunk_size)
        return StreamingResponse(
            verified_chunks(chunks, instance.size, instance.md5, instance.key),
            media_type="application/dicom",
            headers={"Content-Length": str(instance.size),
                     "Content-Disposition": f"attachment; filename={SOPInstanceUID}.dcm"},
        )

    @router.get("/NewPatientsInCollection", responses=listing(PatientRecord, "Patients with series released since fromDate"))
    def new_patients_in_collection(
        s: ScopeDep,
        Collection: Annotated[str, _required("Collection", "Collection name")],
        fromDate: Annotated[str, _required("fromDate", "MM-DD-YYYY")],
        format: Text = None,
    ) -> Response:
        fmt = _format(format)
        since = _from_date(fromDate)
        rows = (patient_row(v, p) for v, p in s.patients(Collection)
                if any(x.released.date() >= since for x in p.series))
        return _answer(rows, PATIENT_COLUMNS, fmt)

    @router.get("/NewStudiesInPatientCollection", responses=listing(StudyRecord, "Studies with series released since fromDate"))
    def new_studies_in_patient_collection(
        s: ScopeDep,
        Collection: Annotated[str, _required("Collection", "Collection name")],
        fromDate: Annotated[str, _required("fromDate", "MM-DD-YYYY")],
        PatientID: Text = None,
        format: Text = None,
    ) -> Response:
        """Studies with series released on or after fromDate; SeriesCount counts those series."""
        fmt = _format(format)
        since = _from_date(fromDate)
        def rows() -> Iterator[dict[str, Any]]:
            for view, study in s.studies(Collection):
                fresh = sum(1 for x in study.series if x.released.date() >= since)
                if fresh and _same(study.patient_id, PatientID):
                    yield study_row(view, study, series_count=fresh)

        return _answer(rows(), STUDY_COLUMNS, fmt)

    return router
