"""``make bench-dicomweb``: our DICOMweb against Orthanc's, same files, same queries, same run.

Generates a collection of real DICOM files (default 5,000 series x 4 instances = 20,000
instances, 500 patients, 1,000 studies, small 16-bit CT frames), then:

* **ours**: the files in a loopback moto S3, the catalog (SQLite) bulk-inserted with a
  release, ``imaging-ingest api`` started as its own process (one uvicorn worker);
* **Orthanc** (Debian's ``orthanc`` + ``orthanc-dicomweb``): started on a free loopback
  port with a small JSON config, the same files POSTed to ``/instances``.

Both get one warm-up pass, then the same randomly drawn requests (seeded), one client at
a time over keep-alive:

* QIDO studies: ``/studies?PatientID=<id>``; ``/studies?StudyDate=<a>-<b>&limit=100``;
* QIDO series: ``/studies/{S}/series``; ``/series?Modality=CT&limit=100``;
* WADO frames: ``.../instances/{I}/frames/1`` with an explicit transfer syntax (Orthanc's
  plugin 1.7 refuses ``transfer-syntax=*``), frames per second.

Each round measures every kind; ``--runs`` rounds (default 3) give the median and the
spread (min, max) of p50, p99 and frames/s. Writes ``bench/results/api-dicomweb.json``
with the commit, whether the tree was dirty, and the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
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
from run import _free_port, _uid, start_server, stop_server  # noqa: E402
from timing import summary, time_requests  # noqa: E402

RESULTS = REPO / "bench" / "results" / "api-dicomweb.json"
COLLECTION = "bench"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
FRAME_ACCEPT = f'multipart/related; type="application/octet-stream"; transfer-syntax={EXPLICIT_LE}'


def _dicom(study: str, series: str, sop: str, patient: str, date: str, number: int, instance: int, side: int) -> bytes:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = EXPLICIT_LE
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientID = ds.PatientName = patient
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = date, "120000", "1", ""
    ds.PatientSex, ds.PatientBirthDate = "O", ""
    ds.Modality, ds.BodyPartExamined, ds.Manufacturer = "CT", "CHEST", "BENCH"
    ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = number, instance, f"BENCH SERIES {number}"
    ds.Rows = ds.Columns = side
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = random.randbytes(side * side * 2)
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def build(settings: Any, files: Path, series_count: int, per_series: int, side: int) -> dict[str, Any]:
    """Write the files, store them in S3 and bulk-insert the catalog; return the UIDs drawn from."""
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

    rng = random.Random(2026)
    random.seed(2026)
    catalog = Catalog.from_url(settings.catalog_url)
    store = ObjectStore(settings)
    store.ensure_buckets()
    patients, studies, series_rows, instances, objects, frames = [], [], [], [], [], []
    per_patient = 10
    for p in range(series_count // per_patient):
        pid = f"BENCH-{p + 1:05d}"
        patients.append({"id": p + 1, "collection_id": COLLECTION, "pseudonym": pid, "id_hash": f"{p:064x}"})
        for st in range(2):
            study_uid, study_id = _uid(rng), len(studies) + 1
            date = f"20{10 + p % 10}{st + 1:02d}15"
            studies.append({"id": study_id, "collection_id": COLLECTION, "uid": study_uid, "patient_id": p + 1,
                            "study_date": date, "description": "BENCH STUDY"})
            for number in range(1, per_patient // 2 + 1):
                series_uid, series_id = _uid(rng), len(series_rows) + 1
                series_rows.append({"id": series_id, "collection_id": COLLECTION, "uid": series_uid,
                                    "study_id": study_id, "modality": "CT", "body_part": "CHEST",
                                    "manufacturer": "BENCH", "description": f"BENCH SERIES {number}",
                                    "submission_id": "sub-bench"})
                for i, sop in enumerate(sorted(_uid(rng) for _ in range(per_series)), start=1):
                    data = _dicom(study_uid, series_uid, sop, pid, date, number, i, side)
                    key = f"{COLLECTION}/{study_uid}/{series_uid}/{sop}.dcm"
                    (files / f"{len(objects):06d}.dcm").write_bytes(data)
                    md5, sha = hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()
                    instances.append({"collection_id": COLLECTION, "sop_uid": sop,
                                      "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2", "series_id": series_id,
                                      "object_key": key, "tier": "public", "size": len(data), "sha256": sha,
                                      "md5": md5, "submission_id": "sub-bench", "published_version": 1})
                    objects.append({"key": key, "size": len(data), "sha256": sha, "md5": md5})
                    frames.append((study_uid, series_uid, sop))
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
    paths = sorted(files.iterdir())
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: store.client.put_object(Bucket=store.bucket("public"), Key=item[0]["key"],
                                                           Body=item[1].read_bytes()), zip(objects, paths, strict=True)))
    store.put_json("public", release_key, {"collection": COLLECTION, "version": 1, "objects": objects})
    return {"patients": [p["pseudonym"] for p in patients], "studies": [s["uid"] for s in studies],
            "dates": sorted({s["study_date"] for s in studies}), "frames": frames,
            "counts": {"patients": len(patients), "studies": len(studies), "series": len(series_rows),
                       "instances": len(instances), "bytes": sum(o["size"] for o in objects)}}


def start_orthanc(work: Path, files: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Orthanc on a free loopback port with the DICOMweb plugin; every file POSTed to it."""
    binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    if not Path(binary).exists():
        raise SystemExit("Orthanc is missing: apt-get install orthanc orthanc-dicomweb (make system-deps)")
    port = _free_port()
    config = {"Name": "bench", "HttpPort": port, "DicomServerEnabled": False, "RemoteAccessAllowed": False,
              "AuthenticationEnabled": False, "StorageDirectory": str(work / "orthanc-db"),
              "IndexDirectory": str(work / "orthanc-db"), "Plugins": ["/usr/share/orthanc/plugins"],
              "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}, "HttpThreadsCount": 8}
    (work / "orthanc.json").write_text(json.dumps(config))
    log = open(work / "orthanc.log", "ab")  # noqa: SIM115 - Orthanc writes to it for its whole life
    process = subprocess.Popen([binary, str(work / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/system", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Orthanc did not start: {(work / 'orthanc.log').read_text()[-2000:]}")
        time.sleep(0.2)
    started = time.perf_counter()
    paths = sorted(files.iterdir())
    with httpx.Client(base_url=base, timeout=60) as client, ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda path: client.post("/instances", content=path.read_bytes()).raise_for_status(), paths))
    print(f"Orthanc: {len(paths)} files stored in {time.perf_counter() - started:.1f} s", flush=True)
    return process, f"{base}/dicom-web"


def _requests(made: dict[str, Any], count: int, seed: int) -> dict[str, list[tuple[str, dict[str, str]]]]:
    rng = random.Random(seed)
    dates = made["dates"]
    kinds: dict[str, list[tuple[str, dict[str, str]]]] = {k: [] for k in (
        "studies?PatientID", "studies?StudyDate-range&limit=100", "studies/{S}/series", "series?Modality&limit=100",
        "frames/1")}
    for _ in range(count):
        kinds["studies?PatientID"].append(("/studies", {"PatientID": rng.choice(made["patients"])}))
        low = rng.choice(dates)
        kinds["studies?StudyDate-range&limit=100"].append(("/studies", {"StudyDate": f"{low}-{low[:4]}1231",
                                                                          "limit": "100"}))
        kinds["studies/{S}/series"].append((f"/studies/{rng.choice(made['studies'])}/series", {}))
        kinds["series?Modality&limit=100"].append(("/series", {"Modality": "CT", "limit": "100",
                                                               "offset": str(rng.randrange(0, max(1, made["counts"]["series"] - 100)))}))
        s, se, i = rng.choice(made["frames"])
        kinds["frames/1"].append((f"/studies/{s}/series/{se}/instances/{i}/frames/1", {}))
    return kinds


def _measure(base: str, requests: list[tuple[str, dict[str, str]]], frames: bool) -> dict[str, Any]:
    headers = {"Accept": FRAME_ACCEPT} if frames else {"Accept": "application/dicom+json"}

    def found_something(answer: httpx.Response, request: tuple[str, dict[str, str]]) -> None:
        if not frames and not answer.json():
            raise RuntimeError(f"{base}{request[0]} {request[1]} found nothing")

    with httpx.Client(base_url=base, timeout=120, headers=headers) as client:
        return summary(time_requests(client, requests, check=found_something))


#: The docs table's rows: (label, kind, what is shown).
TABLE = (
    ("QIDO `studies?PatientID` p50 / p99 ms", "studies?PatientID", "latency"),
    ("QIDO `studies?StudyDate-range&limit=100` p50 / p99 ms", "studies?StudyDate-range&limit=100", "latency"),
    ("QIDO `studies/{S}/series` p50 / p99 ms", "studies/{S}/series", "latency"),
    ("QIDO `series?Modality&limit=100` p50 / p99 ms", "series?Modality&limit=100", "latency"),
    ("WADO `frames/1` (frames/s)", "frames/1", "rate"),
)


def docs_table(result: dict[str, Any]) -> str:
    """The docs/api.md table of a result file: medians, the rate with its spread (min-max)."""
    lines = ["| request | ours | Orthanc |", "| --- | --- | --- |"]
    for label, kind, shown in TABLE:
        cells = []
        for server in ("ours", "orthanc"):
            figures = result["summary"][server][kind]
            if shown == "rate":
                rate = figures["frames_per_s"]
                cells.append(f"{rate['median']} ({rate['min']}–{rate['max']})")
            else:
                cells.append(f"{figures['p50_ms']['median']} / {figures['p99_ms']['median']}")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=5000)
    parser.add_argument("--instances-per-series", type=int, default=4)
    parser.add_argument("--side", type=int, default=64, help="rows and columns of each frame")
    parser.add_argument("--requests", type=int, default=100, help="requests per query kind per round")
    parser.add_argument("--runs", type=int, default=3)
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

    with tempfile.TemporaryDirectory(prefix="bench-dicomweb-") as tmp, s3_server() as endpoint:
        work = Path(tmp)
        files = work / "files"
        files.mkdir()
        settings = Settings(home=work / "home", catalog_url=f"sqlite:///{work / 'catalog.sqlite'}",
                            s3_endpoint=endpoint, bucket_prefix=f"benchdw{os.getpid()}")
        started = time.perf_counter()
        made = build(settings, files, args.series, args.instances_per_series, args.side)
        print(f"archive built in {time.perf_counter() - started:.1f} s: {made['counts']}", flush=True)
        ours_process, ours_base = start_server(settings, work / "server.log")
        orthanc_process, orthanc_base = start_orthanc(work, files)
        servers = {"ours": f"{ours_base}/dicomweb", "orthanc": orthanc_base}
        try:
            t = time.perf_counter()
            httpx.get(f"{servers['ours']}/studies", params={"PatientID": made["patients"][0]}, timeout=600)
            first_answer_s = time.perf_counter() - t
            warm = _requests(made, args.requests, seed=0)
            for name, base in servers.items():  # one warm-up pass each: caches, connections, pages
                for kind, requests in warm.items():
                    _measure(base, requests, kind.startswith("frames"))
                print(f"{name}: warmed up", flush=True)
            rounds: list[dict[str, dict[str, Any]]] = []
            for run in range(args.runs):
                kinds = _requests(made, args.requests, seed=run + 1)
                result: dict[str, dict[str, Any]] = {}
                for name, base in servers.items():
                    result[name] = {kind: _measure(base, requests, kind.startswith("frames"))
                                    for kind, requests in kinds.items()}
                rounds.append(result)
                print(f"round {run + 1}: {json.dumps(result)}", flush=True)
        finally:
            stop_server(ours_process)
            stop_server(orthanc_process)  # type: ignore[arg-type]

    figures: dict[str, dict[str, Any]] = {}
    for name in ("ours", "orthanc"):
        figures[name] = {}
        for kind in rounds[0][name]:
            measured = [r[name][kind] for r in rounds]
            if kind.startswith("frames"):
                figures[name][kind] = {"frames_per_s": spread([m["rps"] for m in measured]),
                                       "p50_ms": spread([m["p50_ms"] for m in measured], 2)}
            else:
                figures[name][kind] = {"p50_ms": spread([m["p50_ms"] for m in measured], 2),
                                       "p99_ms": spread([m["p99_ms"] for m in measured], 2)}
    report = {
        **header("api-dicomweb", "QIDO-RS and WADO-RS frames: imaging-ingest's /dicomweb against Orthanc (Debian "
                 "orthanc + orthanc-dicomweb) serving the same files; one client, keep-alive, after one warm-up pass",
                 requests_per_kind_per_round=args.requests, rounds=args.runs, frame=f"{args.side}x{args.side} 16-bit",
                 ours="imaging-ingest api, 1 uvicorn worker, SQLite catalog, moto S3",
                 orthanc="1.10 with DICOMweb plugin 1.7, SQLite index, files on local disk"),
        "archive": made["counts"],
        "ours_first_answer_after_start_s": round(first_answer_s, 2),
        "summary": figures,
        "rounds": rounds,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
