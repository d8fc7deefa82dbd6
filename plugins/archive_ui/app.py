"""The FastAPI app behind the archive's Airflow page (mounted at ``/archive`` by ``archive_plugin``).

Pages (HTML, shown in an iframe inside Airflow's navigation) and the JSON they use:

- ``GET /``: collections, latest version, last run, counts published / quarantined / pending;
- ``GET /quarantine``: the review queue, with approve and reject buttons;
- ``GET /api/collections``, ``GET /api/quarantine``: the same data as JSON;
- ``POST /api/quarantine/{item}/approve`` and ``.../reject`` (JSON body ``{"note": "..."}``);
- ``GET /freetext``, ``GET /api/freetext``: distinct free-text values waiting for review
  (curators only: a value may be PHI, the text is shown so that they can decide);
- ``POST /api/freetext/{value}/safe`` and ``.../unsafe``: a curator's decision for the
  collection, applied by every later run (``imaging_ingest.pipeline.text_review``).

Every route needs an authenticated Airflow user (401 otherwise). A collection is visible
to users who may read its DAG; a decision needs a curator (the Airflow role ``Curator``,
or a name in ``IMAGING_INGEST_CURATORS``: ``imaging_ingest.curators``) who may read the
DAG, else 403: editing runs, the right of Airflow's User and Op roles, is not enough.
A collection's ``release_approvals`` asks for that many different curators. Decisions are
JSON POSTs, which an HTML form on another site cannot send without a CORS preflight this
app never grants.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from archive_ui import overview
from imaging_ingest.curators import CURATOR_ROLE, is_curator, release_approvals

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


def create_app() -> FastAPI:
    app = FastAPI(title="Imaging archive", docs_url=None, redoc_url=None, openapi_url=None)

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
        from pydantic import ValidationError

        from imaging_ingest import quarantine

        if not request.headers.get("content-type", "").startswith("application/json"):
            raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the decision as JSON")
        try:
            body = Decision.model_validate(await request.json())
        except (ValueError, ValidationError):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, 'expected {"note": "..."}') from None
        collection = await run_in_threadpool(overview.item_collection, item_id)
        if collection is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no quarantined item {item_id}")
        if not is_curator(user) or not _can(user, "GET", f"ingest__{collection}"):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"only curators may review quarantined files of collection {collection} (role {CURATOR_ROLE})",
            )
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
