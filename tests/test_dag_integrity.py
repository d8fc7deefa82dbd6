"""DAG contract tests: every DAG imports, has the expected tasks and settings, and parses cheaply."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DAGS = ROOT / "dags"
#: Subprocesses import this checkout's library, not whichever copy the venv has installed.
SOURCE_PATH = {"PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(DAGS)])}

STAGES = [
    "discover",
    "claim",
    "stage_raw",
    "inventory",
    "plan_batches",
    "deidentify",
    "screen",
    "verify",
    "register",
    "publish",
    "announce",
]


def _bag(folder: Path = DAGS):
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(str(folder), bundle_path=str(DAGS))


@pytest.fixture(scope="module")
def bag():
    return _bag()


def test_no_import_errors(bag) -> None:
    assert bag.import_errors == {}


def test_one_ingest_dag_per_collection_config(bag) -> None:
    configs = sorted(p.stem for p in (DAGS / "collections").glob("*.yaml"))
    assert sorted(d.removeprefix("ingest__") for d in bag.dags if d.startswith("ingest__")) == configs
    assert not [d for d in bag.dags if d.startswith("invalid_config__")], "a shipped config is invalid"


def test_ingest_dag_has_every_stage_in_order(bag) -> None:
    dag = bag.dags["ingest__demo"]
    assert [t.task_id for t in dag.tasks] == STAGES
    order = {t.task_id: t for t in dag.tasks}
    for before, after in zip(STAGES, STAGES[1:], strict=False):
        assert before in order[after].upstream_task_ids, f"{before} should run before {after}"
    assert type(order["deidentify"]).__name__.endswith("MappedOperator")  # one task instance per batch


def test_ingest_dags_follow_conventions(bag) -> None:
    for dag in bag.dags.values():
        assert dag.tags and "imaging-ingest" in dag.tags
        assert dag.doc_md
        assert dag.catchup is False
        if dag.dag_id.startswith("ingest__"):
            assert dag.max_active_runs == 1
            assert {"submission", "force"} <= set(dag.params)
            for task in dag.tasks:
                assert task.retries >= 1, task.task_id


def test_dag_files_parse_without_heavy_imports_or_io(tmp_path: Path) -> None:
    """Parsing must not import pandas, pydicom or GX, nor touch the catalog or S3.

    (boto3 is not on the list: Airflow's Amazon provider imports it itself while it
    registers its Asset URI handlers, whatever our DAG files do.)
    """
    code = textwrap.dedent(
        f"""
        import json, sys, time
        sys.path.insert(0, {str(DAGS)!r})
        from airflow.dag_processing.dagbag import BundleDagBag
        start = time.perf_counter()
        bag = BundleDagBag({str(DAGS)!r}, bundle_path={str(DAGS)!r})
        heavy = sorted(m for m in ("pandas", "pydicom", "great_expectations", "pyarrow", "imaging_ingest.catalog", "imaging_ingest.storage.objects") if m in sys.modules)
        print(json.dumps({{"dags": sorted(bag.dags), "errors": list(bag.import_errors), "heavy": heavy,
                          "seconds": time.perf_counter() - start}}))
        """
    )
    env = os.environ | SOURCE_PATH | {
        "IMAGING_INGEST_CATALOG_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
        "IMAGING_INGEST_S3_ENDPOINT": "http://127.0.0.1:1",
        "IMAGING_INGEST_HOME": str(tmp_path / "no-such-home"),
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["errors"] == []
    assert "ingest__demo" in report["dags"]
    assert report["heavy"] == []
    assert not (tmp_path / "no-such-home").exists()


def test_a_bad_config_becomes_a_visible_invalid_dag_and_spares_the_others(tmp_path: Path) -> None:
    folder = tmp_path / "collections"
    folder.mkdir()
    (folder / "good.yaml").write_text((DAGS / "collections" / "demo.yaml").read_text().replace("id: demo", "id: good"))
    (folder / "broken.yaml").write_text("id: broken\ntitle: Broken\nlicense: CC-BY-4.0\ndrop: {url: 'ftp://x'}\n")
    code = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(DAGS)!r})
        from airflow.dag_processing.dagbag import BundleDagBag
        bag = BundleDagBag({str(DAGS)!r}, bundle_path={str(DAGS)!r})
        dag = bag.dags.get("invalid_config__broken")
        print(json.dumps({{"dags": sorted(bag.dags), "doc": dag.doc_md if dag else None}}))
        """
    )
    env = os.environ | SOURCE_PATH | {"IMAGING_INGEST_COLLECTIONS": str(folder)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert [d for d in report["dags"] if d != "fixity_audit" and not d.startswith("mirror__")] == [
        "ingest__good", "invalid_config__broken"]
    assert "broken.yaml" in report["doc"] and "drop.url" in report["doc"]
    assert "broken.yaml" in out.stderr + out.stdout  # logged at parse time, naming the file


def test_one_mirror_dag_per_target_scheduled_on_the_collections_assets(bag) -> None:
    targets = sorted(p.stem for p in (DAGS / "mirrors").glob("*.yaml"))
    assert targets, "dags/mirrors ships an example target"
    assert sorted(d.removeprefix("mirror__") for d in bag.dags if d.startswith("mirror__")) == targets
    dag = bag.dags["mirror__offsite"]
    assert [t.task_id for t in dag.tasks] == ["plan", "sync", "audit"]
    assert "plan" in dag.task_dict["sync"].upstream_task_ids and "sync" in dag.task_dict["audit"].upstream_task_ids
    assert type(dag.task_dict["sync"]).__name__.endswith("MappedOperator")  # one task instance per collection
    assert dag.max_active_runs == 1 and dag.is_paused_upon_creation is True
    assert [a.name for a in dag.timetable.asset_condition.objects] == ["imaging-collection-demo"]
    assert {"collection", "repair"} <= set(dag.params)


def test_a_bad_mirror_target_becomes_a_visible_invalid_dag(tmp_path: Path) -> None:
    folder = tmp_path / "mirrors"
    folder.mkdir()
    (folder / "good.yaml").write_text("id: good\nbucket: mirror-good\nendpoint: http://127.0.0.1:1\n")
    (folder / "bad.yaml").write_text("id: bad\nbucket: Not_A_Bucket\nrestricted: maybe\n")
    code = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(DAGS)!r})
        from airflow.dag_processing.dagbag import BundleDagBag
        bag = BundleDagBag({str(DAGS)!r}, bundle_path={str(DAGS)!r})
        dag = bag.dags.get("invalid_mirror__bad")
        print(json.dumps({{"dags": sorted(bag.dags), "doc": dag.doc_md if dag else None, "errors": list(bag.import_errors)}}))
        """
    )
    env = os.environ | SOURCE_PATH | {"IMAGING_INGEST_MIRRORS": str(folder)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["errors"] == []
    assert [d for d in report["dags"] if "mirror" in d] == ["invalid_mirror__bad", "mirror__good"]
    assert "bad.yaml" in report["doc"] and "bucket" in report["doc"] and "restricted" in report["doc"]
