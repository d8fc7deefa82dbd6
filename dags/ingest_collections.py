"""One Airflow ingest DAG per collection: ``ingest__<id>`` for every YAML in the collections folder.

The folder is ``dags/collections`` unless ``IMAGING_INGEST_COLLECTIONS`` names another.
Each config is validated on its own: a broken one is logged with its file and fields and
becomes an ``invalid_config__<name>`` DAG, while every valid collection keeps its DAG.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from imaging_dags.factory import build_ingest_dag, build_invalid_config_dag
from imaging_ingest.config import load_collections

log = logging.getLogger(__name__)

COLLECTIONS_FOLDER = Path(os.environ.get("IMAGING_INGEST_COLLECTIONS", Path(__file__).parent / "collections"))

_loaded = load_collections(COLLECTIONS_FOLDER)
for _config in _loaded.configs:
    globals()[_config.dag_id] = build_ingest_dag(_config)
for _error in _loaded.errors:
    log.error("invalid collection config %s", _error)
    _invalid = build_invalid_config_dag(_error)
    globals()[_invalid.dag_id] = _invalid
