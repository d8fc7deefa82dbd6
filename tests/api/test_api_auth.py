"""Passwords, users file, settings and tokens, without a server; and the API's commands."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from imaging_ingest.api.auth import (
    AuthError,
    Caller,
    NotVisible,
    TokenService,
    hash_password,
    load_users,
    verify_password,
)
from imaging_ingest.api.settings import ApiSettings
from imaging_ingest.cli import main

SECRET = b"k" * 32


def _users(tmp_path: Path, **grants: list[str]) -> Path:
    path = tmp_path / "users.yaml"
    path.write_text(yaml.safe_dump({"users": {
        name: {"password_hash": hash_password(f"{name}-secret", iterations=1000), "collections": collections}
        for name, collections in grants.items()
    }}))
    return path


def test_password_hashes_verify_only_the_right_password() -> None:
    encoded = hash_password("correct horse", iterations=1000)
    assert encoded.startswith("pbkdf2_sha256$1000$") and encoded != hash_password("correct horse", iterations=1000)
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct horsE", encoded)
    assert not verify_password("x", "md5$1$a$b") and not verify_password("x", "garbage")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"users": {"a": {"password_hash": "plain", "collections": []}}}, "users.a.password_hash"),
        ({"users": {"a": {"password_hash": hash_password("p", 1000), "role": "admin"}}}, "users.a.role"),
        ({"accounts": {}}, "accounts"),
        ({"users": {"nbia_guest": {"password_hash": hash_password("p", 1000)}}}, "nbia_guest"),
    ],
)
def test_invalid_users_files_are_refused_with_the_reason(tmp_path: Path, document: dict, message: str) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ValueError, match=message) as error:
        load_users(path)
    assert str(path) in str(error.value)


def test_settings_need_a_long_secret_with_users(tmp_path: Path) -> None:
    users = _users(tmp_path, alice=["c1"])
    with pytest.raises(ValueError, match="no token secret"):
        ApiSettings.from_env({"IMAGING_INGEST_API_USERS_FILE": str(users)})
    with pytest.raises(ValueError, match="shorter than 32 characters"):
        ApiSettings.from_env({"IMAGING_INGEST_API_USERS_FILE": str(users), "IMAGING_INGEST_API_TOKEN_SECRET": "short"})
    with pytest.raises(ValueError, match="too little entropy"):
        ApiSettings.from_env({"IMAGING_INGEST_API_USERS_FILE": str(users), "IMAGING_INGEST_API_TOKEN_SECRET": "s" * 40})
    secret = tmp_path / "secret"
    secret.write_text("3c9f1e6a0b27d84f5e9a1c3b7d2f6e80a4b9c1d5e7f20a3b" + "\n")
    settings = ApiSettings.from_env({"IMAGING_INGEST_API_USERS_FILE": str(users),
                                     "IMAGING_INGEST_API_TOKEN_SECRET_FILE": str(secret),
                                     "IMAGING_INGEST_API_REFRESH_S": "0.5"})
    assert settings.token_secret is not None and settings.refresh_interval_s == 0.5
    assert "s" * 40 not in repr(settings)


def test_tokens_carry_grants_and_revocation_applies_to_issued_tokens(tmp_path: Path) -> None:
    issued = TokenService(SECRET, load_users(_users(tmp_path, alice=["c1", "c2"])), 600, 600)
    token = issued.password_grant("alice", "alice-secret")["access_token"]
    assert issued.caller(f"Bearer {token}").grants == {"c1", "c2"}
    revoked = TokenService(SECRET, load_users(_users(tmp_path, alice=["c2"])), 600, 600)
    assert revoked.caller(f"Bearer {token}").grants == {"c2"}
    removed = TokenService(SECRET, load_users(_users(tmp_path, bob=["c1"])), 600, 600)
    with pytest.raises(AuthError, match="no longer exists"):
        removed.caller(f"Bearer {token}")
    with pytest.raises(AuthError, match="invalid user credentials"):
        issued.password_grant("alice", "wrong")
    assert TokenService(None, load_users(None), 600, 600).caller(None) == Caller()


def test_caller_requires_a_grant_and_is_told_nothing_else() -> None:
    with pytest.raises(NotVisible):
        Caller().require("c1", restricted=True)
    with pytest.raises(NotVisible):
        Caller("bob", frozenset({"c2"})).require("c1", restricted=True)
    Caller("alice", frozenset({"c1"})).require("c1", restricted=True)
    Caller().require("public", restricted=False)


def test_hash_password_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert main(["api-hash-password"]) == 0
    assert verify_password("a long enough password", capsys.readouterr().out.strip())


def test_api_command_reports_configuration_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["api", "--port", "0"])
    assert usage.value.code == 2
    monkeypatch.setenv("IMAGING_INGEST_CATALOG_URL", f"sqlite:///{tmp_path / 'missing.sqlite'}")
    assert main(["api"]) == 1
    assert "does not exist: publish a collection first" in capsys.readouterr().err
    monkeypatch.setenv("IMAGING_INGEST_API_USERS_FILE", str(_users(tmp_path, alice=["c1"])))
    assert main(["api"]) == 1
    assert "no token secret" in capsys.readouterr().err
