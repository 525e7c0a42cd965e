"""coverage gaps: an index on movie_features (present, movie_id)

coverage_gaps() ranks the movies lacking a scope by reach. Where few movies with reach lack
the scope (category rating at 1M movies: none of the 914k with popularity), walking the reach
metric's index read all of it and took 3-4 s. reelscore.coverage_gaps() now finds the
distinct presence masks that lack the scope by a skip scan of this index (a few thousand
masks at 1M movies), and their movies are read index-only: the sparse case then costs
milliseconds. 39 MB at 1M movies; one more index entry per feature row written (feature rows
are rewritten on every value change, and no update of them is HOT: see docs/coverage.md).

Revision ID: 0015
Revises: 0014
"""
from migrations.helpers import run_sql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    CREATE INDEX IF NOT EXISTS movie_features_present ON reelscore.movie_features (present, movie_id);
    """)


def downgrade() -> None:
    run_sql(r"""
    DROP INDEX IF EXISTS reelscore.movie_features_present;
    """)
