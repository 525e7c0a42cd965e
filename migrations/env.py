"""alembic environment: revisions hold tables and data (history); after an upgrade that
reaches head, the idempotent layer (sql/ files and plpy/ modules) is re-applied in the
same transaction, so a failed upgrade changes nothing."""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from reelscore.config import sqlalchemy_url
from reelscore.schema import apply_idempotent

config = context.config


def run_migrations_online() -> None:
    url = config.attributes.get("url") or sqlalchemy_url()
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None,
                          version_table_schema="public", transaction_per_migration=False)
        with context.begin_transaction():
            context.run_migrations()
            mctx = context.get_context()
            heads = set(context.script.get_heads())
            current = set(mctx.get_current_heads())
            if current and current == heads:
                raw = connection.connection.driver_connection
                apply_idempotent(raw, verbose=bool(config.attributes.get("verbose")))


if context.is_offline_mode():
    raise SystemExit("offline (--sql) mode is not supported: reelscore applies SQL files raw")
run_migrations_online()
