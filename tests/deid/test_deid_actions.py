"""Every action code, applied by the engine to synthetic elements written to and read from files."""

from __future__ import annotations

import hashlib
import hmac

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from imaging_ingest.config import DeidOption
from imaging_ingest.deid.engine import IMPLEMENTATION_VERSION_NAME

from .conftest import RoundTrip
from .deid_helpers import OFFSET, PSEUDONYM, SECRET, code_item, ct_dataset, resolve, site_uid

PET = "1.2.840.10008.5.1.4.1.1.128"


def remapped(uid: str) -> str:
    """The expected new UID, computed here from the definition (not by the engine's code)."""
    return "2.25." + str(int.from_bytes(hmac.new(SECRET, uid.encode(), hashlib.sha256).digest()[:16], "big"))


def test_x_removes(deid_roundtrip: RoundTrip) -> None:
    ds = ct_dataset()
    ds.PatientAddress = "17 JUXTAPOSE LANE"
    ds.MilitaryRank = "COLONEL"
    ds.OtherPatientIDs = "E12345678"
    out, output = deid_roundtrip(ds)
    for keyword in ("PatientAddress", "MilitaryRank", "OtherPatientIDs", "InstitutionName", "StationName",
                    "DeviceSerialNumber", "PatientAge"):
        assert keyword not in out, keyword
    assert output.stats.removed >= 7


def test_z_empties(deid_roundtrip: RoundTrip) -> None:
    out, output = deid_roundtrip(ct_dataset())
    for keyword in ("AccessionNumber", "ReferringPhysicianName", "StudyID", "PatientBirthDate", "PatientSex",
                    "StudyTime"):
        assert keyword in out and out[keyword].is_empty, keyword
    assert output.stats.emptied >= 6


def test_d_replaces_with_a_dummy_of_the_right_vr(deid_roundtrip: RoundTrip) -> None:
    ds = ct_dataset()
    ds.VerifyingObserverName = "QUANDT^ZELDA"  # D, PN
    ds.ClinicalTrialSponsorName = "QUIXOTIC PHARMA"  # D, LO
    ds.ContentCreatorName = "QUANDT^ZELDA"  # Z/D, PN: Type 3 in a CT? no: not in the IOD -> removed
    ds.DateTime = "20190302101500"  # D, DT (no date option: a dummy)
    out, output = deid_roundtrip(ds)
    assert str(out.VerifyingObserverName) == "ANONYMIZED"
    assert out.ClinicalTrialSponsorName == "ANONYMIZED"
    assert out.DateTime == "19000101000000"
    assert output.stats.dummied >= 3


def test_k_keeps_safe_attributes_byte_for_byte(deid_roundtrip: RoundTrip) -> None:
    ds = ct_dataset()
    out, _ = deid_roundtrip(ds)
    for keyword in ("Rows", "Columns", "BitsStored", "PixelSpacing", "ImageOrientationPatient", "RescaleIntercept",
                    "SliceThickness", "Modality", "Manufacturer", "BodyPartExamined", "ImageType", "PixelData"):
        assert out[keyword].value == ds[keyword].value, keyword


def test_u_remaps_uids_with_hmac_sha256_truncated_to_128_bits(deid_roundtrip: RoundTrip) -> None:
    ds = ct_dataset()
    out, output = deid_roundtrip(ds)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        new = str(out[keyword].value)
        assert new == remapped(str(ds[keyword].value)), keyword
        assert len(new) <= 64 and len(new.split(".")[-1]) <= 39
    assert out.SOPClassUID == ds.SOPClassUID  # registered UIDs identify no one
    assert output.sop_uid == out.SOPInstanceUID
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID


def test_c_cleans_descriptions_dates_and_ae_titles(deid_roundtrip: RoundTrip) -> None:
    ds = ct_dataset()
    ds.ScheduledStationAETitle = "QXMODALITY1"  # C under Retain Device Identity
    profile = resolve(DeidOption.CLEAN_DESCRIPTORS, DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES,
                      DeidOption.RETAIN_DEVICE_IDENTITY)
    out, output = deid_roundtrip(ds, profile)
    assert out.StudyDescription == "CT CHEST for [NAME] [ID] [DATE]"
    assert out.SeriesDescription == "AXIAL 5MM"  # nothing to clean: unchanged
    assert out.StudyDate == "20180126"  # 2019-03-02 - 400 days
    assert out.StudyTime == "101500" and out.ContentTime == "101502"  # C keeps times of day
    ae = out.ScheduledStationAETitle
    assert ae != "QXMODALITY1" and ae.startswith("AE") and len(ae) <= 16
    assert out.StationName == "QXSTATION7" and out.DeviceSerialNumber == "SN-77QX1"  # K under the option
    assert output.stats.descriptors_cleaned == 1 and output.stats.scrubbed >= 3
    assert output.stats.freetext_removed == {"StudyDescription": 3}


def test_c_on_binary_graphics_removes_them(deid_roundtrip: RoundTrip) -> None:
    ds = ct_dataset()
    ds.add_new(0x60000010, "US", 4)
    ds.add_new(0x60000011, "US", 4)
    ds.add_new(0x60003000, "OW", b"\x01\x00" * 4)
    ds.add_new(0x60004000, "LT", "overlay by QUANDT")
    ds.add_new(0x50000005, "US", 2)
    out, _ = deid_roundtrip(ds, resolve(DeidOption.CLEAN_GRAPHICS))
    assert not [e.tag for e in out if e.tag.group in (0x5000, 0x6000)]


def test_combined_codes_follow_the_iod(deid_roundtrip: RoundTrip) -> None:
    ds = ct_dataset()
    ds.OperatorsName = "QUANDT^ZELDA"  # X/Z/D, Type 3 in a CT -> removed
    out, _ = deid_roundtrip(ds)
    assert "SeriesDate" not in out  # X/D, Type 3 in a CT
    assert out.ContentDate == ""  # Z/D, Type 2C
    assert "OperatorsName" not in out
    pet = ct_dataset(PET)
    pet.Modality = "PT"
    out, _ = deid_roundtrip(pet)
    assert out.SeriesDate == "19000101"  # X/D, Type 1 in a PET (PET Series module)
    out, _ = deid_roundtrip(pet, resolve(DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES))
    assert out.SeriesDate == "20180126"


def test_x_z_u_star_keeps_references_and_remaps_them(deid_roundtrip: RoundTrip) -> None:
    ds = ct_dataset()
    ref = Dataset()
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = site_uid(1, 1, 2)
    ds.ReferencedImageSequence = Sequence([ref])
    ds.SourceImageSequence = Sequence([ref])
    out, _ = deid_roundtrip(ds)
    for keyword in ("ReferencedImageSequence", "SourceImageSequence"):
        item = out[keyword][0]
        assert item.ReferencedSOPInstanceUID == remapped(site_uid(1, 1, 2))
        assert item.ReferencedSOPClassUID == ds.SOPClassUID


def test_patient_becomes_the_pseudonym(deid_roundtrip: RoundTrip) -> None:
    out, output = deid_roundtrip(ct_dataset(), resolve(DeidOption.CLEAN_DESCRIPTORS))
    assert out.PatientID == PSEUDONYM and str(out.PatientName) == PSEUDONYM
    assert output.attributes["StudyDescription"] == "CT CHEST for [NAME] [ID] [DATE]"


def test_recording_attributes(deid_roundtrip: RoundTrip) -> None:
    profile = resolve(DeidOption.CLEAN_DESCRIPTORS, DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES,
                      DeidOption.RETAIN_SAFE_PRIVATE)
    out, _ = deid_roundtrip(ct_dataset(), profile)
    assert out.PatientIdentityRemoved == "YES"
    assert IMPLEMENTATION_VERSION_NAME in out.DeidentificationMethod[0]
    codes = [(i.CodeValue, i.CodingSchemeDesignator) for i in out.DeidentificationMethodCodeSequence]
    assert codes == [("113100", "DCM"), ("113105", "DCM"), ("113107", "DCM"), ("113111", "DCM")]
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    assert deid_roundtrip(ct_dataset())[0].LongitudinalTemporalInformationModified == "REMOVED"
    full = deid_roundtrip(ct_dataset(), resolve(DeidOption.RETAIN_LONGITUDINAL_FULL_DATES))[0]
    assert full.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert full.StudyDate == "20190302"


def test_overrides_keep_remove_empty_replace_shift_hash(deid_roundtrip: RoundTrip) -> None:
    ds = ct_dataset()
    ds.PerformedProcedureStepStartDate = "20190302"
    profile = resolve(overrides={
        "PatientSex": {"action": "keep"},
        "Rows": {"action": "remove"},
        "Manufacturer": {"action": "empty"},
        "StudyDescription": {"action": "replace", "value": "LUNG SCREENING"},
        "PerformedProcedureStepStartDate": {"action": "shift"},
        "AccessionNumber": {"action": "hash"},
        "StudyInstanceUID": {"action": "keep"},  # a literal keep: not even remapped
    })
    out, output = deid_roundtrip(ds, profile)
    assert out.PatientSex == "F"
    assert "Rows" not in out
    assert out.Manufacturer == ""
    assert out.StudyDescription == "LUNG SCREENING"
    assert out.PerformedProcedureStepStartDate == "20180126"
    hashed = out.AccessionNumber
    assert len(hashed) == 16 and hashed != ds.AccessionNumber
    assert deid_roundtrip(ds, profile)[0].AccessionNumber == hashed  # stable
    assert out.StudyInstanceUID == ds.StudyInstanceUID
    assert output.stats.replaced >= 2


def test_unlisted_attributes_are_removed_unless_safe(deid_roundtrip: RoundTrip) -> None:
    ds = ct_dataset()
    ds.CTDIvol = 12.5  # safe list
    ds.PatientBreedDescription = "QUIXBREED"  # free text, on no list
    ds.add_new(0x00091002, "LO", "odd public-looking element")  # group 0009 is odd: private
    ds.add_new(0x00180000, "UL", 1234)  # a group length
    out, _ = deid_roundtrip(ds)
    assert out.CTDIvol == 12.5
    assert "PatientBreedDescription" not in out
    assert 0x00091002 not in out and 0x00180000 not in out


def test_supplement_text_attributes_keep_iods_valid(deid_roundtrip: RoundTrip) -> None:
    ds = ct_dataset()
    segment = Dataset()
    segment.SegmentNumber = 1
    segment.SegmentLabel = "TUMOUR QUANDT MRN123456"
    segment.SegmentAlgorithmType = "MANUAL"
    segment.SegmentedPropertyCategoryCodeSequence = Sequence([code_item("M-01000", "SRT", "Morphologically Altered Structure")])
    ds.SegmentSequence = Sequence([segment])
    out, _ = deid_roundtrip(ds)
    assert out.SegmentSequence[0].SegmentLabel == "ANONYMIZED"  # basic profile: a dummy keeps Type 1 filled
    out, _ = deid_roundtrip(ds, resolve(DeidOption.CLEAN_DESCRIPTORS))
    assert out.SegmentSequence[0].SegmentLabel == "TUMOUR [NAME] [ID]"  # a census surname and the MRN
    assert out.SegmentSequence[0].SegmentedPropertyCategoryCodeSequence[0].CodeMeaning.startswith("Morph")


def test_date_offset_is_the_patient_contexts(deid_roundtrip: RoundTrip) -> None:
    from .deid_helpers import patient

    profile = resolve(DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES)
    a, _ = deid_roundtrip(ct_dataset(), profile, patient(offset=OFFSET))
    b, _ = deid_roundtrip(ct_dataset(), profile, patient(offset=-1))
    assert a.StudyDate == "20180126" and b.StudyDate == "20190301"
