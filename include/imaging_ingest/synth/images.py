"""Synthetic CT and MR series: pixel phantoms with a tumour, geometry, and headers dciodvfy accepts."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    MRImageStorage,
)

from imaging_ingest.synth.headers import (
    SeriesRef,
    add_common,
    add_equipment,
    add_request,
    add_series,
    ds_number,
    new_dataset,
    synthetic_uid,
    write_instance,
)
from imaging_ingest.synth.people import Patient, Study, dicom_date, dicom_time

_CT_FOV_MM = 320.0


_CT_THICKNESS_MM = 5.0


_MR_FOV_MM = 240.0


_MR_THICKNESS_MM = 4.0


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


def tumour_radius(z: float, centre_z: float, radius: float) -> float:
    """Radius of a spherical tumour's cross-section in the plane at ``z`` (0 outside it)."""
    dz = abs(z - centre_z)
    return math.sqrt(radius * radius - dz * dz) if dz < radius else 0.0


@dataclass(frozen=True)
class ChestPhantom:
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
        r = tumour_radius(z, self.tumour_centre[2], self.tumour_radius)
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
    r = tumour_radius(z, 0.0, 0.08 * fov)
    if r > 0:
        image[_inside(x, y, 0.15 * fov, -0.15 * fov, r, r)] = 2600.0
    return np.clip(image + noise.normal(0.0, 20.0, image.shape), 0, 4095)


def _slice_positions(count: int, thickness: float) -> list[float]:
    """Slice z positions centred on 0, stepping by the slice thickness (contiguous slices)."""
    return [(i - (count - 1) / 2) * thickness for i in range(count)]


@dataclass(frozen=True)
class _SeriesPlan:
    """Everything about one image series that does not vary from slice to slice."""

    patient: Patient
    study: Study
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
    ds.PixelSpacing = [ds_number(plan.grid.spacing), ds_number(plan.grid.spacing)]
    ds.SliceThickness = ds_number(plan.thickness)
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
    add_common(ds, patient, plan.study, plan.seed)
    add_series(
        ds,
        plan.modality,
        plan.series_uid,
        plan.number,
        plan.start,
        f"{description} for {patient.tag}",
        patient,
    )
    ds.PerformingPhysicianName = patient.performing.pn
    add_request(ds, patient, plan.study, request)
    add_equipment(ds, patient, model, serial, f"{patient.institution[2]}{plan.modality}01")
    _add_geometry(ds, plan)
    return ds


def _ct_header(plan: _SeriesPlan) -> Dataset:
    ds = _image_header(plan, "CT CHEST AXIAL", "CT CHEST WITH CONTRAST", "SynthCT 64", plan.patient.ct_serial)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.BodyPartExamined = "CHEST"
    ds.ProtocolName = "CHEST STAGING"
    ds.KVP = "120"
    ds.DataCollectionDiameter = ds_number(500.0)
    ds.ReconstructionDiameter = ds_number(plan.grid.spacing * plan.grid.columns)
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
    ds = _image_header(
        plan, "MR BRAIN T1 POST", "MR BRAIN WITH CONTRAST", "SynthMR 1.5T", plan.patient.mr_serial
    )
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
    ds.SpacingBetweenSlices = ds_number(plan.thickness)
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


def _image_slice(
    plan: _SeriesPlan, header: Dataset, sop_class_uid: str, index: int, z: float, pixels: np.ndarray
) -> Dataset:
    """One slice: the shared header plus what varies along z (position, times, comment, pixels).

    The header's data elements are shared, not copied, between the slices of a series; that
    is safe because every slice is written straight away and never modified afterwards.
    """
    acquired = plan.start + dt.timedelta(seconds=3 * index)
    sop_uid = synthetic_uid(plan.seed, plan.patient.index, plan.study.index, plan.modality, index)
    ds = new_dataset(sop_class_uid, sop_uid, acquired)
    for element in header:
        ds.add(element)
    x0, y0 = plan.grid.origin
    ds.InstanceNumber = index + 1
    ds.AcquisitionDate = dicom_date(acquired)
    ds.AcquisitionTime = dicom_time(acquired)
    ds.ContentDate = dicom_date(acquired)
    ds.ContentTime = dicom_time(acquired)
    ds.ImageComments = (
        f"Slice {index + 1}; patient {plan.patient.tag} tolerated the scan well; "
        f"tech {plan.patient.operator.text}"
    )
    ds.ImagePositionPatient = [ds_number(x0), ds_number(y0), ds_number(z)]
    ds.SliceLocation = ds_number(z)
    dtype = "<i2" if header.PixelRepresentation == 1 else "<u2"
    ds.add_new(0x7FE00010, "OW", np.rint(pixels).astype(dtype).tobytes())
    return ds


def _noise(plan: _SeriesPlan, index: int) -> np.random.Generator:
    key = f"{plan.seed}|{plan.patient.index}|{plan.study.index}|{plan.modality}|{index}".encode()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8]))


def _series_plan(
    patient: Patient,
    study: Study,
    modality: str,
    number: int,
    grid: _Grid,
    thickness: float,
    seed: int,
    folder: str,
) -> _SeriesPlan:
    series_uid = synthetic_uid(seed, patient.index, study.index, modality, "series")
    frame_uid = synthetic_uid(seed, patient.index, study.index, modality, "frame")
    start = study.start + dt.timedelta(minutes=3 + 20 * (number - 1))
    return _SeriesPlan(
        patient,
        study,
        modality,
        number,
        start,
        grid,
        thickness,
        series_uid,
        frame_uid,
        study_folder(patient, study) / f"{number:03d}_{folder}",
        seed,
    )


def study_folder(patient: Patient, study: Study) -> Path:
    return Path(patient.folder) / f"{study.date}_{'BASELINE' if study.index == 0 else 'FOLLOWUP'}"


def ct_series(
    root: Path, patient: Patient, study: Study, seed: int, count: int, rows: int, columns: int
) -> tuple[list[Path], SeriesRef, ChestPhantom]:
    grid = _Grid(rows, columns, _CT_FOV_MM / max(rows, columns))
    plan = _series_plan(patient, study, "CT", 2, grid, _CT_THICKNESS_MM, seed, "CT_CHEST_AXIAL")
    zs = _slice_positions(count, _CT_THICKNESS_MM)
    phantom = ChestPhantom(
        _CT_FOV_MM, (-0.18 * _CT_FOV_MM, -0.05 * _CT_FOV_MM, zs[count // 2]), 2.3 * _CT_THICKNESS_MM
    )
    header = _ct_header(plan)
    files, uids = [], []
    for i, z in enumerate(zs):
        stored = np.clip(phantom.hu(grid, z, _noise(plan, i)) + 1024, 0, 4095)
        ds = _image_slice(plan, header, CTImageStorage, i, z, stored)
        uids.append(ds.SOPInstanceUID)
        files.append(write_instance(ds, root, plan.folder / f"{i + 1}.dcm"))
    ref = SeriesRef(
        header.StudyInstanceUID, plan.series_uid, plan.frame_uid, CTImageStorage, tuple(uids), tuple(zs)
    )
    return files, ref, phantom


def mr_series(
    root: Path, patient: Patient, study: Study, seed: int, count: int, rows: int, columns: int
) -> list[Path]:
    grid = _Grid(rows, columns, _MR_FOV_MM / max(rows, columns))
    plan = _series_plan(patient, study, "MR", 3, grid, _MR_THICKNESS_MM, seed, "MR_BRAIN_T1_POST")
    header = _mr_header(plan)
    files = []
    for i, z in enumerate(_slice_positions(count, _MR_THICKNESS_MM)):
        pixels = _head_phantom(grid, z, _MR_FOV_MM, _noise(plan, i))
        files.append(
            write_instance(
                _image_slice(plan, header, MRImageStorage, i, z, pixels), root, plan.folder / f"{i + 1}.dcm"
            )
        )
    return files
