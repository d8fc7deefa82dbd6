"""Failure and deadline notices: PHI-free summaries, delivered to a webhook, Slack or SMTP."""

from __future__ import annotations

import asyncio
import json
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from ops_support import Capture, run_demo, task_states

from imaging_dags.callbacks import alert_target, deadline_missed
from imaging_ingest.config.settings import Settings
from imaging_ingest.ops.alerts import (
    WITHHELD,
    AlertTarget,
    deliver,
    failure_summary,
    sanitize_message,
    summary_text,
)


class SiteError(Exception):
    """Stands in for a third-party exception whose message quotes data."""


SiteError.__module__ = "pydicom.errors"


def _connection(conn_type: str, **fields: object) -> SimpleNamespace:
    base = {"host": None, "port": None, "schema": None, "login": None, "password": None, "extra_dejson": {}}
    return SimpleNamespace(conn_type=conn_type, **(base | fields))


def _alerts_connection(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    monkeypatch.setenv(
        "AIRFLOW_CONN_IMAGING_ALERTS",
        json.dumps({"conn_type": "http", "host": host, "port": int(port), "schema": "http", "extra": {"endpoint": "/hook"}}),
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("gate 'verified' failed 2 of 10 expectations (report: /srv/home/DOE_JOHN/verified.html)",
         "gate <value> failed <n> of <n> expectations (report: <path>)"),
        ("unknown submission sub-0123456789abcdef for collection demo",
         "unknown submission sub-0123456789abcdef for collection demo"),
        ("cannot reach http://key:secret@minio:9000/imaging-raw for john.doe@example.org",
         "cannot reach <url> for <address>"),
        ("PatientName \"DOE^JOHN\" on 19700101 UID 1.2.840.113619.2.55\nsecond line with more",
         "PatientName <value> on <n> UID <n>"),
    ],
)
def test_messages_are_sanitized(message: str, expected: str) -> None:
    assert sanitize_message(message) == expected


def test_summaries_name_the_failure_but_never_quote_data() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    ours = failure_summary(
        collection="demo", dag_id="ingest__demo", task_id="verify", run_id="manual__1", submission_id="sub-0123456789abcdef",
        try_number=2, map_index=-1, exception=AirflowFailException("stage verify needs the 'staged' manifest of 3 files"),
    )
    assert ours["exception_type"] == "airflow.sdk.exceptions.AirflowFailException"
    assert ours["message"] == "stage verify needs the <value> manifest of <n> files"
    foreign = failure_summary(
        collection="demo", dag_id="ingest__demo", task_id="inventory", run_id="r", exception=SiteError("DOE^JOHN born 1970"),
    )
    assert foreign["exception_type"] == "pydicom.errors.SiteError"
    assert foreign["message"] == WITHHELD and "DOE" not in json.dumps(foreign)
    builtin = failure_summary(collection=None, dag_id="d", task_id="t", run_id="r", exception=KeyError("MRN783273"))
    assert builtin["exception_type"] == "KeyError" and builtin["message"] == WITHHELD
    odd = failure_summary(collection="demo", dag_id="d", task_id="t", run_id="r", submission_id="site-a/DOE^JOHN")
    assert odd["submission_id"] is None  # only a well-formed submission id is echoed
    assert "failed (KeyError)" in summary_text(builtin)


def test_alert_targets_from_connections() -> None:
    hook = alert_target(_connection("http", host="127.0.0.1", port=8080, schema="http", extra_dejson={"endpoint": "hook"}))
    assert hook == AlertTarget("webhook", url="http://127.0.0.1:8080/hook")
    full = alert_target(_connection("https", host="https://alerts.example.org/api/notify"))
    assert full.url == "https://alerts.example.org/api/notify" and full.kind == "webhook"
    slack = alert_target(_connection("slackwebhook", host="https://hooks.slack.com/services", password="T0/B0/XX"))
    assert slack == AlertTarget("slack", url="https://hooks.slack.com/services/T0/B0/XX")
    mail = alert_target(_connection(
        "smtp", host="mail.example.org", port=587, login="u", password="s3cr3t-pw",
        extra_dejson={"to": "a@example.org, b@example.org", "from": "archive@example.org", "starttls": "true"},
    ))
    assert mail.kind == "smtp" and mail.mail_to == ("a@example.org", "b@example.org") and mail.tls == "starttls"
    assert "s3cr3t-pw" not in repr(mail)  # the password stays out of reprs and logs
    assert alert_target(_connection("postgres", host="db")) is None


def test_slack_and_webhook_payloads(webhook: Capture) -> None:
    summary = failure_summary(collection="demo", dag_id="ingest__demo", task_id="publish", run_id="r1")
    assert deliver(AlertTarget("webhook", url=webhook.url + "/hook"), summary)
    assert deliver(AlertTarget("slack", url=webhook.url + "/slack"), summary)
    first, second = webhook.wait_for(2)
    assert first["path"] == "/hook" and first["body"]["event"] == "task_failed"
    assert second["path"] == "/slack" and set(second["body"]) == {"text"}
    assert second["body"]["text"].startswith("[imaging-ingest] ingest__demo.publish failed")
    assert not deliver(AlertTarget("webhook", url="http://127.0.0.1:9/nothing-listens"), summary)


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, list[bytes]]]:
    """A minimal SMTP server on loopback that keeps every message it receives."""
    received: list[bytes] = []

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(b"220 test ESMTP\r\n")
            while line := self.rfile.readline():
                verb = line.strip().upper()
                if verb.startswith((b"EHLO", b"HELO")):
                    self.wfile.write(b"250 test\r\n")
                elif verb == b"DATA":
                    self.wfile.write(b"354 go ahead\r\n")
                    data = b""
                    while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                        data += chunk
                    received.append(data)
                    self.wfile.write(b"250 queued\r\n")
                elif verb == b"QUIT":
                    self.wfile.write(b"221 bye\r\n")
                    return
                else:
                    self.wfile.write(b"250 ok\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()


def test_smtp_delivery(smtp_server: tuple[int, list[bytes]]) -> None:
    port, received = smtp_server
    target = AlertTarget("smtp", host="127.0.0.1", port=port, mail_to=("oncall@example.org",), tls="none")
    summary = failure_summary(collection="demo", dag_id="ingest__demo", task_id="verify", run_id="r2")
    assert deliver(target, summary)
    (message,) = received
    assert b"Subject: [imaging-ingest] ingest__demo.verify failed" in message
    assert b"To: oncall@example.org" in message and b'"run_id": "r2"' in message


def test_deadline_callback_posts_a_notice(webhook: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    _alerts_connection(monkeypatch, webhook.url)
    context = {"dag_run": {"dag_id": "ingest__demo", "dag_run_id": "scheduled__x", "state": "running",
                           "conf": {"submission": "sub-0123456789abcdef"}}, "deadline": {"id": "d1"}}
    summary = asyncio.run(deadline_missed("demo", 90, context=context))
    (posted,) = webhook.wait_for(1)
    assert posted["path"] == "/hook"
    assert posted["body"] == summary
    assert summary["event"] == "deadline_missed" and summary["deadline_minutes"] == 90
    assert summary["submission_id"] == "sub-0123456789abcdef" and summary["state"] == "running"


@pytest.mark.e2e
def test_a_failed_task_posts_a_phi_free_summary(
    demo_env: Settings, webhook: Capture, monkeypatch: pytest.MonkeyPatch, submission: Path
) -> None:
    _alerts_connection(monkeypatch, webhook.url)
    run = run_demo({"submission": "sub-00000000000000ff"})
    assert str(run.state) == "failed", task_states(run)
    (posted,) = webhook.wait_for(1)
    body = posted["body"]
    assert posted["path"] == "/hook"
    assert {k: body[k] for k in ("event", "collection", "dag_id", "task_id", "submission_id", "try_number")} == {
        "event": "task_failed",
        "collection": "demo",
        "dag_id": "ingest__demo",
        "task_id": "discover",
        "submission_id": "sub-00000000000000ff",
        "try_number": 1,
    }
    assert body["run_id"] == run.run_id
    assert body["exception_type"] == "airflow.sdk.exceptions.AirflowFailException"
    assert body["message"].startswith("unknown submission sub-00000000000000ff for collection demo")
    text = json.dumps(body)
    patient_folders = [p.name for p in submission.iterdir() if p.is_dir()]
    assert patient_folders and not any(name in text for name in [submission.name, *patient_folders])
    assert str(submission.parent) not in text


def test_a_failed_task_puts_its_submission_in_the_failed_state(
    ingest_env: Settings, demo_config, submission: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog's state machine hears of a task that failed for good; the next claim resumes it."""
    from imaging_dags.callbacks import task_failed
    from imaging_ingest.catalog import Catalog, SubmissionState
    from imaging_ingest.pipeline.ingest import Ingest

    ingest = Ingest(demo_config, ingest_env)
    sub = ingest.claim().submission_id

    class FakeTaskInstance:
        dag_id, task_id, run_id, try_number, map_index, log_url = "ingest__demo", "inventory", "manual__x", 2, -1, None

        def xcom_pull(self, task_ids: str) -> str:
            return sub

    task_failed({"ti": FakeTaskInstance(), "exception": ValueError("a value from a file"), "params": {}})
    catalog = Catalog.from_url(ingest_env.catalog_url)
    row = catalog.submission(sub)
    assert row.state == SubmissionState.FAILED and row.failed_at is not None
    assert row.error == "task inventory failed (ValueError)"  # the type, never the message
    assert ingest.claim(sub).extra["state"] == SubmissionState.CLAIMED  # resumed
    catalog.dispose()


@pytest.mark.security
def test_smtp_never_sends_credentials_in_clear(smtp_server: tuple[int, list[bytes]]) -> None:
    """The test server offers no STARTTLS: a login, a remote host, or the default mode all refuse to send."""
    port, received = smtp_server
    summary = failure_summary(collection="demo", dag_id="ingest__demo", task_id="verify", run_id="r3")
    for target in (
        AlertTarget("smtp", host="127.0.0.1", port=port, mail_to=("o@example.org",)),  # STARTTLS by default
        AlertTarget("smtp", host="127.0.0.1", port=port, mail_to=("o@example.org",), tls="none", login="u", password="p"),
        AlertTarget("smtp", host="mail.example.org", port=port, mail_to=("o@example.org",), tls="none"),
    ):
        assert not deliver(target, summary)
    assert received == []
