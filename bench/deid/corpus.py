"""The benchmark corpus: synthetic CT and MR series with headers shaped like a scanner's.

``imaging_ingest.synth.generate`` writes valid CT and MR objects with planted PHI, but with lean
headers (about 80 elements). A scanner's header is larger: some 290 elements, about 170 of
them private (vendor acquisition and reconstruction parameters, a CSA-like binary blob),
which is where de-identification spends its time. ``shape_like_a_scanner`` adds such
vendor blocks (GE-like on CT, Siemens-like on MR, part of each on the Retain Safe Private
list) and the public acquisition attributes a real series carries, deterministically.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from imaging_ingest.synth.generate import generate_submission

__all__ = ["make_corpus", "shape_like_a_scanner"]

SLICES = 50  # per series; each patient has 2 studies x (CT + MR)


def _numbers(seed: str, n: int) -> Iterator[float]:
    digest = hashlib.sha256(seed.encode()).digest()
    for i in range(n):
        yield round(digest[i % 32] * 1.37 + i * 0.25, 3)


def _ge_blocks(ds: Dataset, key: str) -> None:
    values = list(_numbers(key, 64))
    acquisition = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
    for i in range(0x02, 0x30):
        acquisition.add_new(i, "DS", f"{values[i % 64]:.3f}")
    acquisition.add_new(0x30, "LO", "GENERIC RECON")
    acquisition.add_new(0x31, "SH", "AX-HELICAL")
    relations = ds.private_block(0x0021, "GEMS_RELA_01", create=True)
    for i in range(0x03, 0x18):
        relations.add_new(i, "SS", int(values[i]) % 300)
    series = ds.private_block(0x0025, "GEMS_SERS_01", create=True)
    for i in range(0x06, 0x12):
        series.add_new(i, "SL", int(values[i] * 3))
    parameters = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
    for i in range(0x10, 0x48):
        parameters.add_new(i, "DS" if i % 3 else "IS", f"{values[i % 64]:.2f}" if i % 3 else str(int(values[i % 64])))
    identification = ds.private_block(0x0009, "GEMS_IDEN_01", create=True)
    identification.add_new(0x01, "LO", "GE_GENESIS_FF")
    identification.add_new(0x02, "SH", "CT01")
    identification.add_new(0x04, "SH", "LightSpeed")
    identification.add_new(0x27, "SL", 1234567)
    ds.private_block(0x7FD1, "GEMS_SOFT_01", create=True).add_new(0x10, "OB", bytes(range(256)) * 24)


def _siemens_blocks(ds: Dataset, key: str) -> None:
    values = list(_numbers(key, 64))
    header = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    header.add_new(0x08, "CS", "IMAGE NUM 4")
    header.add_new(0x09, "LO", "1.0")
    header.add_new(0x0B, "DS", "40")
    header.add_new(0x0C, "IS", "0")
    header.add_new(0x0D, "CS", "NONE")
    header.add_new(0x0F, "SH", "Fast")
    header.add_new(0x11, "SH", "No")
    header.add_new(0x12, "SL", [0, 0, 1200])
    header.add_new(0x13, "SL", [0, 0, 1200])
    header.add_new(0x14, "IS", ["0", "0", "0"])
    header.add_new(0x15, "FD", [-112.5, -120.0, 30.0])
    header.add_new(0x17, "DS", "1")
    header.add_new(0x18, "IS", "2800")
    for i in range(0x20, 0x40):
        header.add_new(i, "DS", f"{values[i % 64]:.2f}")
    csa = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    csa.add_new(0x08, "CS", "IMAGE NUM 4")
    csa.add_new(0x09, "LO", "20221018")
    csa.add_new(0x10, "OB", b"SV10\x04\x03\x02\x01" + bytes(range(256)) * 40)  # a CSA image header
    csa.add_new(0x18, "CS", "MR")
    csa.add_new(0x19, "LO", "20221018")
    csa.add_new(0x20, "OB", b"SV10\x04\x03\x02\x01" + bytes(range(255, -1, -1)) * 48)  # a CSA series header
    medcom = ds.private_block(0x0029, "SIEMENS MEDCOM HEADER2", create=True)
    medcom.add_new(0x60, "LO", "com")
    for i in range(0x70, 0x80):
        medcom.add_new(i, "LO", f"syngo param {i}")
    extra = ds.private_block(0x0051, "SIEMENS MR HEADER", create=True)
    for i in range(0x08, 0x1A):
        extra.add_new(i, "LO" if i % 2 else "SH", f"p{i}:{values[i]:.1f}")
    vendor = ds.private_block(0x0021, "SIEMENS MR SDS 01", create=True)
    for i in range(0x01, 0x40):
        vendor.add_new(i, "DS", f"{values[i % 64]:.3f}")


def _public_extras(ds: Dataset, modality: str) -> None:
    ds.InstitutionalDepartmentName = "RADIOLOGY"
    ds.PerformedProcedureStepStartDate = ds.StudyDate
    ds.PerformedProcedureStepStartTime = ds.StudyTime
    ds.PerformedProcedureStepID = "PPS" + ds.StudyID[2:]
    ds.PerformedProcedureStepDescription = ds.ProtocolName
    ds.PatientSize = "1.72"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.AnatomicRegionSequence = Sequence([_code("T-D3000", "SRT", "Chest" if modality == "CT" else "Head")])
    ds.ReferencedPerformedProcedureStepSequence = Sequence([_ref("1.2.840.10008.3.1.2.3.3", ds.StudyInstanceUID + ".7")])
    ds.ReferencedStudySequence = Sequence([_ref("1.2.840.10008.3.1.2.3.1", ds.StudyInstanceUID)])
    if modality == "CT":
        ds.CTDIvol = 12.4
        ds.SpiralPitchFactor = 0.984
        ds.RevolutionTime = 0.5
        ds.SingleCollimationWidth = 0.625
        ds.TotalCollimationWidth = 40.0
        ds.TableSpeed = 81.25
        ds.TableFeedPerRotation = 39.37
        ds.FilterType = "BODY FILTER"
        ds.GeneratorPower = 24
        ds.FocalSpots = "0.7"
        ds.DistanceSourceToDetector = "949.075"
        ds.DistanceSourceToPatient = "541"
        ds.ExposureModulationType = "NONE"
        ds.DataCollectionCenterPatient = [0.0, -150.0, -60.0]
        ds.ReconstructionTargetCenterPatient = [0.0, -150.0, -60.0]
        ds.ReconstructionAlgorithm = "ITERATIVE"
    else:
        ds.NumberOfPhaseEncodingSteps = 256
        ds.PixelBandwidth = "130"
        ds.DeviceSerialNumber = ds.DeviceSerialNumber
        ds.SAR = "0.82"
        ds.dBdt = "0"
        ds.VariableFlipAngleFlag = "N"
        ds.ReceiveCoilName = "Head_32"
        ds.TransmitCoilName = "Body"
        ds.InversionTime = "0"
        ds.MRAcquisitionFrequencyEncodingSteps = 256


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _ref(sop_class: str, sop_instance: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_instance
    return item


def shape_like_a_scanner(path: Path, out: Path) -> None:
    """Rewrite one synthetic CT or MR file with a scanner-sized header."""
    ds = dcmread(path)
    modality = str(ds.Modality)
    _public_extras(ds, modality)
    key = str(ds.SeriesInstanceUID)
    if modality == "CT":
        _ge_blocks(ds, key)
    else:
        _siemens_blocks(ds, key)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)


def make_corpus(root: Path, files: int, rows: int, *, shaped: bool = True, seed: int = 2026) -> list[Path]:
    """``files`` CT and MR files (a multiple of 200) under ``root``; returns them in order."""
    patients = max(1, files // (4 * SLICES))
    scratch = root.with_name(root.name + ".synth")
    shutil.rmtree(scratch, ignore_errors=True)
    summary = generate_submission(scratch, patients=patients, seed=seed, ct_slices=SLICES, mr_slices=SLICES,
                                  rows=rows, columns=rows)
    written = []
    for relative in summary.files:
        if relative.suffix != ".dcm" or not any(f"_{m}_" in f"_{relative.parent.name}_" for m in ("CT", "MR")):
            continue
        target = root / relative
        if shaped:
            shape_like_a_scanner(scratch / relative, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(scratch / relative, target)
        written.append(target)
    shutil.rmtree(scratch, ignore_errors=True)
    return written
