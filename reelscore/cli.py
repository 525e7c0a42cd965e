"""The `reelscore` command line. Each subcommand lives in reelscore/commands/<name>.py and
defines `register(subparsers)`; this module discovers them, so adding a command touches
one file. Errors print one line and exit non-zero, never a traceback."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import psycopg

from reelscore import commands
from reelscore.db import DatabaseUnavailable


class CommandError(RuntimeError):
    """A user-facing failure: printed as one line, exit status 1 (or .status)."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reelscore",
        description="reelscore: unified movie metrics inside PostgreSQL. "
                    "The database is REELSCORE_DATABASE_URL, else the local cluster of 'make db'.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"reelscore.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"reelscore {args.command}: {exc}", file=sys.stderr)
        return exc.status
    except DatabaseUnavailable as exc:
        print(f"reelscore {args.command}: {exc}", file=sys.stderr)
        return 2
    except psycopg.Error as exc:
        diag = getattr(exc, "diag", None)
        code = f" [{diag.sqlstate}]" if diag is not None and diag.sqlstate else ""
        first = (str(exc).strip().splitlines() or ["database error"])[0]
        print(f"reelscore {args.command}: database error{code}: {first}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"reelscore {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
