"""Database access for the admin: a psycopg 3 pool per app (pgvector types registered on
each new connection), one connection per request in `g`, returned at teardown.

Connections are in autocommit mode: reads run as single statements, writes run inside
`with transaction(who, why):` which also tells the history triggers who made the change
and why (reelscore.db.set_actor). The pool resets every returned connection (RESET ALL),
so an actor or reason never leaks from one request into the next."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from flask import Flask, current_app, g
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from reelscore.db import set_actor


def _configure(conn: psycopg.Connection) -> None:
    try:
        from pgvector.psycopg import register_vector
        register_vector(conn)
    except psycopg.ProgrammingError:
        pass  # vector extension not installed (schema not migrated yet)
    conn.autocommit = True


def _reset(conn: psycopg.Connection) -> None:
    conn.execute("RESET ALL")


def _make_pool(app: Flask) -> ConnectionPool:
    timeout = int(app.config["STATEMENT_TIMEOUT_MS"])
    return ConnectionPool(
        app.config["DATABASE_URL"],
        min_size=int(app.config["DB_POOL_MIN"]), max_size=int(app.config["DB_POOL_MAX"]),
        kwargs={"autocommit": True, "application_name": "reelscore-admin", "connect_timeout": 5,
                "options": f"-c statement_timeout={timeout}"},
        configure=_configure, reset=_reset, open=False, name="reelscore-admin", timeout=10)


def pool() -> ConnectionPool:
    """The app's pool, opened on first use (so create_app never needs the server up)."""
    ext = current_app.extensions
    p = ext.get("reelscore_pool")
    if p is None:
        p = ext["reelscore_pool"] = _make_pool(current_app)
    if p.closed:
        p.open(wait=False)
    return p


def get_db() -> psycopg.Connection:
    """This request's connection (rows as dicts)."""
    if "db" not in g:
        conn = pool().getconn()
        conn.row_factory = dict_row
        g.db = conn
    return g.db


def close_db(exc: BaseException | None = None) -> None:
    """Return this request's connection to the pool."""
    conn = g.pop("db", None)
    if conn is not None:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        current_app.extensions["reelscore_pool"].putconn(conn)


def query(sql: str, params: Any = None, prepare: bool | None = None) -> list[dict[str, Any]]:
    """All rows of one statement. prepare=False keeps psycopg from preparing it after a few
    calls: a prepared statement may get a generic plan, which cannot use an index that needs
    the parameter's value (a trigram index for LIKE '%' || $1 || '%')."""
    return get_db().execute(sql, params, prepare=prepare).fetchall()


def query_one(sql: str, params: Any = None) -> dict[str, Any] | None:
    """The first row of one statement, or None."""
    return get_db().execute(sql, params).fetchone()


def _known(kind: str, name: str, probe: str, param: str) -> bool:
    """Whether a schema object exists; a positive answer is remembered for the app's life
    (objects appear with a migration and do not go away under a running panel), a negative
    one is asked again next time, so a section lights up as soon as its SQL is installed."""
    seen = current_app.extensions.setdefault("reelscore_known", set())
    if (kind, name) in seen:
        return True
    row = query_one(probe, (param,))
    if row and row["ok"]:
        seen.add((kind, name))
        return True
    return False


def function_exists(name: str) -> bool:
    """Whether a function reelscore.<name> is installed, any signature (sections whose SQL
    is not there yet say so instead of failing)."""
    short = name.removeprefix("reelscore.")
    return _known("function", short, """SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                  WHERE p.pronamespace = 'reelscore'::regnamespace AND p.proname = %s) AS ok""", short)


def relation_exists(name: str) -> bool:
    return _known("relation", name, "SELECT to_regclass(%s) IS NOT NULL AS ok", name)


@contextmanager
def transaction(who: str | None, why: str | None) -> Iterator[psycopg.Connection]:
    """A write transaction whose history rows name `who` and `why`."""
    conn = get_db()
    with conn.transaction():
        set_actor(conn, who, why)  # rolled back with the transaction on error
        yield conn
    set_actor(conn, None, None)    # session-wide setting: clear it after the commit


def close_pool(app: Flask) -> None:
    """Close the app's pool, and stop the realtime listener when one runs (tests and the
    CLI server call this at exit, so no thread outlives its database)."""
    hub = app.extensions.pop("reelscore_realtime", None)  # admin/realtime.py's listener
    if hub is not None:
        hub.stop()
    p = app.extensions.pop("reelscore_pool", None)
    if p is not None:
        p.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_db)
