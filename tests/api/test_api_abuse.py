"""The API under abuse: brute force on the token endpoint, replayed refresh tokens, oversized bodies,
forged Host headers, and anonymous requests that would make the server build restricted views.

Each test runs its own in-process app (``create_app``) over the session's archive, so that
lockouts and spent tokens do not leak into the other API tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from imaging_ingest.api import auth as auth_module
from imaging_ingest.api.app import create_app
from imaging_ingest.api.auth import AuthError, TokenService, load_users
from imaging_ingest.api.limits import LoginThrottle, Throttled
from imaging_ingest.api.settings import ApiSettings

from .conftest import PASSWORDS, ApiArchive

pytestmark = [pytest.mark.api, pytest.mark.security]

TOKEN = "/nbia-api/oauth/token"
V4 = "/nbia-api/services/v4"


def _settings(api_users: dict[str, str], tmp_path: Path, **overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "users_file": api_users["IMAGING_INGEST_API_USERS_FILE"],
        "token_secret": Path(api_users["IMAGING_INGEST_API_TOKEN_SECRET_FILE"]).read_text().strip(),
        "header_cache": tmp_path / "headers.sqlite",
        "refresh_interval_s": 0,
    }
    return ApiSettings.model_validate(values | overrides)


@pytest.fixture
def client_for(api_archive: ApiArchive, api_users: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        client = TestClient(create_app(api_archive.settings, _settings(api_users, tmp_path, **overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _login(client: TestClient, user: str, password: str) -> Any:
    return client.post(TOKEN, data={"username": user, "password": password, "grant_type": "password"})


def test_token_endpoint_locks_an_account_out_after_failures(client_for: Any) -> None:
    client = client_for(login_failures=3, lockout_s=30, login_rate_per_min=600, login_burst=100)
    for _ in range(3):
        assert _login(client, "alice", "wrong").status_code == 401
    locked = _login(client, "alice", PASSWORDS["alice"])  # even the right password waits out the lockout
    assert locked.status_code == 429 and locked.json()["error"] == "slow_down"
    assert 1 <= int(locked.headers["Retry-After"]) <= 30
    for _ in range(3):  # an unknown name locks the same way: the lockout tells nothing about who exists
        assert _login(client, "mallory", "x").status_code == 401
    assert _login(client, "mallory", "x").status_code == 429
    assert _login(client, "bob", PASSWORDS["bob"]).status_code == 200  # other accounts are untouched


def test_token_endpoint_rate_limits_each_client(client_for: Any) -> None:
    client = client_for(login_rate_per_min=1, login_burst=4, login_failures=100)
    answers = [_login(client, f"user{i}", "guess").status_code for i in range(6)]
    assert answers[:4] == [401] * 4 and answers[4:] == [429, 429]
    assert "slow down" in _login(client, "alice", PASSWORDS["alice"]).json()["error_description"]


def test_lockouts_back_off_exponentially_and_success_resets() -> None:
    now = [1000.0]
    throttle = LoginThrottle(account_failures=2, base_lockout_s=10, max_lockout_s=35, client_burst=1000,
                             clock=lambda: now[0])
    waits = []
    for _ in range(5):
        throttle.check("c", "alice")
        throttle.failed("alice")
        try:
            throttle.check("c", "alice")
            waits.append(0)
        except Throttled as exc:
            waits.append(exc.retry_after_s)
            now[0] += exc.retry_after_s
    assert waits == [0, 10, 20, 35, 35]
    throttle.succeeded("c", "alice")
    throttle.check("c", "alice")


def test_a_reused_refresh_token_is_rejected_and_ends_the_session(client_for: Any) -> None:
    client = client_for()
    first = _login(client, "alice", PASSWORDS["alice"]).json()
    second = client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    replay = client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert replay.status_code == 401 and "already used" in replay.json()["error_description"]
    # The replay ended the session: the rotated pair, held by whoever refreshed first, is dead too.
    again = client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]})
    assert again.status_code == 401
    access = client.get(f"{V4}/getCollectionValues", headers={"Authorization": f"Bearer {rotated['access_token']}"})
    assert access.status_code == 401


def test_sessions_end_at_their_absolute_lifetime(api_users: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    users = load_users(Path(api_users["IMAGING_INGEST_API_USERS_FILE"]))
    service = TokenService(b"0f" * 32, users, access_ttl_s=600, refresh_ttl_s=600, session_max_s=900)
    clock = [1_000_000.0]
    monkeypatch.setattr(auth_module.time, "time", lambda: clock[0])
    pair = service.password_grant("alice", PASSWORDS["alice"])
    for _ in range(2):  # each refresh inside the lifetime works, and never extends it
        clock[0] += 400
        pair = service.refresh_grant(pair["refresh_token"])
        assert pair["refresh_expires_in"] <= 900 - (clock[0] - 1_000_000)
    clock[0] += 200  # 1000 s after login: past the 900 s lifetime (and the token's own expiry)
    with pytest.raises(AuthError):
        service.refresh_grant(pair["refresh_token"])


def test_headers_links_and_bodies(client_for: Any) -> None:
    client = client_for(max_body_bytes=4096, public_url="https://archive.example.org/api")
    anonymous = client.get(f"{V4}/getCollectionValues")
    assert anonymous.headers["X-Content-Type-Options"] == "nosniff"
    token = _login(client, "alice", PASSWORDS["alice"])
    assert token.headers["Cache-Control"] == "no-store"
    restricted = client.get(f"{V4}/getSeries", params={"Collection": "demo_restricted"},
                            headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    assert restricted.status_code == 200 and restricted.json()
    assert restricted.headers["Cache-Control"] == "no-store" and restricted.headers["X-Content-Type-Options"] == "nosniff"
    listing = client.get("/collections", headers={"Host": "evil.example"})
    links = [v["base_url"] for c in listing.json() for v in c["versions"]]
    assert links and all(link.startswith("https://archive.example.org/api/collections/") for link in links)
    assert "evil.example" not in listing.text
    big = client.post(TOKEN, data={"grant_type": "password", "username": "alice", "password": "x" * 10_000})
    assert big.status_code == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"a" * 1024

    streamed = client.post(TOKEN, content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert streamed.status_code == 413


def test_links_are_relative_without_a_configured_url(client_for: Any) -> None:
    client = client_for()
    listing = client.get("/collections", headers={"Host": "evil.example"})
    assert all(v["base_url"].startswith("/collections/") for c in listing.json() for v in c["versions"])


def test_anonymous_requests_never_build_a_restricted_view(client_for: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client = client_for()
    archive = client.app.state.api.archive  # type: ignore[attr-defined]
    built: list[tuple[str, int]] = []
    original = archive.pinned
    monkeypatch.setattr(archive, "pinned", lambda c, v: built.append((c, v)) or original(c, v))
    answer = client.get(f"/collections/demo_restricted/versions/1{V4}/getSeries")
    assert answer.status_code == 404 and built == []
    assert client.get(f"/collections/demo/versions/1{V4}/getSeries").status_code == 200 and built == [("demo", 1)]
