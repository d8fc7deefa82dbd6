"""De-identification benchmark: ``imaging-ingest deidentify`` against its floors and its peers.

    python bench/deid/run.py [--files 2000] [--rss-files 20000] [--peer-seconds 45] [--skip-peers]

On one corpus of synthetic CT and MR files (512x512, 16-bit, scanner-sized headers: about
300 elements, 155 of them private; about 0.54 MB each, 1 GB for 2,000 files), it times:

- ``cp -r`` of the corpus: the I/O floor;
- pydicom read + write of every file, unchanged: the floor for anything written in Python;
- the de-identification engine alone (``deidentify_files``: read, de-identify, write,
  SHA-256 and MD5 of every output), one process and all cores;
- ``imaging-ingest deidentify`` end to end (inventory with source checksums, patient
  pseudonyms from the catalog, de-identification, screening, the independent leak scan,
  the manifest), one worker and all cores;
- the peers dicognito, deid (pydicom/deid) and dicom-anonymizer, installed into a
  bench-only venv (``bench/.venv-peers``), each with its defaults, one process, for at
  most ``--peer-seconds`` (slow peers are timed on the files they finish).

Then it measures the peak memory (RSS of the process and all its workers) of
``imaging-ingest deidentify`` with all cores on 2,000 and ``--rss-files`` small (64x64)
files, to show that memory does not grow with the corpus. Results are printed side by side
and written to ``bench/results/deid.json``. The corpus is cached under
``bench/.work-deid`` (it is deterministic); outputs are deleted after each step.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO / "include"), str(HERE), str(HERE.parent)]

import psutil  # noqa: E402  (after the path set-up, like the imports below)
import pydicom  # noqa: E402
from corpus import make_corpus  # noqa: E402
from report import header, spread  # noqa: E402
from table import targets  # noqa: E402

PEERS = ("dicognito", "dicom-anonymizer", "deid")
PEER_VENV = REPO / "bench" / ".venv-peers"
WORK = REPO / "bench" / ".work-deid"
RESULTS = REPO / "bench" / "results" / "deid.json"
FLOOR = "pydicom read+write, unchanged (Python floor)"
SECRET = "6f32572d0b6889cb6c12969e6db6221f542cf1e9959792e2f13596448df4e107"  # benchmark-only key (public)

PYDICOM_RW = """
import hashlib, io, json, sys, time, pydicom
files, hashed = open(sys.argv[1]).read().split(), sys.argv[3] == "1"
start = time.perf_counter()
for i, f in enumerate(files):
    ds = pydicom.dcmread(f)
    if hashed:  # the SHA-256 and MD5 of every output that the pipeline's manifest carries
        buffer = io.BytesIO()
        ds.save_as(buffer)
        data = buffer.getvalue()
        hashlib.sha256(data).hexdigest(), hashlib.md5(data, usedforsecurity=False).hexdigest()
        open(f"{sys.argv[2]}/{i}.dcm", "wb").write(data)
    else:
        ds.save_as(f"{sys.argv[2]}/{i}.dcm")
print(json.dumps({"seconds": time.perf_counter() - start, "files": len(files)}))
"""

ENGINE = """
import json, sys, time
from imaging_ingest.config import DeidConfig
from imaging_ingest.deid import PatientContext, Profile
from imaging_ingest.deid.batch import FileJob, deidentify_files
files, out, workers = open(sys.argv[1]).read().split(), sys.argv[2], int(sys.argv[3])
profile = Profile.load().resolve(DeidConfig())
patient = PatientContext("BENCH-0001", -400, ("MRN000000",))
jobs = [FileJob(i, f, f"{out}/{i}.dcm", patient) for i, f in enumerate(files)]
start = time.perf_counter()
outcomes = deidentify_files(jobs, profile, sys.argv[4].encode(), workers=workers)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "files": len(files), "failed": sum(o.output is None for o in outcomes)}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "include"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _files_of(root: Path) -> list[Path]:
    return sorted(root.rglob("*.dcm"))


def ensure_corpus(files: int, rows: int, shaped: bool) -> tuple[Path, list[Path], float]:
    root = WORK / f"corpus-{files}-{rows}{'-scanner' if shaped else ''}"
    stamp = root.with_name(root.name + ".complete")  # beside the corpus: the CLI would ingest it
    made = 0.0
    if not stamp.exists():
        shutil.rmtree(root, ignore_errors=True)
        start = time.perf_counter()
        make_corpus(root, files, rows, shaped=shaped)
        made = time.perf_counter() - start
        stamp.write_text("ok\n", encoding="utf-8")
    listed = _files_of(root)
    for path in listed:  # a warm page cache for every contender
        with open(path, "rb") as fh:
            while fh.read(1 << 20):
                pass
    return root, listed, made


def _listing(files: list[Path]) -> str:
    fd, name = tempfile.mkstemp(prefix="deid-bench-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(str(f) for f in files))
    return name


def _result(name: str, runs: list[dict[str, Any]], size: int, **extra: Any) -> dict[str, Any]:
    """One contender over its runs: the median run's numbers, and the spread of files/s across runs."""
    rates = [r["files"] / r["seconds"] for r in runs]
    median = sorted(runs, key=lambda r: r["files"] / r["seconds"])[len(runs) // 2]
    files, seconds = median["files"], median["seconds"]
    return {"name": name, "files": files, "seconds": round(seconds, 3), "files_per_s": round(files / seconds, 1),
            "mb_per_s": round(median.get("bytes", size) / seconds / 1e6, 1), "files_per_s_runs": spread(rates),
            **extra}


def _fresh(name: str) -> Path:
    out = WORK / "out" / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out


def _json_run(cmd: list[str]) -> dict[str, Any]:
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_cp(corpus: Path, count: int) -> dict[str, Any]:
    out = _fresh("cp")
    start = time.perf_counter()
    subprocess.run(["cp", "-r", str(corpus), str(out / "copy")], check=True)
    return {"files": count, "seconds": time.perf_counter() - start}


def time_pydicom(listing: str, hashed: bool = False) -> dict[str, Any]:
    out = _fresh("pydicom")
    return _json_run([sys.executable, "-c", PYDICOM_RW, listing, str(out), "1" if hashed else "0"])


def time_engine(listing: str, workers: int) -> dict[str, Any]:
    out = _fresh(f"engine{workers}")
    return _json_run([sys.executable, "-c", ENGINE, listing, str(out), str(workers), SECRET])


def _tree_rss(proc: psutil.Process) -> tuple[int, int]:
    try:
        main = proc.memory_info().rss
        children = sum(c.memory_info().rss for c in proc.children(recursive=True))
    except psutil.Error:
        return 0, 0
    return main, main + children


def run_cli(corpus: Path, workers: int, name: str) -> dict[str, Any]:
    """``imaging-ingest deidentify``, timed as a whole command, with peak RSS sampled every 50 ms."""
    out = _fresh(name)
    secret = WORK / "secret.txt"
    secret.write_text(SECRET, encoding="utf-8")
    home = out / "home"
    cmd = [sys.executable, "-c", "import sys; from imaging_ingest.cli import main; sys.exit(main())", "deidentify",
           str(corpus), str(out / "dst"), "--secret-file", str(secret), "--workers", str(workers), "--json",
           "--catalog", f"sqlite:///{out / 'catalog.sqlite'}"]
    env = _env() | {"IMAGING_INGEST_HOME": str(home)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watched = psutil.Process(proc.pid)
    peak_main = peak_tree = 0
    while proc.poll() is None:
        main, tree = _tree_rss(watched)
        peak_main, peak_tree = max(peak_main, main), max(peak_tree, tree)
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"imaging-ingest deidentify failed: {stderr[-2000:]}")
    summary = json.loads(stdout)
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": seconds, "summary": summary, "peak_rss_mb": round(peak_tree / 2**20, 1),
            "peak_rss_main_mb": round(peak_main / 2**20, 1)}


def time_cli(corpus: Path, count: int, workers: int) -> dict[str, Any]:
    got = run_cli(corpus, workers, f"cli{workers}")
    return {"files": count, "seconds": got["seconds"], "published": got["summary"]["published"],
            "quarantined": got["summary"]["quarantined"], "peak_rss_mb": got["peak_rss_mb"]}


def ensure_peers() -> dict[str, str | None]:
    """Create the bench-only venv and install each peer; a peer that fails to install is recorded, not fatal."""
    python = PEER_VENV / "bin" / "python"
    status: dict[str, str | None] = {}
    usable = python.exists() and subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True).returncode == 0
    if not usable:  # absent, or left half-made by an interrupted run (no pip): made afresh
        shutil.rmtree(PEER_VENV, ignore_errors=True)
        made = subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], capture_output=True, text=True)
        if made.returncode != 0:
            return {peer: f"venv creation failed: {made.stderr.strip()[-300:]}" for peer in PEERS}
    for peer in PEERS:
        got = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", peer],
                             capture_output=True, text=True)
        status[peer] = None if got.returncode == 0 else f"pip install failed: {got.stderr.strip()[-300:]}"
    return status


def time_peer(peer: str, listing: str, budget: float) -> dict[str, Any]:
    out = _fresh(f"peer-{peer}")
    python = PEER_VENV / "bin" / "python"
    done = subprocess.run([str(python), str(HERE / "peers.py"), peer, listing, str(out), str(budget)],
                          capture_output=True, text=True)
    shutil.rmtree(out, ignore_errors=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-500:]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def peer_version(peer: str) -> str | None:
    shown = subprocess.run([str(PEER_VENV / "bin" / "python"), "-m", "pip", "show", peer], capture_output=True,
                           text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in shown.splitlines() if line.startswith("Version:")), None)


def header_shape(files: list[Path]) -> dict[str, float]:
    sample = files[:: max(1, len(files) // 20)]
    elements = private = 0
    for path in sample:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        tags = list(ds.keys())
        elements += len(tags)
        private += sum(1 for t in tags if t.group & 1)
    return {"elements_per_header": round(elements / len(sample), 1), "private_per_header": round(private / len(sample), 1)}


def print_table(rows: list[dict[str, Any]], floor: float) -> None:
    print(f"{'':<72} {'files':>6} {'s':>8} {'files/s':>9} {'MB/s':>8} {'x floor':>8}")
    for row in rows:
        if "error" in row:
            print(f"{row['name']:<72} {'failed: ' + row['error'][:60]}")
            continue
        print(f"{row['name']:<72} {row['files']:>6} {row['seconds']:>8.2f} {row['files_per_s']:>9.1f} "
              f"{row['mb_per_s']:>8.1f} {row['files_per_s'] / floor:>8.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000, help="corpus size (a multiple of 200)")
    parser.add_argument("--rss-files", type=int, default=20000, help="small files for the memory point (0: skip)")
    parser.add_argument("--peer-seconds", type=float, default=45.0, help="time budget of each peer")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="'all cores'")
    parser.add_argument("--runs", type=int, default=3, help="rounds: every contender runs once per round")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-docs", dest="docs", action="store_false", help="leave the docs tables alone")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    head = header("de-identification (bench/deid/run.py)", "imaging-ingest deidentify against a pydicom round "
                  "trip, cp and peer de-identifiers, on one corpus, in the same rounds", files=args.files,
                  runs=args.runs, workers=args.workers, peer_seconds=args.peer_seconds)
    bench_start = time.perf_counter()

    corpus, files, made = ensure_corpus(args.files, 512, shaped=True)
    size = sum(f.stat().st_size for f in files)
    listing = _listing(files)
    print(f"corpus: {len(files)} files, {size / 1e9:.2f} GB{f' (made in {made:.0f} s)' if made else ' (cached)'}",
          flush=True)
    peer_status: dict[str, str | None] = {} if args.skip_peers else ensure_peers()
    contenders: list[tuple[str, Any, dict[str, Any]]] = [
        ("cp -r (I/O floor)", lambda: time_cp(corpus, len(files)), {}),
        (FLOOR, lambda: time_pydicom(listing), {}),
        ("pydicom read+write + SHA-256/MD5 of each output", lambda: time_pydicom(listing, hashed=True), {}),
    ]
    for workers in sorted({1, args.workers}):
        contenders.append((f"imaging-ingest engine, {workers} process{'es' if workers > 1 else ''}",
                           functools.partial(time_engine, listing, workers), {"workers": workers}))
    for workers in sorted({1, args.workers}):
        contenders.append((f"imaging-ingest deidentify (CLI, end to end), {workers} worker{'s' if workers > 1 else ''}",
                           functools.partial(time_cli, corpus, len(files), workers), {"workers": workers}))
    for peer in PEERS:
        if peer in peer_status and not peer_status[peer]:
            contenders.append((f"{peer} (peer)", functools.partial(time_peer, peer, listing, args.peer_seconds),
                               {"version": peer_version(peer)}))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in contenders}
    for round_ in range(args.runs):  # rounds, not one contender's runs in a row: drifting load hits all alike
        for name, timed, _ in contenders:
            got = timed()
            runs[name].append(got)
            print(f"round {round_ + 1}: {name}: {got.get('files', 0) / got['seconds']:.1f} files/s"
                  if "seconds" in got else f"round {round_ + 1}: {name}: {got}", flush=True)
    rows: list[dict[str, Any]] = []
    for name, _, extra in contenders:
        done = [r for r in runs[name] if "seconds" in r]
        if not done:
            rows.append({"name": name, "error": runs[name][-1].get("error", "no run")})
            continue
        last = done[-1]
        kept = {k: last[k] for k in ("published", "quarantined", "peak_rss_mb", "failed", "errors") if k in last}
        rows.append(_result(name, done, size, **extra, **kept))
    rows.extend({"name": f"{peer} (peer)", "error": why} for peer, why in peer_status.items() if why)
    floor = next(r for r in rows if r["name"] == FLOOR)["files_per_s"]
    print_table(rows, floor)

    memory: list[dict[str, Any]] = []
    cli_all = next(r for r in rows if r["name"].startswith("imaging-ingest deidentify") and r.get("workers") == args.workers)
    memory.append({"files": len(files), "file_size": "512x512 16-bit, scanner-sized header", "workers": args.workers,
                   "peak_rss_mb": cli_all["peak_rss_mb"]})
    if args.rss_files:
        small_root, small_files, _ = ensure_corpus(args.rss_files, 64, shaped=False)
        subset = WORK / f"corpus-{min(2000, args.rss_files)}-64-subset"
        if not subset.with_name(subset.name + ".complete").exists():
            shutil.rmtree(subset, ignore_errors=True)
            for path in small_files[: min(2000, args.rss_files)]:
                target = subset / path.relative_to(small_root)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, target)
            subset.with_name(subset.name + ".complete").write_text("ok\n", encoding="utf-8")
        for root, count in ((subset, min(2000, args.rss_files)), (small_root, len(small_files))):
            got = run_cli(root, args.workers, f"rss{count}")
            memory.append({"files": count, "file_size": "64x64 16-bit, synthetic header (small files keep this quick)",
                           "workers": args.workers, "seconds": round(got["seconds"], 1),
                           "files_per_s": round(count / got["seconds"], 1), "peak_rss_mb": got["peak_rss_mb"],
                           "peak_rss_main_mb": got["peak_rss_main_mb"]})
            print(f"peak RSS, {count} small files, {args.workers} workers: {got['peak_rss_mb']} MB "
                  f"(main process {got['peak_rss_main_mb']} MB)", flush=True)

    result = {
        **head,
        "machine": head["machine"] | {"pydicom": pydicom.__version__,
                                      "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "corpus": {"files": len(files), "bytes": size, "kind": "synthetic CT and MR, 512x512 16-bit, vendor-like "
                   "private blocks (GE on CT, Siemens on MR)", **header_shape(files),
                   "page_cache": "warm (every file read once before timing)"},
        "options": "the default collection config: Clean Descriptors, Retain Longitudinal Temporal Information "
                   "with Modified Dates",
        "floor_files_per_s": floor,
        "results": rows,
        "targets": targets(rows, floor, args.workers),
        "peers_install": peer_status,
        "memory": memory,
        "bench_seconds": round(time.perf_counter() - bench_start, 1),
        "notes": [
            f"every contender ran once per round, {args.runs} rounds; each row is the median run, "
            "files_per_s_runs the median, min, max and spread of files/s across the rounds",
            "engine: deidentify_files (read, de-identify, write, SHA-256 and MD5 of each output), timed in-process",
            "CLI: the whole command (interpreter start, inventory with source checksums, catalog, de-identification, "
            "screening, leak scan of every output, manifest), timed from outside",
            "peers: their documented Python calls, defaults, one process, timed in-process over the files done "
            "within the time budget",
            "the machine is shared: compare rows of one run, not across runs",
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.unlink(listing)
    shutil.rmtree(WORK / "out", ignore_errors=True)
    print(f"written {args.out} ({result['bench_seconds']} s)")
    if args.docs:  # the docs' tables (docs/deid.md's among them) follow the results files
        subprocess.run([sys.executable, str(REPO / "bench" / "docs_tables.py")], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
