"""Data access: the published collections through an NBIA v4-compatible REST API.

Researchers reach the archive with NBIA's clients (``tcia_utils``, notebooks, download
tools); this service answers them from the catalog and the object store, serving only
what published releases list. ``imaging-ingest api`` runs it; docs/api.md describes it.
"""

from imaging_ingest.api.app import create_app, create_app_from_env
from imaging_ingest.api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app", "create_app_from_env"]
