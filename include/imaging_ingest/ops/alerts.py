"""Failure and deadline notices for the people on call: PHI-free summaries, delivered plainly.

A notice says which collection, DAG, task, run and submission, and the exception's *type*;
never a value from the data. Exception messages can carry anything (a pydicom error
quoting an element, a path with a patient's name), so a message is included only for the
project's own exceptions and Airflow's, whose texts name tags, counts and ids, and even
then with quoted strings, numbers, paths and addresses replaced. Everything else says
"see the task log", which stays behind Airflow's access control.

Delivery targets: a generic JSON webhook, a Slack incoming webhook, or SMTP. Delivery
errors are reported to the caller's log, never raised: a broken alert channel must not
turn a failed run into a different failure.
"""

from __future__ import annotations

import json
import logging
import re
import smtplib
import ssl
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Literal

__all__ = ["AlertTarget", "deadline_summary", "deliver", "failure_summary", "sanitize_message", "summary_text"]

log = logging.getLogger(__name__)

#: Exception modules whose messages we write ourselves (tags, counts, ids; no values).
TRUSTED_MESSAGE_MODULES = ("imaging_ingest", "airflow")
WITHHELD = "message withheld (it may quote data); see the task log"

_SUBMISSION = re.compile(r"\bsub-[0-9a-f]{16}\b")
_SCRUBS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE), "<url>"),
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "<address>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<value>"),
    (re.compile(r"(?<![\w<])(?:[A-Za-z]:)?[\\/][^\s,;)]+"), "<path>"),
    (re.compile(r"\b\w*\d[\w.^:/-]*"), "<n>"),
)


def sanitize_message(text: str, limit: int = 300) -> str:
    """The first line of ``text`` with values replaced by placeholders; submission ids are kept."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    kept = iter(_SUBMISSION.findall(line))
    line = _SUBMISSION.sub("\x00", line)  # a placeholder no scrub below touches
    for pattern, placeholder in _SCRUBS:
        line = pattern.sub(placeholder, line)
    line = re.sub("\x00", lambda _: next(kept), line)
    return line[:limit]


def _describe_exception(exception: BaseException | None) -> tuple[str | None, str | None]:
    if exception is None:
        return None, None
    kind = type(exception)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    if kind.__module__.split(".")[0] in TRUSTED_MESSAGE_MODULES:
        return name, sanitize_message(str(exception))
    return name, WITHHELD


def failure_summary(
    *,
    collection: str | None,
    dag_id: str,
    task_id: str | None,
    run_id: str | None,
    submission_id: str | None = None,
    try_number: int | None = None,
    map_index: int | None = None,
    exception: BaseException | None = None,
    log_url: str | None = None,
) -> dict[str, Any]:
    """The notice a failed task sends (all fields PHI-free)."""
    exception_type, message = _describe_exception(exception)
    return {
        "event": "task_failed",
        "collection": collection,
        "dag_id": dag_id,
        "task_id": task_id,
        "map_index": None if map_index is None or map_index < 0 else map_index,
        "run_id": run_id,
        "try_number": try_number,
        "submission_id": submission_id if submission_id and _SUBMISSION.fullmatch(submission_id) else None,
        "exception_type": exception_type,
        "message": message,
        "log_url": log_url,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def deadline_summary(
    *, collection: str | None, dag_id: str, run_id: str | None, minutes: int, submission_id: str | None = None,
    state: str | None = None,
) -> dict[str, Any]:
    """The notice a run that outlives its deadline sends."""
    return {
        "event": "deadline_missed",
        "collection": collection,
        "dag_id": dag_id,
        "run_id": run_id,
        "submission_id": submission_id if submission_id and _SUBMISSION.fullmatch(submission_id) else None,
        "state": state,
        "deadline_minutes": minutes,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def summary_text(summary: dict[str, Any]) -> str:
    """One line for chat and mail subjects."""
    where = f"{summary.get('dag_id')}" + (f".{summary['task_id']}" if summary.get("task_id") else "")
    if summary.get("event") == "deadline_missed":
        head = f"[imaging-ingest] {where} still {summary.get('state') or 'running'} after {summary['deadline_minutes']} min"
    else:
        head = f"[imaging-ingest] {where} failed ({summary.get('exception_type') or 'unknown error'})"
    parts = [head, f"run {summary.get('run_id')}"]
    if summary.get("submission_id"):
        parts.append(f"submission {summary['submission_id']}")
    if summary.get("message"):
        parts.append(summary["message"])
    return " | ".join(parts)


@dataclass(frozen=True)
class AlertTarget:
    """Where notices go: a JSON webhook, a Slack incoming webhook, or a mail server."""

    kind: Literal["webhook", "slack", "smtp"]
    url: str | None = None
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    mail_from: str | None = None
    mail_to: tuple[str, ...] = ()
    #: "starttls" (the default), "implicit" (SMTPS, port 465), or "none": a relay on this machine only,
    #: never with a login (credentials never cross a network in clear).
    tls: Literal["starttls", "implicit", "none"] = "starttls"
    timeout: float = 10.0


def deliver(target: AlertTarget, summary: dict[str, Any]) -> bool:
    """Send one notice; True when it was accepted. Errors are logged (without the URL's secrets)."""
    try:
        if target.kind == "smtp":
            _send_mail(target, summary)
        else:
            body = {"text": summary_text(summary)} if target.kind == "slack" else summary
            _post_json(target, body)
    except Exception as exc:  # noqa: BLE001 - a broken alert channel never masks the failure itself
        log.warning("alert delivery (%s) failed: %s", target.kind, type(exc).__name__)
        return False
    return True


def _post_json(target: AlertTarget, body: dict[str, Any]) -> None:
    if not target.url or not target.url.startswith(("http://", "https://")):
        raise ValueError("an alert webhook needs an http(s) URL")
    request = urllib.request.Request(
        target.url,
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json", "User-Agent": "imaging-ingest-alerts"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=target.timeout) as response:  # noqa: S310 - URL checked above
        response.read()


def _send_mail(target: AlertTarget, summary: dict[str, Any]) -> None:
    if not target.host or not target.mail_to:
        raise ValueError("an SMTP alert target needs a host and at least one recipient")
    message = EmailMessage()
    message["Subject"] = summary_text(summary)[:200]
    message["From"] = target.mail_from or "imaging-ingest@localhost"
    message["To"] = ", ".join(target.mail_to)
    message.set_content(json.dumps(summary, indent=2))
    if target.tls == "none" and (target.login or target.host not in ("127.0.0.1", "::1", "localhost")):
        raise ValueError("SMTP without TLS is only for a relay on this machine, and never with a login")
    context = ssl.create_default_context()  # the server's certificate is verified
    if target.tls == "implicit":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(target.host, target.port or 465, timeout=target.timeout, context=context)
    else:
        smtp = smtplib.SMTP(target.host, target.port or 587, timeout=target.timeout)
    with smtp:
        if target.tls == "starttls":
            smtp.starttls(context=context)  # refused by a server without STARTTLS: no fallback to plain text
        if target.login:
            smtp.login(target.login, target.password or "")
        smtp.send_message(message)
