"""The archive's page in the Airflow UI: collections at a glance and the quarantine review queue.

Registers a FastAPI app under ``/archive`` on the api-server and a top-level menu entry
that shows it inside Airflow's navigation. The routes authenticate with Airflow's own auth
manager (the UI's session cookie, or a bearer token from ``POST /auth/token``), show each
collection only to users who may read its DAG, and let only curators (role ``Curator``,
``imaging_ingest.curation.curators``) approve or reject quarantined files. The decisions go through
``imaging_ingest.curation.quarantine``: the same library functions as the command line.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from archive_ui.app import create_app

ARCHIVE_PREFIX = "/archive"


class ArchivePlugin(AirflowPlugin):
    name = "imaging_archive"
    fastapi_apps = [{"app": create_app(), "url_prefix": ARCHIVE_PREFIX, "name": "Imaging archive"}]
    external_views = [
        {
            "name": "Archive",
            "href": f"{ARCHIVE_PREFIX}/",
            "destination": "nav",
            "url_route": "archive",
            "nav_top_level": True,
        }
    ]
