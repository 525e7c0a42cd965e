"""Where the database is: REELSCORE_DATABASE_URL, else the project-local cluster."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = ROOT / "sql"
PLPY_DIR = ROOT / "plpy"
LOCAL_PORT = int(os.environ.get("REELSCORE_PGPORT", "54329"))


def local_cluster_url(dbname: str = "reelscore") -> str:
    """URL of the cluster that `make db` (scripts/cluster.sh) starts."""
    return f"postgresql://postgres@127.0.0.1:{LOCAL_PORT}/{dbname}"


def database_url() -> str:
    """The URL every tool uses: REELSCORE_DATABASE_URL wins over the local cluster."""
    return os.environ.get("REELSCORE_DATABASE_URL") or local_cluster_url()


def sqlalchemy_url(url: str | None = None) -> str:
    """The same URL with SQLAlchemy's psycopg 3 driver name."""
    url = url or database_url()
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise ValueError(f"not a PostgreSQL URL: {url!r} (expected postgresql://user@host:port/db)")
