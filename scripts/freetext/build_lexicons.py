"""Derive the free-text detector's word lists from their public sources.

Run it to regenerate ``include/imaging_ingest/data/freetext/{first_names,last_names,
common_words,clinical_terms}.txt``; ``data/freetext/README.md`` says where each source is
from and under which terms. The derivation is deterministic (sorted, lower-cased, one word
a line), so a rerun on the same sources writes identical files.

    python scripts/freetext/build_lexicons.py --names-dir DIR --words FILE

- ``--names-dir``: the ``names/`` folder of the PyPI package ``names`` 0.3.0
  (``pip download --no-deps names==0.3.0``): the 1990 US Census name tables
  ``dist.male.first``, ``dist.female.first``, ``dist.all.last`` (public domain).
- ``--words``: Debian's ``wamerican`` word list (``/usr/share/dict/american-english``, SCOWL size
  50): its lower-case entries are the common English words.
- The clinical vocabulary comes from the code meanings of DICOM PS3.16 concepts bundled with the
  installed pydicom (``pydicom.sr._concepts_dict``: DCM, SNOMED CT, NCIt, RadLex... subsets).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "include" / "imaging_ingest" / "data" / "freetext"
_WORD = re.compile(r"[a-z][a-z'-]*[a-z]|[a-z]")


def census_names(path: Path) -> list[str]:
    """The first column of a census ``dist.*`` table, lower-cased."""
    return [line.split()[0].lower() for line in path.read_text(encoding="ascii").splitlines() if line.strip()]


def common_words(path: Path) -> list[str]:
    """Entries written in lower case (proper nouns are capitalised there), without possessives."""
    words = path.read_text(encoding="utf-8").splitlines()
    return [w for w in words if w.isascii() and w.isalpha() and w.islower()]


def clinical_terms() -> list[str]:
    """Every word of every code meaning pydicom bundles (PS3.16 concepts), lower-cased."""
    from pydicom.sr._concepts_dict import concepts

    words: set[str] = set()
    for scheme in concepts.values():
        for codes in scheme.values():
            for meaning, _cids in codes.values():
                words.update(w.strip("'-") for w in _WORD.findall(meaning.lower()))
    return sorted(w for w in words if len(w) >= 2)


def write(name: str, header: str, words: list[str]) -> None:
    unique = sorted(set(words))
    (OUT / name).write_text(f"# {header}\n" + "\n".join(unique) + "\n", encoding="utf-8")
    print(f"{name}: {len(unique)} entries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names-dir", type=Path, required=True)
    parser.add_argument("--words", type=Path, required=True)
    args = parser.parse_args()
    first = census_names(args.names_dir / "dist.male.first") + census_names(args.names_dir / "dist.female.first")
    write("first_names.txt", "1990 US Census first names (male and female), via PyPI names 0.3.0; public domain", first)
    write("last_names.txt", "1990 US Census surnames, via PyPI names 0.3.0; public domain", census_names(args.names_dir / "dist.all.last"))
    write("common_words.txt", "lower-case words of SCOWL size 50 (Debian wamerican 2020.12.07-2); see COPYING.scowl", common_words(args.words))
    import pydicom

    write("clinical_terms.txt", f"words of DICOM PS3.16 code meanings bundled with pydicom {pydicom.__version__}", clinical_terms())


if __name__ == "__main__":
    main()
