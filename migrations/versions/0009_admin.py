"""admin panel users

Revision ID: 0009
Revises: 0008
"""
from migrations.helpers import run_sql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    """)


def downgrade() -> None:
    run_sql(r"""
    """)
