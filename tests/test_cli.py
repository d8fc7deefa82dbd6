"""``imaging-ingest`` from the outside: exit codes, the deidentify manifest, symlinks, quarantine folder."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from imaging_ingest.cli import main


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imaging_ingest.cli", *args], capture_output=True, text=True, env=env or os.environ.copy()
    )


@pytest.fixture
def secret_file(tmp_path: Path, secret: bytes) -> Path:
    path = tmp_path / "secret.key"
    path.write_bytes(secret)
    return path


@pytest.fixture
def tree(tmp_path: Path, synth_cache: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(synth_cache, src)
    (src / "empty.dcm").write_bytes(b"")
    (src / "notes.txt").write_text("not an image")
    outside = tmp_path / "outside.dcm"
    shutil.copy(next(synth_cache.rglob("*CT*/1.dcm")), outside)
    (src / "escape.dcm").symlink_to(outside)
    return src


def _manifest(dst: Path) -> list[dict[str, str]]:
    with open(dst / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_deidentify_tree_writes_only_deidentified_files_and_a_manifest(
    tree: Path, tmp_path: Path, secret_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGING_INGEST_HOME", str(tmp_path / "home"))
    dst, quarantine = tmp_path / "dst", tmp_path / "quarantine"
    code = main(["deidentify", str(tree), str(dst), "--secret-file", str(secret_file),
                 "--quarantine-dir", str(quarantine), "--workers", "2"])
    assert code == 0
    rows = _manifest(dst)
    inputs = [p for p in tree.rglob("*") if p.is_file() or p.is_symlink()]
    assert len(rows) == len(inputs)
    by_path = {r["source_path"]: r for r in rows}
    assert by_path["empty.dcm"]["reason"] == "zero-byte file"
    assert "symbolic link" in by_path["escape.dcm"]["reason"]
    assert "not a DICOM file" in by_path["notes.txt"]["reason"]
    published = [r for r in rows if r["status"] == "published"]
    outputs = sorted(str(p.relative_to(dst)) for p in dst.rglob("*.dcm"))
    assert outputs == sorted(r["output_path"] for r in published)
    for row in published:
        ds = pydicom.dcmread(dst / row["output_path"])
        assert ds.PatientIdentityRemoved == "YES"
    assert not any("escape" in p.name for p in quarantine.iterdir())  # links are never followed, even to copy
    assert len(list(quarantine.glob("*.original"))) == len([r for r in rows if r["status"] == "quarantined"]) - 1


def test_deidentify_is_deterministic(tree: Path, tmp_path: Path, secret_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGING_INGEST_HOME", str(tmp_path / "home"))
    main(["deidentify", str(tree), str(tmp_path / "a"), "--secret-file", str(secret_file)])
    main(["deidentify", str(tree), str(tmp_path / "b"), "--secret-file", str(secret_file), "--workers", "2"])
    files_a = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*.dcm")}
    files_b = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*.dcm")}
    assert files_a and files_a == files_b


@pytest.mark.parametrize(
    "args, message",
    [
        (["deidentify", "/no/such/dir", "/tmp/x", "--secret-file", "/dev/null"], "not a directory"),
        (["deidentify"], "required"),
        (["nonsense"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args: list[str], message: str) -> None:
    result = _cli(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_destination_inside_source_is_refused(tree: Path, secret_file: Path) -> None:
    result = _cli("deidentify", str(tree), str(tree / "out"), "--secret-file", str(secret_file))
    assert result.returncode == 2 and "inside" in result.stderr


def test_quarantine_dir_inside_destination_is_refused(tree: Path, tmp_path: Path, secret_file: Path) -> None:
    dst = tmp_path / "dst"
    result = _cli("deidentify", str(tree), str(dst), "--secret-file", str(secret_file), "--quarantine-dir", str(dst / "q"))
    assert result.returncode == 2 and "outside DST_DIR" in result.stderr


def test_short_secret_is_a_clear_error(tree: Path, tmp_path: Path) -> None:
    weak = tmp_path / "weak.key"
    weak.write_text("short")
    result = _cli("deidentify", str(tree), str(tmp_path / "dst"), "--secret-file", str(weak))
    assert result.returncode == 1
    assert "64 hexadecimal characters" in result.stderr
    assert "Traceback" not in result.stderr


def test_synth_writes_marker_and_truth(tmp_path: Path) -> None:
    out = tmp_path / "sub"
    assert main(["synth", str(out), "--patients", "1", "--seed", "3", "--marker", "--truth", str(tmp_path / "t.json")]) == 0
    assert (out / "READY").exists()
    assert "planted" in (tmp_path / "t.json").read_text()
