"""Run one peer de-identifier over a file list, inside the bench-only venv, and time it.

Usage: ``python peers.py TOOL LIST OUT_DIR SECONDS`` where LIST holds one input path per
line. Files are processed in order until all are done or SECONDS have passed; the result
(files done, seconds, bytes read, errors) is printed as one JSON line. Each peer runs with
its defaults, in one process, reading with pydicom and writing a new file per input, as
its documentation shows.

This script runs under the peers' venv: it must import nothing from imaging_ingest.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable


def _dicognito() -> Callable[[str, str], None]:
    import pydicom
    from dicognito.anonymizer import Anonymizer

    anonymizer = Anonymizer(seed="bench")

    def run(src: str, dst: str) -> None:
        ds = pydicom.dcmread(src)
        anonymizer.anonymize(ds)
        ds.save_as(dst)

    return run


def _dicom_anonymizer() -> Callable[[str, str], None]:
    from dicomanonymizer import anonymize_dicom_file

    def run(src: str, dst: str) -> None:
        anonymize_dicom_file(src, dst)

    return run


def _deid() -> Callable[[str, str], None]:
    from deid.config import DeidRecipe
    from deid.dicom import get_identifiers, replace_identifiers

    recipe = DeidRecipe()  # the package's default recipe (dicom.deid)

    def run(src: str, dst: str) -> None:
        items = get_identifiers([src])
        parsed = replace_identifiers(dicom_files=[src], deid=recipe, ids=items, save=False, remove_private=True)
        parsed[0].save_as(dst)

    return run


TOOLS = {"dicognito": _dicognito, "dicom-anonymizer": _dicom_anonymizer, "deid": _deid}


def main() -> int:
    tool, listing, out_dir, budget = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    with open(listing, encoding="utf-8") as fh:
        files = [line.strip() for line in fh if line.strip()]
    os.makedirs(out_dir, exist_ok=True)
    run = TOOLS[tool]()
    done = errors = 0
    size = 0
    start = time.perf_counter()
    for i, src in enumerate(files):
        try:
            run(src, os.path.join(out_dir, f"{i}.dcm"))
        except Exception:  # noqa: BLE001 - a peer's failure on one file is counted, not fatal
            errors += 1
        done += 1
        size += os.path.getsize(src)
        if time.perf_counter() - start > budget:
            break
    seconds = time.perf_counter() - start
    print(json.dumps({"files": done, "seconds": seconds, "bytes": size, "errors": errors}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
