"""Coincidental matches inside kept non-identifying attributes are not leaks; real leaks there still are."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from imaging_ingest.deid import Deidentifier
from imaging_ingest.verify.coincidence import Place, coincidental
from imaging_ingest.verify.leaks import find_leaks

from .deid_helpers import PSEUDONYM, SECRET, code_item, ct_dataset, patient, resolve, write


def deidentified(ds: Dataset, tmp_path: Path, name: str = "x") -> tuple[Path, Path]:
    src = write(ds, tmp_path / f"{name}-src.dcm")
    out = tmp_path / f"{name}-out.dcm"
    Deidentifier(resolve(), SECRET).deidentify_file(src, out, patient())
    return src, out


def test_institution_inside_the_manufacturer_is_a_coincidence(tmp_path: Path) -> None:
    ds = ct_dataset()
    ds.InstitutionName = "TOSHIBA"
    ds.Manufacturer = "TOSHIBA_MEC"
    assert find_leaks(*deidentified(ds, tmp_path)) == []


def test_institution_equal_to_the_manufacturer_is_a_coincidence(tmp_path: Path) -> None:
    ds = ct_dataset()
    ds.InstitutionName = "OFFIS"
    ds.Manufacturer = "OFFIS"
    assert find_leaks(*deidentified(ds, tmp_path)) == []


def test_private_value_equal_to_the_model_name_is_a_coincidence(tmp_path: Path) -> None:
    ds = ct_dataset()
    ds.ManufacturerModelName = "LightSpeed Plus"
    ds.private_block(0x0009, "GEMS_IDEN_01", create=True).add_new(0x04, "SH", "LightSpeed Plus")
    assert find_leaks(*deidentified(ds, tmp_path)) == []


def test_serial_number_inside_a_number_is_a_coincidence(tmp_path: Path) -> None:
    ds = ct_dataset()
    ds.DeviceSerialNumber = "00000"
    ds.SliceThickness = "6.000000"
    assert find_leaks(*deidentified(ds, tmp_path)) == []


def test_patient_name_that_is_an_image_type_word_is_a_coincidence(tmp_path: Path) -> None:
    ds = ct_dataset()
    ds.PatientName = "Perfusion^MCA Stroke"
    ds.ImageType = ["DERIVED", "PRIMARY", "PERFUSION", "RCBF"]
    ds.StudyDescription = "CT HEAD"
    assert find_leaks(*deidentified(ds, tmp_path)) == []


def test_an_id_inside_the_catalog_pseudonym_is_a_coincidence(tmp_path: Path) -> None:
    ds = ct_dataset()
    ds.PatientID = PSEUDONYM.rsplit("-", 1)[-1]  # the patient's own ID is the pseudonym's counter
    ds.StudyDescription = "CT CHEST"
    src, out = deidentified(ds, tmp_path)
    assert find_leaks(src, out, pseudonym=PSEUDONYM) == []
    assert find_leaks(src, out) != []  # without knowing the pseudonym, the verifier stays strict


# -- the other side: real leaks inside the same attributes are still caught --------------------------


def test_patient_name_written_into_the_manufacturer_is_caught(tmp_path: Path) -> None:
    ds = ct_dataset()
    ds.Manufacturer = "ZYGMUNTOWICZ XAVIERA"  # even though the source put it there
    leaks = find_leaks(*deidentified(ds, tmp_path))
    assert any("(0008,0070) Manufacturer" in leak.found_in for leak in leaks)
    assert all("ZYGMUNTOWICZ" not in leak.reason for leak in leaks)


def test_patient_id_in_a_coded_attribute_is_caught(tmp_path: Path) -> None:
    ds = ct_dataset()
    ds.PatientID = "QX4471"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "QX4471"]
    leaks = find_leaks(*deidentified(ds, tmp_path))
    assert any("(0008,0008) ImageType" in leak.found_in and "PatientID" in leak.source for leak in leaks)


def test_full_patient_name_in_image_type_is_caught(tmp_path: Path) -> None:
    ds = ct_dataset()
    ds.PatientName = "QUARTERMAINE^OTTILIE"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "QUARTERMAINE OTTILIE"]
    assert find_leaks(*deidentified(ds, tmp_path)) != []


def test_a_value_moved_into_a_technical_attribute_is_caught(tmp_path: Path) -> None:
    """The source's Manufacturer was not the institution: a rule that copied it there leaks."""
    src = write(ct_dataset(), tmp_path / "src.dcm")
    out = tmp_path / "out.dcm"
    Deidentifier(resolve(), SECRET).deidentify_file(src, out, patient())
    from pydicom import dcmread

    tampered = dcmread(out)
    tampered.Manufacturer = "QUIXWORTH GENERAL HOSPITAL"
    tampered.save_as(out, enforce_file_format=True)
    leaks = find_leaks(src, out)
    assert [leak.found_in for leak in leaks] == ["(0008,0070) Manufacturer"]
    assert leaks[0].source == "(0008,0080) InstitutionName"


def test_institution_in_free_text_is_still_caught(tmp_path: Path) -> None:
    ds = ct_dataset()
    ds.InstitutionName = "TOSHIBA"
    ds.Manufacturer = "TOSHIBA_MEC"
    ds.SeriesDescription = "scanned at TOSHIBA"
    src, out = deidentified(ds, tmp_path)
    from pydicom import dcmread

    tampered = dcmread(out)
    tampered.SeriesDescription = "scanned at TOSHIBA"  # whatever the scrubber did, the verifier decides
    tampered.save_as(out, enforce_file_format=True)
    leaks = find_leaks(src, out)
    assert any("SeriesDescription" in leak.found_in for leak in leaks)


# -- the rule on its own -----------------------------------------------------------------------------


def place(keyword: str, vr: str, *texts: str) -> Place:
    return Place(f"(0000,0000) {keyword}", keyword, vr, texts)


def test_rule_needs_every_occurrence_accounted_for() -> None:
    places = [place("Manufacturer", "LO", "TOSHIBA_MEC")]
    source = {("Manufacturer", "toshiba_mec")}
    assert coincidental(b"TOSHIBA", "InstitutionName", "id", places, 1, source, frozenset())
    assert not coincidental(b"TOSHIBA", "InstitutionName", "id", places, 2, source, frozenset())  # one hides elsewhere
    assert not coincidental(b"TOSHIBA", "InstitutionName", "id", [], 1, source, frozenset())


def test_rule_never_excuses_identifying_or_private_places() -> None:
    source = {("InstitutionName", "toshiba")}
    assert not coincidental(b"TOSHIBA", "InstitutionName", "id", [place("InstitutionName", "LO", "TOSHIBA")], 1,
                            source, frozenset({"InstitutionName"}))
    private = Place("(0009,1004) private", "", "SH", ("TOSHIBA",), ("GEMS", 9, 4))
    assert not coincidental(b"TOSHIBA", "InstitutionName", "id", [private], 1, source, frozenset())
    assert not coincidental(b"TOSHIBA", "InstitutionName", "id", [place("StudyDescription", "LO", "TOSHIBA")], 1,
                            {("StudyDescription", "toshiba")}, frozenset())


def test_private_copy_of_a_kept_description_is_not_a_leak(tmp_path: Path) -> None:
    ds = ct_dataset()
    ds.StudyDescription = "Whole Body Bone"
    ds.private_block(0x0009, "GEMS_GENIE_1", create=True).add_new(0x20, "LO", "WHOLE BODY")
    assert find_leaks(*deidentified(ds, tmp_path)) == []


def test_private_value_moved_into_a_description_is_caught(tmp_path: Path) -> None:
    src = write(ct_dataset(), tmp_path / "src.dcm")
    ds = ct_dataset()
    ds.private_block(0x0009, "ACME 1.0", create=True).add_new(0x20, "LO", "call QUANDT at home")
    write(ds, src)
    out = tmp_path / "out.dcm"
    Deidentifier(resolve(), SECRET).deidentify_file(src, out, patient())
    from pydicom import dcmread

    tampered = dcmread(out)
    tampered.SeriesDescription = "call QUANDT at home"  # not where the source had it
    tampered.save_as(out, enforce_file_format=True)
    assert [leak.found_in for leak in find_leaks(src, out)] == ["(0008,103E) SeriesDescription"]


def test_patient_name_that_is_a_coding_scheme_is_a_coincidence(tmp_path: Path) -> None:
    ds = ct_dataset()
    ds.PatientName = "Test^S R"
    ds.ProcedureCodeSequence = [code_item("P1", "TEST", "Procedure")]
    assert find_leaks(*deidentified(ds, tmp_path), pseudonym=PSEUDONYM) == []  # TESTCOLL-0001 holds it too
