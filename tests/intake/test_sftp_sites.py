"""Sites kept apart: a real OpenSSH sshd with the shipped config and two site accounts.

The stack's SFTP server (``deploy/sftp``) gives each site its own key-only account,
chrooted to its own collections' folders, with links forbidden. This test runs sshd with
that very ``sshd_config`` (paths moved under a private root) and accounts made by the
shipped ``add-site.sh``, then tries, as site A, to see, write and link into site B's
folders. Chroot needs root-owned folders, so the suite runs as root (it creates two system
users and removes them afterwards).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest
from paramiko.sftp import CMD_EXTENDED

from .servers import SSHD, _wait_for_port, free_port

pytestmark = [pytest.mark.sftp, pytest.mark.security]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "sftp"


@dataclass
class Site:
    name: str
    key: Path
    collection: str


@dataclass
class SiteServer:
    port: int
    root: Path
    a: Site
    b: Site

    def connect(self, site: Site) -> paramiko.SFTPClient:
        transport = paramiko.Transport(("127.0.0.1", self.port))
        transport.connect(username=site.name, pkey=paramiko.Ed25519Key.from_private_key_file(str(site.key)))
        client = paramiko.SFTPClient.from_transport(transport)
        assert client is not None
        return client


def _run(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(args, check=True, capture_output=True, env=env)


@pytest.fixture(scope="module")
def site_server() -> Iterator[SiteServer]:
    if os.geteuid() != 0:
        pytest.fail("the site-isolation test needs root (sshd's ChrootDirectory needs root-owned folders)")
    for tool in (SSHD, shutil.which("useradd"), shutil.which("ssh-keygen")):
        if not tool or not Path(tool).exists():
            pytest.fail(f"{tool or 'useradd/ssh-keygen'} is missing: `make system-deps` installs openssh-server and passwd")
    tag = uuid.uuid4().hex[:6]
    base = Path(f"/run/imaging-ingest-sftp-{tag}")  # under /run: every folder above a chroot must be root's, 0755
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)
    chroots, keys, private = base / "srv", base / "authorized_keys", base / "private"
    private.mkdir(mode=0o700)
    sites = []
    env = os.environ | {"SFTP_ROOT": str(chroots), "SFTP_KEYS": str(keys)}
    try:
        for letter, uid in (("a", 61000 + int(tag[:2], 16)), ("b", 61300 + int(tag[2:4], 16))):
            site = Site(f"site{letter}-{tag}", private / f"{letter}_key", f"collection_{letter}")
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(site.key))
            _run("sh", str(DEPLOY / "add-site.sh"), site.name, str(uid), f"{site.key}.pub", site.collection, env=env)
            sites.append(site)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(private / "host_key"))
        port = free_port()
        config = (DEPLOY / "sshd_config").read_text()
        config = (config.replace("Port 22", f"Port {port}\nListenAddress 127.0.0.1\nPidFile {private / 'sshd.pid'}")
                  .replace("/etc/ssh/host_keys/ssh_host_ed25519_key", str(private / "host_key"))
                  .replace("/etc/ssh/authorized_keys", str(keys))
                  .replace("/srv/sftp", str(chroots)))
        (private / "sshd_config").write_text(config)
        os.makedirs("/run/sshd", exist_ok=True)
        log = open(private / "sshd.log", "ab")  # noqa: SIM115 - closed below
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(private / "sshd_config")],
                                   stdout=subprocess.DEVNULL, stderr=log)
        try:
            _wait_for_port(port)
            yield SiteServer(port, chroots, sites[0], sites[1])
        finally:
            process.kill()
            process.wait(timeout=10)
            log.close()
    finally:
        for site in sites:
            subprocess.run(["userdel", site.name], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_a_site_sees_only_its_own_collections(site_server: SiteServer) -> None:
    a = site_server.connect(site_server.a)
    try:
        assert a.listdir("/") == [site_server.a.collection]
        assert a.listdir("/..") == [site_server.a.collection], "the chroot has no way up"
        assert a.normalize("../../..") == "/"
        for path in (f"/{site_server.b.collection}", f"/../{site_server.b.name}/{site_server.b.collection}",
                     str(site_server.root / site_server.b.name)):
            with pytest.raises(FileNotFoundError):
                a.stat(path)
    finally:
        a.close()


def test_a_site_writes_only_into_its_own_collections(site_server: SiteServer) -> None:
    a = site_server.connect(site_server.a)
    try:
        a.mkdir(f"/{site_server.a.collection}/sub-1")
        with a.open(f"/{site_server.a.collection}/sub-1/1.dcm", "wb") as out:
            out.write(b"site a data")
        for path in ("/planted.dcm", f"/../{site_server.b.name}/{site_server.b.collection}/planted.dcm"):
            with pytest.raises(OSError), a.open(path, "wb") as out:  # PermissionError or FileNotFoundError
                out.write(b"x")
        with pytest.raises(OSError):
            a.rmdir(f"/{site_server.a.collection}")  # its collection folder sits in a root-owned chroot
    finally:
        a.close()
    on_disk = site_server.root / site_server.a.name / site_server.a.collection / "sub-1" / "1.dcm"
    assert on_disk.read_bytes() == b"site a data"
    assert not any((site_server.root / site_server.b.name).rglob("planted.dcm"))
    assert not (site_server.root / site_server.a.name / "planted.dcm").exists()


def test_a_site_cannot_link_anywhere(site_server: SiteServer) -> None:
    a = site_server.connect(site_server.a)
    target_b = str(site_server.root / site_server.b.name / site_server.b.collection)
    own = f"/{site_server.a.collection}"
    try:
        with a.open(f"{own}/real.dcm", "wb") as out:
            out.write(b"x")
        for target in (target_b, "/etc/passwd", f"{own}/real.dcm"):
            with pytest.raises(OSError):
                a.symlink(target, f"{own}/link-{abs(hash(target))}")
        with pytest.raises(OSError):  # hardlink@openssh.com, refused by internal-sftp -P hardlink
            a._request(CMD_EXTENDED, "hardlink@openssh.com", f"{own}/real.dcm", f"{own}/hard.dcm")
    finally:
        a.close()
    folder = site_server.root / site_server.a.name / site_server.a.collection
    assert not [p for p in folder.iterdir() if p.is_symlink()] and not (folder / "hard.dcm").exists()


def test_b_cannot_see_what_a_uploaded(site_server: SiteServer) -> None:
    b = site_server.connect(site_server.b)
    try:
        assert b.listdir("/") == [site_server.b.collection]
        with pytest.raises(FileNotFoundError):
            b.stat(f"/{site_server.a.collection}")
    finally:
        b.close()


def test_passwords_are_refused(site_server: SiteServer) -> None:
    transport = paramiko.Transport(("127.0.0.1", site_server.port))
    try:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType):
            transport.auth_password(site_server.a.name, "anything")
    finally:
        transport.close()
