"""foundation: schema reelscore, extensions, roles, PL/Python module store

Revision ID: 0001
Revises:
"""
from migrations.helpers import run_sql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    CREATE SCHEMA IF NOT EXISTS reelscore;
    COMMENT ON SCHEMA reelscore IS 'reelscore: unified movie metrics (registry, scores, coverage, search)';
    REVOKE ALL ON SCHEMA reelscore FROM PUBLIC;

    -- Required extensions.
    CREATE EXTENSION IF NOT EXISTS plpython3u;
    CREATE EXTENSION IF NOT EXISTS vector;

    -- Optional extensions: installed when the server offers them; capabilities() reports the path.
    DO $$
    BEGIN
      IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
         AND current_setting('shared_preload_libraries') ~ 'timescaledb' THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
      END IF;
      -- pg_cron lives in exactly one database per cluster (cron.database_name).
      IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_cron')
         AND current_setting('shared_preload_libraries') ~ 'pg_cron'
         AND current_setting('cron.database_name', true) = current_database() THEN
        CREATE EXTENSION IF NOT EXISTS pg_cron;
      END IF;
      IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements')
         AND current_setting('shared_preload_libraries') ~ 'pg_stat_statements' THEN
        CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
      END IF;
    END $$;

    -- Group roles (NOLOGIN): least privilege, granted in sql/900-grants.sql.
    -- Roles are cluster-wide, so they are created once and never dropped by a downgrade.
    DO $$
    DECLARE r text;
    BEGIN
      FOREACH r IN ARRAY ARRAY['reelscore_read', 'reelscore_write', 'reelscore_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
          EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
      END LOOP;
    END $$;
    GRANT reelscore_read TO reelscore_write;
    GRANT reelscore_write TO reelscore_admin;

    -- PL/Python sources live in the database (no files on the server); see plpy/README.md.
    CREATE TABLE reelscore.plpy_modules (
      name         text PRIMARY KEY,
      source       text NOT NULL,
      sha          text NOT NULL,
      installed_at timestamptz NOT NULL DEFAULT now()
    );
    COMMENT ON TABLE reelscore.plpy_modules IS 'Sources of the reelpy package, loaded by PL/Python shims';
    """)


def downgrade() -> None:
    run_sql(r"""
    DROP SCHEMA IF EXISTS reelscore CASCADE;
    DROP EXTENSION IF EXISTS pg_cron;
    DROP EXTENSION IF EXISTS timescaledb;
    DROP EXTENSION IF EXISTS vector;
    DROP EXTENSION IF EXISTS pg_stat_statements;
    """)
