"""Where the test suite finds PostgreSQL and Redis, and the system tools its markers stand for.

One setting each names the services (URLs; the root ``conftest.py`` keeps them when it clears
the other ``IMAGING_INGEST_*`` variables):

* ``IMAGING_INGEST_TEST_PG``: a PostgreSQL server with trust auth and a database the tests
  may create databases and schemas from (default ``postgresql://postgres@127.0.0.1:5432/test``);
* ``IMAGING_INGEST_TEST_REDIS``: a Redis server (default ``redis://127.0.0.1:6379``).

``make test`` runs the suite through ``scripts/test_services.py``, which starts throwaway
instances and points these settings at them when nothing answers at the configured ones.

``REQUIREMENTS`` maps each marker that stands for something outside Python to how the suite
checks for it and which Debian package brings it: a marked test whose requirement is missing
fails naming the package (never skips), and ``make unit`` deselects them all through the
``system`` marker the root ``conftest.py`` adds to each.
"""

from __future__ import annotations

import ctypes.util
import functools
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

PG_SETTING = "IMAGING_INGEST_TEST_PG"
REDIS_SETTING = "IMAGING_INGEST_TEST_REDIS"
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_DEFAULT = "redis://127.0.0.1:6379"


def pg_url(database: str | None = None, driver: str | None = "psycopg") -> str:
    """The test server's URL (SQLAlchemy form, ``postgresql+<driver>://``), for ``database`` if given.

    ``driver=None`` gives the plain ``postgresql://`` form libpq and psycopg take.
    """
    url = make_url(os.environ.get(PG_SETTING) or PG_DEFAULT)
    url = url.set(drivername="postgresql" if driver is None else f"postgresql+{driver}")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def redis_url(db: int = 0) -> str:
    """The test Redis server's URL for logical database ``db``."""
    base = (os.environ.get(REDIS_SETTING) or REDIS_DEFAULT).rstrip("/")
    scheme, _, rest = base.partition("://")
    return f"{scheme}://{rest.split('/')[0]}/{db}"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@functools.cache
def pg_answers() -> bool:
    url = make_url(pg_url())
    return _answers(url.host or "127.0.0.1", url.port or 5432)


@functools.cache
def redis_answers() -> bool:
    host_port = redis_url().split("://")[1].split("/")[0].rsplit("@", 1)[-1]
    host, _, port = host_port.rpartition(":")
    return _answers(host or "127.0.0.1", int(port or 6379))


def _executables(*names: str) -> Callable[[], bool]:
    return lambda: all(shutil.which(n) or Path(n).is_file() for n in names)


@functools.cache
def _openslide_loads() -> bool:
    """OpenSlide's C library loads (what ``import openslide`` needs)."""
    name = ctypes.util.find_library("openslide")
    if name is None:
        return False
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Requirement:
    """Something outside Python a marked test needs: how to tell it is there, and what brings it."""

    what: str
    present: Callable[[], bool]
    remedy: str


_APT = "Debian package {}: `make system-deps` installs it"
_SERVICE = "{} does not answer at {} (set {}); `make test` starts a throwaway one (scripts/test_services.py, Debian package {})"

REQUIREMENTS: dict[str, Requirement] = {
    "dciodvfy": Requirement("dicom3tools' dciodvfy", _executables("dciodvfy"), _APT.format("dicom3tools")),
    "ocr": Requirement("Tesseract", _executables("tesseract"), _APT.format("tesseract-ocr")),
    "openslide": Requirement("the OpenSlide library", _openslide_loads, _APT.format("libopenslide0")),
    "sftp": Requirement("OpenSSH's sshd", _executables("/usr/sbin/sshd"), _APT.format("openssh-server")),
    "browser": Requirement("Chromium", _executables("/usr/bin/chromium"), _APT.format("chromium")),
    "compose": Requirement("docker-compose", _executables("docker-compose"), _APT.format("docker-compose")),
    "unzip": Requirement("Info-ZIP's unzip", _executables("unzip"), _APT.format("unzip")),
    "prometheus": Requirement("Prometheus and promtool", _executables("prometheus", "promtool"),
                              _APT.format("prometheus")),
    "postgres": Requirement("PostgreSQL", pg_answers, ""),
    "celery": Requirement("Redis", redis_answers, ""),
}


def missing(marker: str) -> str | None:
    """Why a test with ``marker`` cannot run here, or None when its requirement is met."""
    requirement = REQUIREMENTS[marker]
    if requirement.present():
        return None
    if marker == "postgres":
        return _SERVICE.format("PostgreSQL", make_url(pg_url()).render_as_string(), PG_SETTING, "postgresql")
    if marker == "celery":
        return _SERVICE.format("Redis", redis_url(), REDIS_SETTING, "redis-server")
    return f"{requirement.what} is missing: {requirement.remedy}"
