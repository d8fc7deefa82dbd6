"""The data-access commands: ``api`` (serve the NBIA-compatible API) and ``api-hash-password``."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

from imaging_ingest.cli import CommandFactory, UsageError


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from imaging_ingest.api.auth import load_users
    from imaging_ingest.api.queries import connect
    from imaging_ingest.api.settings import ApiSettings
    from imaging_ingest.config.settings import Settings

    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, not {args.port}")
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    # Check the configuration here, so that a mistake is one clear line, not a worker's traceback.
    settings = Settings.from_env()
    api_settings = ApiSettings.from_env()
    load_users(api_settings.users_file)
    connect(settings.catalog_url).dispose()
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"imaging-ingest api: serving NBIA v4 at http://{args.host}:{args.port}/nbia-api/services/v4/ "
          f"(OpenAPI at /docs)", file=sys.stderr, flush=True)
    uvicorn.run(
        "imaging_ingest.api.app:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
    )
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    from imaging_ingest.api.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise UsageError("the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise UsageError("choose a password of at least 8 characters")
    print(hash_password(password))
    return 0


def register(command: CommandFactory) -> None:
    api = command("api", cmd_api, "serve the published collections through the NBIA v4-compatible REST API")
    api.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    api.add_argument("--port", type=int, default=8088, help="port to listen on (default: 8088)")
    api.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    api.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    api.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        metavar="IPS",
        help="proxies whose X-Forwarded-* headers are trusted (default: 127.0.0.1)",
    )

    command("api-hash-password", cmd_hash_password,
            "hash a password (read from the terminal or stdin) for the API users file")
