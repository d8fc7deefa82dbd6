"""Mirror and download throughput against the plain-copy floor of the same objects on the same S3 servers.

Two moto S3 servers, each in a process of its own on loopback, play the archive's
primary store and a mirror target. A collection version of ``BENCH_OBJECTS`` objects of
``BENCH_SIZE`` random bytes is registered in a SQLite catalog and published (objects,
release.json, release index). Then, ``BENCH_RUNS`` times each, into fresh buckets/folders:

- mirror: ``sync_collection`` (listing, copies with SHA-256 checked by the server, the
  version's metadata, release.json last, then the in-sync verification: a HEAD per key);
- mirror floor: the same objects copied with plain GET + PUT, no checksum, no verification;
- download: ``from_index`` + ``download`` (anonymous, resumable, every object hashed);
- download floor: plain GET written to files, no hashing.

Both sides use ``BENCH_WORKERS`` threads. MB/s counts the objects' bytes (1 MB = 10^6 B).

    make bench-mirror        # writes bench/results/mirror.json
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "include"))

OBJECTS = int(os.environ.get("BENCH_OBJECTS", "200"))
SIZE = int(os.environ.get("BENCH_SIZE", str(512 * 1024)))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "8"))
OUT = Path(os.environ.get("BENCH_OUT", REPO / "bench" / "results" / "mirror.json"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    server = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("moto_server did not start")


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def publish_fixture(store: Any, catalog: Any, config: Any) -> dict[str, Any]:
    """One published version of OBJECTS random objects (10 series per study, 20 instances per series)."""
    from imaging_ingest.catalog import InstanceRecord
    from imaging_ingest.publish.index import write_release_index

    collection = config.id
    catalog.ensure_collection(config)
    submission = "sub-" + uuid.uuid4().hex[:16]
    catalog.discover(collection, submission, "bench", "file:///bench", "0" * 64)
    id_hash = hashlib.sha256(b"bench-patient").hexdigest()
    pseudonym = catalog.assign_pseudonyms(collection, "BENCH", [id_hash])[id_hash]
    records, listing = [], {}
    for n in range(OBJECTS):
        data = os.urandom(SIZE)
        study, series, sop = f"2.25.{1000 + n // 200}", f"2.25.{2000 + n // 20}", f"2.25.{10_000_000 + n}"
        key = f"{collection}/{study}/{series}/{sop}.dcm"
        sha256, md5 = hashlib.sha256(data).hexdigest(), hashlib.md5(data, usedforsecurity=False).hexdigest()
        store.put_bytes("public", key, data)
        records.append(InstanceRecord(pseudonym, id_hash, study, "20200101", None, series, "CT", "CHEST", None, None,
                                      sop, "1.2.840.10008.5.1.4.1.1.2", key, "public", SIZE, sha256, md5))
        listing[key] = {"key": key, "size": SIZE, "sha256": sha256, "md5": md5, "patient": pseudonym,
                        "study_uid": study, "series_uid": series, "sop_uid": sop}
    catalog.register(collection, submission, records)
    release = {"collection": collection, "title": config.title, "license": config.license.value, "version": 1,
               "previous_version": None, "kind": "submission", "doi": f"10.5072/imaging.{collection}.v1",
               "citation": "Bench (2026). Bench collection (Version 1) [Data set].",
               "created": datetime.now(UTC).isoformat(timespec="seconds"), "objects": list(listing.values())}
    release["index"] = write_release_index(store, catalog, "public", release, listing, {})
    store.put_json("public", f"{collection}/versions/1/release.json", release)
    catalog.apply_release(collection, 1, f"{collection}/versions/1/release.json", list(listing), total_bytes=SIZE * OBJECTS,
                          submission_id=submission, doi=release["doi"])
    return release


def summary(values: list[float]) -> dict[str, Any]:
    return {"runs": [round(v, 2) for v in values], "median": round(statistics.median(values), 2),
            "min": round(min(values), 2), "max": round(max(values), 2),
            "spread_pct": round(100 * (max(values) - min(values)) / statistics.median(values), 1)}


def main() -> int:
    import boto3
    from botocore.config import Config

    from imaging_ingest.catalog import Catalog
    from imaging_ingest.config import load_collection_config
    from imaging_ingest.config.settings import Settings
    from imaging_ingest.download.selection import from_index
    from imaging_ingest.download.transfer import S3Source, download
    from imaging_ingest.mirror.config import MirrorTarget
    from imaging_ingest.mirror.sync import MirrorStore, sync_collection
    from imaging_ingest.storage.objects import ObjectStore
    from imaging_ingest.storage.tiers import init_storage

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    work = Path(tempfile.mkdtemp(prefix="imaging-bench-mirror-"))
    primary_process, primary = start_moto()
    mirror_process, mirror_endpoint = start_moto()
    try:
        settings = Settings(home=work / "home", catalog_url=f"sqlite:///{work / 'catalog.sqlite'}", s3_endpoint=primary,
                            bucket_prefix="bench")
        store = ObjectStore(settings)
        init_storage(store)
        catalog = Catalog.from_url(settings.catalog_url)
        config = load_collection_config(REPO / "dags" / "collections" / "demo.yaml", environ={}).model_copy(
            update={"id": "bench", "title": "Bench collection"})
        publish_fixture(store, catalog, config)
        total_mb = OBJECTS * SIZE / 1e6
        keys = sorted(store.sizes("public", "bench/"))
        objects = [k for k in keys if k.endswith(".dcm")]
        client_config = Config(s3={"addressing_style": "path"}, max_pool_connections=32,
                               request_checksum_calculation="when_required",
                               response_checksum_validation="when_required")
        src = boto3.client("s3", endpoint_url=primary, config=client_config)
        dst = boto3.client("s3", endpoint_url=mirror_endpoint, config=client_config)
        results: dict[str, list[float]] = {"mirror": [], "mirror_floor": [], "download": [], "download_floor": []}
        for run in range(RUNS):
            target = MirrorTarget(id="bench", endpoint=mirror_endpoint, bucket=f"bench-mirror-{run}")
            mirror = MirrorStore(target)
            mirror.ensure_bucket()
            started = time.perf_counter()
            report = sync_collection(store, catalog, mirror, "bench", workers=WORKERS)
            results["mirror"].append(total_mb / (time.perf_counter() - started))
            assert report.ok and report.copied == len(keys), report.as_dict()

            floor_bucket = f"bench-floor-{run}"
            dst.create_bucket(Bucket=floor_bucket)

            def copy(key: str, bucket: str = floor_bucket) -> None:
                body = src.get_object(Bucket=settings.bucket("public"), Key=key)["Body"].read()
                dst.put_object(Bucket=bucket, Key=key, Body=body)

            started = time.perf_counter()
            with ThreadPoolExecutor(WORKERS) as pool:
                list(pool.map(copy, objects))
            results["mirror_floor"].append(total_mb / (time.perf_counter() - started))

            dest = work / f"download-{run}"
            source = S3Source(settings.bucket("public"), primary, anonymous=True)
            started = time.perf_counter()
            selection = from_index(source, "bench", 1)
            download(selection, source, dest, workers=WORKERS, progress=False)
            results["download"].append(total_mb / (time.perf_counter() - started))
            shutil.rmtree(dest)

            floor_dest = work / f"floor-{run}"

            def fetch(key: str, root: Path = floor_dest) -> None:
                path = root / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(src.get_object(Bucket=settings.bucket("public"), Key=key)["Body"].read())

            started = time.perf_counter()
            with ThreadPoolExecutor(WORKERS) as pool:
                list(pool.map(fetch, objects))
            results["download_floor"].append(total_mb / (time.perf_counter() - started))
            shutil.rmtree(floor_dest)
            print(f"run {run + 1}/{RUNS}: " + ", ".join(f"{k} {v[-1]:.1f} MB/s" for k, v in results.items()), flush=True)
        catalog.dispose()
    finally:
        for process in (primary_process, mirror_process):
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    stats = {name: summary(values) for name, values in results.items()}
    report_doc = {
        "benchmark": "mirror",
        "what": "mirror (sync_collection) and download (imaging-ingest download's from_index + download) throughput "
                "against plain GET+PUT / GET-to-file copies of the same objects with the same moto S3 servers "
                "(each its own process, loopback); MB/s of object bytes, 1 MB = 10^6 bytes",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **git_state(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_1m": round(os.getloadavg()[0], 2)},
        "settings": {"objects": OBJECTS, "object_bytes": SIZE, "total_mb": round(OBJECTS * SIZE / 1e6, 1),
                     "workers": WORKERS, "runs": RUNS},
        "mb_per_s": stats,
        "ratio_to_floor": {
            "mirror": round(stats["mirror"]["median"] / stats["mirror_floor"]["median"], 2),
            "download": round(stats["download"]["median"] / stats["download_floor"]["median"], 2),
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report_doc, indent=2) + "\n")
    print(json.dumps(report_doc["mb_per_s"], indent=1), json.dumps(report_doc["ratio_to_floor"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
