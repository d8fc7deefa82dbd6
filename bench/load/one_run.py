"""One step of the load benchmark, started by ``run.py`` in a fresh process; JSON on stdout.

``one_run.py generate``: write LOAD_SIZE CT files under ``$LOAD_CORPUS`` (once per size:
the DAG and the CLI runs all read the same files). ``one_run.py dag``: run the ingest DAG
(``dag.test()``) on them with a fresh catalog, Airflow home and S3 server, and report its
wall time, RSS per task, what stage_raw and publish measured per object and per byte, and
the CPU seconds of this process tree and of the S3 server (``$LOAD_MOTO_PID``) while it ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import threading
import time
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

WORK = Path(os.environ["LOAD_WORK"])
CORPUS = Path(os.environ["LOAD_CORPUS"])  # the drop folder: <corpus>/load-submission/...
SIZE = int(os.environ["LOAD_SIZE"])
ROWS = int(os.environ.get("LOAD_ROWS", "512"))
WORKERS = int(os.environ.get("LOAD_WORKERS", "2"))
ENDPOINT = os.environ.get("LOAD_ENDPOINT", "")
MOTO_PID = int(os.environ.get("LOAD_MOTO_PID", "0"))  # the S3 server's process (run.py starts it)
SECRET = "6f32572d0b6889cb6c12969e6db6221f542cf1e9959792e2f13596448df4e107"  # benchmark-only key (public)
FILES_PER_SERIES = 200
FILES_PER_PATIENT = 2000


def generate(target: Path) -> int:
    """SIZE CT files: one synthetic template, new patient/study/series/instance UIDs per file."""
    from imaging_ingest.synth.generate import generate_submission

    template_root = WORK / "template"
    generate_submission(template_root, patients=1, seed=5, ct_slices=1, mr_slices=1, rows=ROWS, columns=ROWS)
    template = next(template_root.rglob("002_CT_CHEST_AXIAL/1.dcm"))
    ds = pydicom.dcmread(template)
    total = 0
    for index in range(SIZE):
        patient, series = index // FILES_PER_PATIENT, index // FILES_PER_SERIES
        ds.PatientID = f"MRN{patient:07d}"
        ds.PatientName = f"DOE^JANE{patient:05d}"
        ds.StudyInstanceUID = generate_uid(entropy_srcs=["load", "study", str(patient)])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=["load", "series", str(series)])
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["load", "sop", str(index)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = index % FILES_PER_SERIES + 1
        path = target / f"P{patient:05d}" / f"S{series:05d}" / f"{index:06d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        total += path.stat().st_size
    shutil.rmtree(template_root)
    return total


class RssSampler(threading.Thread):
    """Samples this process's RSS twice a second, and the S3 server's CPU seconds so far (``server``)."""

    def __init__(self, server: int = 0) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self.wall: list[tuple[float, float]] = []  # (epoch seconds, MB): to attribute RSS to tasks
        self.server = server
        self.server_cpu: list[tuple[float, float]] = []  # (epoch seconds, CPU seconds): to attribute to tasks
        self.stop = threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        start = time.monotonic()
        while not self.stop.wait(0.5):
            rss = me.memory_info().rss
            self.samples.append((round(time.monotonic() - start, 1), round(rss / 2**20, 1)))
            self.wall.append((time.time(), rss / 2**20))
            if self.server:
                self.server_cpu.append((time.time(), cpu_seconds(self.server)))


def _task_spans(run: object) -> dict[str, list[tuple[float, float]]]:
    spans: dict[str, list[tuple[float, float]]] = {}
    for ti in run.get_task_instances():  # type: ignore[attr-defined]
        if ti.start_date and ti.end_date:
            spans.setdefault(ti.task_id, []).append((ti.start_date.timestamp(), ti.end_date.timestamp()))
    return spans


def cpu_by_task(run: object, samples: list[tuple[float, float]]) -> dict[str, float]:
    """Per task (all map indexes together): the S3 server's CPU seconds while it ran (interpolated)."""
    if len(samples) < 2:
        return {}

    def at(moment: float) -> float:
        before = [s for s in samples if s[0] <= moment] or samples[:1]
        after = [s for s in samples if s[0] >= moment] or samples[-1:]
        (t0, c0), (t1, c1) = before[-1], after[0]
        return c0 if t1 == t0 else c0 + (c1 - c0) * (moment - t0) / (t1 - t0)

    spans = _task_spans(run)
    return {task: round(sum(at(end) - at(start) for start, end in spans[task]), 1) for task in spans}


def rss_by_task(run: object, wall: list[tuple[float, float]]) -> dict[str, dict[str, float]]:
    """Per task (all map indexes together): RSS when it first started and the peak while any ran."""
    spans = _task_spans(run)
    report = {}
    for task_id, intervals in spans.items():
        inside = [mb for at, mb in wall if any(start <= at <= end for start, end in intervals)]
        first = min(start for start, _ in intervals)
        before = [mb for at, mb in wall if at <= first]
        report[task_id] = {
            "instances": len(intervals),
            "seconds": round(sum(end - start for start, end in intervals), 1),
            "rss_at_start_mb": round(before[-1], 1) if before else None,
            "peak_rss_mb": round(max(inside), 1) if inside else None,
        }
    return dict(sorted(report.items(), key=lambda item: min(s for s, _ in spans[item[0]])))


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process and of every process below it, ended or running.

    Ended children count once reaped (``children_*``); running ones (the de-identification
    pools' forkserver, whose workers it reaps) are added from their own counters.
    """
    import psutil

    def total(proc: psutil.Process) -> float:
        t = proc.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    proc = psutil.Process(pid)
    seconds = total(proc)
    for child in proc.children(recursive=True):
        # one that ended since it was listed is counted by its parent once reaped
        with contextlib.suppress(psutil.NoSuchProcess):
            seconds += total(child)
    return seconds


def stage_results() -> list[dict]:
    """Wrap stage_raw, deidentify and publish (tasks run here under dag.test()) to keep their results.

    Each result's ``extra.timings`` is what its S3 transfers measured per object and per byte.
    """
    from imaging_ingest.pipeline.ingest import Ingest

    kept: list[dict] = []
    for name in ("stage_raw", "deidentify", "publish"):
        real = getattr(Ingest, name)

        def wrapped(self: Ingest, *args: object, _real=real) -> object:  # type: ignore[no-untyped-def]
            result = _real(self, *args)
            kept.append(result.as_dict())
            return result

        setattr(Ingest, name, wrapped)
    return kept


def batch_uploads(kept: list[dict]) -> dict | None:
    """The deidentify batches' uploads together, as one stage's timings (``TransferStats.merged``, ``summary``)."""
    from imaging_ingest.storage.transfers import TransferStats

    total = TransferStats()
    for result in kept:
        if result["stage"] == "deidentify" and "timings" in result["extra"]:
            u = result["extra"]["timings"]["upload"]
            batch = TransferStats(
                u["objects"], u["bytes"], u["seconds"], (u["ms_per_object"] or 0) * u["objects"] / 1000, u["slowest_ms"] / 1000
            )
            total = total.merged(batch)
    return {"upload": total.summary()} if total.objects else None


def run_generate() -> None:
    started = time.perf_counter()
    total_bytes = generate(CORPUS / "load-submission")
    print(json.dumps({"files": SIZE, "bytes": total_bytes, "generate_seconds": round(time.perf_counter() - started, 1)}))


def run_dag() -> None:
    home = WORK / "home"
    airflow_home = WORK / "airflow"
    collections = WORK / "collections"
    collections.mkdir(parents=True)
    (CORPUS / "load-submission" / "READY").write_text("complete\n")
    total_bytes = sum(p.stat().st_size for p in (CORPUS / "load-submission").rglob("*.dcm"))
    (collections / "load.yaml").write_text(
        f"""id: load
title: Load benchmark collection
license: CC-BY-4.0
tier: public
drop:
  url: "{CORPUS.as_uri()}"
modalities: [CT]
batch_size: {FILES_PER_SERIES}
workers: {WORKERS}
"""
    )
    from imaging_dags.local import airflow_environment, migrate

    os.environ.update(airflow_environment(airflow_home))
    os.environ.update(
        {
            "IMAGING_INGEST_COLLECTIONS": str(collections),
            "IMAGING_INGEST_HOME": str(home),
            "IMAGING_INGEST_S3_ENDPOINT": ENDPOINT,
            "IMAGING_INGEST_SECRET": SECRET,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    migrate(airflow_home)
    from imaging_dags.local import run_dag as run_airflow_dag

    kept = stage_results()
    sampler = RssSampler(MOTO_PID)
    sampler.start()
    moto_cpu = cpu_seconds(MOTO_PID) if MOTO_PID else None
    own_cpu = cpu_seconds()
    started = time.perf_counter()
    run = run_airflow_dag("ingest__load")
    seconds = time.perf_counter() - started
    own_cpu = cpu_seconds() - own_cpu
    moto_cpu = cpu_seconds(MOTO_PID) - moto_cpu if moto_cpu is not None else None
    sampler.stop.set()
    (CORPUS / "load-submission" / "READY").unlink()
    if str(run.state) != "success":
        raise SystemExit(f"DAG run ended {run.state}: " + str({ti.task_id: str(ti.state) for ti in run.get_task_instances()}))
    from imaging_ingest.catalog import Catalog
    from imaging_ingest.config.settings import Settings

    catalog = Catalog.from_url(Settings.from_env().catalog_url)
    sub = catalog.submissions("load")[0]
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    timings = {r["stage"]: r["extra"].get("timings") for r in kept if r["stage"] != "deidentify"}
    timings["deidentify"] = batch_uploads(kept)  # overlapped with the de-identification of each batch
    print(
        json.dumps(
            {
                "files": SIZE,
                "bytes": total_bytes,
                "seconds": round(seconds, 1),
                # CPU seconds while the DAG ran: this process and its children (the de-identification
                # workers), and the S3 server's; on ``cpus`` cores the DAG cannot take less wall time
                # than (dag + s3 server) / cpus, nor less than the server's CPU seconds over the cores
                # it can use (one for moto, a single Python process)
                "cpu_seconds": {
                    "dag": round(own_cpu, 1),
                    "s3_server": round(moto_cpu, 1) if moto_cpu is not None else None,
                    "cpus": os.cpu_count(),
                    "s3_server_by_task": cpu_by_task(run, sampler.server_cpu),
                },
                "published": sub.published,
                "quarantined": sub.quarantined,
                "peak_rss_mb": round(peak_self, 1),
                "peak_rss_children_mb": round(peak_children, 1),
                "load_average_1m_at_end": round(os.getloadavg()[0], 2),
                "rss_by_task": rss_by_task(run, sampler.wall),
                "s3_timings": timings,
                "rss_samples_mb": sampler.samples[:: max(1, len(sampler.samples) // 40)],
            }
        )
    )


if __name__ == "__main__":
    import sys

    {"generate": run_generate, "dag": run_dag}[sys.argv[1]]()
