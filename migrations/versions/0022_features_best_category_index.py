"""movie_features: one covering index on each movie's best category mean

An exact ad-hoc top-N (top_n, sql/350-scoring.sql) scores only the movies that can reach the
k-th best score. It used to find them as "some category mean >= theta", a bitmap over the
five cat_* indexes, and fetch every one of those rows from the heap to score it. At 1M movies
with a metric weight (the bench's ad-hoc query) that let 67k movies through, almost all on
their financial mean alone, and fetching them was 190 ms of a 290 ms call.

This index keys each movie on its best category mean, greatest(cat_*), and carries the five
means and the movie id. top_n now reads the range "best mean >= theta" index-only and keeps a
movie only when the weighted sum of its categories' bounds minus theta can be >= 0, which the
five means decide without the heap: the same 67k entries, 735 candidates left, 26 ms.

At 1M the index is 57 MB and builds in 3 s (SHARE lock: reads go on, writes to movie_features
wait). The column order inside greatest() is part of the index expression: queries must
write it the same way (reelscore.category_bound_sql).

Revision ID: 0022
Revises: 0021
"""
from migrations.helpers import run_sql

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    CREATE INDEX movie_features_best_category ON reelscore.movie_features
      ((greatest(cat_rating, cat_award, cat_financial, cat_cultural, cat_popularity)))
      INCLUDE (cat_rating, cat_award, cat_financial, cat_cultural, cat_popularity, movie_id);
    COMMENT ON INDEX reelscore.movie_features_best_category IS
      'Each movie''s best category mean with all five means: top_n decides which movies can reach theta index-only.';
    """)


def downgrade() -> None:
    run_sql("DROP INDEX IF EXISTS reelscore.movie_features_best_category;")
