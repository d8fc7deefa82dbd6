"""The catalog schema is owned by Alembic: up, down and up again, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect

from imaging_ingest.catalog import Catalog
from imaging_ingest.catalog.migrate import ALEMBIC_INI, SchemaPredatesMigrations, head_revision
from imaging_ingest.catalog.models import Base
from imaging_ingest.cli import main

ROOT = Path(__file__).resolve().parents[2]
CATALOG_TABLES = {t.name for t in Base.metadata.sorted_tables}


def _tables(catalog: Catalog) -> set[str]:
    return set(inspect(catalog.engine).get_table_names())


def test_upgrade_then_downgrade_base_then_upgrade_again(catalog_url: str) -> None:
    catalog = Catalog.from_url(catalog_url, create=False)
    try:
        assert catalog.schema_revision() is None
        catalog.upgrade()
        assert catalog.schema_revision() == head_revision()
        assert _tables(catalog) >= CATALOG_TABLES
        catalog.downgrade("base")
        assert catalog.schema_revision() is None
        assert not CATALOG_TABLES & _tables(catalog)
        catalog.upgrade()
        assert catalog.schema_revision() == head_revision()
        assert _tables(catalog) >= CATALOG_TABLES
    finally:
        catalog.dispose()


def test_the_models_and_the_migrations_agree(catalog: Catalog) -> None:
    with catalog.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_opening_a_catalog_at_head_is_a_no_op(catalog_url: str) -> None:
    first = Catalog.from_url(catalog_url)
    first.collections()
    second = Catalog.from_url(catalog_url)
    assert second.schema_revision() == head_revision()
    first.dispose()
    second.dispose()


def test_a_process_checks_the_schema_once_per_database(catalog_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from imaging_ingest.catalog import migrate

    checks: list[str] = []
    real = migrate.current_revision

    def counting(engine: Engine) -> str | None:
        checks.append("checked")
        return real(engine)

    monkeypatch.setattr(migrate, "current_revision", counting)
    first = Catalog.from_url(catalog_url)
    assert len(checks) == 1
    second = Catalog.from_url(catalog_url)
    assert len(checks) == 1  # the second opening trusts the first one's check
    assert second.schema_revision() == head_revision()
    second.downgrade("base")  # a downgrade forgets: the next opening migrates again
    third = Catalog.from_url(catalog_url)
    assert third.schema_revision() == head_revision()
    for catalog in (first, second, third):
        catalog.dispose()


def test_concurrent_openers_all_get_a_migrated_catalog(catalog_url: str) -> None:
    def open_one(_: int) -> str | None:
        catalog = Catalog.from_url(catalog_url)
        try:
            catalog.collections()
            return catalog.schema_revision()
        finally:
            catalog.dispose()

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert set(pool.map(open_one, range(4))) == {head_revision()}


def test_a_catalog_made_before_migrations_is_refused_with_advice(catalog_url: str) -> None:
    engine = create_engine(catalog_url)
    Base.metadata.create_all(engine)
    engine.dispose()
    with pytest.raises(SchemaPredatesMigrations, match="stamp"):
        Catalog.from_url(catalog_url)


def test_alembic_command_line_with_the_packaged_config(catalog_url: str) -> None:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "include"), os.environ.get("PYTHONPATH", "")])}
    for step in (["upgrade", "head"], ["downgrade", "base"], ["upgrade", "head"], ["current"]):
        out = subprocess.run(
            [sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI), "-x", f"url={catalog_url}", *step],
            env=env, capture_output=True, text=True,
        )
        assert out.returncode == 0, out.stderr
    assert head_revision() in out.stdout


def test_catalog_command(catalog_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "upgrade", "--url", catalog_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["revision"] == head_revision()
    assert main(["catalog", "downgrade", "base", "--url", catalog_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["revision"] is None
    assert main(["catalog", "current", "--url", catalog_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0] == {
        "catalog": json.loads(json.dumps(create_engine(catalog_url).url.render_as_string(hide_password=True))),
        "revision": None,
        "head": head_revision(),
    }
    with pytest.raises(SystemExit):
        main(["catalog", "downgrade", "--url", catalog_url])


OPEN_AND_REPORT_ALEMBIC = (
    "import sys\n"
    "from imaging_ingest.catalog import Catalog\n"
    "catalog = Catalog.from_url(sys.argv[1])\n"
    "catalog.collections()\n"
    "catalog.dispose()\n"
    "print('alembic' in sys.modules)\n"
)


def _opening_imports_alembic(url: str) -> bool:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "include"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", OPEN_AND_REPORT_ALEMBIC, url], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return {"True": True, "False": False}[out.stdout.strip()]


def test_opening_a_catalog_at_head_does_not_import_alembic(catalog_url: str) -> None:
    assert _opening_imports_alembic(catalog_url)  # a new database: migrated, through Alembic
    assert not _opening_imports_alembic(catalog_url)  # now at head: checked with SQLAlchemy alone


def test_the_head_read_from_the_migration_files_is_alembics() -> None:
    from alembic.script import ScriptDirectory

    from imaging_ingest.catalog import migrate

    chain = migrate._declared_revisions()
    assert chain is not None  # the shipped migrations are a plain chain: no Alembic needed to find the head
    assert migrate._linear_head(chain) == ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    assert head_revision() == migrate._linear_head(chain)
    # a branched or broken history is left to Alembic
    assert migrate._linear_head({"a": None, "b": "a", "c": "a"}) is None
    assert migrate._linear_head({"a": None, "b": "x"}) is None
    assert migrate._linear_head({}) is None


def test_a_version_table_with_two_heads_gives_alembics_error(catalog_url: str) -> None:
    from alembic.util import CommandError
    from sqlalchemy import text

    catalog = Catalog.from_url(catalog_url)
    try:
        with catalog.engine.begin() as connection:
            connection.execute(text("INSERT INTO alembic_version (version_num) VALUES ('other')"))
        with pytest.raises(CommandError, match="more than one head"):
            catalog.schema_revision()
    finally:
        catalog.dispose()
