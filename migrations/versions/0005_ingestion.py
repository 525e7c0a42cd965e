"""ingestion staging and legacy source shapes

Revision ID: 0005
Revises: 0004
"""
from migrations.helpers import run_sql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    """)


def downgrade() -> None:
    run_sql(r"""
    """)
