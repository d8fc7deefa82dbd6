"""The pseudonymisation secret: the one key behind every UID, pseudonym and date shift.

It never lives in the repository. It comes from ``IMAGING_INGEST_SECRET`` (the value) or
``IMAGING_INGEST_SECRET_FILE`` (a file holding it); Airflow deployments pass it from a
Variable or a secrets backend. Without it nothing is de-identified: a pipeline that
silently used a default key would produce reversible pseudonyms.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MIN_SECRET_BYTES", "SecretMissing", "check_secret", "load_secret", "read_secret_file"]

MIN_SECRET_BYTES = 16


class SecretMissing(RuntimeError):
    """No usable pseudonymisation secret was configured."""


def check_secret(value: bytes, where: str) -> bytes:
    """Refuse secrets too short to be keys."""
    value = value.strip()
    if len(value) < MIN_SECRET_BYTES:
        raise SecretMissing(
            f"the pseudonymisation secret from {where} is shorter than {MIN_SECRET_BYTES} bytes; "
            "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    return value


def read_secret_file(path: str | Path) -> bytes:
    path = Path(path)
    try:
        return check_secret(path.read_bytes(), str(path))
    except OSError as exc:
        raise SecretMissing(f"cannot read the secret file {path}: {exc.strerror}") from None


def load_secret(environ: dict[str, str] | None = None) -> bytes:
    """Return the secret from the environment, or raise ``SecretMissing`` saying how to set it."""
    env = os.environ if environ is None else environ
    if env.get("IMAGING_INGEST_SECRET"):
        return check_secret(env["IMAGING_INGEST_SECRET"].encode("utf-8"), "IMAGING_INGEST_SECRET")
    if env.get("IMAGING_INGEST_SECRET_FILE"):
        return read_secret_file(env["IMAGING_INGEST_SECRET_FILE"])
    raise SecretMissing(
        "no pseudonymisation secret: set IMAGING_INGEST_SECRET_FILE (or IMAGING_INGEST_SECRET), "
        "or the Airflow Variable imaging_ingest_secret; the run refuses to start without it"
    )
