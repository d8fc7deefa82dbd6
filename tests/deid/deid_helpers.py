"""Helpers for the de-identification tests: a secret, profiles, hand-built data sets and files.

Most tests build a small data set in memory, write it the way a modality would (pydicom,
explicit VR little endian unless a test says otherwise), run it through
``Deidentifier.deidentify_file`` (the raw-element path production uses) and read the
result back. ``deid_roundtrip`` does exactly that.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from imaging_ingest.config import DeidConfig, DeidOption
from imaging_ingest.deid import PatientContext, Profile, ResolvedProfile
from imaging_ingest.synth.generate import SynthSummary

#: The option sets the de-identification tests run under, by test id: none, the default, every
#: Retain option, every Clean option.
OPTION_SETS: dict[str, tuple[DeidOption, ...]] = {
    "basic": (),
    "default": (DeidOption.CLEAN_DESCRIPTORS, DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES),
    "retain-all": (DeidOption.RETAIN_UIDS, DeidOption.RETAIN_LONGITUDINAL_FULL_DATES, DeidOption.RETAIN_DEVICE_IDENTITY,
                   DeidOption.RETAIN_INSTITUTION_IDENTITY, DeidOption.RETAIN_PATIENT_CHARACTERISTICS),
    "clean-all": (DeidOption.CLEAN_DESCRIPTORS, DeidOption.CLEAN_STRUCTURED_CONTENT, DeidOption.CLEAN_GRAPHICS,
                  DeidOption.RETAIN_SAFE_PRIVATE, DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES),
}

SECRET = b"af2188caf095f81a0a45290744f42dfbd688ce31337066f35c633ada608322b4"  # test-only key (public)
PSEUDONYM = "TESTCOLL-0001"
OFFSET = -400

#: Instance UIDs of the hand-built data sets (stand-ins for a site's own root).
SITE_ROOT = "1.2.826.0.1.3680043.9.7777"


def site_uid(*parts: object) -> str:
    return ".".join([SITE_ROOT, *(str(p) for p in parts)])


def resolve(*options: DeidOption | str, overrides: dict[str, dict[str, str]] | None = None) -> ResolvedProfile:
    config = DeidConfig.model_validate({"options": list(options), "overrides": overrides or {}})
    return Profile.load().resolve(config)


def patient(identifiers: Iterable[str] = ("MRN123456",), offset: int = OFFSET) -> PatientContext:
    return PatientContext(pseudonym=PSEUDONYM, date_offset_days=offset, identifiers=tuple(identifiers))


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def ct_dataset(sop_class: str = CTImageStorage, rows: int = 4, *, pixels: bool = True) -> Dataset:
    """A small image data set with the usual identifying attributes and 4x4 pixels."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = site_uid(1, 1, 1)
    ds.StudyDate = "20190302"
    ds.SeriesDate = "20190302"
    ds.ContentDate = "20190302"
    ds.StudyTime = "101500"
    ds.ContentTime = "101502"
    ds.AccessionNumber = "ACC99887766"
    ds.Modality = "CT"
    ds.Manufacturer = "ACME"
    ds.InstitutionName = "QUIXWORTH GENERAL HOSPITAL"
    ds.ReferringPhysicianName = "VOSSBERG^KAZIMIR"
    ds.StationName = "QXSTATION7"
    ds.StudyDescription = "CT CHEST for ZYGMUNTOWICZ XAVIERA MRN123456 2019-03-02"
    ds.SeriesDescription = "AXIAL 5MM"
    ds.PatientName = "ZYGMUNTOWICZ^XAVIERA"
    ds.PatientID = "MRN123456"
    ds.PatientBirthDate = "19610417"
    ds.PatientSex = "F"
    ds.PatientAge = "057Y"
    ds.PatientAddress = "17 JUXTAPOSE LANE, QUAHOG"
    ds.DeviceSerialNumber = "SN-77QX1"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = "5"
    ds.StudyInstanceUID = site_uid(1)
    ds.SeriesInstanceUID = site_uid(1, 1)
    ds.StudyID = "ST778899"
    ds.SeriesNumber = 2
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = site_uid(1, 9)
    ds.PositionReferenceIndicator = ""
    ds.ImagePositionPatient = ["0", "0", "0"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = ["1", "1"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = rows
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    if pixels:
        ds.PixelData = np.arange(rows * rows, dtype="<u2").tobytes()
    return ds


def write(ds: Dataset, path: Path, transfer_syntax: str = ExplicitVRLittleEndian) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(site_uid(0))
    meta.SourceApplicationEntityTitle = "QXSITEPACS"
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    if transfer_syntax == ImplicitVRLittleEndian:
        ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=True)
    else:
        ds.save_as(path, enforce_file_format=True)
    return path


def dicom_files(summary: SynthSummary, kind: str | None = None) -> list[Path]:
    files = [summary.root / f for f in summary.files if f.suffix == ".dcm"]
    if kind is not None:
        files = [f for f in files if f"_{kind}_" in f"_{f.parent.name}_"]
    return sorted(files)


