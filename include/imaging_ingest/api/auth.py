"""Who may see restricted collections: users, passwords, and signed bearer tokens.

NBIA hands out OAuth2 tokens from ``/nbia-api/oauth/token`` (password grant, refresh
grant); clients send them as ``Authorization: Bearer ...``. We do the same with tokens
we sign ourselves: a JWT (HS256) whose claims name the user, the collections granted to
them when it was issued, and an expiry. On every request the grants are intersected with
the user's current grants, so removing a grant from the users file (and restarting)
takes effect even for tokens already handed out.

The users file (YAML, never in the repository)::

    users:
      alice:
        password_hash: "pbkdf2_sha256$600000$<salt>$<hash>"   # imaging-ingest api-hash-password
        collections: [lung_trial_restricted]

``nbia_guest`` (any password, as on NBIA) gets a token with no grants: public data only.

Refresh tokens are rotated and single use: each refresh answers a new pair and spends the
refresh token it was given; presenting a spent one again (a stolen copy, replayed) ends
the whole session (its ``sid``), access tokens included. A session also ends
``session_max_s`` after the password was checked, however often it is refreshed. What
was spent or ended is kept in memory (one API process; see docs/security.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "GUEST_USER",
    "NOT_FOUND",
    "AuthError",
    "Caller",
    "TokenService",
    "UserGrant",
    "UsersFile",
    "hash_password",
    "NotVisible",
    "load_users",
    "verify_password",
]

GUEST_USER = "nbia_guest"
_ALGORITHM = "pbkdf2_sha256"
_DEFAULT_ITERATIONS = 600_000


class AuthError(Exception):
    """A request that cannot be authorised: 401 (who are you?) or 403 (not for you)."""

    def __init__(self, status: int, message: str, error: str = "invalid_token") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error = error


class UserGrant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    password_hash: str = Field(pattern=r"^pbkdf2_sha256\$\d+\$[A-Za-z0-9+/=_-]+\$[A-Za-z0-9+/=_-]+$")
    collections: list[str] = Field(default_factory=list)


class UsersFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    users: dict[str, UserGrant] = Field(default_factory=dict)


def load_users(path: Path | None) -> UsersFile:
    """Read and validate the users file; no file means no users (public data only)."""
    if path is None:
        return UsersFile()
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ValueError(f"cannot read the API users file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"the API users file {path} is not valid YAML: {exc}") from None
    try:
        users = UsersFile.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"the API users file {path} is invalid: {problems}") from None
    if GUEST_USER in users.users:
        raise ValueError(f"the API users file {path} must not define {GUEST_USER}: that name is the public guest")
    return users


def hash_password(password: str, iterations: int = _DEFAULT_ITERATIONS) -> str:
    """A salted PBKDF2-SHA256 hash in the users file's format."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{_ALGORITHM}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        algorithm, iterations, salt, expected = encoded.split("$")
        if algorithm != _ALGORITHM:
            return False
        digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), _unb64(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, _unb64(expected))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Caller:
    """Who is asking: anonymous, the guest, or a user with grants to restricted collections."""

    user: str | None = None
    grants: frozenset[str] = field(default_factory=frozenset)

    @property
    def authenticated(self) -> bool:
        return self.user is not None

    def can_see(self, collection_id: str, restricted: bool) -> bool:
        return not restricted or collection_id in self.grants

    def require(self, collection_id: str, restricted: bool) -> None:
        """Raise ``NotVisible`` (answered as 404, as for data that does not exist) unless the caller may see it.

        Restricted and missing must read the same to anyone without access: a 401 or 403
        would confirm that a restricted collection, version or UID exists.
        """
        if not self.can_see(collection_id, restricted):
            raise NotVisible()


class NotVisible(Exception):
    """Not published, or not for this caller: the two are answered alike (``NOT_FOUND``)."""


#: The one answer to a named collection version that does not exist or is restricted from the caller.
NOT_FOUND = "No such published collection version."


ANONYMOUS = Caller()


class TokenService:
    """Issues and checks HS256-signed access and refresh tokens."""

    def __init__(
        self, secret: bytes | None, users: UsersFile, access_ttl_s: int, refresh_ttl_s: int,
        session_max_s: int = 86400,
    ) -> None:
        self._secret = secret
        self.users = users
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.session_max_s = session_max_s
        self._dummy: str | None = None
        self._spent: dict[str, float] = {}  # refresh token id -> its expiry (then forgotten)
        self._ended: dict[str, float] = {}  # session id -> when the session would have ended anyway
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._secret is not None

    # -- issuing ---------------------------------------------------------------------------

    def password_grant(self, username: str, password: str) -> dict[str, Any]:
        if not self.enabled:
            raise AuthError(400, "this archive has no user accounts: every collection it serves is public",
                            error="unauthorized_client")
        if username == GUEST_USER:
            return self._grant(GUEST_USER, [])
        user = self.users.users.get(username)
        # Hash as long for unknown users, so that timing does not tell which names exist.
        encoded = user.password_hash if user else self._dummy_hash()
        if not verify_password(password, encoded) or user is None:
            raise AuthError(401, "invalid user credentials", error="invalid_grant")
        return self._grant(username, sorted(user.collections))

    def _dummy_hash(self) -> str:
        if self._dummy is None:
            rounds = [int(u.password_hash.split("$")[1]) for u in self.users.users.values()]
            self._dummy = hash_password(secrets.token_hex(16), iterations=max(rounds, default=_DEFAULT_ITERATIONS))
        return self._dummy

    def refresh_grant(self, refresh_token: str) -> dict[str, Any]:
        """A new token pair for a valid, unspent refresh token of a live session; the token is spent."""
        claims = self._verify(refresh_token, "refresh")
        user, jti, sid, auth_time = claims["sub"], claims.get("jti"), claims.get("sid"), claims.get("auth_time")
        if not isinstance(jti, str) or not isinstance(sid, str) or not isinstance(auth_time, int):
            raise AuthError(401, "the token is not a valid refresh token")
        now = time.time()
        with self._lock:
            self._forget_expired(now)
            if sid in self._ended:
                raise AuthError(401, "this session has ended; log in again at /nbia-api/oauth/token")
            if jti in self._spent:  # replayed: someone else holds a copy; end the session for both
                self._ended[sid] = auth_time + self.session_max_s
                raise AuthError(401, "this refresh token was already used; the session has ended, log in again")
            self._spent[jti] = float(claims["exp"])
        if now >= auth_time + self.session_max_s:
            raise AuthError(401, "the session has reached its maximum lifetime; log in again")
        return self._grant(user, [] if user == GUEST_USER else sorted(self._current_grants(user)), sid, auth_time)

    def end_session(self, sid: str) -> None:
        with self._lock:
            self._ended[sid] = time.time() + self.session_max_s

    def _forget_expired(self, now: float) -> None:
        for table in (self._spent, self._ended):
            if len(table) > 1024:
                for key in [k for k, until in table.items() if until < now]:
                    del table[key]

    def _grant(self, user: str, collections: list[str], sid: str | None = None,
               auth_time: int | None = None) -> dict[str, Any]:
        now = int(time.time())
        sid = sid or secrets.token_hex(16)
        auth_time = now if auth_time is None else auth_time
        ends = auth_time + self.session_max_s
        refresh_exp = min(now + self.refresh_ttl_s, ends)
        access_exp = min(now + self.access_ttl_s, ends)
        access = self._sign({"sub": user, "collections": collections, "typ": "access", "iat": now,
                             "exp": access_exp, "jti": secrets.token_hex(8), "sid": sid})
        refresh = self._sign({"sub": user, "typ": "refresh", "iat": now, "exp": refresh_exp,
                              "jti": secrets.token_hex(16), "sid": sid, "auth_time": auth_time})
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": access_exp - now,
            "refresh_token": refresh,
            "refresh_expires_in": refresh_exp - now,
            "scope": " ".join(f"collection:{c}" for c in collections),
        }

    # -- checking --------------------------------------------------------------------------

    def caller(self, authorization: str | None) -> Caller:
        """The caller behind an ``Authorization`` header; no header is the anonymous caller."""
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "the Authorization header must be 'Bearer <token>'", error="invalid_request")
        claims = self._verify(token.strip(), "access")
        if claims.get("sid") in self._ended:
            raise AuthError(401, "this session has ended; log in again at /nbia-api/oauth/token")
        user = claims["sub"]
        if user == GUEST_USER:
            return Caller(user=user)
        granted = frozenset(str(c) for c in claims.get("collections", []))
        return Caller(user=user, grants=granted & self._current_grants(user))

    def _current_grants(self, user: str) -> frozenset[str]:
        grant = self.users.users.get(user)
        if grant is None:
            raise AuthError(401, "the token's user no longer exists")
        return frozenset(grant.collections)

    def _sign(self, claims: dict[str, Any]) -> str:
        assert self._secret is not None
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        signature = hmac.new(self._secret, f"{header}.{payload}".encode("ascii"), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    def _verify(self, token: str, kind: str) -> dict[str, Any]:
        if self._secret is None:
            raise AuthError(401, "this archive does not accept tokens: it has no user accounts")
        try:
            header_b64, payload_b64, signature_b64 = token.split(".")
            header = json.loads(_unb64(header_b64))
            expected = hmac.new(self._secret, f"{header_b64}.{payload_b64}".encode("ascii"), hashlib.sha256).digest()
            valid = header.get("alg") == "HS256" and hmac.compare_digest(expected, _unb64(signature_b64))
            claims = json.loads(_unb64(payload_b64)) if valid else None
        except (ValueError, TypeError, AttributeError, UnicodeError):
            raise AuthError(401, "the token is malformed") from None
        if not isinstance(claims, dict):
            raise AuthError(401, "the token's signature is not valid")
        if claims.get("typ") != kind or not isinstance(claims.get("sub"), str):
            raise AuthError(401, f"the token is not a valid {kind} token")
        if not isinstance(claims.get("exp"), int) or claims["exp"] < time.time():
            raise AuthError(401, "the token has expired; get a new one from /nbia-api/oauth/token")
        return claims
