"""The data-access service: the NBIA v4 API, an OAuth2 token endpoint, and a version index.

``create_app`` wires the pieces: the catalog (read-only), the object store, the cache of
header fields, the published-version index (``Archive``) and the token service. Errors
answer with a status and a sentence: 400 for bad parameters (naming them), 401 for a bad
token, 404 alike for what is not published and what is restricted from the caller, 413
for a body over the limit, 429 for too many login attempts, 503 when the catalog or the
object store cannot be reached. The protections against abuse live in ``limits.py``
(throttling, body limit, headers) and ``auth.py`` (rotated refresh tokens, sessions).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from botocore.exceptions import BotoCoreError, ClientError
from fastapi import Depends, FastAPI, Form, HTTPException, Path, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError

from imaging_ingest import __version__
from imaging_ingest.api.access import Scope
from imaging_ingest.api.auth import NOT_FOUND, AuthError, Caller, NotVisible, TokenService, load_users
from imaging_ingest.api.catalogue import catalogue_router
from imaging_ingest.api.dicomweb import MetadataCache, dicomweb_router
from imaging_ingest.api.dicomweb.frames import FrameReader
from imaging_ingest.api.headers import HeaderCache
from imaging_ingest.api.limits import BodyLimit, LoginThrottle, SecurityHeaders, Throttled
from imaging_ingest.api.queries import connect
from imaging_ingest.api.releases import Archive, is_restricted
from imaging_ingest.api.routes import nbia_router
from imaging_ingest.api.schemas import CollectionInfo, TokenAnswer
from imaging_ingest.api.settings import ApiSettings
from imaging_ingest.config.settings import Settings
from imaging_ingest.storage.objects import ObjectStore

__all__ = ["ApiState", "create_app", "create_app_from_env"]

log = logging.getLogger(__name__)

SERVICES = "/nbia-api/services/v4"
PINNED = "/collections/{collection}/versions/{version}" + SERVICES


@dataclass
class ApiState:
    settings: ApiSettings
    archive: Archive
    tokens: TokenService
    store: ObjectStore
    headers: HeaderCache
    throttle: LoginThrottle
    metadata: MetadataCache
    frames: FrameReader

    def close(self) -> None:
        self.headers.close()
        self.metadata.close()
        self.frames.close()
        self.archive.engine.dispose()


def build_state(settings: Settings, api_settings: ApiSettings) -> ApiState:
    """Connect to the catalog and the object store and load the users; fail early and clearly."""
    store = ObjectStore(settings)

    def fetch(tier: str, key: str, length: int | None) -> bytes:
        kwargs: dict[str, Any] = {"Bucket": store.bucket(tier), "Key": key}
        if length:
            kwargs["Range"] = f"bytes=0-{length - 1}"
        body: bytes = store.client.get_object(**kwargs)["Body"].read()
        return body

    headers = HeaderCache(
        api_settings.header_cache or settings.home / "api" / "header-cache.sqlite",
        fetch,
        workers=api_settings.header_workers,
    )
    archive = Archive(
        connect(settings.catalog_url),
        lambda tier, key: store.head(tier, key) is not None,
        headers,
        refresh_interval_s=api_settings.refresh_interval_s,
    )
    secret = api_settings.token_secret.get_secret_value().strip().encode("utf-8") if api_settings.token_secret else None
    tokens = TokenService(secret, load_users(api_settings.users_file), api_settings.access_token_ttl_s,
                          api_settings.refresh_token_ttl_s, api_settings.session_max_s)
    throttle = LoginThrottle(
        client_rate_per_min=api_settings.login_rate_per_min, client_burst=api_settings.login_burst,
        account_failures=api_settings.login_failures, base_lockout_s=api_settings.lockout_s,
        max_lockout_s=api_settings.max_lockout_s,
    )
    cache = api_settings.header_cache or settings.home / "api" / "header-cache.sqlite"
    metadata = MetadataCache(cache.with_name("dicom-json.sqlite"), fetch, workers=api_settings.header_workers)
    frames = FrameReader(cache.with_name("dicom-json.sqlite"), store)
    return ApiState(api_settings, archive, tokens, store, headers, throttle, metadata, frames)


_bearer = HTTPBearer(auto_error=False, description="A token from /nbia-api/oauth/token; needed for restricted data only.")


def _caller(
    request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None
) -> Caller:
    state: ApiState = request.app.state.api
    return state.tokens.caller(request.headers.get("authorization"))


def latest_scope(request: Request, caller: Annotated[Caller, Depends(_caller)]) -> Scope:
    """The latest published version of every collection."""
    state: ApiState = request.app.state.api
    return Scope(tuple(state.archive.latest()), caller)


def pinned_scope(
    request: Request,
    caller: Annotated[Caller, Depends(_caller)],
    collection: Annotated[str, Path(description="Collection id", min_length=1)],
    version: Annotated[int, Path(description="Published version number", ge=1, le=2**31 - 1)],
) -> Scope:
    """One named version of one collection: a citable, unchanging snapshot.

    Who may see it is decided from the catalog's version rows *before* the view is built,
    so that an anonymous request cannot make the server build a restricted version's view.
    """
    state: ApiState = request.app.state.api
    row = next((r for r in state.archive.versions().get(collection, []) if r.number == version), None)
    if row is None or not caller.can_see(collection, is_restricted(row.license, row.tier)):
        raise HTTPException(404, NOT_FOUND)
    view = state.archive.pinned(collection, version)
    if view is None:
        raise HTTPException(404, NOT_FOUND)
    return Scope((view,), caller)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = [str(p) for p in error.get("loc", ())]
        where, name = (location[0], location[-1]) if location else ("request", "")
        kind = {"query": "query parameter", "path": "path segment", "body": "form field"}.get(where, where)
        if error.get("type") == "missing":
            parts.append(f"A {kind}, {name}, is required for this API call.")
        else:
            parts.append(f"The {kind} {name} is invalid: {error.get('msg', 'bad value')}.")
    return " ".join(parts) or "The request is invalid."


def create_app(settings: Settings | None = None, api_settings: ApiSettings | None = None) -> FastAPI:
    """The service over one archive (settings from the environment when not given)."""
    settings = settings or Settings.from_env()
    api_settings = api_settings or ApiSettings.from_env()
    state = build_state(settings, api_settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(
        title="imaging-ingest data access (NBIA v4 compatible)",
        version=__version__,
        description=(
            "The archive's published collections through NBIA's v4 search API, as the tcia_utils "
            "client calls it. `/nbia-api/services/v4/...` serves the latest version of every "
            "collection; `/collections/{collection}/versions/{version}/nbia-api/services/v4/...` one "
            "named version. Restricted collections need a bearer token from `/nbia-api/oauth/token`."
        ),
        lifespan=lifespan,
    )
    app.state.api = state
    app.add_middleware(BodyLimit, max_bytes=api_settings.max_body_bytes)
    app.add_middleware(SecurityHeaders, no_store_paths=("/nbia-api/oauth/token",))

    @app.exception_handler(NotVisible)
    async def not_visible(request: Request, exc: NotVisible) -> JSONResponse:
        return JSONResponse({"detail": NOT_FOUND}, status_code=404)

    @app.exception_handler(Throttled)
    async def throttled(request: Request, exc: Throttled) -> JSONResponse:
        return JSONResponse({"error": "slow_down", "error_description": exc.message}, status_code=429,
                            headers={"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> JSONResponse:
        challenge = 'Bearer realm="imaging-ingest"'
        if exc.error != "authentication_required":  # RFC 6750: no error code when no token was sent
            challenge += f', error="{exc.error}"'
        return JSONResponse({"error": exc.error, "error_description": exc.message}, status_code=exc.status,
                            headers={"WWW-Authenticate": challenge} if exc.status in (401, 403) else None)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=400)

    @app.exception_handler(SQLAlchemyError)
    async def catalog_down(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.error("catalog error: %s", type(exc).__name__)
        return JSONResponse({"detail": "The catalog is unavailable; try again later."}, status_code=503)

    @app.exception_handler(ClientError)
    @app.exception_handler(BotoCoreError)
    async def storage_down(request: Request, exc: Exception) -> JSONResponse:
        log.error("object store error: %s", type(exc).__name__)
        return JSONResponse({"detail": "The object store is unavailable; try again later."}, status_code=503)

    app.include_router(nbia_router(latest_scope, "NBIA v4 (latest versions)"), prefix=SERVICES)
    app.include_router(nbia_router(pinned_scope, "NBIA v4 (one named version)"), prefix=PINNED)
    app.include_router(dicomweb_router(latest_scope), prefix="/dicomweb")
    app.include_router(catalogue_router())

    @app.post(
        "/nbia-api/oauth/token",
        tags=["Authentication"],
        response_model=TokenAnswer,
        responses={400: {"description": "Bad grant request."}, 401: {"description": "Invalid credentials."}},
    )
    def token(
        request: Request,
        grant_type: Annotated[str, Form(description="password or refresh_token")],
        username: Annotated[str | None, Form()] = None,
        password: Annotated[str | None, Form()] = None,
        refresh_token: Annotated[str | None, Form()] = None,
        client_id: Annotated[str | None, Form(description="accepted and ignored, as NBIA does")] = None,
        client_secret: Annotated[str | None, Form(description="accepted and ignored")] = None,
    ) -> Any:
        """An OAuth2 token in NBIA's style (password grant, refresh grant)."""
        tokens: TokenService = request.app.state.api.tokens
        if grant_type == "password":
            if username is None:
                raise AuthError(400, "username and password are required for grant_type=password", "invalid_request")
            throttle: LoginThrottle = request.app.state.api.throttle
            client = request.client.host if request.client else "unknown"
            throttle.check(client, username)  # before any hashing
            try:
                answer = tokens.password_grant(username, password or "")
            except AuthError as exc:
                if exc.error == "invalid_grant":
                    throttle.failed(username)
                raise
            throttle.succeeded(client, username)
            return answer
        if grant_type == "refresh_token":
            if not refresh_token:
                raise AuthError(400, "refresh_token is required for grant_type=refresh_token", "invalid_request")
            return tokens.refresh_grant(refresh_token)
        raise AuthError(400, "Wrong grant_type entered. Valid grant_type is password or refresh_token.",
                        "unsupported_grant_type")

    @app.get("/collections", tags=["Versions"], response_model=list[CollectionInfo])
    def collections(request: Request, caller: Annotated[Caller, Depends(_caller)]) -> Any:
        """The collections you may see, each with its published versions and their pinned base URLs."""
        state: ApiState = request.app.state.api
        base = (state.settings.public_url or "").rstrip("/")  # configured, never the request's Host
        listing = []
        for collection_id, rows in sorted(state.archive.versions().items()):
            latest = rows[-1]
            if not caller.can_see(collection_id, is_restricted(latest.license, latest.tier)):
                continue
            listing.append({
                "collection": collection_id,
                "title": latest.title,
                "license": latest.license,
                "restricted": is_restricted(latest.license, latest.tier),
                "latest_version": latest.number,
                "versions": [
                    {
                        "version": r.number,
                        "released": r.created_at.isoformat(timespec="seconds"),
                        "objects": r.objects,
                        "bytes": r.bytes,
                        "release_key": r.release_key,
                        "base_url": f"{base}/collections/{collection_id}/versions/{r.number}{SERVICES}/",
                    }
                    for r in rows
                ],
            })
        return listing

    @app.get("/healthz", tags=["Versions"])
    def healthz(request: Request) -> dict[str, Any]:
        """Alive, and the catalog answers (no counts: they would tell how many restricted collections exist)."""
        state: ApiState = request.app.state.api
        state.archive.versions()
        return {"status": "ok"}

    return app


def create_app_from_env() -> FastAPI:
    """The factory uvicorn calls (``imaging-ingest api``): settings from the environment."""
    return create_app()
