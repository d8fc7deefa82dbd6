"""The one-pass leak scan (in the de-identification worker) reaches the verify stage's verdicts.

``imaging-ingest deidentify`` scans each output in the worker that wrote it, on the bytes in
memory (``pipeline.onepass``); the DAG scans in a verify stage of its own, reading the files
again. Both must publish and quarantine the same files for the same reasons, with the same
bytes. A collection that keeps an identifying attribute on purpose (an override) makes the scan
find something, so the comparison is not between two empty sets.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import pytest

from imaging_ingest.catalog import Catalog
from imaging_ingest.config import CollectionConfig, DeidConfig, DropConfig, License, TagOverride
from imaging_ingest.core.raw_elements import RawFile
from imaging_ingest.deid.batch import FileJob
from imaging_ingest.pipeline import onepass
from imaging_ingest.pipeline.localrun import deidentify_tree
from imaging_ingest.verify import leaks as leaks_module


def _config(src: Path) -> CollectionConfig:
    return CollectionConfig(
        id="onepass",
        title="One pass",
        license=License.CC_BY_4_0,
        drop=DropConfig(url=src.as_uri()),
        deid=DeidConfig(overrides={"InstitutionName": TagOverride(action="keep")}),  # a leak, on purpose
    )


def _run(tmp_path: Path, synth_cache: Path, secret: bytes, workers: int, one_pass: bool) -> dict[str, object]:
    name = f"{workers}-{'one' if one_pass else 'staged'}"
    src, dst = tmp_path / f"src-{name}", tmp_path / f"dst-{name}"
    shutil.copytree(synth_cache, src)
    catalog = Catalog.from_url(f"sqlite:///{tmp_path / name}.db")
    try:
        summary = deidentify_tree(
            src, dst, secret=secret, config=_config(src), catalog=catalog, workers=workers, one_pass=one_pass
        )
    finally:
        catalog.dispose()
    with open(dst / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["source_path"])
    files = {str(p.relative_to(dst)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(dst.rglob("*.dcm"))}
    return {"rows": rows, "files": files, "reasons": summary.reasons}


@pytest.mark.parametrize("workers", [1, 2])
def test_one_pass_and_the_verify_stage_agree(
    workers: int, tmp_path: Path, synth_cache: Path, secret: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    scanned: list[int] = []  # scans the de-identification worker ran
    rescanned: list[str] = []  # scans the verify stage ran (reading the files again)
    if workers == 1:  # in this process, so they can be counted (with 2, they run in other processes)
        real, real_stage = onepass.leak_scan, leaks_module._scan

        def counting(job: FileJob, source: bytes, output: bytes, parsed: RawFile | None) -> object:
            scanned.append(job.file_id)
            return real(job, source, output, parsed)

        def counting_stage(pair: tuple[str, str, tuple[str, ...] | None, str | None, tuple[str, ...]]) -> object:
            rescanned.append(pair[1])
            return real_stage(pair)

        monkeypatch.setattr("imaging_ingest.pipeline.localrun.leak_scan", counting)
        monkeypatch.setattr(leaks_module, "_scan", counting_stage)
    one = _run(tmp_path, synth_cache, secret, workers, one_pass=True)
    rescanned_in_one_pass = len(rescanned)
    staged = _run(tmp_path, synth_cache, secret, workers, one_pass=False)
    assert one == staged
    leaks = [r for r in one["rows"] if r["reason"].startswith("PHI leak")]  # type: ignore[union-attr, index]
    assert leaks, "the kept InstitutionName must be caught by both scans"
    if workers == 1:
        assert len(scanned) >= len(leaks)
        # the verify stage took the worker's verdicts: it scanned only outputs screening rewrote, if any
        assert rescanned_in_one_pass < len(rescanned) - len(scanned) // 2
