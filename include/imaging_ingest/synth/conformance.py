"""Synthetic objects for the conformance checks that the base submission does not hold.

``generate_submission`` writes CT, MR, RTSTRUCT and scanned documents. The de-identification
conformance check (``dciodvfy`` finds no new errors) also needs:

- a **CT whose Request Attributes Sequence nests a Referenced Study Sequence** (Type 3 there),
  and identifying code sequences inside other sequences (Person Identification Code Sequence
  in an Operator Identification item, Institution Code Sequence in a Referring Physician
  Identification item): the cases where a combined code inside a sequence must follow the
  attribute's Type at that path;
- a **Segmentation** of that CT and a **Comprehensive SR** about it, written with highdicom so
  that the inputs are conformant and any new ``dciodvfy`` error is the de-identifier's.

Every identifying value is made up (the patient of the CT it is built on).
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import UID

__all__ = ["BADGE", "write_conformance_set"]

#: A staff badge number carried as a Person Identification Code (identifying: must not survive).
BADGE = "BADGE-77193"
_ROOT = "1.2.826.0.1.3680043.10.1413"


def _uid(*parts: int) -> UID:
    return UID(".".join([_ROOT, *(str(p) for p in parts)]))


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _identification(name: str, badge: str, institution: str) -> Dataset:
    """A Person Identification Macro item: a badge code and the person's institution as a code."""
    item = Dataset()
    item.PersonIdentificationCodeSequence = Sequence([_code(badge, "99STAFF", name)])
    item.InstitutionCodeSequence = Sequence([_code("QXH-001", "99HOSP", institution)])
    return item


def request_ct(ct: Path, out: Path) -> Path:
    """The CT at ``ct`` with a Referenced Study Sequence in its request and identifying codes in sequences."""
    ds = dcmread(ct)
    request = ds.RequestAttributesSequence[0] if "RequestAttributesSequence" in ds else Dataset()
    referenced = Dataset()
    referenced.ReferencedSOPClassUID = (
        "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired, as used)
    )
    referenced.ReferencedSOPInstanceUID = ds.StudyInstanceUID
    request.ReferencedStudySequence = Sequence([referenced])
    ds.RequestAttributesSequence = Sequence([request])
    ds.OperatorsName = "QUILLFEATHER^ODALYS"
    ds.OperatorIdentificationSequence = Sequence(
        [_identification("QUILLFEATHER^ODALYS", BADGE, "QUIXWORTH GENERAL HOSPITAL")]
    )
    ds.ReferringPhysicianIdentificationSequence = Sequence(
        [_identification("VOSSBERG^KAZIMIR", "BADGE-55120", "QUIXWORTH GENERAL HOSPITAL")]
    )
    ds.SOPInstanceUID = _uid(1, int(ds.InstanceNumber or 1))
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out


def _segmentation(cts: list[Dataset], out: Path) -> Path:
    mask = np.zeros((len(cts), cts[0].Rows, cts[0].Columns), dtype=np.uint8)
    mask[:, cts[0].Rows // 4 : cts[0].Rows // 2, cts[0].Columns // 4 : cts[0].Columns // 2] = 1
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Tumour of QUILLFEATHER",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=cts,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=_uid(2),
        series_number=90,
        sop_instance_uid=_uid(2, 1),
        instance_number=1,
        manufacturer="ACME",
        manufacturer_model_name="Segmenter",
        software_versions="1.0",
        device_serial_number="SN-SEG-4471",
        content_description="Drawn by Dr Vossberg",
        content_creator_name="VOSSBERG^KAZIMIR",
        omit_empty_frames=False,
    )
    seg.save_as(out, enforce_file_format=True)
    return out


def _report(cts: list[Dataset], out: Path) -> Path:
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name="VOSSBERG^KAZIMIR"),
    )
    container = hd.sr.ContainerContentItem(name=codes.DCM.ImagingMeasurementReport, template_id="1500")
    container.ContentSequence = Sequence(
        [
            *observer,
            hd.sr.TextContentItem(
                name=codes.DCM.Finding,
                value="Nodule discussed with Dr Vossberg",
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            ),
        ]
    )
    sr = hd.sr.ComprehensiveSR(
        evidence=cts,
        content=container,
        series_instance_uid=_uid(3),
        series_number=91,
        sop_instance_uid=_uid(3, 1),
        instance_number=1,
        manufacturer="ACME",
        institution_name="QUIXWORTH GENERAL HOSPITAL",
        is_complete=True,
    )
    sr.save_as(out, enforce_file_format=True)
    return out


def write_conformance_set(cts: list[Path], root: Path) -> dict[str, Path]:
    """CT with request references, SEG and SR written under ``root``, built on one CT series' files."""
    root.mkdir(parents=True, exist_ok=True)
    datasets: list[Dataset] = [dcmread(p) for p in cts]
    return {
        "CT_REQUEST": request_ct(cts[0], root / "ct_request.dcm"),
        "SEG": _segmentation(datasets, root / "seg.dcm"),
        "SR": _report(datasets, root / "sr.dcm"),
    }
