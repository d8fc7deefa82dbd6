"""Consistency: the same UID becomes the same new UID everywhere, so references still resolve.

RTSTRUCT (from the synthetic submission), SEG, KOS-style evidence and RT Plan/Dose
references are de-identified file by file, as the pipeline does, and the references in
the outputs must point at the de-identified images.
"""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from imaging_ingest.config import DeidOption
from imaging_ingest.deid import Deidentifier
from imaging_ingest.synth.generate import SynthSummary

from .deid_helpers import SECRET, code_item, ct_dataset, dicom_files, patient, resolve, site_uid, write

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
KOS_STORAGE = "1.2.840.10008.5.1.4.1.1.88.59"


def deidentify_all(files: list[Path], out_dir: Path, *options: DeidOption) -> list[Dataset]:
    engine = Deidentifier(resolve(*options), SECRET)
    outputs = []
    for i, src in enumerate(files):
        dst = out_dir / f"{i}.dcm"
        engine.deidentify_file(src, dst, patient())
        outputs.append(dcmread(dst))
    return outputs


def walk_uids(ds: Dataset, keyword: str) -> list[str]:
    found = []
    for elem in ds.iterall():
        if elem.keyword == keyword:
            found.append(str(elem.value))
    return found


def test_rtstruct_references_resolve_to_the_remapped_ct(submission: SynthSummary, tmp_path: Path) -> None:
    rtstruct = dicom_files(submission, "RTSTRUCT")
    cts = [f for f in dicom_files(submission, "CT") if "BASELINE" in str(f)]
    outputs = deidentify_all(rtstruct + cts, tmp_path, DeidOption.CLEAN_DESCRIPTORS)
    rs, images = outputs[0], outputs[1:]
    sop_uids = {str(ct.SOPInstanceUID) for ct in images}
    source_uids = {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in cts}
    assert not sop_uids & source_uids
    contour_refs = walk_uids(rs, "ReferencedSOPInstanceUID")
    image_refs = {u for u in contour_refs if u != images[0].StudyInstanceUID}
    assert image_refs == sop_uids
    frame = rs.ReferencedFrameOfReferenceSequence[0]
    assert frame.FrameOfReferenceUID == images[0].FrameOfReferenceUID == rs.FrameOfReferenceUID
    study = frame.RTReferencedStudySequence[0]
    assert study.ReferencedSOPInstanceUID == images[0].StudyInstanceUID == rs.StudyInstanceUID
    assert study.RTReferencedSeriesSequence[0].SeriesInstanceUID == images[0].SeriesInstanceUID
    for roi in rs.StructureSetROISequence:
        assert roi.ReferencedFrameOfReferenceUID == images[0].FrameOfReferenceUID
    names = [roi.ROIName for roi in rs.StructureSetROISequence]
    assert names == ["GTV", "EXTERNAL"]  # Z, cleaned under Clean Descriptors: nothing to clean
    assert all(o.ROIInterpreter == "" for o in rs.RTROIObservationsSequence)


def seg_for(images: list[Dataset]) -> Dataset:
    """A segmentation of ``images`` with the references a SEG carries (not a complete IOD)."""
    seg = ct_dataset(SEG_STORAGE, pixels=False)
    seg.Modality = "SEG"
    seg.SOPInstanceUID = site_uid(1, 4, 1)
    seg.SeriesInstanceUID = site_uid(1, 4)
    seg.ContentLabel = "TUMOUR"
    seg.ContentDescription = "Segmented by QUANDT"
    instances = []
    for image in images:
        ref = Dataset()
        ref.ReferencedSOPClassUID = image.SOPClassUID
        ref.ReferencedSOPInstanceUID = image.SOPInstanceUID
        instances.append(ref)
    series = Dataset()
    series.SeriesInstanceUID = images[0].SeriesInstanceUID
    series.ReferencedInstanceSequence = Sequence(instances)
    seg.ReferencedSeriesSequence = Sequence([series])
    frames = []
    for ref in instances:
        source = Dataset()
        source.ReferencedSOPClassUID = ref.ReferencedSOPClassUID
        source.ReferencedSOPInstanceUID = ref.ReferencedSOPInstanceUID
        source.PurposeOfReferenceCodeSequence = Sequence([code_item("121322", "DCM", "Source image for image processing operation")])
        derivation = Dataset()
        derivation.SourceImageSequence = Sequence([source])
        derivation.DerivationCodeSequence = Sequence([code_item("113076", "DCM", "Segmentation")])
        frame = Dataset()
        frame.DerivationImageSequence = Sequence([derivation])
        identification = Dataset()
        identification.ReferencedSegmentNumber = 1
        frame.SegmentIdentificationSequence = Sequence([identification])
        frames.append(frame)
    seg.PerFrameFunctionalGroupsSequence = Sequence(frames)
    segment = Dataset()
    segment.SegmentNumber = 1
    segment.SegmentLabel = "GTV"
    segment.SegmentAlgorithmType = "MANUAL"
    seg.SegmentSequence = Sequence([segment])
    return seg


def test_seg_references_resolve_to_the_remapped_images(tmp_path: Path) -> None:
    images = []
    for i in range(3):
        ds = ct_dataset()
        ds.SOPInstanceUID = site_uid(1, 1, 100 + i)
        images.append(ds)
    files = [write(ds, tmp_path / "src" / f"ct{i}.dcm") for i, ds in enumerate(images)]
    files.append(write(seg_for(images), tmp_path / "src" / "seg.dcm"))
    outputs = deidentify_all(files, tmp_path / "out", DeidOption.CLEAN_DESCRIPTORS)
    seg, cts = outputs[-1], outputs[:-1]
    new_uids = [str(ct.SOPInstanceUID) for ct in cts]
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == cts[0].SeriesInstanceUID
    assert [str(r.ReferencedSOPInstanceUID) for r in referenced.ReferencedInstanceSequence] == new_uids
    per_frame = [
        str(f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        for f in seg.PerFrameFunctionalGroupsSequence
    ]
    assert per_frame == new_uids
    assert seg.FrameOfReferenceUID == cts[0].FrameOfReferenceUID
    assert seg.StudyInstanceUID == cts[0].StudyInstanceUID
    assert seg.SegmentSequence[0].SegmentLabel == "GTV"
    assert seg.ContentDescription == "Segmented by [NAME]"  # a census surname, though no identifier of this file


def test_kos_evidence_and_rt_references_resolve(tmp_path: Path) -> None:
    image = ct_dataset()
    kos = ct_dataset(KOS_STORAGE, pixels=False)
    kos.SOPInstanceUID = site_uid(1, 8, 1)
    ref = Dataset()
    ref.ReferencedSOPClassUID = image.SOPClassUID
    ref.ReferencedSOPInstanceUID = image.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = image.SeriesInstanceUID
    series.ReferencedSOPSequence = Sequence([ref])
    study = Dataset()
    study.StudyInstanceUID = image.StudyInstanceUID
    study.ReferencedSeriesSequence = Sequence([series])
    kos.CurrentRequestedProcedureEvidenceSequence = Sequence([study])
    content = Dataset()
    content.RelationshipType = "CONTAINS"
    content.ValueType = "IMAGE"
    content.ReferencedSOPSequence = Sequence([ref])
    kos.ContentSequence = Sequence([content])
    plan_ref = Dataset()
    plan_ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.5"
    plan_ref.ReferencedSOPInstanceUID = site_uid(1, 6, 1)
    kos.ReferencedRTPlanSequence = Sequence([plan_ref])
    files = [write(image, tmp_path / "src" / "ct.dcm"), write(kos, tmp_path / "src" / "kos.dcm")]
    new_image, new_kos = deidentify_all(files, tmp_path / "out")
    evidence = new_kos.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == new_image.StudyInstanceUID
    assert evidence.ReferencedSeriesSequence[0].SeriesInstanceUID == new_image.SeriesInstanceUID
    assert evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == new_image.SOPInstanceUID
    assert new_kos.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == new_image.SOPInstanceUID
    plan_uid = new_kos.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID
    assert plan_uid.startswith("2.25.") and plan_uid != site_uid(1, 6, 1)


def test_the_same_uid_maps_the_same_in_every_file_and_run(submission: SynthSummary, tmp_path: Path) -> None:
    files = dicom_files(submission)
    first = deidentify_all(files, tmp_path / "a")
    second = deidentify_all(files, tmp_path / "b")
    assert [str(d.SOPInstanceUID) for d in first] == [str(d.SOPInstanceUID) for d in second]
    studies = {str(d.StudyInstanceUID) for d in first}
    assert len(studies) == 2  # baseline and follow-up, each one study across SC, CT, MR, RTSTRUCT
    with_other_secret = Deidentifier(resolve(), SECRET + b"x")
    with_other_secret.deidentify_file(files[0], tmp_path / "c.dcm", patient())
    assert dcmread(tmp_path / "c.dcm").SOPInstanceUID != first[0].SOPInstanceUID
