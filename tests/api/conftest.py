"""An archive filled by real ingests, and the API serving it as its own process on loopback.

Built once per session (the ingests take ~30 s together):

* ``demo``: the shipped demo collection (public), two submissions, so two versions;
* ``demo_restricted`` and ``demo_restricted_b``: restricted collections of one patient each.

The server runs ``imaging-ingest api`` in a subprocess with its own users file and token
secret (generated here, never committed): alice may see ``demo_restricted``, bob
``demo_restricted_b``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from imaging_ingest.api.auth import hash_password
from imaging_ingest.catalog import Catalog
from imaging_ingest.config import CollectionConfig, DropConfig, License, load_collection_config
from imaging_ingest.config.settings import Settings
from imaging_ingest.pipeline.ingest import Ingest
from imaging_ingest.storage.objects import ObjectStore
from imaging_ingest.synth.generate import generate_submission

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = ROOT / "dags" / "collections" / "demo.yaml"
SECRET = b"b4fd58cce48365f40f7667e1de9a1a95f880989b960509a1b566300e6ff13fa9"  # test-only key (public)
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22"}
GRANTS = {"alice": ["demo_restricted"], "bob": ["demo_restricted_b"]}


@dataclass(frozen=True)
class ApiArchive:
    settings: Settings
    catalog: Catalog
    store: ObjectStore
    summaries: dict[str, list[dict[str, Any]]]


def _submission(drop: Path, name: str, patients: int, seed: int, cache: Path | None = None) -> Path:
    target = drop / name
    if cache is not None:
        shutil.copytree(cache, target)
    else:
        generate_submission(target, patients=patients, seed=seed)
    (target / "READY").write_text("complete\n")
    return target


def _restricted(config: CollectionConfig, collection_id: str, prefix: str, drop: Path) -> CollectionConfig:
    return CollectionConfig(
        id=collection_id,
        title=f"Restricted test collection {prefix}",
        license=License.RESTRICTED,
        tier="restricted",
        drop=DropConfig(url=drop.as_uri()),
        modalities=config.modalities,
        deid=config.deid.model_copy(update={"pseudonym_prefix": prefix}),
    )


@pytest.fixture(scope="session")
def api_archive(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str, synth_cache: Path) -> Iterator[ApiArchive]:
    home = tmp_path_factory.mktemp("api-archive")
    settings = Settings(
        home=home / "home",
        catalog_url=f"sqlite:///{home / 'home' / 'catalog.sqlite'}",
        s3_endpoint=s3_endpoint,
        bucket_prefix=f"api{uuid.uuid4().hex[:10]}",
    )
    store = ObjectStore(settings)
    store.ensure_buckets()
    catalog = Catalog.from_url(settings.catalog_url)
    summaries: dict[str, list[dict[str, Any]]] = {}

    demo_drop = home / "drop-demo"
    demo_drop.mkdir()
    demo = load_collection_config(DEMO_CONFIG, environ={"IMAGING_INGEST_HOME": str(home)})
    demo = demo.model_copy(update={"drop": demo.drop.model_copy(update={"url": demo_drop.as_uri()})})
    ingest = Ingest(demo, settings, secret=SECRET, catalog=catalog, store=store)
    _submission(demo_drop, "site-a-batch-1", 2, 11, cache=synth_cache)
    summaries["demo"] = [ingest.run()]
    _submission(demo_drop, "site-a-batch-2", 1, 12)
    summaries["demo"].append(Ingest(demo, settings, secret=SECRET, catalog=catalog, store=store).run())

    for collection_id, prefix, seed in (("demo_restricted", "RSTA", 21), ("demo_restricted_b", "RSTB", 22)):
        drop = home / f"drop-{collection_id}"
        drop.mkdir()
        _submission(drop, "site-b-batch-1", 1, seed)
        config = _restricted(demo, collection_id, prefix, drop)
        summaries[collection_id] = [Ingest(config, settings, secret=SECRET, catalog=catalog, store=store).run()]
    for runs in summaries.values():
        assert all(r is not None and r["published"] > 0 for r in runs), runs
    yield ApiArchive(settings, catalog, store, summaries)
    catalog.dispose()


@pytest.fixture(scope="session")
def api_users(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A users file and a token secret made for this session; the environment naming them."""
    folder = tmp_path_factory.mktemp("api-users")
    users = {
        "users": {
            name: {"password_hash": hash_password(password, iterations=1000), "collections": GRANTS[name]}
            for name, password in PASSWORDS.items()
        }
    }
    users_file = folder / "users.yaml"
    users_file.write_text(yaml.safe_dump(users))
    secret_file = folder / "token.secret"
    secret_file.write_text(secrets.token_hex(32))
    return {"IMAGING_INGEST_API_USERS_FILE": str(users_file), "IMAGING_INGEST_API_TOKEN_SECRET_FILE": str(secret_file)}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def archive_environment(settings: Settings) -> dict[str, str]:
    return {
        "IMAGING_INGEST_HOME": str(settings.home),
        "IMAGING_INGEST_CATALOG_URL": settings.catalog_url,
        "IMAGING_INGEST_S3_ENDPOINT": settings.s3_endpoint or "",
        "IMAGING_INGEST_BUCKET_PREFIX": settings.bucket_prefix,
    }


@pytest.fixture(scope="session")
def api_server(api_archive: ApiArchive, api_users: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``imaging-ingest api`` in its own process on a free loopback port; yields its base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("api-server") / "server.log"
    env = os.environ | archive_environment(api_archive.settings) | api_users | {
        "IMAGING_INGEST_API_REFRESH_S": "0",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), os.environ.get("PYTHONPATH", "")]),
    }
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "imaging_ingest.cli", "api", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the API server exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def nbia(api_server: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The real tcia_utils NBIA client, pointed at our server (it has no base-URL setting)."""
    from tcia_utils import nbia as client

    monkeypatch.setattr(client, "setApiUrl", lambda endpoint, api_url="": f"{api_server}/nbia-api/services/v4/")
    return client


def token_for(base: str, user: str) -> str:
    answer = httpx.post(f"{base}/nbia-api/oauth/token",
                        data={"username": user, "password": PASSWORDS[user], "grant_type": "password",
                              "client_id": "NBIA"})
    answer.raise_for_status()
    return str(answer.json()["access_token"])
