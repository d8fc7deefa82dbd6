"""Recursion into sequences at any depth, and private attributes (kept safe ones, removed others)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from imaging_ingest.config import DeidOption
from imaging_ingest.deid import Deidentifier, DeidError
from imaging_ingest.deid.uids import remap_uid

from .conftest import RoundTrip
from .deid_helpers import SECRET, code_item, ct_dataset, patient, resolve, site_uid


def three_levels(ds: Dataset) -> Dataset:
    """Referenced Image Sequence > Purpose of Reference Code Sequence > a (made-up) nested item
    carrying PHI, UIDs and a date three levels down."""
    level3 = code_item("121311", "DCM", "Localizer")
    level3.PersonName = "QUANDT^ZELDA"  # D
    level3.ReferencedSOPInstanceUID = site_uid(1, 1, 7)  # U
    level3.InstitutionName = "QUIXWORTH GENERAL HOSPITAL"  # X/Z/D, nested: D
    level3.StudyDate = "20190302"  # Z
    level3.PatientComments = "seen by QUANDT"  # X
    level2 = Dataset()
    level2.ReferencedSOPClassUID = ds.SOPClassUID
    level2.ReferencedSOPInstanceUID = site_uid(1, 1, 6)
    level2.PurposeOfReferenceCodeSequence = Sequence([level3])
    ds.ReferencedImageSequence = Sequence([level2])
    return ds


def test_phi_three_levels_deep_is_removed(deid_roundtrip: RoundTrip) -> None:
    out, output = deid_roundtrip(three_levels(ct_dataset()))
    level2 = out.ReferencedImageSequence[0]
    level3 = level2.PurposeOfReferenceCodeSequence[0]
    assert level2.ReferencedSOPInstanceUID == remap_uid(SECRET, site_uid(1, 1, 6))
    assert level3.ReferencedSOPInstanceUID == remap_uid(SECRET, site_uid(1, 1, 7))
    assert str(level3.PersonName) == "ANONYMIZED"
    assert level3.InstitutionName == "ANONYMIZED"
    assert level3.StudyDate == ""
    assert "PatientComments" not in level3
    assert level3.CodeValue == "121311" and level3.CodeMeaning == "Localizer"


def test_dates_three_levels_deep_are_shifted_like_the_top(deid_roundtrip: RoundTrip) -> None:
    ds = three_levels(ct_dataset())
    ds.ReferencedImageSequence[0].PurposeOfReferenceCodeSequence[0].AcquisitionDateTime = "20190302101500.25+0100"
    out, _ = deid_roundtrip(ds, resolve(DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES))
    level3 = out.ReferencedImageSequence[0].PurposeOfReferenceCodeSequence[0]
    assert level3.StudyDate == out.StudyDate == "20180126"
    assert level3.AcquisitionDateTime == "20180126101500.25+0100"  # time and UTC offset preserved


def test_sequence_removed_or_emptied_whole(deid_roundtrip: RoundTrip) -> None:
    ds = ct_dataset()
    other = Dataset()
    other.PatientID = "E998877"
    ds.OtherPatientIDsSequence = Sequence([other])  # X
    visit = Dataset()
    visit.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    visit.ReferencedSOPInstanceUID = site_uid(1, 5)
    ds.ReferencedPatientSequence = Sequence([visit])  # X
    out, _ = deid_roundtrip(ds)
    assert "OtherPatientIDsSequence" not in out and "ReferencedPatientSequence" not in out


def test_too_deep_nesting_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ds = ct_dataset()
    inner = ds
    for _ in range(40):
        item = code_item("1", "99X", "x")
        inner.ReferencedImageSequence = Sequence([item])
        inner = item
    with pytest.raises(DeidError, match="nested deeper"):
        Deidentifier(resolve(), SECRET).deidentify_dataset(ds, patient())


# -- private attributes ---------------------------------------------------------------------


def with_private(ds: Dataset) -> Dataset:
    ge = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
    ge.add_new(0x39, "IS", ["1000", "0", "0", "0"])  # (0043,xx39) Slop_int_6..9: on the safe list
    ge.add_new(0x10, "LO", "QUANDT^ZELDA")  # not on the list
    siemens = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    siemens.add_new(0x0C, "IS", "800")  # B value: safe
    siemens.add_new(0x0D, "CS", "DIRECTIONAL")  # DiffusionDirectionality: safe
    siemens.add_new(0x99, "LO", "ZYGMUNTOWICZ MRN123456")  # not on the list
    impostor = ds.private_block(0x0045, "NOT A REAL VENDOR", create=True)
    impostor.add_new(0x39, "IS", "1000")  # same element offset, unknown creator
    acme = ds.private_block(0x0029, "ACME_PRIVATE 1.0", create=True)
    acme.add_new(0x10, "LT", "Call ZYGMUNTOWICZ at 614 555 0101")
    nested = Dataset()
    nested.PatientName = "ZYGMUNTOWICZ^XAVIERA"
    acme.add_new(0x11, "SQ", Sequence([nested]))
    return ds


def private_tags(ds: Dataset) -> set[int]:
    return {int(e.tag) for e in ds if e.tag.group & 1}


def test_private_attributes_are_removed_by_default(deid_roundtrip: RoundTrip) -> None:
    out, output = deid_roundtrip(with_private(ct_dataset()))
    assert private_tags(out) == set()
    assert output.stats.private_removed == 12  # 8 elements and 4 creators
    assert output.stats.private_kept == 0


def test_retain_safe_private_keeps_only_listed_elements_of_known_creators(deid_roundtrip: RoundTrip) -> None:
    src = with_private(ct_dataset())
    out, output = deid_roundtrip(src, resolve(DeidOption.RETAIN_SAFE_PRIVATE))
    assert private_tags(out) == {0x00430010, 0x00431039, 0x00190010, 0x0019100C, 0x0019100D}
    assert out[0x00431039].value == src[0x00431039].value
    assert out[0x0019100C].value == "800"
    assert out[0x00190010].value == "SIEMENS MR HEADER"
    assert output.stats.private_kept == 3


def test_safe_private_match_uses_the_block_reservation(deid_roundtrip: RoundTrip) -> None:
    """A vendor block reserved at (0043,0011) puts its elements at (0043,11xx): still matched."""
    ds = ct_dataset()
    ds.add_new(0x00430010, "LO", "SOMEONE ELSE")
    ds.add_new(0x00430011, "LO", "GEMS_PARM_01")
    ds.add_new(0x00431039, "IS", "5")  # belongs to SOMEONE ELSE: removed
    ds.add_new(0x00431139, "IS", "1000")  # GEMS_PARM_01's (0043,xx39): kept
    out, _ = deid_roundtrip(ds, resolve(DeidOption.RETAIN_SAFE_PRIVATE))
    assert private_tags(out) == {0x00430011, 0x00431139}


def test_kept_private_sequence_is_walked_like_any_other(deid_roundtrip: RoundTrip) -> None:
    ds = ct_dataset()
    item = Dataset()
    item.ReferencedSOPInstanceUID = site_uid(1, 1, 3)  # a UID inside: remapped
    item.PatientName = "ZYGMUNTOWICZ^XAVIERA"  # PHI inside: Z
    item.add_new(0x00091001, "LO", "nested private")  # private inside: removed
    block = ds.private_block(0x2001, "Philips Imaging DD 001", create=True)
    block.add_new(0x5F, "SQ", Sequence([item]))  # (2001,xx5F) Stack Sequence: on the safe list
    out, _ = deid_roundtrip(ds, resolve(DeidOption.RETAIN_SAFE_PRIVATE))
    kept = out[0x2001105F][0]
    assert kept.ReferencedSOPInstanceUID == remap_uid(SECRET, site_uid(1, 1, 3))
    assert kept.PatientName == ""
    assert 0x00091001 not in kept


def test_implicit_vr_private_elements_use_the_safe_lists_vr(deid_roundtrip: RoundTrip) -> None:
    from pydicom.uid import ImplicitVRLittleEndian

    src = with_private(ct_dataset())
    out, _ = deid_roundtrip(src, resolve(DeidOption.RETAIN_SAFE_PRIVATE), transfer_syntax=ImplicitVRLittleEndian)
    assert private_tags(out) == {0x00430010, 0x00431039, 0x00190010, 0x0019100C, 0x0019100D}
