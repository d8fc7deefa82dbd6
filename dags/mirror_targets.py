"""One Airflow mirror DAG per target: ``mirror__<id>`` for every YAML in the mirrors folder.

The folder is ``dags/mirrors`` unless ``IMAGING_INGEST_MIRRORS`` names another; each
target is validated on its own (an invalid one becomes ``invalid_mirror__<name>``). Each
DAG runs when a collection it mirrors publishes (the collection's Asset), see
``imaging_dags.mirror_factory``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from imaging_dags.mirror_factory import build_invalid_mirror_dag, build_mirror_dag
from imaging_ingest.config import load_collections
from imaging_ingest.mirror.config import load_mirror_targets

log = logging.getLogger(__name__)

MIRRORS_FOLDER = Path(os.environ.get("IMAGING_INGEST_MIRRORS", Path(__file__).parent / "mirrors"))
COLLECTIONS_FOLDER = Path(os.environ.get("IMAGING_INGEST_COLLECTIONS", Path(__file__).parent / "collections"))

_collection_ids = [c.id for c in load_collections(COLLECTIONS_FOLDER).configs]
_loaded = load_mirror_targets(MIRRORS_FOLDER)
for _target in _loaded.targets:
    globals()[_target.dag_id] = build_mirror_dag(_target, _collection_ids)
for _error in _loaded.errors:
    log.error("invalid mirror target config %s", _error)
    _invalid = build_invalid_mirror_dag(_error)
    globals()[_invalid.dag_id] = _invalid
