"""realtime outbox: every announced change as a numbered row (event_outbox), the
per-transaction staging of events (event_pending), and the prune horizon.

The triggers and functions that fill these tables live in sql/700-realtime.sql.

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
    -- One row per announced change, numbered in commit order (the number is taken at
    -- commit time under a lock, see sql/700-realtime.sql), so a client that saw seq N
    -- catches up with every row seq > N and misses nothing.
    CREATE TABLE reelscore.event_outbox (
      seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      channel    text NOT NULL DEFAULT 'reelscore_events',
      kind       text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,39}$'),
      payload    jsonb NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX event_outbox_created_at ON reelscore.event_outbox (created_at);
    COMMENT ON TABLE reelscore.event_outbox IS
      'Every change announced on NOTIFY channel reelscore_events, numbered in commit order, for catch-up (events_since) until pruned (prune_outbox)';

    -- Statement triggers stage what changed here during a transaction; a deferred trigger
    -- merges the staged rows into one outbox row per kind at commit and deletes them, so
    -- committed state never holds rows here.
    CREATE TABLE reelscore.event_pending (
      id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      txid   xid8 NOT NULL DEFAULT pg_current_xact_id(),
      kind   text NOT NULL,
      op     text NOT NULL,
      ids    bigint[] NOT NULL DEFAULT '{}',
      more   boolean NOT NULL DEFAULT false,
      n      bigint NOT NULL DEFAULT 0,
      metric_ids integer[] NOT NULL DEFAULT '{}'
    );
    COMMENT ON TABLE reelscore.event_pending IS
      'Events staged by the current transaction; emptied at its commit (always empty between transactions)';

    -- The highest seq removed by prune_outbox: a client whose last seen seq is below it
    -- may have missed events and must reload instead of catching up.
    CREATE TABLE reelscore.event_outbox_state (
      singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
      pruned_through bigint NOT NULL DEFAULT 0,
      pruned_at      timestamptz
    );
    INSERT INTO reelscore.event_outbox_state DEFAULT VALUES;
    COMMENT ON TABLE reelscore.event_outbox_state IS
      'One row: the highest outbox seq removed by pruning (catch-up from below it is incomplete)';
    """)


def downgrade() -> None:
    # The trigger functions of sql/700-realtime.sql write into these tables: drop them too
    # (CASCADE removes their triggers on metric_values, metric_definitions and profiles).
    run_sql(r"""
    DO $$
    DECLARE
      v_fn regprocedure;
    BEGIN
      IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        EXECUTE $c$SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = 'reelscore-prune-outbox'$c$;
      END IF;
      FOR v_fn IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'reelscore'
          AND p.proname IN ('realtime_capture', 'realtime_capture_truncate', 'realtime_flush',
                            'emit_event', 'events_since', 'prune_outbox', 'outbox_status',
                            'realtime_install_triggers')
      LOOP
        EXECUTE format('DROP FUNCTION %s CASCADE', v_fn);
      END LOOP;
    END $$;
    DROP TABLE IF EXISTS reelscore.event_outbox_state, reelscore.event_pending,
      reelscore.event_outbox CASCADE;
    """)
