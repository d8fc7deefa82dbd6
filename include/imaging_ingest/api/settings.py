"""Settings of the data-access API: who may log in, how tokens are signed, how often to look for releases.

They come from ``IMAGING_INGEST_API_*`` variables (the archive's own settings, catalog and
object store, come from ``Settings``). Secrets never live in the repository: the token
signing key comes from ``IMAGING_INGEST_API_TOKEN_SECRET`` or a file named by
``IMAGING_INGEST_API_TOKEN_SECRET_FILE``; the users and their collection grants from a
file named by ``IMAGING_INGEST_API_USERS_FILE`` (see ``auth.py`` for its format).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from imaging_ingest.core.secret import MIN_KEY_CHARS, SecretMissing, check_key

__all__ = ["ApiSettings", "MIN_TOKEN_SECRET_BYTES"]

MIN_TOKEN_SECRET_BYTES = MIN_KEY_CHARS


class ApiSettings(BaseModel):
    """How one API process behaves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token_secret: SecretStr | None = Field(default=None, description="HMAC key that signs bearer tokens.")
    users_file: Path | None = Field(default=None, description="YAML file of users and their collection grants.")
    access_token_ttl_s: int = Field(default=7200, ge=60, le=7 * 86400)
    refresh_token_ttl_s: int = Field(default=86400, ge=60, le=30 * 86400)
    refresh_interval_s: float = Field(
        default=5.0, ge=0, le=3600, description="How long a look at the catalog's published versions is reused."
    )
    header_cache: Path | None = Field(
        default=None, description="SQLite file caching the DICOM header fields read from published objects."
    )
    header_workers: int = Field(default=8, ge=1, le=64, description="Parallel object reads when filling the cache.")
    chunk_size: int = Field(default=1024 * 1024, ge=16 * 1024, le=64 * 1024 * 1024)
    public_url: str | None = Field(
        default=None, pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$",
        description="The API's public base URL (behind the TLS proxy); links are built from it, never from Host. "
        "Without it links are relative (path only).",
    )
    viewer_url: str | None = Field(
        default=None, pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$",
        description="Where the OHIF viewer is served; the catalogue page links series to it (no link without it).",
    )
    session_max_s: int = Field(default=86400, ge=60, le=30 * 86400,
                               description="Absolute lifetime of a login session, however often it is refreshed.")
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024,
                                description="Largest request body accepted (the API takes small forms only).")
    login_rate_per_min: float = Field(default=10.0, gt=0, description="Password attempts per client per minute.")
    login_burst: int = Field(default=10, ge=1, description="Password attempts a client may make at once.")
    login_failures: int = Field(default=5, ge=1, description="Failed logins in a row before an account is locked.")
    lockout_s: float = Field(default=30.0, gt=0, description="First lockout; each further failure doubles it.")
    max_lockout_s: float = Field(default=900.0, gt=0, description="Longest lockout.")

    @model_validator(mode="after")
    def _secret_with_users(self) -> ApiSettings:
        if self.users_file is not None and self.token_secret is None:
            raise ValueError(
                "IMAGING_INGEST_API_USERS_FILE is set but no token secret: set IMAGING_INGEST_API_TOKEN_SECRET_FILE "
                "(or IMAGING_INGEST_API_TOKEN_SECRET) to a random key of at least 32 bytes"
            )
        if self.token_secret is not None:
            try:  # placeholders, short and patterned keys are refused at start: tokens could be forged
                check_key(self.token_secret.get_secret_value(), "the API token secret")
            except SecretMissing as exc:
                raise ValueError(str(exc)) from None
        return self

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ApiSettings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if env.get("IMAGING_INGEST_API_TOKEN_SECRET"):
            values["token_secret"] = env["IMAGING_INGEST_API_TOKEN_SECRET"]
        elif env.get("IMAGING_INGEST_API_TOKEN_SECRET_FILE"):
            path = Path(env["IMAGING_INGEST_API_TOKEN_SECRET_FILE"])
            try:
                values["token_secret"] = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"cannot read the API token secret file {path}: {exc.strerror}") from None
        names = {
            "users_file": "IMAGING_INGEST_API_USERS_FILE",
            "access_token_ttl_s": "IMAGING_INGEST_API_TOKEN_TTL_S",
            "refresh_token_ttl_s": "IMAGING_INGEST_API_REFRESH_TOKEN_TTL_S",
            "refresh_interval_s": "IMAGING_INGEST_API_REFRESH_S",
            "header_cache": "IMAGING_INGEST_API_HEADER_CACHE",
            "header_workers": "IMAGING_INGEST_API_HEADER_WORKERS",
            "chunk_size": "IMAGING_INGEST_API_CHUNK_SIZE",
            "public_url": "IMAGING_INGEST_API_PUBLIC_URL",
            "viewer_url": "IMAGING_INGEST_API_VIEWER_URL",
            "session_max_s": "IMAGING_INGEST_API_SESSION_MAX_S",
            "max_body_bytes": "IMAGING_INGEST_API_MAX_BODY_BYTES",
            "login_rate_per_min": "IMAGING_INGEST_API_LOGIN_RATE_PER_MIN",
            "login_burst": "IMAGING_INGEST_API_LOGIN_BURST",
            "login_failures": "IMAGING_INGEST_API_LOGIN_FAILURES",
            "lockout_s": "IMAGING_INGEST_API_LOCKOUT_S",
        }
        for field, name in names.items():
            if env.get(name):
                values[field] = env[name]
        return cls.model_validate(values)
