"""``make bench-api``: the data-access API against a catalog of 5,000 series.

Builds an archive directly (bulk inserts into the catalog, a release manifest, objects in
a loopback moto S3), starts ``imaging-ingest api`` as its own process, and measures with
a bounded httpx loop:

* queries: requests per second and p50/p99 latency of getSeries (by SeriesInstanceUID,
  by PatientID, the whole collection), getPatientStudy and getSOPInstanceUIDs, one
  client at a time, plus the by-UID lookup with several concurrent clients;
* downloads: MB/s, time to first byte and p50/p99 latency of getImage zips of series whose
  objects are all stored;
* cold start: the first query on a fresh server with an empty header cache (one indexed catalog
  query and one DICOM header read), then its first whole-collection listing (which reads every
  series' header into the cache, before the queries are measured), and the first query after a
  restart with the cache kept.

To keep set-up modest, each query series has one stored object (its first instance,
whose header the API reads); its other instances are catalogued and listed in the
release but not stored, which the query endpoints never notice. Download series have
every object stored. ``--runs`` fresh servers (default 3; the header cache emptied before each)
give the median and spread of every figure. Writes ``bench/results/api.json`` with the
commit, whether the tree was dirty, and the machine (``bench/report.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "dags"))
sys.path.insert(0, str(REPO / "include"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "bench"))
from report import header, spread  # noqa: E402
from timing import Timing, percentile, summary, time_requests  # noqa: E402

RESULTS = REPO / "bench" / "results" / "api.json"
COLLECTION = "bench"
V4 = "/nbia-api/services/v4"


def _dicom(study: str, series: str, sop: str, patient: str, number: int, pixels: int) -> bytes:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    side = max(8, int((pixels // 2) ** 0.5))
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientID = ds.PatientName = patient
    ds.PatientSex, ds.PatientAge = "O", "050Y"
    ds.Modality, ds.BodyPartExamined, ds.Manufacturer = "CT", "CHEST", "BENCH"
    ds.ManufacturerModelName, ds.SoftwareVersions, ds.ProtocolName = "Bench CT", "1.0", "BENCH"
    ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDate = number, 1, "20200101"
    ds.Rows = ds.Columns = side
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = random.randbytes(side * side * 2)
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def _uid(rng: random.Random) -> str:
    return f"2.25.{rng.getrandbits(120)}"


def build_archive(settings: Any, series_count: int, instances_per_series: int, download_series: int,
                  download_instances: int, download_object_kb: int) -> dict[str, Any]:
    """Bulk-insert a collection of ``series_count`` series and store its objects; return what was made."""
    from sqlalchemy import insert

    from imaging_ingest.catalog import Catalog
    from imaging_ingest.catalog.models import (
        Collection,
        CollectionVersion,
        Instance,
        Patient,
        Series,
        Study,
        Submission,
    )
    from imaging_ingest.storage.objects import ObjectStore

    rng = random.Random(2024)
    random.seed(2024)
    catalog = Catalog.from_url(settings.catalog_url)
    store = ObjectStore(settings)
    store.ensure_buckets()
    patients, studies, series_rows, instances, objects, uploads = [], [], [], [], [], []
    series_per_patient = 10
    for p in range(series_count // series_per_patient):
        pid = f"BENCH-{p + 1:05d}"
        patients.append({"id": p + 1, "collection_id": COLLECTION, "pseudonym": pid, "id_hash": f"{p:064x}"})
        for st in range(2):
            study_id = len(studies) + 1
            study_uid = _uid(rng)
            studies.append({"id": study_id, "collection_id": COLLECTION, "uid": study_uid, "patient_id": p + 1,
                            "study_date": f"2020{st + 1:02d}15", "description": "BENCH STUDY"})
            for number in range(1, series_per_patient // 2 + 1):
                series_id = len(series_rows) + 1
                series_uid = _uid(rng)
                download = series_id <= download_series
                count = download_instances if download else instances_per_series
                series_rows.append({"id": series_id, "collection_id": COLLECTION, "uid": series_uid,
                                    "study_id": study_id, "modality": "CT", "body_part": "CHEST",
                                    "manufacturer": "BENCH", "description": f"BENCH SERIES {number}",
                                    "submission_id": "sub-bench"})
                # The API reads the header of each series' first object in key order: store that one.
                for i, sop in enumerate(sorted(_uid(rng) for _ in range(count))):
                    key = f"{COLLECTION}/{study_uid}/{series_uid}/{sop}.dcm"
                    stored = download or i == 0
                    if stored:
                        pixels = download_object_kb * 1024 if download else 512
                        data = _dicom(study_uid, series_uid, sop, pid, number, pixels)
                        uploads.append((key, data))
                    else:
                        data = sop.encode()  # listed and catalogued, never read by the query endpoints
                    md5, sha = hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()
                    instances.append({"collection_id": COLLECTION, "sop_uid": sop,
                                      "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2", "series_id": series_id,
                                      "object_key": key, "tier": "public", "size": len(data), "sha256": sha,
                                      "md5": md5, "submission_id": "sub-bench", "published_version": 1})
                    objects.append({"key": key, "size": len(data), "sha256": sha, "md5": md5})
    release_key = f"{COLLECTION}/versions/1/release.json"
    with catalog.session() as s:
        s.execute(insert(Collection), [{"id": COLLECTION, "title": "Benchmark collection", "license": "CC-BY-4.0",
                                        "tier": "public"}])
        s.execute(insert(Submission), [{"id": "sub-bench", "collection_id": COLLECTION, "name": "bench",
                                        "source_url": "file:///bench", "fingerprint": "0" * 64,
                                        "state": "published", "version": 1}])
        for table, rows in ((Patient, patients), (Study, studies), (Series, series_rows), (Instance, instances)):
            for start in range(0, len(rows), 5000):
                s.execute(insert(table), rows[start : start + 5000])
        s.execute(insert(CollectionVersion), [{"collection_id": COLLECTION, "number": 1, "release_key": release_key,
                                               "objects": len(objects), "bytes": sum(o["size"] for o in objects),
                                               "submission_id": "sub-bench"}])
    catalog.dispose()
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: store.client.put_object(Bucket=store.bucket("public"), Key=item[0],
                                                           Body=item[1]), uploads))
    store.put_json("public", release_key, {"collection": COLLECTION, "version": 1, "objects": objects})
    return {
        "patients": len(patients), "studies": len(studies), "series": len(series_rows),
        "instances": len(instances), "stored_objects": len(uploads),
        "stored_bytes": sum(len(d) for _, d in uploads), "upload_s": round(time.perf_counter() - started, 1),
        "download_series": [r["uid"] for r in series_rows[:download_series]],
        "query_series": [r["uid"] for r in series_rows[download_series:]],
        "patient_ids": [p["pseudonym"] for p in patients],
    }


def measure_queries(base: str, made: dict[str, Any], seconds: float, max_requests: int) -> dict[str, Any]:
    rng = random.Random(7)
    kinds = {
        "getSeries?SeriesInstanceUID": lambda: ("getSeries", {"SeriesInstanceUID": rng.choice(made["query_series"])}),
        "getSeries?Collection&PatientID": lambda: ("getSeries", {"Collection": COLLECTION,
                                                                 "PatientID": rng.choice(made["patient_ids"])}),
        f"getSeries?Collection (all {len(made['query_series']) + len(made['download_series'])} series)": lambda: ("getSeries", {"Collection": COLLECTION}),
        "getPatientStudy?Collection&PatientID": lambda: ("getPatientStudy", {"Collection": COLLECTION,
                                                                             "PatientID": rng.choice(made["patient_ids"])}),
        "getSOPInstanceUIDs": lambda: ("getSOPInstanceUIDs", {"SeriesInstanceUID": rng.choice(made["query_series"])}),
    }
    results: dict[str, Any] = {}
    with httpx.Client(base_url=f"{base}{V4}/", timeout=60) as client:
        for name, make in kinds.items():
            timing = time_requests(client, (make() for _ in range(max_requests)), seconds=seconds)
            results[name] = summary(timing, clients=1, mean_response_bytes=int(statistics.fmean(timing.sizes)))
    results["getSeries?SeriesInstanceUID, 4 concurrent clients"] = _concurrent(base, made, seconds, 4)
    return results


def _concurrent(base: str, made: dict[str, Any], seconds: float, clients: int) -> dict[str, Any]:
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=f"{base}{V4}/", timeout=60) as client:
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                client.get("getSeries", params={"SeriesInstanceUID": rng.choice(made["query_series"])}).raise_for_status()
                with lock:
                    latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summary(Timing(latencies, [], time.perf_counter() - started), clients=clients)


def measure_downloads(base: str, made: dict[str, Any], rounds: int) -> dict[str, Any]:
    totals, ttfbs, sizes = [], [], []
    with httpx.Client(base_url=f"{base}{V4}/", timeout=300) as client:
        for _ in range(rounds):
            for uid in made["download_series"]:
                t = time.perf_counter()
                with client.stream("GET", "getImage", params={"SeriesInstanceUID": uid}) as answer:
                    answer.raise_for_status()
                    received, first = 0, None
                    for chunk in answer.iter_raw(1024 * 1024):
                        if first is None:
                            first = time.perf_counter() - t
                        received += len(chunk)
                    if received != int(answer.headers["content-length"]):
                        raise RuntimeError(f"short download of {uid}")
                totals.append(time.perf_counter() - t)
                ttfbs.append(first or 0.0)
                sizes.append(received)
    return {
        "downloads": len(totals),
        "mean_zip_mb": round(statistics.fmean(sizes) / 1e6, 1),
        "mb_per_s": round(sum(sizes) / sum(totals) / 1e6, 1),
        "p50_s": round(percentile(totals, 0.5), 3),
        "p99_s": round(percentile(totals, 0.99), 3),
        "ttfb_p50_ms": round(percentile(ttfbs, 0.5) * 1000, 1),
        "ttfb_p99_ms": round(percentile(ttfbs, 0.99) * 1000, 1),
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(settings: Any, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = os.environ | {
        "IMAGING_INGEST_HOME": str(settings.home),
        "IMAGING_INGEST_CATALOG_URL": settings.catalog_url,
        "IMAGING_INGEST_S3_ENDPOINT": settings.s3_endpoint,
        "IMAGING_INGEST_BUCKET_PREFIX": settings.bucket_prefix,
        "PYTHONPATH": str(REPO / "include"),
    }
    out = open(log, "ab")  # noqa: SIM115 - the server writes to it for its whole life
    process = subprocess.Popen([sys.executable, "-m", "imaging_ingest.cli", "api", "--host", "127.0.0.1",
                                "--port", str(port), "--log-level", "warning"], env=env, stdout=out,
                               stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the API server did not start")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _first_query(base: str, made: dict[str, Any]) -> float:
    t = time.perf_counter()
    httpx.get(f"{base}{V4}/getSeries", params={"SeriesInstanceUID": made["query_series"][0]},
              timeout=600).raise_for_status()
    return time.perf_counter() - t


def one_run(settings: Any, made: dict[str, Any], args: argparse.Namespace, log: Path) -> dict[str, Any]:
    """A fresh server with an empty header cache: its first query, the queries, the downloads; then a
    restart (the cache kept) and its first query."""
    shutil.rmtree(Path(settings.home) / "api", ignore_errors=True)
    process, base = start_server(settings, log)
    try:
        cold = _first_query(base, made)
        t = time.perf_counter()  # the first whole listing reads every series' header into the cache
        httpx.get(f"{base}{V4}/getSeries", params={"Collection": COLLECTION}, timeout=600).raise_for_status()
        listing = time.perf_counter() - t
        print(f"cold first query: {cold:.2f} s, first whole listing: {listing:.1f} s", flush=True)
        queries = measure_queries(base, made, args.seconds, args.max_requests)
        downloads = measure_downloads(base, made, args.download_rounds)
    finally:
        stop_server(process)
    process, base = start_server(settings, log)
    try:
        restart = _first_query(base, made)
    finally:
        stop_server(process)
    return {"cold_first_query_s": cold, "first_listing_s": listing, "restart_first_query_s": restart,
            "queries": queries, "downloads": downloads}


def docs_table(result: dict[str, Any]) -> str:
    """The docs/api.md table of a result file: medians of the runs, (min–max) where it matters."""

    def span(figure: dict[str, Any], unit: str = "") -> str:
        return f"{figure['median']}{unit} ({figure['min']}–{figure['max']})"

    lines = ["| measure | median (min–max) of the runs |", "| --- | --- |",
             f"| first answer of a fresh server, empty header cache | {span(result['cold_first_query_s'], ' s')} |",
             f"| first listing of the whole collection (reads 5,000 series headers) | "
             f"{span(result['first_listing_s'], ' s')} |",
             f"| first answer after a restart | {span(result['restart_first_query_s'], ' s')} |"]
    for kind, figures in result["queries"].items():
        lines.append(f"| `{kind}`: requests/s, p50 / p99 ms | {span(figures['rps'])}, "
                     f"{figures['p50_ms']['median']} / {figures['p99_ms']['median']} |")
    downloads = result["downloads"]
    lines.append(f"| getImage zip ({downloads['instances_per_series']} images of 512 KiB): MB/s, time to first byte "
                 f"ms | {span(downloads['mb_per_s'])}, {downloads['ttfb_p50_ms']['median']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=5000)
    parser.add_argument("--instances-per-series", type=int, default=4)
    parser.add_argument("--download-series", type=int, default=4)
    parser.add_argument("--download-instances", type=int, default=100)
    parser.add_argument("--download-object-kb", type=int, default=512)
    parser.add_argument("--download-rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="time budget per query kind")
    parser.add_argument("--max-requests", type=int, default=5000, help="request budget per query kind")
    parser.add_argument("--runs", type=int, default=3, help="fresh servers measured (median and spread)")
    parser.add_argument("--catalog-url", help="SQLAlchemy URL of an empty database (default: a fresh SQLite file)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--table", action="store_true", help="print the docs table of the results file and stop")
    args = parser.parse_args()
    if args.table:
        print(docs_table(json.loads(Path(args.out).read_text(encoding="utf-8"))))
        return 0

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    from imaging_dags.local import s3_server
    from imaging_ingest.config.settings import Settings

    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp, s3_server() as endpoint:
        home = Path(tmp)
        settings = Settings(home=home, catalog_url=args.catalog_url or f"sqlite:///{home / 'catalog.sqlite'}",
                            s3_endpoint=endpoint, bucket_prefix=f"bench{os.getpid()}")
        started = time.perf_counter()
        made = build_archive(settings, args.series, args.instances_per_series, args.download_series,
                             args.download_instances, args.download_object_kb)
        print(f"archive built in {time.perf_counter() - started:.1f} s: {made['series']} series, "
              f"{made['instances']} instances, {made['stored_objects']} stored objects", flush=True)
        runs = [one_run(settings, made, args, home / "server.log") for _ in range(args.runs)]

    kinds = list(runs[0]["queries"])
    result = {
        **header("api", "NBIA v4 queries, getImage downloads and first answers of imaging-ingest api over 5,000 "
                 "series; each run a fresh server with an empty header cache, then a restart",
                 catalog="postgresql" if (args.catalog_url or "").startswith("postgres") else "sqlite",
                 object_store="moto S3 server on loopback", server="imaging-ingest api, 1 uvicorn worker, own process",
                 client="httpx, keep-alive", runs=args.runs, seconds_per_kind=args.seconds,
                 **{k: made[k] for k in ("patients", "studies", "series", "instances", "stored_objects",
                                         "stored_bytes")}),
        "cold_first_query_s": spread([r["cold_first_query_s"] for r in runs], 2),
        "first_listing_s": spread([r["first_listing_s"] for r in runs], 2),
        "restart_first_query_s": spread([r["restart_first_query_s"] for r in runs], 2),
        "queries": {kind: {figure: spread([r["queries"][kind][figure] for r in runs], 2)
                           for figure in ("rps", "p50_ms", "p99_ms")} for kind in kinds},
        "downloads": {"endpoint": "getImage", "series": len(made["download_series"]),
                      "instances_per_series": args.download_instances,
                      **{figure: spread([r["downloads"][figure] for r in runs], 2)
                         for figure in ("mb_per_s", "p50_s", "ttfb_p50_ms")}},
        "runs": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("cold_first_query_s", "restart_first_query_s")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
