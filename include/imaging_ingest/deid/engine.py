"""Header de-identification of DICOM files, decided per tag on raw elements.

Converting an element's bytes into Python values is what costs time in pydicom, not
copying pixel bytes (measured in ``bench/deid``: ``bench/results/deid.json``). So the engine:

1. reads the header only (``stop_before_pixels``); elements stay raw;
2. decides each element's fate from its tag alone: deletes without converting, keeps
   without converting, rewrites UIDs and dates on their ASCII bytes, and converts only
   the few values it must read as text (descriptions to scrub, sequences to walk);
3. writes the new header with ``writer.encode_file_header`` (raw elements go out as the
   bytes they came in as), then copies the Pixel Data element as raw bytes, hashing
   everything on the way out.

Files whose pixel data cannot be copied raw (deflated transfer syntax, big endian, a data
set encoded differently from what its transfer syntax says) take the slower full read and
pydicom write through the same data set logic.
"""

from __future__ import annotations

import functools
import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian

from imaging_ingest.config import DeidOption
from imaging_ingest.core.checksum import Digests, HashingWriter, copy_range
from imaging_ingest.core.dicom_read import encoding_transfer_syntax, read_dataset
from imaging_ingest.core.raw_dataset import file_dataset
from imaging_ingest.core.raw_elements import RawFile
from imaging_ingest.deid.elements import (
    PATIENT_ID,
    PATIENT_NAME,
    SOP_CLASS_UID,
    SOP_INSTANCE_UID,
    UNDEFINED_LENGTH,
    LazyIdentifiers,
    ascii_values,
    element_map,
    first_value,
    raw_element,
    vr_of,
)
from imaging_ingest.deid.profile import Action, ResolvedProfile, describe_tag
from imaging_ingest.deid.results import (
    CATALOG_ATTRIBUTES,
    DeidError,
    DeidOutput,
    DeidStats,
    PatientContext,
    catalog_attributes,
)
from imaging_ingest.deid.review import TextPolicy, TextReview
from imaging_ingest.deid.values import CleanedValues, FileRun, ValueActions
from imaging_ingest.deid.writer import encode_dataset, encode_file_header, pixel_element_end

__all__ = [
    "CATALOG_ATTRIBUTES",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "DeidError",
    "DeidOutput",
    "DeidStats",
    "Deidentifier",
    "PatientContext",
]

#: Our implementation's UID: 2.25 + the first 128 bits of SHA-256("imaging-ingest").
IMPLEMENTATION_CLASS_UID = UID("2.25.231032682590870297395370879454935802084")
IMPLEMENTATION_VERSION_NAME = "IMGINGEST_0_1"
MAX_SEQUENCE_DEPTH = 32
MAX_VALUE_BYTES = 16 * 1024 * 1024

#: CID 7050 "De-identification Method": one code per option applied.
METHOD_CODES: dict[DeidOption | None, tuple[str, str]] = {
    None: ("113100", "Basic Application Confidentiality Profile"),
    DeidOption.CLEAN_GRAPHICS: ("113103", "Clean Graphics Option"),
    DeidOption.CLEAN_STRUCTURED_CONTENT: ("113104", "Clean Structured Content Option"),
    DeidOption.CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
    DeidOption.RETAIN_LONGITUDINAL_FULL_DATES: (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    DeidOption.RETAIN_PATIENT_CHARACTERISTICS: ("113108", "Retain Patient Characteristics Option"),
    DeidOption.RETAIN_DEVICE_IDENTITY: ("113109", "Retain Device Identity Option"),
    DeidOption.RETAIN_UIDS: ("113110", "Retain UIDs Option"),
    DeidOption.RETAIN_SAFE_PRIVATE: ("113111", "Retain Safe Private Option"),
    DeidOption.RETAIN_INSTITUTION_IDENTITY: ("113112", "Retain Institution Identity Option"),
}


class Deidentifier(ValueActions):
    """Applies one resolved profile with one secret; reusable across files (one per process).

    Args:
        profile: the per-tag decisions for the collection's options and overrides.
        secret: the pseudonymisation key (UIDs, hashes).
    """

    def __init__(
        self,
        profile: ResolvedProfile,
        secret: bytes,
        keep_uids: frozenset[str] = frozenset(),
        review: TextPolicy | None = None,
        *,
        md5: bool = True,
    ) -> None:
        """``md5=False``: outputs get no MD5 (``DeidOutput.md5`` None), for a caller that publishes none."""
        self.profile = profile
        self._md5 = md5
        self.secret = secret
        #: Published UIDs an analysis result references: already de-identified, never remapped again.
        self.keep_uids = keep_uids
        self._review = TextReview(review, secret) if review is not None else None
        options = set(profile.options)
        self._retain_uids = DeidOption.RETAIN_UIDS in options
        self._retain_private = DeidOption.RETAIN_SAFE_PRIVATE in options
        self._shift_dates = DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES in options
        self._full_dates = DeidOption.RETAIN_LONGITUDINAL_FULL_DATES in options
        self._literal_keep = frozenset(t for t in profile.overridden if profile.actions.get(t) is Action.KEEP)
        # Private copies: decisions for unlisted tags are added as they are first met.
        self._nested: dict[tuple[int, ...], dict[int, Action]] = {}  # per path of sequence tags
        self._top: dict[str | None, dict[int, Action]] = {}
        self._cleaned = CleanedValues()  # free text cleaned before, for this engine's next files
        self._method_codes = [METHOD_CODES[None]] + [
            METHOD_CODES[o] for o in profile.options if o in METHOD_CODES
        ]
        if self._full_dates:
            self._temporal = "UNMODIFIED"
        elif self._shift_dates:
            self._temporal = "MODIFIED"
        else:
            self._temporal = "REMOVED"

    # -- datasets -------------------------------------------------------------------------

    def deidentify_dataset(self, ds: Dataset, patient: PatientContext) -> DeidStats:
        """De-identify a dataset in place (file meta excluded) and record what was done."""
        stats = DeidStats()
        run = FileRun(patient.date_offset_days, LazyIdentifiers(ds, patient.identifiers))
        self._clean(ds, run, stats, 0, self._top_actions(ds))
        self._record(ds, patient.pseudonym)
        return stats

    def _top_actions(self, ds: Dataset) -> dict[int, Action]:
        elem = element_map(ds).get(SOP_CLASS_UID)
        sop_class = next(iter(ascii_values(elem)), None) if elem is not None else None
        actions = self._top.get(sop_class)
        if actions is None:
            actions = dict(self.profile.actions_for_sop_class(sop_class))
            self._top[sop_class] = actions
        return actions

    def _clean(
        self, ds: Dataset, run: FileRun, stats: DeidStats, depth: int, actions: dict[int, Action]
    ) -> None:
        if depth > MAX_SEQUENCE_DEPTH:
            raise DeidError(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels")
        elements = element_map(ds)  # decisions are made on the raw map: Dataset access would convert values
        private: list[int] = []
        for tag, elem in list(elements.items()):
            key = int(tag)  # int keys: a BaseTag compares through a Python-level __eq__
            if type(elem) is RawDataElement:
                length = elem.length
                if length != UNDEFINED_LENGTH and length > MAX_VALUE_BYTES:
                    raise DeidError(f"element {describe_tag(tag)} is {length} bytes, over the limit")
            if (tag >> 16) & 1:
                private.append(tag)
                continue
            action = actions.get(key)
            if action is None:
                action = actions[key] = self.profile.unlisted_action(key)
            if action is Action.REMOVE:
                del elements[tag]
                stats.removed += 1
            elif action is Action.KEEP:
                if key in self._literal_keep:
                    continue
                vr = vr_of(tag, elem)
                if vr == "UI":
                    if not self._retain_uids:
                        self._remap(ds, tag, elem, stats)
                elif vr == "SQ":
                    self._sequence(ds, tag, run, stats, depth)
            else:
                self._apply(ds, tag, elem, action, run, stats, depth)
        if private:
            self._private(ds, private, run, stats, depth)

    def _sequence(self, ds: Dataset, tag: int, run: FileRun, stats: DeidStats, depth: int) -> None:
        try:
            elem = ds[tag]  # parses the items; their elements stay raw
        except (ValueError, TypeError, struct.error, EOFError, KeyError, NotImplementedError) as exc:
            raise DeidError(f"unreadable sequence {describe_tag(tag)} ({type(exc).__name__})") from None
        if elem.VR != "SQ":  # bytes that do not parse as items cannot be inspected: they go
            del element_map(ds)[tag]
            stats.removed += 1
            return
        run.path.append(int(tag))
        key = tuple(run.path)
        actions = self._nested.get(key)
        if actions is None:  # combined codes follow the attribute's Type at this path
            actions = self._nested[key] = self.profile.nested_actions(key)
        try:
            for item in elem.value or ():
                self._clean(item, run, stats, depth + 1, actions)
        finally:
            run.path.pop()

    def _private(self, ds: Dataset, tags: list[int], run: FileRun, stats: DeidStats, depth: int) -> None:
        """Remove private attributes, except the safe ones of a known private creator (Retain Safe Private)."""
        elements = element_map(ds)
        if not self._retain_private:
            for tag in tags:
                del elements[tag]
            stats.private_removed += len(tags)
            return
        creators: list[int] = []
        kept_blocks: set[int] = set()
        names: dict[int, str] = {}
        for tag in tags:
            group, element = tag >> 16, tag & 0xFFFF
            if 0x10 <= element <= 0xFF:
                creators.append(tag)  # decided once its block is known
                continue
            creator_tag = (group << 16) | (element >> 8)
            if element >= 0x1000 and creator_tag in elements:
                if creator_tag not in names:
                    values = ascii_values(elements[creator_tag])
                    names[creator_tag] = values[0] if values else ""
                key = (names[creator_tag], group, element & 0xFF)
                if key in self.profile.safe_private:
                    kept_blocks.add(creator_tag)
                    stats.private_kept += 1
                    elem = elements[tag]
                    vr = (
                        elem.VR
                        if elem.VR and elem.VR != "UN"
                        else self.profile.safe_private_vr.get(key, "UN")
                    )
                    if vr == "SQ":
                        self._sequence(ds, tag, run, stats, depth)
                    elif vr == "UI" and not self._retain_uids:
                        self._remap(ds, tag, elem, stats)
                    continue
            del elements[tag]
            stats.private_removed += 1
        for creator in creators:
            if creator not in kept_blocks:
                del elements[creator]
                stats.private_removed += 1

    def _record(self, ds: Dataset, pseudonym: str) -> None:
        """The pseudonym, then PatientIdentityRemoved, DeidentificationMethod(CodeSequence), ...: PS3.15 E.1.1.

        The values are the same for every file of a run, so they are encoded once (as raw
        elements, which the writer copies) in the encoding of the data set at hand.
        """
        implicit = ds.original_encoding[0] is True
        elements = element_map(ds)
        for tag, _vr, value in self._recording(implicit):
            elements[BaseTag(tag)] = value
        for tag, vr in ((PATIENT_ID, "LO"), (PATIENT_NAME, "PN")):
            if pseudonym.isascii():
                elements[BaseTag(tag)] = raw_element(tag, vr, pseudonym.encode("ascii"), implicit)
            else:
                ds[tag] = DataElement(tag, vr, pseudonym)

    @functools.cache  # noqa: B019 - one Deidentifier per process, two encodings
    def _recording(self, implicit: bool) -> tuple[tuple[int, str, RawDataElement], ...]:
        codes = Dataset()
        items = []
        for value, meaning in self._method_codes:
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            items.append(item)
        codes.DeidentificationMethodCodeSequence = Sequence(items)
        sequence = b"".join(encode_dataset(codes, implicit))[8 if implicit else 12 :]
        method = "\\".join(["imaging-ingest " + IMPLEMENTATION_VERSION_NAME, "PS3.15 E.1-1 Basic Profile"])
        return (
            (0x00120062, "CS", raw_element(0x00120062, "CS", b"YES", implicit)),
            (0x00120063, "LO", raw_element(0x00120063, "LO", method.encode("ascii"), implicit)),
            (0x00120064, "SQ", raw_element(0x00120064, "SQ", sequence, implicit)),
            (0x00280303, "CS", raw_element(0x00280303, "CS", self._temporal.encode("ascii"), implicit)),
        )

    # -- files ----------------------------------------------------------------------------

    def deidentify_file(self, src: str | Path, dst: str | Path, patient: PatientContext) -> DeidOutput:
        """De-identify one file to ``dst`` (written atomically) and return its new identity and hashes.

        The source is streamed: its pixel data goes to ``dst`` in chunks, whatever its size.

        Raises:
            DeidError: the file cannot be de-identified safely; the reason names no PHI.
        """
        with open(src, "rb") as fp:
            output, _ = self._deidentify_stream(fp, os.fstat(fp.fileno()).st_size, Path(dst), patient)
        return output

    def deidentify_data(
        self, data: bytes, dst: str | Path, patient: PatientContext, raw: RawFile | None = None
    ) -> tuple[DeidOutput, bytes]:
        """``deidentify_file`` for a source already in memory; also returns the bytes written to ``dst``.

        For a caller that reads each file once and hands the same bytes to the next check
        (``pipeline.onepass``: the leak scan); the output is the same, byte for byte. ``raw``:
        the caller's parse of ``data`` (``core.raw_elements.read``); the header is then built
        from it (``core.raw_dataset``) rather than read again by pydicom.
        """
        return self._deidentify_stream(io.BytesIO(data), len(data), Path(dst), patient, data, raw)

    def _deidentify_stream(
        self,
        fp: BinaryIO,
        file_size: int,
        dst: Path,
        patient: PatientContext,
        data: bytes | None = None,
        raw: RawFile | None = None,
    ) -> tuple[DeidOutput, bytes]:
        """The engine on a binary stream; ``data``: the stream's bytes when it is in memory (see ``_write``)."""
        if self._review is not None:
            self._review.begin()
        built = file_dataset(data, raw) if data is not None and raw is not None else None
        if built is not None and raw is not None:
            ds: Dataset = built
            fp.seek(raw.header_end)  # where pydicom's reading stops: the pixel data
        else:
            ds = _read_header(fp)
        pixel_start = fp.tell()
        meta = ds.file_meta if ds.file_meta is not None else FileMetaDataset()
        transfer_syntax = meta.get("TransferSyntaxUID")
        implicit, little = ds.original_encoding
        raw_copy = (
            transfer_syntax is not None
            and transfer_syntax not in (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian)
            and little is True
            and bool(implicit) == UID(transfer_syntax).is_implicit_VR
        )
        if not raw_copy:
            fp.seek(0)
            try:
                ds = read_dataset(fp, stop_before_pixels=False)
            except (InvalidDicomError, EOFError, struct.error, ValueError, TypeError, KeyError) as exc:
                raise DeidError(f"unreadable DICOM file ({type(exc).__name__})") from None
        stats = self._deidentify_loaded(ds, patient)
        texts = self._review.take() if self._review is not None else ()  # may hold the file back
        pixel_end = pixel_start
        try:
            if raw_copy:
                header = encode_file_header(ds, ds.file_meta, bool(implicit))
                if pixel_start < file_size:
                    pixel_end = pixel_element_end(fp, pixel_start, file_size, bool(implicit), True)
            else:
                buffer = io.BytesIO()
                ds.save_as(buffer, enforce_file_format=True)
                header = buffer.getvalue()
        except ValueError as exc:
            raise DeidError(f"cannot write the de-identified file: {str(exc).split(':')[0]}") from None
        kept = _write(dst, header, fp, pixel_start, pixel_end, data, md5=self._md5)
        output = DeidOutput(
            study_uid=first_value(ds, 0x0020000D),
            series_uid=first_value(ds, 0x0020000E),
            sop_uid=first_value(ds, SOP_INSTANCE_UID),
            sop_class_uid=first_value(ds, SOP_CLASS_UID),
            size=kept.digests.size,
            sha256=kept.digests.sha256,
            md5=kept.digests.md5 if kept.digests.has_md5 else None,
            stats=stats,
            attributes=catalog_attributes(ds),
            texts=texts,
        )
        return output, kept.data

    def _deidentify_loaded(self, ds: Dataset, patient: PatientContext) -> DeidStats:
        sop_uid = element_map(ds).get(SOP_INSTANCE_UID)
        if sop_uid is None or not any(ascii_values(sop_uid)):
            raise DeidError("no SOPInstanceUID")
        old_meta = ds.file_meta if ds.file_meta is not None else FileMetaDataset()
        transfer_syntax = encoding_transfer_syntax(ds)
        stats = self.deidentify_dataset(ds, patient)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.get("SOPClassUID") or old_meta.get("MediaStorageSOPClassUID")
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = (
            old_meta.get("TransferSyntaxUID") or transfer_syntax
        )  # a file without meta: as read
        meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
        ds.file_meta = meta
        ds.preamble = b"\x00" * 128  # a preamble can hold a whole TIFF (and its PHI): never copied
        return stats


def _read_header(fp: BinaryIO) -> Dataset:
    """The header as pydicom reads it, up to the pixel data (files without file meta too)."""
    try:
        return read_dataset(fp, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, struct.error, ValueError, TypeError, KeyError, OverflowError) as exc:
        raise DeidError(f"unreadable DICOM header ({type(exc).__name__})") from None


@dataclass(frozen=True)
class _Written:
    digests: Digests
    data: bytes  # what was written, when the caller asked to keep it (else empty)


def _write(
    dst: Path, header: bytes, fp: BinaryIO, pixel_start: int, pixel_end: int, data: bytes | None, *, md5: bool
) -> _Written:
    """Write the new header and the source's pixel data element behind it (atomically), hashing on the way.

    ``data``: the source's bytes when they are in memory; its pixel bytes are then written from a
    view of them (no copy), and the whole output is returned too.
    """
    tmp = dst.with_name(f".{dst.name}.partial")
    dst.parent.mkdir(parents=True, exist_ok=True)
    pixels: bytes | memoryview = b""
    with open(tmp, "wb") as out:
        writer = HashingWriter(out, md5=md5)
        writer.write(header)
        if pixel_end > pixel_start:
            if data is not None:
                pixels = memoryview(data)[pixel_start:pixel_end]
                writer.write(pixels)
            else:
                fp.seek(pixel_start)
                copy_range(fp, writer, pixel_end - pixel_start)
    os.replace(tmp, dst)
    return _Written(writer.digests, b"".join((header, pixels)) if data is not None else b"")
