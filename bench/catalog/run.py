"""``make bench-catalog``: the catalog's pipeline queries on a PostgreSQL catalog at archive scale.

Loads (with ``generate_series``, server-side) 50 collections, 50,000 patients, 100,000
studies, 400,000 series and 5,000,000 published instances into a schema of its own, then
times what the pipeline does per submission, through the real ``Catalog`` methods:

- pseudonym lookup/assignment, registration of a 20,000-instance submission, the
  publish-time lookups and the version update, a version's release listing, the audit
  trail of a series and of an object, the fixity sample;

and EXPLAINs every SELECT/UPDATE those methods sent (captured from the engine), failing
the verdict if any plan scans a whole large table. Results go to
``bench/results/catalog.json``.

Sizes come from the environment (defaults are the issue's): ``BENCH_COLLECTIONS``,
``BENCH_PATIENTS``, ``BENCH_INSTANCES``, ``BENCH_SUBMISSION`` (instances registered),
``BENCH_PG_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``);
``BENCH_KEEP=1`` keeps the schema for inspection.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "include"))
sys.path.insert(0, str(REPO / "bench"))

from report import header, spread  # noqa: E402
from sqlalchemy import create_engine, event, text  # noqa: E402

from imaging_ingest.catalog import Catalog, InstanceRecord  # noqa: E402
from imaging_ingest.catalog.models import Base, Instance  # noqa: E402

RESULTS = REPO / "bench" / "results" / "catalog.json"
#: A sequential scan counts as a whole-table scan when the table holds at least this many rows
#: (scanning a table of a few pages, such as the 50 collections' versions, is the best plan).
LARGE_TABLE_ROWS = 10_000

STUDIES_PER_PATIENT = 2
SERIES_PER_STUDY = 4


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def log(message: str) -> None:
    print(f"[bench-catalog] {message}", flush=True)


@contextmanager
def timed(results: dict[str, Any], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    results[name] = round(time.perf_counter() - start, 3)
    log(f"{name}: {results[name]:.2f} s")


# -- bulk load ----------------------------------------------------------------------------

LOAD_SQL = [
    # collections and one submission each
    """INSERT INTO collections (id, title, license, tier, created_at)
       SELECT 'c' || lpad(c::text, 3, '0'), 'Collection ' || c, 'CC-BY-4.0', 'public', now()
       FROM generate_series(1, :collections) c""",
    """INSERT INTO submissions (id, collection_id, name, source_url, fingerprint, state, files_in, published,
                               quarantined, version, created_at, updated_at, published_at)
       SELECT 'sub-c' || lpad(c::text, 3, '0'), 'c' || lpad(c::text, 3, '0'), 'batch-' || c, 'file:///drop/' || c,
              md5(c::text), 'published', 0, 0, 0, 1, now(), now(), now()
       FROM generate_series(1, :collections) c""",
    # patients round-robin over collections; ids follow the series so that children can compute parents
    """INSERT INTO patients (id, collection_id, pseudonym, id_hash, created_at)
       SELECT p, 'c' || lpad((1 + (p - 1) % :collections)::text, 3, '0'), 'P-' || lpad(p::text, 6, '0'),
              encode(sha256(('patient' || p)::bytea), 'hex'), now()
       FROM generate_series(1, :patients) p""",
    """INSERT INTO studies (id, collection_id, uid, patient_id, study_date)
       SELECT s, 'c' || lpad((1 + ((s - 1) / :studies_per_patient) % :collections)::text, 3, '0'),
              '2.25.1' || lpad(s::text, 12, '0'), 1 + (s - 1) / :studies_per_patient, '20200101'
       FROM generate_series(1, :patients * :studies_per_patient) s""",
    """INSERT INTO series (id, collection_id, uid, study_id, modality, submission_id)
       SELECT r, 'c' || lpad((1 + ((r - 1) / (:series_per_study * :studies_per_patient)) % :collections)::text, 3, '0'),
              '2.25.2' || lpad(r::text, 12, '0'), 1 + (r - 1) / :series_per_study, 'CT',
              'sub-c' || lpad((1 + ((r - 1) / (:series_per_study * :studies_per_patient)) % :collections)::text, 3, '0')
       FROM generate_series(1, :patients * :studies_per_patient * :series_per_study) r""",
    """INSERT INTO instances (id, collection_id, sop_uid, sop_class_uid, series_id, object_key, tier, size, sha256,
                             md5, submission_id, published_version, retired_version, fixity_checked_at, created_at)
       SELECT i, s.collection_id, '2.25.3' || lpad(i::text, 12, '0'), '1.2.840.10008.5.1.4.1.1.2', s.id,
              s.collection_id || '/2.25.1' || lpad(s.study_id::text, 12, '0') || '/' || s.uid || '/2.25.3'
                || lpad(i::text, 12, '0') || '.dcm',
              'public', 500000 + i % 1000, encode(sha256(i::text::bytea), 'hex'), md5(i::text), s.submission_id,
              1, NULL, NULL, now()
       FROM generate_series(1, :instances) i
       JOIN series s ON s.id = 1 + (i - 1) % :series_total""",
    """INSERT INTO collection_versions (collection_id, number, release_key, objects, bytes, submission_id, kind, doi,
                                       created_at)
       SELECT collection_id, 1, collection_id || '/versions/1/release.json', count(*), sum(size), min(submission_id),
              'submission', '10.5072/' || collection_id || '.v1', now()
       FROM instances GROUP BY collection_id""",
    # one publication event per object, as publishing them recorded
    """INSERT INTO audit_events (at, event_type, agent, outcome, object_id, object_type, collection_id, detail)
       SELECT now(), 'publication', 'imaging-ingest:publish', 'success', object_key, 'object', collection_id,
              'first listed in version 1'
       FROM instances""",
]

SEQUENCES = ["patients", "studies", "series", "instances"]


def load(engine: Any, sizes: dict[str, int], results: dict[str, Any]) -> None:
    params = dict(sizes, studies_per_patient=STUDIES_PER_PATIENT, series_per_study=SERIES_PER_STUDY,
                  series_total=sizes["patients"] * STUDIES_PER_PATIENT * SERIES_PER_STUDY)
    instance_indexes = [ix for ix in Instance.__table__.indexes]
    audit_indexes = [ix for ix in Base.metadata.tables["audit_events"].indexes]
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL synchronous_commit = off"))
        # Foreign-key triggers off while loading rows that are consistent by construction (superuser only).
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        for index in [*instance_indexes, *audit_indexes]:  # built once after the load: much faster
            index.drop(connection)
        for statement in LOAD_SQL:
            name = statement.split()[2]
            with timed(results, f"load_{name}"):
                connection.execute(text(statement), params)
        with timed(results, "load_indexes"):
            connection.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
            for index in [*instance_indexes, *audit_indexes]:
                index.create(connection)
        for table in SEQUENCES:
            connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection, timed(results, "load_analyze"):
        connection.execute(text("VACUUM ANALYZE"))


# -- capture and EXPLAIN ------------------------------------------------------------------


class Recorder:
    """Collects the statements the catalog sends while a step runs (first parameters of each)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.statements: dict[str, Any] = {}
        self.count = 0
        self.active = False
        self.db_seconds: dict[str, float] = {}
        self._started = 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if self.active:
            head = statement.lstrip().split(None, 1)[0].upper()
            self.db_seconds[head] = self.db_seconds.get(head, 0.0) + time.perf_counter() - self._started

    def _before(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if not self.active:
            return
        self.count += 1
        self._started = time.perf_counter()
        head = statement.lstrip().split(None, 1)[0].upper()
        if head in {"SELECT", "UPDATE", "DELETE"} and statement not in self.statements and not executemany:
            self.statements[statement] = parameters

    @contextmanager
    def step(self) -> Iterator[None]:
        self.statements, self.count, self.db_seconds, self.active = {}, 0, {}, True
        try:
            yield
        finally:
            self.active = False


def _walk(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _walk(child)


def explain(engine: Any, statements: dict[str, Any]) -> list[dict[str, Any]]:
    """EXPLAIN each captured statement; summarise its scans (node, table, index)."""
    plans = []
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SELECT relname, reltuples FROM pg_class WHERE relkind = 'r' AND relnamespace = "
                       "(SELECT oid FROM pg_namespace WHERE nspname = current_schema())")
        large = {name for name, rows in cursor.fetchall() if rows >= LARGE_TABLE_ROWS}
        for statement, parameters in statements.items():
            cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
            plan = cursor.fetchone()[0][0]["Plan"]
            scans = [
                {k: node[k] for k in ("Node Type", "Relation Name", "Index Name") if k in node}
                for node in _walk(plan)
                if "Scan" in node["Node Type"]
            ]
            full = sorted({s["Relation Name"] for s in scans if s["Node Type"] == "Seq Scan"
                           and s.get("Relation Name") in large})
            plans.append({"sql": " ".join(statement.split())[:300], "scans": scans, "full_scans": full,
                          "cost": plan.get("Total Cost")})
        raw.rollback()
    finally:
        raw.close()
    return plans


# -- the pipeline's queries ---------------------------------------------------------------


def submission_records(collection_id: str, count: int, tag: str) -> tuple[list[str], list[InstanceRecord]]:
    """A submission of ``count`` instances: 125 per series, 4 series per study, 2 studies per patient."""
    per_series, records, hashes = 125, [], []
    for n in range(count):
        s, p = n // per_series, n // (per_series * SERIES_PER_STUDY * STUDIES_PER_PATIENT)
        st = n // (per_series * SERIES_PER_STUDY)
        id_hash = f"{tag}-patient-{p:06d}".ljust(64, "0")
        if not hashes or hashes[-1] != id_hash:
            hashes.append(id_hash)
        sop = f"2.25.9{tag}{n:010d}"
        records.append(
            InstanceRecord(
                pseudonym="", id_hash=id_hash, study_uid=f"2.25.7{tag}{st:08d}", study_date="20240101",
                study_description=None, series_uid=f"2.25.8{tag}{s:08d}", modality="CT", body_part="CHEST",
                manufacturer=None, series_description=None, sop_uid=sop, sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                object_key=f"{collection_id}/2.25.7{tag}{st:08d}/2.25.8{tag}{s:08d}/{sop}.dcm", tier="public",
                size=524288, sha256=f"{n:064x}", md5=f"{n:032x}",
            )
        )
    return hashes, records


def run_steps(catalog: Catalog, recorder: Recorder, sizes: dict[str, int], number: int = 0) -> list[dict[str, Any]]:
    """The pipeline's catalog work once; run ``number`` does it on collection ``number + 1`` (same sizes)."""
    collection_id = f"c{number + 1:03d}"
    submission_id = f"sub-bench-{number}"
    steps: list[dict[str, Any]] = []
    hashes, records = submission_records(collection_id, sizes["submission"], str(number + 1))
    with catalog.engine.connect() as connection:
        known_hash = connection.execute(
            text("SELECT id_hash FROM patients WHERE collection_id = :c LIMIT 1"), {"c": collection_id}
        ).scalar_one()
        some_series = connection.execute(
            text("SELECT uid FROM series WHERE collection_id = :c LIMIT 1"), {"c": collection_id}
        ).scalar_one()
        some_key = connection.execute(
            text("SELECT object_key FROM instances WHERE collection_id = :c LIMIT 1"), {"c": collection_id}
        ).scalar_one()
    catalog.discover(collection_id, submission_id, "bench", f"file:///bench/{number}", f"{number:x}".rjust(64, "f"))

    def step(name: str, what: str, fn: Callable[[], Any]) -> Any:
        with recorder.step():
            start = time.perf_counter()
            value = fn()
            seconds = time.perf_counter() - start
        plans = explain(catalog.engine, recorder.statements)
        entry = {
            "step": name,
            "what": what,
            "seconds": round(seconds, 3),
            "statements": recorder.count,
            "database_seconds": {k: round(v, 3) for k, v in sorted(recorder.db_seconds.items())},
            "result": value if isinstance(value, int | str | None) else len(value),
            "full_scans": sorted({t for p in plans for t in p["full_scans"]}),
            "plans": plans,
        }
        steps.append(entry)
        log(f"{name}: {seconds:.3f} s ({entry['database_seconds']} in the database), {recorder.count} statements, "
            f"full scans: {entry['full_scans'] or 'none'}")
        return value

    step("assign_pseudonyms", "pseudonyms of a submission's patients (1 known, new ones created)",
         lambda: catalog.assign_pseudonyms(collection_id, "BENCH", [known_hash, *hashes]))
    step("register", f"register a {len(records)}-instance submission (studies, series, instances, audit events)",
         lambda: catalog.register(collection_id, submission_id, records))
    step("registered_objects", "publish: look up the submission's registered objects by SOP Instance UID",
         lambda: catalog.registered_objects(collection_id, [r.sop_uid for r in records]))
    step("latest_version", "the collection's latest version", lambda: catalog.latest_version(collection_id).number)
    current = {m.key for m in catalog.members(collection_id, 1)}
    step("apply_release", "record version 2 (the new objects published, nothing retired)",
         lambda: catalog.apply_release(collection_id, 2, f"{collection_id}/versions/2/release.json",
                                       current | {r.object_key for r in records}, total_bytes=0,
                                       submission_id=submission_id))
    step("release_listing", "a version's release listing (every object with patient/study/series)",
         lambda: sum(1 for _ in catalog.members(collection_id, 2)))
    step("release_listing_v1", "the listing of the previous version (unchanged by version 2)",
         lambda: sum(1 for _ in catalog.members(collection_id, 1)))
    step("submission", "a submission by id", lambda: catalog.submission(submission_id).state)
    step("submissions", "a collection's submissions", lambda: catalog.submissions(collection_id))
    step("audit_series", "the audit trail of a series", lambda: catalog.audit_trail(some_series))
    step("audit_object", "the audit trail of an object", lambda: catalog.audit_trail(some_key))
    total = catalog.published_object_count(collection_id)
    step("fixity_sample", "the daily fixity sample (1/30 of a collection, least recently checked first)",
         lambda: catalog.fixity_targets(collection_id, limit=math.ceil(total / 30)))
    return steps


def main() -> int:
    sizes = {
        "collections": env_int("BENCH_COLLECTIONS", 50),
        "patients": env_int("BENCH_PATIENTS", 50_000),
        "instances": env_int("BENCH_INSTANCES", 5_000_000),
        "submission": env_int("BENCH_SUBMISSION", 20_000),
    }
    base_url = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    schema = f"bench_catalog_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        server = connection.execute(text("SHOW server_version")).scalar_one()
    url = f"{base_url}?options=-csearch_path%3D{schema}"
    results: dict[str, Any] = {"load": {}}
    started = time.perf_counter()
    try:
        log(f"schema {schema}: {sizes}")
        catalog = Catalog.from_url(url)  # Alembic migrations to head
        load(catalog.engine, sizes, results["load"])
        with catalog.engine.connect() as connection:
            counts = {t: connection.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                      for t in ("collections", "patients", "studies", "series", "instances", "audit_events")}
        log(f"loaded: {counts}")
        recorder = Recorder(catalog.engine)
        runs = [run_steps(catalog, recorder, sizes, number) for number in range(env_int("BENCH_RUNS", 3))]
        catalog.dispose()
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            with admin.connect() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
    steps = runs[0]  # the first run's plans and counts; every run's seconds, median and spread per step
    for entry in steps:
        entry["seconds_runs"] = spread([next(s["seconds"] for s in run if s["step"] == entry["step"]) for run in runs], 3)
    by_name = {s["step"]: s for s in steps}
    report = header("catalog", "the pipeline's catalog work through the real Catalog methods on a loaded "
                    "PostgreSQL schema, every statement EXPLAINed", runs=len(runs)) | {
        "postgresql": server,
        "sizes": sizes | {"rows": counts},
        "load_seconds": results["load"],
        "total_seconds": round(time.perf_counter() - started, 1),
        "goals": {
            "register_20k_under_30s": by_name["register"]["seconds_runs"]["median"] < 30,
            "no_full_table_scans": not any(s["full_scans"] for run in runs for s in run),
        },
        "steps": steps,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, default=str) + "\n")
    log(f"goals: {report['goals']}; written {RESULTS.relative_to(REPO)}")
    return 0 if all(report["goals"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
