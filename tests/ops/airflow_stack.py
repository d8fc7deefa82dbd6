"""Start a real Airflow (api-server, scheduler, dag-processor, optionally Celery workers) as processes.

Used by the browser, plugin and CeleryExecutor tests. Every process runs in its own
process group with its log in ``<home>/logs/``; ``stop()`` ends the groups (TERM, then
KILL), and the context manager calls it whatever happens. Waits are bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = Path(sys.executable).with_name("airflow")
USERS = {"admin": ("admin", "admin"), "viewer": ("viewer", "viewer")}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def source_path() -> str:
    """This checkout's library, DAG helpers and plugins, ahead of any installed copy."""
    return os.pathsep.join(str(ROOT / p) for p in ("include", "dags", "plugins"))


def wait_until(condition: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@contextmanager
def moto_server(log_dir: Path) -> Iterator[str]:
    """moto's S3 server as its own process (worker processes must reach it, whatever pytest does)."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "moto.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(url, timeout=2).status_code < 500, 30, "the moto S3 server")
        yield url
    finally:
        _stop(Process("moto", popen, log))


def _stop(process: Process, grace: float = 15.0) -> None:
    if process.popen.poll() is not None:
        return
    try:
        os.killpg(process.popen.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.popen.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.popen.pid, signal.SIGKILL)
        process.popen.wait(timeout=10)
    # Children that outlived their leader (task runners) are in the same group: make sure.
    with suppress(ProcessLookupError):
        os.killpg(process.popen.pid, signal.SIGKILL)


@dataclass
class AirflowStack:
    """One Airflow installation on loopback: its settings, processes and REST helpers."""

    home: Path
    database_url: str
    executor: str = "LocalExecutor"
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    processes: list[Process] = field(default_factory=list)
    """The processes started, in order; ``stop()`` ends them in reverse."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        from imaging_dags.local import airflow_environment

        passwords = self.home / "passwords.json"
        passwords.write_text(json.dumps({name: pw for name, (_, pw) in USERS.items()}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env |= airflow_environment(self.home)
        env |= {
            "PYTHONPATH": source_path(),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url,
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{n}:{role}" for n, (role, _) in USERS.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API_AUTH__JWT_SECRET": "ops-tests-jwt-secret-0123456789abcdef",
            "AIRFLOW__API__SECRET_KEY": "ops-tests-api-secret-0123456789abcdef",
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        }
        return env | self.extra_env

    def migrate(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(AIRFLOW), "db", "migrate"], env=self.env(), check=True, capture_output=True, timeout=300)

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Process:
        log_dir = self.home / "process-logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / f"{name}.log"
        # Each process serves its task logs on its own free port (8793 may be taken on a shared machine).
        ports = {
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                [str(AIRFLOW), *args], env=self.env() | ports | (env or {}), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.home,
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            _stop(process)

    def check_alive(self) -> None:
        for process in self.processes:
            if process.popen.poll() is not None:
                raise RuntimeError(f"{process.name} exited ({process.popen.returncode}):\n{self.tail(process.name)}")

    def tail(self, name: str, lines: int = 40) -> str:
        log = self.home / "process-logs" / f"{name}.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""

    # -- REST ------------------------------------------------------------------------------

    def token(self, user: str = "admin") -> str:
        _, password = USERS[user]
        response = httpx.post(f"{self.url}/auth/token", json={"username": user, "password": password}, timeout=30)
        response.raise_for_status()
        return str(response.json()["access_token"])

    def client(self, user: str | None = "admin") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(user)}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def wait_ready(self, dag_id: str, timeout: float = 180) -> None:
        def healthy() -> bool:
            self.check_alive()
            return httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5).status_code == 200

        wait_until(healthy, timeout, "the api-server")
        with self.client() as client:

            def parsed() -> bool:
                self.check_alive()
                return client.get(f"/api/v2/dags/{dag_id}").status_code == 200

            wait_until(parsed, timeout, f"DAG {dag_id} to be parsed")

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        with self.client() as client:
            response = client.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
            response.raise_for_status()
            return str(response.json()["dag_run_id"])

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300) -> dict[str, Any]:
        with self.client() as client:

            def finished() -> dict[str, Any] | None:
                self.check_alive()
                run = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()
                return run if run.get("state") in {"success", "failed"} else None

            result: dict[str, Any] = wait_until(finished, timeout, f"run {run_id} of {dag_id}", interval=1.0)
            return result

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        with self.client() as client:
            tis = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100}).json()
        return {f"{t['task_id']}[{t['map_index']}]": t["state"] for t in tis["task_instances"]}


@contextmanager
def running(stack: AirflowStack, components: Sequence[Sequence[str]]) -> Iterator[AirflowStack]:
    """Migrate, start the components (``airflow <args>``, named by their first argument), always stop them."""
    try:
        stack.migrate()
        for args in components:
            stack.start(args[0], *args)
        yield stack
    finally:
        stack.stop()
