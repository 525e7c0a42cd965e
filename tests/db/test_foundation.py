"""The foundation: migrations up, down to base and up again; capabilities; the PL/Python path."""
import json
import subprocess
import sys

import psycopg

from tests.conftest import ROOT, migrate


def schema_objects(url: str) -> set[tuple[str, str]]:
    with psycopg.connect(url) as c:
        rows = c.execute("""
            SELECT 'table', c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'reelscore' AND c.relkind IN ('r', 'p', 'v', 'm')
            UNION ALL
            SELECT 'function', p.oid::regprocedure::text FROM pg_proc p
              JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'reelscore'
        """).fetchall()
    return set(rows)


def test_upgrade_downgrade_upgrade(fresh_db):
    url = fresh_db()
    migrate(url)
    first = schema_objects(url)
    assert ("table", "metric_definitions") in first
    assert any(name.startswith("reelscore.normalize_value(") for kind, name in first if kind == "function")
    migrate(url, "base", down=True)
    with psycopg.connect(url) as c:
        assert c.execute("select to_regnamespace('reelscore')").fetchone()[0] is None
        assert c.execute("select count(*) from pg_extension where extname = 'vector'").fetchone()[0] == 0
    migrate(url)
    assert schema_objects(url) == first


def test_capabilities_report_every_feature(conn):
    caps = conn.execute("select reelscore.capabilities()").fetchone()[0]
    server_version = conn.execute("show server_version").fetchone()[0]
    assert caps["postgresql"] == server_version
    assert caps["pgvector"].startswith("0.8")
    assert caps["timescaledb"]["version"].startswith("2.19")
    assert caps["timescaledb"]["license"] == "apache"
    assert caps["python"]["python_version"].startswith("3.")
    assert set(caps["paths"]) == {"timeseries_storage", "rollups", "scheduling"}
    # a test database is not cron.database_name, so scheduling must take the CLI path here
    assert caps["pg_cron"] is None
    assert caps["paths"]["scheduling"].startswith("CLI loop")
    assert caps["paths"]["timeseries_storage"] == "TimescaleDB hypertable"


def test_plpython_path_end_to_end(conn):
    """The same module answers in-process and inside the server."""
    from reelpy import capabilities
    inside = conn.execute("select reelscore.python_info()").fetchone()[0]
    outside = capabilities.python_info()
    assert set(inside) == set(outside)
    assert inside["implementation"] == "CPython"


def test_plpython_session_notices_upgrade(conn):
    """A session that already loaded a module sees a new version of its source."""
    conn.execute("select reelscore.python_info()")
    src = conn.execute("select source from reelscore.plpy_modules where name = 'reelpy.capabilities'").fetchone()[0]
    patched = src.replace('"implementation": platform.python_implementation()', '"implementation": "patched"')
    assert patched != src
    conn.execute("update reelscore.plpy_modules set source = %s, sha = 'test' where name = 'reelpy.capabilities'",
                 (patched,))
    assert conn.execute("select reelscore.python_info()->>'implementation'").fetchone()[0] == "patched"
    conn.execute("update reelscore.plpy_modules set source = %s, sha = 'orig' where name = 'reelpy.capabilities'",
                 (src,))
    assert conn.execute("select reelscore.python_info()->>'implementation'").fetchone()[0] == "CPython"


def test_public_has_no_execute_on_plpython(conn):
    rows = conn.execute("""
        SELECT p.oid::regprocedure::text FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
        WHERE n.nspname = 'reelscore' AND l.lanname = 'plpython3u'
          AND has_function_privilege('public', p.oid, 'EXECUTE')""").fetchall()
    assert rows == []


def test_cli_status_and_bad_url(db_url):
    env = {"REELSCORE_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([sys.executable, "-m", "reelscore.cli", "status", "--json"], cwd=ROOT,
                        env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["pgvector"].startswith("0.8")
    env["REELSCORE_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/nothing"
    bad = subprocess.run([sys.executable, "-m", "reelscore.cli", "status"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert bad.returncode != 0
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "cannot connect" in bad.stderr and "make db" in bad.stderr
