#!/usr/bin/env python3
"""Run a command (``make test``'s pytest) with a PostgreSQL and a Redis the tests can use.

The tests find the services through ``IMAGING_INGEST_TEST_PG`` and ``IMAGING_INGEST_TEST_REDIS``
(defaults: ``postgresql://postgres@127.0.0.1:5432/test``, ``redis://127.0.0.1:6379``). When
something answers at the configured address it is used as it is. When nothing does, this
starts a throwaway instance on a free loopback port, points the setting at it for the
command, and stops and deletes it afterwards, whatever the command did:

* PostgreSQL: Debian's ``postgresql`` (installed with apt if its binaries are missing);
  ``initdb`` into a temporary folder with trust auth, run as the ``postgres`` user when this
  runs as root (the server refuses to run as root), database ``test`` created;
* Redis: Debian's ``redis-server`` (installed if missing), no persistence, in a temporary folder.

The same path serves CI (root, fresh machine), a developer's laptop (a user with sudo, or
services already running) and a machine without network (packages installed beforehand).
Standard library only, so it runs before and without the virtual environment.

Usage: ``scripts/test_services.py -- COMMAND [ARGS...]``; exits with the command's status.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

PG_SETTING = "IMAGING_INGEST_TEST_PG"
REDIS_SETTING = "IMAGING_INGEST_TEST_REDIS"
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_DEFAULT = "redis://127.0.0.1:6379"
HOST = "127.0.0.1"


def say(message: str) -> None:
    print(f"test services: {message}", file=sys.stderr, flush=True)


def answers(url: str, default_port: int) -> bool:
    """Whether something accepts TCP connections where ``url`` points."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or HOST, parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def apt_install(*packages: str) -> None:
    """Install Debian packages (sudo when not root); fails loudly, naming them, when that is impossible."""
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    say(f"installing {' '.join(packages)}")
    for command in ([*sudo, "apt-get", "update", "-qq"], [*sudo, "apt-get", "install", "-y", "-qq", *packages]):
        done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit(f"test services: could not install {' '.join(packages)}: {done.stderr.strip()}")


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL's binaries (Debian keeps them out of PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        apt_install("postgresql")
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise SystemExit("test services: Debian's postgresql is installed but no initdb was found")
    return Path(found[-1]).parent


def wait_for(port: int, what: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"test services: {what} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.1)
    raise SystemExit(f"test services: {what} did not listen on {HOST}:{port} within {timeout:.0f} s")


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL cluster in a temporary folder on a free loopback port; yields its URL."""
    bindir = postgres_bindir()
    root = Path(tempfile.mkdtemp(prefix="imaging-ingest-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root: the package's system user runs it
        account = pwd.getpwnam("postgres")
        os.chown(root, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"
    port = free_port()
    try:
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--no-sync"], check=True, stdout=subprocess.DEVNULL)
        options = f"-c listen_addresses={HOST} -p {port} -k {root} -c fsync=off -c full_page_writes=off"
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                        "-w", "-t", "60", "start"], check=True, stdout=subprocess.DEVNULL)
        try:
            subprocess.run([*as_user, str(bindir / "createdb"), "-h", HOST, "-p", str(port), "-U", "postgres", "test"],
                           check=True)
            say(f"PostgreSQL {bindir.parent.name} started on {HOST}:{port} in {root}")
            yield f"postgresql://postgres@{HOST}:{port}/test"
        finally:
            subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           stdout=subprocess.DEVNULL, check=False)
    except subprocess.CalledProcessError as exc:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise SystemExit(f"test services: PostgreSQL failed ({exc}){chr(10) + tail if tail else ''}") from exc
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def throwaway_redis() -> Iterator[str]:
    """A Redis server without persistence in a temporary folder on a free loopback port; yields its URL."""
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(server).exists():
        apt_install("redis-server")
    root = Path(tempfile.mkdtemp(prefix="imaging-ingest-redis-"))
    port = free_port()
    process = subprocess.Popen(
        [server, "--bind", HOST, "--port", str(port), "--dir", str(root), "--save", "", "--appendonly", "no",
         "--daemonize", "no", "--logfile", str(root / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(port, "redis-server", process)
        say(f"Redis started on {HOST}:{port}")
        yield f"redis://{HOST}:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    # SIGTERM (CI's stop, a killed make) unwinds like Ctrl-C, so the instances are stopped and deleted
    signal.signal(signal.SIGTERM, _interrupt)
    env = dict(os.environ)
    with contextlib.ExitStack() as services:
        pg = env.get(PG_SETTING) or PG_DEFAULT
        if not answers(pg, 5432):
            say(f"no PostgreSQL answers at {urlsplit(pg).hostname}:{urlsplit(pg).port or 5432}: starting one")
            pg = services.enter_context(throwaway_postgres())
        env[PG_SETTING] = pg
        redis = env.get(REDIS_SETTING) or REDIS_DEFAULT
        if not answers(redis, 6379):
            say(f"no Redis answers at {urlsplit(redis).hostname}:{urlsplit(redis).port or 6379}: starting one")
            redis = services.enter_context(throwaway_redis())
        env[REDIS_SETTING] = redis
        try:
            return subprocess.run(argv, env=env).returncode
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
