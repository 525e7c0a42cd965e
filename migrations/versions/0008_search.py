"""search support: the HNSW index for similar_movies, indexes that let a selective
category filter drive search_movies, and finer statistics on metric values.

- movie_features.nvec gets an HNSW index with the L2 (Euclidean) operator class. L2 is a
  metric on the normalized vectors (0..1 per slot, 0 where missing): unlike inner
  product it cannot rank an unrelated vector first, and HNSW's recall holds up on it.
  m = 24, ef_construction = 128: with pgvector's defaults (16, 64) recall@10 stalled at
  0.93-0.94 on 100k synthetic movies whatever ef_search (many near-duplicate vectors:
  movies with the same few metrics); with (24, 128) it is 0.957 at ef_search 100.
  sql/450-similar.sql sets hnsw.ef_search and iterative scans per call.
- Partial btree indexes on the category means (only rows that have the category), so a
  selective category condition (cultural >= 0.6: few movies are on canon lists) can find
  its candidates without walking the score order.
- A larger statistics target on metric_values (metric_id, raw_value), so the planner's
  estimate for "metric X raw value >= t" is less wrong.

Revision ID: 0008
Revises: 0007
"""
from migrations.helpers import run_sql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    CREATE INDEX movie_features_nvec_hnsw ON reelscore.movie_features
      USING hnsw (nvec vector_l2_ops) WITH (m = 24, ef_construction = 128);
    CREATE INDEX movie_features_cat_rating ON reelscore.movie_features (cat_rating)
      WHERE cat_rating IS NOT NULL;
    CREATE INDEX movie_features_cat_award ON reelscore.movie_features (cat_award)
      WHERE cat_award IS NOT NULL;
    CREATE INDEX movie_features_cat_financial ON reelscore.movie_features (cat_financial)
      WHERE cat_financial IS NOT NULL;
    CREATE INDEX movie_features_cat_cultural ON reelscore.movie_features (cat_cultural)
      WHERE cat_cultural IS NOT NULL;
    CREATE INDEX movie_features_cat_popularity ON reelscore.movie_features (cat_popularity)
      WHERE cat_popularity IS NOT NULL;
    ALTER TABLE reelscore.metric_values ALTER COLUMN raw_value SET STATISTICS 1000;
    CREATE STATISTICS reelscore.metric_values_metric_raw (mcv) ON metric_id, raw_value
      FROM reelscore.metric_values;
    """)


def downgrade() -> None:
    run_sql(r"""
    DROP STATISTICS IF EXISTS reelscore.metric_values_metric_raw;
    ALTER TABLE IF EXISTS reelscore.metric_values ALTER COLUMN raw_value SET STATISTICS -1;
    DROP INDEX IF EXISTS reelscore.movie_features_cat_popularity, reelscore.movie_features_cat_cultural,
      reelscore.movie_features_cat_financial, reelscore.movie_features_cat_award,
      reelscore.movie_features_cat_rating, reelscore.movie_features_nvec_hnsw CASCADE;
    """)
