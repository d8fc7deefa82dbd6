"""``pip install imaging-ingest`` from a wheel gives a package that imports: every dependency is declared.

The wheel is built from this checkout and installed, with its declared dependencies and
extras only, into a fresh virtual environment outside the repository; then every module of
every subpackage is imported there. A dependency the code imports but ``pyproject.toml``
does not declare fails this test, as a fresh install would fail for a user.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.packaging

IMPORT_ALL = """
import importlib, pkgutil, sys
import imaging_ingest
assert "site-packages" in imaging_ingest.__file__, imaging_ingest.__file__
failed = []
for module in pkgutil.walk_packages(imaging_ingest.__path__, "imaging_ingest."):
    if ".migrations" in module.name or module.name.endswith("__main__"):
        continue
    try:
        importlib.import_module(module.name)
    except Exception as exc:
        failed.append(f"{module.name}: {exc!r}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built once for the module's tests."""
    dist = tmp_path_factory.mktemp("dist")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(ROOT)], dist)
    assert built.returncode == 0, built.stderr[-3000:]
    (found,) = dist.glob("imaging_ingest-*.whl")
    return found


def test_a_wheel_installed_into_a_fresh_venv_imports_every_subpackage(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    installed = _run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-c",
            str(ROOT / "constraints.txt"),
            f"imaging-ingest[all] @ {wheel.as_uri()}",
        ],
        tmp_path,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]

    imported = _run([python, "-c", IMPORT_ALL], tmp_path)
    assert imported.returncode == 0, imported.stdout[-3000:] + imported.stderr[-3000:]
    cli = _run([str(env_dir / "bin" / "imaging-ingest"), "--version"], tmp_path)
    assert cli.returncode == 0 and "0.1.0" in cli.stdout + cli.stderr


def test_the_wheel_carries_the_data_files_the_stages_read(wheel: Path) -> None:
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "imaging_ingest/data/ps3_15_table_e1_1.csv",
        "imaging_ingest/data/quarantine_reasons.csv",
        "imaging_ingest/catalog/alembic.ini",
        "imaging_ingest/catalog/migrations/env.py",
        "imaging_ingest/api/templates/",
        "imaging_ingest/pipeline/stages/intake.py",
    ):
        assert any(n.startswith(needed) for n in names), needed
