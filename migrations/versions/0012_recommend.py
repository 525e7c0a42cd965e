"""collaborative filtering factors

Revision ID: 0012
Revises: 0011
"""
from migrations.helpers import run_sql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    """)


def downgrade() -> None:
    run_sql(r"""
    """)
