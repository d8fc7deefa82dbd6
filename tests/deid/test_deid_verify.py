"""The independent verifier: no false positives on clean outputs, a hit whenever a step is skipped."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

import imaging_ingest.deid.values as values_module
from imaging_ingest.config import DeidOption
from imaging_ingest.deid import Action, Deidentifier
from imaging_ingest.deid.freetext.element import ElementResult
from imaging_ingest.synth.generate import SynthSummary
from imaging_ingest.verify import leaks as verify
from imaging_ingest.verify.leaks import find_leaks, identifying_values, verify_frame

from .deid_helpers import OPTION_SETS, SECRET, ct_dataset, dicom_files, patient, resolve, write


def deid(src: Path, dst: Path, *options: DeidOption, profile_hook=None) -> Path:  # type: ignore[no-untyped-def]
    profile = resolve(*options)
    if profile_hook is not None:
        profile_hook(profile)
    Deidentifier(profile, SECRET).deidentify_file(src, dst, patient())
    return dst


def test_verifier_shares_no_code_with_the_action_table() -> None:
    tree = ast.parse(Path(verify.__file__).read_text(encoding="utf-8"))
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not [m for m in imported if "deid" in m or "profile" in m or m.startswith(".")], imported


def test_needles_cover_names_ids_dates_uids_addresses_and_private_strings(tmp_path: Path) -> None:
    ds = ct_dataset()
    block = ds.private_block(0x0029, "ACME 1.0", create=True)
    block.add_new(0x10, "LO", "call QUANDT at home")
    write(ds, tmp_path / "src.dcm")
    values = {n.value.decode() for n in identifying_values(dcmread(tmp_path / "src.dcm", stop_before_pixels=True))}
    assert {"ZYGMUNTOWICZ^XAVIERA", "ZYGMUNTOWICZ XAVIERA", "XAVIERA ZYGMUNTOWICZ", "ZYGMUNTOWICZ", "XAVIERA",
            "VOSSBERG", "KAZIMIR", "MRN123456", "ACC99887766", "ST778899", "19610417", "1961-04-17", "04/17/1961",
            "17.04.1961", "QUIXWORTH GENERAL HOSPITAL", "17 JUXTAPOSE LANE, QUAHOG", "QXSTATION7", "SN-77QX1",
            "call QUANDT at home", "QXSITEPACS", str(ds.StudyInstanceUID)} <= values
    assert "ACME 1.0" not in values  # a private creator names a vendor, not a patient
    assert "CHEST" not in values and "F" not in values


@pytest.mark.parametrize("options", list(OPTION_SETS.values()), ids=list(OPTION_SETS))
def test_no_false_positives_on_the_synthetic_submission(options: tuple[DeidOption, ...], submission: SynthSummary,
                                                        tmp_path: Path) -> None:
    for i, src in enumerate(dicom_files(submission)):
        out = deid(src, tmp_path / f"{i}.dcm", *options)
        assert find_leaks(src, out) == [], src.parent.name
        assert find_leaks(src, out, [o.value for o in options]) == []


@pytest.mark.parametrize(
    ("keyword", "source", "option"),
    [
        ("ReferringPhysicianName", "(0008,0090) ReferringPhysicianName", DeidOption.CLEAN_DESCRIPTORS),
        ("AccessionNumber", "(0008,0050) AccessionNumber", DeidOption.CLEAN_DESCRIPTORS),
        ("StudyDate", "(0008,0020) StudyDate", DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES),
        ("SeriesInstanceUID", "(0020,000E) SeriesInstanceUID", DeidOption.CLEAN_DESCRIPTORS),
        ("InstitutionAddress", "(0008,0081) InstitutionAddress", DeidOption.CLEAN_DESCRIPTORS),
    ],
)
def test_a_tag_the_profile_wrongly_keeps_is_caught(keyword: str, source: str, option: DeidOption,
                                                   submission: SynthSummary, tmp_path: Path) -> None:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)

    def keep(profile) -> None:  # type: ignore[no-untyped-def]
        profile.actions[tag] = Action.KEEP
        profile._by_sop_class.clear()
        object.__setattr__(profile, "overridden", profile.overridden | {tag})  # literal: not even remapped

    src = dicom_files(submission, "CT")[0]
    out = deid(src, tmp_path / "out.dcm", option, profile_hook=keep)
    leaks = find_leaks(src, out)
    assert any(keyword in leak.found_in for leak in leaks)
    if keyword != "StudyDate":  # the same date is first met in Instance Creation Date
        assert source in {leak.source for leak in leaks}
    assert all("QUARTERMAINE" not in leak.reason and "MRN" not in leak.reason for leak in leaks)


def test_skipped_private_removal_is_caught(submission: SynthSummary, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Deidentifier, "_private", lambda self, ds, tags, run, stats, depth: None)
    src = dicom_files(submission, "MR")[0]
    leaks = find_leaks(src, deid(src, tmp_path / "out.dcm"))
    assert any(leak.found_in.endswith("private") for leak in leaks)


def test_skipped_uid_remapping_is_caught(submission: SynthSummary, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(values_module, "remap_uid", lambda secret, uid: uid)
    src = dicom_files(submission, "RTSTRUCT")[0]
    leaks = find_leaks(src, deid(src, tmp_path / "out.dcm"))
    assert {"(0008,0018) SOPInstanceUID", "(0020,000D) StudyInstanceUID"} <= {leak.source for leak in leaks}


def test_skipped_scrubbing_is_caught(submission: SynthSummary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(values_module, "clean_element", lambda values, tag, vr, identifiers: ElementResult(list(values), 0, 0))
    src = dicom_files(submission, "CT")[0]
    leaks = find_leaks(src, deid(src, tmp_path / "out.dcm", DeidOption.CLEAN_DESCRIPTORS))
    assert any("StudyDescription" in leak.found_in for leak in leaks)


def test_a_value_hidden_in_pixel_data_is_caught(tmp_path: Path) -> None:
    ds = ct_dataset(pixels=False)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xfe\x00\x16ZYGMUNTOWICZ XAVIERA\xff\xd9"])  # a JPEG comment
    ds["PixelData"].VR = "OB"
    src = write(ds, tmp_path / "src.dcm", JPEGBaseline8Bit)
    leaks = find_leaks(src, deid(src, tmp_path / "out.dcm"))
    assert leaks and {leak.found_in for leak in leaks} == {"pixel data or unparsed bytes"}


def test_retained_on_purpose_is_not_a_leak_but_the_same_value_elsewhere_is(tmp_path: Path) -> None:
    ds = ct_dataset()
    block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0D, "CS", "QXDIRECTIONAL")  # safe private, kept as it is
    src = write(ds, tmp_path / "src.dcm")
    out = deid(src, tmp_path / "out.dcm", DeidOption.RETAIN_SAFE_PRIVATE, DeidOption.RETAIN_UIDS)
    assert find_leaks(src, out) == []
    # the output's own record says which options were applied; a caller saying less is stricter
    assert {leak.source for leak in find_leaks(src, out, options=[])} >= {"(0008,0018) SOPInstanceUID",
                                                                           "(0019,100D) private"}
    moved = dcmread(out)
    moved.ImageComments = "QXDIRECTIONAL"
    moved.save_as(tmp_path / "moved.dcm")
    assert [leak.found_in for leak in find_leaks(src, tmp_path / "moved.dcm")] == ["(0020,4000) ImageComments"]


def test_verify_frame_quarantines_with_the_element_never_the_value(submission: SynthSummary, tmp_path: Path) -> None:
    files = dicom_files(submission, "CT")
    rows = []
    for i, src in enumerate(files):
        out = tmp_path / f"{i}.dcm"
        deid(src, out, DeidOption.CLEAN_DESCRIPTORS)
        rows.append({"file_id": i, "status": "ok", "reason": None, "src": str(src), "out": str(out)})
    leaky = dcmread(rows[1]["out"])
    leaky.OperatorsName = dcmread(files[1]).OperatorsName
    leaky.save_as(rows[1]["out"])
    Path(rows[2]["out"]).write_bytes(b"garbage")
    rows.append({"file_id": 99, "status": "quarantined", "reason": "earlier", "src": "", "out": ""})
    frame = pd.DataFrame(rows)
    for workers in (1, 2):
        result = verify_frame(frame, lambda r: Path(r["src"]), lambda r: Path(r["out"]), workers=workers)
        assert result["status"].tolist()[:3] == ["ok", "quarantined", "quarantined"]
        assert result.loc[1, "reason"].startswith("PHI leak: a value of source (0008,1070) OperatorsName")
        assert "found in output (0008,1070) OperatorsName" in result.loc[1, "reason"]
        assert "verification failed" in result.loc[2, "reason"]
        last = result.index[-1]
        assert result.loc[last, "reason"] == "earlier" and not result.loc[last, "verified"]
        assert result["verified"].tolist()[:2] == [True, True]


def test_verifier_does_not_flag_a_clean_output_of_a_retained_device(tmp_path: Path) -> None:
    src = write(ct_dataset(), tmp_path / "src.dcm")
    out = deid(src, tmp_path / "out.dcm", DeidOption.RETAIN_DEVICE_IDENTITY, DeidOption.RETAIN_INSTITUTION_IDENTITY)
    assert find_leaks(src, out) == []
    kept = dcmread(out)
    assert kept.StationName == "QXSTATION7" and kept.InstitutionName == "QUIXWORTH GENERAL HOSPITAL"


def _unused(ds: Dataset) -> None:  # keeps the Dataset import honest for type checkers
    del ds
