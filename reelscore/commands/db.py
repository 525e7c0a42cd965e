"""reelscore db: start (or find) the project-local cluster and print its URL."""
from __future__ import annotations

import os
import subprocess

from reelscore.config import ROOT


def register(sub) -> None:
    p = sub.add_parser("db", help="start or find the local PostgreSQL cluster and print its URL")
    p.add_argument("action", nargs="?", default="start", choices=["start", "stop", "status", "url"])
    p.set_defaults(func=run)


def run(args) -> int:
    from reelscore.cli import CommandError

    if os.environ.get("REELSCORE_DATABASE_URL") and args.action in ("start", "url"):
        print(os.environ["REELSCORE_DATABASE_URL"])
        return 0
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "cluster.sh"), args.action])
    if proc.returncode not in (0, 3):
        raise CommandError(f"cluster {args.action} failed (see the message above)", proc.returncode)
    return proc.returncode
