"""Hostile and broken submissions, built from generated DICOM: one file (or archive member) per case.

``build_hostile_submission`` writes a submission folder that mixes good files with one
instance of every kind of bad input the intake must survive, and returns the cases: the
source paths each case produces and the reason each must be quarantined with. The good
files must all publish; every file must end published or quarantined (conservation).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from imaging_ingest.config import ArchiveLimits

#: Small limits so that bombs stay small in tests.
TEST_LIMITS = ArchiveLimits(max_members=20, max_total_bytes=8 * 1024 * 1024, max_ratio=50)


@dataclass(frozen=True)
class Case:
    paths: tuple[str, ...]
    reason: str


def _template(synth: Path) -> Path:
    return sorted(synth.rglob("002_CT_CHEST_AXIAL/1.dcm"))[0]


def _variant(template: Path, name: str, *, series: str | None = None, sop: str | None = None) -> Dataset:
    """A copy of the template with fresh, deterministic UIDs (its own series unless told)."""
    ds = pydicom.dcmread(template)
    ds.SOPInstanceUID = sop or generate_uid(entropy_srcs=["hostile", name, "sop"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = series or generate_uid(entropy_srcs=["hostile", name, "series"])
    return ds


def _save(ds: Dataset, path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def _dicom_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def build_hostile_submission(target: Path, synth: Path, *, specials: bool = True) -> tuple[dict[str, Case], list[str]]:
    """Write the submission; return (cases by name, source paths of the good files)."""
    target.mkdir(parents=True)
    patient = sorted(p for p in synth.iterdir() if p.is_dir())[0]
    study = sorted(p for p in patient.iterdir() if p.is_dir())[0]
    good: list[str] = []
    for series in ("002_CT_CHEST_AXIAL", "003_MR_BRAIN_T1_POST"):
        shutil.copytree(study / series, target / "good" / series)
        good += [f"good/{series}/{p.name}" for p in sorted((target / "good" / series).iterdir())]
    template = _template(synth)
    cases: dict[str, Case] = {}
    bad = target / "bad"
    bad.mkdir()

    (bad / "empty.dcm").write_bytes(b"")
    cases["zero_byte"] = Case(("bad/empty.dcm",), "zero-byte file")

    whole = _dicom_bytes(_variant(template, "truncated"))
    (bad / "truncated.dcm").write_bytes(whole[: len(whole) - 4000])
    cases["truncated_dicom"] = Case(("bad/truncated.dcm",), "truncated file")

    (bad / "notes.bin").write_bytes(os.urandom(3000))
    cases["non_dicom"] = Case(("bad/notes.bin",), "not a DICOM file")

    ds = _variant(template, "no-sop")
    del ds.SOPInstanceUID
    _save(ds, bad / "no_sop_uid.dcm")
    cases["missing_sop_uid"] = Case(("bad/no_sop_uid.dcm",), "missing SOPInstanceUID")

    # longer than a UI value may be: refused although the profile remaps UIDs (a short value in the
    # wrong syntax, "1.2.840.abc.7", is remapped like any other: tests/deid/test_deid_variety.py)
    ds = _variant(template, "invalid-uid", sop="1.2.840." + "1234567890" * 6)
    _save(ds, bad / "invalid_uid.dcm")
    cases["invalid_uid"] = Case(("bad/invalid_uid.dcm",), "invalid SOPInstanceUID")

    sop = generate_uid(entropy_srcs=["hostile", "duplicate"])
    series = generate_uid(entropy_srcs=["hostile", "duplicate-series"])
    for index, number in enumerate((1, 2)):
        ds = _variant(template, "duplicate", series=series, sop=sop)
        ds.InstanceNumber = number
        _save(ds, bad / f"duplicate_{index}.dcm")
    cases["duplicate_sop_uid"] = Case(
        ("bad/duplicate_0.dcm", "bad/duplicate_1.dcm"), "SOPInstanceUID shared by 2 files with different content"
    )

    series = generate_uid(entropy_srcs=["hostile", "mixed-series"])
    for index, patient_id in enumerate(("MIX-A", "MIX-B")):
        ds = _variant(template, f"mixed-{index}", series=series)
        ds.PatientID = patient_id
        _save(ds, bad / f"mixed_{index}.dcm")
    cases["series_mixes_patients"] = Case(("bad/mixed_0.dcm", "bad/mixed_1.dcm"), "series mixes 2 patients")

    ds = _variant(template, "huge")
    ds.add_new(0x00190010, "LO", "HOSTILE TEST")
    ds.add_new(0x00191001, "OB", b"\0" * (17 * 1024 * 1024))
    _save(ds, bad / "huge_value.dcm")
    cases["huge_element_value"] = Case(("bad/huge_value.dcm",), "over the limit")

    ds = _variant(template, "deep")
    item = Dataset()
    item.CodeValue = "X"
    for _ in range(40):
        outer = Dataset()
        outer.ContentSequence = Sequence([item])
        item = outer
    ds.ContentSequence = item.ContentSequence
    _save(ds, bad / "deep_sequences.dcm")
    cases["deeply_nested_sequences"] = Case(("bad/deep_sequences.dcm",), "nested deeper than")

    # Names that break lines, terminals or decoders: valid DICOM content, quarantined for the name.
    names = bad / "names"
    names.mkdir()
    for key, raw, reason in (
        ("name_newline", b"new\nline.dcm", "file name contains a newline"),
        ("name_control", b"bell\x07.dcm", "file name contains control characters"),
        ("name_invalid_utf8", b"latin\xe9.dcm", "file name is not valid UTF-8"),
    ):
        data = _dicom_bytes(_variant(template, key))
        with open(os.path.join(os.fsencode(names), raw), "wb") as fh:
            fh.write(data)
        shown = "bad/names/" + raw.decode("utf-8", "backslashreplace").replace("\n", "\\x0a").replace("\x07", "\\x07")
        cases[key] = Case((shown,), reason)

    if specials:
        os.symlink("/etc/passwd", bad / "link_to_passwd.dcm")
        cases["symlink"] = Case(("bad/link_to_passwd.dcm",), "symbolic link (never followed)")
        os.mkfifo(bad / "pipe.dcm")
        cases["fifo"] = Case(("bad/pipe.dcm",), "not a regular file")

    # A zip with one good member and hostile ones; the good member must publish.
    member_good = _dicom_bytes(_variant(template, "zip-good"))
    with zipfile.ZipFile(target / "upload.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("series/good.dcm", member_good)
        zf.writestr("../escape.dcm", _dicom_bytes(_variant(template, "zip-escape")))
        zf.writestr("/etc/absolute.dcm", _dicom_bytes(_variant(template, "zip-absolute")))
        link = zipfile.ZipInfo("series/link.dcm")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "../../../../etc/passwd")
        zf.writestr("series/bomb.dcm", b"\0" * (4 * 1024 * 1024))
    good.append("upload.zip/series/good.dcm")
    cases["archive_parent_path"] = Case(("upload.zip/../escape.dcm",), "escapes the archive (../)")
    cases["archive_absolute_path"] = Case(("upload.zip//etc/absolute.dcm",), "absolute path")
    cases["archive_symlink_outside"] = Case(("upload.zip/series/link.dcm",), "symbolic link pointing outside")
    cases["zip_bomb_ratio"] = Case(("upload.zip/series/bomb.dcm",), "compression ratio")

    # A tar with a device file and a link out of the archive.
    with tarfile.open(target / "bundle.tar", "w") as tf:
        data = _dicom_bytes(_variant(template, "tar-good"))
        info = tarfile.TarInfo("scans/good.dcm")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        device = tarfile.TarInfo("scans/null")
        device.type, device.devmajor, device.devminor = tarfile.CHRTYPE, 1, 3
        tf.addfile(device)
        link = tarfile.TarInfo("scans/shadow.dcm")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tf.addfile(link)
    good.append("bundle.tar/scans/good.dcm")
    cases["archive_device_file"] = Case(("bundle.tar/scans/null",), "device file or pipe")
    cases["tar_symlink_outside"] = Case(("bundle.tar/scans/shadow.dcm",), "symbolic link pointing outside")

    # Archives rejected whole: too many members; too many bytes.
    with zipfile.ZipFile(target / "many.zip", "w") as zf:
        for index in range(TEST_LIMITS.max_members + 5):
            zf.writestr(f"m{index}.txt", "x")
    cases["archive_too_many_members"] = Case(("many.zip",), "members, over the limit")
    with zipfile.ZipFile(target / "large.zip", "w", zipfile.ZIP_STORED) as zf:
        for index in range(3):
            zf.writestr(f"part{index}.bin", os.urandom(3 * 1024 * 1024))
    cases["archive_too_large"] = Case(("large.zip",), "bytes, over the limit")
    return cases, good
