"""ML models, clusters, experiments

Revision ID: 0011
Revises: 0010
"""
from migrations.helpers import run_sql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    """)


def downgrade() -> None:
    run_sql(r"""
    """)
