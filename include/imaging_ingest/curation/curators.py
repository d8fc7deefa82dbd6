"""Who may release or refuse a quarantined file: curators, and how many of them a collection needs.

Editing a DAG's runs (Airflow's User and Op roles) is an operator's right, not a
curator's: approving an image that screening held back publishes what may be PHI, so
only curators decide. A curator is an Airflow user with the role ``Curator`` (FAB auth
manager: ``airflow roles create Curator``, then add the role to the user), or a user
named in ``IMAGING_INGEST_CURATORS`` (comma-separated; the simple auth manager has fixed
roles, and the command line has only the operator's login name). A collection may ask
for two (or more) different curators before a quarantined image is released
(``release_approvals`` in its config); every approval and rejection is audited.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CURATORS_ENV",
    "CURATOR_ROLE",
    "NotCurator",
    "curator_names",
    "is_curator",
    "release_approvals",
    "require_curator",
    "user_name",
]

CURATOR_ROLE = "Curator"
CURATORS_ENV = "IMAGING_INGEST_CURATORS"


class NotCurator(PermissionError):
    """The user may not approve or reject quarantined files."""


def curator_names(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    env = os.environ if environ is None else environ
    return frozenset(n.strip() for n in env.get(CURATORS_ENV, "").split(",") if n.strip())


def user_name(user: Any) -> str:
    """An Airflow user's name (FAB or simple auth manager), or the string given."""
    if isinstance(user, str):
        return user
    return str(getattr(user, "get_name", lambda: None)() or getattr(user, "username", None) or "")


def _roles(user: Any) -> set[str]:
    names = {str(getattr(role, "name", role)).lower() for role in (getattr(user, "roles", None) or [])}
    role = getattr(user, "role", None)  # the simple auth manager's single role
    if role is not None:
        names.add(str(getattr(role, "value", role)).lower())
    return names


def is_curator(user: Any, environ: Mapping[str, str] | None = None) -> bool:
    """True for a user with the Curator role, or named in ``IMAGING_INGEST_CURATORS``; never by default."""
    name = user_name(user)
    return bool(name) and (CURATOR_ROLE.lower() in _roles(user) or name in curator_names(environ))


def require_curator(user: Any, environ: Mapping[str, str] | None = None) -> str:
    """The curator's name, or ``NotCurator``."""
    if not is_curator(user, environ):
        raise NotCurator(
            f"only curators may approve or reject quarantined files: give the user the Airflow role "
            f"{CURATOR_ROLE} or name them in {CURATORS_ENV}"
        )
    return user_name(user)


def release_approvals(collection_id: str, folder: str | Path | None = None) -> int:
    """How many different curators must approve a quarantined image of this collection (its config; 1 if unset).

    A collection whose config cannot be read asks for the most any collection of the folder asks for, so
    that a broken config never lowers the bar.
    """
    from imaging_ingest.config import load_collections

    folder = Path(folder or os.environ.get("IMAGING_INGEST_COLLECTIONS") or "dags/collections")
    loaded = load_collections(folder) if folder.is_dir() else None
    if loaded is None:
        return 1
    by_id = {c.id: c.release_approvals for c in loaded.configs}
    if collection_id in by_id:
        return by_id[collection_id]
    return max(by_id.values(), default=1) if loaded.errors else 1
