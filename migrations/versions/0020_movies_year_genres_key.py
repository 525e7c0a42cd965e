"""movies (id) INCLUDE (release_year, genres): the search walk tests genre and year index-only

A search with a genre or year condition that is common among the best-scored movies ("dramas
of the 90s") walks the profile's score index and tests each movie's genres and release year
(sql/400-search.sql, search_query 'prefix' and the walk of 'page'). Each test looked the movie
up in movies_pkey and then in the heap of movies (wide rows: titles, external ids). With the
year and genres beside the id in an index, the test reads the index alone once the pages are
all-visible (movies change rarely; autovacuum marks them). At 1M movies, "Drama, 1990-1999",
lim 50 (a walk of ~3,800 rows): p50 57 / 53 ms without the index (before and after, A/B/A), 45 ms
with it; the index took 2.5 s to build and holds 78 MB.

Not unique and not the primary key: the foreign keys to movies(id) stay on movies_pkey.

Revision ID: 0020
Revises: 0019
"""
from migrations.helpers import run_sql

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    CREATE INDEX movies_id_year_genres ON reelscore.movies (id) INCLUDE (release_year, genres);
    """)


def downgrade() -> None:
    run_sql(r"""
    DROP INDEX reelscore.movies_id_year_genres;
    """)
