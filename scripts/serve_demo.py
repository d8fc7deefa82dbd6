"""``make serve``: the NBIA-compatible API over the demo archive, in the foreground.

The demo's object store is moto on loopback, which forgets everything when its process
ends. So this script keeps the demo archive under ``.demo/serve/``: the catalog (SQLite)
and a copy of the published tiers' objects (``objects/{tier}/{key}``). At each start it
launches moto, loads the saved objects back into it, and serves. When there is nothing
saved yet, or the copy does not match the catalog, it runs the demo ingest first (a
synthetic submission through every stage, in this process, ~20-40 s) and saves the
result. ``--fresh`` starts over.

With the OHIF viewer installed (``make viewer``), it also serves the viewer on its own
port (``--viewer-port``, default 8089), reading DICOMweb from that same origin.

Besides the public ``demo`` collection it publishes ``demo_restricted`` (one patient)
and creates the user ``demo`` with a random password saved in ``.demo/serve/demo-user.txt``,
so that the token flow can be tried too.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "dags"))
sys.path.insert(0, str(REPO / "include"))

TIERS = ("public", "restricted")


def _settings(home: Path, endpoint: str):  # type: ignore[no-untyped-def]
    from imaging_ingest.config.settings import Settings

    return Settings(home=home, catalog_url=f"sqlite:///{home / 'catalog.sqlite'}", s3_endpoint=endpoint,
                    bucket_prefix="imaging")


def _saved_archive_matches(home: Path) -> bool:
    """The catalog exists and every version it records has its release manifest saved."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from imaging_ingest.api.queries import connect
    from imaging_ingest.catalog.models import Collection, CollectionVersion

    if not (home / "catalog.sqlite").exists() or not (home / "objects").is_dir():
        return False
    engine = connect(f"sqlite:///{home / 'catalog.sqlite'}")
    try:
        with Session(engine) as s:
            rows = s.execute(select(CollectionVersion.release_key, Collection.tier)
                             .join(Collection, Collection.id == CollectionVersion.collection_id)).all()
    except Exception:
        return False
    finally:
        engine.dispose()
    return bool(rows) and all((home / "objects" / tier / key).is_file() for key, tier in rows)


def _restore(home: Path, store) -> int:  # type: ignore[no-untyped-def]
    count = 0
    for tier in TIERS:
        root = home / "objects" / tier
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            store.put_file(tier, path.relative_to(root).as_posix(), path)
            count += 1
    return count


def _save(home: Path, store) -> int:  # type: ignore[no-untyped-def]
    count = 0
    for tier in TIERS:
        for info in store.list(tier):
            store.download(tier, info.key, home / "objects" / tier / info.key)
            count += 1
    return count


def _ingest(home: Path, settings, patients: int, seed: int) -> None:  # type: ignore[no-untyped-def]
    from imaging_ingest.api.auth import hash_password
    from imaging_ingest.catalog import Catalog
    from imaging_ingest.config import CollectionConfig, DropConfig, License, load_collection_config
    from imaging_ingest.pipeline.ingest import Ingest
    from imaging_ingest.synth.generate import generate_submission

    secret = secrets.token_hex(32).encode()
    (home / "secret.key").write_bytes(secret + b"\n")
    (home / "secret.key").chmod(0o600)
    catalog = Catalog.from_url(settings.catalog_url)
    demo = load_collection_config(REPO / "dags" / "collections" / "demo.yaml", environ={"IMAGING_INGEST_DROP_ROOT": str(home / "drop")})
    restricted = CollectionConfig(
        id="demo_restricted",
        title="Demo Restricted Collection",
        license=License.RESTRICTED,
        tier="restricted",
        drop=DropConfig(url=(home / "drop" / "demo_restricted").as_uri()),
        modalities=demo.modalities,
        deid=demo.deid.model_copy(update={"pseudonym_prefix": "DEMOR"}),
    )
    for config, count, submission_seed in ((demo, patients, seed), (restricted, 1, seed + 1)):
        drop = home / "drop" / config.id
        submission = drop / f"site-a-{count}p-seed{submission_seed}"
        generate_submission(submission, patients=count, seed=submission_seed)
        (submission / "READY").write_text("complete\n", encoding="utf-8")
        config = config.model_copy(update={"drop": config.drop.model_copy(update={"url": drop.as_uri()})})
        summary = Ingest(config, settings, secret=secret, catalog=catalog).run()
        if summary is None:
            raise RuntimeError(f"the demo ingest of {config.id} found nothing to publish")
        print(f"  {config.id}: {summary['published']} published, {summary['quarantined']} quarantined "
              f"(version {summary['version']})", flush=True)
    catalog.dispose()
    password = secrets.token_urlsafe(12)
    users = home / "users.yaml"
    users.write_text(f"users:\n  demo:\n    password_hash: \"{hash_password(password)}\"\n"
                     "    collections: [demo_restricted]\n", encoding="utf-8")
    (home / "demo-user.txt").write_text(f"user: demo\npassword: {password}\n", encoding="utf-8")
    (home / "demo-user.txt").chmod(0o600)
    (home / "token.secret").write_text(secrets.token_hex(32) + "\n", encoding="utf-8")
    (home / "token.secret").chmod(0o600)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", default=str(REPO / ".demo" / "serve"), help="where the demo archive is kept")
    parser.add_argument("--host", default=os.environ.get("API_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("API_PORT", "8088")))
    parser.add_argument("--viewer-port", type=int, default=int(os.environ.get("VIEWER_PORT", "8089")))
    parser.add_argument("--viewer-dist", default=str(REPO / ".viewer" / "ohif"),
                        help="the OHIF build (make viewer installs it)")
    parser.add_argument("--patients", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fresh", action="store_true", help="discard the saved demo archive and ingest again")
    args = parser.parse_args()

    import uvicorn

    from imaging_dags.local import s3_server
    from imaging_ingest.api import ApiSettings, create_app
    from imaging_ingest.storage.objects import ObjectStore

    home = Path(args.home).resolve()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "demo")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "demo")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    if args.fresh and home.exists():
        shutil.rmtree(home)
    with s3_server() as endpoint:
        settings = _settings(home, endpoint)
        started = time.perf_counter()
        if _saved_archive_matches(home):
            store = ObjectStore(settings)
            store.ensure_buckets()
            print(f"Loading the saved demo archive from {home} ...", flush=True)
            count = _restore(home, store)
            print(f"  {count} objects restored in {time.perf_counter() - started:.1f} s", flush=True)
        else:
            if home.exists():
                shutil.rmtree(home)
            home.mkdir(parents=True)
            store = ObjectStore(settings)
            store.ensure_buckets()
            print("No saved demo archive: running the demo ingest (synthetic submissions, every stage) ...",
                  flush=True)
            _ingest(home, settings, args.patients, args.seed)
            count = _save(home, store)
            print(f"  done in {time.perf_counter() - started:.1f} s; {count} published objects saved to {home}",
                  flush=True)
        api_settings = ApiSettings(
            token_secret=(home / "token.secret").read_text(encoding="utf-8").strip(),
            users_file=home / "users.yaml",
            header_cache=home / "api" / "header-cache.sqlite",
            viewer_url=f"http://{args.host}:{args.viewer_port}" if (Path(args.viewer_dist) / "index.html").is_file()
            else None,
        )
        app = create_app(settings, api_settings)
        base = f"http://{args.host}:{args.port}"
        print(
            f"\nServing the demo archive at {base}/nbia-api/services/v4/  (Ctrl-C stops)\n"
            f"  try:       {base}/nbia-api/services/v4/getCollectionValues\n"
            f"  catalogue: {base}/catalogue\n"
            f"  DICOMweb:  {base}/dicomweb\n"
            f"  OpenAPI:   {base}/docs\n"
            f"  tcia_utils: nbia.setApiUrl = lambda endpoint, api_url='': '{base}/nbia-api/services/v4/'\n"
            f"  restricted collection demo_restricted: log in at {base}/nbia-api/oauth/token "
            f"with the user in {home / 'demo-user.txt'}\n",
            flush=True,
        )
        dist = Path(args.viewer_dist)
        if (dist / "index.html").is_file():
            import threading

            from imaging_ingest.api.viewer import viewer_app

            viewer = uvicorn.Server(uvicorn.Config(viewer_app(app, dist), host=args.host, port=args.viewer_port,
                                                   log_level="warning", lifespan="off"))
            threading.Thread(target=viewer.run, name="viewer", daemon=True).start()
            print(f"  viewer:    http://{args.host}:{args.viewer_port}/  (OHIF; DICOMweb at {base}/dicomweb)\n",
                  flush=True)
        else:
            print(f"  (no viewer: {dist} is missing; make viewer installs OHIF)\n", flush=True)
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
