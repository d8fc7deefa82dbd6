"""De-identify whole-slide images (Aperio SVS and generic pyramidal TIFF), tile-streamed.

A slide file carries PHI in three places besides its tissue:

- the **label** and **macro** images (photos of the glass slide: handwritten names,
  accession numbers, barcodes);
- the **ImageDescription** (Aperio's ``key = value|`` list: ``Filename``, ``Date``,
  ``Time``, ``User``, ``Barcode``, ``ScanScope ID`` ...);
- other TIFF tags (``DateTime``, ``Software``, ``Artist``, ``HostComputer``, XMP, EXIF).

The de-identified slide keeps the pyramid levels (and, if the collection wants it, the
thumbnail, which shows tissue only), with an allow-list of structural tags and an
ImageDescription reduced to its first line and the scan keys the collection keeps
(magnification, microns per pixel ...). It is written with ``tifftools``, which copies
each tile's compressed bytes as they are, in 1 MiB pieces: tiles stay bit-identical, and
a multi-gigabyte slide never sits in memory.

``verify_slide`` then checks the result independently: no label or macro page is left,
OpenSlide opens it as the same kind of slide with the same levels, every kept page's
tiles hash the same as the source's, a few decoded regions are equal, and none of the
removed values occurs anywhere in the file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imaging_ingest.deid.freetext import TextClass, clean_text
from imaging_ingest.deid.freetext.element import format_counts

__all__ = [
    "KEPT_TAGS",
    "SlideError",
    "SlideResult",
    "classify_pages",
    "deidentify_slide",
    "removed_values",
    "scrub_aperio_description",
    "verify_slide",
]

#: Structural TIFF tags a de-identified slide keeps; every other tag is removed.
KEPT_TAGS = frozenset(
    {
        254, 255, 256, 257, 258, 259, 262, 266, 273, 274, 277, 278, 279, 280, 281, 282, 283, 284, 296, 317, 318,
        319, 320, 322, 323, 324, 325, 330, 338, 339, 340, 341, 347, 529, 530, 531, 532, 32997, 32998, 34675,
    }
)  # fmt: skip
IMAGE_DESCRIPTION = 270
SUBIFD = 330
#: Tags whose removed values the verifier searches the output for.
_TEXT_TAGS = {269: "DocumentName", 270: "ImageDescription", 271: "Make", 272: "Model", 285: "PageName",
              305: "Software", 306: "DateTime", 315: "Artist", 316: "HostComputer", 33432: "Copyright"}  # fmt: skip

_APERIO_HEAD = re.compile(r"^Aperio Image (?:Library|Format)(?: v?[0-9A-Za-z.\-_]+)? ?$")
_DIMENSION_TOKEN = re.compile(r"^(?:\[?\d+(?:,\d+)?|\d+x\d+\]?|\(\d+x\d+\)|->|-|[A-Z0-9]{2,8}/[A-Z0-9]{2,8}|RAW|Q=\d+)$")
_ASSOCIATED_WORDS = re.compile(r"\b(label|macro|overview|barcode|slide ?label)\b", re.IGNORECASE)


class SlideError(Exception):
    """A slide that cannot be de-identified or fails verification; the message is PHI-free."""


@dataclass(frozen=True)
class Page:
    index: int
    role: str  # level, thumbnail, label, macro, associated
    tiled: bool
    width: int
    height: int


@dataclass
class SlideResult:
    vendor: str  # aperio or generic-tiff
    pages_kept: int
    pages_removed: dict[str, int]
    tags_removed: int
    description_keys_removed: list[str]
    needles: list[str] = field(default_factory=list, repr=False)  # removed values: PHI, never logged
    kept_text: list[str] = field(default_factory=list, repr=False)  # the descriptions written
    text_removed: dict[str, int] = field(default_factory=dict)  # free-text spans replaced, per description key

    def summary(self) -> dict[str, Any]:
        """PHI-free counts for the manifest."""
        return {
            "slide_vendor": self.vendor,
            "slide_pages_kept": self.pages_kept,
            "slide_labels_removed": self.pages_removed.get("label", 0),
            "slide_macros_removed": self.pages_removed.get("macro", 0),
            "slide_pages_removed": sum(self.pages_removed.values()),
            "slide_tags_removed": self.tags_removed,
            "slide_description_keys_removed": ",".join(sorted(set(self.description_keys_removed))),
            "slide_text_removed": format_counts(self.text_removed),
        }


def _tag(ifd: dict[str, Any], code: int) -> Any:
    entry = ifd["tags"].get(code)
    if entry is None:
        return None
    data = entry.get("data")
    if isinstance(data, list) and len(data) == 1:
        return data[0]
    return data


def _text_of(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1", "replace").rstrip("\x00")
    return "" if value is None else str(value)


def _is_aperio(ifds: Sequence[dict[str, Any]]) -> bool:
    return bool(ifds) and _text_of(_tag(ifds[0], IMAGE_DESCRIPTION)).startswith("Aperio")


def classify_pages(ifds: Sequence[dict[str, Any]]) -> list[Page]:
    """Name each top-level page: a pyramid level, the thumbnail, the label, the macro, or another associated image.

    Aperio (as OpenSlide reads it): the first page and every tiled page are levels, the
    second page is the thumbnail when stripped, and a stripped page whose description's
    second line starts with ``label`` or ``macro`` is that image. Generic TIFF: tiled pages
    are levels unless their description or name says label/macro/overview; stripped pages
    after the first are associated images of unknown content.
    """
    aperio = _is_aperio(ifds)
    pages = []
    for index, ifd in enumerate(ifds):
        tiled = 322 in ifd["tags"] and 324 in ifd["tags"]
        width, height = int(_tag(ifd, 256) or 0), int(_tag(ifd, 257) or 0)
        description = _text_of(_tag(ifd, IMAGE_DESCRIPTION))
        name = _text_of(_tag(ifd, 285))
        role = "level" if tiled else "associated"
        if aperio:
            lines = [line for line in re.split(r"[\r\n]+", description) if line]
            word = lines[1].split(" ", 1)[0].lower() if len(lines) > 1 else ""
            if word in ("label", "macro"):
                role = word
            elif not tiled and index == 1:
                role = "thumbnail"
        else:
            head = "\n".join(description.splitlines()[:2])[:200] + " " + name
            found = _ASSOCIATED_WORDS.search(head)
            if found:
                word = found.group(1).lower()
                role = "macro" if word in ("macro", "overview") else "label"
        pages.append(Page(index, role, tiled, width, height))
    return pages


def scrub_aperio_description(
    description: str, keep_keys: Iterable[str], counts: dict[str, int] | None = None
) -> tuple[str, list[str], list[str]]:
    """Keep the description's first line, the dimension tokens, and the allowed ``key = value`` pairs.

    A kept pair's value is cleaned by the free-text detector (a date, a name, an ID in it
    becomes a kind token); ``counts`` receives how many spans went, per key.

    Returns the new description, the removed keys (names only: PHI-free) and the removed
    values (PHI: for the verifier's leak scan only).
    """
    keep = {k.strip().lower() for k in keep_keys}
    parts = description.split("|")
    head_lines = [line for line in re.split(r"\r\n|\n|\r", parts[0])]
    removed_keys: list[str] = []
    removed_values: list[str] = []
    first = head_lines[0] if head_lines else ""
    if not _APERIO_HEAD.match(first):
        removed_values.append(first)
        first = "Aperio Image Library"
    head = first
    for line in head_lines[1:]:
        tokens = line.split()
        kept = [t for t in tokens if _DIMENSION_TOKEN.match(t)]
        removed_values.extend(t for t in tokens if not _DIMENSION_TOKEN.match(t))
        if kept:
            head += "\r\n" + " ".join(kept)
    pairs = []
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if sep and key.lower() in keep:
            cleaned = clean_text(value, text_class=TextClass.DESCRIPTOR)
            if cleaned.changed:  # a kept key's value still goes through the free-text detector
                removed_values.append(value)
                if counts is not None:
                    counts[key] = counts.get(key, 0) + cleaned.n_removed
            pairs.append(f"{key} = {cleaned.text}")
        else:
            removed_keys.append(key if sep else "(unkeyed)")
            removed_values.append(value if sep else part.strip())
    return "|".join([head, *pairs]), removed_keys, [v for v in removed_values if v]


def _clean_ifd(
    ifd: dict[str, Any], aperio: bool, keep_keys: Sequence[str], result: SlideResult
) -> dict[str, Any]:
    tags: dict[int, Any] = {}
    for code, entry in ifd["tags"].items():
        if code == IMAGE_DESCRIPTION and aperio:
            text = _text_of(entry.get("data"))
            scrubbed, keys, values = scrub_aperio_description(text, keep_keys, result.text_removed)
            result.description_keys_removed.extend(keys)
            result.needles.extend(values)
            result.kept_text.append(scrubbed)
            tags[code] = {"datatype": entry["datatype"], "data": scrubbed}
            continue
        if code not in KEPT_TAGS:
            result.tags_removed += 1
            if code in _TEXT_TAGS:
                result.needles.append(_text_of(entry.get("data")))
            continue
        if code == SUBIFD and "ifds" in entry:
            entry = dict(entry)
            entry["ifds"] = [[_clean_ifd(sub, aperio, keep_keys, result) for sub in chain] for chain in entry["ifds"]]
        tags[code] = entry
    return {"path_or_fobj": ifd["path_or_fobj"], "size": ifd["size"], "tags": tags}


def _plan(src: str | Path, keep_description_keys: Sequence[str], keep_thumbnail: bool) -> tuple[dict[str, Any], list[dict[str, Any]], SlideResult]:
    """Read the slide's IFDs (never its tiles) and decide what the output keeps."""
    import tifftools

    try:
        info = tifftools.read_tiff(str(src))
    except Exception as exc:  # noqa: BLE001 - tifftools raises several types for bad files
        raise SlideError(f"not a readable TIFF ({type(exc).__name__})") from None
    ifds = info["ifds"]
    if not ifds:
        raise SlideError("TIFF without images")
    pages = classify_pages(ifds)
    if pages[0].role != "level" or not pages[0].tiled:
        raise SlideError("not a tiled pyramidal TIFF (the first image is not tiled)")
    aperio = _is_aperio(ifds)
    result = SlideResult("aperio" if aperio else "generic-tiff", 0, {}, 0, [])
    kept = []
    for page, ifd in zip(pages, ifds, strict=True):
        if page.role == "level" or (page.role == "thumbnail" and keep_thumbnail):
            kept.append(_clean_ifd(ifd, aperio, keep_description_keys, result))
        else:
            result.pages_removed[page.role] = result.pages_removed.get(page.role, 0) + 1
            if not aperio:  # an Aperio label's description is a fixed form; a generic one may say anything
                result.needles.append(_text_of(_tag(ifd, IMAGE_DESCRIPTION)))
    if not aperio and any(IMAGE_DESCRIPTION in ifd["tags"] for ifd in ifds):
        result.description_keys_removed.append("(generic description)")
    result.pages_kept = len(kept)
    # A removed value that is also part of what was kept on purpose (an Aperio Software tag
    # repeating the description's first line) is no leak: the verifier searches for the rest.
    result.needles = sorted(
        {n.strip() for n in result.needles if len(n.strip()) >= 6 and not any(n.strip() in k for k in result.kept_text)}
    )
    return info, kept, result


def deidentify_slide(
    src: str | Path, dst: str | Path, *, keep_description_keys: Sequence[str], keep_thumbnail: bool = True
) -> SlideResult:
    """Write ``src`` to ``dst`` without label, macro and identifying tags; tiles are copied, never decoded."""
    import tifftools

    info, kept, result = _plan(src, keep_description_keys, keep_thumbnail)
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.partial")
    tmp.unlink(missing_ok=True)
    tifftools.write_tiff({"ifds": kept, "bigEndian": info["bigEndian"], "bigtiff": info["bigtiff"]}, str(tmp))
    tmp.replace(dst)
    return result


def removed_values(src: str | Path, *, keep_description_keys: Sequence[str], keep_thumbnail: bool = True) -> list[str]:
    """The values de-identification removes from a slide's metadata (PHI: for the leak scan only)."""
    return _plan(src, keep_description_keys, keep_thumbnail)[2].needles


# -- verification ---------------------------------------------------------------------------


def _page_digests(path: Path) -> list[tuple[str, bool, tuple[int, int], str]]:
    """(role, tiled, size, SHA-256 of its tiles' or strips' bytes in order) of each top-level page."""
    import tifftools

    info = tifftools.read_tiff(str(path))
    pages = classify_pages(info["ifds"])
    out = []
    with open(path, "rb") as fh:
        for page, ifd in zip(pages, info["ifds"], strict=True):
            offsets_tag, counts_tag = (324, 325) if page.tiled else (273, 279)
            offsets = ifd["tags"].get(offsets_tag, {}).get("data", [])
            counts = ifd["tags"].get(counts_tag, {}).get("data", [])
            digest = hashlib.sha256()
            for offset, count in zip(offsets, counts, strict=True):
                digest.update(count.to_bytes(8, "little"))
                fh.seek(offset)
                left = count
                while left:
                    chunk = fh.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    digest.update(chunk)
                    left -= len(chunk)
            out.append((page.role, page.tiled, (page.width, page.height), digest.hexdigest()))
    return out


def _find_needles(path: Path, needles: Sequence[str]) -> int:
    values = [n.encode("utf-8", "replace") for n in needles if len(n) >= 6]
    if not values:
        return 0
    overlap = max(len(v) for v in values) - 1
    found: set[bytes] = set()
    tail = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            window = tail + chunk
            found.update(v for v in values if v not in found and v in window)
            tail = window[-overlap:] if overlap else b""
    return len(found)


def verify_slide(src: str | Path, dst: str | Path, needles: Sequence[str] = (), *, samples: int = 4) -> list[str]:
    """Independent checks of a de-identified slide; returns the problems found (PHI-free), empty when clean."""
    import numpy as np
    import openslide

    src, dst = Path(src), Path(dst)
    problems: list[str] = []
    source_pages = [p for p in _page_digests(src) if p[0] in ("level", "thumbnail")]
    output_pages = _page_digests(dst)
    left = [p for p in output_pages if p[0] in ("label", "macro", "associated")]
    if left:
        problems.append(f"{len(left)} label/macro/associated page(s) left in the output")
    kept = [p for p in output_pages if p[0] in ("level", "thumbnail")]
    source_by_shape = {(p[0], p[2]): p[3] for p in source_pages}
    for role, _tiled, size, digest in kept:
        if source_by_shape.get((role, size)) != digest:
            problems.append(f"{role} page {size[0]}x{size[1]} differs from the source's tiles")
    if _find_needles(dst, needles):
        problems.append("a value removed from the slide's metadata occurs in the output")
    try:
        before, after = openslide.OpenSlide(str(src)), openslide.OpenSlide(str(dst))
    except openslide.OpenSlideError as exc:
        return [*problems, f"OpenSlide cannot open the output ({type(exc).__name__})"]
    try:
        vendor_before = before.properties.get(openslide.PROPERTY_NAME_VENDOR)
        vendor_after = after.properties.get(openslide.PROPERTY_NAME_VENDOR)
        if vendor_before != vendor_after:
            problems.append(f"OpenSlide reads the output as {vendor_after}, the source as {vendor_before}")
        if before.level_dimensions != after.level_dimensions:
            problems.append("OpenSlide sees different pyramid levels")
        leftover = {"label", "macro"} & set(after.associated_images)
        if leftover:
            problems.append(f"OpenSlide still finds associated image(s): {', '.join(sorted(leftover))}")
        for level in {0, after.level_count - 1}:
            width, height = after.level_dimensions[level]
            factor = after.level_downsamples[level]
            step = max(1, samples)
            for i in range(step):
                x = int(width * i / step)
                y = int(height * i / step)
                size = (min(256, width - x), min(256, height - y))
                location = (int(x * factor), int(y * factor))
                if size[0] <= 0 or size[1] <= 0:
                    continue
                a = np.asarray(before.read_region(location, level, size))
                b = np.asarray(after.read_region(location, level, size))
                if not np.array_equal(a, b):
                    problems.append(f"decoded region at level {level} differs from the source")
                    break
    finally:
        before.close()
        after.close()
    return problems
