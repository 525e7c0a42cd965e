"""precomputed scores: the ranking index covers the best-scored rows only; constants stored once

A full rescore of one profile at 1M movies spent its time (2.7-3.1 s p50, the target 1.5 s) on
writing 1M heap rows of seven columns (about 1 s: leader-only writes, ~1 us a row here), one
pass checking NOT NULLs and the partition CHECK (0.2 s), the primary key (0.5 s) and the
ranking index (score DESC NULLS LAST, movie_id) over every row (0.6-0.8 s). Two changes:

- The ranking index of a partition (`<partition>_top`) is partial: `WHERE score >= top_floor`,
  top_floor chosen at the rescore so that about the best 50,000 rows are in it (every row in
  smaller catalogues: top_floor = -Infinity). The readers that walk the ranking (top_movies,
  the search walk) read the rows at or above the floor from the index and, only when they
  need more, the rest by a scan (sql/350-scoring.sql, sql/400-search.sql). The index stays
  exact as scores change: PostgreSQL adds and removes rows as they cross the floor. Its build
  sorts 50,000 rows instead of 1M (0.7 s -> 0.1 s at 1M).
- The columns that are the same in every row of a full rescore (profile_id, profile_version,
  definitions_version, computed_at) are added after the rows are written, with their value as
  the default: PostgreSQL keeps such a value once in the catalog (a "missing value") instead
  of in each row. The heap rows are three columns wide (writing them 1.0 -> 0.65 s at 1M).
  A movie rescored later gets its own values in its row.

profile_score_state.top_floor records the floor of each partition's ranking index; NULL (as
left by this migration for partitions built before it) means the index covers every row.

Revision ID: 0021
Revises: 0020
"""
from migrations.helpers import each_score_partition, run_sql

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    ALTER TABLE reelscore.profile_score_state ADD COLUMN top_floor double precision;
    COMMENT ON COLUMN reelscore.profile_score_state.top_floor IS
      'The ranking index of the profile''s partition (movie_scores_p<id>_top) holds the rows with score >= top_floor; NULL: every row.';
    """)


def downgrade() -> None:
    # the functions of 0020 read the whole ranking from the index: make it whole again
    run_sql(each_score_partition(r"""
        EXECUTE format('DROP INDEX IF EXISTS reelscore.%I', p.relname || '_top');
        EXECUTE format('CREATE INDEX %I ON reelscore.%I (score DESC NULLS LAST, movie_id)', p.relname || '_top', p.relname);
    """) + r"""
    ALTER TABLE reelscore.profile_score_state DROP COLUMN top_floor;
    """)
