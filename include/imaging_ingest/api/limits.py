"""The API under abuse: login throttling, bounded request bodies, and protective response headers.

* ``LoginThrottle``: each password attempt costs ~0.1 s of PBKDF2, so unthrottled the token
  endpoint is both a brute-force oracle and a way to saturate the server. Attempts are
  limited per client (a token bucket per address) and per account (after
  ``account_failures`` consecutive failures the account is locked, with a lockout that
  doubles on each further failure, up to ``max_lockout_s``). Both are checked *before* the
  password is hashed, so a throttled request costs nothing; unknown accounts are throttled
  exactly like known ones, so the lockout tells nothing about which names exist. A
  successful login gives its attempt back to the client.
* ``BodyLimit``: no route takes more than a small form, so a body over ``max_body_bytes``
  is refused (413) from its ``Content-Length``, or as soon as a streamed body passes it.
* ``SecurityHeaders``: ``X-Content-Type-Options: nosniff`` on every answer, and
  ``Cache-Control: no-store`` on every answer to a request carrying credentials (the only
  answers that can hold restricted data) and on the token endpoint's.

State is per process (one API process per host; see docs/security.md).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

__all__ = ["BodyLimit", "LoginThrottle", "SecurityHeaders", "Throttled"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Clients and accounts remembered at most (oldest forgotten first): bounded memory under a flood.
_MAX_TRACKED = 100_000


class Throttled(Exception):
    """Too many attempts: answer 429 with ``Retry-After``."""

    def __init__(self, retry_after_s: float, message: str) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s + 0.999))
        self.message = message


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class _Account:
    failures: int = 0
    locked_until: float = 0.0


class LoginThrottle:
    """Per-client rate limit and per-account lockout with exponential backoff for password grants."""

    def __init__(
        self,
        *,
        client_rate_per_min: float = 10.0,
        client_burst: int = 10,
        account_failures: int = 5,
        base_lockout_s: float = 30.0,
        max_lockout_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client_rate = client_rate_per_min / 60.0
        self.client_burst = client_burst
        self.account_failures = account_failures
        self.base_lockout_s = base_lockout_s
        self.max_lockout_s = max_lockout_s
        self._clock = clock
        self._clients: OrderedDict[str, _Bucket] = OrderedDict()
        self._accounts: OrderedDict[str, _Account] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, client: str, account: str) -> None:
        """Take one attempt for ``client`` on ``account``, or raise ``Throttled`` (before any hashing)."""
        now = self._clock()
        with self._lock:
            state = self._accounts.get(account)
            if state is not None and state.locked_until > now:
                raise Throttled(state.locked_until - now, "too many failed logins for this account; try again later")
            bucket = self._clients.get(client) or _Bucket(float(self.client_burst), now)
            bucket.tokens = min(float(self.client_burst), bucket.tokens + (now - bucket.updated) * self.client_rate)
            bucket.updated = now
            if bucket.tokens < 1.0:
                self._remember(self._clients, client, bucket)
                raise Throttled((1.0 - bucket.tokens) / self.client_rate, "too many login attempts; slow down")
            bucket.tokens -= 1.0
            self._remember(self._clients, client, bucket)

    def failed(self, account: str) -> None:
        """A wrong password: past ``account_failures`` in a row, lock the account, twice as long each time."""
        now = self._clock()
        with self._lock:
            state = self._accounts.get(account) or _Account()
            state.failures += 1
            over = state.failures - self.account_failures
            if over >= 0:
                state.locked_until = now + min(self.max_lockout_s, self.base_lockout_s * 2 ** min(over, 30))
            self._remember(self._accounts, account, state)

    def succeeded(self, client: str, account: str) -> None:
        """A right password: the account's failures are forgotten and the client's attempt given back
        (a client that logs in often is not an attacker; concurrent floods are still held by the burst)."""
        with self._lock:
            self._accounts.pop(account, None)
            bucket = self._clients.get(client)
            if bucket is not None:
                bucket.tokens = min(float(self.client_burst), bucket.tokens + 1.0)

    @staticmethod
    def _remember(table: OrderedDict[str, Any], key: str, value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > _MAX_TRACKED:
            table.popitem(last=False)


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` (413), declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _too_large(send, self.max_bytes)
            return
        # Read the (small) body here, so that a streamed one is refused as soon as it passes the
        # limit, before any route parses it; the route then gets it whole, then the live channel.
        parts, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            parts.append(message.get("body", b""))
            seen += len(parts[-1])
            if seen > self.max_bytes:
                await _too_large(send, self.max_bytes)
                return
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(parts), "more_body": False}
        await self.app(scope, _replay([body], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _too_large(send: Send, limit: int) -> None:
    body = f'{{"detail":"The request body is larger than {limit} bytes."}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"x-content-type-options", b"nosniff"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """ASGI middleware: ``nosniff`` everywhere; ``no-store`` for credentialed requests and the token endpoint."""

    def __init__(self, app: ASGIApp, no_store_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.no_store_paths = no_store_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        names = {k.lower() for k, _ in scope.get("headers") or []}
        private = b"authorization" in names or b"cookie" in names or scope.get("path", "") in self.no_store_paths

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-content-type-options"]
                headers.append((b"x-content-type-options", b"nosniff"))
                if private:
                    headers = [(k, v) for k, v in headers if k.lower() not in (b"cache-control", b"pragma")]
                    headers += [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
                    headers.append((b"vary", b"Authorization"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
