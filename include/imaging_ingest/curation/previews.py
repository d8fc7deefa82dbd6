"""Curator previews of quarantined images, and decisions on a whole series.

What a curator needs to decide on a quarantined image, gathered from the restricted tiers:

- a **thumbnail**: the first frame of the de-identified output (staging tier; the original
  in the quarantine tier when there is no output), windowed (the file's VOI window, else
  the 0.5-99.5 percentiles), downsampled, with what screening found drawn on it: the words
  OCR read (yellow), those that matched identifying text (red) and the redaction rule's
  regions (blue), from the item's ``evidence.json``;
- the **facts**: the reason with its rule and element (``core.reasons``), the file's path
  in the submission, its series and the patient's pseudonym (the submission's manifest);
- the **identifying attributes** (PS3.15 Table E.1-1) of the original and of the
  de-identified output, side by side.

All of it is PHI or may be: it is made in memory on request and returned, never written
to a tier, a file or a log (log lines name item ids only). The Airflow plugin serves it to
authenticated curators with ``Cache-Control: no-store``.

``decide_series`` approves or rejects every pending item of an item's series (same
submission, same source SeriesInstanceUID): one ``quarantine.decide`` per item, after the
same curator check as a single decision, and one audit event for the series besides the
items' own.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from pydicom.multival import MultiValue
from sqlalchemy import select

from imaging_ingest.catalog import Catalog
from imaging_ingest.catalog.models import AuditEvent, QuarantineItem
from imaging_ingest.core.reasons import Reason, classify
from imaging_ingest.curation import quarantine
from imaging_ingest.curation.curators import require_curator
from imaging_ingest.storage.objects import ObjectStore

__all__ = [
    "HIT_COLOUR",
    "NoPreview",
    "REGION_COLOUR",
    "WORD_COLOUR",
    "AttributeRow",
    "ItemFacts",
    "SeriesDecision",
    "attribute_rows",
    "decide_series",
    "evidence_boxes",
    "item_attributes",
    "item_evidence",
    "item_facts",
    "item_thumbnail",
    "render_thumbnail",
    "series_members",
    "thumbnail_png",
    "window_frame",
]

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]

#: Outline colours, as in screening's ``evidence.png``: matched words, other words, redaction regions.
HIT_COLOUR = (255, 0, 0)
WORD_COLOUR = (255, 200, 0)
REGION_COLOUR = (0, 128, 255)
#: Thumbnail sizes (longest side, pixels) a caller may ask for.
MIN_SIDE, DEFAULT_SIDE, MAX_SIDE = 64, 256, 1024
#: Manifests that know a file's series and pseudonym, newest first (``pipeline.manifest`` writes them).
_MANIFESTS = ("verified", "screened", "inventory")
_MANIFEST_COLUMNS = ("file_id", "series_uid", "deid_series_uid", "pseudo_patient_id", "deid_key", "modality")
_SHOWN_LENGTH = 160


# -- thumbnails -------------------------------------------------------------------------------


def _first(value: Any) -> float | None:
    """The first number of a (possibly multi-valued) DS or IS value, else None."""
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def window_frame(arr: np.ndarray, header: Any) -> np.ndarray:
    """One decoded frame as 8-bit pixels: colour kept, grey rescaled and windowed (VOI window, else percentiles)."""
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        if arr.dtype == np.uint8:
            return np.ascontiguousarray(arr[..., :3])
        values = arr[..., :3].astype(np.float32)
        high = float(values.max(initial=1.0)) or 1.0
        return np.clip(values * (255.0 / high), 0, 255).astype(np.uint8)
    if arr.ndim == 3:  # planar or unexpected: the first sample
        arr = arr[..., 0]
    values = arr.astype(np.float32)
    slope = _first(header.get("RescaleSlope")) or 1.0
    intercept = _first(header.get("RescaleIntercept")) or 0.0
    values = values * slope + intercept
    centre, width = _first(header.get("WindowCenter")), _first(header.get("WindowWidth"))
    if centre is not None and width is not None and width >= 1:
        # PS3.3 C.11.2.1.2.1, the linear VOI function
        out = ((values - (centre - 0.5)) / max(width - 1, 1.0) + 0.5) * 255.0
    else:
        low, high = np.percentile(values, (0.5, 99.5)) if values.size else (0.0, 1.0)
        if high <= low:
            low, high = float(values.min(initial=0.0)), float(values.max(initial=1.0))
        out = (values - low) * (255.0 / max(float(high - low), 1e-6))
    grey = np.clip(out, 0, 255).astype(np.uint8)
    if str(header.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        grey = 255 - grey
    return grey


def render_thumbnail(
    frame: np.ndarray,
    *,
    words: Iterable[Box] = (),
    hits: Iterable[Box] = (),
    regions: Iterable[Box] = (),
    max_side: int = DEFAULT_SIDE,
) -> Image.Image:
    """An RGB thumbnail of an 8-bit frame (never enlarged), with boxes given in the frame's own pixels drawn.

    Regions are drawn first, then the words, then the hits on top, each at least one pixel wide.
    """
    image = Image.fromarray(frame).convert("RGB")
    full_width, full_height = image.size
    side = max(MIN_SIDE, min(int(max_side), MAX_SIDE))
    if max(image.size) > side:
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    sx, sy = image.size[0] / full_width, image.size[1] / full_height
    draw = ImageDraw.Draw(image)

    def rect(box: Box) -> tuple[float, float, float, float]:
        x, y, w, h = box
        x0, y0 = x * sx, y * sy
        return (x0, y0, max(x0 + 1, (x + w) * sx - 1), max(y0 + 1, (y + h) * sy - 1))

    thick = 2 if min(image.size) >= 128 else 1
    hit_boxes = set(hits)
    for box in regions:
        draw.rectangle(rect(box), outline=REGION_COLOUR, width=thick)
    for box in words:
        if box not in hit_boxes:
            draw.rectangle(rect(box), outline=WORD_COLOUR, width=1)
    for box in hit_boxes:
        draw.rectangle(rect(box), outline=HIT_COLOUR, width=thick)
    return image


def evidence_boxes(evidence: Mapping[str, Any] | None) -> tuple[list[Box], list[Box]]:
    """The boxes of every word OCR read and of those that matched, from an item's ``evidence.json``."""
    if not evidence:
        return [], []

    def boxes(key: str) -> list[Box]:
        out = []
        for word in evidence.get(key) or []:
            try:
                out.append((int(word["left"]), int(word["top"]), int(word["width"]), int(word["height"])))
            except (KeyError, TypeError, ValueError):
                continue
        return out

    return boxes("words"), boxes("hits")


def thumbnail_png(
    dicom: bytes,
    evidence: Mapping[str, Any] | None = None,
    regions: Iterable[Box] = (),
    max_side: int = DEFAULT_SIDE,
) -> bytes:
    """A PNG thumbnail of the first frame of a DICOM file held in memory, with its evidence drawn."""
    from pydicom import dcmread
    from pydicom.pixels import pixel_array

    header = dcmread(io.BytesIO(dicom), stop_before_pixels=True, force=True)
    arr = pixel_array(io.BytesIO(dicom), index=0)
    words, hits = evidence_boxes(evidence)
    image = render_thumbnail(
        window_frame(arr, header), words=words, hits=hits, regions=regions, max_side=max_side
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# -- what the page shows about an item ----------------------------------------------------------


@dataclass(frozen=True)
class ItemFacts:
    """A quarantined item as a curator reviews it (restricted: the path and source UID may identify)."""

    id: int
    collection_id: str
    submission_id: str
    file_id: int
    state: str
    stage: str
    reason: Reason
    source_path: str
    series_uid: str | None  # the source's SeriesInstanceUID: what groups a series decision
    deid_series_uid: str | None
    pseudonym: str | None
    modality: str | None
    original_key: str | None  # quarantine tier
    deid_key: str | None  # staging tier, where a de-identified output was written

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            reason=self.reason.text,
            rule=self.reason.rule,
            element=self.reason.element,
            remedy=self.reason.remedy,
            collection=self.collection_id,
            submission=self.submission_id,
        )
        return out


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _manifest_rows(store: ObjectStore, collection_id: str, submission_id: str) -> dict[int, dict[str, Any]]:
    """Series, pseudonym and output key of each file, from the submission's newest manifest (staging tier).

    A page of thumbnails asks for the same manifest once per image: the last few read are
    kept in this process's memory (never on disk), keyed by their SHA-256, so a rewritten
    manifest is read again.
    """
    for name in _MANIFESTS:
        key = f"{collection_id}/{submission_id}/manifests/{name}.parquet"
        info = store.head("staging", key)
        if info is None:
            continue
        if info.sha256 is None:
            return _read_manifest(store, key)
        return _read_manifest_cached(store, key, info.sha256)
    return {}


def _read_manifest(store: ObjectStore, key: str) -> dict[int, dict[str, Any]]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(io.BytesIO(store.get_bytes("staging", key)))
    columns = [c for c in _MANIFEST_COLUMNS if c in parquet.schema_arrow.names]
    return {int(r["file_id"]): r for r in parquet.read(columns=columns).to_pylist()}


@lru_cache(maxsize=4)
def _read_manifest_cached(store: ObjectStore, key: str, sha256: str) -> dict[int, dict[str, Any]]:
    return _read_manifest(store, key)


def _items(catalog: Catalog, ids: Iterable[int]) -> list[QuarantineItem]:
    wanted = sorted({int(i) for i in ids})
    with catalog.session() as s:
        return list(
            s.scalars(select(QuarantineItem).where(QuarantineItem.id.in_(wanted)).order_by(QuarantineItem.id))
        )


def _facts(row: QuarantineItem, manifest: Mapping[int, Mapping[str, Any]]) -> ItemFacts:
    info = manifest.get(row.file_id, {})
    deid_key = _text(info.get("deid_key"))
    return ItemFacts(
        id=row.id,
        collection_id=row.collection_id,
        submission_id=row.submission_id,
        file_id=row.file_id,
        state=row.state,
        stage=row.stage,
        reason=classify(row.reason),
        source_path=row.source_path,
        series_uid=_text(info.get("series_uid")),
        deid_series_uid=_text(info.get("deid_series_uid")),
        pseudonym=_text(info.get("pseudo_patient_id")),
        modality=_text(info.get("modality")),
        original_key=row.object_key,
        deid_key=f"{row.collection_id}/{row.submission_id}/deid/{deid_key}" if deid_key else None,
    )


def item_facts(catalog: Catalog, store: ObjectStore, item_ids: Iterable[int]) -> dict[int, ItemFacts]:
    """The facts of these items, by id (ids with no item are left out); one manifest read per submission."""
    rows = _items(catalog, item_ids)
    manifests: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    out = {}
    for row in rows:
        where = (row.collection_id, row.submission_id)
        if where not in manifests:
            manifests[where] = _manifest_rows(store, *where)
        out[row.id] = _facts(row, manifests[where])
    return out


def _one(catalog: Catalog, store: ObjectStore, item_id: int) -> ItemFacts:
    facts = item_facts(catalog, store, [item_id]).get(item_id)
    if facts is None:
        raise quarantine.QuarantineDecisionError(f"no quarantined item {item_id}")
    return facts


def _image_bytes(store: ObjectStore, facts: ItemFacts) -> bytes | None:
    """The de-identified output where it was written, else the original; None when neither is kept."""
    for tier, key in (("staging", facts.deid_key), ("quarantine", facts.original_key)):
        if key and store.head(tier, key) is not None:
            return store.get_bytes(tier, key)
    return None


def _evidence(store: ObjectStore, facts: ItemFacts) -> dict[str, Any] | None:
    key = quarantine.evidence_keys(facts.collection_id, facts.submission_id, facts.file_id)["evidence.json"]
    if store.head("quarantine", key) is None:
        return None
    document = store.get_json("quarantine", key)
    return document if isinstance(document, dict) else None


def item_evidence(store: ObjectStore, facts: ItemFacts) -> dict[str, Any] | None:
    """What screening found, without the text it read: counts, what each hit matched and where, the rule applied."""
    evidence = _evidence(store, facts)
    if evidence is None:
        return None
    words, hits = evidence_boxes(evidence)
    matches = [str(h.get("match") or "") for h in evidence.get("hits") or [] if isinstance(h, dict)]
    return {
        "words": len(words),
        "hits": [{"match": m, "box": list(b)} for m, b in zip(matches, hits, strict=False)],
        "redaction_rule": evidence.get("redaction_rule"),
    }


class NoPreview(LookupError):
    """An item with no image to show (no file kept, no pixel data, or pixels that cannot be decoded)."""


def item_thumbnail(
    catalog: Catalog,
    store: ObjectStore,
    item_id: int,
    *,
    rule_regions: Mapping[str, Sequence[Box]] | None = None,
    max_side: int = DEFAULT_SIDE,
) -> bytes:
    """The PNG thumbnail of a quarantined item, its OCR boxes and redaction regions drawn (``NoPreview`` if none).

    ``rule_regions`` maps redaction rule ids (the collection's ``pixels.redaction_rules``)
    to their regions: the evidence names the rule that was applied.
    """
    facts = _one(catalog, store, item_id)
    data = _image_bytes(store, facts)
    if data is None:
        raise NoPreview(f"item {item_id}: no image is kept for it")
    evidence = _evidence(store, facts)
    rule = (evidence or {}).get("redaction_rule")
    regions = list((rule_regions or {}).get(rule, ())) if isinstance(rule, str) else []
    try:
        return thumbnail_png(data, evidence, regions, max_side)
    except Exception as exc:  # noqa: BLE001 - no pixels, or a decoder's refusal: the type names it, no value does
        raise NoPreview(f"item {item_id}: no frame to show ({type(exc).__name__})") from None


# -- identifying attributes before and after de-identification -----------------------------------


@dataclass(frozen=True)
class AttributeRow:
    """One identifying attribute of the original and of the de-identified output (restricted: values are PHI)."""

    tag: str
    keyword: str
    before: str | None
    after: str | None
    change: str  # removed, emptied, replaced, kept, added


@cache
def _confidentiality_tags() -> tuple[frozenset[int], tuple[tuple[int, int], ...]]:
    """PS3.15 Table E.1-1's attributes: exact tags, and (mask, value) pairs for its ``xx`` rows."""
    text = (resources.files("imaging_ingest") / "data" / "ps3_15_table_e1_1.csv").read_text(encoding="utf-8")
    exact: set[int] = set()
    masked: list[tuple[int, int]] = []
    rows = csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#"))
    for row in rows:
        found = re.fullmatch(r"\(([0-9A-Fx]{4}),([0-9A-Fx]{4})\)", row["tag"].strip(), re.IGNORECASE)
        if not found:
            continue  # the private-attributes row: private elements are not listed here
        digits = found.group(1) + found.group(2)
        if "x" in digits.lower():
            mask = int("".join("0" if c in "xX" else "F" for c in digits), 16)
            masked.append((mask, int(digits.replace("x", "0").replace("X", "0"), 16)))
        else:
            exact.add(int(digits, 16))
    return frozenset(exact), tuple(masked)


def _identifying(tag: int) -> bool:
    exact, masked = _confidentiality_tags()
    return tag in exact or any(tag & mask == value for mask, value in masked)


def _shown(element: Any) -> str:
    if element.VR == "SQ":
        return f"{len(element.value or [])} item(s)"
    value = element.value
    if isinstance(value, bytes | bytearray):
        return f"{len(value)} bytes"
    if isinstance(value, MultiValue | list | tuple):
        text = "\\".join(str(v) for v in value)
    else:
        text = "" if value is None else str(value)
    return text if len(text) <= _SHOWN_LENGTH else text[: _SHOWN_LENGTH - 1] + "…"


def attribute_rows(original: bytes, deidentified: bytes | None) -> list[AttributeRow]:
    """Every PS3.15 Table E.1-1 attribute either header has (top level, private ones aside), in tag order."""
    from pydicom import dcmread

    before = dcmread(io.BytesIO(original), stop_before_pixels=True, force=True)
    after = dcmread(io.BytesIO(deidentified), stop_before_pixels=True, force=True) if deidentified else None
    tags = {int(e.tag) for e in before if not e.tag.is_private and _identifying(int(e.tag))}
    if after is not None:
        tags |= {int(e.tag) for e in after if not e.tag.is_private and _identifying(int(e.tag))}
    rows = []
    for tag in sorted(tags):
        old = _shown(before[tag]) if tag in before else None
        new = _shown(after[tag]) if after is not None and tag in after else None
        element = before[tag] if tag in before else after[tag]  # type: ignore[index]  # in one of the two
        keyword = element.keyword
        if old is None:
            change = "added"
        elif new is None:
            change = "removed"
        elif new == "" and old != "":
            change = "emptied"
        else:
            change = "kept" if new == old else "replaced"
        rows.append(AttributeRow(f"({tag >> 16:04X},{tag & 0xFFFF:04X})", keyword or "", old, new, change))
    return rows


def item_attributes(catalog: Catalog, store: ObjectStore, item_id: int) -> list[AttributeRow]:
    """The identifying attributes of an item's original (quarantine tier) and its de-identified output (staging)."""
    facts = _one(catalog, store, item_id)
    if not facts.original_key or store.head("quarantine", facts.original_key) is None:
        return []
    deidentified = None
    if facts.deid_key and store.head("staging", facts.deid_key) is not None:
        deidentified = store.get_bytes("staging", facts.deid_key)
    try:
        return attribute_rows(store.get_bytes("quarantine", facts.original_key), deidentified)
    except Exception as exc:  # noqa: BLE001 - an unreadable header: the page says so, the type names the cause
        log.warning(
            "quarantine item %d: header not readable for the attribute table (%s)",
            item_id,
            type(exc).__name__,
        )
        return []


# -- decisions on a whole series -----------------------------------------------------------------


@dataclass(frozen=True)
class SeriesDecision:
    """What a series decision did: the items it decided (each audited on its own) and by whom."""

    decision: str
    curator: str
    collection_id: str
    submission_id: str
    items: tuple[quarantine.ReviewItem, ...]

    @property
    def still_pending(self) -> int:
        """Items that need more approvals (a collection's ``release_approvals`` above 1)."""
        return sum(1 for i in self.items if i.state == quarantine.PENDING)


def series_members(catalog: Catalog, store: ObjectStore, item_id: int) -> list[int]:
    """The item and every other pending item of its submission in the same source series, by id.

    An item whose series is unknown (no manifest row names one) is a series of its own.
    """
    facts = _one(catalog, store, item_id)
    if facts.series_uid is None:
        return [item_id]
    with catalog.session() as s:
        pending = {
            row.id: row.file_id
            for row in s.scalars(
                select(QuarantineItem).where(
                    QuarantineItem.submission_id == facts.submission_id,
                    QuarantineItem.state == quarantine.PENDING,
                )
            )
        }
    manifest = _manifest_rows(store, facts.collection_id, facts.submission_id)
    same = {
        i for i, file_id in pending.items() if manifest.get(file_id, {}).get("series_uid") == facts.series_uid
    }
    return sorted(same | {item_id})


def decide_series(
    catalog: Catalog,
    store: ObjectStore,
    item_id: int,
    decision: str,
    user: Any,
    note: str | None = None,
    *,
    approvals_required: int = 1,
    environ: Mapping[str, str] | None = None,
) -> SeriesDecision:
    """Approve or reject every pending item of ``item_id``'s series, as one curator's decision.

    The user must be a curator (``curators.require_curator``: ``NotCurator`` otherwise,
    before anything is recorded). Each item is decided by ``quarantine.decide``, so each
    is audited and follows the collection's ``release_approvals``; the series gets an
    audit event of its own. An approval is refused as a whole (``QuarantineDecisionError``,
    nothing recorded) when an item of the series cannot be approved (not quarantined by
    screening) or the item was already decided the other way.
    """
    curator = require_curator(user, environ)
    if decision not in (quarantine.APPROVED, quarantine.REJECTED):
        raise quarantine.QuarantineDecisionError(
            f"decision must be {quarantine.APPROVED} or {quarantine.REJECTED}, not {decision!r}"
        )
    members = series_members(catalog, store, item_id)
    rows = _items(catalog, members)
    first = next(r for r in rows if r.id == item_id)
    if first.state not in (quarantine.PENDING, decision):
        raise quarantine.QuarantineDecisionError(
            f"item {item_id} was already {first.state} by {first.decided_by}; decisions are final"
        )
    if decision == quarantine.APPROVED:
        blocked = [
            r.id
            for r in rows
            if r.state == quarantine.PENDING and r.stage not in quarantine.APPROVABLE_STAGES
        ]
        if blocked:
            raise quarantine.QuarantineDecisionError(
                f"the series of item {item_id} has items that cannot be approved (not quarantined by screening: "
                f"{', '.join(map(str, blocked))}); reject the series, or decide on its items one by one"
            )
    decided = tuple(
        quarantine.decide(catalog, row.id, decision, curator, note, approvals_required=approvals_required)
        for row in rows
    )
    facts = _one(catalog, store, item_id)
    series = facts.deid_series_uid or f"file-{facts.file_id:06d}"
    with catalog.session() as session:
        session.add(
            AuditEvent(
                event_type="quarantine-series-review",
                agent=f"curator:{curator}",
                outcome=decision,
                object_id=f"quarantine/{facts.collection_id}/{facts.submission_id}/series/{series}",
                object_type="series",
                collection_id=facts.collection_id,
                detail=f"{len(decided)} items: {', '.join(str(i.id) for i in decided)}",
            )
        )
    log.info("series of quarantine item %d: %d items %s by %s", item_id, len(decided), decision, curator)
    return SeriesDecision(decision, curator, facts.collection_id, facts.submission_id, decided)
