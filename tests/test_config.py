"""Collection configs: the shipped ones load; each kind of mistake is rejected naming the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from imaging_ingest.config import ConfigError, License, load_collection_config, load_collections

ROOT = Path(__file__).resolve().parents[1]
INVALID = Path(__file__).parent / "configs" / "invalid"


@pytest.mark.parametrize("path", sorted((ROOT / "dags" / "collections").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    config = load_collection_config(path, environ={})
    assert config.dag_id == f"ingest__{config.id}"


EXPECTED_FIELD = {
    "bad_license.yaml": "license",
    "restricted_public.yaml": "(top level)",
    "bad_schedule.yaml": "schedule",
    "unknown_field.yaml": "bath_size",
    "zero_shift.yaml": "deid.date_shift_days",
    "id_mismatch.yaml": "id",
    "bad_override.yaml": "deid.overrides.PatientSex",
}


@pytest.mark.parametrize("name", sorted(EXPECTED_FIELD))
def test_invalid_configs_name_the_file_and_field(name: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_collection_config(INVALID / name, environ={})
    message = str(error.value)
    assert name in message
    assert f"field '{EXPECTED_FIELD[name]}" in message


def test_every_invalid_example_is_covered() -> None:
    assert sorted(p.name for p in INVALID.glob("*.yaml")) == sorted(EXPECTED_FIELD)


def test_load_collections_isolates_failures(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(
        "id: good\ntitle: Good collection\nlicense: CC-BY-4.0\ndrop: {url: 'file:///srv/drop/good'}\n"
    )
    (tmp_path / "broken.yaml").write_text("id: broken\ntitle: [unclosed\n")
    loaded = load_collections(tmp_path)
    assert [c.id for c in loaded.configs] == ["good"]
    assert len(loaded.errors) == 1 and "broken.yaml" in str(loaded.errors[0])
    assert loaded.configs[0].license is License.CC_BY_4_0


def test_environment_variables_expand_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "envy.yaml"
    path.write_text("id: envy\ntitle: Env test\nlicense: CC-BY-4.0\ndrop: {url: 'file://${IMAGING_CONFIG_DROPS:-/srv}/envy'}\n")
    assert load_collection_config(path, environ={}).drop.url == "file:///srv/envy"
    assert load_collection_config(path, environ={"IMAGING_CONFIG_DROPS": "/data"}).drop.url == "file:///data/envy"
    path.write_text("id: envy\ntitle: Env test\nlicense: CC-BY-4.0\ndrop: {url: 'file://${IMAGING_CONFIG_NOPE}/envy'}\n")
    with pytest.raises(ConfigError, match="NOPE"):
        load_collection_config(path, environ={})


@pytest.mark.security
@pytest.mark.parametrize("name", ["IMAGING_INGEST_SECRET", "AWS_SECRET_ACCESS_KEY", "AIRFLOW__CORE__FERNET_KEY", "HOME"])
def test_only_allow_listed_variables_expand(tmp_path: Path, name: str) -> None:
    """A config's values are published (title, citation): it may not pull a secret out of the environment."""
    path = tmp_path / "leaky.yaml"
    path.write_text(f"id: leaky\ntitle: 'Leak ${{{name}}}'\nlicense: CC-BY-4.0\ndrop: {{url: 'file:///srv/x'}}\n")
    with pytest.raises(ConfigError, match=f"{name} may not be used"):
        load_collection_config(path, environ={name: "the-secret-value"})
