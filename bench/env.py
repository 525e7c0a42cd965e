"""The bench environment: machine facts, versions, and the bench database
(`reelscore_bench_<scale>`: created, migrated to head, filled once by reelscore.synth and
reused while its scale and seed match)."""
from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

SCALES = {"1k": 1_000, "10k": 10_000, "100k": 100_000, "1m": 1_000_000, "1m-dense": 1_000_000}
# Scales whose catalogue is filled up to a share of movies per metric (`reelscore synth
# --min-coverage`): 1m-dense holds 18.7M values, more than the ~17M the issues state at 1M movies.
MIN_COVERAGE = {"1m-dense": 0.6}
SEED = 20261126
PGBIN = Path("/usr/lib/postgresql/15/bin")


def machine() -> dict:
    """CPU model, cores, RAM, kernel, Python."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        m = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        mem_gb = round(int(m.group(1)) / 1024 / 1024, 1) if m else None
    except OSError:
        pass
    load = None
    try:
        load = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": mem_gb, "kernel": platform.release(),
            "python": platform.python_version(), "loadavg_at_start": load}


def versions(conn: psycopg.Connection) -> dict:
    """Server version, extensions in the bench database, and the client-side peers."""
    out = {"postgresql": conn.execute("SHOW server_version").fetchone()[0],
           "extensions": dict(conn.execute("SELECT extname, extversion FROM pg_extension "
                                           "ORDER BY extname").fetchall())}
    for mod in ("numpy", "pandas", "duckdb", "psycopg"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    try:
        pgb = subprocess.run([str(PGBIN / "pgbench"), "--version"], capture_output=True, text=True, check=False)
        out["pgbench"] = pgb.stdout.strip()
    except OSError:
        out["pgbench"] = None
    settings = conn.execute("SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN "
                            "('shared_buffers', 'work_mem', 'max_parallel_workers_per_gather', "
                            "'jit', 'max_connections')").fetchall()
    out["settings"] = dict(settings)
    return out


def with_db(url: str, dbname: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + dbname, p.query, p.fragment))


def schema_fingerprint() -> str:
    """Hash of the alembic revisions: while revisions are still being written, a bench
    database migrated from older revision text is rebuilt rather than trusted."""
    import hashlib

    from reelscore.config import ROOT
    h = hashlib.sha256()
    for path in sorted((ROOT / "migrations" / "versions").glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _drop_create(admin: psycopg.Connection, dbname: str) -> None:
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def ensure_database(server_url: str, dbname: str, log=print, rebuild: bool = False) -> str:
    """Create the bench database if missing (or drop and recreate it when asked); return its
    URL. A database migrated from older revision text is kept: migrate_or_rebuild() rebuilds
    it only when the upgrade no longer applies (generating 100k movies again costs minutes)."""
    url = with_db(server_url, dbname)
    with psycopg.connect(with_db(server_url, "postgres"), autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            log(f"bench: creating database {dbname}")
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            return url
        if rebuild:
            log(f"bench: rebuilding {dbname} (--rebuild)")
            _drop_create(admin, dbname)
            return url
        with psycopg.connect(url, autocommit=True) as c:
            have = None
            if c.execute("SELECT to_regclass('bench.meta') IS NOT NULL").fetchone()[0]:
                row = c.execute("SELECT value->>'fingerprint' FROM bench.meta WHERE key = 'schema'").fetchone()
                have = row[0] if row else None
        if have != schema_fingerprint():
            log(f"bench: the revisions changed since {dbname} was built; upgrading it in place "
                "(use --rebuild to start from scratch)")
    return url


def migrate_or_rebuild(server_url: str, dbname: str, log=print) -> None:
    """Upgrade to head; if the idempotent layer no longer applies over the old objects (a view
    whose columns changed type, ...), rebuild the database from scratch and upgrade again."""
    url = with_db(server_url, dbname)
    try:
        migrate(url, log)
    except Exception as exc:  # noqa: BLE001 (a failure becomes a row, the run goes on)
        log(f"bench: upgrade of {dbname} failed ({str(exc).splitlines()[0][:200]}): rebuilding it")
        with psycopg.connect(with_db(server_url, "postgres"), autocommit=True) as admin:
            _drop_create(admin, dbname)
        migrate(url, log)
    record_fingerprint(url)


def record_fingerprint(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE SCHEMA IF NOT EXISTS bench")
        c.execute("""CREATE TABLE IF NOT EXISTS bench.meta (
                       key text PRIMARY KEY, value jsonb NOT NULL, updated_at timestamptz DEFAULT now())""")
        c.execute("INSERT INTO bench.meta (key, value) VALUES ('schema', jsonb_build_object('fingerprint', %s::text)) "
                  "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()",
                  (schema_fingerprint(),))


def migrate(url: str, log=print) -> None:
    """alembic upgrade head (re-applies the idempotent layer, so new SQL functions appear)."""
    from alembic import command

    from reelscore.commands.migrate import alembic_config
    t0 = time.monotonic()
    command.upgrade(alembic_config(url), "head")
    log(f"bench: schema at head ({time.monotonic() - t0:.1f} s)")


def ensure_data(conn: psycopg.Connection, n_movies: int, seed: int = SEED, log=print,
                min_coverage: float = 0.0) -> dict:
    """Generate the synthetic catalogue once; reuse it while bench.meta says it matches."""
    from reelscore import synth
    conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
    conn.execute("""CREATE TABLE IF NOT EXISTS bench.meta (
                      key text PRIMARY KEY, value jsonb NOT NULL, updated_at timestamptz DEFAULT now())""")
    want = {"movies": n_movies, "seed": seed, "min_coverage": min_coverage}
    have = conn.execute("SELECT value FROM bench.meta WHERE key = 'synth'").fetchone()
    movies = conn.execute("SELECT count(*) FROM reelscore.movies").fetchone()[0]
    if (have and have[0].get("movies") == n_movies and have[0].get("seed") == seed
            and have[0].get("min_coverage", 0.0) == min_coverage and movies == n_movies):
        log(f"bench: reusing {movies} synthetic movies (seed {seed})")
        return {**have[0], "generated": False}
    log(f"bench: generating {n_movies} synthetic movies (seed {seed})")
    t0 = time.monotonic()
    # HNSW grows one insertion at a time (minutes at 100k): drop it for the load, and let
    # groups.ensure_scores build it once the features exist (search engineer's addition).
    if conn.execute("SELECT to_regprocedure('reelscore.drop_similarity_index()') IS NOT NULL").fetchone()[0]:
        conn.execute("SELECT reelscore.drop_similarity_index()")
    stats = synth.write(conn, n_movies, seed, truncate=True, progress=True, min_coverage=min_coverage)
    conn.execute("VACUUM (ANALYZE) reelscore.metric_values") if conn.autocommit else None
    info = {**want, "values": stats.values, "seconds": round(time.monotonic() - t0, 1)}
    conn.execute("INSERT INTO bench.meta (key, value) VALUES ('synth', %s) ON CONFLICT (key) DO UPDATE "
                 "SET value = excluded.value, updated_at = now()", (psycopg.types.json.Jsonb(info),))
    # derived data from an earlier catalogue is stale now
    conn.execute("DELETE FROM bench.meta WHERE key NOT IN ('synth', 'schema')")
    return {**info, "generated": True}
