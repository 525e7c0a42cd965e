"""Helpers for revisions: run SQL text raw through the driver (no bind-parameter parsing)."""
from __future__ import annotations

from alembic import op


def run_sql(sql: str) -> None:
    """Execute SQL text as is, in the migration's transaction."""
    if sql.strip():
        op.get_bind().connection.driver_connection.execute(sql)
