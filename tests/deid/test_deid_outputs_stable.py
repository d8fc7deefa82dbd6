"""The fast path writes what the slower path wrote: ``imaging-ingest deidentify`` outputs, byte for byte.

``data/localrun_digests.json`` was recorded with the code before the throughput work of issue 17
(four header parses per file, per-row frame assignment): the SHA-256 of every published file and
the manifest's rows, for a fixed synthetic submission (2 patients, seed 11, two CT slices and an MR
slice given scanner-sized headers, whose vendor private blocks exercise Retain Safe Private).
Any change to what is written, or to what is quarantined and why, fails here.
Regenerate only for an intended output change: delete the JSON file and run this test once (it
records the digests and fails, saying so).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from imaging_ingest.cli import main

DIGESTS = Path(__file__).parent / "data" / "localrun_digests.json"
BENCH_DEID = Path(__file__).resolve().parents[2] / "bench" / "deid"


def _tree(src: Path, synth_cache: Path) -> Path:
    shutil.copytree(synth_cache, src)
    sys.path.insert(0, str(BENCH_DEID))
    try:
        from corpus import shape_like_a_scanner  # the benchmark's scanner-sized headers
    finally:
        sys.path.remove(str(BENCH_DEID))
    ct = sorted(synth_cache.rglob("*CT*/*.dcm"))[:2]
    mr = sorted(synth_cache.rglob("*MR*/*.dcm"))[:1]
    for path in ct + mr:  # in place: a copy would share its SOP Instance UID with the original
        shape_like_a_scanner(path, src / path.relative_to(synth_cache))
    return src


def _outcome(dst: Path) -> dict[str, object]:
    with open(dst / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["source_path"])
    files = {
        str(p.relative_to(dst)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(dst.rglob("*.dcm"))
    }
    return {"manifest": rows, "files": files}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_deidentify_outputs_match_the_recorded_digests(
    workers: str, tmp_path: Path, synth_cache: Path, secret: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGING_INGEST_HOME", str(tmp_path / "home"))
    secret_file = tmp_path / "secret.key"
    secret_file.write_bytes(secret)
    src = _tree(tmp_path / "src", synth_cache)
    dst = tmp_path / "dst"
    assert (
        main(["deidentify", str(src), str(dst), "--secret-file", str(secret_file), "--workers", workers]) == 0
    )
    got = _outcome(dst)
    if not DIGESTS.exists():
        DIGESTS.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        pytest.fail(f"no recorded digests: recorded them in {DIGESTS.name}; check them in")
    expected = json.loads(DIGESTS.read_text(encoding="utf-8"))
    assert got["manifest"] == expected["manifest"]
    assert got["files"] == expected["files"]
