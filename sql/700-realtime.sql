-- 700-realtime: change announcements: statement triggers stage what changed, a deferred
-- trigger numbers it at commit into reelscore.event_outbox and NOTIFYs channel
-- 'reelscore_events'; catch-up (events_since), pruning (prune_outbox), status.
--
-- Flow of one transaction:
--   1. every INSERT/UPDATE/DELETE statement on a watched table fires one statement-level
--      trigger (transition tables, never one call per row) that stages a summary row in
--      event_pending: the affected ids (capped), the row count, the metric ids;
--   2. at COMMIT a deferred constraint trigger merges the staged rows into ONE outbox
--      row per kind, under an advisory lock so seq order is commit order (a reader that
--      saw seq N can never later find a committed row with a smaller seq), and sends
--      pg_notify('reelscore_events', <compact JSON with seq, kind, ids>) under 8000 bytes.
-- A 17M-row load done as one statement (or one transaction) is therefore one event.
--
-- NOTIFY payload (and events_since payload), keys in this order:
--   {"seq":12,"kind":"metric_values","ops":["insert","update"],"ids":[1,2],"n":58,
--    "more":false,"metric_ids":[3,4],"by":"alice","at":1795000000.123456}
--   kind: metric_values (ids = movie ids) | metric_definition (ids = metric ids) |
--         profile (ids = weight profile ids) | coverage (ids = coverage snapshot ids:
--         refresh_coverage() took a snapshot) | any kind passed to emit_event();
--   n: rows changed; more: true when ids is not the complete list (capped at 200, or
--   sampled from a bulk statement, or TRUNCATE): a client must then refresh everything
--   of that kind; by: reelscore.current_actor(); at: commit time (epoch seconds).

-- Staging: summarise one statement's transition table into event_pending.
-- TG_ARGV[0] = event kind, TG_ARGV[1] = column holding the announced id.
-- Bulk statements: the row count (and the metric ids for metric_values) are exact, in
-- one pass; the ids come from the first 6,400 rows only (the 200 smallest distinct), and
-- "more" says so, because a distinct over 17M rows would cost more than the load.
CREATE OR REPLACE FUNCTION reelscore.realtime_capture() RETURNS trigger
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
  c_cap     constant integer := 200;
  c_sample  constant integer := 6400;
  v_kind    text := TG_ARGV[0];
  v_idcol   text := TG_ARGV[1];
  v_tt      text := CASE TG_OP WHEN 'DELETE' THEN 'rt_old' ELSE 'rt_new' END;
  v_n       bigint;
  v_metrics integer[] := '{}';
  v_ids     bigint[];
BEGIN
  IF v_kind = 'metric_values' THEN
    EXECUTE format('SELECT sum(g.c)::bigint, coalesce(array_agg(g.metric_id ORDER BY g.metric_id), ''{}'')
                      FROM (SELECT t.metric_id::integer AS metric_id, count(*) AS c
                              FROM %I t GROUP BY t.metric_id) g', v_tt)
      INTO v_n, v_metrics;
  ELSE
    EXECUTE format('SELECT count(*) FROM %I', v_tt) INTO v_n;
  END IF;
  IF coalesce(v_n, 0) = 0 THEN
    RETURN NULL;  -- nothing changed: no event
  END IF;
  EXECUTE format('SELECT coalesce(array_agg(d.id ORDER BY d.id), ''{}'')
                    FROM (SELECT DISTINCT s.id FROM (SELECT t.%1$I::bigint AS id FROM %2$I t LIMIT $1) s
                          ORDER BY s.id LIMIT $2) d', v_idcol, v_tt)
    INTO v_ids USING c_sample, c_cap + 1;
  INSERT INTO reelscore.event_pending (kind, op, ids, more, n, metric_ids)
  VALUES (v_kind, lower(TG_OP), v_ids[1:c_cap], cardinality(v_ids) > c_cap OR v_n > c_sample, v_n, v_metrics);
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION reelscore.realtime_capture() FROM PUBLIC;
COMMENT ON FUNCTION reelscore.realtime_capture() IS
  'Statement trigger: stages a summary of the changed rows (ids capped at 200, row count, metric ids) for the commit-time announcement.';

CREATE OR REPLACE FUNCTION reelscore.realtime_capture_truncate() RETURNS trigger
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  INSERT INTO reelscore.event_pending (kind, op, more) VALUES (TG_ARGV[0], 'truncate', true);
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION reelscore.realtime_capture_truncate() FROM PUBLIC;
COMMENT ON FUNCTION reelscore.realtime_capture_truncate() IS
  'Statement trigger for TRUNCATE: stages an event that says everything of its kind changed.';

-- Commit time: merge this transaction's staged rows into one outbox row per kind,
-- number them in commit order and NOTIFY. Fires once per staged row (deferred
-- constraint triggers are row-level); the first firing does the work, the rest find
-- nothing left.
CREATE OR REPLACE FUNCTION reelscore.realtime_flush() RETURNS trigger
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  c_cap  constant integer := 200;
  v_txid xid8 := pg_catalog.pg_current_xact_id();
  v_by   text := left(reelscore.current_actor(), 64);
  r      record;
  v_seq  bigint;
  v_ids  bigint[];
  v_more boolean;
  v_text text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM reelscore.event_pending p WHERE p.txid = v_txid) THEN
    RETURN NULL;
  END IF;
  -- Serialise numbering with commit: held until this transaction ends, so the seq
  -- taken below becomes visible before any larger seq can be taken.
  PERFORM pg_catalog.pg_advisory_xact_lock('reelscore.event_outbox'::regclass::oid::integer, 0);
  FOR r IN
    WITH staged AS (
      DELETE FROM reelscore.event_pending p WHERE p.txid = v_txid
      RETURNING p.kind, p.op, p.ids, p.more, p.n, p.metric_ids
    ), k AS (
      SELECT s.kind, sum(s.n)::bigint AS n, bool_or(s.more) AS more,
             array_agg(DISTINCT s.op ORDER BY s.op) AS ops
      FROM staged s GROUP BY s.kind
    ), i AS (
      SELECT s.kind, array_agg(DISTINCT x ORDER BY x) AS ids
      FROM staged s CROSS JOIN LATERAL unnest(s.ids) x GROUP BY s.kind
    ), m AS (
      SELECT s.kind, array_agg(DISTINCT x ORDER BY x) AS metric_ids
      FROM staged s CROSS JOIN LATERAL unnest(s.metric_ids) x GROUP BY s.kind
    )
    SELECT k.kind, k.n, k.more, k.ops, coalesce(i.ids, '{}') AS ids,
           coalesce(m.metric_ids, '{}') AS metric_ids
    FROM k LEFT JOIN i ON i.kind = k.kind LEFT JOIN m ON m.kind = k.kind
    ORDER BY k.kind
  LOOP
    v_ids := r.ids[1:c_cap];
    v_more := r.more OR cardinality(r.ids) > c_cap;
    INSERT INTO reelscore.event_outbox (kind, payload, created_at)
    VALUES (r.kind, '{}', clock_timestamp())
    RETURNING seq INTO v_seq;
    v_text := format('{"seq":%s,"kind":%s,"ops":%s,"ids":%s,"n":%s,"more":%s,"metric_ids":%s,"by":%s,"at":%s}',
                     v_seq, to_json(r.kind), to_json(r.ops), to_json(v_ids), r.n, to_json(v_more),
                     to_json(r.metric_ids), to_json(v_by),
                     round(extract(epoch FROM clock_timestamp()), 6));
    IF octet_length(v_text) > 7999 THEN  -- cannot happen with the caps above; never fail a commit over it
      v_text := format('{"seq":%s,"kind":%s,"ops":[],"ids":[],"n":%s,"more":true,"metric_ids":[],"by":null,"at":%s}',
                       v_seq, to_json(r.kind), r.n, round(extract(epoch FROM clock_timestamp()), 6));
    END IF;
    UPDATE reelscore.event_outbox o SET payload = v_text::jsonb - 'seq' WHERE o.seq = v_seq;
    PERFORM pg_catalog.pg_notify('reelscore_events', v_text);
  END LOOP;
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION reelscore.realtime_flush() FROM PUBLIC;
COMMENT ON FUNCTION reelscore.realtime_flush() IS
  'Deferred trigger at commit: one outbox row per event kind of the transaction, numbered in commit order, and its NOTIFY on reelscore_events.';

-- A constraint trigger cannot be CREATE OR REPLACEd: drop and create (event_pending is
-- empty between transactions, so nothing is missed).
DROP TRIGGER IF EXISTS realtime_flush ON reelscore.event_pending;
CREATE CONSTRAINT TRIGGER realtime_flush
  AFTER INSERT ON reelscore.event_pending
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION reelscore.realtime_flush();

-- Announce something that no watched table shows (e.g. a refresh finished): staged now,
-- sent at commit with the others, never if the transaction rolls back.
CREATE OR REPLACE FUNCTION reelscore.emit_event(p_kind text, p_ids bigint[] DEFAULT '{}',
                                                p_op text DEFAULT 'change')
RETURNS void
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  c_cap constant integer := 200;
  v_ids bigint[];
BEGIN
  IF p_kind IS NULL OR p_kind !~ '^[a-z][a-z0-9_]{0,39}$' THEN
    RAISE EXCEPTION 'invalid event kind: %', coalesce(quote_literal(p_kind), 'NULL')
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'An event kind is a lower-case identifier of at most 40 characters.',
            HINT = 'Use e.g. ''coverage'' or ''scores''.';
  END IF;
  IF p_op IS NULL OR p_op !~ '^[a-z][a-z0-9_]{0,19}$' THEN
    RAISE EXCEPTION 'invalid event operation: %', coalesce(quote_literal(p_op), 'NULL')
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'An operation is a lower-case identifier of at most 20 characters.',
            HINT = 'Use e.g. ''refresh'' or ''change''.';
  END IF;
  SELECT coalesce(array_agg(DISTINCT x ORDER BY x), '{}') INTO v_ids
  FROM unnest(coalesce(p_ids, '{}')) x WHERE x IS NOT NULL;
  INSERT INTO reelscore.event_pending (kind, op, ids, more, n)
  VALUES (p_kind, p_op, v_ids[1:c_cap], cardinality(v_ids) > c_cap OR p_ids IS NULL, cardinality(v_ids));
END
$$;
REVOKE ALL ON FUNCTION reelscore.emit_event(text, bigint[], text) FROM PUBLIC;
COMMENT ON FUNCTION reelscore.emit_event(text, bigint[], text) IS
  'Announce an event of the given kind with ids (NULL ids = everything of that kind) on channel reelscore_events at commit; nothing is sent if the transaction rolls back.';

-- Catch-up: the events after p_seq, in order, with the same JSON as the NOTIFY. When the
-- events right after p_seq are gone (pruned), or p_seq is from another history (a
-- restore), the first row is kind 'reset': the client must reload, then continue from
-- that row's seq.
CREATE OR REPLACE FUNCTION reelscore.events_since(p_seq bigint, p_lim integer DEFAULT 1000)
RETURNS TABLE (seq bigint, kind text, payload jsonb, created_at timestamptz)
LANGUAGE plpgsql STABLE CALLED ON NULL INPUT PARALLEL SAFE SECURITY INVOKER
AS $$
DECLARE
  v_pruned bigint;
  v_last   bigint;
BEGIN
  IF p_seq IS NULL OR p_seq < 0 THEN
    RAISE EXCEPTION 'invalid event sequence number: %', coalesce(p_seq::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Pass the last seq the client saw (0 for everything retained).';
  END IF;
  IF p_lim IS NULL OR p_lim NOT BETWEEN 1 AND 10000 THEN
    RAISE EXCEPTION 'invalid limit: %', coalesce(p_lim::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value', HINT = 'The limit is between 1 and 10000.';
  END IF;
  SELECT s.pruned_through INTO v_pruned FROM reelscore.event_outbox_state s;
  SELECT greatest(max(o.seq), v_pruned) INTO v_last FROM reelscore.event_outbox o;
  IF p_seq < coalesce(v_pruned, 0) OR p_seq > coalesce(v_last, 0) THEN
    seq := coalesce(v_last, 0);
    kind := 'reset';
    created_at := now();
    payload := jsonb_build_object('seq', seq, 'kind', 'reset', 'ids', '[]'::jsonb, 'more', true,
      'reason', CASE WHEN p_seq < coalesce(v_pruned, 0)
                     THEN format('events up to seq %s were pruned', v_pruned)
                     ELSE format('seq %s is beyond the last event %s', p_seq, coalesce(v_last, 0)) END);
    RETURN NEXT;
    RETURN;  -- the client reloads and continues after the last seq
  END IF;
  RETURN QUERY
    SELECT o.seq, o.kind, jsonb_build_object('seq', o.seq) || o.payload, o.created_at
    FROM reelscore.event_outbox o
    WHERE o.seq > p_seq
    ORDER BY o.seq
    LIMIT p_lim;
END
$$;
COMMENT ON FUNCTION reelscore.events_since(bigint, integer) IS
  'Catch-up: events with seq > p_seq in commit order (at most p_lim), each with the NOTIFY payload; a single ''reset'' row when events after p_seq were pruned or p_seq is unknown.';

-- Pruning: remove the events older than p_keep, as a prefix of the sequence (seq order
-- is commit order, so the retained events stay contiguous), and remember the horizon.
CREATE OR REPLACE FUNCTION reelscore.prune_outbox(p_keep interval DEFAULT interval '7 days')
RETURNS bigint
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY INVOKER
AS $$
DECLARE
  v_cut     bigint;
  v_deleted bigint;
BEGIN
  IF p_keep IS NULL OR p_keep < interval '0' THEN
    RAISE EXCEPTION 'invalid retention: %', coalesce(p_keep::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass how long to keep events, e.g. interval ''7 days''.';
  END IF;
  SELECT max(o.seq) INTO v_cut FROM reelscore.event_outbox o WHERE o.created_at < clock_timestamp() - p_keep;
  IF v_cut IS NULL THEN
    RETURN 0;
  END IF;
  DELETE FROM reelscore.event_outbox o WHERE o.seq <= v_cut;
  GET DIAGNOSTICS v_deleted = ROW_COUNT;
  UPDATE reelscore.event_outbox_state s
     SET pruned_through = greatest(s.pruned_through, v_cut), pruned_at = clock_timestamp();
  RETURN v_deleted;
END
$$;
COMMENT ON FUNCTION reelscore.prune_outbox(interval) IS
  'Delete outbox events older than p_keep (default 7 days) and record the pruned horizon; returns the number of rows deleted. Scheduled hourly with pg_cron where available.';

CREATE OR REPLACE FUNCTION reelscore.outbox_status()
RETURNS TABLE (last_seq bigint, pruned_through bigint, retained bigint, oldest timestamptz)
LANGUAGE sql STABLE CALLED ON NULL INPUT PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT greatest(max(o.seq), s.pruned_through), s.pruned_through, count(o.seq), min(o.created_at)
  FROM reelscore.event_outbox_state s LEFT JOIN reelscore.event_outbox o ON true
  GROUP BY s.pruned_through
$$;
COMMENT ON FUNCTION reelscore.outbox_status() IS
  'The outbox at a glance: last seq (pages start listening from it), pruned horizon, rows retained, oldest retained event time.';

-- Triggers on the watched tables. Tables owned by later revisions may not exist yet
-- while they are being written: each is wired when it exists (this file runs again on
-- every upgrade to head, so it is wired as soon as it does).
CREATE OR REPLACE FUNCTION reelscore.realtime_install_triggers() RETURNS text[]
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  r       record;
  v_done  text[] := '{}';
BEGIN
  FOR r IN
    SELECT * FROM (VALUES ('metric_values', 'metric_values', 'movie_id'),
                          ('metric_definitions', 'metric_definition', 'id'),
                          ('weight_profiles', 'profile', 'id'),
                          ('profile_metric_weights', 'profile', 'profile_id'),
                          ('coverage_snapshots', 'coverage', 'id')) AS t(tbl, kind, idcol)
  LOOP
    CONTINUE WHEN to_regclass(format('reelscore.%I', r.tbl)) IS NULL;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                   WHERE a.attrelid = to_regclass(format('reelscore.%I', r.tbl))
                     AND a.attname = r.idcol AND a.attnum > 0 AND NOT a.attisdropped) THEN
      RAISE WARNING 'realtime: table reelscore.% has no column %, not announced', r.tbl, r.idcol;
      CONTINUE;
    END IF;
    EXECUTE format('CREATE OR REPLACE TRIGGER realtime_insert AFTER INSERT ON reelscore.%I
                      REFERENCING NEW TABLE AS rt_new FOR EACH STATEMENT
                      EXECUTE FUNCTION reelscore.realtime_capture(%L, %L)', r.tbl, r.kind, r.idcol);
    EXECUTE format('CREATE OR REPLACE TRIGGER realtime_update AFTER UPDATE ON reelscore.%I
                      REFERENCING NEW TABLE AS rt_new FOR EACH STATEMENT
                      EXECUTE FUNCTION reelscore.realtime_capture(%L, %L)', r.tbl, r.kind, r.idcol);
    EXECUTE format('CREATE OR REPLACE TRIGGER realtime_delete AFTER DELETE ON reelscore.%I
                      REFERENCING OLD TABLE AS rt_old FOR EACH STATEMENT
                      EXECUTE FUNCTION reelscore.realtime_capture(%L, %L)', r.tbl, r.kind, r.idcol);
    EXECUTE format('CREATE OR REPLACE TRIGGER realtime_truncate AFTER TRUNCATE ON reelscore.%I
                      FOR EACH STATEMENT EXECUTE FUNCTION reelscore.realtime_capture_truncate(%L)',
                   r.tbl, r.kind);
    v_done := v_done || r.tbl;
  END LOOP;
  RETURN v_done;
END
$$;
REVOKE ALL ON FUNCTION reelscore.realtime_install_triggers() FROM PUBLIC;
COMMENT ON FUNCTION reelscore.realtime_install_triggers() IS
  'Create the announcement triggers on every watched table that exists (idempotent); returns the tables wired.';

SELECT reelscore.realtime_install_triggers();

-- Pruning schedule: hourly where pg_cron runs (only in the database cron.database_name);
-- elsewhere run SELECT reelscore.prune_outbox() from cron or the CLI (docs/operations.md).
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
    EXECUTE $c$SELECT cron.schedule('reelscore-prune-outbox', '17 * * * *',
                                    'SELECT reelscore.prune_outbox(interval ''7 days'')')$c$;
  END IF;
END $$;
