"""Only curators release or refuse quarantined images, and a collection may need two of them.

Airflow's User and Op roles may edit DAG runs; before, that was enough to approve an image
that screening held back. Now the plugin and the command line ask for a curator (the
Airflow role ``Curator``, or a name in ``IMAGING_INGEST_CURATORS``), and a collection
with ``release_approvals: 2`` needs two different curators; every step is audited.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from imaging_ingest.catalog import Catalog
from imaging_ingest.cli import main
from imaging_ingest.config import CollectionConfig
from imaging_ingest.config.settings import Settings
from imaging_ingest.curation import quarantine
from imaging_ingest.curation.curators import is_curator, release_approvals

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins"))

pytestmark = pytest.mark.security


@dataclass
class Role:
    name: str


@dataclass
class FabUser:
    """What the FAB auth manager's user looks like to the plugin."""

    username: str
    roles: list[Role] = field(default_factory=list)

    def get_name(self) -> str:
        return self.username


@dataclass
class SimpleUser:
    """The simple auth manager's user: one fixed role (viewer, user, op, admin)."""

    username: str
    role: str

    def get_name(self) -> str:
        return self.username


@pytest.fixture
def queue(catalog: Catalog, demo_config: CollectionConfig) -> list[int]:
    catalog.ensure_collection(demo_config)
    catalog.discover("demo", "sub-00000000000000c1", "site-a", "file:///drop/site-a", "f" * 64)
    catalog.add_quarantine("demo", "sub-00000000000000c1", [
        (3, "sc/1.dcm", "screen", "burned-in text likely", "k3"),
        (4, "sc/2.dcm", "screen", "burned-in text likely", "k4"),
    ])
    return [item.id for item in quarantine.pending(catalog, "demo")]


@pytest.fixture
def collections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo collection's config with the two-person rule."""
    folder = tmp_path / "collections"
    folder.mkdir()
    document = yaml.safe_load((ROOT / "dags" / "collections" / "demo.yaml").read_text())
    document["release_approvals"] = 2
    (folder / "demo.yaml").write_text(yaml.safe_dump(document))
    monkeypatch.setenv("IMAGING_INGEST_COLLECTIONS", str(folder))
    return folder


def test_who_is_a_curator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGING_INGEST_CURATORS", raising=False)
    assert is_curator(FabUser("ann", [Role("Viewer"), Role("Curator")]))
    for user in (FabUser("op", [Role("Op"), Role("User")]), FabUser("root", [Role("Admin")]),
                 SimpleUser("admin", "admin"), SimpleUser("u", "user"), "someone"):
        assert not is_curator(user), user  # editing DAG runs (User, Op), even Admin, is not curating
    monkeypatch.setenv("IMAGING_INGEST_CURATORS", "ann, bob")
    assert is_curator(SimpleUser("bob", "viewer")) and is_curator("ann") and not is_curator("eve")


def _plugin(settings: Settings, monkeypatch: pytest.MonkeyPatch, user: Any) -> TestClient:
    from archive_ui import app as plugin

    monkeypatch.setenv("IMAGING_INGEST_CATALOG_URL", settings.catalog_url)
    monkeypatch.setattr(plugin, "_can", lambda *args, **kwargs: True)  # Airflow may read the DAG: not the question
    application = plugin.create_app()
    application.dependency_overrides[plugin.current_user] = lambda: user
    return TestClient(application)


def test_only_curators_decide_in_the_plugin_and_two_person_release_works(
    settings: Settings, catalog: Catalog, queue: list[int], collections: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("IMAGING_INGEST_CURATORS", raising=False)
    item = queue[0]
    for operator in (FabUser("op", [Role("Op")]), FabUser("root", [Role("Admin")])):
        denied = _plugin(settings, monkeypatch, operator).post(f"/api/quarantine/{item}/approve", json={"note": "ok"})
        assert denied.status_code == 403 and "only curators" in denied.json()["detail"]
    ann = _plugin(settings, monkeypatch, FabUser("ann", [Role("Curator")]))
    first = ann.post(f"/api/quarantine/{item}/approve", json={"note": "no text on review"})
    assert first.status_code == 200 and first.json()["state"] == "pending", "one of two approvals"
    again = ann.post(f"/api/quarantine/{item}/approve", json={})
    assert again.status_code == 409 and "different curator" in again.json()["detail"]
    bob = _plugin(settings, monkeypatch, FabUser("bob", [Role("Viewer"), Role("Curator")]))
    second = bob.post(f"/api/quarantine/{item}/approve", json={"note": "agreed"})
    assert second.status_code == 200 and (second.json()["state"], second.json()["decided_by"]) == ("approved", "bob")
    refused = bob.post(f"/api/quarantine/{queue[1]}/reject", json={"note": "text in the pixels"})
    assert refused.status_code == 200 and refused.json()["state"] == "rejected"  # one curator may refuse
    events = [(e.event_type, e.agent, e.outcome) for e in catalog.audit_events()
              if e.event_type.startswith("quarantine")]
    assert ("quarantine-approval", "curator:ann", "1/2") in events
    assert ("quarantine-approval", "curator:bob", "2/2") in events
    assert ("quarantine-review", "curator:bob", "approved") in events
    assert ("quarantine-review", "curator:bob", "rejected") in events


def test_only_curators_decide_on_the_command_line(
    ingest_env: Settings, catalog: Catalog, queue: list[int], collections: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("IMAGING_INGEST_CURATORS", "ann,bob")
    assert release_approvals("demo") == 2
    with pytest.raises(SystemExit) as refused:
        main(["quarantine", "approve", str(queue[0]), "--by", "operator"])
    assert refused.value.code == 2 and "only curators" in capsys.readouterr().err
    assert main(["quarantine", "approve", str(queue[0]), "--by", "ann", "--json"]) == 0
    assert '"state": "pending"' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["quarantine", "approve", str(queue[0]), "--by", "ann"])
    assert "different curator" in capsys.readouterr().err
    assert main(["quarantine", "approve", str(queue[0]), "--by", "bob"]) == 0
    (row,) = [i for i in catalog.quarantine_items("demo") if i.id == queue[0]]
    assert (row.state, row.decided_by) == ("approved", "bob")
