"""weight profiles, versions, activations, history, precomputed scores and vectors

Revision ID: 0004
Revises: 0003
"""
from migrations.helpers import run_sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    """)


def downgrade() -> None:
    run_sql(r"""
    """)
