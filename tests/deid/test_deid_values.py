"""UIDs, date shifting, the scrubber, pseudonyms and the secret: the value-level building blocks."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from imaging_ingest.config import DeidOption
from imaging_ingest.deid import Deidentifier, date_offset_days, remap_uid, scrub_text, shift_da, shift_dt
from imaging_ingest.synth.generate import SynthSummary

from .deid_helpers import SECRET, dicom_files, patient, resolve

# -- UIDs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("uid", ["1.2.3", "1.2.826.0.1.3680043.9.7777.1.1.1", "2.25." + "9" * 39, "1" * 64])
def test_uid_is_2_25_and_hmac_sha256_truncated_to_128_bits(uid: str) -> None:
    new = remap_uid(SECRET, uid)
    digest = hmac.new(SECRET, uid.encode(), hashlib.sha256).digest()
    assert new == "2.25." + str(int.from_bytes(digest[:16], "big"))
    assert len(new) <= 5 + 39 <= 64
    assert new == remap_uid(SECRET, uid + "\x00")  # padding is not part of the UID
    assert new != remap_uid(SECRET + b"!", uid)


def test_registered_uids_pass_through() -> None:
    for uid in (CTImageStorage, ExplicitVRLittleEndian, "1.2.840.10008.5.1.4.1.1.481.3", "1.2.840.10008.2.16.4"):
        assert remap_uid(SECRET, uid) == uid


# -- dates ----------------------------------------------------------------------------------


def test_shift_da_keeps_intervals_ranges_and_multiple_values() -> None:
    assert shift_da("20190302", -400) == "20180126"
    assert shift_da("20190302-20190310", -1) == "20190301-20190309"
    assert shift_da("-20190310", -1) == "-20190309"
    assert shift_da("20190302\\20200229", 1) == "20190303\\20200301"
    assert shift_da("2019.03.02", -1) == "20190301"  # ACR-NEMA spelling, written back as DICOM
    with pytest.raises(ValueError):
        shift_da("20190230", 1)


def test_shift_dt_keeps_time_fraction_offset_and_precision() -> None:
    assert shift_dt("20190302235959.123456+0100", -1) == "20190301235959.123456+0100"
    assert shift_dt("201903", -40) == "201901"  # year-month precision stays year-month
    assert shift_dt("2019", -400) == "2017"  # year precision: the year moves with the shift


def test_offsets_are_per_patient_deterministic_and_in_range() -> None:
    offsets = {date_offset_days(SECRET, f"patient-{i}", -3650, -30) for i in range(200)}
    assert all(-3650 <= o <= -30 for o in offsets)
    assert len(offsets) > 150
    assert date_offset_days(SECRET, "patient-1", -3650, -30) == date_offset_days(SECRET, "patient-1", -3650, -30)
    assert date_offset_days(SECRET, "patient-1", -3650, -30) != date_offset_days(SECRET + b"x", "patient-1", -3650, -30)


def test_intervals_between_a_patients_studies_are_exact(submission: SynthSummary, tmp_path: Path) -> None:
    """Baseline and follow-up of one patient move together: the interval, the times and the age survive."""
    profile = resolve(DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES, DeidOption.RETAIN_PATIENT_CHARACTERISTICS)
    engine = Deidentifier(profile, SECRET)
    before, after = {}, {}
    for i, src in enumerate(dicom_files(submission, "CT")):
        dst = tmp_path / f"{i}.dcm"
        engine.deidentify_file(src, dst, patient(offset=-1234))
        a, b = dcmread(src), dcmread(dst)
        before[str(a.StudyDescription).split()[1]] = a
        after[str(a.StudyDescription).split()[1]] = b
    def day(value: str) -> dt.date:
        return dt.datetime.strptime(value, "%Y%m%d").date()
    interval = day(before["FOLLOW-UP"].StudyDate) - day(before["BASELINE"].StudyDate)
    assert day(after["FOLLOW-UP"].StudyDate) - day(after["BASELINE"].StudyDate) == interval
    for key in before:
        assert day(before[key].StudyDate) - day(after[key].StudyDate) == dt.timedelta(days=1234)
        assert after[key].StudyTime == before[key].StudyTime and after[key].AcquisitionTime == before[key].AcquisitionTime
        # the age at the study is a characteristic, kept as it was: shifting moves the study and the
        # (never published: Z in every option) birth date together, so the age is still right
        assert after[key].PatientAge == before[key].PatientAge
        assert after[key].PatientBirthDate == ""


def test_unparseable_dates_are_emptied(tmp_path: Path) -> None:
    from .deid_helpers import ct_dataset
    from .deid_helpers import write as write_ds

    ds = ct_dataset()
    ds.StudyDate = "2019-3-2"
    src = write_ds(ds, tmp_path / "src.dcm")
    Deidentifier(resolve(DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES), SECRET).deidentify_file(
        src, tmp_path / "out.dcm", patient())
    assert dcmread(tmp_path / "out.dcm").StudyDate == ""


# -- the scrubber ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "identifiers", "expected"),
    [
        ("CT CHEST for DOE JOHN MRN123456 2019-03-02", ("DOE", "JOHN", "MRN123456"), "CT CHEST for [NAME] [ID] [DATE]"),
        ("follow up 03/02/2019 and 2.3.19", (), "follow up [DATE] and [DATE]"),
        ("scan of 2 March 2019, again Mar 2, 2019", (), "scan of [DATE], again [DATE]"),
        ("acquired 20190302120000 ok", (), "acquired [DATE] ok"),
        ("Dr Smith reviewed; call (614) 555-0123", (), "Dr [NAME] reviewed; call [PHONE]"),
        ("numbers A12345678 and 123-45-6789", (), "numbers [ID] and [ID]"),
        ("ACC: 99887 MRN# 1234567", (), "ACC: [ID] MRN# [ID]"),
        ("baseline 2019 protocol", (), "baseline [DATE] protocol"),
        ("mail jane.doe@example.org", (), "mail [EMAIL]"),
        ("DOB: 1961", (), "DOB: [DATE]"),
        ("T1 MPRAGE SAG 1.0mm b1000", (), "T1 MPRAGE SAG 1.0mm b1000"),  # technical text is untouched
        ("brain for doe", ("DOE",), "brain for [NAME]"),  # case-insensitive, whole words only
        ("DOESKIN series", ("DOE",), "DOESKIN series"),
    ],
)
def test_scrub_text(text: str, identifiers: tuple[str, ...], expected: str) -> None:
    cleaned, removed = scrub_text(text, identifiers)
    assert cleaned == expected
    assert (removed > 0) == (cleaned != text)


def test_scrub_returns_unchanged_text_untouched() -> None:
    assert scrub_text("  AXIAL  5MM  ", ("DOE",)) == ("  AXIAL  5MM  ", 0)


# -- pseudonyms and the secret -------------------------------------------------------------------


def test_pseudonyms_are_stable_across_submissions_and_reruns(tmp_path: Path) -> None:
    import pandas as pd

    from imaging_ingest.catalog import Catalog
    from imaging_ingest.config import CollectionConfig
    from imaging_ingest.deid.patients import assign_patients

    config = CollectionConfig.model_validate({"id": "lungs", "title": "Lungs", "license": "CC-BY-4.0",
                                              "drop": {"url": "file:///tmp/drop"}})
    catalog = Catalog.from_url(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    catalog.ensure_collection(config)

    def frame(*ids: str) -> pd.DataFrame:
        return pd.DataFrame({"status": ["ok"] * len(ids), "patient_id": list(ids), "series_uid": list(ids)})

    first = assign_patients(frame("MRN1", "MRN2"), SECRET, catalog, config)
    again = assign_patients(frame("MRN2", "MRN1"), SECRET, catalog, config)
    later = assign_patients(frame("MRN3", "MRN1"), SECRET, catalog, config)
    by_id = dict(zip(first["patient_id"], first["pseudo_patient_id"], strict=True))
    assert dict(zip(again["patient_id"], again["pseudo_patient_id"], strict=True)) == by_id
    assert dict(zip(later["patient_id"], later["pseudo_patient_id"], strict=True))["MRN1"] == by_id["MRN1"]
    assert len(set(later["pseudo_patient_id"]) | set(by_id.values())) == 3
    offsets = dict(zip(first["patient_id"], first["date_offset_days"], strict=True))
    assert dict(zip(later["patient_id"], later["date_offset_days"], strict=True))["MRN1"] == offsets["MRN1"]
    catalog.dispose()


def test_without_a_secret_nothing_starts(tmp_path: Path) -> None:
    from imaging_ingest.core.secret import SecretMissing, load_secret, read_secret_file

    with pytest.raises(SecretMissing):
        load_secret({})
    with pytest.raises(SecretMissing):
        read_secret_file(tmp_path / "missing")
    (tmp_path / "short").write_text("abc")
    with pytest.raises(SecretMissing):
        read_secret_file(tmp_path / "short")
