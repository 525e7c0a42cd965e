"""Least privilege: PUBLIC gets nothing, each role gets its API and no more, SECURITY DEFINER
functions pin search_path, dynamic SQL never concatenates values."""
import re
from pathlib import Path

import psycopg
import pytest

from tests.conftest import url_for_db

ROOT = Path(__file__).resolve().parents[2]


def test_public_can_execute_no_function_and_touch_no_table(conn):
    funcs = conn.execute("""select p.oid::regprocedure::text from pg_proc p
        where p.pronamespace = 'reelscore'::regnamespace and has_function_privilege('public', p.oid, 'EXECUTE')""").fetchall()
    assert funcs == []
    tables = conn.execute("""select c.relname from pg_class c
        where c.relnamespace = 'reelscore'::regnamespace and c.relkind in ('r', 'v', 'm', 'p')
          and (has_table_privilege('public', c.oid, 'SELECT') or has_table_privilege('public', c.oid, 'INSERT')
               or has_table_privilege('public', c.oid, 'UPDATE') or has_table_privilege('public', c.oid, 'DELETE'))""").fetchall()
    assert tables == []
    assert conn.execute("select has_schema_privilege('public', 'reelscore', 'USAGE')").fetchone()[0] is False


def test_a_login_without_a_reelscore_role_gets_nothing(conn, db_url):
    conn.execute("do $$ begin if not exists (select 1 from pg_roles where rolname = 'rs_test_nobody') then "
                 "create role rs_test_nobody login; end if; end $$")
    with psycopg.connect(url_for_db(db_url, db_url.rsplit("/", 1)[1], user="rs_test_nobody")) as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("select reelscore.normalize_value('imdb_rating', 5)")


def test_security_definer_functions_pin_search_path(conn):
    rows = conn.execute("""select p.oid::regprocedure::text, coalesce(p.proconfig::text, '')
        from pg_proc p where p.pronamespace = 'reelscore'::regnamespace and p.prosecdef""").fetchall()
    for name, config in rows:
        assert "search_path=pg_catalog, pg_temp" in config or "search_path=pg_catalog,pg_temp" in config, name


def test_plpython_functions_are_security_invoker_or_pinned(conn):
    rows = conn.execute("""select p.oid::regprocedure::text, p.prosecdef, coalesce(p.proconfig::text, '')
        from pg_proc p join pg_language l on l.oid = p.prolang
        where p.pronamespace = 'reelscore'::regnamespace and l.lanname = 'plpython3u'""").fetchall()
    assert rows, "there are PL/Python functions"
    for name, secdef, config in rows:
        assert not secdef or "search_path" in config, name


# Dynamic SQL: EXECUTE with a string built by || (or format with %s on a value) is how values
# leak into SQL text. Every EXECUTE in sql/ must use format('%I') for names and USING for values.
_EXEC_CONCAT = re.compile(r"EXECUTE\s+(?:'[^']*'|\$\w*\$.*?\$\w*\$|\w+)\s*\|\|", re.DOTALL | re.IGNORECASE)


def test_dynamic_sql_never_concatenates():
    offenders = []
    for path in sorted((ROOT / "sql").glob("*.sql")):
        text = path.read_text()
        for m in _EXEC_CONCAT.finditer(text):
            offenders.append(f"{path.name}: {m.group(0)[:60]}")
    assert offenders == []


def test_plpy_modules_never_format_values_into_sql():
    """PL/Python code passes values as $n parameters of plpy.prepare, never by string formatting."""
    bad = re.compile(r"plpy\.execute\(\s*(f[\"']|[\"'][^\"']*[\"']\s*(%|\.format|\+))")
    offenders = []
    for path in sorted((ROOT / "plpy" / "reelpy").glob("*.py")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if bad.search(line):
                offenders.append(f"{path.name}:{i}: {line.strip()}")
    assert offenders == []


# -- each role against each kind of call ------------------------------------------------------
READ_CALLS = [
    "select reelscore.normalize_value('imdb_rating', 7)",
    "select reelscore.movie_score(1, 'balanced')",
    "select * from reelscore.explain_score(1, 'balanced')",
    """select * from reelscore.search_movies('{"category": "rating", "min_normalized": 0.1}')""",
    "select * from reelscore.similar_movies(1, 5)",
    "select reelscore.parse_query('hidden gems from the 90s')",
    "select reelscore.capabilities()",
]
# Writers also take coverage snapshots: loaders and the CLI refresh run as writers (sql/900-grants.sql).
WRITE_CALLS = ["select reelscore.upsert_metric(2, 'metacritic_score', 71)", "select reelscore.refresh_coverage()"]
ADMIN_CALLS = [
    """select reelscore.save_profile('priv_test', '{"rating": 0.7, "award": 0.3}'::jsonb)""",
    "update reelscore.metric_definitions set source_reliability = 0.85 where code = 'tmdb_rating'",
    "select * from reelscore.refresh_scores('balanced')",
]


@pytest.fixture(scope="module")
def priv_data(db_url):
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("insert into reelscore.movies (id, title, genres) values (1, 'Vertigo', '{Thriller}'), "
                  "(2, 'Rear Window', '{Thriller}')")
        for movie, code, raw in [(1, "imdb_rating", 8.3), (1, "metacritic_score", 100), (2, "imdb_rating", 8.5)]:
            c.execute("select reelscore.upsert_metric(%s, %s, %s)", (movie, code, raw))
        c.execute("select * from reelscore.refresh_scores(null)")
    return db_url


def _allowed(conn, q):
    try:
        conn.execute(q).fetchall() if "select" in q.lower()[:7] else conn.execute(q)
        return True
    except psycopg.errors.InsufficientPrivilege:
        return False


@pytest.mark.parametrize("q", READ_CALLS)
def test_every_role_can_call_the_read_api(priv_data, role_conn, q):
    for kind in ("read", "write", "admin"):
        assert _allowed(role_conn(kind), q), (kind, q)


@pytest.mark.parametrize("q", WRITE_CALLS)
def test_only_writers_load_values(priv_data, role_conn, q):
    assert not _allowed(role_conn("read"), q)
    assert _allowed(role_conn("write"), q)
    assert _allowed(role_conn("admin"), q)


@pytest.mark.parametrize("q", ADMIN_CALLS)
def test_only_admins_edit_and_refresh(priv_data, role_conn, q):
    assert not _allowed(role_conn("read"), q)
    assert not _allowed(role_conn("write"), q)
    assert _allowed(role_conn("admin"), q)


def test_readers_cannot_write_tables_directly(priv_data, role_conn):
    reader = role_conn("read")
    for q in ["insert into reelscore.metric_values (movie_id, metric_id, raw_value) values (1, 5, 50)",
              "delete from reelscore.movies", "update reelscore.weight_profiles set rating_weight = 1",
              "select * from reelscore.admin_users"]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute(q)
