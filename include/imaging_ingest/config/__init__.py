"""Collection configuration (one validated YAML file per collection) and installation settings.

The collection model lives in ``collection.py``; its public names are re-exported here because
every stage takes a ``CollectionConfig``. Installation settings are in ``settings.py``, the
optional sections (pixels, clinical tables, pathology) in ``sections.py``.
"""

from imaging_ingest.config.collection import (
    ArchiveLimits,
    CitationConfig,
    CollectionConfig,
    ConfigError,
    Creator,
    DeidConfig,
    DeidOption,
    DropConfig,
    FixityConfig,
    License,
    TagOverride,
    default_modalities,
    load_collection_config,
    load_collections,
)
from imaging_ingest.config.sections import ClinicalConfig

__all__ = [
    "ArchiveLimits",
    "CitationConfig",
    "ClinicalConfig",
    "CollectionConfig",
    "ConfigError",
    "Creator",
    "DeidConfig",
    "DeidOption",
    "DropConfig",
    "FixityConfig",
    "License",
    "TagOverride",
    "default_modalities",
    "load_collection_config",
    "load_collections",
]
