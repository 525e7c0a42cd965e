"""coverage snapshots

Revision ID: 0006
Revises: 0005
"""
from migrations.helpers import run_sql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    """)


def downgrade() -> None:
    run_sql(r"""
    """)
