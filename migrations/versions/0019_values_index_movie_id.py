"""metric_values (metric_id, raw_value): movie_id joins observed_at in the INCLUDE list

The search for a raw-value range ("imdb_rating <= 4", the full search of search_movies) needs
the movie ids of the matching values. The index had the values and observed_at only, so
every match went to the heap of metric_values: at 1M movies 9.5k matches on 5.8k heap pages,
13-17 ms of a 90 ms search; index-only, 2 ms. The ids come out in raw-value order, which
search sorts before looking up their scores (sql/400-search.sql, search_query 'full').

The index keeps its name and keys, so the coverage pass (an index-only scan of all of it,
sql/500-coverage.sql) and top_n's walks by raw value still use it; those walks fetch
movie_id too, index-only now. At 1M (5.8M values) it grew from 258 to 275 MB; inserting
600k values and updating 100k of them was as fast with either index (two alternating
rounds, within the runs' spread). movie_id never changes in place, so updates stay as HOT
as before (none: raw_value and observed_at were indexed already).

The new index is built before the old one is dropped. The build holds a SHARE lock: reads go
on, writes to metric_values wait. At 1M the whole upgrade took 13 s, with the SQL layer
applied again. The drop's ACCESS EXCLUSIVE lock comes last and is held only until the commit.

Revision ID: 0019
Revises: 0018
"""
from migrations.helpers import run_sql

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    CREATE INDEX metric_values_metric_value_observed_0019 ON reelscore.metric_values (metric_id, raw_value)
      INCLUDE (observed_at, movie_id);
    DROP INDEX reelscore.metric_values_metric_value_observed;
    ALTER INDEX reelscore.metric_values_metric_value_observed_0019 RENAME TO metric_values_metric_value_observed;
    """)


def downgrade() -> None:
    run_sql(r"""
    CREATE INDEX metric_values_metric_value_observed_0018 ON reelscore.metric_values (metric_id, raw_value)
      INCLUDE (observed_at);
    DROP INDEX reelscore.metric_values_metric_value_observed;
    ALTER INDEX reelscore.metric_values_metric_value_observed_0018 RENAME TO metric_values_metric_value_observed;
    """)
