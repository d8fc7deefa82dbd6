"""DICOM building blocks shared by every synthetic object: UIDs, patient/study/equipment modules, private tags."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
)

from imaging_ingest.synth.people import Patient, Study, age_on, dicom_date, dicom_time

# A fixed implementation identity keeps the file meta (and thus the bytes) independent of
# the installed pydicom version.
IMPLEMENTATION_CLASS_UID = "2.25." + str(
    int.from_bytes(hashlib.sha256(b"imaging_ingest.synth").digest()[:16])
)


IMPLEMENTATION_VERSION_NAME = "IMGINGEST_SYN1"


_PRIVATE_GROUP = 0x0029


_PRIVATE_CREATOR = "ACME_PRIVATE 1.0"


def synthetic_uid(seed: int, *parts: object) -> str:
    """A ``2.25`` UID from a hash of the seed and a logical path: stable across runs, unique across objects."""
    key = "|".join([str(seed), *map(str, parts)]).encode()
    return "2.25." + str(int.from_bytes(hashlib.sha256(key).digest()[:16]))


@dataclass(frozen=True)
class SeriesRef:
    """What later objects (the RTSTRUCT) need to know about a written image series."""

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    sop_instance_uids: tuple[str, ...]
    z_positions: tuple[float, ...]


def coded_entry(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def new_dataset(sop_class_uid: str, sop_instance_uid: str, created: dt.datetime) -> Dataset:
    """File meta and SOP Common: the part of every object that tools check first."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceCreationDate = dicom_date(created)
    ds.InstanceCreationTime = dicom_time(created)
    return ds


def _add_patient(ds: Dataset, patient: Patient, study: Study) -> None:
    """Patient and Patient Study modules, with the IDs a hospital's MPI would attach."""
    ds.PatientName = patient.person.pn
    ds.PatientID = patient.mrn
    ds.IssuerOfPatientID = patient.institution[0]
    others = []
    for other_id, issuer in patient.other_ids:
        item = Dataset()
        item.PatientID = other_id
        item.IssuerOfPatientID = issuer
        item.TypeOfPatientID = "TEXT"
        others.append(item)
    ds.OtherPatientIDsSequence = DicomSequence(others)
    ds.PatientBirthDate = dicom_date(patient.birth)
    ds.PatientSex = patient.sex
    ds.PatientAddress = patient.address
    ds.PatientTelephoneNumbers = patient.phone
    ds.PatientAge = f"{age_on(patient.birth, study.start.date()):03d}Y"
    ds.PatientWeight = "72"


def _add_study(ds: Dataset, patient: Patient, study: Study, seed: int) -> None:
    """General Study module; the description names the patient, as careless sites do."""
    ds.StudyInstanceUID = synthetic_uid(seed, patient.index, study.index, "study")
    ds.StudyDate = study.date
    ds.StudyTime = dicom_time(study.start)
    ds.AccessionNumber = study.accession
    ds.ReferringPhysicianName = patient.referring.pn
    ds.StudyID = study.study_id
    label = "BASELINE" if study.index == 0 else "FOLLOW-UP"
    ds.StudyDescription = f"ONCO {label} CT/MR for {patient.tag}"
    ds.ProcedureCodeSequence = DicomSequence(
        [coded_entry("ONC-STG", "99ACME", "Oncology staging CT chest and MR brain")]
    )


def add_equipment(ds: Dataset, patient: Patient, model: str, serial: str, station: str) -> None:
    ds.Manufacturer = "ACME Medical Systems"
    ds.ManufacturerModelName = model
    ds.InstitutionName = patient.institution[0]
    ds.InstitutionAddress = patient.institution[1]
    ds.StationName = station
    ds.DeviceSerialNumber = serial
    ds.SoftwareVersions = "SYN 1.0"


def add_series(
    ds: Dataset,
    modality: str,
    series_uid: str,
    number: int,
    start: dt.datetime,
    description: str,
    patient: Patient,
) -> None:
    """General Series (or RT Series) attributes common to every object in a series."""
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = number
    ds.SeriesDate = dicom_date(start)
    ds.SeriesTime = dicom_time(start)
    ds.SeriesDescription = description
    ds.OperatorsName = patient.operator.pn


def _protocol_comment(patient: Patient) -> Dataset:
    """A TEXT content item for Protocol Context Sequence: PHI three sequence levels deep."""
    item = Dataset()
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = DicomSequence([coded_entry("121106", "DCM", "Comment")])
    item.TextValue = (
        f"Protocol confirmed with {patient.person.text} ({patient.mrn}) by {patient.performing.text}"
    )
    return item


def add_request(ds: Dataset, patient: Patient, study: Study, description: str) -> None:
    """Request Attributes Sequence, nesting a code sequence that itself nests free text with PHI."""
    protocol = coded_entry("ONC-PROTO-1", "99ACME", "Oncology staging protocol")
    protocol.ProtocolContextSequence = DicomSequence([_protocol_comment(patient)])
    request = Dataset()
    request.RequestedProcedureID = study.requested_procedure_id
    request.AccessionNumber = study.accession
    request.StudyInstanceUID = ds.StudyInstanceUID
    request.RequestedProcedureDescription = f"{description} for {patient.person.text}"
    request.RequestedProcedureCodeSequence = DicomSequence(
        [coded_entry("ONC-STG", "99ACME", "Oncology staging")]
    )
    # LO: 64 characters at most, so the diagnosis itself stays out; its date and the name fit.
    request.ReasonForTheRequestedProcedure = (
        f"Dx {dicom_date(patient.diagnosis_date)} staging {patient.person.text}"
    )
    request.ScheduledProcedureStepID = study.sps_id
    request.ScheduledProcedureStepDescription = f"{description} {patient.mrn}"
    request.ScheduledProtocolCodeSequence = DicomSequence([protocol])
    ds.RequestAttributesSequence = DicomSequence([request])


def private_text(patient: Patient) -> str:
    return f"Call {patient.person.text} at {patient.phone} re {patient.mrn} results"


def _add_private(ds: Dataset, patient: Patient) -> None:
    """A vendor private block copying the name, MRN and phone: de-id must drop or clean it."""
    block = ds.private_block(_PRIVATE_GROUP, _PRIVATE_CREATOR, create=True)
    block.add_new(0x10, "LO", patient.person.pn)
    block.add_new(0x11, "LT", private_text(patient))
    block.add_new(0x12, "SH", patient.mrn)


def add_common(ds: Dataset, patient: Patient, study: Study, seed: int) -> None:
    _add_patient(ds, patient, study)
    _add_study(ds, patient, study, seed)
    _add_private(ds, patient)


def ds_number(value: float) -> str:
    """Decimal strings short enough for DS (16 chars) and free of float noise such as 0.30000000000000004."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def write_instance(ds: Dataset, root: Path, relative: Path) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return relative
