"""Property-based: random PHI in random attributes, at random depths; the verifier must find
nothing after de-identification, and must find the PHI again when one step is skipped.

Values are drawn from letters that never form the words an output contains on its own
(ANONYMIZED, CHEST...), dates from one decade while the shift is larger than a decade, so
that a shifted date can never equal another planted date: a hit is then always a leak.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from imaging_ingest.config import DeidOption
from imaging_ingest.deid import Action, Deidentifier, ResolvedProfile
from imaging_ingest.verify.leaks import find_leaks

from .deid_helpers import SECRET, code_item, patient, resolve, site_uid, write

OFFSET = -4100  # more than the decade the dates are drawn from
LETTERS = "KVWY"  # planted values
PATIENT_LETTERS = "QXZJ"  # the patient's own name: never equal to, or inside, a planted value

PERSON_ATTRIBUTES = ("ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName", "OtherPatientNames",
                     "PatientBirthName", "PatientMotherBirthName", "RequestingPhysician", "PhysiciansOfRecord",
                     "NameOfPhysiciansReadingStudy", "VerifyingObserverName", "PersonName", "ContentCreatorName")
ID_ATTRIBUTES = ("AccessionNumber", "StudyID", "OtherPatientIDs", "InstitutionName", "InstitutionAddress",
                 "StationName", "DeviceSerialNumber", "PatientAddress", "PatientTelephoneNumbers",
                 "MedicalRecordLocator", "RequestedProcedureID", "ScheduledProcedureStepID",
                 "PerformedProcedureStepID", "AdmissionID", "IssuerOfPatientID", "PatientComments",
                 "AdditionalPatientHistory", "InstitutionalDepartmentName", "Occupation", "RegionOfResidence")
DATE_ATTRIBUTES = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "PatientBirthDate",
                   "InstanceCreationDate", "PerformedProcedureStepStartDate", "DateOfLastCalibration")
UID_ATTRIBUTES = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "IrradiationEventUID",
                  "ReferencedSOPInstanceUID", "ConcatenationUID", "DimensionOrganizationUID")


@dataclass(frozen=True)
class Plant:
    keyword: str  # empty for a private element
    value: str
    depth: int  # 0: top level; 1-3: inside kept sequences


words = st.text(LETTERS, min_size=6, max_size=10)
patient_words = st.text(PATIENT_LETTERS, min_size=6, max_size=10)
person = st.tuples(words, words).map(lambda p: f"{p[0]}^{p[1]}")
identifier = st.tuples(words, st.integers(100000, 99999999)).map(lambda p: f"{p[0][:3]}{p[1]}")
date = st.dates(min_value=__import__("datetime").date(1990, 1, 1),
                max_value=__import__("datetime").date(1999, 12, 31)).map(lambda d: d.strftime("%Y%m%d"))
uid = st.integers(1, 10**20).map(lambda n: site_uid(5, n))

plant = st.one_of(
    st.builds(Plant, st.sampled_from(PERSON_ATTRIBUTES), person, st.integers(0, 3)),
    st.builds(Plant, st.sampled_from(ID_ATTRIBUTES), identifier, st.integers(0, 3)),
    st.builds(Plant, st.sampled_from(DATE_ATTRIBUTES), date, st.integers(0, 3)),
    st.builds(Plant, st.sampled_from(UID_ATTRIBUTES), uid, st.integers(0, 3)),
    st.builds(Plant, st.just(""), words.map(lambda w: f"note {w}"), st.integers(0, 3)),
)
private_plant = st.builds(Plant, st.just(""), words.map(lambda w: f"note {w}"), st.integers(0, 3))


def distinct(plants: list[Plant]) -> bool:
    """No planted value inside another: a value a Retain option keeps on purpose must not contain one that goes."""
    values = [p.value for p in plants]
    return not any(a != b and a in b for a in values for b in values) and len(set(values)) == len(values)


plant_lists = st.lists(plant, min_size=1, max_size=8).filter(distinct)


def build(plants: list[Plant], family: str, given_name: str) -> Dataset:
    """A CT-like data set: the patient's name and ID, a description repeating them, and the plants."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = site_uid(9, 1)
    ds.StudyInstanceUID = site_uid(9)
    ds.SeriesInstanceUID = site_uid(9, 2)
    ds.Modality = "CT"
    ds.PatientName = f"{family}^{given_name}"
    ds.PatientID = f"{family[:3]}778899"
    ds.StudyDescription = f"CT for {family} {given_name} {family[:3]}778899"
    ds.Rows = ds.Columns = 2
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = b"\x00\x01\x02\x03"
    containers = [ds]
    ref = Dataset()  # Referenced Image Sequence (U) > Purpose of Reference (kept) > Purpose of Reference
    ref.ReferencedSOPClassUID = CTImageStorage
    ref.ReferencedSOPInstanceUID = site_uid(9, 3)
    ds.ReferencedImageSequence = Sequence([ref])
    purpose = code_item("121311", "DCM", "Localizer")
    ref.PurposeOfReferenceCodeSequence = Sequence([purpose])
    deeper = code_item("121312", "DCM", "Reference")
    purpose.PurposeOfReferenceCodeSequence = Sequence([deeper])
    containers += [ref, purpose, deeper]
    for n, p in enumerate(plants):
        target = containers[p.depth]
        if p.keyword:
            setattr(target, p.keyword, p.value)
        else:
            target.private_block(0x0029 + 2 * n, f"VENDOR {n}", create=True).add_new(0x10, "LO", p.value)
    return ds


def run(ds: Dataset, profile: ResolvedProfile, syntax: str) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        src = write(ds, Path(tmp) / "src.dcm", syntax)
        out = Path(tmp) / "out.dcm"
        Deidentifier(profile, SECRET).deidentify_file(src, out, patient(offset=OFFSET))
        return [leak.source for leak in find_leaks(src, out)]


OPTIONS = st.lists(
    st.sampled_from([DeidOption.CLEAN_DESCRIPTORS, DeidOption.CLEAN_STRUCTURED_CONTENT,
                     DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES, DeidOption.RETAIN_PATIENT_CHARACTERISTICS,
                     DeidOption.RETAIN_SAFE_PRIVATE, DeidOption.RETAIN_DEVICE_IDENTITY,
                     DeidOption.RETAIN_INSTITUTION_IDENTITY, DeidOption.RETAIN_UIDS]),
    unique=True, max_size=4,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plants=plant_lists, family=patient_words, given_name=patient_words, options=OPTIONS,
       implicit=st.booleans())
def test_no_leak_after_deidentification(plants: list[Plant], family: str, given_name: str,
                                        options: list[DeidOption], implicit: bool) -> None:
    ds = build(plants, family, given_name)
    syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    assert run(ds, resolve(*options), syntax) == []


SKIPPABLE = st.one_of(
    st.builds(Plant, st.sampled_from(PERSON_ATTRIBUTES), person, st.integers(0, 3)),
    st.builds(Plant, st.sampled_from([a for a in ID_ATTRIBUTES if a != "OtherPatientIDs"]), identifier,
              st.integers(0, 3)),
    st.builds(Plant, st.sampled_from(DATE_ATTRIBUTES), date, st.integers(0, 3)),
    st.builds(Plant, st.sampled_from(UID_ATTRIBUTES), uid, st.integers(0, 3)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target=SKIPPABLE, others=st.lists(plant, max_size=4), family=patient_words, given_name=patient_words,
       clean=st.booleans(), shift=st.booleans())
def test_a_skipped_step_is_found(target: Plant, others: list[Plant], family: str, given_name: str,
                                 clean: bool, shift: bool) -> None:
    """The profile is patched to keep the target attribute as it is (no removal, no remapping)."""
    others = [o for o in others if o.keyword != target.keyword]
    assume(distinct([target, *others]))
    ds = build([target, *others], family, given_name)
    options = [o for o, on in ((DeidOption.CLEAN_DESCRIPTORS, clean),
                               (DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES, shift)) if on]
    profile = resolve(*options)
    tag = tag_for_keyword(target.keyword)
    assert tag is not None
    profile.actions[tag] = Action.KEEP
    object.__setattr__(profile, "overridden", profile.overridden | {tag})
    profile._by_sop_class.clear()
    leaks = run(ds, profile, ExplicitVRLittleEndian)
    assert any(target.keyword in source for source in leaks), (target, leaks)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plants=st.lists(private_plant, min_size=1, max_size=4, unique_by=lambda p: p.value), family=patient_words,
       given_name=patient_words)
def test_skipped_private_removal_is_found(plants: list[Plant], family: str, given_name: str) -> None:
    ds = build(plants, family, given_name)
    original = Deidentifier._private
    Deidentifier._private = lambda self, ds, tags, run, stats, depth: None  # type: ignore[method-assign]
    try:
        leaks = run(ds, resolve(DeidOption.CLEAN_DESCRIPTORS), ExplicitVRLittleEndian)
    finally:
        Deidentifier._private = original  # type: ignore[method-assign]
    assert any(source.endswith("private") for source in leaks), leaks
