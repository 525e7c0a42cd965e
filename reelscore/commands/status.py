"""reelscore status: what the database offers and the path each optional feature took."""
from __future__ import annotations

import json

from reelscore.config import database_url
from reelscore.db import connect, redact


def register(sub) -> None:
    p = sub.add_parser("status", help="show extensions, versions and the path each optional feature took")
    p.add_argument("--json", action="store_true", help="print reelscore.capabilities() as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from reelscore.cli import CommandError

    with connect() as conn:
        has = conn.execute("select to_regprocedure('reelscore.capabilities()') is not null").fetchone()[0]
        if not has:
            raise CommandError("the schema is not installed: run 'reelscore migrate' (or 'make demo')")
        caps = conn.execute("select reelscore.capabilities()").fetchone()[0]
        rev = conn.execute("select version_num from public.alembic_version").fetchone()
    if args.json:
        print(json.dumps(caps, indent=2))
        return 0
    tsdb = caps.get("timescaledb")
    cron = caps.get("pg_cron")
    print(f"database      {redact(database_url())}  (schema revision {rev[0] if rev else '?'})")
    print(f"PostgreSQL    {caps['postgresql']}")
    print(f"PL/Python     plpython3u {caps['plpython3u']}, Python {caps['python']['python_version']}")
    print(f"pgvector      {caps['pgvector'] or 'not installed (required)'}")
    print(f"TimescaleDB   {tsdb['version'] + ' (' + str(tsdb['license']) + ' license)' if tsdb else 'not installed (optional)'}")
    print(f"pg_cron       {cron['version'] + ' in database ' + cron['database'] if cron else 'not in this database (optional)'}")
    print("paths taken:")
    for feature, path in sorted(caps["paths"].items()):
        print(f"  {feature:20s} {path}")
    return 0
