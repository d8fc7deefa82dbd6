"""What a running task needs from Airflow: settings, the secret and credentials.

Called inside tasks only, never at parse time: Variables and Connections are looked up
through the execution API, which a DAG file must not touch while it is being parsed.
"""

from __future__ import annotations

import os

from imaging_ingest.secret import check_secret
from imaging_ingest.settings import Settings

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
    """The pseudonymisation secret from the Variable, else None (the library then reads the environment)."""
    from airflow.sdk import Variable

    value = Variable.get(SECRET_VARIABLE, default=None)
    return check_secret(value.encode("utf-8"), f"Variable {SECRET_VARIABLE}") if value else None
