"""Batches: a process pool gives the same files as one process; a bad file is an outcome, not a crash."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from imaging_ingest.config import DeidOption
from imaging_ingest.deid.batch import FileJob, deidentify_files, deidentify_frame, merge_results, output_key
from imaging_ingest.deid.uids import remap_uid
from imaging_ingest.synth.generate import SynthSummary

from .deid_helpers import SECRET, dicom_files, patient, resolve


def jobs(files: list[Path], out: Path) -> list[FileJob]:
    return [FileJob(i, str(f), str(out / f"{i}.dcm"), patient()) for i, f in enumerate(files)]


def test_two_workers_write_the_same_bytes_as_one(submission: SynthSummary, tmp_path: Path) -> None:
    files = dicom_files(submission)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x00" * 200)
    files.append(junk)
    profile = resolve(DeidOption.CLEAN_DESCRIPTORS, DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES)
    seen: list[int] = []
    one = deidentify_files(jobs(files, tmp_path / "one"), profile, SECRET, workers=1)
    two = deidentify_files(jobs(files, tmp_path / "two"), profile, SECRET, workers=2, on_done=lambda o: seen.append(o.file_id))
    assert [o.file_id for o in two] == list(range(len(files))) == sorted(seen)
    assert [o.output for o in one] == [o.output for o in two]
    for i in range(len(files) - 1):
        assert (tmp_path / "one" / f"{i}.dcm").read_bytes() == (tmp_path / "two" / f"{i}.dcm").read_bytes()
    assert one[-1].output is None and two[-1].reason is not None and "unreadable" in two[-1].reason


def test_frame_rows_carry_new_identity_checksums_and_counts(submission: SynthSummary, tmp_path: Path) -> None:
    from pydicom import dcmread

    files = dicom_files(submission, "CT")
    records = []
    for i, f in enumerate(files):
        ds = dcmread(f, stop_before_pixels=True)
        records.append({"file_id": i, "status": "ok", "reason": None, "locator": str(f), "patient_id": ds.PatientID,
                        "pseudo_patient_id": "TESTCOLL-0001", "date_offset_days": -10, "study_uid": ds.StudyInstanceUID,
                        "series_uid": ds.SeriesInstanceUID, "sop_uid": ds.SOPInstanceUID})
    frame = pd.DataFrame(records)
    uploaded: list[str] = []
    result = deidentify_frame(frame, resolve(DeidOption.CLEAN_DESCRIPTORS), SECRET,
                              source_of=lambda r: Path(r["locator"]), destination_of=lambda key: tmp_path / key,
                              on_output=lambda row: uploaded.append(row["deid_key"]))
    assert (result["status"] == "ok").all() and len(uploaded) == len(files)
    first = result.iloc[0]
    assert first["deid_key"] == "/".join(remap_uid(SECRET, records[0][c]) for c in ("study_uid", "series_uid", "sop_uid")) + ".dcm"
    assert first["deid_key"] == output_key(records[0], SECRET, retain_uids=False)
    assert (tmp_path / first["deid_key"]).stat().st_size == first["size_out"]
    assert first["out_Modality"] == "CT" and first["n_private_removed"] > 0 and first["n_uids"] >= 4
    merged = merge_results(frame.assign(status=["ok"] * (len(files) - 1) + ["quarantined"]), result)
    assert merged["status"].tolist()[-1] == "quarantined"
