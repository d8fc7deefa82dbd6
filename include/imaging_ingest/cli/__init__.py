"""``imaging-ingest``: the archive staff's command line.

Every command calls the same library functions as the Airflow tasks. Output is an aligned
table for people and ``--json`` for scripts; long work shows a progress bar on a terminal.
Exit codes: 0 done (bad input files are quarantined, not errors), 2 bad arguments,
1 a system error (unreachable catalog or storage, unreadable secret).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from imaging_ingest import __version__

__all__ = ["UsageError", "long_lived_imports", "main", "print_table"]


class UsageError(Exception):
    """Bad arguments: exit code 2."""


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool = False) -> None:
    """Aligned columns for people, a JSON list for scripts."""
    if as_json:
        print(json.dumps([{c: r.get(c) for c in columns} for r in rows], indent=2, default=str))
        return
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def progress_bar(enabled: bool) -> Callable[[str, int], Callable[[], None]] | None:
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    def start(label: str, total: int) -> Callable[[], None]:
        bar = tqdm(total=total, desc=label, unit="file", file=sys.stderr)
        return lambda: bar.update(1)

    return start


@contextmanager
def long_lived_imports() -> Iterator[None]:
    """Import a command's libraries with the cyclic collector off, then freeze what they made.

    pandas, SQLAlchemy, pydicom and pydantic make hundreds of thousands of objects that live as
    long as the process and no garbage; collecting while importing them, and walking them again in
    every full collection of the run, cost ~0.3 s of a short ``deidentify`` (measured with
    ``gc.callbacks``). ``main`` gives them back to the collector when the command ends.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def settings_from_env() -> Any:
    from imaging_ingest.config.settings import Settings

    return Settings.from_env()


def catalog_for(url: str | None = None) -> Any:
    from imaging_ingest.catalog import Catalog

    return Catalog.from_url(url or settings_from_env().catalog_url)


#: Modules that add commands; each has ``register(command)`` (see ``commands.py``).
COMMAND_MODULES = (
    "imaging_ingest.cli.commands",
    "imaging_ingest.cli.catalog",
    "imaging_ingest.cli.quarantine",
    "imaging_ingest.cli.text_review",
    "imaging_ingest.cli.ops",
    "imaging_ingest.cli.api",
    "imaging_ingest.cli.download",
    "imaging_ingest.cli.mirror",
)

CommandFactory = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="imaging-ingest", description="The imaging archive's ingest command line."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, func: Callable[[argparse.Namespace], int], help_text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.set_defaults(func=func)
        return sub

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    frozen = gc.get_freeze_count()
    try:
        from imaging_ingest.core.secret import configured_secret

        configured_secret()  # a placeholder or guessable secret in the environment: refused before any command
        return int(args.func(args))
    except UsageError as exc:
        parser.error(str(exc))  # exits with code 2
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"imaging-ingest: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if gc.get_freeze_count() > frozen:  # a command froze its imports (long_lived_imports): main may run again
            gc.unfreeze()
    return 0


if __name__ == "__main__":
    sys.exit(main())
