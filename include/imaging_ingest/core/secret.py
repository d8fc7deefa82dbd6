"""The pseudonymisation secret, and the other keys a deployment must never leave at a default.

The pseudonymisation secret is the one key behind every UID, pseudonym and date shift. It
never lives in the repository. It comes from ``IMAGING_INGEST_SECRET`` (the value) or
``IMAGING_INGEST_SECRET_FILE`` (a file holding it); Airflow deployments pass it from a
Variable or a secrets backend. Without it nothing is de-identified: a pipeline that
silently used a default key would produce reversible pseudonyms. Anyone who knows the key
and holds original UIDs or candidate patient IDs can recompute the remaps, so a key that
can be guessed is as bad as none: it must be 64 hexadecimal characters (32 random bytes,
``secrets.token_hex(32)``), and placeholders (``change-me-...``) and low-entropy values
(repeated or patterned bytes) are refused by every entry point (the CLI, the DAG tasks,
the API and the stack's init, ``imaging-ingest check-secrets``).

The same rule, adapted to each format, covers the Airflow JWT secret, the Airflow API
secret key, the Fernet key and the API's token-signing key (``check_key``, ``check_fernet``).
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "MIN_KEY_CHARS",
    "SecretMissing",
    "check_fernet",
    "check_key",
    "check_secret",
    "check_stack_secrets",
    "configured_secret",
    "load_secret",
    "looks_like_placeholder",
    "read_secret_file",
]

#: Characters of a signing key (JWT, API tokens, Flask secret): 32 bytes as hex or base64 make 43 or more.
MIN_KEY_CHARS = 32
#: Distinct byte values 32 random bytes have at the very least (the expectation is ~30; below 20 is patterned).
_MIN_DISTINCT_BYTES = 20
#: Shannon entropy per character of a random key's text (hex: 4 bits; base64: 6); well below means patterned.
_MIN_BITS_PER_CHAR = 3.0
_PLACEHOLDER = re.compile(r"change[-_ ]?me|changeme|placeholder|example|not[-_ ]?for[-_ ]?production|default",
                          re.IGNORECASE)
_GENERATE = "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'"


class SecretMissing(RuntimeError):
    """No usable secret was configured (absent, a placeholder, or guessable)."""


def looks_like_placeholder(value: str) -> bool:
    """A value copied from an example file (``change-me-...``) rather than generated."""
    return bool(_PLACEHOLDER.search(value))


def _bits_per_char(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def check_secret(value: bytes, where: str) -> bytes:
    """The pseudonymisation secret as given, if it is 64 hex characters of real entropy; else ``SecretMissing``.

    The key stays the hex text's bytes (as before): only what is accepted changed.
    """
    value = value.strip()
    text = value.decode("ascii", "replace")
    if looks_like_placeholder(text):
        raise SecretMissing(f"the pseudonymisation secret from {where} is a placeholder; {_GENERATE}")
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise SecretMissing(
            f"the pseudonymisation secret from {where} must be 64 hexadecimal characters (32 random bytes); {_GENERATE}"
        )
    if len(set(bytes.fromhex(text))) < _MIN_DISTINCT_BYTES:
        raise SecretMissing(
            f"the pseudonymisation secret from {where} has too little entropy (repeated or patterned bytes); {_GENERATE}"
        )
    return value


def check_key(value: str, name: str) -> str:
    """A signing key (JWT secret, API secret key, token secret): long, not a placeholder, not patterned."""
    value = value.strip()
    if looks_like_placeholder(value):
        raise SecretMissing(f"{name} is a placeholder; {_GENERATE}")
    if len(value) < MIN_KEY_CHARS:
        raise SecretMissing(f"{name} is shorter than {MIN_KEY_CHARS} characters; {_GENERATE}")
    if _bits_per_char(value) < _MIN_BITS_PER_CHAR or len(set(value)) < 12:
        raise SecretMissing(f"{name} has too little entropy (repeated or patterned characters); {_GENERATE}")
    return value


def check_fernet(value: str, name: str = "the Fernet key") -> str:
    """A Fernet key: url-safe base64 of 32 random bytes (``Fernet.generate_key()``)."""
    value = value.strip()
    hint = "generate one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
    if looks_like_placeholder(value):
        raise SecretMissing(f"{name} is a placeholder; {hint}")
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if len(raw) != 32:
        raise SecretMissing(f"{name} is not url-safe base64 of 32 bytes; {hint}")
    if len(set(raw)) < _MIN_DISTINCT_BYTES:
        raise SecretMissing(f"{name} has too little entropy; {hint}")
    return value


def read_secret_file(path: str | Path) -> bytes:
    path = Path(path)
    try:
        return check_secret(path.read_bytes(), str(path))
    except OSError as exc:
        raise SecretMissing(f"cannot read the secret file {path}: {exc.strerror}") from None


def configured_secret(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The secret the environment names, checked; None when it names none."""
    env = os.environ if environ is None else environ
    if env.get("IMAGING_INGEST_SECRET"):
        return check_secret(env["IMAGING_INGEST_SECRET"].encode("utf-8"), "IMAGING_INGEST_SECRET")
    if env.get("IMAGING_INGEST_SECRET_FILE"):
        return read_secret_file(env["IMAGING_INGEST_SECRET_FILE"])
    return None


def load_secret(environ: Mapping[str, str] | None = None) -> bytes:
    """Return the secret from the environment, or raise ``SecretMissing`` saying how to set it."""
    secret = configured_secret(environ)
    if secret is None:
        raise SecretMissing(
            "no pseudonymisation secret: set IMAGING_INGEST_SECRET_FILE (or IMAGING_INGEST_SECRET), "
            "or the Airflow Variable imaging_ingest_secret; the run refuses to start without it"
        )
    return secret


#: What ``check_stack_secrets`` checks, by environment variable: the check each value must pass.
_STACK_KEYS = {
    "AIRFLOW__API_AUTH__JWT_SECRET": check_key,
    "AIRFLOW__API__SECRET_KEY": check_key,
    "IMAGING_INGEST_API_TOKEN_SECRET": check_key,
    "AIRFLOW__CORE__FERNET_KEY": check_fernet,
}


def check_stack_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret of a deployment's environment that is set, checked; the names checked.

    Run by the stack's init (``imaging-ingest check-secrets`` in ``airflow-init``): the stack
    does not start with a placeholder or guessable key. Passwords (``*_PASSWORD``) must not
    be placeholders either.
    """
    env = os.environ if environ is None else environ
    checked = []
    if env.get("AIRFLOW_VAR_IMAGING_INGEST_SECRET"):
        check_secret(env["AIRFLOW_VAR_IMAGING_INGEST_SECRET"].encode("utf-8"), "the Airflow Variable imaging_ingest_secret")
        checked.append("AIRFLOW_VAR_IMAGING_INGEST_SECRET")
    if configured_secret(env) is not None:
        checked.append("IMAGING_INGEST_SECRET")
    for name, check in _STACK_KEYS.items():
        if env.get(name):
            check(env[name], name)
            checked.append(name)
    for name in sorted(env):
        if name.endswith("_PASSWORD") and env[name] and looks_like_placeholder(env[name]):
            raise SecretMissing(f"{name} is a placeholder: set a real password in .env")
        if name.endswith("_PASSWORD") and env[name]:
            checked.append(name)
    return checked
