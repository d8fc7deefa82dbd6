"""What a running task needs from Airflow: settings, the secret and credentials.

Called inside tasks only, never at parse time: Variables and Connections are looked up
through the execution API, which a DAG file must not touch while it is being parsed.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from imaging_ingest.config.settings import Settings
from imaging_ingest.core.secret import check_secret, configured_secret

if TYPE_CHECKING:
    from imaging_ingest.config import CollectionConfig
    from imaging_ingest.intake.drops import Drop

S3_CONNECTION_ID = "imaging_s3"
SECRET_VARIABLE = "imaging_ingest_secret"


def _s3_from_connection(env: dict[str, str]) -> None:
    """Fill S3 settings from the ``imaging_s3`` Connection (type aws) when it exists."""
    from airflow.sdk import Connection

    try:
        conn = Connection.get(S3_CONNECTION_ID)
    except Exception:  # noqa: BLE001 - no such connection: environment settings apply
        return
    extra = conn.extra_dejson or {}
    endpoint = extra.get("endpoint_url") or extra.get("host")
    if endpoint:
        env["IMAGING_INGEST_S3_ENDPOINT"] = endpoint
    if extra.get("region_name"):
        env["IMAGING_INGEST_S3_REGION"] = extra["region_name"]
    if conn.login:
        os.environ["AWS_ACCESS_KEY_ID"] = conn.login
    if conn.password:
        os.environ["AWS_SECRET_ACCESS_KEY"] = conn.password


def task_settings() -> Settings:
    env = dict(os.environ)
    _s3_from_connection(env)
    return Settings.from_env(env)


def task_secret() -> bytes | None:
    """The pseudonymisation secret from the Variable, else from the environment, checked at the task's start.

    None when neither names one (stages that need it then refuse). A placeholder or a
    guessable value fails every task at once, before any stage does work.
    """
    from airflow.sdk import Variable

    value = Variable.get(SECRET_VARIABLE, default=None)
    if value:
        return check_secret(value.encode("utf-8"), f"Variable {SECRET_VARIABLE}")
    return configured_secret()


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def task_drop(config: CollectionConfig) -> Drop | None:
    """The collection's drop built from its Airflow Connection (``drop.connection_id``), if it names one.

    - ``sftp`` (or ``ssh``) connections: host, port, login; extras ``key_file`` or
      ``private_key``, and ``host_key`` ("ssh-ed25519 AAAA...") or ``known_hosts``
      (``no_host_key_check`` only for tests).
    - ``aws`` connections for S3 drops: login/password as access keys; extras
      ``endpoint_url`` and ``region_name``.

    Returns None when the config names no connection: the library then builds the drop
    from the URL and the environment.
    """
    if not config.drop.connection_id:
        return None
    from urllib.parse import urlparse

    from airflow.sdk import Connection

    conn = Connection.get(config.drop.connection_id)
    extra = conn.extra_dejson or {}
    scheme = urlparse(config.drop.url).scheme
    if scheme == "sftp":
        from imaging_ingest.intake.sftp import SFTPDrop, connector

        connect = connector(
            conn.host or urlparse(config.drop.url).hostname or "",
            conn.login or "",
            port=int(conn.port or 22),
            key_filename=extra.get("key_file"),
            private_key=extra.get("private_key"),
            host_key=extra.get("host_key"),
            known_hosts=extra.get("known_hosts"),
            no_host_key_check=_truthy(extra.get("no_host_key_check", False)),
            timeout=float(extra.get("conn_timeout", 30)),
        )
        return SFTPDrop(config.drop, connect)
    if scheme == "s3":
        import boto3
        from botocore.config import Config

        from imaging_ingest.intake.s3 import S3Drop
        from imaging_ingest.storage.objects import RETRIES

        client = boto3.client(
            "s3",
            endpoint_url=extra.get("endpoint_url") or extra.get("host"),
            region_name=extra.get("region_name", "us-east-1"),
            aws_access_key_id=conn.login or None,
            aws_secret_access_key=conn.password or None,
            config=Config(retries=RETRIES, s3={"addressing_style": "path"}),  # type: ignore[arg-type]
        )
        return S3Drop(config.drop, client)
    return None
