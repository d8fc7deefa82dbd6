"""The OHIF viewer (v3) on its own origin, reading the archive's DICOMweb from that origin.

OHIF's build (``dist/`` of the npm package ``@ohif/app``, installed by ``make viewer``)
loads its files by absolute path, so it is served at the root of its own port. The same
ASGI app passes ``/dicomweb/...`` to the data-access API in-process, so the viewer's
requests stay same-origin: no CORS, and the COOP/COEP headers the viewer wants for
``SharedArrayBuffer`` (``Cross-Origin-Opener-Policy: same-origin``,
``Cross-Origin-Embedder-Policy: require-corp``) cover every answer. ``app-config.js`` is
written here (one DICOMweb data source at ``/dicomweb``), never taken from the build;
unknown paths fall back to ``index.html`` (the viewer routes in the browser).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

__all__ = ["APP_CONFIG", "viewer_app"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The viewer's configuration: the archive's DICOMweb, on the viewer's own origin.
APP_CONFIG = """/** imaging-ingest: OHIF reads the archive's DICOMweb at /dicomweb on this origin. */
window.config = {
  routerBasename: '/',
  extensions: [],
  modes: [],
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  investigationalUseDialog: { option: 'never' },
  defaultDataSourceName: 'archive',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'archive',
      configuration: {
        friendlyName: 'imaging-ingest archive',
        name: 'archive',
        wadoUriRoot: window.location.origin + '/dicomweb',
        qidoRoot: window.location.origin + '/dicomweb',
        wadoRoot: window.location.origin + '/dicomweb',
        qidoSupportsIncludeField: true,
        supportsReject: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: true,
        supportsWildcard: true,
        staticWado: false,
        singlepart: false,
        omitQuotationForMultipartRequest: true,
        bulkDataURI: { enabled: true },
      },
    },
  ],
};
"""

_ISOLATION = [
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-embedder-policy", b"require-corp"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


async def _send_file(send: Send, status: int, body: bytes, media_type: str, cache: bool) -> None:
    headers = [(b"content-type", media_type.encode("ascii")), (b"content-length", str(len(body)).encode("ascii"))]
    headers.append((b"cache-control", b"public, max-age=86400" if cache else b"no-cache"))
    await send({"type": "http.response.start", "status": status, "headers": headers + _ISOLATION})
    await send({"type": "http.response.body", "body": body})


def viewer_app(api: ASGIApp, dist: Path) -> ASGIApp:
    """The viewer's ASGI app: ``/dicomweb`` to ``api``, ``/app-config.js`` generated, the rest from ``dist``."""
    root = dist.resolve()
    index = root / "index.html"
    if not index.is_file():
        raise FileNotFoundError(f"the OHIF viewer is not installed at {root}: run make viewer")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            while message["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
                message = await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        path = scope.get("path", "/")
        if path == "/dicomweb" or path.startswith("/dicomweb/"):

            async def isolated(message: MutableMapping[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = list(message.get("headers", [])) + _ISOLATION
                await send(message)

            await api(scope, receive, isolated)
            return
        if scope.get("method") not in ("GET", "HEAD"):
            await _send_file(send, 405, b"Method not allowed\n", "text/plain", False)
            return
        if path == "/app-config.js":
            await _send_file(send, 200, APP_CONFIG.encode("utf-8"), "application/javascript", False)
            return
        candidate = (root / path.lstrip("/")).resolve()
        if candidate.is_relative_to(root) and candidate.is_file():
            media = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
            if candidate.suffix == ".wasm":
                media = "application/wasm"
            await _send_file(send, 200, candidate.read_bytes(), media, candidate != index)
            return
        await _send_file(send, 200, index.read_bytes(), "text/html; charset=utf-8", False)  # the viewer's own routes

    return app
