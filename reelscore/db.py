"""Connections for the CLI, admin and ml: psycopg 3 with pgvector registered."""
from __future__ import annotations

import psycopg

from reelscore.config import database_url


class DatabaseUnavailable(RuntimeError):
    """The server could not be reached; the message says what to do."""


def connect(url: str | None = None, *, autocommit: bool = False, app: str = "reelscore",
            register_vector: bool = True) -> psycopg.Connection:
    """Open a connection, with a one-line error that says what to do when it fails."""
    url = url or database_url()
    try:
        conn = psycopg.connect(url, autocommit=autocommit, application_name=app, connect_timeout=5)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection failed"
        raise DatabaseUnavailable(
            f"cannot connect to {redact(url)}: {first} "
            "(start the local cluster with 'make db', or set REELSCORE_DATABASE_URL)") from exc
    if register_vector:
        try:
            from pgvector.psycopg import register_vector as _register
            _register(conn)
        except psycopg.ProgrammingError:
            pass  # the vector extension is not installed yet (before the first migration)
    return conn


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and ":" in url.split("@", 1)[0].split("//", 1)[-1]:
        head, tail = url.split("@", 1)
        scheme, cred = head.split("//", 1)
        return f"{scheme}//{cred.split(':', 1)[0]}:***@{tail}"
    return url


def set_actor(conn: psycopg.Connection, who: str | None, why: str | None = None) -> None:
    """Tell the database who makes the following changes and why (read by history triggers)."""
    conn.execute("select set_config('reelscore.actor', %s, false), set_config('reelscore.reason', %s, false)",
                 (who or "", why or ""))
