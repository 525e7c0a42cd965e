"""Helpers for revisions: run SQL text raw through the driver (no bind-parameter parsing), and
repeat statements over the partitions of movie_scores."""
from __future__ import annotations

from alembic import op


def run_sql(sql: str) -> None:
    """Execute SQL text as is, in the migration's transaction."""
    if sql.strip():
        op.get_bind().connection.driver_connection.execute(sql)


def each_score_partition(statements: str) -> str:
    """A DO block running `statements` (format() calls on p.relname) for every partition of
    reelscore.movie_scores."""
    return r"""
    DO $$
    DECLARE
      p record;
    BEGIN
      FOR p IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'reelscore.movie_scores'::regclass LOOP
    """ + statements + r"""
      END LOOP;
    END
    $$;
    """
