"""DataCite metadata, citation lines, BagIt tag files and the collection config that drives them."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import bagit
import pytest
from pydantic import ValidationError

from imaging_ingest.config import (
    CitationConfig,
    CollectionConfig,
    DropConfig,
    License,
    load_collection_config,
)
from imaging_ingest.publish.bag import BagInfo, bag_files, payload_path
from imaging_ingest.publish.citation import (
    DataCiteInvalid,
    VersionFacts,
    citation_line,
    datacite_errors,
    datacite_record,
    validated,
)

ROOT = Path(__file__).resolve().parents[2]
FACTS = VersionFacts(number=3, created=datetime(2025, 6, 1, 12, 0), object_count=10, total_bytes=12345,
                     patients=2, studies=3, series=5)


def _config(**citation: object) -> CollectionConfig:
    return CollectionConfig(
        id="lung_ct", title="Lung CT", description="Chest CT of lung cancer patients.", license=License.CC_BY_4_0,
        drop=DropConfig(url="file:///drop"), citation=CitationConfig(**citation),  # type: ignore[arg-type]
    )


def test_a_public_collection_version_record_validates() -> None:
    config = _config(
        creators=[{"name": "Doe, Jane", "orcid": "0000-0002-1825-0097", "affiliation": "Example Cancer Centre"},
                  {"name": "Example Imaging Consortium", "name_type": "Organizational"}],
        concept_doi="10.80000/lung-ct", subjects=["Lung cancer"], landing_page="https://a.example/{collection}/v{version}",
    )
    record = datacite_record(config, FACTS)
    assert datacite_errors(record) == []
    assert record["doi"] == "10.5072/lung_ct.v3"
    assert record["creators"][0]["familyName"] == "Doe" and record["creators"][0]["givenName"] == "Jane"
    assert record["creators"][0]["nameIdentifiers"][0]["nameIdentifierScheme"] == "ORCID"
    assert record["rightsList"] == [{
        "rights": "Creative Commons Attribution 4.0 International",
        "rightsUri": "https://creativecommons.org/licenses/by/4.0/legalcode",
        "rightsIdentifier": "cc-by-4.0", "rightsIdentifierScheme": "SPDX", "schemeUri": "https://spdx.org/licenses/",
    }]
    assert record["relatedIdentifiers"] == [
        {"relatedIdentifier": "10.5072/lung_ct.v2", "relatedIdentifierType": "DOI", "relationType": "IsNewVersionOf"},
        {"relatedIdentifier": "10.80000/lung-ct", "relatedIdentifierType": "DOI", "relationType": "IsVersionOf"},
    ]
    assert record["sizes"][:2] == ["10 files", "12345 bytes"] and record["formats"] == ["application/dicom"]
    assert record["publicationYear"] == "2025" and record["version"] == "3"
    assert record["url"] == "https://a.example/lung_ct/v3"
    assert record["descriptions"][0]["description"] == "Chest CT of lung cancer patients."


def test_a_restricted_collection_names_its_licence() -> None:
    config = _config(restricted_license="TCIA Restricted License", restricted_license_url="https://example.org/dua")
    config = config.model_copy(update={"license": License.RESTRICTED, "tier": "restricted"})
    record = validated(datacite_record(config, FACTS))
    assert record["rightsList"] == [{"rights": "TCIA Restricted License", "rightsUri": "https://example.org/dua"}]


def test_without_creators_the_publisher_is_the_creator() -> None:
    record = datacite_record(_config(publisher="Example Archive"), FACTS)
    assert record["creators"] == [{"name": "Example Archive", "nameType": "Organizational"}]
    assert datacite_errors(record) == []


def test_an_invalid_record_is_refused_naming_the_field() -> None:
    record = datacite_record(_config(), FACTS)
    record["types"] = {"resourceTypeGeneral": "Spreadsheet"}
    record["titles"] = []
    with pytest.raises(DataCiteInvalid, match="types/resourceTypeGeneral"):
        validated(record)


def test_citation_line() -> None:
    config = _config(creators=[{"name": "Doe, Jane"}, {"name": "Roe, Richard"}], publisher="Example Archive")
    assert citation_line(config, FACTS) == (
        "Doe, Jane; Roe, Richard (2025). Lung CT (Version 3) [Data set]. Example Archive. "
        "https://doi.org/10.5072/lung_ct.v3"
    )
    many = _config(creators=[{"name": f"Person {i}", "name_type": "Organizational"} for i in range(5)])
    assert citation_line(many, FACTS).startswith("Person 0; et al. (2025).")


@pytest.mark.parametrize("template", ["doi:10.1234/x", "10.1234/{collection}.{unknown}", "11.1234/x", "10.1234/"])
def test_a_bad_doi_template_is_rejected(template: str) -> None:
    with pytest.raises(ValidationError, match="DOI"):
        CitationConfig(doi=template)


def test_configs_without_citation_or_fixity_still_load(tmp_path: Path) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text("id: plain\ntitle: Plain collection\nlicense: CC-BY-4.0\ndrop: {url: 'file:///drop'}\n")
    config = load_collection_config(path)
    assert config.citation.doi == "10.5072/{collection}.v{version}"
    assert config.fixity.mode == "sample" and config.fixity.period_days == 30
    demo = load_collection_config(ROOT / "dags" / "collections" / "demo.yaml")
    assert demo.citation.creators and demo.fixity.period_days == 30


def test_bag_tag_files_make_a_valid_bag_once_the_payload_is_fetched(tmp_path: Path) -> None:
    payload = {f"col/1.2/1.2.3/1.2.3.{i}.dcm": f"object {i}".encode() * (i + 1) for i in range(3)}
    objects = [
        {"key": k, "size": len(v), "sha256": hashlib.sha256(v).hexdigest(), "md5": hashlib.md5(v).hexdigest()}
        for k, v in payload.items()
    ]
    info = BagInfo("Example Archive", "https://doi.org/10.5072/col.v1", "Col, version 1", "2025-06-01", "col",
                   "col/versions/1", "imaging-ingest test")
    files = bag_files("col", objects, info, lambda key: f"s3://bucket/{key}", {"datacite.json": b"{}\n"})
    assert files["fetch.txt"].decode().splitlines()[0] == f"s3://bucket/{objects[0]['key']} {objects[0]['size']} data/1.2/1.2.3/1.2.3.0.dcm"
    assert f"Payload-Oxum: {sum(len(v) for v in payload.values())}.3" in files["bag-info.txt"].decode()
    assert "datacite.json" in files["tagmanifest-sha256.txt"].decode()
    bag_dir = tmp_path / "bag"
    bag_dir.mkdir()
    for name, data in files.items():
        (bag_dir / name).write_bytes(data)
    (bag_dir / "datacite.json").write_bytes(b"{}\n")
    for key, data in payload.items():
        target = bag_dir / payload_path("col", key)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    bagit.Bag(str(bag_dir)).validate()
    (bag_dir / "datacite.json").write_bytes(b"{\"changed\": true}\n")  # tag files are covered too
    with pytest.raises(bagit.BagValidationError):
        bagit.Bag(str(bag_dir)).validate()


@pytest.mark.parametrize("key", ["other/1/2/3.dcm", "col/../x.dcm", "col//etc/passwd"])
def test_payload_paths_stay_inside_the_bag(key: str) -> None:
    with pytest.raises(ValueError, match="not a safe path"):
        payload_path("col", key)
