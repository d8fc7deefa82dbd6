"""Airflow callbacks of the ingest DAGs: failure notices from tasks, deadline notices from the triggerer.

Both build a PHI-free summary (``imaging_ingest.ops.alerts``) and send it to the target named
by the ``imaging_alerts`` Connection:

- conn type ``http``/``https``: a JSON POST of the summary to ``schema://host:port`` +
  the ``endpoint`` extra (or a full URL in ``host``);
- conn type ``slackwebhook`` (or an http connection to ``hooks.slack.com``): a Slack
  incoming webhook, ``{"text": ...}``; the webhook path is the password, as in the Slack provider;
- conn type ``smtp``/``email``: a mail to the ``to`` extra (comma-separated), from the
  ``from`` extra. Mail always goes over TLS: STARTTLS, or SMTPS on port 465 (extra
  ``"tls": "implicit"``); ``"tls": "none"`` is accepted only for a relay on the worker's own
  machine without a login.

Without that Connection the notice is only logged. This module is imported when the DAG
file is parsed (the deadline callback is named by its import path): it imports nothing
heavy at the top.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)

ALERTS_CONNECTION_ID = "imaging_alerts"


def alert_target(conn: Any) -> Any:
    """An ``AlertTarget`` from an Airflow Connection (``None`` when its type is not one we send to)."""
    from imaging_ingest.ops.alerts import AlertTarget

    extra = conn.extra_dejson or {}
    conn_type = (conn.conn_type or "").lower()
    if conn_type in {"smtp", "email"}:
        recipients = extra.get("to") or ""
        if isinstance(recipients, str):
            recipients = [r.strip() for r in recipients.split(",") if r.strip()]
        return AlertTarget(
            "smtp",
            host=conn.host,
            port=conn.port,
            login=conn.login,
            password=conn.password,
            mail_from=extra.get("from"),
            mail_to=tuple(recipients),
            tls=_smtp_tls(extra, conn.port),
        )
    if conn_type not in {"http", "https", "slackwebhook", "slack_webhook"}:
        log.warning("connection %s has type %r; expected http, slackwebhook or smtp", ALERTS_CONNECTION_ID, conn_type)
        return None
    host = conn.host or ""
    if "://" in host:
        base = host.rstrip("/")
    else:
        scheme = conn.schema or ("https" if conn_type != "http" else "http")
        base = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
    endpoint = extra.get("endpoint") or ""
    if conn_type.startswith("slack") and conn.password:
        endpoint = conn.password
    url = base + ("/" + endpoint.lstrip("/") if endpoint else "")
    kind = "slack" if conn_type.startswith("slack") or "hooks.slack.com" in base else "webhook"
    return AlertTarget(kind, url=url)


def _send(target: Any, summary: dict[str, Any]) -> None:
    from imaging_ingest.ops.alerts import deliver, summary_text

    log.error("%s", summary_text(summary))
    if target is None:
        log.info("no %s connection: the notice is only logged", ALERTS_CONNECTION_ID)
        return
    if deliver(target, summary):
        log.info("notice sent (%s)", target.kind)


def _collection(dag_id: str) -> str | None:
    return dag_id.removeprefix("ingest__") if dag_id.startswith("ingest__") else None


def _submission_id(context: Any) -> str | None:
    ti = context.get("ti")
    for task_id in ("claim", "discover"):
        try:
            value = ti.xcom_pull(task_ids=task_id) if ti is not None else None
        except Exception:  # noqa: BLE001 - no XCom yet (the failed task came first)
            value = None
        if isinstance(value, str) and value.startswith("sub-"):
            return value
    params = context.get("params") or {}
    submission = params.get("submission")
    return submission if isinstance(submission, str) and submission else None


def task_failed(context: Any) -> None:
    """``on_failure_callback`` of every ingest task: count it, log it, send the notice."""
    from airflow.sdk import Connection

    from imaging_ingest.ops.alerts import failure_summary
    from imaging_ingest.ops.metrics import metrics

    ti = context.get("ti")
    dag_id = getattr(ti, "dag_id", None) or context["dag"].dag_id
    task_id = getattr(ti, "task_id", None)
    collection = _collection(dag_id)
    try:
        metrics().inc("task_failures", collection=collection or dag_id, task=task_id or "unknown")
    except Exception:  # noqa: BLE001
        log.warning("could not count the failure", exc_info=True)
    summary = failure_summary(
        collection=collection,
        dag_id=dag_id,
        task_id=task_id,
        run_id=getattr(ti, "run_id", None) or context.get("run_id"),
        submission_id=_submission_id(context),
        try_number=getattr(ti, "try_number", None),
        map_index=getattr(ti, "map_index", None),
        exception=context.get("exception"),
        log_url=getattr(ti, "log_url", None),
    )
    _record_failure(summary.get("submission_id"), task_id, context.get("exception"))
    try:
        target = alert_target(Connection.get(ALERTS_CONNECTION_ID))
    except Exception:  # noqa: BLE001 - no such connection
        target = None
    _send(target, summary)


def _record_failure(submission_id: str | None, task_id: str | None, exception: BaseException | None) -> None:
    """Put the submission in the catalog's ``failed`` state (its next claim resumes it).

    The recorded error names the task and the exception's type only: a message could
    carry a value from a file.
    """
    if not submission_id:
        return
    from imaging_dags.runtime import task_settings
    from imaging_ingest.catalog import Catalog, SubmissionState

    error = f"task {task_id} failed" + (f" ({type(exception).__name__})" if exception is not None else "")
    try:
        catalog = Catalog.from_url(task_settings().catalog_url)
        try:
            if catalog.submission(submission_id) is not None:
                catalog.set_state(submission_id, SubmissionState.FAILED, error=error)
        finally:
            catalog.dispose()
    except Exception:  # noqa: BLE001 - a notice must go out even when the catalog is what failed
        log.warning("could not record the failure in the catalog", exc_info=True)


async def deadline_missed(collection: str, minutes: int, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """Deadline callback (runs in the triggerer): the run is still going after ``minutes``."""
    from airflow.sdk import Connection

    from imaging_ingest.ops.alerts import deadline_summary

    dag_run = (context or {}).get("dag_run") or {}
    conf = dag_run.get("conf") or {}
    summary = deadline_summary(
        collection=collection,
        dag_id=dag_run.get("dag_id") or f"ingest__{collection}",
        run_id=dag_run.get("dag_run_id") or dag_run.get("run_id"),
        minutes=minutes,
        submission_id=conf.get("submission") if isinstance(conf.get("submission"), str) else None,
        state=dag_run.get("state"),
    )
    try:
        target = alert_target(await Connection.async_get(ALERTS_CONNECTION_ID))
    except Exception:  # noqa: BLE001 - no such connection
        target = None
    await asyncio.to_thread(_send, target, summary)
    return summary


def _smtp_tls(extra: dict[str, Any], port: int | None) -> Any:
    """The TLS mode of a mail connection: STARTTLS unless it says SMTPS (465) or a local relay."""
    wanted = str(extra.get("tls") or ("implicit" if port == 465 else "starttls")).lower()
    return wanted if wanted in {"starttls", "implicit", "none"} else "starttls"
