"""reelscore migrate: alembic upgrade/downgrade with the project's configuration."""
from __future__ import annotations

from alembic import command
from alembic.config import Config

from reelscore.config import ROOT, database_url, sqlalchemy_url
from reelscore.db import connect


def alembic_config(url: str | None = None, verbose: bool = False) -> Config:
    """alembic Config pointing at migrations/ and the given (or configured) database."""
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["url"] = sqlalchemy_url(url or database_url())
    cfg.attributes["verbose"] = verbose
    return cfg


def register(sub) -> None:
    p = sub.add_parser("migrate", help="upgrade (default: head) or downgrade the schema with alembic")
    p.add_argument("target", nargs="?", default="head", help="revision: head, base, 0003, -1, ...")
    p.add_argument("--down", action="store_true", help="downgrade to TARGET instead of upgrading")
    p.add_argument("--verbose", "-v", action="store_true", help="list every SQL file applied")
    p.set_defaults(func=run)


def run(args) -> int:
    connect().close()  # fail early, with the one-line message, when the server is unreachable
    cfg = alembic_config(verbose=args.verbose)
    if args.down:
        command.downgrade(cfg, args.target)
    else:
        command.upgrade(cfg, args.target)
    with connect() as conn:
        rev = conn.execute("select version_num from public.alembic_version").fetchone()
    print(f"schema at revision {rev[0] if rev else 'base'}")
    return 0
