"""Servers the intake tests start on loopback: OpenSSH's sshd, and a fault-injecting S3 proxy.

Both bind 127.0.0.1 on a free port and stop when the test is done. Nothing here reaches
beyond the machine.
"""

from __future__ import annotations

import contextlib
import getpass
import http.client
import os
import random
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                if sock.recv(4).startswith(b"SSH"):
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"sshd did not come up on port {port}")


@dataclass
class SSHServer:
    """A real OpenSSH sshd on 127.0.0.1 with a generated host key and one key-authenticated user.

    The SFTP subsystem is ``internal-sftp``; the user is whoever runs the tests, logging
    in with a key generated for the run. ``restart`` kills the daemon and every session
    it forked (an abrupt server restart), then starts it again on the same port.
    """

    root: Path
    port: int = 0
    user: str = field(default_factory=lambda: os.environ.get("USER") or getpass.getuser())
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def key_file(self) -> Path:
        return self.root / "client_key"

    @property
    def host_key_line(self) -> str:
        """The host's public key as ``<type> <base64>`` (what a known_hosts line or an Airflow Connection holds)."""
        return " ".join((self.root / "host_key.pub").read_text().split()[:2])

    @property
    def known_hosts(self) -> Path:
        path = self.root / "known_hosts"
        path.write_text(f"[127.0.0.1]:{self.port} {self.host_key_line}\n")
        return path

    def setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for name in ("host_key", "client_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(self.root / name)], check=True
            )
        (self.root / "authorized_keys").write_text((self.root / "client_key.pub").read_text())
        for name in ("host_key", "client_key", "authorized_keys"):
            os.chmod(self.root / name, 0o600)
        self.port = self.port or free_port()
        (self.root / "sshd_config").write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.root / 'host_key'}",
                    f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    "Subsystem sftp internal-sftp",
                    "LogLevel ERROR",
                    "MaxStartups 50",
                    "MaxSessions 50",
                    "",
                ]
            )
        )

    def start(self) -> None:
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation directory
        self._log = open(self.root / "sshd.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")], stdout=subprocess.DEVNULL, stderr=self._log
        )
        _wait_for_port(self.port)

    def _sessions(self) -> list[int]:
        """Process ids of the sessions this daemon forked (children of the listener)."""
        if self.process is None:
            return []
        try:
            import psutil

            return [c.pid for c in psutil.Process(self.process.pid).children(recursive=True)]
        except Exception:  # noqa: BLE001 - the daemon is already gone
            return []

    def stop(self) -> None:
        if self.process is None:
            return
        sessions = self._sessions()
        self.process.kill()
        self.process.wait(timeout=10)
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, down_for: float = 0.5) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


class FaultPlan:
    """Which requests fail, and how: the first N matching requests, then a seeded fraction."""

    def __init__(
        self,
        first: int = 0,
        fraction: float = 0.0,
        kinds: tuple[str, ...] = ("500", "503", "SlowDown"),
        methods: tuple[str, ...] = ("GET", "PUT", "POST", "HEAD", "DELETE"),
        seed: int = 7,
    ) -> None:
        self.first = first
        self.fraction = fraction
        self.kinds = kinds
        self.methods = methods
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.seen = 0
        self.injected: dict[str, int] = {}

    def decide(self, method: str) -> str | None:
        with self._lock:
            if method not in self.methods:
                return None
            self.seen += 1
            if self.seen <= self.first or self._random.random() < self.fraction:
                kind = self.kinds[(self.seen - 1) % len(self.kinds)]
                self.injected[kind] = self.injected.get(kind, 0) + 1
                return kind
            return None

    @property
    def total_injected(self) -> int:
        return sum(self.injected.values())


_ERRORS = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "ServiceUnavailable", "Please reduce your request rate."),
    "SlowDown": (503, "SlowDown", "Please reduce your request rate."),
}


class FaultProxy:
    """An HTTP proxy in front of an S3 endpoint that answers some requests with S3 errors."""

    def __init__(self, upstream: str, plan: FaultPlan) -> None:
        self.upstream = urlparse(upstream)
        self.plan = plan
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                body = self._body()
                fault = proxy.plan.decide(self.command)
                if fault is not None:
                    status, code, message = _ERRORS[fault]
                    payload = (
                        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                        f"<Message>{message}</Message><RequestId>fault</RequestId></Error>"
                    ).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload) if self.command != "HEAD" else 0))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in {"transfer-encoding", "connection", "expect"}}
                headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=120)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    self.send_response(response.status, response.reason)
                    data_length = response.getheader("Content-Length")
                    for name, value in response.getheaders():
                        if name.lower() not in {"transfer-encoding", "connection", "content-length", "date", "server"}:
                            self.send_header(name, value)
                    if self.command == "HEAD":
                        self.send_header("Content-Length", data_length or "0")
                        self.end_headers()
                        return
                    data = response.read()
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
