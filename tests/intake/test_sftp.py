"""SFTP drops against a real OpenSSH server on loopback (key authentication, host key checked)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from imaging_ingest.catalog import Catalog
from imaging_ingest.config import CollectionConfig
from imaging_ingest.config.settings import Settings
from imaging_ingest.intake import sftp as sftp_module
from imaging_ingest.intake.sftp import SFTPDrop, connector
from imaging_ingest.pipeline.ingest import Ingest

from .conftest import SECRET, intake_config, make_settings, run_intake_dag
from .servers import SSHServer

pytestmark = pytest.mark.sftp


def sftp_config(server: SSHServer, root: Path, **drop: object) -> CollectionConfig:
    return intake_config(f"sftp://{server.user}@127.0.0.1:{server.port}{root}", **drop)


def open_sftp_drop(server: SSHServer, config: CollectionConfig) -> SFTPDrop:
    connect = connector(
        "127.0.0.1", server.user, port=server.port, key_filename=str(server.key_file), known_hosts=str(server.known_hosts)
    )
    return SFTPDrop(config.drop, connect, backoff=0.05)


def test_listing_sees_links_and_bad_names_without_following(sshd: SSHServer, small_submission: Path) -> None:
    os.symlink("/etc/passwd", small_submission / "passwd.dcm")
    with open(os.path.join(os.fsencode(small_submission), b"odd\xff\n.dcm"), "wb") as fh:
        fh.write(b"x")
    drop = open_sftp_drop(sshd, sftp_config(sshd, small_submission.parent))
    assert drop.submission_names() == ["site-b-1"]
    sub = drop.submission("site-b-1")
    entries = {e.path: e for e in sub.entries}
    assert sub.marker_present and "READY" not in entries
    assert entries["passwd.dcm"].kind == "symlink"
    assert entries["odd\\xff\\x0a.dcm"].name_problem == "file name is not valid UTF-8"
    assert len([e for e in entries.values() if e.path.endswith(".dcm") and e.kind == "file"]) == 15
    drop.close()


def test_wrong_host_key_is_refused(sshd: SSHServer, tmp_path: Path) -> None:
    import paramiko

    other = tmp_path / "other"
    os.system(f"ssh-keygen -q -t ed25519 -N '' -f {other}")
    wrong = " ".join(Path(f"{other}.pub").read_text().split()[:2])
    connect = connector("127.0.0.1", sshd.user, port=sshd.port, key_filename=str(sshd.key_file), host_key=wrong)
    with pytest.raises(paramiko.BadHostKeyException):
        connect()


def test_stable_completion_needs_two_equal_polls(
    sshd: SSHServer, small_submission: Path, settings: Settings, catalog: Catalog
) -> None:
    (small_submission / "READY").unlink()
    config = sftp_config(sshd, small_submission.parent, completion="stable")
    ingest = Ingest(config, settings, secret=SECRET, catalog=catalog, drop=open_sftp_drop(sshd, config))
    assert ingest.discover() == []  # first poll: seen, not yet stable
    shutil.copy(next(small_submission.rglob("*.dcm")), small_submission / "late.dcm")
    assert ingest.discover() == []  # changed since the last poll
    ready = ingest.discover()
    assert len(ready) == 1 and ready[0]["files"] == 15


def test_run_from_sftp_drop_publishes_everything(
    sshd: SSHServer, small_submission: Path, settings: Settings, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGING_INGEST_SFTP_KEY_FILE", str(sshd.key_file))
    monkeypatch.setenv("IMAGING_INGEST_SFTP_KNOWN_HOSTS", str(sshd.known_hosts))
    config = sftp_config(sshd, small_submission.parent)
    ingest = Ingest(config, settings, secret=SECRET, catalog=catalog)  # drop built from the URL and environment
    summary = ingest.run()
    assert summary is not None and summary["published"] == 14 and summary["files_in"] == 14
    staged = ingest.manifests(summary["submission_id"]).read("staged")
    local = {str(p.relative_to(small_submission)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in small_submission.rglob("*.dcm")}
    assert dict(zip(staged["source_path"], staged["sha256_source"], strict=True)) == local
    # the site's report, written back over SFTP beside the submission, is not a submission itself
    report = json.loads((small_submission.parent / "reports" / small_submission.name / "submission-report.json").read_text())
    assert summary["site_report"]["written"] and (report["received"], report["published"]) == (14, 14)
    assert {f["path"] for f in report["files"]} == set(local)
    assert "reports" not in ingest.drop.submission_names()


def test_archive_submission_with_sidecar_marker(
    sshd: SSHServer, small_submission: Path, settings: Settings, catalog: Catalog
) -> None:
    drop_root = small_submission.parent
    with zipfile.ZipFile(drop_root / "site-c.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(small_submission.rglob("*.dcm")):
            zf.write(path, str(path.relative_to(small_submission)))
    shutil.rmtree(small_submission)
    config = sftp_config(sshd, drop_root)
    ingest = Ingest(config, settings, secret=SECRET, catalog=catalog, drop=open_sftp_drop(sshd, config))
    assert ingest.discover() == []  # no site-c.zip.READY yet
    (drop_root / "site-c.zip.READY").write_text("")
    summary = ingest.run()
    assert summary is not None and summary["published"] == 14 and summary["files_in"] == 14
    staged = ingest.manifests(summary["submission_id"]).read("staged")
    assert staged["source_path"].str.startswith("site-c.zip/").all()
    assert ingest.store.head("raw", staged["archive"].iloc[0]) is not None  # the archive itself is kept


@pytest.mark.faults
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_server_restarted_mid_transfer(
    own_sshd: SSHServer, small_submission: Path, settings: Settings, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = small_submission / "scan" / "large.dcm"
    big.parent.mkdir()
    template = next(small_submission.rglob("*.dcm")).read_bytes()
    with open(big, "wb") as fh:  # a DICOM header followed by 6 MiB of trailing padding bytes
        fh.write(template)
        fh.write(os.urandom(6 * 1024 * 1024))
    config = sftp_config(own_sshd, small_submission.parent)
    drop = open_sftp_drop(own_sshd, config)
    real_read = sftp_module.ResumableReader._read_once
    restarts = {"n": 0}

    def read_and_restart(self: sftp_module.ResumableReader, size: int) -> bytes:
        if self.entry.path == "scan/large.dcm" and self.offset >= 2 * 1024 * 1024 and restarts["n"] == 0:
            restarts["n"] += 1
            own_sshd.restart()
        return real_read(self, size)

    monkeypatch.setattr(sftp_module.ResumableReader, "_read_once", read_and_restart)
    ingest = Ingest(config, settings, secret=SECRET, catalog=catalog, drop=drop)
    sub = ingest.claim().submission_id
    result = ingest.stage_raw(sub)
    assert restarts["n"] == 1 and drop.reconnects >= 1
    assert result.counts["files"] == 15
    staged = ingest.manifests(sub).read("staged").set_index("source_path")
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    assert staged.loc["scan/large.dcm", "sha256_source"] == digest
    assert ingest.store.head("raw", staged.loc["scan/large.dcm", "raw_key"]).sha256 == digest
    summary = ingest.run(sub, force=True)
    assert summary is not None and summary["published"] + summary["quarantined"] == 15


@pytest.mark.e2e
def test_dag_from_sftp_drop_through_an_airflow_connection(
    sshd: SSHServer, small_submission: Path, tmp_path: Path, s3_endpoint: str, airflow_db: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings(tmp_path / "home", s3_endpoint)
    config = intake_config(f"sftp://127.0.0.1{small_submission.parent}", connection_id="intake_sftp")
    connection = {
        "conn_type": "sftp",
        "host": "127.0.0.1",
        "port": sshd.port,
        "login": sshd.user,
        "extra": {"private_key": sshd.key_file.read_text(), "host_key": sshd.host_key_line},
    }
    sub = run_intake_dag(monkeypatch, tmp_path, settings, config, "intake_sftp", connection)
    assert sub.source_url.startswith("sftp://127.0.0.1/")
    assert (sub.published, sub.quarantined) == (14, 0)
    catalog = Catalog.from_url(settings.catalog_url)
    assert catalog.latest_version("intake").objects == 14
    catalog.dispose()
