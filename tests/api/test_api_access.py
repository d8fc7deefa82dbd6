"""Restricted collections: invisible without a token, answered as missing when named, open with the right token only."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from imaging_ingest.api.auth import TokenService, load_users

from .conftest import PASSWORDS, token_for

pytestmark = pytest.mark.api

V4 = "/nbia-api/services/v4"


def _get(base: str, path: str, token: str | None = None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{base}{V4}/{path}", params=params, headers=headers, timeout=30)


def _restricted_series(base: str, collection: str, user: str) -> list[dict[str, Any]]:
    answer = _get(base, "getSeries", token_for(base, user), Collection=collection)
    assert answer.status_code == 200
    return list(answer.json())


def test_restricted_collections_are_invisible_without_a_token(api_server: str, nbia: Any) -> None:
    assert _get(api_server, "getCollectionValues").json() == [{"Collection": "demo"}]
    everything = " ".join(
        _get(api_server, path).text
        for path in ("getSeries", "getPatient", "getPatientStudy", "getUpdatedSeries", "getModalityValues")
    )
    assert "demo_restricted" not in everything and "RSTA-" not in everything and "RSTB-" not in everything
    assert "demo_restricted" not in httpx.get(f"{api_server}/collections").text
    assert all(s["Collection"] == "demo" for s in nbia.getSeries())


@pytest.mark.security
def test_naming_a_restricted_collection_answers_as_missing_byte_for_byte(api_server: str) -> None:
    """No existence oracle: restricted and missing read the same to anyone without access."""
    series = _restricted_series(api_server, "demo_restricted", "alice")
    uid, study = series[0]["SeriesInstanceUID"], series[0]["StudyInstanceUID"]
    missing_uid, missing_study = "2.25.1234567890", "2.25.9876543210"
    bob = token_for(api_server, "bob")  # a token without the grant gets the same answer as no token
    for path, params, missing in (
        ("getSeries", {"Collection": "demo_restricted"}, {"Collection": "no_such_collection"}),
        ("getPatient", {"Collection": "DEMO_RESTRICTED"}, {"Collection": "NO_SUCH_COLLECTION"}),
        ("getSeries", {"SeriesInstanceUID": uid}, {"SeriesInstanceUID": missing_uid}),
        ("getSeriesSize", {"SeriesInstanceUID": uid}, {"SeriesInstanceUID": missing_uid}),
        ("getSOPInstanceUIDs", {"SeriesInstanceUID": uid}, {"SeriesInstanceUID": missing_uid}),
        ("getImage", {"SeriesInstanceUID": uid}, {"SeriesInstanceUID": missing_uid}),
        ("getPatientStudy", {"StudyInstanceUID": study}, {"StudyInstanceUID": missing_study}),
    ):
        absent = _get(api_server, path, **missing)
        for token in (None, bob):
            answer = _get(api_server, path, token, **params)
            assert answer.status_code == absent.status_code, (path, answer.text)
            same = answer.content.replace(uid.encode(), b"UID").replace(study.encode(), b"UID")
            assert same == absent.content.replace(missing_uid.encode(), b"UID").replace(missing_study.encode(), b"UID")
            if params.get("Collection"):
                assert answer.content == absent.content
    pinned = httpx.get(f"{api_server}/collections/demo_restricted/versions/1{V4}/getSeries")
    nothing = httpx.get(f"{api_server}/collections/no_such_collection/versions/1{V4}/getSeries")
    beyond = httpx.get(f"{api_server}/collections/demo/versions/999{V4}/getSeries")
    assert pinned.status_code == nothing.status_code == beyond.status_code == 404
    assert pinned.content == nothing.content == beyond.content
    health = httpx.get(f"{api_server}/healthz").json()
    assert health == {"status": "ok"}, "no counts: they would tell how many restricted collections exist"


def test_a_token_opens_its_own_collection_only(api_server: str, tmp_path: Path) -> None:
    alice = token_for(api_server, "alice")
    collections = [c["Collection"] for c in _get(api_server, "getCollectionValues", alice).json()]
    assert collections == ["demo", "demo_restricted"]
    series = _get(api_server, "getSeries", alice, Collection="demo_restricted").json()
    assert series and all(s["PatientID"].startswith("RSTA-") for s in series)
    uid = series[0]["SeriesInstanceUID"]
    download = httpx.get(f"{api_server}{V4}/getImage", params={"SeriesInstanceUID": uid},
                         headers={"Authorization": f"Bearer {alice}"})
    assert download.status_code == 200 and download.content[:4] == b"PK\x03\x04"

    bobs = _restricted_series(api_server, "demo_restricted_b", "bob")
    for path, params in (
        ("getSeries", {"Collection": "demo_restricted_b"}),
        ("getImage", {"SeriesInstanceUID": bobs[0]["SeriesInstanceUID"]}),
    ):
        answer = _get(api_server, path, alice, **params)
        assert answer.status_code in (200, 404), (path, answer.text)  # as if bob's collection did not exist
        assert "RSTB-" not in answer.text and (answer.status_code == 404 or answer.content == b"")
    everything = _get(api_server, "getSeries", alice).json()
    assert {s["Collection"] for s in everything} == {"demo", "demo_restricted"}


def test_bad_tokens_are_refused(api_server: str, api_users: dict[str, str]) -> None:
    alice = token_for(api_server, "alice")
    header, payload, signature = alice.split(".")
    tampered = f"{header}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}"
    secret = Path(api_users["IMAGING_INGEST_API_TOKEN_SECRET_FILE"]).read_text().strip().encode()
    users = load_users(Path(api_users["IMAGING_INGEST_API_USERS_FILE"]))
    expired = TokenService(secret, users, access_ttl_s=-10, refresh_ttl_s=60).password_grant("alice", PASSWORDS["alice"])
    forged = TokenService(b"x" * 32, users, 600, 600).password_grant("alice", PASSWORDS["alice"])
    for token in (tampered, expired["access_token"], forged["access_token"], "not-a-token", expired["refresh_token"]):
        answer = _get(api_server, "getCollectionValues", token)
        assert answer.status_code == 401, token
        assert answer.json()["error"] == "invalid_token"
    basic = httpx.get(f"{api_server}{V4}/getCollectionValues", headers={"Authorization": "Basic YWxpY2U6eA=="})
    assert basic.status_code == 401


def test_token_endpoint(api_server: str) -> None:
    url = f"{api_server}/nbia-api/oauth/token"
    wrong = httpx.post(url, data={"username": "alice", "password": "nope", "grant_type": "password"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_grant"
    unknown = httpx.post(url, data={"username": "mallory", "password": "x", "grant_type": "password"})
    assert unknown.status_code == 401
    assert httpx.post(url, data={"grant_type": "client_credentials"}).json()["error"] == "unsupported_grant_type"
    assert httpx.post(url, data={}).status_code == 400
    granted = httpx.post(url, data={"username": "bob", "password": PASSWORDS["bob"], "grant_type": "password",
                                    "client_id": "nbiaRestAPIClient", "client_secret": "ignored"}).json()
    assert granted["token_type"] == "Bearer" and granted["expires_in"] > 0
    assert granted["scope"] == "collection:demo_restricted_b"
    time.sleep(1)  # a new token differs in its issue time as well as its id
    refreshed = httpx.post(url, data={"grant_type": "refresh_token", "refresh_token": granted["refresh_token"]})
    assert refreshed.status_code == 200 and refreshed.json()["access_token"] != granted["access_token"]
    refused = httpx.post(url, data={"grant_type": "refresh_token", "refresh_token": granted["access_token"]})
    assert refused.status_code == 401
    guest = httpx.post(url, data={"username": "nbia_guest", "password": "", "grant_type": "password"}).json()
    assert guest["scope"] == ""
    assert _get(api_server, "getCollectionValues", guest["access_token"]).json() == [{"Collection": "demo"}]
