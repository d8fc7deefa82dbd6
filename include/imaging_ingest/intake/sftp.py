"""SFTP drops (``sftp://host[:port]/path``) over paramiko, with transfers that survive disconnects.

The library never asks Airflow for credentials: it takes a *connector*, a callable that
returns a connected ``paramiko.SFTPClient``. ``connector`` builds one from a host, user
and key (the DAG side fills it from an Airflow Connection, see
``dags/imaging_dags/runtime.py``); ``connector_from_env`` reads the key and known-hosts
files from the environment for the CLI.

Listing uses the server's ``lstat`` attributes, so links and special files are listed
as what they are, never followed; names are read as bytes, so a name that is not valid
UTF-8 is listed (and quarantined) instead of breaking the listing.

A read that fails because the connection dropped (server restarted, network cut)
reconnects with exponential backoff and jitter and resumes at the byte offset reached,
after checking that the file still has the size and modification time it was listed
with; the caller's SHA-256 of the whole stream is then the file's (the raw tier verifies
it on upload).
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import posixpath
import random
import socket
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any
from urllib.parse import unquote, urlparse

import paramiko
from paramiko.sftp import CMD_CLOSE, CMD_OPENDIR, CMD_READDIR
from paramiko.sftp_attr import SFTPAttributes

from imaging_ingest.config import DropConfig
from imaging_ingest.intake.drops import (
    REPORTS_DIR,
    Drop,
    DropEntry,
    DropSubmission,
    SubmissionChanged,
    display_path,
    is_archive_name,
    is_report_area,
    report_path,
    unsafe_name_reason,
)

__all__ = ["SFTPDrop", "SubmissionChanged", "connector", "connector_from_env"]

log = logging.getLogger(__name__)

Connector = Callable[[], paramiko.SFTPClient]

#: What a dropped connection looks like from paramiko.
TRANSIENT = (paramiko.SSHException, EOFError, OSError, socket.timeout)
#: Bytes asked of the server at once while reading (paramiko splits them into pipelined requests).
READ_WINDOW = 1 << 20


def connector(
    host: str,
    username: str,
    *,
    port: int = 22,
    key_filename: str | None = None,
    private_key: str | None = None,
    host_key: str | None = None,
    known_hosts: str | None = None,
    no_host_key_check: bool = False,
    timeout: float = 30.0,
) -> Connector:
    """A callable that opens a new, authenticated SFTP session each time it is called.

    The server's host key must match ``host_key`` ("ssh-ed25519 AAAA..."), or an entry of
    ``known_hosts``; ``no_host_key_check`` turns this off (tests, never production).
    """
    pkey = _load_key(key_filename, private_key)
    expected = _parse_host_key(host_key) if host_key else None

    def connect() -> paramiko.SFTPClient:
        sock = socket.create_connection((host, port), timeout=timeout)
        transport = paramiko.Transport(sock)
        transport.banner_timeout = timeout
        transport.auth_timeout = timeout
        try:
            transport.start_client(timeout=timeout)
            _check_host_key(transport, host, port, expected, known_hosts, no_host_key_check)
            transport.auth_publickey(username, pkey)
            client = paramiko.SFTPClient.from_transport(transport)
            if client is None:
                raise paramiko.SSHException("no SFTP subsystem")
            client.get_channel().settimeout(timeout)
            transport.set_keepalive(15)
            return client
        except BaseException:
            transport.close()
            raise

    return connect


def _load_key(key_filename: str | None, private_key: str | None) -> paramiko.PKey:
    if private_key:
        for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
            try:
                return key_class.from_private_key(io.StringIO(private_key))
            except paramiko.SSHException:
                continue
        raise ValueError("the SFTP private key is not an unencrypted Ed25519, ECDSA or RSA key")
    if key_filename:
        return paramiko.PKey.from_path(key_filename)
    raise ValueError("an SFTP drop needs a private key (key_file or private_key)")


def _parse_host_key(text: str) -> paramiko.PKey:
    parts = text.split()
    if len(parts) < 2:
        raise ValueError("host_key must read '<type> <base64>', as a known_hosts line does")
    return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))


def _check_host_key(
    transport: paramiko.Transport,
    host: str,
    port: int,
    expected: paramiko.PKey | None,
    known_hosts: str | None,
    no_check: bool,
) -> None:
    if no_check:
        return
    key = transport.get_remote_server_key()
    if expected is not None:
        if key != expected:
            raise paramiko.BadHostKeyException(host, key, expected)
        return
    if known_hosts:
        keys = paramiko.HostKeys(known_hosts)
        name = host if port == 22 else f"[{host}]:{port}"
        if keys.check(name, key):
            return
        raise paramiko.SSHException(f"host key of {name} is not in {known_hosts}")
    raise paramiko.SSHException(
        f"no host key known for {host}: set host_key or known_hosts (or no_host_key_check)"
    )


def connector_from_env(url: str, environ: dict[str, str] | None = None) -> Connector:
    """A connector for ``sftp://user@host:port/path`` with the key files named in the environment."""
    env = os.environ if environ is None else environ
    parsed = urlparse(url)
    if not parsed.hostname:
        raise ValueError(f"SFTP drop URL {url!r} has no host")
    return connector(
        parsed.hostname,
        parsed.username or env.get("IMAGING_INGEST_SFTP_USER") or os.environ.get("USER", "root"),
        port=parsed.port or 22,
        key_filename=env.get("IMAGING_INGEST_SFTP_KEY_FILE"),
        known_hosts=env.get("IMAGING_INGEST_SFTP_KNOWN_HOSTS"),
    )


def _listdir(client: paramiko.SFTPClient, path: bytes) -> Iterator[tuple[bytes, SFTPAttributes]]:
    """READDIR with names kept as bytes (paramiko's own listing fails on names that are not UTF-8)."""
    _, msg = client._request(CMD_OPENDIR, path)
    handle = msg.get_binary()
    try:
        while True:
            try:
                _, msg = client._request(CMD_READDIR, handle)
            except EOFError:
                return
            for _ in range(msg.get_int()):
                name = msg.get_string()
                longname = msg.get_string()
                attr = SFTPAttributes._from_msg(msg, name, longname)
                if name not in (b".", b".."):
                    yield name, attr
    finally:
        client._request(CMD_CLOSE, handle)


def _kind(mode: int | None) -> str:
    mode = mode or 0
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISREG(mode):
        return "file"
    return "special"


class SFTPDrop(Drop):
    """A folder on an SFTP server; one sub-folder (or archive) per submission."""

    def __init__(
        self,
        config: DropConfig,
        connect: Connector,
        *,
        attempts: int = 8,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
    ) -> None:
        super().__init__(config)
        parsed = urlparse(config.url)
        self.host = parsed.hostname or ""
        self.root = (unquote(parsed.path) or "/").rstrip("/") or "/"
        self._connect = connect
        self._client: paramiko.SFTPClient | None = None
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.reconnects = 0

    # -- connection -----------------------------------------------------------------------

    @property
    def client(self) -> paramiko.SFTPClient:
        if self._client is None:
            self._client = self._retry(self._connect, "connect")
        return self._client

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):  # closing a dead connection
                transport = self._client.get_channel().get_transport()
                self._client.close()
                transport.close()
            self._client = None

    def _sleep(self, attempt: int) -> None:
        time.sleep(random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt)))

    def _retry(self, call: Callable[[], Any], what: str) -> Any:
        for attempt in range(self.attempts):
            try:
                return call()
            except paramiko.AuthenticationException:
                raise
            except paramiko.BadHostKeyException:
                raise
            except TRANSIENT as exc:
                if isinstance(exc, FileNotFoundError | PermissionError) or attempt == self.attempts - 1:
                    raise
                log.warning(
                    "sftp %s failed (%s); reconnecting (attempt %d)", what, type(exc).__name__, attempt + 1
                )
                self.close()
                self.reconnects += 1
                self._sleep(attempt)
        raise AssertionError("unreachable")

    def _with_client(self, call: Callable[[paramiko.SFTPClient], Any], what: str) -> Any:
        return self._retry(lambda: call(self.client), what)

    # -- listing --------------------------------------------------------------------------

    def _path(self, *parts: bytes | str) -> bytes:
        raw = [p.encode() if isinstance(p, str) else p for p in (self.root, *parts)]
        return posixpath.join(*raw)

    def submission_names(self) -> list[str]:
        def names(client: paramiko.SFTPClient) -> list[str]:
            found, unsafe = [], 0
            for name, attr in _listdir(client, self._path()):
                text = name.decode("utf-8", "surrogateescape")
                if text.startswith(".") or is_report_area(text):
                    continue
                if unsafe_name_reason(name):
                    unsafe += 1
                    continue
                if stat.S_ISDIR(attr.st_mode or 0) or (
                    stat.S_ISREG(attr.st_mode or 0) and is_archive_name(text)
                ):
                    found.append(text)
            if unsafe:  # the names may carry PHI: counted, never logged
                log.warning(
                    "sftp drop: %d submission name(s) with control characters or invalid UTF-8 "
                    "are not taken; rename them on the server",
                    unsafe,
                )
            return sorted(found)

        try:
            result: list[str] = self._with_client(names, "list")
        except FileNotFoundError:
            return []
        return result

    def _walk(self, client: paramiko.SFTPClient, base: bytes, rel: bytes = b"") -> list[DropEntry]:
        entries = []
        folder = posixpath.join(base, rel) if rel else base
        for name, attr in sorted(_listdir(client, folder), key=lambda item: item[0]):
            child = posixpath.join(rel, name) if rel else name
            if stat.S_ISDIR(attr.st_mode or 0):
                entries.extend(self._walk(client, base, child))
                continue
            kind = _kind(attr.st_mode)
            entries.append(
                DropEntry(
                    path=display_path(child),
                    size=int(attr.st_size or 0) if kind == "file" else 0,
                    kind=kind,
                    token=f"{attr.st_mtime}",
                    locator=posixpath.join(base, child).decode("utf-8", "surrogateescape"),
                    name_problem=unsafe_name_reason(child),
                )
            )
        return entries

    def submission(self, name: str) -> DropSubmission:
        base = self._path(name)
        url = f"sftp://{self.host}{base.decode('utf-8', 'surrogateescape')}"

        def listing(client: paramiko.SFTPClient) -> DropSubmission:
            attr = client.lstat(base)
            if stat.S_ISLNK(attr.st_mode or 0):
                raise SubmissionChanged("the submission folder is a symbolic link: refused")
            if stat.S_ISREG(attr.st_mode or 0) and is_archive_name(name):
                entry = DropEntry(
                    name,
                    int(attr.st_size or 0),
                    "file",
                    f"{attr.st_mtime}",
                    base.decode(),
                    unsafe_name_reason(name),
                )
                try:
                    client.lstat(self._path(f"{name}.{self.config.marker}"))
                    marker = True
                except FileNotFoundError:
                    marker = False
                return DropSubmission(name, url, (entry,), marker)
            entries = self._walk(client, base)
            marker = any(e.path == self.config.marker and e.kind == "file" for e in entries)
            entries = [e for e in entries if e.path != self.config.marker]
            return DropSubmission(name, url, tuple(entries), marker)

        result: DropSubmission = self._with_client(listing, "list")
        return result

    # -- the site's report -----------------------------------------------------------------

    def write_report(self, submission: str, name: str, data: bytes) -> None:
        """Write ``reports/<submission>/<name>`` (a temporary name, then a rename over the old report)."""
        folder, filename = report_path(submission, name)
        target_dir = self._path(REPORTS_DIR, folder)

        def write(client: paramiko.SFTPClient) -> None:
            for path in (self._path(REPORTS_DIR), target_dir):
                try:
                    attr = client.lstat(path)
                except FileNotFoundError:
                    client.mkdir(path)
                    continue
                if not stat.S_ISDIR(attr.st_mode or 0):
                    raise SubmissionChanged("the drop's report folder is not a folder: refused")
            tmp = posixpath.join(target_dir, f".{filename}.partial".encode())
            with client.open(tmp, "wb") as out:
                out.write(data)
            client.posix_rename(tmp, posixpath.join(target_dir, filename.encode()))

        self._with_client(write, "write report")

    # -- reading --------------------------------------------------------------------------

    @contextmanager
    def open(self, entry: DropEntry) -> Iterator[IO[bytes]]:
        if entry.kind != "file":
            raise ValueError(f"{entry.path}: not a regular file ({entry.kind})")
        reader = ResumableReader(self, entry)
        try:
            yield reader  # type: ignore[misc]
        finally:
            reader.close()


class ResumableReader(io.RawIOBase):
    """Reads one remote file front to back; after a disconnect, reconnects and resumes at the offset."""

    def __init__(self, drop: SFTPDrop, entry: DropEntry) -> None:
        super().__init__()
        self.drop = drop
        self.entry = entry
        self.path = entry.locator.encode("utf-8", "surrogateescape")
        self.offset = 0
        self._fh: paramiko.SFTPFile | None = None

    def readable(self) -> bool:
        return True

    def _open(self, client: paramiko.SFTPClient) -> paramiko.SFTPFile:
        attr = client.lstat(self.path)
        if (
            not stat.S_ISREG(attr.st_mode or 0)
            or int(attr.st_size or 0) != self.entry.size
            or (f"{attr.st_mtime}" != self.entry.token)
        ):
            raise SubmissionChanged(
                "a file of the submission changed on the server since it was listed: refused"
            )
        fh = client.open(self.path, "rb")
        fh.seek(self.offset)
        return fh

    def _read_once(self, size: int) -> bytes:
        if self._fh is None:
            self._fh = self._open(self.drop.client)
        want = min(size, self.entry.size - self.offset)
        if want <= 0:
            return b""
        data = b"".join(self._fh.readv([(self.offset, want)]))
        if len(data) != want:
            raise EOFError(f"short read at offset {self.offset}")
        return data

    def read(self, size: int = -1) -> bytes:
        size = READ_WINDOW if size is None or size < 0 else size
        for attempt in range(self.drop.attempts):
            try:
                data = self._read_once(size)
                self.offset += len(data)
                return data
            except SubmissionChanged:
                raise
            except TRANSIENT as exc:
                if isinstance(exc, FileNotFoundError | PermissionError) or attempt == self.drop.attempts - 1:
                    raise
                log.warning(
                    "sftp read of file interrupted at byte %d (%s); resuming", self.offset, type(exc).__name__
                )
                self._fh = None
                self.drop.close()
                self.drop.reconnects += 1
                self.drop._sleep(attempt)
        raise AssertionError("unreachable")

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(Exception):  # closing after a dropped connection
                self._fh.close()
            self._fh = None
        super().close()
