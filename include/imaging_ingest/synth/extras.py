"""Synthetic PHI beyond headers: a slide with label and macro, a DICOM WSI with a label, an ultrasound
frame with a burned-in name and date, and a clinical XLSX.

``generate_submission(..., extras=True)`` adds these to the first patient's baseline
study (the DICOM ones) and folder (the slide), and one XLSX for every patient:

- ``<patient folder>/pathology/<accession> <FAMILY>.svs``: an Aperio-style tiled pyramid
  (tifffile, deflate tiles) whose ImageDescription carries ``Filename``, ``Date``,
  ``Time``, ``User``, ``Barcode`` and ``ScanScope ID``, with ``DateTime``, ``Artist`` and
  ``HostComputer`` tags, a thumbnail, and stripped **label** (name, MRN, accession) and
  **macro** pages, as OpenSlide expects them;
- ``<study>/006_SM_SLIDE/{1,2}.dcm``: a VL Whole Slide Microscopy VOLUME instance (four
  tiles) and a LABEL instance whose pixels show the name and accession;
- ``<study>/005_US_ABDOMEN/1.dcm``: an RGB ultrasound frame from "ACME Ultrasound
  SonoView 5" (480x640) with the name, MRN and study date drawn in a top band, and
  ``BurnedInAnnotation`` absent, as many devices leave it;
- ``clinical_followup.xlsx``: MRN, visit date, ECOG score and free-text notes.

Everything is deterministic (no current time, fixed compression), so files are diffable.
:func:`write_svs` also makes the benchmark's 1 GB slide, tile by tile in constant memory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from imaging_ingest.synth.documents import load_font
from imaging_ingest.synth.headers import (
    add_common,
    add_series,
    coded_entry,
    new_dataset,
    synthetic_uid,
    write_instance,
)
from imaging_ingest.synth.images import study_folder
from imaging_ingest.synth.people import Patient, Study, dicom_date, dicom_time

__all__ = ["SlideText", "write_extras", "write_svs"]

US_ROWS, US_COLUMNS = 480, 640
US_MANUFACTURER, US_MODEL = "ACME Ultrasound", "SonoView 5"
#: The band the synthetic ultrasound device draws patient data into (x, y, width, height).
US_TEXT_BAND = (0, 0, 640, 48)
_US_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.6.1"
_WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"


class SlideText:
    """The identifying strings a synthetic slide carries (in its metadata and its label)."""

    def __init__(
        self,
        filename: str,
        date: str,
        time: str,
        user: str,
        barcode: str,
        scanner: str,
        label_lines: Sequence[str],
        artist: str = "",
        host: str = "",
        datetime_tag: str = "",
    ) -> None:
        self.filename, self.date, self.time, self.user = filename, date, time, user
        self.barcode, self.scanner, self.label_lines = barcode, scanner, list(label_lines)
        self.artist, self.host, self.datetime_tag = artist, host, datetime_tag

    def description(self, width: int, height: int, tile: int) -> str:
        return (
            f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,100 {width}x{height}] ({tile}x{tile}) JPEG/RGB Q=70"
            f"|AppMag = 20|StripeWidth = 2040|ScanScope ID = {self.scanner}|Filename = {self.filename}"
            f"|Date = {self.date}|Time = {self.time}|User = {self.user}|MPP = 0.4990|Left = 25.1|Top = 18.2"
            f"|Barcode = {self.barcode}"
        )


def _tissue(x0: int, y0: int, width: int, height: int, scale: int, seed: int) -> np.ndarray:
    """Pink-and-purple 'tissue' with noise, a function of position, so the levels roughly agree."""
    ys, xs = np.mgrid[0:height, 0:width]
    gx, gy = (xs + x0) * scale, (ys + y0) * scale
    blobs = (np.sin(gx / 97.0) * np.cos(gy / 83.0) + np.sin((gx + gy) / 211.0)) > 0.6
    rng = np.random.default_rng((seed, x0, y0, scale))
    noise = rng.integers(0, 24, (height, width, 3), dtype=np.uint8)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[...] = (236, 200, 222)
    image[blobs] = (150, 80, 160)
    return image - noise


def _tiles(width: int, height: int, tile: int, scale: int, seed: int, noisy: bool) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    for ty in range(0, height, tile):
        for tx in range(0, width, tile):
            if noisy:  # incompressible content: the benchmark wants bytes, not pictures
                yield rng.integers(0, 256, (tile, tile, 3), dtype=np.uint8)
            else:
                yield _tissue(tx, ty, tile, tile, scale, seed)


def _label_image(lines: Sequence[str], size: tuple[int, int]) -> np.ndarray:
    image = Image.new("RGB", size, (245, 245, 240))
    draw = ImageDraw.Draw(image)
    font = load_font(22)
    for i, line in enumerate(lines):
        draw.text((12, 12 + i * 32), line, fill=(10, 10, 10), font=font)
    for i in range(40):  # a barcode-like stripe pattern
        if (i * 7) % 3:
            draw.rectangle((12 + i * 6, size[1] - 60, 15 + i * 6, size[1] - 12), fill=(0, 0, 0))
    return np.asarray(image)


def write_svs(
    path: Path,
    width: int,
    height: int,
    text: SlideText,
    *,
    tile: int = 256,
    seed: int = 0,
    compression: str | None = "zlib",
    noisy: bool = False,
) -> Path:
    """An Aperio-style SVS: tiled levels (1, 1/4, 1/16 ...), a thumbnail, a label and a macro page.

    Tiles are generated one at a time, so a slide of any size is written in constant memory.
    """
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {"photometric": "rgb", "metadata": None, "compression": compression}
    extratags = [(315, "s", 0, text.artist, True), (316, "s", 0, text.host, True)] if text.artist else []
    with tifffile.TiffWriter(path, bigtiff=width * height * 3 > 3_800_000_000) as tw:
        tw.write(
            _tiles(width, height, tile, 1, seed, noisy),
            shape=(height, width, 3),
            dtype=np.uint8,
            tile=(tile, tile),
            description=text.description(width, height, tile),
            software="Aperio Image Library v12.0.15",
            datetime=text.datetime_tag or None,
            extratags=extratags,
            **options,
        )
        thumb_w = max(64, width // max(1, max(width, height) // 768))
        thumb_h = max(64, height * thumb_w // width)
        thumbnail = _tissue(0, 0, thumb_w, thumb_h, width // thumb_w, seed)
        tw.write(
            thumbnail,
            description=f"Aperio Image Library v12.0.15 \r\n{width}x{height} -> {thumb_w}x{thumb_h} - "
            "|AppMag = 20|MPP = 0.4990",
            rowsperstrip=16,
            software="Aperio Image Library v12.0.15",
            **options,
        )
        level_w, level_h, factor = width // 4, height // 4, 4
        while min(level_w, level_h) >= tile:
            tw.write(
                _tiles(level_w, level_h, tile, factor, seed, noisy),
                shape=(level_h, level_w, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                subfiletype=0,
                software="Aperio Image Library v12.0.15",
                description=f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,100 {width}x{height}] "
                f"({tile}x{tile}) -> {level_w}x{level_h} JPEG/RGB Q=70|AppMag = 20|MPP = 0.4990",
                **options,
            )
            level_w, level_h, factor = level_w // 4, level_h // 4, factor * 4
        label = _label_image(text.label_lines, (420, 400))
        tw.write(
            label,
            description=f"Aperio Image Library v12.0.15\nlabel {label.shape[1]}x{label.shape[0]}",
            subfiletype=1,
            rowsperstrip=64,
            software="Aperio Image Library v12.0.15",
            **options,
        )
        macro = np.full((400, 1200, 3), 200, dtype=np.uint8)
        macro[:, :420] = label
        macro[60:340, 500:1150] = (200, 140, 190)
        tw.write(
            macro,
            description=f"Aperio Image Library v12.0.15\nmacro {macro.shape[1]}x{macro.shape[0]}",
            subfiletype=9,
            rowsperstrip=64,
            software="Aperio Image Library v12.0.15",
            **options,
        )
    return path


# -- DICOM objects --------------------------------------------------------------------------


def _ultrasound(root: Path, patient: Patient, study: Study, seed: int) -> Path:
    from pydicom.sequence import Sequence as DicomSequence

    taken = study.start + dt.timedelta(minutes=40)
    ds = new_dataset(_US_SOP_CLASS, synthetic_uid(seed, patient.index, study.index, "US", 0), taken)
    add_common(ds, patient, study, seed)
    add_series(
        ds,
        "US",
        synthetic_uid(seed, patient.index, study.index, "US", "series"),
        5,
        taken,
        f"US abdomen {patient.person.text}",
        patient,
    )
    ds.Manufacturer, ds.ManufacturerModelName = US_MANUFACTURER, US_MODEL
    ds.InstitutionName = patient.institution[0]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = dicom_date(taken), dicom_time(taken)
    ds.AcquisitionDateTime = dicom_date(taken) + dicom_time(taken)
    ds.PatientOrientation = ""
    ds.Laterality = ""
    ds.AnatomicRegionSequence = DicomSequence([coded_entry("T-D4000", "SRT", "Abdomen")])
    rng = np.random.default_rng(seed + 5)
    grey = rng.normal(45, 18, (US_ROWS, US_COLUMNS)).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:US_ROWS, 0:US_COLUMNS]
    grey[((xx - 320) ** 2 / 180**2 + (yy - 300) ** 2 / 120**2) < 1] += 60
    image = Image.fromarray(grey).convert("RGB")
    draw = ImageDraw.Draw(image)
    x, y, w, h = US_TEXT_BAND
    draw.rectangle((x, y, x + w - 1, y + h - 1), fill=(0, 0, 0))
    font = load_font(18)
    draw.text((8, 3), f"{patient.person.text}  {patient.mrn}", fill=(255, 255, 255), font=font)
    draw.text((8, 25), f"{taken:%Y-%m-%d %H:%M}  {US_MANUFACTURER}", fill=(255, 255, 255), font=font)
    draw.text((520, 450), "TIS 0.4  MI 1.1", fill=(200, 200, 200), font=font)
    pixels = np.asarray(image)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows, ds.Columns = US_ROWS, US_COLUMNS
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.add_new(0x7FE00010, "OB", pixels.tobytes())
    return write_instance(ds, root, study_folder(patient, study) / "005_US_ABDOMEN" / "1.dcm")


def _wsi_instance(
    patient: Patient, study: Study, seed: int, index: int, kind: str, pixels: np.ndarray, tile: int
) -> Any:
    from pydicom.sequence import Sequence as DicomSequence

    scanned = study.start + dt.timedelta(days=2)
    ds = new_dataset(_WSI_SOP_CLASS, synthetic_uid(seed, patient.index, study.index, "SM", index), scanned)
    add_common(ds, patient, study, seed)
    add_series(
        ds,
        "SM",
        synthetic_uid(seed, patient.index, study.index, "SM", "series"),
        6,
        scanned,
        f"Slide {study.accession}",
        patient,
    )
    ds.Manufacturer, ds.ManufacturerModelName = "ACME Pathology", "SlideScan 2"
    ds.DeviceSerialNumber = f"SS{study.accession[-6:]}"
    ds.SoftwareVersions = "SYN 1.0"
    ds.ImageType = ["ORIGINAL", "PRIMARY", kind, "NONE"]
    ds.InstanceNumber = index + 1
    ds.ContentDate, ds.ContentTime = dicom_date(scanned), dicom_time(scanned)
    ds.AcquisitionDateTime = dicom_date(scanned) + dicom_time(scanned)
    ds.FrameOfReferenceUID = synthetic_uid(seed, patient.index, study.index, "SM", "frame")
    ds.PositionReferenceIndicator = "SLIDE_CORNER"
    ds.VolumetricProperties, ds.SpecimenLabelInImage = "VOLUME", "YES" if kind == "LABEL" else "NO"
    ds.BurnedInAnnotation = "YES" if kind == "LABEL" else "NO"
    ds.ContainerIdentifier = study.accession
    ds.IssuerOfTheContainerIdentifierSequence = DicomSequence()
    ds.ContainerTypeCodeSequence = DicomSequence([coded_entry("433466003", "SCT", "Microscope slide")])
    specimen = DicomSequence()
    item = specimen_item = type(ds)()
    item.SpecimenIdentifier = f"{study.accession}-A1"
    item.SpecimenUID = synthetic_uid(seed, patient.index, study.index, "SM", "specimen")
    item.IssuerOfTheSpecimenIdentifierSequence = DicomSequence()
    item.SpecimenPreparationSequence = DicomSequence()
    specimen.append(specimen_item)
    ds.SpecimenDescriptionSequence = specimen
    ds.BarcodeValue = study.accession
    rows, columns = pixels.shape[:2]
    ds.ImagedVolumeWidth, ds.ImagedVolumeHeight, ds.ImagedVolumeDepth = columns * 0.0005, rows * 0.0005, 0.001
    ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows, ds.TotalPixelMatrixFocalPlanes = columns, rows, 1
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.NumberOfOpticalPaths = 1
    path_item = type(ds)()
    path_item.OpticalPathIdentifier = "1"
    path_item.IlluminationColorCodeSequence = DicomSequence(
        [coded_entry("414298005", "SCT", "Full Spectrum")]
    )
    path_item.IlluminationTypeCodeSequence = DicomSequence(
        [coded_entry("111744", "DCM", "Brightfield illumination")]
    )
    ds.OpticalPathSequence = DicomSequence([path_item])
    ds.ExtendedDepthOfField, ds.FocusMethod = "NO", "AUTO"
    ds.AcquisitionContextSequence = DicomSequence()
    tiles = [
        pixels[y : y + tile, x : x + tile] for y in range(0, rows, tile) for x in range(0, columns, tile)
    ]
    ds.NumberOfFrames = len(tiles)
    ds.Rows, ds.Columns = tile, tile
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.add_new(0x7FE00010, "OB", b"".join(t.tobytes() for t in tiles))
    return ds


def _dicom_wsi(root: Path, patient: Patient, study: Study, seed: int) -> list[Path]:

    volume = _tissue(0, 0, 512, 512, 1, seed)
    label = _label_image([patient.person.text, patient.mrn, study.accession], (256, 256))
    folder = study_folder(patient, study) / "006_SM_SLIDE"
    return [
        write_instance(_wsi_instance(patient, study, seed, 0, "VOLUME", volume, 256), root, folder / "1.dcm"),
        write_instance(_wsi_instance(patient, study, seed, 1, "LABEL", label, 256), root, folder / "2.dcm"),
    ]


def _svs(root: Path, patient: Patient, study: Study, seed: int) -> Path:
    scanned = study.start + dt.timedelta(days=2, hours=1)
    text = SlideText(
        filename=f"{study.accession} {patient.person.family}",
        date=scanned.strftime("%m/%d/%y"),
        time=scanned.strftime("%H:%M:%S"),
        user=patient.operator.family.lower(),
        barcode=study.accession,
        scanner=f"SS{study.accession[-5:]}",
        label_lines=[patient.person.text, patient.mrn, study.accession],
        artist=patient.operator.text,
        host=f"{patient.institution[2]}PATH01",
        datetime_tag=scanned.strftime("%Y:%m:%d %H:%M:%S"),
    )
    relative = Path(patient.folder) / "pathology" / f"{study.accession} {patient.person.family}.svs"
    write_svs(root / relative, 1536, 1024, text, seed=seed + patient.index)
    return relative


def _write_xlsx(root: Path, patients: Sequence[Patient]) -> Path:
    """A follow-up sheet as a site's coordinator keeps it (the author in the properties, too)."""
    from openpyxl import Workbook

    from imaging_ingest.screen.clinical import xlsx_bytes

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "followup"
    sheet.append(["mrn", "visit_date", "ecog", "coordinator", "notes"])
    for patient in patients:
        visit = patient.studies[-1].start.date() + dt.timedelta(days=7)
        sheet.append(
            [
                patient.mrn,
                visit.isoformat(),
                str(patient.index % 3),
                patient.performing.text,
                f"Seen {visit:%m/%d/%Y}; {patient.person.given} {patient.person.family} stable, call {patient.phone}",
            ]
        )
    workbook.properties.creator = patients[0].performing.text
    relative = Path("clinical_followup.xlsx")
    (root / relative).write_bytes(xlsx_bytes(workbook, dt.datetime(2024, 1, 2, 3, 4, 5)))
    return relative


def write_extras(root: Path, patients: Sequence[Patient], seed: int) -> list[Path]:
    """The extra files for a submission (relative paths): US, DICOM WSI and SVS for the first patient, one XLSX."""
    first = patients[0]
    baseline = first.studies[0]
    files = [_ultrasound(root, first, baseline, seed)]
    files += _dicom_wsi(root, first, baseline, seed)
    files.append(_svs(root, first, baseline, seed))
    files.append(_write_xlsx(root, patients))
    return files
