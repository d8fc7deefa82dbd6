"""Synthetic, deliberately PHI-laden DICOM submissions for testing the ingest pipeline.

The de-identification, screening and verification stages can only be trusted if they are
exercised against input that looks like a real site's submission: identifying strings in
the obvious places (PatientName, PatientID), in the less obvious ones (free-text
descriptions, private tags, sequences nested two and three levels deep, file and folder
names, a scanned document with burned-in text) and a clinical spreadsheet beside the
images. Real submissions cannot be checked into a public repository, so this module makes
fake ones and, crucially, reports *exactly* which identifying strings it planted
(:class:`PlantedPHI`) so that tests and benchmarks can scan the pipeline's output for leaks.

Everything is deterministic: the same arguments give byte-identical files. Dates and
names come from a ``random.Random(seed)``; UIDs are hashes of the seed and the object's
logical position; the file meta carries a fixed implementation UID and version name; the
current time is never read. That makes failures reproducible and outputs diffable.

The CT, MR, RTSTRUCT and Secondary Capture instances are built to satisfy dicom3tools'
``dciodvfy`` (no ``Error`` lines), because a pipeline test that starts from invalid
objects tells us nothing about what the pipeline does to valid ones.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    RTStructureSetStorage,
    SecondaryCaptureImageStorage,
)

__all__ = ["PlantedPHI", "SynthSummary", "generate_submission", "summary_as_dict"]

# A fixed implementation identity keeps the file meta (and thus the bytes) independent of
# the installed pydicom version.
IMPLEMENTATION_CLASS_UID = "2.25." + str(int.from_bytes(hashlib.sha256(b"imaging_ingest.synth").digest()[:16]))
IMPLEMENTATION_VERSION_NAME = "IMGINGEST_SYN1"

# The "Study Component Management" SOP class that RT Referenced Study Sequence items name.
_STUDY_COMPONENT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"

_PRIVATE_GROUP = 0x0029
_PRIVATE_CREATOR = "ACME_PRIVATE 1.0"

# Word lists. Names are long and unusual on purpose: a leak scan for "ANN" or "LEE" would
# drown in false positives, one for "QUARTERMAINE" finds exactly the leaks.
_FAMILY_NAMES = (
    "ABERNATHY", "BRAMWELL", "CASTELLANO", "DELACROIX", "EVERSOLE", "FAIRWEATHER", "GALLOWAY",
    "HARTWELL", "IRONSIDE", "JANKOWSKI", "KESSELRING", "LINDQVIST", "MACALLISTER", "NORTHCOTT",
    "OSTERMANN", "PEMBERTON", "QUARTERMAINE", "ROSENTHAL", "SILVERTHORN", "TREMBLAY", "UNDERHILL",
    "VANDERMEER", "WHITLOCK", "YARBOROUGH", "ZIMMERLI", "ASHCROFT", "BLACKWOOD", "CROMWELL",
    "DUNWOODY", "ELLINGTON", "FORTESCUE", "GRIMSHAW",
)
_GIVEN_NAMES = {
    "M": ("THEODORE", "AUGUSTINE", "BARNABY", "CORNELIUS", "DESMOND", "EZEKIEL", "FITZGERALD",
          "GIDEON", "HORATIO", "LEOPOLD", "MORDECAI", "PERCIVAL", "RUPERT", "SEBASTIAN", "THADDEUS",
          "WINSTON"),
    "F": ("MARGARETHE", "ANASTASIA", "BEATRIX", "CLEMENTINE", "DELPHINE", "ESMERALDA", "FREDERICA",
          "GWENDOLYN", "HENRIETTA", "ISADORA", "JOSEPHINE", "LUCINDA", "OTTILIE", "PERPETUA",
          "ROSALIND", "WILHELMINA"),
}
_STAFF_FAMILY = ("HOLLOWAY", "KINGSBURY", "MONTGOMERY", "PRESCOTT", "RADCLIFFE", "STANHOPE",
                 "THORNBURY", "WAVERLEY", "ALDRIDGE", "BECKWITH", "CALLOWAY", "DRUMMOND")
_STAFF_GIVEN = ("BRENDAN", "CORDELIA", "EVANGELINE", "FLETCHER", "GRISELDA", "LANCELOT", "MARISOL",
                "OSWALD", "PRUDENCE", "REGINALD")
_STREETS = ("WEXFORD LANE", "BRAMBLEWOOD COURT", "QUILLFEATHER ROAD", "HAWTHORNE TERRACE",
            "JUNIPER HOLLOW WAY", "KESTREL RIDGE DRIVE", "MARIGOLD CRESCENT", "ORCHARDVALE AVENUE")
_CITIES = (("MILLBROOK", "OH", "43210"), ("CEDARVALE", "PA", "17011"), ("FOXBOROUGH", "WI", "53703"),
           ("GLENHAVEN", "CO", "80302"), ("PINECLIFF", "NC", "27514"), ("SILVERLAKE", "MN", "55414"))
_AREA_CODES = ("614", "717", "608", "303", "919", "612")
_INSTITUTIONS = (
    ("MAPLECREST REGIONAL CANCER CENTER", "4100 LARKSPUR BOULEVARD, FAIRHAVEN, OR 97321", "MRCC"),
    ("SAINT BARTHOLOMEW MEMORIAL HOSPITAL", "77 COBBLESTONE ROW, ASHBURY, VT 05401", "SBMH"),
    ("RIVERBEND UNIVERSITY MEDICAL CENTER", "2600 WILLOWMERE DRIVE, OAKHAVEN, KS 66044", "RUMC"),
)
_DIAGNOSES = ("Non-small cell lung carcinoma", "Lung adenocarcinoma", "Squamous cell carcinoma of the lung",
              "Small cell lung carcinoma")

_BIRTH_RANGE = (dt.date(1940, 1, 1), dt.date(1985, 12, 31))
_FOLLOW_UP_DAYS = (60, 400)
# The follow-up must still fall in 2015-2023, so the baseline ends 400 days before 2023 does.
_BASELINE_RANGE = (dt.date(2015, 1, 1), dt.date(2023, 12, 31) - dt.timedelta(days=_FOLLOW_UP_DAYS[1]))

_CT_FOV_MM = 320.0
_CT_THICKNESS_MM = 5.0
_MR_FOV_MM = 240.0
_MR_THICKNESS_MM = 4.0
_SC_ROWS, _SC_COLUMNS = 256, 512


@dataclass(frozen=True)
class PlantedPHI:
    """The identifying strings planted for one patient: the truth a leak scan checks against.

    ``values`` holds each string exactly as it occurs in the written DICOM bytes (names
    both as ``FAMILY^GIVEN`` and as the ``FAMILY GIVEN`` used in free text, their parts,
    IDs, dates as ``YYYYMMDD``, addresses, phone numbers, staff and institution names,
    private-tag strings). Every value occurs in at least one of the patient's DICOM files.
    """

    patient_id: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate_submission` wrote, so callers need not rediscover it."""

    root: Path
    files: tuple[Path, ...]
    dicom_files: int
    by_kind: dict[str, int]
    planted: tuple[PlantedPHI, ...]


# ---------------------------------------------------------------------------------------
# Fake people and visits
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Person:
    family: str
    given: str

    @property
    def pn(self) -> str:
        return f"{self.family}^{self.given}"

    @property
    def text(self) -> str:
        """The name as free text writes it, e.g. in a description."""
        return f"{self.family} {self.given}"


@dataclass(frozen=True)
class _Study:
    index: int
    start: dt.datetime
    accession: str
    study_id: str
    requested_procedure_id: str
    sps_id: str

    @property
    def date(self) -> str:
        return _da(self.start)


@dataclass(frozen=True)
class _Patient:
    index: int
    person: _Person
    mrn: str
    other_ids: tuple[tuple[str, str], ...]  # (id, issuer)
    sex: str
    birth: dt.date
    address: str
    phone: str
    institution: tuple[str, str, str]
    referring: _Person
    performing: _Person
    operator: _Person
    ct_serial: str
    mr_serial: str
    diagnosis: str
    diagnosis_date: dt.date
    studies: tuple[_Study, ...]

    @property
    def tag(self) -> str:
        """The name and MRN together, as a site's free text tends to write them."""
        return f"{self.person.text} {self.mrn}"

    @property
    def folder(self) -> str:
        return f"{self.person.family}_{self.person.given}_{self.mrn}"


def _da(value: dt.date | dt.datetime) -> str:
    return value.strftime("%Y%m%d")


def _tm(value: dt.datetime) -> str:
    return value.strftime("%H%M%S")


def _random_date(rng: random.Random, span: tuple[dt.date, dt.date]) -> dt.date:
    return span[0] + dt.timedelta(days=rng.randint(0, (span[1] - span[0]).days))


def _age(birth: dt.date, on: dt.date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randint(0, 9)) for _ in range(n))


def _staff(rng: random.Random) -> _Person:
    return _Person(rng.choice(_STAFF_FAMILY), rng.choice(_STAFF_GIVEN))


def _make_study(rng: random.Random, index: int, day: dt.date) -> _Study:
    start = dt.datetime.combine(day, dt.time(rng.randint(7, 16), rng.randint(0, 59), rng.randint(0, 59)))
    return _Study(
        index=index,
        start=start,
        accession=f"A{_digits(rng, 8)}",
        study_id=f"ST{_digits(rng, 6)}",
        requested_procedure_id=f"RP{_digits(rng, 7)}",
        sps_id=f"SPS{_digits(rng, 7)}",
    )


def _make_patient(rng: random.Random, index: int, person: _Person, sex: str, mrn: str) -> _Patient:
    """Draw one patient's identity and visits; the draw order is part of the determinism contract."""
    birth = _random_date(rng, _BIRTH_RANGE)
    baseline = _random_date(rng, _BASELINE_RANGE)
    follow_up = baseline + dt.timedelta(days=rng.randint(*_FOLLOW_UP_DAYS))
    city, state, zip_code = rng.choice(_CITIES)
    institution = rng.choice(_INSTITUTIONS)
    return _Patient(
        index=index,
        person=person,
        mrn=mrn,
        other_ids=((f"E{_digits(rng, 9)}", f"{institution[2]} ENTERPRISE MPI"),
                   (f"H{_digits(rng, 7)}", f"{institution[2]} LEGACY HIS")),
        sex=sex,
        birth=birth,
        address=f"{rng.randint(100, 9899)} {rng.choice(_STREETS)}, {city}, {state} {zip_code}",
        phone=f"({rng.choice(_AREA_CODES)}) 555-01{_digits(rng, 2)}",
        institution=institution,
        referring=_staff(rng),
        performing=_staff(rng),
        operator=_staff(rng),
        ct_serial=f"CT{_digits(rng, 7)}",
        mr_serial=f"MR{_digits(rng, 7)}",
        diagnosis=rng.choice(_DIAGNOSES),
        diagnosis_date=baseline - dt.timedelta(days=rng.randint(5, 60)),
        studies=(_make_study(rng, 0, baseline), _make_study(rng, 1, follow_up)),
    )


def _fresh(rng: random.Random, pool: Sequence[str], used: set[str]) -> str:
    """A name not used yet while the pool lasts, so most leaks point at a single patient."""
    unused = [name for name in pool if name not in used]
    return rng.choice(unused or list(pool))


def _make_patients(seed: int, count: int) -> list[_Patient]:
    """Draw ``count`` patients with distinct names and MRNs, so a leak is attributable to one.

    Each patient has an RNG of its own, so patient ``i`` is the same person whatever
    ``count`` is: a 2-patient and a 20-patient run with one seed agree on the first two.
    """
    capacity = len(_FAMILY_NAMES) * min(len(names) for names in _GIVEN_NAMES.values())
    if count > capacity:
        raise ValueError(f"at most {capacity} distinct synthetic patients, asked for {count}")
    names: set[_Person] = set()
    mrns: set[str] = set()
    patients = []
    for index in range(count):
        rng = random.Random(f"imaging_ingest.synth|{seed}|{index}")
        sex = rng.choice("MF")
        person = _Person(_fresh(rng, _FAMILY_NAMES, {n.family for n in names}),
                         _fresh(rng, _GIVEN_NAMES[sex], {n.given for n in names}))
        while person in names:
            person = _Person(rng.choice(_FAMILY_NAMES), rng.choice(_GIVEN_NAMES[sex]))
        mrn = f"MRN{rng.randint(100000, 999999)}"
        while mrn in mrns:
            mrn = f"MRN{rng.randint(100000, 999999)}"
        names.add(person)
        mrns.add(mrn)
        patients.append(_make_patient(rng, index, person, sex, mrn))
    return patients


# ---------------------------------------------------------------------------------------
# UIDs
# ---------------------------------------------------------------------------------------


def _uid(seed: int, *parts: object) -> str:
    """A ``2.25`` UID from a hash of the seed and a logical path: stable across runs, unique across objects."""
    key = "|".join([str(seed), *map(str, parts)]).encode()
    return "2.25." + str(int.from_bytes(hashlib.sha256(key).digest()[:16]))


@dataclass(frozen=True)
class _SeriesRef:
    """What later objects (the RTSTRUCT) need to know about a written image series."""

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    sop_instance_uids: tuple[str, ...]
    z_positions: tuple[float, ...]


# ---------------------------------------------------------------------------------------
# Modules shared by every object
# ---------------------------------------------------------------------------------------


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _new_dataset(sop_class_uid: str, sop_instance_uid: str, created: dt.datetime) -> Dataset:
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
    ds.InstanceCreationDate = _da(created)
    ds.InstanceCreationTime = _tm(created)
    return ds


def _add_patient(ds: Dataset, patient: _Patient, study: _Study) -> None:
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
    ds.PatientBirthDate = _da(patient.birth)
    ds.PatientSex = patient.sex
    ds.PatientAddress = patient.address
    ds.PatientTelephoneNumbers = patient.phone
    ds.PatientAge = f"{_age(patient.birth, study.start.date()):03d}Y"
    ds.PatientWeight = "72"


def _add_study(ds: Dataset, patient: _Patient, study: _Study, seed: int) -> None:
    """General Study module; the description names the patient, as careless sites do."""
    ds.StudyInstanceUID = _uid(seed, patient.index, study.index, "study")
    ds.StudyDate = study.date
    ds.StudyTime = _tm(study.start)
    ds.AccessionNumber = study.accession
    ds.ReferringPhysicianName = patient.referring.pn
    ds.StudyID = study.study_id
    label = "BASELINE" if study.index == 0 else "FOLLOW-UP"
    ds.StudyDescription = f"ONCO {label} CT/MR for {patient.tag}"
    ds.ProcedureCodeSequence = DicomSequence([_code("ONC-STG", "99ACME", "Oncology staging CT chest and MR brain")])


def _add_equipment(ds: Dataset, patient: _Patient, model: str, serial: str, station: str) -> None:
    ds.Manufacturer = "ACME Medical Systems"
    ds.ManufacturerModelName = model
    ds.InstitutionName = patient.institution[0]
    ds.InstitutionAddress = patient.institution[1]
    ds.StationName = station
    ds.DeviceSerialNumber = serial
    ds.SoftwareVersions = "SYN 1.0"


def _add_series(ds: Dataset, modality: str, series_uid: str, number: int, start: dt.datetime,
                description: str, patient: _Patient) -> None:
    """General Series (or RT Series) attributes common to every object in a series."""
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = number
    ds.SeriesDate = _da(start)
    ds.SeriesTime = _tm(start)
    ds.SeriesDescription = description
    ds.OperatorsName = patient.operator.pn


def _protocol_comment(patient: _Patient) -> Dataset:
    """A TEXT content item for Protocol Context Sequence: PHI three sequence levels deep."""
    item = Dataset()
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = DicomSequence([_code("121106", "DCM", "Comment")])
    item.TextValue = f"Protocol confirmed with {patient.person.text} ({patient.mrn}) by {patient.performing.text}"
    return item


def _add_request(ds: Dataset, patient: _Patient, study: _Study, description: str) -> None:
    """Request Attributes Sequence, nesting a code sequence that itself nests free text with PHI."""
    protocol = _code("ONC-PROTO-1", "99ACME", "Oncology staging protocol")
    protocol.ProtocolContextSequence = DicomSequence([_protocol_comment(patient)])
    request = Dataset()
    request.RequestedProcedureID = study.requested_procedure_id
    request.AccessionNumber = study.accession
    request.StudyInstanceUID = ds.StudyInstanceUID
    request.RequestedProcedureDescription = f"{description} for {patient.person.text}"
    request.RequestedProcedureCodeSequence = DicomSequence([_code("ONC-STG", "99ACME", "Oncology staging")])
    # LO: 64 characters at most, so the diagnosis itself stays out; its date and the name fit.
    request.ReasonForTheRequestedProcedure = f"Dx {_da(patient.diagnosis_date)} staging {patient.person.text}"
    request.ScheduledProcedureStepID = study.sps_id
    request.ScheduledProcedureStepDescription = f"{description} {patient.mrn}"
    request.ScheduledProtocolCodeSequence = DicomSequence([protocol])
    ds.RequestAttributesSequence = DicomSequence([request])


def _private_text(patient: _Patient) -> str:
    return f"Call {patient.person.text} at {patient.phone} re {patient.mrn} results"


def _add_private(ds: Dataset, patient: _Patient) -> None:
    """A vendor private block copying the name, MRN and phone: de-id must drop or clean it."""
    block = ds.private_block(_PRIVATE_GROUP, _PRIVATE_CREATOR, create=True)
    block.add_new(0x10, "LO", patient.person.pn)
    block.add_new(0x11, "LT", _private_text(patient))
    block.add_new(0x12, "SH", patient.mrn)


def _add_common(ds: Dataset, patient: _Patient, study: _Study, seed: int) -> None:
    _add_patient(ds, patient, study)
    _add_study(ds, patient, study, seed)
    _add_private(ds, patient)


def _fmt(value: float) -> str:
    """Decimal strings short enough for DS (16 chars) and free of float noise such as 0.30000000000000004."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _write(ds: Dataset, root: Path, relative: Path) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return relative


# ---------------------------------------------------------------------------------------
# Pixel phantoms
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    """Pixel-centre coordinates (mm, patient LPS) of an axial slice centred on the isocentre."""

    rows: int
    columns: int
    spacing: float

    @property
    def origin(self) -> tuple[float, float]:
        return (-(self.columns - 1) / 2 * self.spacing, -(self.rows - 1) / 2 * self.spacing)

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        x0, y0 = self.origin
        xs = x0 + np.arange(self.columns) * self.spacing
        ys = y0 + np.arange(self.rows) * self.spacing
        return xs[np.newaxis, :], ys[:, np.newaxis]


def _inside(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0


def _tumour_radius(z: float, centre_z: float, radius: float) -> float:
    """Radius of a spherical tumour's cross-section in the plane at ``z`` (0 outside it)."""
    dz = abs(z - centre_z)
    return math.sqrt(radius * radius - dz * dz) if dz < radius else 0.0


@dataclass(frozen=True)
class _ChestPhantom:
    """A chest-like phantom in HU: body ellipse, two lungs, a spine and a spherical tumour."""

    fov: float
    tumour_centre: tuple[float, float, float]
    tumour_radius: float

    @property
    def body(self) -> tuple[float, float]:
        return (0.42 * self.fov, 0.30 * self.fov)

    def hu(self, grid: _Grid, z: float, noise: np.random.Generator) -> np.ndarray:
        x, y = grid.mesh()
        f = self.fov
        image = np.full((grid.rows, grid.columns), -1000.0)
        image[_inside(x, y, 0, 0, *self.body)] = 40.0
        image[_inside(x, y, -0.18 * f, -0.03 * f, 0.14 * f, 0.20 * f)] = -850.0
        image[_inside(x, y, 0.18 * f, -0.03 * f, 0.14 * f, 0.20 * f)] = -850.0
        image[_inside(x, y, 0, 0.21 * f, 0.05 * f, 0.05 * f)] = 700.0
        r = _tumour_radius(z, self.tumour_centre[2], self.tumour_radius)
        if r > 0:
            image[_inside(x, y, self.tumour_centre[0], self.tumour_centre[1], r, r)] = 60.0
        return image + noise.normal(0.0, 8.0, image.shape)


def _head_phantom(grid: _Grid, z: float, fov: float, noise: np.random.Generator) -> np.ndarray:
    """A T1-like head: scalp, brain, ventricles and an enhancing lesion, in 12-bit signal units."""
    x, y = grid.mesh()
    image = np.zeros((grid.rows, grid.columns))
    image[_inside(x, y, 0, 0, 0.36 * fov, 0.44 * fov)] = 900.0
    image[_inside(x, y, 0, 0, 0.32 * fov, 0.40 * fov)] = 1400.0
    image[_inside(x, y, -0.05 * fov, 0, 0.03 * fov, 0.10 * fov)] = 300.0
    image[_inside(x, y, 0.05 * fov, 0, 0.03 * fov, 0.10 * fov)] = 300.0
    r = _tumour_radius(z, 0.0, 0.08 * fov)
    if r > 0:
        image[_inside(x, y, 0.15 * fov, -0.15 * fov, r, r)] = 2600.0
    return np.clip(image + noise.normal(0.0, 20.0, image.shape), 0, 4095)


def _slice_positions(count: int, thickness: float) -> list[float]:
    """Slice z positions centred on 0, stepping by the slice thickness (contiguous slices)."""
    return [(i - (count - 1) / 2) * thickness for i in range(count)]


# ---------------------------------------------------------------------------------------
# Image objects
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SeriesPlan:
    """Everything about one image series that does not vary from slice to slice."""

    patient: _Patient
    study: _Study
    modality: str
    number: int
    start: dt.datetime
    grid: _Grid
    thickness: float
    series_uid: str
    frame_uid: str
    folder: Path
    seed: int


def _add_geometry(ds: Dataset, plan: _SeriesPlan) -> None:
    """Frame of Reference and the slice-invariant part of Image Plane."""
    ds.FrameOfReferenceUID = plan.frame_uid
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = [_fmt(plan.grid.spacing), _fmt(plan.grid.spacing)]
    ds.SliceThickness = _fmt(plan.thickness)
    ds.AcquisitionNumber = 1


def _add_pixel_format(ds: Dataset, grid: _Grid, bits_stored: int, signed: bool) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = grid.rows
    ds.Columns = grid.columns
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0


def _image_header(plan: _SeriesPlan, description: str, request: str, model: str, serial: str) -> Dataset:
    """The attributes every slice of a series shares, built once per series (building dominates run time)."""
    patient = plan.patient
    ds = Dataset()
    _add_common(ds, patient, plan.study, plan.seed)
    _add_series(ds, plan.modality, plan.series_uid, plan.number, plan.start, f"{description} for {patient.tag}",
                patient)
    ds.PerformingPhysicianName = patient.performing.pn
    _add_request(ds, patient, plan.study, request)
    _add_equipment(ds, patient, model, serial, f"{patient.institution[2]}{plan.modality}01")
    _add_geometry(ds, plan)
    return ds


def _ct_header(plan: _SeriesPlan) -> Dataset:
    ds = _image_header(plan, "CT CHEST AXIAL", "CT CHEST WITH CONTRAST", "SynthCT 64", plan.patient.ct_serial)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.BodyPartExamined = "CHEST"
    ds.ProtocolName = "CHEST STAGING"
    ds.KVP = "120"
    ds.DataCollectionDiameter = _fmt(500.0)
    ds.ReconstructionDiameter = _fmt(plan.grid.spacing * plan.grid.columns)
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "150"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = 200
    ds.Exposure = 100
    ds.ConvolutionKernel = "STANDARD"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    _add_pixel_format(ds, plan.grid, bits_stored=16, signed=True)
    return ds


def _mr_header(plan: _SeriesPlan) -> Dataset:
    ds = _image_header(plan, "MR BRAIN T1 POST", "MR BRAIN WITH CONTRAST", "SynthMR 1.5T", plan.patient.mr_serial)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.BodyPartExamined = "BRAIN"
    ds.ProtocolName = "BRAIN METS STAGING"
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "SP"
    ds.ScanOptions = "FS"
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = "se2d1"
    ds.RepetitionTime = "550"
    ds.EchoTime = "12"
    ds.EchoTrainLength = 1
    ds.NumberOfAverages = "2"
    ds.ImagingFrequency = "63.87"
    ds.ImagedNucleus = "1H"
    ds.MagneticFieldStrength = "1.5"
    ds.SpacingBetweenSlices = _fmt(plan.thickness)
    ds.FlipAngle = "90"
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = "100"
    ds.PixelBandwidth = "130"
    ds.AcquisitionMatrix = [0, plan.grid.columns, plan.grid.rows, 0]
    ds.InPlanePhaseEncodingDirection = "ROW"
    ds.WindowCenter = "1200"
    ds.WindowWidth = "2400"
    _add_pixel_format(ds, plan.grid, bits_stored=12, signed=False)
    return ds


def _image_slice(plan: _SeriesPlan, header: Dataset, sop_class_uid: str, index: int, z: float,
                 pixels: np.ndarray) -> Dataset:
    """One slice: the shared header plus what varies along z (position, times, comment, pixels).

    The header's data elements are shared, not copied, between the slices of a series; that
    is safe because every slice is written straight away and never modified afterwards.
    """
    acquired = plan.start + dt.timedelta(seconds=3 * index)
    sop_uid = _uid(plan.seed, plan.patient.index, plan.study.index, plan.modality, index)
    ds = _new_dataset(sop_class_uid, sop_uid, acquired)
    for element in header:
        ds.add(element)
    x0, y0 = plan.grid.origin
    ds.InstanceNumber = index + 1
    ds.AcquisitionDate = _da(acquired)
    ds.AcquisitionTime = _tm(acquired)
    ds.ContentDate = _da(acquired)
    ds.ContentTime = _tm(acquired)
    ds.ImageComments = (f"Slice {index + 1}; patient {plan.patient.tag} tolerated the scan well; "
                        f"tech {plan.patient.operator.text}")
    ds.ImagePositionPatient = [_fmt(x0), _fmt(y0), _fmt(z)]
    ds.SliceLocation = _fmt(z)
    dtype = "<i2" if header.PixelRepresentation == 1 else "<u2"
    ds.add_new(0x7FE00010, "OW", np.rint(pixels).astype(dtype).tobytes())
    return ds


def _noise(plan: _SeriesPlan, index: int) -> np.random.Generator:
    key = f"{plan.seed}|{plan.patient.index}|{plan.study.index}|{plan.modality}|{index}".encode()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8]))


def _series_plan(patient: _Patient, study: _Study, modality: str, number: int, grid: _Grid,
                 thickness: float, seed: int, folder: str) -> _SeriesPlan:
    series_uid = _uid(seed, patient.index, study.index, modality, "series")
    frame_uid = _uid(seed, patient.index, study.index, modality, "frame")
    start = study.start + dt.timedelta(minutes=3 + 20 * (number - 1))
    return _SeriesPlan(patient, study, modality, number, start, grid, thickness, series_uid, frame_uid,
                       _study_folder(patient, study) / f"{number:03d}_{folder}", seed)


def _study_folder(patient: _Patient, study: _Study) -> Path:
    return Path(patient.folder) / f"{study.date}_{'BASELINE' if study.index == 0 else 'FOLLOWUP'}"


def _ct_series(root: Path, patient: _Patient, study: _Study, seed: int, count: int, rows: int,
               columns: int) -> tuple[list[Path], _SeriesRef, _ChestPhantom]:
    grid = _Grid(rows, columns, _CT_FOV_MM / max(rows, columns))
    plan = _series_plan(patient, study, "CT", 2, grid, _CT_THICKNESS_MM, seed, "CT_CHEST_AXIAL")
    zs = _slice_positions(count, _CT_THICKNESS_MM)
    phantom = _ChestPhantom(_CT_FOV_MM, (-0.18 * _CT_FOV_MM, -0.05 * _CT_FOV_MM, zs[count // 2]),
                            2.3 * _CT_THICKNESS_MM)
    header = _ct_header(plan)
    files, uids = [], []
    for i, z in enumerate(zs):
        stored = np.clip(phantom.hu(grid, z, _noise(plan, i)) + 1024, 0, 4095)
        ds = _image_slice(plan, header, CTImageStorage, i, z, stored)
        uids.append(ds.SOPInstanceUID)
        files.append(_write(ds, root, plan.folder / f"{i + 1}.dcm"))
    ref = _SeriesRef(header.StudyInstanceUID, plan.series_uid, plan.frame_uid, CTImageStorage, tuple(uids),
                     tuple(zs))
    return files, ref, phantom


def _mr_series(root: Path, patient: _Patient, study: _Study, seed: int, count: int, rows: int,
               columns: int) -> list[Path]:
    grid = _Grid(rows, columns, _MR_FOV_MM / max(rows, columns))
    plan = _series_plan(patient, study, "MR", 3, grid, _MR_THICKNESS_MM, seed, "MR_BRAIN_T1_POST")
    header = _mr_header(plan)
    files = []
    for i, z in enumerate(_slice_positions(count, _MR_THICKNESS_MM)):
        pixels = _head_phantom(grid, z, _MR_FOV_MM, _noise(plan, i))
        files.append(_write(_image_slice(plan, header, MRImageStorage, i, z, pixels), root,
                            plan.folder / f"{i + 1}.dcm"))
    return files


# ---------------------------------------------------------------------------------------
# RT Structure Set
# ---------------------------------------------------------------------------------------


def _polygon(cx: float, cy: float, rx: float, ry: float, z: float, points: int = 24) -> list[str]:
    """A closed planar contour (the last point is implicitly joined to the first) as DS strings."""
    coords: list[str] = []
    for k in range(points):
        angle = 2 * math.pi * k / points
        coords += [_fmt(cx + rx * math.cos(angle)), _fmt(cy + ry * math.sin(angle)), _fmt(z)]
    return coords


def _contour(ref: _SeriesRef, slice_index: int, coords: list[str], number: int) -> Dataset:
    image = Dataset()
    image.ReferencedSOPClassUID = ref.sop_class_uid
    image.ReferencedSOPInstanceUID = ref.sop_instance_uids[slice_index]
    item = Dataset()
    item.ContourImageSequence = DicomSequence([image])
    item.ContourGeometricType = "CLOSED_PLANAR"
    item.NumberOfContourPoints = len(coords) // 3
    item.ContourNumber = number
    item.ContourData = coords
    return item


def _roi_contours(ref: _SeriesRef, phantom: _ChestPhantom) -> dict[int, list[Dataset]]:
    """Contours per ROI number: 1 = GTV on the few slices the tumour crosses, 2 = EXTERNAL on all."""
    cx, cy, cz = phantom.tumour_centre
    gtv: list[Dataset] = []
    external: list[Dataset] = []
    for i, z in enumerate(ref.z_positions):
        r = _tumour_radius(z, cz, phantom.tumour_radius)
        if r > 1.0:
            gtv.append(_contour(ref, i, _polygon(cx, cy, r, r, z), len(gtv) + 1))
        external.append(_contour(ref, i, _polygon(0.0, 0.0, *phantom.body, z), len(external) + 1))
    return {1: gtv, 2: external}


def _referenced_frame(ref: _SeriesRef) -> Dataset:
    images = []
    for uid in ref.sop_instance_uids:
        image = Dataset()
        image.ReferencedSOPClassUID = ref.sop_class_uid
        image.ReferencedSOPInstanceUID = uid
        images.append(image)
    series = Dataset()
    series.SeriesInstanceUID = ref.series_uid
    series.ContourImageSequence = DicomSequence(images)
    study = Dataset()
    study.ReferencedSOPClassUID = _STUDY_COMPONENT_SOP_CLASS
    study.ReferencedSOPInstanceUID = ref.study_uid
    study.RTReferencedSeriesSequence = DicomSequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = ref.frame_of_reference_uid
    frame.RTReferencedStudySequence = DicomSequence([study])
    return frame


_ROIS = ((1, "GTV", "GTV", [255, 0, 0]), (2, "EXTERNAL", "EXTERNAL", [0, 255, 0]))


def _add_rois(ds: Dataset, ref: _SeriesRef, phantom: _ChestPhantom, patient: _Patient) -> None:
    """Structure Set ROI, ROI Contour and RT ROI Observations, one item per ROI in each."""
    contours = _roi_contours(ref, phantom)
    rois, roi_contours, observations = [], [], []
    for number, name, kind, colour in _ROIS:
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = ref.frame_of_reference_uid
        roi.ROIName = name
        roi.ROIGenerationAlgorithm = "MANUAL"
        rois.append(roi)
        roi_contour = Dataset()
        roi_contour.ReferencedROINumber = number
        roi_contour.ROIDisplayColor = colour
        roi_contour.ContourSequence = DicomSequence(contours[number])
        roi_contours.append(roi_contour)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.RTROIInterpretedType = kind
        observation.ROIInterpreter = patient.referring.pn
        observations.append(observation)
    ds.StructureSetROISequence = DicomSequence(rois)
    ds.ROIContourSequence = DicomSequence(roi_contours)
    ds.RTROIObservationsSequence = DicomSequence(observations)


def _rtstruct(root: Path, patient: _Patient, study: _Study, ref: _SeriesRef, phantom: _ChestPhantom,
              seed: int) -> Path:
    created = study.start + dt.timedelta(days=2, hours=1)
    ds = _new_dataset(RTStructureSetStorage, _uid(seed, patient.index, study.index, "RTSTRUCT", 0), created)
    _add_common(ds, patient, study, seed)
    _add_series(ds, "RTSTRUCT", _uid(seed, patient.index, study.index, "RTSTRUCT", "series"), 4, created,
                f"GTV contours for {patient.tag}", patient)
    _add_equipment(ds, patient, "SynthPlan 2", f"TPS{patient.ct_serial[2:]}", f"{patient.institution[2]}TPS01")
    ds.InstanceNumber = 1
    ds.StructureSetLabel = "GTV_BASELINE"
    ds.StructureSetName = "GTV"
    ds.StructureSetDescription = f"Baseline GTV for {patient.person.text} by {patient.referring.text}"
    ds.StructureSetDate = _da(created)
    ds.StructureSetTime = _tm(created)
    ds.FrameOfReferenceUID = ref.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([_referenced_frame(ref)])
    _add_rois(ds, ref, phantom, patient)
    ds.ApprovalStatus = "UNAPPROVED"
    return _write(ds, root, _study_folder(patient, study) / "004_RTSTRUCT_GTV" / "1.dcm")


# ---------------------------------------------------------------------------------------
# Secondary Capture of a scanned document
# ---------------------------------------------------------------------------------------


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans if installed (it OCRs well), else Pillow's built-in scalable font."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size)


def _document_lines(patient: _Patient) -> list[str]:
    return [
        patient.institution[0],
        f"NAME: {patient.person.text}",
        f"MRN: {patient.mrn}",
        f"DOB: {_da(patient.birth)}",
    ]


def _render_document(patient: _Patient) -> np.ndarray:
    """A referral sheet as a scanner would capture it: black text on white, big enough to OCR."""
    image = Image.new("L", (_SC_COLUMNS, _SC_ROWS), 255)
    draw = ImageDraw.Draw(image)
    lines = _document_lines(patient)
    size = 34
    font = _font(size)
    while size > 12 and max(draw.textlength(line, font=font) for line in lines) > _SC_COLUMNS - 32:
        size -= 2
        font = _font(size)
    for i, line in enumerate(lines):
        draw.text((16, 16 + i * (size + 20)), line, fill=0, font=font)
    return np.asarray(image, dtype=np.uint8)


def _secondary_capture(root: Path, patient: _Patient, study: _Study, seed: int) -> Path:
    captured = study.start - dt.timedelta(minutes=15)
    ds = _new_dataset(SecondaryCaptureImageStorage, _uid(seed, patient.index, study.index, "SC", 0), captured)
    ds.ImageType = ["DERIVED", "SECONDARY"]
    _add_common(ds, patient, study, seed)
    _add_series(ds, "OT", _uid(seed, patient.index, study.index, "SC", "series"), 1, captured,
                f"Scanned referral for {patient.tag}", patient)
    ds.Laterality = ""
    ds.Manufacturer = "ACME Scanning"
    ds.InstitutionName = patient.institution[0]
    ds.ConversionType = "SD"
    ds.SecondaryCaptureDeviceManufacturer = "ACME Scanning"
    ds.SecondaryCaptureDeviceManufacturerModelName = "DocuScan 9"
    ds.DateOfSecondaryCapture = _da(captured)
    ds.TimeOfSecondaryCapture = _tm(captured)
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.ContentDate = _da(captured)
    ds.ContentTime = _tm(captured)
    ds.BurnedInAnnotation = "YES"
    ds.ImageComments = f"Referral letter for {patient.tag}"
    pixels = _render_document(patient)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.add_new(0x7FE00010, "OB", pixels.tobytes())
    return _write(ds, root, _study_folder(patient, study) / "001_SCANNED_DOCUMENT" / "1.dcm")


# ---------------------------------------------------------------------------------------
# Clinical spreadsheet and the planted-PHI truth
# ---------------------------------------------------------------------------------------

_CLINICAL_COLUMNS = ("patient_id", "patient_name", "birth_date", "diagnosis_date", "age_at_diagnosis", "sex",
                     "diagnosis", "notes")


def _clinical_row(patient: _Patient) -> dict[str, str]:
    return {
        "patient_id": patient.mrn,
        "patient_name": patient.person.pn,
        "birth_date": patient.birth.isoformat(),
        "diagnosis_date": patient.diagnosis_date.isoformat(),
        "age_at_diagnosis": str(_age(patient.birth, patient.diagnosis_date)),
        "sex": patient.sex,
        "diagnosis": patient.diagnosis,
        "notes": (f"{patient.person.given} {patient.person.family} ({patient.mrn}) referred by "
                  f"Dr {patient.referring.text}; phone {patient.phone}"),
    }


def _write_clinical(root: Path, patients: Sequence[_Patient]) -> Path:
    relative = Path("clinical.csv")
    with (root / relative).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=_CLINICAL_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(_clinical_row(p) for p in patients)
    return relative


def _person_values(person: _Person) -> list[str]:
    return [person.pn, person.text, person.family, person.given]


def _planted(patient: _Patient) -> PlantedPHI:
    """Collect every identifying string written for the patient, each as it appears in the DICOM bytes."""
    values = [*_person_values(patient.person), patient.mrn]
    for other_id, issuer in patient.other_ids:
        values += [other_id, issuer]
    values += [_da(patient.birth), patient.address, patient.phone, _da(patient.diagnosis_date)]
    values += [patient.institution[0], patient.institution[1]]
    for staff in (patient.referring, patient.performing, patient.operator):
        values += _person_values(staff)
    values += [patient.ct_serial, patient.mr_serial, f"TPS{patient.ct_serial[2:]}"]
    values += [f"{patient.institution[2]}{station}" for station in ("CT01", "MR01", "TPS01")]
    for study in patient.studies:
        values += [study.date, study.accession, study.study_id, study.requested_procedure_id, study.sps_id]
    baseline = patient.studies[0].start
    values += [_da(baseline - dt.timedelta(minutes=15)), _da(baseline + dt.timedelta(days=2, hours=1))]
    values += [_private_text(patient)]
    return PlantedPHI(patient_id=patient.mrn, values=tuple(dict.fromkeys(values)))


# ---------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------


def _kind(relative: Path) -> str:
    """The by_kind bucket of a written file, read from the series folder name."""
    if relative.suffix in (".csv", ".xlsx"):
        return "clinical"
    if relative.suffix == ".svs":
        return "slide"
    folder = relative.parent.name
    for marker, kind in (("_CT_", "CT"), ("_MR_", "MR"), ("_RTSTRUCT_", "RTSTRUCT"), ("_SCANNED_", "SC"),
                         ("_US_", "US"), ("_SM_", "SM")):
        if marker in f"_{folder}_":
            return kind
    raise AssertionError(f"unclassified synthetic file {relative}")


def _write_patient(root: Path, patient: _Patient, seed: int, ct_slices: int, mr_slices: int, rows: int,
                   columns: int) -> list[Path]:
    files: list[Path] = []
    for study in patient.studies:
        if study.index == 0:
            files.append(_secondary_capture(root, patient, study, seed))
        ct_files, ref, phantom = _ct_series(root, patient, study, seed, ct_slices, rows, columns)
        files += ct_files
        files += _mr_series(root, patient, study, seed, mr_slices, rows, columns)
        if study.index == 0:
            files.append(_rtstruct(root, patient, study, ref, phantom, seed))
    return files


def generate_submission(out_dir: Path, patients: int = 2, seed: int = 0, *, ct_slices: int = 8,
                        mr_slices: int = 6, rows: int = 64, columns: int = 64, extras: bool = False) -> SynthSummary:
    """Write a fake site submission (DICOM tree plus ``clinical.csv``) full of known PHI.

    Per patient: a baseline study (scanned-document SC, CT, MR, RTSTRUCT on the CT) and a
    follow-up study 60-400 days later (CT, MR). Folder and file names carry the patient's
    name and MRN, as real submissions do. The same arguments always give the same bytes.
    ``extras`` adds PHI beyond headers (``synth_extras``): an ultrasound frame with a
    burned-in name and date, a DICOM WSI with a label, an SVS slide with label and macro
    for the first patient, and ``clinical_followup.xlsx``.
    """
    if patients < 1 or ct_slices < 1 or mr_slices < 1 or rows < 16 or columns < 16:
        raise ValueError("need at least one patient, one slice per series and 16x16 pixels")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    people = _make_patients(seed, patients)
    files: list[Path] = []
    for patient in people:
        files += _write_patient(root, patient, seed, ct_slices, mr_slices, rows, columns)
    if extras:
        from .synth_extras import write_extras

        files += write_extras(root, people, seed)
    dicom_count = sum(1 for f in files if f.suffix == ".dcm")
    files.append(_write_clinical(root, people))
    return SynthSummary(
        root=root,
        files=tuple(files),
        dicom_files=dicom_count,
        by_kind=dict(Counter(_kind(f) for f in files)),
        planted=tuple(_planted(p) for p in people),
    )


def summary_as_dict(summary: SynthSummary) -> dict[str, Any]:
    """A JSON-ready view of a summary, so a command can write the planted truth beside the data."""
    return {
        "root": str(summary.root),
        "files": [f.as_posix() for f in summary.files],
        "dicom_files": summary.dicom_files,
        "by_kind": dict(summary.by_kind),
        "planted": [{"patient_id": p.patient_id, "values": list(p.values)} for p in summary.planted],
    }
