"""Opening the drop a collection config names: local folder, S3 prefix or SFTP folder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from imaging_ingest.config import DropConfig
from imaging_ingest.config.settings import Settings
from imaging_ingest.intake.drops import Drop
from imaging_ingest.intake.local import LocalDrop
from imaging_ingest.intake.s3 import S3Drop
from imaging_ingest.intake.sftp import SFTPDrop, connector_from_env
from imaging_ingest.storage.objects import ObjectStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

__all__ = ["open_drop"]


def open_drop(
    config: DropConfig, settings: Settings, s3_client: S3Client | None = None, sftp_connect: Any = None
) -> Drop:
    """The drop a collection config names; clients for remote drops may be passed in (Airflow hooks).

    ``sftp_connect`` is a callable returning a connected ``paramiko.SFTPClient`` (see
    ``sftp.connector``); without it an SFTP drop connects with the key and known-hosts
    files named by ``IMAGING_INGEST_SFTP_KEY_FILE`` and ``IMAGING_INGEST_SFTP_KNOWN_HOSTS``.
    """
    scheme = urlparse(config.url).scheme
    if scheme == "sftp":
        return SFTPDrop(config, sftp_connect or connector_from_env(config.url))
    if scheme == "file":
        return LocalDrop(config)
    if scheme == "s3":
        if s3_client is None:
            s3_client = ObjectStore(settings).client
        return S3Drop(config, s3_client)
    raise NotImplementedError(f"drops of scheme {scheme!r} are not supported yet")
