"""Run one pipeline stage in this process and SIGKILL it part-way (the fault tests start it as a subprocess).

    python killer.py STAGE SETTINGS_JSON CONFIG_JSON SUBMISSION_ID KILL_POINT COUNT

KILL_POINT is ``copy`` (after COUNT server-side copies), ``put`` (after COUNT uploads) or
``record_version`` (after the release is written, before the catalog records it: the catalog's
``apply_release``).
Nothing is cleaned up: the process dies as a worker killed by the OOM killer would.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "include")]

from imaging_ingest.catalog import Catalog  # noqa: E402
from imaging_ingest.config import CollectionConfig  # noqa: E402
from imaging_ingest.config.settings import Settings  # noqa: E402
from imaging_ingest.pipeline.ingest import Ingest  # noqa: E402
from imaging_ingest.storage.objects import ObjectStore  # noqa: E402


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    stage, settings_json, config_json, submission_id, point, count = sys.argv[1:7]
    settings = Settings.model_validate_json(settings_json)
    config = CollectionConfig.model_validate_json(config_json)
    calls = {"n": 0}

    def counting(original):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            result = original(*args, **kwargs)
            calls["n"] += 1
            if calls["n"] >= int(count):
                die()
            return result

        return wrapper

    if point == "copy":
        ObjectStore.copy = counting(ObjectStore.copy)  # type: ignore[method-assign]
    elif point == "put":
        ObjectStore.put_file = counting(ObjectStore.put_file)  # type: ignore[method-assign]
    elif point == "record_version":
        Catalog.apply_release = lambda *a, **k: die()  # type: ignore[method-assign]
    ingest = Ingest(config, settings, secret=os.environb[b"IMAGING_INGEST_SECRET"])
    getattr(ingest, stage)(submission_id)
    print("stage finished without being killed")


if __name__ == "__main__":
    main()
