"""A synthetic RT Structure Set on a CT series: contours of the phantom's tumour and body."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    RTStructureSetStorage,
)

from imaging_ingest.synth.headers import (
    SeriesRef,
    add_common,
    add_equipment,
    add_series,
    ds_number,
    new_dataset,
    synthetic_uid,
    write_instance,
)
from imaging_ingest.synth.images import ChestPhantom, study_folder, tumour_radius
from imaging_ingest.synth.people import Patient, Study, dicom_date, dicom_time

# The "Study Component Management" SOP class that RT Referenced Study Sequence items name.
_STUDY_COMPONENT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"


def _polygon(cx: float, cy: float, rx: float, ry: float, z: float, points: int = 24) -> list[str]:
    """A closed planar contour (the last point is implicitly joined to the first) as DS strings."""
    coords: list[str] = []
    for k in range(points):
        angle = 2 * math.pi * k / points
        coords += [ds_number(cx + rx * math.cos(angle)), ds_number(cy + ry * math.sin(angle)), ds_number(z)]
    return coords


def _contour(ref: SeriesRef, slice_index: int, coords: list[str], number: int) -> Dataset:
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


def _roi_contours(ref: SeriesRef, phantom: ChestPhantom) -> dict[int, list[Dataset]]:
    """Contours per ROI number: 1 = GTV on the few slices the tumour crosses, 2 = EXTERNAL on all."""
    cx, cy, cz = phantom.tumour_centre
    gtv: list[Dataset] = []
    external: list[Dataset] = []
    for i, z in enumerate(ref.z_positions):
        r = tumour_radius(z, cz, phantom.tumour_radius)
        if r > 1.0:
            gtv.append(_contour(ref, i, _polygon(cx, cy, r, r, z), len(gtv) + 1))
        external.append(_contour(ref, i, _polygon(0.0, 0.0, *phantom.body, z), len(external) + 1))
    return {1: gtv, 2: external}


def _referenced_frame(ref: SeriesRef) -> Dataset:
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


def _add_rois(ds: Dataset, ref: SeriesRef, phantom: ChestPhantom, patient: Patient) -> None:
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


def rtstruct(
    root: Path, patient: Patient, study: Study, ref: SeriesRef, phantom: ChestPhantom, seed: int
) -> Path:
    created = study.start + dt.timedelta(days=2, hours=1)
    ds = new_dataset(
        RTStructureSetStorage, synthetic_uid(seed, patient.index, study.index, "RTSTRUCT", 0), created
    )
    add_common(ds, patient, study, seed)
    add_series(
        ds,
        "RTSTRUCT",
        synthetic_uid(seed, patient.index, study.index, "RTSTRUCT", "series"),
        4,
        created,
        f"GTV contours for {patient.tag}",
        patient,
    )
    add_equipment(ds, patient, "SynthPlan 2", f"TPS{patient.ct_serial[2:]}", f"{patient.institution[2]}TPS01")
    ds.InstanceNumber = 1
    ds.StructureSetLabel = "GTV_BASELINE"
    ds.StructureSetName = "GTV"
    ds.StructureSetDescription = f"Baseline GTV for {patient.person.text} by {patient.referring.text}"
    ds.StructureSetDate = dicom_date(created)
    ds.StructureSetTime = dicom_time(created)
    ds.FrameOfReferenceUID = ref.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([_referenced_frame(ref)])
    _add_rois(ds, ref, phantom, patient)
    ds.ApprovalStatus = "UNAPPROVED"
    return write_instance(ds, root, study_folder(patient, study) / "004_RTSTRUCT_GTV" / "1.dcm")
