"""Installs the idempotent layer: every sql/NNN-*.sql file in load order, and the
PL/Python module sources of plpy/reelpy/ as rows of reelscore.plpy_modules.

Tables and data changes are alembic revisions (migrations/versions); this module holds
what is re-applied on every upgrade to head (functions, views, triggers, grants)."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from reelscore.config import PLPY_DIR, SQL_DIR

_SQL_NAME = re.compile(r"^\d{3}-[a-z0-9-]+\.sql$")


def sql_files(sql_dir: Path = SQL_DIR) -> list[Path]:
    """The idempotent SQL files in load order (their three-digit prefix)."""
    files = sorted(p for p in sql_dir.iterdir() if _SQL_NAME.match(p.name))
    return files


def plpy_sources(plpy_dir: Path = PLPY_DIR) -> dict[str, str]:
    """Module name -> source for every module of the reelpy package."""
    pkg = plpy_dir / "reelpy"
    out = {}
    for path in sorted(pkg.glob("*.py")):
        name = "reelpy" if path.stem == "__init__" else f"reelpy.{path.stem}"
        out[name] = path.read_text(encoding="utf-8")
    return out


def install_plpy_modules(raw_conn) -> None:
    """Store the reelpy sources in the database, so no file is written on the server.
    Sessions compare the stored hashes with what they loaded and reload on change."""
    sources = plpy_sources()
    with raw_conn.cursor() as cur:
        cur.execute("delete from reelscore.plpy_modules where name <> all(%s)", (list(sources),))
        for name, src in sources.items():
            sha = hashlib.sha256(src.encode()).hexdigest()[:16]
            cur.execute(
                """insert into reelscore.plpy_modules(name, source, sha) values (%s, %s, %s)
                   on conflict (name) do update set source = excluded.source, sha = excluded.sha,
                          installed_at = now()
                   where plpy_modules.sha is distinct from excluded.sha""",
                (name, src, sha))


def apply_idempotent(raw_conn, verbose: bool = False) -> list[str]:
    """Apply plpy modules then every sql file, raw (no parameter parsing, so `%` and `:x`
    inside function bodies survive). Runs in the caller's transaction."""
    install_plpy_modules(raw_conn)
    applied = []
    for path in sql_files():
        text = path.read_text(encoding="utf-8")
        try:
            raw_conn.execute(text)
        except Exception as exc:  # re-raise with the file name: the driver's message lacks it
            raise RuntimeError(f"{path.name}: {exc}") from exc
        applied.append(path.name)
        if verbose:
            print(f"  applied {path.name}")
    return applied
