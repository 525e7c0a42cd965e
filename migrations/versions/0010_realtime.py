"""realtime outbox

Revision ID: 0010
Revises: 0009
"""
from migrations.helpers import run_sql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    """)


def downgrade() -> None:
    run_sql(r"""
    """)
