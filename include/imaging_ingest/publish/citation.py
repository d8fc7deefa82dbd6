"""How a collection version is cited: DataCite metadata (kernel 4.5) and a citation line.

Each published version gets a ``datacite.json`` beside its ``release.json``, ready to be
sent to DataCite when the DOI is minted, and validated against the DataCite JSON schema
(the ``datacite`` package) before it is written: an invalid record fails the publish
rather than reaching readers. The DOI comes from the collection's ``citation.doi``
template; until an archive configures its own prefix it is a placeholder under
DataCite's test prefix 10.5072.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from imaging_ingest.config import CollectionConfig, License

__all__ = [
    "CC_BY_4_0",
    "DataCiteInvalid",
    "VersionFacts",
    "citation_line",
    "datacite_errors",
    "datacite_record",
    "validated",
    "version_doi",
]

CC_BY_4_0 = {
    "rights": "Creative Commons Attribution 4.0 International",
    "rightsUri": "https://creativecommons.org/licenses/by/4.0/legalcode",
    "rightsIdentifier": "cc-by-4.0",
    "rightsIdentifierScheme": "SPDX",
    "schemeUri": "https://spdx.org/licenses/",
}

DICOM_MEDIA_TYPE = "application/dicom"


class DataCiteInvalid(ValueError):
    """A DataCite record the schema rejects; the message lists the failing paths."""


@dataclass(frozen=True)
class VersionFacts:
    """What a version's metadata says about it, besides the collection's configuration."""

    number: int
    created: datetime
    object_count: int
    total_bytes: int
    patients: int
    studies: int
    series: int
    #: DOIs of the source collection versions an analysis collection's results were made on.
    derived_from: tuple[str, ...] = ()


def version_doi(config: CollectionConfig, number: int) -> str:
    return config.citation.doi.format(collection=config.id, version=number)


def _creators(config: CollectionConfig) -> list[dict[str, Any]]:
    creators = []
    for creator in config.citation.creators:
        entry: dict[str, Any] = {"name": creator.name, "nameType": creator.name_type}
        if creator.name_type == "Personal" and "," in creator.name:
            family, given = (part.strip() for part in creator.name.split(",", 1))
            entry |= {"familyName": family, "givenName": given}
        if creator.affiliation:
            entry["affiliation"] = [{"name": creator.affiliation}]
        if creator.orcid:
            entry["nameIdentifiers"] = [
                {"nameIdentifier": f"https://orcid.org/{creator.orcid}", "nameIdentifierScheme": "ORCID",
                 "schemeUri": "https://orcid.org"}
            ]
        creators.append(entry)
    return creators or [{"name": config.citation.publisher, "nameType": "Organizational"}]


def _rights(config: CollectionConfig) -> dict[str, str]:
    if config.license == License.CC_BY_4_0:
        return dict(CC_BY_4_0)
    rights = {"rights": config.citation.restricted_license}
    if config.citation.restricted_license_url:
        rights["rightsUri"] = config.citation.restricted_license_url
    return rights


def datacite_record(config: CollectionConfig, facts: VersionFacts) -> dict[str, Any]:
    """The DataCite JSON (kernel 4.5) of one version of a collection."""
    doi = version_doi(config, facts.number)
    related: list[dict[str, str]] = []
    if facts.number > 1:
        related.append(
            {"relatedIdentifier": version_doi(config, facts.number - 1), "relatedIdentifierType": "DOI",
             "relationType": "IsNewVersionOf"}
        )
    related += [
        {"relatedIdentifier": doi, "relatedIdentifierType": "DOI", "relationType": "IsDerivedFrom"}
        for doi in facts.derived_from
    ]
    if config.citation.concept_doi:
        related.append(
            {"relatedIdentifier": config.citation.concept_doi, "relatedIdentifierType": "DOI", "relationType": "IsVersionOf"}
        )
    record: dict[str, Any] = {
        "doi": doi,
        "prefix": doi.split("/", 1)[0],
        "suffix": doi.split("/", 1)[1],
        "creators": _creators(config),
        "titles": [{"title": config.title}],
        "publisher": {"name": config.citation.publisher},
        "publicationYear": str(facts.created.year),
        "types": {"resourceTypeGeneral": "Dataset", "resourceType": "DICOM image collection"},
        "dates": [{"date": facts.created.date().isoformat(), "dateType": "Issued"}],
        "language": "en",
        "version": str(facts.number),
        "rightsList": [_rights(config)],
        "sizes": [
            f"{facts.object_count} files",
            f"{facts.total_bytes} bytes",
            f"{facts.patients} patients",
            f"{facts.studies} studies",
            f"{facts.series} series",
        ],
        "formats": [DICOM_MEDIA_TYPE],
        "schemaVersion": "http://datacite.org/schema/kernel-4",
    }
    if config.description.strip():
        record["descriptions"] = [{"description": config.description.strip(), "descriptionType": "Abstract"}]
    if config.citation.subjects:
        record["subjects"] = [{"subject": s} for s in config.citation.subjects]
    if related:
        record["relatedIdentifiers"] = related
    if config.citation.landing_page:
        record["url"] = config.citation.landing_page.format(collection=config.id, version=facts.number)
    return record


def datacite_errors(record: dict[str, Any]) -> list[str]:
    """Schema violations of a DataCite JSON record (kernel 4.5), as 'path: message' lines."""
    from datacite.schema45 import validator

    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(record)'}: {error.message}"
        for error in sorted(validator.iter_errors(record), key=lambda e: list(map(str, e.absolute_path)))
    ]


def validated(record: dict[str, Any]) -> dict[str, Any]:
    errors = datacite_errors(record)
    if errors:
        raise DataCiteInvalid("DataCite metadata is invalid: " + "; ".join(errors))
    return record


def citation_line(config: CollectionConfig, facts: VersionFacts) -> str:
    """A human-readable citation, in DataCite's recommended form.

    Creator (PublicationYear). Title (Version N) [Data set]. Publisher. https://doi.org/DOI
    """
    names = [c["name"] for c in _creators(config)]
    if len(names) > 3:
        names = [names[0], "et al."]
    creators = "; ".join(names)
    doi = version_doi(config, facts.number)
    return (
        f"{creators} ({facts.created.year}). {config.title} (Version {facts.number}) [Data set]. "
        f"{config.citation.publisher}. https://doi.org/{doi}"
    )
