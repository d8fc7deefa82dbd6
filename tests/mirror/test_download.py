"""``imaging-ingest download``: by index, query or manifest; verified, resumable after SIGKILL, old manifests keep working."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from imaging_ingest.cli import main
from imaging_ingest.download.selection import from_index, parse_manifest
from imaging_ingest.download.transfer import DownloadFailed, InsufficientSpace, S3Source, download
from imaging_ingest.publish.index import index_key

pytestmark = pytest.mark.mirror

ROOT = Path(__file__).resolve().parents[2]
SOURCE_PATH = os.pathsep.join([str(ROOT / "include"), str(ROOT / "dags")])


@pytest.fixture
def env(archive, monkeypatch) -> dict[str, str]:
    values = {"IMAGING_INGEST_S3_ENDPOINT": archive.settings.s3_endpoint,
              "IMAGING_INGEST_BUCKET_PREFIX": archive.settings.bucket_prefix}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def _source(archive) -> S3Source:
    return S3Source(archive.store.bucket("public"), archive.settings.s3_endpoint, anonymous=True)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.dcm"))}


def _published(archive, number: int) -> dict[str, bytes]:
    """The bytes of a version's DICOM objects, by their download path."""
    release = archive.store.get_json("public", f"demo/versions/{number}/release.json")
    return {f"demo/{o['study_uid']}/{o['series_uid']}/{o['sop_uid']}.dcm": archive.store.get_bytes("public", o["key"])
            for o in release["objects"] if o.get("kind", "dicom") == "dicom"}


def test_download_a_version_reproduces_the_published_bytes_and_cites_it(archive, env, tmp_path, capsys) -> None:
    dest = tmp_path / "v2"
    assert main(["download", "demo", "--version", "2", "--dest", str(dest), "--no-progress", "--json"]) == 0
    assert _files(dest) == _published(archive, 2)
    citation = (dest / "CITATION.txt").read_text()
    assert "10.5072/imaging.demo.v2" in citation and "(Version 2)" in citation
    lines = (dest / "manifest.s5cmd").read_text().splitlines()
    assert len(parse_manifest("\n".join(lines))) == len(lines) == len(archive.store.get_json(
        "public", "demo/versions/2/release.json")["objects"])
    assert all(line.startswith(f"cp s3://{archive.store.bucket('public')}/demo/") for line in lines)
    aws = (dest / "manifest-aws.sh").read_text()
    assert aws.count("aws s3 cp --endpoint-url") == len(lines) and "--no-sign-request" in aws
    # a second run finds everything in place and fetches nothing
    capsys.readouterr()
    assert main(["download", "demo", "--version", "2", "--dest", str(dest), "--no-progress", "--json"]) == 0
    assert '"fetched": 0' in capsys.readouterr().out


def test_a_query_over_the_index_selects_series(archive, env, tmp_path) -> None:
    selection = from_index(_source(archive), "demo", 2, where="modality = 'MR'")
    assert selection.items and {i.path.split("/")[2] for i in selection.items}
    series = pq.read_table(io.BytesIO(archive.store.get_bytes("public", index_key("demo", 2, "series")))).to_pylist()
    mr = {s["series_uid"] for s in series if s["modality"] == "MR"}
    assert {i.series_uid for i in selection.items} == mr
    assert len(selection.items) == sum(s["instance_count"] for s in series if s["modality"] == "MR")
    with pytest.raises(ValueError, match="query over the series index failed"):
        from_index(_source(archive), "demo", 2, where="no_such_column = 1")


def test_a_download_killed_halfway_resumes_and_completes(archive, env, tmp_path) -> None:
    manifest_dir = tmp_path / "manifest"
    assert main(["download", "demo", "--dest", str(manifest_dir), "--manifests-only", "--no-progress"]) == 0
    manifest = manifest_dir / "manifest.s5cmd"
    total = sum(len(b) for b in _published(archive, 2).values())
    dest = tmp_path / "dest"
    command = [sys.executable, "-m", "imaging_ingest.cli", "download", "--manifest", str(manifest), "--dest", str(dest),
               "--workers", "2", "--max-rate", str(total // 4), "--no-progress"]
    child = subprocess.Popen(command, env=os.environ | {"PYTHONPATH": SOURCE_PATH}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_files(dest) if dest.exists() else {}) < 3:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    halfway = _files(dest)
    parts = list(dest.rglob("*.partial"))  # objects cut off mid-way: the rerun continues them (a range request)
    print(f"killed with {len(halfway)} files done and {len(parts)} parts")
    assert 0 < len(halfway) < len(_published(archive, 2)), "the download was not killed halfway"
    assert all(_published(archive, 2)[path] == data for path, data in halfway.items())  # finished files are whole

    out = subprocess.run(command[:-3] + ["--no-progress", "--json"], env=os.environ | {"PYTHONPATH": SOURCE_PATH},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f'"already_present": {len(halfway)}' in out.stdout
    assert _files(dest) == _published(archive, 2)
    assert not list(dest.rglob("*.partial"))


def test_after_a_new_version_the_old_versions_manifests_download_bit_for_bit(archive, env, tmp_path) -> None:
    """Version 2 replaced a series; version 1's index and its series manifest still return version 1's bytes."""
    v1_series = pq.read_table(io.BytesIO(archive.store.get_bytes("public", index_key("demo", 1, "series")))).to_pylist()
    replaced = archive.store.get_json("public", "demo/versions/2/release.json")["changes"]["replaced_series"]
    row = next(s for s in v1_series if s["series_uid"] == replaced[0])
    manifest = tmp_path / "series-v1.s5cmd"
    manifest.write_bytes(archive.store.get_bytes("public", row["manifest_key"]))
    dest = tmp_path / "old-series"
    assert main(["download", "--manifest", str(manifest), "--dest", str(dest), "--no-progress"]) == 0
    got = _files(dest)
    v1 = _published(archive, 1)
    assert len(got) == row["instance_count"] and got == {p: v1[p] for p in got}
    assert got != {p: b for p, b in _published(archive, 2).items() if p in got}  # v2 has other bytes for it
    assert "10.5072/imaging.demo.v1" in (dest / "CITATION.txt").read_text()
    # the whole of version 1 too, through its index
    whole = tmp_path / "v1"
    assert main(["download", "demo", "--version", "1", "--dest", str(whole), "--no-progress"]) == 0
    assert _files(whole) == v1
    assert {k: v for k, v in archive.v1_snapshot.items() if "/versions/" not in k} == {
        k: archive.store.get_bytes("public", k) for k in archive.v1_snapshot if "/versions/" not in k}


def test_free_space_is_checked_first_and_bad_bytes_are_refused(archive, tmp_path, monkeypatch) -> None:
    selection = from_index(_source(archive), "demo", 2)
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    with pytest.raises(InsufficientSpace, match="needs"):
        download(selection, _source(archive), tmp_path / "full", progress=False)
    assert not list((tmp_path / "full").rglob("*"))
    monkeypatch.setattr(shutil, "disk_usage", real)

    class Corrupt(S3Source):
        def chunks(self, item, start):
            for block in super().chunks(item, start):
                yield bytes(255 - b for b in block[:4]) + block[4:]

    small = type(selection)(selection.bucket, selection.items[:2], selection.versions)
    with pytest.raises(DownloadFailed, match="checksum differs"):
        download(small, Corrupt(selection.bucket, archive.settings.s3_endpoint), tmp_path / "bad", progress=False)
    assert not list((tmp_path / "bad").rglob("*.dcm"))
