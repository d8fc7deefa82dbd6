"""Secrets that cannot be defaults: every entry point refuses a placeholder or a guessable key.

With a known pseudonymisation secret anyone holding original UIDs or candidate patient IDs
can recompute the remaps, pseudonyms and date shifts; with a known JWT secret or Fernet
key, tokens can be forged and stored connections read. The example file's values
(``change-me-...``) are therefore refused by the CLI, the DAG tasks, the API and the
stack's init, as are short or patterned values.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from imaging_ingest.cli import main
from imaging_ingest.core.secret import (
    SecretMissing,
    check_fernet,
    check_key,
    check_secret,
    check_stack_secrets,
    load_secret,
)

pytestmark = pytest.mark.security

ROOT = Path(__file__).resolve().parents[1]


def _example_env() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


PLACEHOLDER = _example_env()["IMAGING_INGEST_SECRET"]


@pytest.mark.parametrize(
    "value, message",
    [
        (PLACEHOLDER, "placeholder"),
        ("change-me", "placeholder"),
        ("short", "64 hexadecimal"),
        ("test-secret-0123456789abcdef-not-for-production", "placeholder"),
        ("0123456789abcdef" * 4, "too little entropy"),
        ("00" * 32, "too little entropy"),
        ("deadbeef" * 8, "too little entropy"),
        (secrets.token_hex(31), "64 hexadecimal"),
        (secrets.token_urlsafe(48), "64 hexadecimal"),
    ],
)
def test_pseudonymisation_secret_must_be_64_random_hex_characters(value: str, message: str) -> None:
    with pytest.raises(SecretMissing, match=message):
        check_secret(value.encode(), "test")


def test_a_generated_secret_is_accepted_as_given() -> None:
    value = secrets.token_hex(32)
    assert check_secret(f"{value}\n".encode(), "test") == value.encode()
    assert load_secret({"IMAGING_INGEST_SECRET": value}) == value.encode()


def test_signing_keys_and_fernet_keys() -> None:
    example = _example_env()
    for name in ("AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY"):
        with pytest.raises(SecretMissing, match="placeholder"):
            check_key(example[name], name)
    with pytest.raises(SecretMissing, match="placeholder"):
        check_fernet(example["AIRFLOW_FERNET_KEY"])
    with pytest.raises(SecretMissing, match="32 bytes"):
        check_fernet("bm90LWEta2V5")
    with pytest.raises(SecretMissing, match="entropy"):
        check_key("ab" * 32, "k")
    check_key(secrets.token_urlsafe(32), "k")
    check_fernet(Fernet.generate_key().decode())


def test_cli_refuses_a_placeholder_before_any_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IMAGING_INGEST_SECRET", PLACEHOLDER)
    assert main(["synth", str(tmp_path / "never"), "--patients", "1"]) == 1
    assert "placeholder" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
    weak = tmp_path / "weak.key"
    weak.write_text("00" * 32)
    monkeypatch.delenv("IMAGING_INGEST_SECRET")
    monkeypatch.setenv("IMAGING_INGEST_SECRET_FILE", str(weak))
    assert main(["synth", str(tmp_path / "never"), "--patients", "1"]) == 1
    assert "too little entropy" in capsys.readouterr().err


def test_dag_tasks_refuse_a_placeholder_variable_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from imaging_dags.runtime import task_secret

    monkeypatch.setenv("AIRFLOW_VAR_IMAGING_INGEST_SECRET", PLACEHOLDER)
    with pytest.raises(SecretMissing, match="placeholder"):
        task_secret()
    monkeypatch.delenv("AIRFLOW_VAR_IMAGING_INGEST_SECRET")
    monkeypatch.setenv("IMAGING_INGEST_SECRET", "0123456789abcdef" * 4)
    with pytest.raises(SecretMissing, match="entropy"):
        task_secret()
    good = secrets.token_hex(32)
    monkeypatch.setenv("IMAGING_INGEST_SECRET", good)
    assert task_secret() == good.encode()


def test_api_refuses_a_placeholder_token_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from imaging_ingest.api.settings import ApiSettings

    users = tmp_path / "users.yaml"
    users.write_text("users: {}\n")
    with pytest.raises(ValueError, match="placeholder"):
        ApiSettings.from_env({"IMAGING_INGEST_API_USERS_FILE": str(users),
                              "IMAGING_INGEST_API_TOKEN_SECRET": "change-me-api-token-secret-0123456789"})
    monkeypatch.setenv("IMAGING_INGEST_SECRET", PLACEHOLDER)  # `imaging-ingest api` starts through the CLI
    assert main(["api", "--port", "1"]) == 1
    assert "placeholder" in capsys.readouterr().err


def test_stack_init_refuses_the_example_values() -> None:
    example = _example_env()
    init_env = {
        "AIRFLOW_VAR_IMAGING_INGEST_SECRET": example["IMAGING_INGEST_SECRET"],
        "AIRFLOW__API_AUTH__JWT_SECRET": example["AIRFLOW_JWT_SECRET"],
        "AIRFLOW__CORE__FERNET_KEY": example["AIRFLOW_FERNET_KEY"],
        "_ADMIN_PASSWORD": example["AIRFLOW_ADMIN_PASSWORD"],
    }
    for name in init_env:
        generated = {
            "AIRFLOW_VAR_IMAGING_INGEST_SECRET": secrets.token_hex(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "_ADMIN_PASSWORD": secrets.token_urlsafe(16),
        }
        with pytest.raises(SecretMissing):
            check_stack_secrets(generated | {name: init_env[name]})
        assert name in check_stack_secrets(generated)
    compose = (ROOT / "docker-compose.yaml").read_text()
    init = compose[compose.index("  airflow-init:"):compose.index("  airflow-apiserver:")]
    assert re.search(r"imaging-ingest check-secrets\n\s+airflow db migrate", init), "the init checks before it migrates"
