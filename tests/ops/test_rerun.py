"""Curator reruns: the trigger form's parameters, dry runs, and stage reruns that re-use manifests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ops_support import ROOT, run_demo, task_states, xcom

from imaging_ingest.catalog import Catalog
from imaging_ingest.config import CollectionConfig
from imaging_ingest.config.settings import Settings
from imaging_ingest.intake.submission_index import known_submission_ids, read_index
from imaging_ingest.pipeline.ingest import Ingest
from imaging_ingest.pipeline.rerun import SELECTABLE_STAGES, RunRequest, StagePlan
from imaging_ingest.storage.objects import ObjectStore

SOURCE_PATH = os.pathsep.join([str(ROOT / "include"), str(ROOT / "dags")])


def _parse_dag(env: dict[str, str]) -> dict:
    """Parse the DAGs folder in a fresh process (as the dag-processor does) and describe ingest__demo."""
    code = textwrap.dedent(
        f"""
        import json, sys
        from airflow.dag_processing.dagbag import BundleDagBag
        bag = BundleDagBag({str(ROOT / "dags")!r}, bundle_path={str(ROOT / "dags")!r})
        dag = bag.dags["ingest__demo"]
        params = {{name: dag.params.get_param(name).schema | {{"default": dag.params.get_param(name).value,
                  "description": dag.params.get_param(name).description}} for name in dag.params}}
        def callbacks(task):
            found = task.on_failure_callback or []
            return found if isinstance(found, list) else [found]
        deadline = dag.deadline[0] if dag.deadline else None
        print(json.dumps({{
            "errors": list(bag.import_errors),
            "params": params,
            "deadline": None if deadline is None else {{
                "interval_s": deadline.interval.total_seconds(),
                "callback": deadline.callback.path,
                "kwargs": deadline.callback.kwargs,
                "reference": type(deadline.reference).__name__,
            }},
            "failure_callbacks": sorted({{getattr(cb, "__qualname__", str(cb)) for t in dag.tasks
                                         for cb in callbacks(t)}}),
            "tasks_without_callback": sorted(t.task_id for t in dag.tasks if not callbacks(t)),
            "heavy": sorted(m for m in ("pandas", "pydicom", "imaging_ingest.catalog", "imaging_ingest.pipeline.ingest") if m in sys.modules),
        }}, default=str))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=os.environ | {"PYTHONPATH": SOURCE_PATH} | env,
        capture_output=True, text=True, check=True, timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _public_objects(store: ObjectStore) -> list[tuple[str, str | None]]:
    return sorted((o.key, store.head("public", o.key).sha256) for o in store.list("public", "demo/"))


def _modified(store: ObjectStore, key: str) -> object:
    return store.client.head_object(Bucket=store.bucket("staging"), Key=key)["LastModified"]


def test_trigger_form_offers_known_submissions_from_the_local_index(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bare = _parse_dag({"IMAGING_INGEST_HOME": str(home)})
    assert bare["errors"] == []
    params = bare["params"]
    assert set(params) == {"submission", "stages", "force", "dry_run"}
    for name, schema in params.items():
        assert schema.get("title") and len(schema.get("description", "")) > 30, name
    assert "examples" not in params["submission"]  # no index yet: a free text field
    assert params["stages"]["items"]["enum"] == list(SELECTABLE_STAGES) == params["stages"]["examples"]
    assert params["stages"]["default"] == list(SELECTABLE_STAGES)
    assert set(params["stages"]["values_display"]) == set(SELECTABLE_STAGES)
    assert params["force"]["default"] is False and params["dry_run"]["default"] is False
    assert bare["heavy"] == []
    assert bare["deadline"] == {
        "interval_s": 360 * 60.0,
        "callback": "imaging_dags.callbacks.deadline_missed",
        "kwargs": {"collection": "demo", "minutes": 360},
        "reference": "DagRunQueuedAtDeadline",
    }
    assert bare["failure_callbacks"] == ["task_failed"] and bare["tasks_without_callback"] == []

    index = home / "index" / "demo.submissions.json"
    index.parent.mkdir(parents=True)
    index.write_text(json.dumps({"collection": "demo", "submissions": [
        {"id": "sub-00000000000000b2", "state": "published"}, {"id": "sub-00000000000000a1", "state": "verified"},
    ]}))
    indexed = _parse_dag({"IMAGING_INGEST_HOME": str(home)})
    assert indexed["params"]["submission"]["examples"] == ["sub-00000000000000b2", "sub-00000000000000a1"]
    assert not (home / "catalog.sqlite").exists()  # parsing never opened the catalog


def test_run_request_validation() -> None:
    from imaging_dags.factory import STAGES

    assert STAGES[2:-1] == SELECTABLE_STAGES  # every task between claim and announce, in order
    assert RunRequest.from_params(None) == RunRequest()
    request = RunRequest.from_params({"submission": " sub-1 ", "stages": ["publish", "verify"], "dry_run": True})
    assert request.submission == "sub-1"
    assert request.stages == ("verify", "publish")  # pipeline order, whatever the form's order
    assert request.partial and request.proceed_if_published
    plan = StagePlan(request)
    assert [plan.action(s) for s in ("inventory", "verify", "register", "publish")] == ["reuse", "run", "skip", "skip"]
    assert RunRequest.from_params({"stages": None}).stages == SELECTABLE_STAGES  # a cleared picker means all
    assert not RunRequest.from_params({"stages": list(SELECTABLE_STAGES)}).partial
    with pytest.raises(ValueError, match="unknown stage.*announce"):
        RunRequest.from_params({"stages": ["announce"]})


def test_one_plan_decides_for_approvals_and_rerun_parameters() -> None:
    """Curators' approvals and a curator's rerun parameters are two inputs to the same decision."""
    everything = StagePlan()
    assert {everything.action(s) for s in SELECTABLE_STAGES} == {"run"}
    approvals = StagePlan(approvals=True)
    assert [approvals.action(s) for s in SELECTABLE_STAGES] == ["reuse"] * 4 + ["run"] * 4
    dry_approvals = StagePlan(RunRequest(dry_run=True), approvals=True)
    assert [dry_approvals.action(s) for s in SELECTABLE_STAGES] == ["reuse"] * 4 + ["run", "run", "skip", "skip"]
    later = StagePlan(RunRequest(stages=("verify", "register", "publish")))
    assert [later.action(s) for s in SELECTABLE_STAGES] == ["reuse"] * 5 + ["run"] * 3
    with pytest.raises(ValueError, match="announce is not a selectable stage"):
        everything.action("announce")


@pytest.mark.e2e
def test_dry_run_then_publish_then_rerun_later_stages(
    demo_env: Settings, demo_config: CollectionConfig, submission: Path
) -> None:
    store, catalog = ObjectStore(demo_env), Catalog.from_url(demo_env.catalog_url)
    (ready,) = Ingest(demo_config, demo_env).discover()
    sub = ready["submission_id"]
    assert known_submission_ids(demo_env.home, "demo") == [sub]  # discover wrote the form's index

    # 1. A dry run stops after verify: a report, nothing registered or published.
    dry = run_demo({"submission": sub, "dry_run": True})
    states = task_states(dry)
    assert str(dry.state) == "success", states
    assert [states[t] for t in ("verify", "register", "publish", "announce")] == ["success", "skipped", "skipped", "skipped"]
    report = xcom(dry, "verify")["extra"]["dry_run_report"]
    assert report["dry_run"] is True and report["files_in"] == report["would_publish"] + report["quarantined"]
    assert report["would_publish"] > 0 and report["current_version"] is None
    assert catalog.latest_version("demo") is None and catalog.instances("demo") == []
    assert list(store.list("public", "demo/")) == []
    assert "source_path" not in json.dumps(report) and submission.name not in json.dumps(report)

    # 2. A normal run of the same submission publishes what the dry run announced.
    real = run_demo({"submission": sub})
    assert str(real.state) == "success", task_states(real)
    summary = xcom(real, "announce")
    assert summary["published"] == report["would_publish"] and summary["version"] == 1
    published = _public_objects(store)
    staged_key = Ingest(demo_config, demo_env).manifests(sub).key("staged")
    staged_at = _modified(store, staged_key)
    assert [e["id"] for e in read_index(demo_env.home, "demo")] == [sub]
    assert read_index(demo_env.home, "demo")[0]["state"] == "published"

    # 3. Rerun verify, register and publish only: earlier stages re-use their manifests,
    #    the run is idempotent (same objects, same version), even though the submission is published.
    rerun = run_demo({"submission": sub, "stages": ["verify", "register", "publish"]})
    assert str(rerun.state) == "success", task_states(rerun)
    for stage in ("stage_raw", "inventory", "screen"):
        result = xcom(rerun, stage)
        assert result["extra"] == {"reused": True}, stage
        assert result["manifest"].endswith(".parquet")
    # a re-used batch reports what its de-identification removed, as the run that did it reported;
    # the timings of that run's uploads are not its own (it uploaded nothing)
    did = {k: v for k, v in xcom(real, "deidentify", 0)["extra"].items() if k != "timings"}
    assert "upload" in xcom(real, "deidentify", 0)["extra"]["timings"]
    assert xcom(rerun, "deidentify", 0)["extra"] == {"reused": True} | did
    assert xcom(rerun, "plan_batches") == xcom(real, "plan_batches")
    assert xcom(rerun, "verify")["extra"] != {"reused": True}
    assert _modified(store, staged_key) == staged_at  # stage_raw did not run again
    assert _public_objects(store) == published
    assert [v.number for v in catalog.versions("demo")] == [1]
    assert xcom(rerun, "announce")["published"] == summary["published"]
    catalog.dispose()


@pytest.mark.e2e
def test_a_stage_rerun_without_earlier_manifests_fails_clearly(
    demo_env: Settings, demo_config: CollectionConfig
) -> None:
    (ready,) = Ingest(demo_config, demo_env).discover()
    run = run_demo({"submission": ready["submission_id"], "stages": ["verify"]})
    states = task_states(run)
    assert str(run.state) == "failed"
    assert states["stage_raw"] == "failed" and states["claim"] == "success"
    assert states["publish"] in {"upstream_failed", "None"}


@pytest.mark.e2e
def test_an_unknown_submission_fails_at_once_without_retries(demo_env: Settings) -> None:
    run = run_demo({"submission": "sub-00000000000000ff"})
    states = task_states(run)
    assert str(run.state) == "failed" and states["discover"] == "failed"
    (ti,) = [t for t in run.get_task_instances() if t.task_id == "discover"]
    assert ti.try_number == 1  # AirflowFailException: a bad parameter is not retried
