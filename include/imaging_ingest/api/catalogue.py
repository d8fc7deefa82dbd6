"""The public catalogue page: the collections, how to cite them, and their series, as plain HTML.

Server-rendered (Jinja2 templates in ``api/templates/``), no script: it works without
JavaScript and with the keyboard alone (a skip link, labelled form fields, tables with
captions and header cells, visible focus). Everything comes from the same places as the
APIs: the catalog (versions, series, counts) and each version's published files in the
object store (``release.json`` for the citation and DOI, ``datacite.json`` for the
description), read once per version (a version never changes).

Restricted collections appear only to a token that grants them: a bearer token in the
``Authorization`` header, or the cookie the page's own sign-in form sets (HttpOnly,
SameSite=Strict, scoped to ``/catalogue``); the form posts to the same password grant, and
the same login throttle, as ``/nbia-api/oauth/token``.
"""


import posixpath
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from imaging_ingest.api.access import Scope
from imaging_ingest.api.auth import AuthError, Caller
from imaging_ingest.api.nbia import license_for
from imaging_ingest.api.releases import CollectionView, SeriesView

__all__ = ["catalogue_router"]

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
COOKIE = "catalogue_token"
#: Series rows per page.
PAGE_SIZE = 100


@dataclass(frozen=True)
class Facts:
    """What a version's published files say about it (citation, DOI, description)."""

    citation: str | None
    doi: str | None
    description: str | None


def _facts(request: Request, view: CollectionView) -> Facts:
    cached = view.cache.get(("catalogue", "facts"))
    if cached is not None:
        return cached
    store = request.app.state.api.store
    release: dict[str, Any] = {}
    datacite: dict[str, Any] = {}
    try:
        release = store.get_json(view.tier, view.release_key)
        datacite = store.get_json(view.tier, posixpath.join(posixpath.dirname(view.release_key), "datacite.json"))
    except Exception:  # older versions have no datacite.json: the page leaves the description out
        pass
    descriptions = [d.get("description") for d in datacite.get("descriptions", []) if d.get("description")]
    facts = Facts(release.get("citation"), release.get("doi"), descriptions[0] if descriptions else None)
    view.cache[("catalogue", "facts")] = facts
    return facts


def _caller(request: Request) -> Caller:
    """A bearer token in the header, else the sign-in cookie; an invalid cookie is the anonymous caller."""
    tokens = request.app.state.api.tokens
    header = request.headers.get("authorization")
    if header:
        return tokens.caller(header)
    cookie = request.cookies.get(COOKIE)
    if cookie:
        try:
            return tokens.caller(f"Bearer {cookie}")
        except AuthError:
            pass
    return tokens.caller(None)


def _iso(dicom_date: str | None) -> str | None:
    text = dicom_date or ""
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else dicom_date


def _same(value: str | None, wanted: str | None) -> bool:
    return not wanted or (value or "").upper() == wanted.upper()


def _collection_block(request: Request, view: CollectionView, versions: list[Any]) -> dict[str, Any]:
    facts = _facts(request, view)
    licence = license_for(view)
    series = list(view.series.values())
    modalities: Counter[str] = Counter()
    images: Counter[str] = Counter()
    for s in series:
        modalities[s.modality or "—"] += 1
        images[s.modality or "—"] += s.image_count
    return {
        "id": view.id,
        "title": view.title,
        "restricted": view.restricted,
        "version": view.version,
        "released": view.released,
        "description": facts.description,
        "citation": facts.citation,
        "doi": facts.doi,
        "licence_name": licence.name,
        "licence_uri": licence.uri,
        "modalities": [(m, modalities[m], images[m]) for m in sorted(modalities)],
        "patients": len({s.patient_id for s in series}),
        "studies": len({s.study_uid for s in series}),
        "series_count": len(series),
        "versions": [
            {"number": r.number, "released": r.created_at, "kind": r.kind, "objects": r.objects, "bytes": r.bytes,
             "doi": r.doi}
            for r in reversed(versions)
        ],
    }


def _matching(scope: Scope, collection: str | None, modality: str | None, body_part: str | None,
              patient: str | None) -> list[tuple[CollectionView, SeriesView]]:
    pairs = []
    for view in scope.collections(collection):
        for s in view.series.values():
            if _same(s.modality, modality) and _same(s.body_part, body_part) and (
                    not patient or patient.upper() in s.patient_id.upper()):
                pairs.append((view, s))
    pairs.sort(key=lambda p: (p[0].id, p[1].patient_id, p[1].study_uid, p[1].header.get("SeriesNumber") or 0, p[1].uid))
    return pairs


def _tcia_manifest(uids: list[str], base: str) -> str:
    """A manifest in TCIA's ``.tcia`` format (what the NBIA Data Retriever and tcia_utils read)."""
    lines = [f"downloadServerUrl={base}/nbia-api/services/v4/getImage", "includeAnnotation=true", "noOfrRetry=4",
             "databasketId=manifest-imaging-ingest.tcia", "manifestVersion=3.0", "ListOfSeriesToDownload=", *uids]
    return "\n".join(lines) + "\n"


def catalogue_router() -> APIRouter:
    """``/catalogue`` (the page), ``/catalogue/manifest.tcia`` (the filtered series), sign-in and sign-out."""
    router = APIRouter(tags=["Catalogue"])
    Text = Annotated[str | None, Query(max_length=64)]

    def scope_of(request: Request) -> Scope:
        state = request.app.state.api
        return Scope(tuple(state.archive.latest()), _caller(request))

    @router.get("/catalogue", response_class=HTMLResponse, summary="The public catalogue page (HTML)")
    def catalogue(request: Request, collection: Text = None, modality: Text = None, body_part: Text = None,
                  patient: Text = None, page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
        state = request.app.state.api
        scope = scope_of(request)
        versions = state.archive.versions()
        visible = sorted(scope.visible(), key=lambda v: v.id)
        shown = [v for v in visible if _same(v.id, collection)]
        blocks = [_collection_block(request, v, versions.get(v.id, [])) for v in shown]
        pairs = _matching(scope, collection, modality, body_part, patient)
        start = (page - 1) * PAGE_SIZE
        rows = [{
            "collection": v.id, "restricted": v.restricted, "patient": s.patient_id, "study": s.study_uid,
            "study_date": _iso(v.studies[s.study_uid].date if s.study_uid in v.studies else None),
            "uid": s.uid, "modality": s.modality, "body_part": s.body_part, "description": s.description,
            "number": s.header.get("SeriesNumber"), "images": s.image_count, "bytes": s.total_bytes,
        } for v, s in pairs[start:start + PAGE_SIZE]]
        all_series = [s for v in visible for s in v.series.values()]
        filters = {"collection": collection or "", "modality": modality or "", "body_part": body_part or "",
                   "patient": patient or ""}
        return TEMPLATES.TemplateResponse(request, "catalogue.html", {
            "collections": blocks,
            "choices": {
                "collection": [v.id for v in visible],
                "modality": sorted({s.modality for s in all_series if s.modality}),
                "body_part": sorted({(s.body_part or "").upper() for s in all_series if s.body_part}),
            },
            "filters": filters,
            "query": "&".join(f"{k}={v}" for k, v in filters.items() if v),
            "rows": rows,
            "total": len(pairs),
            "page": page,
            "pages": max(1, -(-len(pairs) // PAGE_SIZE)),
            "viewer_url": (state.settings.viewer_url or "").rstrip("/"),
            "signed_in": request.cookies.get(COOKIE) is not None or bool(request.headers.get("authorization")),
        })

    @router.get("/catalogue/manifest.tcia", response_class=PlainTextResponse,
                summary="The filtered series as a TCIA manifest, for bulk download tools")
    def manifest(request: Request, collection: Text = None, modality: Text = None, body_part: Text = None,
                 patient: Text = None, series: Annotated[str | None, Query(max_length=64)] = None) -> Response:
        scope = scope_of(request)
        if series:
            found = scope.find_series(series)
            uids = [found[1].uid] if found else []
        else:
            uids = [s.uid for _, s in _matching(scope, collection, modality, body_part, patient)]
        base = (request.app.state.api.settings.public_url or "").rstrip("/")
        return PlainTextResponse(_tcia_manifest(uids, base), headers={
            "Content-Disposition": 'attachment; filename="manifest-imaging-ingest.tcia"'})

    @router.post("/catalogue/sign-in", summary="Sign in for restricted collections (sets an HttpOnly cookie)")
    def sign_in(request: Request, username: Annotated[str, Form(max_length=128)],
                password: Annotated[str, Form(max_length=1024)]) -> Response:
        state = request.app.state.api
        client = request.client.host if request.client else "unknown"
        state.throttle.check(client, username)  # before any hashing, as the token endpoint
        try:
            answer = state.tokens.password_grant(username, password)
        except AuthError as exc:
            if exc.error == "invalid_grant":
                state.throttle.failed(username)
            return RedirectResponse("/catalogue?signin=failed", status_code=303)
        state.throttle.succeeded(client, username)
        response = RedirectResponse("/catalogue", status_code=303)
        response.set_cookie(COOKIE, answer["access_token"], max_age=int(answer.get("expires_in", 3600)),
                            httponly=True, samesite="strict", path="/catalogue",
                            secure=request.url.scheme == "https")
        return response

    @router.post("/catalogue/sign-out", summary="Forget the sign-in cookie")
    def sign_out() -> Response:
        response = RedirectResponse("/catalogue", status_code=303)
        response.delete_cookie(COOKIE, path="/catalogue")
        return response

    return router
