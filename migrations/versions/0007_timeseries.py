"""time-series rollups

Revision ID: 0007
Revises: 0006
"""
from migrations.helpers import run_sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    """)


def downgrade() -> None:
    run_sql(r"""
    """)
