"""Operations commands: ``metrics-exporter`` (a StatsD-to-Prometheus bridge for single-machine installs)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from pathlib import Path

from imaging_ingest.cli import CommandFactory, UsageError, print_table

DEFAULT_MAPPING = Path(__file__).resolve().parents[3] / "deploy" / "statsd" / "mapping.yml"


def _address(text: str, what: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise UsageError(f"{what} must be HOST:PORT, not {text!r}")
    return host or "127.0.0.1", int(port)


def cmd_metrics_exporter(args: argparse.Namespace) -> int:
    from imaging_ingest.ops.statsd_bridge import Bridge, StatsdMapping

    mapping_path = Path(args.mapping)
    if not mapping_path.is_file():
        raise UsageError(f"mapping file {mapping_path} not found (see deploy/statsd/mapping.yml)")
    bridge = Bridge(StatsdMapping.load(mapping_path))
    udp_port, http_port = bridge.start(_address(args.statsd, "--statsd"), _address(args.listen, "--listen"))
    print(f"StatsD on udp {args.statsd.rpartition(':')[0] or '127.0.0.1'}:{udp_port}; "
          f"Prometheus metrics on http://{args.listen.rpartition(':')[0] or '127.0.0.1'}:{http_port}/metrics", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    bridge.stop()
    return 0


def cmd_check_secrets(args: argparse.Namespace) -> int:
    """Refuse a deployment whose environment holds a placeholder or guessable secret (the stack's init)."""
    from imaging_ingest.core.secret import check_stack_secrets

    checked = check_stack_secrets()
    print_table([{"secret": name, "state": "ok"} for name in checked], ["secret", "state"], args.json)
    return 0


def register(command: CommandFactory) -> None:
    command(
        "check-secrets",
        cmd_check_secrets,
        "check every secret of the environment (pseudonymisation, JWT, Fernet, API keys, passwords): "
        "placeholders and low-entropy values are refused",
    )
    exporter = command(
        "metrics-exporter",
        cmd_metrics_exporter,
        "receive StatsD metrics (Airflow's and the pipeline's) and serve them to Prometheus",
    )
    exporter.add_argument("--statsd", default="127.0.0.1:9125", metavar="HOST:PORT", help="UDP address to listen on")
    exporter.add_argument("--listen", default="127.0.0.1:9102", metavar="HOST:PORT", help="HTTP address for /metrics")
    exporter.add_argument("--mapping", default=str(DEFAULT_MAPPING), help="statsd-exporter mapping file")
