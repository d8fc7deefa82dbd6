"""The FastAPI app behind the archive's Airflow page (mounted at ``/archive`` by ``archive_plugin``).

Pages (HTML, shown in an iframe inside Airflow's navigation) and the JSON they use:

- ``GET /``: collections, latest version, last run, counts published / quarantined / pending;
- ``GET /quarantine``: the review queue, with approve and reject buttons;
- ``GET /api/collections``, ``GET /api/quarantine``: the same data as JSON;
- ``POST /api/quarantine/{item}/approve`` and ``.../reject`` (JSON body ``{"note": "..."}``);
- ``GET /preview?item=ID``, ``GET /api/quarantine/{item}/preview``: a curator's preview of one item
  (the reason's rule and element, the file's path in the submission, series, pseudonym, what
  OCR matched, and the identifying attributes before and after de-identification);
- ``GET /api/quarantine/{item}/thumbnail.png?size=256``: the image, windowed and downsampled,
  its OCR boxes and redaction regions drawn (``imaging_ingest.curation.previews``);
- ``POST /api/quarantine/{item}/series/approve`` and ``.../series/reject``: every pending item
  of the item's series, each decided (and audited) as a single decision is;
- ``GET /freetext``, ``GET /api/freetext``: distinct free-text values waiting for review
  (curators only: a value may be PHI, the text is shown so that they can decide);
- ``POST /api/freetext/{value}/safe`` and ``.../unsafe``: a curator's decision for the
  collection, applied by every later run (``imaging_ingest.pipeline.text_review``).

Every route needs an authenticated Airflow user (401 otherwise). A collection is visible
to users who may read its DAG; a decision needs a curator (the Airflow role ``Curator``,
or a name in ``IMAGING_INGEST_CURATORS``: ``imaging_ingest.curation.curators``) who may read the
DAG, else 403: editing runs, the right of Airflow's User and Op roles, is not enough.
A collection's ``release_approvals`` asks for that many different curators. Decisions are
JSON POSTs, which an HTML form on another site cannot send without a CORS preflight this
app never grants.

Previews show PHI (burned-in text, the original's names and dates, a path that may name the
patient): only curators who may read the collection's DAG see them. They are rendered in
memory for each request, never written to a tier or a log; every answer of this app carries
``Cache-Control: no-store``.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from archive_ui import overview
from imaging_ingest.core.reasons import classify
from imaging_ingest.curation.curators import CURATOR_ROLE, NotCurator, is_curator, release_approvals

log = logging.getLogger(__name__)

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


class Decision(BaseModel):
    note: str | None = Field(default=None, max_length=2000)


_bearer = HTTPBearer(auto_error=False)


async def current_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Any:
    """The Airflow user of the request (bearer token or the UI's session cookie), else 401.

    Delegates to Airflow's own ``get_user``, imported here rather than at the top: every
    Airflow component loads plugins, and only the api-server needs its security module.
    """
    from airflow.api_fastapi.core_api.security import get_user

    return await get_user(request, None, credentials)


User = Annotated[Any, Depends(current_user)]


def _can(user: Any, method: str, dag_id: str, run_entity: bool = False) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    return bool(
        get_auth_manager().is_authorized_dag(
            method=method,  # type: ignore[arg-type]
            access_entity=DagAccessEntity.RUN if run_entity else None,
            details=DagDetails(id=dag_id),
            user=user,
        )
    )


def _user_name(user: Any) -> str:
    return str(getattr(user, "get_name", lambda: None)() or getattr(user, "username", None) or "unknown")


def _visible(user: Any, collections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in collections if _can(user, "GET", c["dag_id"])]


def _require_reviewer(user: Any, collection: str) -> None:
    """A curator who may read the collection's DAG, else 403: who decides is who sees previews."""
    if not is_curator(user) or not _can(user, "GET", f"ingest__{collection}"):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"only curators may review quarantined files of collection {collection} (role {CURATOR_ROLE})",
        )


async def _reviewed_item(item_id: int, user: Any) -> str:
    """The collection of a quarantined item the user may review (404 if no such item, 403 if not theirs)."""
    collection = await run_in_threadpool(overview.item_collection, item_id)
    if collection is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no quarantined item {item_id}")
    _require_reviewer(user, collection)
    return collection


async def _decision_body(request: Request) -> Decision:
    from pydantic import ValidationError

    if not request.headers.get("content-type", "").startswith("application/json"):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the decision as JSON")
    try:
        return Decision.model_validate(await request.json())
    except (ValueError, ValidationError):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, 'expected {"note": "..."}') from None


def _queue_facts(items: list[dict[str, Any]], curator: bool) -> None:
    """Add the reason's rule and element, patient, series and (for curators) the file's path to queue rows."""
    from imaging_ingest.curation import previews

    for item in items:
        reason = classify(item["reason"])
        item.update(rule=reason.rule, element=reason.element, pseudonym=None, series=None, path=None)
    if not items:
        return
    try:
        facts = previews.item_facts(overview.catalog(), overview.store(), [i["id"] for i in items])
    except Exception as exc:  # noqa: BLE001 - the queue still shows what the catalog knows
        log.warning("quarantine queue: manifests not readable (%s)", type(exc).__name__)
        return
    for item in items:
        if (found := facts.get(item["id"])) is not None:
            item.update(pseudonym=found.pseudonym, series=found.deid_series_uid)
            if curator:
                item["path"] = found.source_path


def create_app() -> FastAPI:
    app = FastAPI(title="Imaging archive", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def no_store(request: Request, call_next: Any) -> Any:
        """Nothing this app answers (queues, previews, PHI) is kept by a browser or a proxy."""
        response = await call_next(request)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/", response_class=HTMLResponse)
    def collections_page(request: Request, user: User) -> HTMLResponse:
        rows = _visible(user, overview.collections())
        return HTMLResponse(
            TEMPLATES.get_template("collections.html").render(
                collections=rows, user=_user_name(user), base=str(request.base_url).rstrip("/")
            )
        )

    @app.get("/quarantine", response_class=HTMLResponse)
    def quarantine_page(request: Request, user: User, collection: str | None = None) -> HTMLResponse:
        visible = {c["id"]: c for c in _visible(user, overview.collections())}
        items = [i for i in overview.pending_items(collection) if i["collection"] in visible]
        curator = is_curator(user)
        for item in items:
            item["can_decide"] = curator
        _queue_facts(items, curator)
        return HTMLResponse(
            TEMPLATES.get_template("quarantine.html").render(
                items=items, collection=collection, collections=sorted(visible), user=_user_name(user)
            )
        )

    @app.get("/api/collections")
    def collections_json(user: User) -> JSONResponse:
        return JSONResponse(_jsonable(_visible(user, overview.collections())))

    @app.get("/api/quarantine")
    def quarantine_json(user: User, collection: str | None = None) -> JSONResponse:
        visible = {c["id"] for c in _visible(user, overview.collections())}
        return JSONResponse(_jsonable([i for i in overview.pending_items(collection) if i["collection"] in visible]))

    async def _decide(item_id: int, decision: str, request: Request, user: Any) -> JSONResponse:
        from imaging_ingest.curation import quarantine

        body = await _decision_body(request)
        collection = await _reviewed_item(item_id, user)
        needed = await run_in_threadpool(release_approvals, collection, overview.collections_folder())
        try:
            item = await run_in_threadpool(
                partial(quarantine.decide, approvals_required=needed),
                overview.catalog(), item_id, decision, _user_name(user), body.note,
            )
        except quarantine.QuarantineDecisionError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        log.info("quarantine item %d %s by %s", item_id, decision, _user_name(user))
        return JSONResponse(_jsonable(overview.item_dict(item)))

    async def _decide_series(item_id: int, decision: str, request: Request, user: Any) -> JSONResponse:
        """Every pending item of the item's series: the same checks, one ``quarantine.decide`` per item."""
        from imaging_ingest.curation import previews, quarantine

        body = await _decision_body(request)
        collection = await _reviewed_item(item_id, user)
        needed = await run_in_threadpool(release_approvals, collection, overview.collections_folder())
        try:
            result = await run_in_threadpool(
                partial(previews.decide_series, approvals_required=needed),
                overview.catalog(), overview.store(), item_id, decision, user, body.note,
            )
        except NotCurator as exc:
            raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
        except quarantine.QuarantineDecisionError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        return JSONResponse(
            _jsonable(
                {
                    "decision": result.decision,
                    "decided_by": result.curator,
                    "items": [overview.item_dict(i) for i in result.items],
                    "still_pending": result.still_pending,
                }
            )
        )

    def _thumbnail(item_id: int, collection: str, size: int) -> bytes:
        from imaging_ingest.curation import previews

        regions = overview.rule_regions(collection)
        return previews.item_thumbnail(
            overview.catalog(), overview.store(), item_id, rule_regions=regions, max_side=size
        )

    @app.get("/api/quarantine/{item_id}/thumbnail.png")
    async def thumbnail(item_id: int, user: User, size: int = 256) -> Response:
        from imaging_ingest.curation import previews

        collection = await _reviewed_item(item_id, user)
        try:
            png = await run_in_threadpool(_thumbnail, item_id, collection, size)
        except previews.NoPreview as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    def _preview(item_id: int) -> dict[str, Any]:
        from imaging_ingest.curation import previews

        catalog, store = overview.catalog(), overview.store()
        facts = previews.item_facts(catalog, store, [item_id])[item_id]
        return facts.as_dict() | {
            "evidence": previews.item_evidence(store, facts),
            "attributes": [a.__dict__ for a in previews.item_attributes(catalog, store, item_id)],
        }

    @app.get("/api/quarantine/{item_id}/preview")
    async def preview_json(item_id: int, user: User) -> JSONResponse:
        await _reviewed_item(item_id, user)
        return JSONResponse(_jsonable(await run_in_threadpool(_preview, item_id)))

    @app.get("/preview", response_class=HTMLResponse)
    async def preview_page(item: int, user: User) -> HTMLResponse:
        await _reviewed_item(item, user)
        preview = await run_in_threadpool(_preview, item)
        return HTMLResponse(
            TEMPLATES.get_template("preview.html").render(item=preview, user=_user_name(user), can_decide=True)
        )

    @app.post("/api/quarantine/{item_id}/series/approve")
    async def approve_series(item_id: int, request: Request, user: User) -> JSONResponse:
        return await _decide_series(item_id, "approved", request, user)

    @app.post("/api/quarantine/{item_id}/series/reject")
    async def reject_series(item_id: int, request: Request, user: User) -> JSONResponse:
        return await _decide_series(item_id, "rejected", request, user)

    def _freetext_rows(user: Any, collection: str | None, flagged: bool) -> list[dict[str, Any]]:
        from imaging_ingest.pipeline import text_review

        if not is_curator(user):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"only curators review free-text values (role {CURATOR_ROLE})")
        wanted = [collection] if collection else overview.freetext_collections()
        rows = []
        for collection_id in wanted:
            if _can(user, "GET", f"ingest__{collection_id}"):
                rows += [r.as_dict() for r in text_review.values(overview.catalog(), collection_id, flagged_only=flagged)]
        return rows

    @app.get("/freetext", response_class=HTMLResponse)
    def freetext_page(request: Request, user: User, collection: str | None = None, flagged: bool = False) -> HTMLResponse:
        rows = _freetext_rows(user, collection, flagged)
        return HTMLResponse(
            TEMPLATES.get_template("freetext.html").render(
                values=rows, collection=collection, flagged=flagged, user=_user_name(user)
            )
        )

    @app.get("/api/freetext")
    def freetext_json(user: User, collection: str | None = None, flagged: bool = False) -> JSONResponse:
        return JSONResponse(_jsonable(_freetext_rows(user, collection, flagged)))

    @app.post("/api/freetext/{value_id}/{decision}")
    async def freetext_decide(value_id: int, decision: str, request: Request, user: User) -> JSONResponse:
        from pydantic import ValidationError

        from imaging_ingest.pipeline import text_review

        if decision not in ("safe", "unsafe"):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "decide safe or unsafe")
        if not is_curator(user):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"only curators review free-text values (role {CURATOR_ROLE})")
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the decision as JSON")
        try:
            body = Decision.model_validate(await request.json())
        except (ValueError, ValidationError):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, 'expected {"note": "..."}') from None
        try:
            current = await run_in_threadpool(text_review.value, overview.catalog(), value_id)
        except text_review.TextDecisionError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no free-text value {value_id}") from None
        if not _can(user, "GET", f"ingest__{current.collection_id}"):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no free-text value {value_id}")
        row = await run_in_threadpool(
            text_review.decide, overview.catalog(), value_id, decision, _user_name(user), body.note
        )
        log.info("free-text value %d marked %s by %s", value_id, decision, _user_name(user))  # the id, never the text
        return JSONResponse(_jsonable(row.as_dict()))

    @app.post("/api/quarantine/{item_id}/approve")
    async def approve(item_id: int, request: Request, user: User) -> JSONResponse:
        return await _decide(item_id, "approved", request, user)

    @app.post("/api/quarantine/{item_id}/reject")
    async def reject(item_id: int, request: Request, user: User) -> JSONResponse:
        return await _decide(item_id, "rejected", request, user)

    return app


def _jsonable(value: Any) -> Any:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(value)
