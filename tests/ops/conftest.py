"""Fixtures of the operations tests: the demo collection wired for ``dag.test()``, a capturing
webhook and a StatsD-to-Prometheus bridge reading the shipped mapping (helpers: ``ops_support``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ops_support import MAPPING, Capture, Exporter, demo_config_text

from imaging_ingest.config import CollectionConfig
from imaging_ingest.config.settings import Settings


@pytest.fixture
def demo_env(
    ingest_env: Settings,
    monkeypatch: pytest.MonkeyPatch,
    demo_config: CollectionConfig,
    submission: Path,
    airflow_db: Path,
    tmp_path: Path,
) -> Settings:
    """The shipped demo config with its drop pointed at this test's submission, for ``dag.test()``."""
    collections = tmp_path / "collections"
    collections.mkdir()
    (collections / "demo.yaml").write_text(demo_config_text(submission.parent))
    monkeypatch.setenv("IMAGING_INGEST_COLLECTIONS", str(collections))
    return ingest_env


@pytest.fixture
def webhook() -> Iterator[Capture]:
    """A webhook on loopback that records what is POSTed to it."""
    capture = Capture(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            capture.requests.append(
                {"path": self.path, "headers": dict(self.headers), "body": json.loads(body or b"null")}
            )
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    capture.url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield capture
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    """The StatsD bridge with the shipped statsd-exporter mapping, on free loopback ports."""
    from imaging_ingest.ops.statsd_bridge import Bridge, StatsdMapping

    bridge = Bridge(StatsdMapping.load(MAPPING))
    udp_port, http_port = bridge.start(("127.0.0.1", 0), ("127.0.0.1", 0))
    try:
        yield Exporter(udp_port, f"http://127.0.0.1:{http_port}/metrics")
    finally:
        bridge.stop()
