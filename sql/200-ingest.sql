-- 200-ingest: value history trigger, the bulk merge (staging -> quarantine -> one merge), upsert_metric,
-- adapters for TMDb and OMDb JSON, and the migration of the legacy "scattered" shape.

-- ---------------------------------------------------------------------------------------
-- History: every change of a current value is appended to metric_timeseries with its
-- normalized value. Statement-level with transition tables, so a 17M-row merge appends
-- in one set-based INSERT instead of firing 17M row triggers. PostgreSQL allows a
-- transition table only on single-event triggers, hence one trigger for INSERT and one
-- for UPDATE sharing this function. A point's time is the value's observed_at; an UPDATE
-- appends only rows whose raw value or observation time changed (the merge touches no
-- other rows, but hand-written UPDATEs might).
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.metric_values_history() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
SET jit = off   -- a bulk merge's history INSERT would spend seconds compiling
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO reelscore.metric_timeseries (time, movie_id, metric_id, value, normalized_value, metadata)
    SELECT n.observed_at, n.movie_id, n.metric_id, n.raw_value,
           CASE WHEN cardinality(p.args) > 0
                THEN reelscore.normalize_with(p.normalization_type, p.args, n.raw_value) END,
           CASE WHEN n.batch_id IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('batch_id', n.batch_id) END
    FROM new_rows n
    JOIN reelscore.metric_norm_params p ON p.metric_id = n.metric_id
    -- in time order: chunk by chunk, and the time-led indexes grow at their ends (580k
    -- points: 5 s instead of 8-11 s unordered)
    ORDER BY n.observed_at;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO reelscore.metric_timeseries (time, movie_id, metric_id, value, normalized_value, metadata)
    SELECT n.observed_at, n.movie_id, n.metric_id, n.raw_value,
           CASE WHEN cardinality(p.args) > 0
                THEN reelscore.normalize_with(p.normalization_type, p.args, n.raw_value) END,
           CASE WHEN n.batch_id IS NULL THEN jsonb_build_object('previous', o.raw_value)
                ELSE jsonb_build_object('batch_id', n.batch_id, 'previous', o.raw_value) END
    FROM new_rows n
    JOIN old_rows o ON o.movie_id = n.movie_id AND o.metric_id = n.metric_id
    JOIN reelscore.metric_norm_params p ON p.metric_id = n.metric_id
    WHERE n.raw_value IS DISTINCT FROM o.raw_value OR n.observed_at IS DISTINCT FROM o.observed_at
    ORDER BY n.observed_at;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION reelscore.metric_values_history() IS
  'Trigger: append every inserted or changed metric value to metric_timeseries (time = observed_at, with its normalized value; metadata holds batch_id and the previous value).';

CREATE OR REPLACE TRIGGER metric_values_history_ins
  AFTER INSERT ON reelscore.metric_values
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION reelscore.metric_values_history();
CREATE OR REPLACE TRIGGER metric_values_history_upd
  AFTER UPDATE ON reelscore.metric_values
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION reelscore.metric_values_history();

-- ---------------------------------------------------------------------------------------
-- Referential integrity of metric_values, set-based. Revision 0005 replaced the two
-- foreign keys of metric_values by these triggers: a foreign key checks every inserted row
-- with its own query (two per value, 73% of a bulk merge's time when measured), these check
-- a statement's rows at once. Same guarantees: the referenced rows are locked FOR KEY SHARE
-- (a concurrent delete waits for the load; a load after a committed delete fails), a
-- missing movie or metric raises 23503, deleting a movie deletes its values (ON DELETE
-- CASCADE), deleting a metric that has values is refused (NO ACTION). The insert check runs
-- as the owner, like a foreign key's (SECURITY DEFINER: FOR KEY SHARE needs UPDATE rights on
-- the referenced tables, which loaders do not hold). The referenced-side trigger runs as the
-- caller: its cascade DELETE fires other triggers on metric_values (scoring, realtime) that
-- must see the caller's search_path; deleting movies therefore needs DELETE on metric_values.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.metric_values_check_refs() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
  v_wanted bigint;
  v_locked bigint;
  v_missing text;
  v_table_lock boolean;
  v_metric_ids smallint[];
  v_movie_ids bigint[];
BEGIN
  IF TG_LEVEL = 'ROW' THEN   -- an UPDATE that changes a key (rare): check that row
    PERFORM 1 FROM reelscore.movies m WHERE m.id = NEW.movie_id FOR KEY SHARE;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'insert or update on table "metric_values" violates foreign key: movie id % does not exist', NEW.movie_id
        USING ERRCODE = 'foreign_key_violation';
    END IF;
    PERFORM 1 FROM reelscore.metric_definitions d WHERE d.id = NEW.metric_id FOR KEY SHARE;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'insert or update on table "metric_values" violates foreign key: metric id % does not exist', NEW.metric_id
        USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
  END IF;

  -- the metrics: their ids in one pass over the rows (a hash), then locked by key
  v_metric_ids := ARRAY(SELECT DISTINCT n.metric_id FROM new_rows n);
  SELECT count(*) INTO v_locked
  FROM (SELECT 1 FROM reelscore.metric_definitions d WHERE d.id = ANY (v_metric_ids) FOR KEY SHARE OF d) x;
  IF v_locked <> cardinality(v_metric_ids) THEN
    SELECT string_agg(u.id::text, ', ' ORDER BY u.id) INTO v_missing FROM unnest(v_metric_ids) u(id)
    WHERE NOT EXISTS (SELECT 1 FROM reelscore.metric_definitions d WHERE d.id = u.id);
    RAISE EXCEPTION 'insert on table "metric_values" violates foreign key: metric id % does not exist', v_missing
      USING ERRCODE = 'foreign_key_violation',
            HINT = 'Load values through reelscore.begin_load/finish_load, which quarantines such rows.';
  END IF;

  -- The movies: each locked FOR KEY SHARE, as a foreign key would, or, for a statement that
  -- references at least reelscore.reference_table_lock_movies of them (default 100,000), the
  -- whole table in SHARE mode: a row lock writes every movie's tuple (18 s of a whole-catalogue
  -- load at 1M movies), the table lock nothing. SHARE blocks every write to movies (not only
  -- deletes and key changes) until the load commits; it is taken NOWAIT, so a load never waits
  -- behind a session writing movies: it locks the rows instead.
  -- (their ids as an array: probing movies with = ANY of it, hashed, took 1.4 s for 1M ids;
  -- a semi-join from the inserted rows 7.1 s)
  v_movie_ids := ARRAY(SELECT DISTINCT n.movie_id FROM new_rows n);
  v_wanted := cardinality(v_movie_ids);
  v_table_lock := false;
  IF v_wanted >= coalesce(nullif(current_setting('reelscore.reference_table_lock_movies', true), '')::bigint, 100000) THEN
    BEGIN
      LOCK TABLE reelscore.movies IN SHARE MODE NOWAIT;
      v_table_lock := true;
    EXCEPTION WHEN lock_not_available THEN
      v_table_lock := false;
    END;
  END IF;
  IF v_table_lock THEN
    SELECT count(*) INTO v_locked FROM reelscore.movies m WHERE m.id = ANY (v_movie_ids);
  ELSE
    SELECT count(*) INTO v_locked
    FROM (SELECT 1 FROM reelscore.movies m WHERE m.id = ANY (v_movie_ids) FOR KEY SHARE OF m) x;
  END IF;
  IF v_locked <> v_wanted THEN
    SELECT string_agg(y.id::text, ', ') INTO v_missing
    FROM (SELECT u.id FROM unnest(v_movie_ids) u(id)
          WHERE NOT EXISTS (SELECT 1 FROM reelscore.movies m WHERE m.id = u.id)
          ORDER BY 1 LIMIT 10) y;
    RAISE EXCEPTION 'insert on table "metric_values" violates foreign key: movie id % does not exist', v_missing
      USING ERRCODE = 'foreign_key_violation',
            HINT = 'Load values through reelscore.begin_load/finish_load, which quarantines such rows.';
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION reelscore.metric_values_check_refs() IS
  'Trigger: the foreign keys of metric_values (movie_id -> movies, metric_id -> metric_definitions), checked per statement; referenced rows locked FOR KEY SHARE (movies: the table in SHARE mode for a statement referencing at least reelscore.reference_table_lock_movies of them, when no other session is writing movies).';

CREATE OR REPLACE FUNCTION reelscore.metric_values_referenced() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
AS $$
BEGIN
  IF TG_TABLE_NAME = 'movies' THEN
    IF TG_OP = 'DELETE' THEN         -- ON DELETE CASCADE
      DELETE FROM reelscore.metric_values v WHERE v.movie_id IN (SELECT o.id FROM old_rows o);
    ELSIF TG_OP = 'TRUNCATE' THEN
      TRUNCATE reelscore.metric_values;
    ELSIF TG_OP = 'UPDATE' AND EXISTS (SELECT 1 FROM reelscore.metric_values v WHERE v.movie_id = OLD.id) THEN
      RAISE EXCEPTION 'update on table "movies" violates foreign key of "metric_values": movie id % is still referenced', OLD.id
        USING ERRCODE = 'foreign_key_violation';
    END IF;
  ELSE                               -- metric_definitions: NO ACTION
    IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM reelscore.metric_values v WHERE v.metric_id IN (SELECT o.id FROM old_rows o)) THEN
      RAISE EXCEPTION 'delete on table "metric_definitions" violates foreign key of "metric_values": the metric still has values'
        USING ERRCODE = 'foreign_key_violation', HINT = 'Deactivate the metric (active = false) instead.';
    ELSIF TG_OP = 'TRUNCATE' AND EXISTS (SELECT 1 FROM reelscore.metric_values) THEN
      RAISE EXCEPTION 'cannot truncate "metric_definitions": metric_values refers to it'
        USING ERRCODE = 'foreign_key_violation';
    ELSIF TG_OP = 'UPDATE' AND EXISTS (SELECT 1 FROM reelscore.metric_values v WHERE v.metric_id = OLD.id) THEN
      RAISE EXCEPTION 'update on table "metric_definitions" violates foreign key of "metric_values": metric id % is still referenced', OLD.id
        USING ERRCODE = 'foreign_key_violation';
    END IF;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION reelscore.metric_values_referenced() IS
  'Trigger on movies and metric_definitions: the referenced side of metric_values'' foreign keys (movies cascade deletes, metrics with values cannot be deleted).';

REVOKE ALL ON FUNCTION reelscore.metric_values_check_refs() FROM PUBLIC;

CREATE OR REPLACE TRIGGER metric_values_check_refs_ins
  AFTER INSERT ON reelscore.metric_values
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION reelscore.metric_values_check_refs();
CREATE OR REPLACE TRIGGER metric_values_check_refs_upd
  AFTER UPDATE OF movie_id, metric_id ON reelscore.metric_values
  FOR EACH ROW WHEN (OLD.movie_id IS DISTINCT FROM NEW.movie_id OR OLD.metric_id IS DISTINCT FROM NEW.metric_id)
  EXECUTE FUNCTION reelscore.metric_values_check_refs();
CREATE OR REPLACE TRIGGER movies_cascade_values
  AFTER DELETE ON reelscore.movies
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION reelscore.metric_values_referenced();
CREATE OR REPLACE TRIGGER movies_cascade_values_truncate
  BEFORE TRUNCATE ON reelscore.movies
  FOR EACH STATEMENT EXECUTE FUNCTION reelscore.metric_values_referenced();
CREATE OR REPLACE TRIGGER movies_key_values
  AFTER UPDATE OF id ON reelscore.movies
  FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION reelscore.metric_values_referenced();
CREATE OR REPLACE TRIGGER metric_definitions_restrict_values
  AFTER DELETE ON reelscore.metric_definitions
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION reelscore.metric_values_referenced();
CREATE OR REPLACE TRIGGER metric_definitions_restrict_values_truncate
  BEFORE TRUNCATE ON reelscore.metric_definitions
  FOR EACH STATEMENT EXECUTE FUNCTION reelscore.metric_values_referenced();
CREATE OR REPLACE TRIGGER metric_definitions_key_values
  AFTER UPDATE OF id ON reelscore.metric_definitions
  FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION reelscore.metric_values_referenced();

-- ---------------------------------------------------------------------------------------
-- The bulk path. One transaction per batch:
--   SELECT reelscore.begin_load('file.csv', 'csv');      -- batch row + temp staging table
--   COPY pg_temp.rs_load_staging (...) FROM STDIN;        -- the client streams rows
--   SELECT * FROM reelscore.finish_load(batch_id);        -- quarantine + one merge
--   COMMIT;
-- The staging table is a session temp table dropped at commit (no WAL, no sharing
-- between loaders). Its value columns are typed: the client turns text into numbers and
-- puts rows it cannot parse (malformed line, bad encoding, not a number) in the same
-- table with `problem` set, so every rejection lands in the quarantine in one place.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.begin_load(p_source text, p_format text DEFAULT 'csv')
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_batch bigint;
BEGIN
  IF p_source IS NULL OR length(p_source) = 0 THEN
    RAISE EXCEPTION 'begin_load: p_source must name the input (a file name or a feed), got %',
      coalesce(quote_literal(p_source), 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF to_regclass('pg_temp.rs_load_staging') IS NOT NULL THEN
    DROP TABLE pg_temp.rs_load_staging;   -- a batch abandoned earlier in this transaction
  END IF;
  CREATE TEMP TABLE rs_load_staging (
    line_no       bigint,            -- line (or record) number in the input, for the quarantine
    movie_id      bigint,            -- reelscore.movies.id, or NULL when movie_key is used
    movie_key     text,              -- an external id (tmdb_id, imdb_id, movielens_id) to resolve
    metric_code   text,
    raw_value     double precision,
    observed_at   timestamptz,       -- NULL: observed now, and only a changed value is written
    source_record text,
    raw_text      text,              -- original text when the row's fields do not reproduce it
    problem       text               -- set by the client for rows it could not parse
  ) ON COMMIT DROP;
  INSERT INTO reelscore.load_batches (source_name, format, actor)
  VALUES (p_source, coalesce(p_format, 'csv'), reelscore.current_actor())
  RETURNING id INTO v_batch;
  RETURN v_batch;
END
$$;
COMMENT ON FUNCTION reelscore.begin_load(text, text) IS
  'Start a bulk load batch in the current transaction: records the batch in load_batches and creates the temp table pg_temp.rs_load_staging (line_no, movie_id, movie_key, metric_code, raw_value, observed_at, source_record, raw_text, problem), dropped at commit. Fill it with COPY, then call finish_load. Returns the batch id.';

-- Whether a table (a hypertable: any of its chunks) holds a row: the first-load path of
-- finish_load rebuilds indexes only of empty tables.
CREATE OR REPLACE FUNCTION reelscore.table_has_rows(p_table regclass) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
  v_has boolean;
BEGIN
  EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', p_table) INTO v_has;
  RETURN v_has;
END
$$;
COMMENT ON FUNCTION reelscore.table_has_rows(regclass) IS
  'Whether the table (with its partitions or chunks) holds any row.';

CREATE OR REPLACE FUNCTION reelscore.finish_load(p_batch_id bigint, p_movie_key text DEFAULT 'id',
                                                 p_check_duplicates boolean DEFAULT true)
RETURNS TABLE (batch_id bigint, inserted bigint, updated bigint, unchanged bigint, rejected bigint)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET jit = off
AS $$
DECLARE
  v_source text;
  v_total bigint;
  v_rejected bigint;
  v_inserted bigint;
  v_updated bigint;
  v_plain boolean;
  v_attempt integer;
  v_rebuild text[] := '{}';
  v_index_def text;
  v_index record;
  v_locked boolean;
  v_table regclass;
BEGIN
  SELECT b.source_name INTO v_source FROM reelscore.load_batches b
  WHERE b.id = p_batch_id AND b.status = 'running';
  IF NOT FOUND THEN
    RAISE EXCEPTION 'finish_load: no running batch %', coalesce(p_batch_id::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Call reelscore.begin_load(...) first, in the same transaction.';
  END IF;
  IF to_regclass('pg_temp.rs_load_staging') IS NULL THEN
    RAISE EXCEPTION 'finish_load: batch % has no staging table in this session', p_batch_id
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'begin_load, the COPY into pg_temp.rs_load_staging and finish_load run in one transaction.';
  END IF;
  IF p_movie_key IS NULL OR p_movie_key NOT IN ('id', 'tmdb_id', 'imdb_id', 'movielens_id') THEN
    RAISE EXCEPTION 'finish_load: unknown movie key %', coalesce(quote_literal(p_movie_key), 'NULL')
      USING ERRCODE = 'invalid_parameter_value', HINT = 'One of id, tmdb_id, imdb_id, movielens_id.';
  END IF;

  ANALYZE pg_temp.rs_load_staging;

  -- External ids: resolve to movies.id (rows without a match stay NULL and are rejected below).
  IF p_movie_key <> 'id' THEN
    EXECUTE format('UPDATE pg_temp.rs_load_staging s SET movie_id = m.id FROM reelscore.movies m
                    WHERE s.movie_id IS NULL AND s.movie_key IS NOT NULL AND m.%I::text = s.movie_key',
                   p_movie_key);
  END IF;

  -- 1. Row problems, set-based: unknown metric, unknown movie, a value the raw scale refuses.
  --    Movies are looked up once per distinct id (index probes, not a hash of every movie),
  --    and a batch without problems updates nothing (the join's other side is never built):
  --    580k values at 1M movies 1.3-1.9 -> 0.6-1.0 s.
  WITH missing AS MATERIALIZED (
    SELECT u.movie_id
    FROM (SELECT DISTINCT t.movie_id FROM pg_temp.rs_load_staging t WHERE t.movie_id IS NOT NULL) u
    WHERE NOT EXISTS (SELECT 1 FROM reelscore.movies m WHERE m.id = u.movie_id))
  UPDATE pg_temp.rs_load_staging s
  SET problem = bad.problem
  FROM (SELECT t.ctid AS row_ctid,
               CASE WHEN d.id IS NULL THEN format('unknown metric %s', coalesce(quote_literal(t.metric_code), 'NULL'))
                    WHEN t.movie_id IS NULL
                      THEN format('unknown movie %s %s', p_movie_key, coalesce(quote_literal(t.movie_key), 'NULL'))
                    WHEN t.movie_id IN (SELECT x.movie_id FROM missing x) THEN format('unknown movie id %s', t.movie_id)
                    ELSE format('%s: %s', d.code,
                                reelscore.raw_value_problem(d.data_type, d.raw_scale_min, d.raw_scale_max, t.raw_value))
               END AS problem
        FROM pg_temp.rs_load_staging t
        LEFT JOIN reelscore.metric_definitions d ON d.code = t.metric_code
        WHERE t.problem IS NULL
          AND (d.id IS NULL OR t.movie_id IS NULL OR t.movie_id IN (SELECT x.movie_id FROM missing x)
               OR reelscore.raw_value_problem(d.data_type, d.raw_scale_min, d.raw_scale_max, t.raw_value) IS NOT NULL)) bad
  WHERE s.ctid = bad.row_ctid;

  -- 2. One merge: insert new, update changed, leave identical rows untouched. Changed means a
  --    different raw value, or an explicitly later observation of it. An observation older than
  --    the stored one never overwrites it. A row without observed_at is observed now():
  --    excluded.observed_at = now() marks it (an explicit timestamp equal to the transaction
  --    start to the microsecond is treated the same way, which is harmless).
  --    Two shortcuts, each undone by the savepoint of the block when it does not hold:
  --    - duplicates of a (movie, metric) in the batch (the first valid line wins, later ones
  --      are rejected) are looked for only when the merge fails on one (it would write a key
  --      twice); a clean batch skips that pass (0.7-1.0 s for 580k values);
  --    - a batch whose movies have no stored values is a plain INSERT, with no conflict to
  --      look for (ON CONFLICT probes the key before each insert): a concurrent writer's
  --      conflicting row makes it fail and the batch is merged instead.
  --    A client that has checked a sorted input for duplicates itself may pass
  --    p_check_duplicates = false: a duplicate then fails the load.
  v_plain := NOT EXISTS (SELECT 1 FROM reelscore.metric_values v)   -- an empty catalogue: no probe per row
             OR NOT EXISTS (SELECT 1 FROM pg_temp.rs_load_staging s
                            WHERE s.problem IS NULL
                              AND EXISTS (SELECT 1 FROM reelscore.metric_values v WHERE v.movie_id = s.movie_id));
  FOR v_attempt IN 1..2 LOOP
    BEGIN
      IF v_attempt = 2 THEN
        UPDATE pg_temp.rs_load_staging s
        SET problem = format('duplicate of line %s in this batch (movie %s, metric %s)', d.first_line, s.movie_id, s.metric_code)
        FROM (SELECT x.ctid AS row_ctid, x.first_line
              FROM (SELECT t.ctid, t.line_no,
                           first_value(t.line_no) OVER (PARTITION BY t.movie_id, t.metric_code ORDER BY t.line_no, t.ctid) AS first_line,
                           row_number() OVER (PARTITION BY t.movie_id, t.metric_code ORDER BY t.line_no, t.ctid) AS rn
                    FROM pg_temp.rs_load_staging t
                    WHERE t.problem IS NULL
                      AND (t.movie_id, t.metric_code) IN (SELECT u.movie_id, u.metric_code FROM pg_temp.rs_load_staging u
                                                          WHERE u.problem IS NULL
                                                          GROUP BY u.movie_id, u.metric_code HAVING count(*) > 1)) x
              WHERE x.rn > 1) d
        WHERE s.ctid = d.row_ctid;
      END IF;
      IF v_plain AND v_attempt = 1 THEN
        -- A first load into an empty catalogue: a large batch builds the secondary indexes of
        -- metric_values, and of the history when it is empty too, after its rows instead of
        -- inserting into them row by row (in primary-key order, the (metric_id, raw_value) index
        -- takes each row at a random place, and at 1M movies its upkeep grows faster than the
        -- rows; the history's two indexes cost more than its rows: 5.8M points took 73 s with
        -- them, 9 s without and 24 s to build them; a build sorts once, in parallel). The primary
        -- key stays: rows arrive in its order. Only for the tables' owner, and only when no other
        -- session uses the table at that moment (NOWAIT: two first loads at once would deadlock
        -- upgrading their locks; the one that does not get it keeps the indexes). The table is
        -- then locked ACCESS EXCLUSIVE until the load commits (it is empty: readers would see
        -- nothing anyway); a concurrent loader waits, then merges into the loaded table. A failed
        -- attempt's savepoint brings the indexes back.
        -- reelscore.first_load_index_rebuild_rows sets the batch size from which this is done
        -- (default 200,000).
        IF (SELECT c.reltuples FROM pg_catalog.pg_class c WHERE c.oid = 'pg_temp.rs_load_staging'::regclass)
             >= coalesce(nullif(current_setting('reelscore.first_load_index_rebuild_rows', true), '')::bigint, 200000) THEN
          FOREACH v_table IN ARRAY ARRAY['reelscore.metric_values'::regclass, 'reelscore.metric_timeseries'::regclass] LOOP
            CONTINUE WHEN NOT pg_catalog.pg_has_role(current_user, (SELECT c.relowner FROM pg_catalog.pg_class c
                                                                    WHERE c.oid = v_table), 'USAGE')
                       OR reelscore.table_has_rows(v_table);
            BEGIN
              EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE NOWAIT', v_table);
              v_locked := true;
            EXCEPTION WHEN lock_not_available THEN
              v_locked := false;
            END;
            CONTINUE WHEN NOT v_locked OR reelscore.table_has_rows(v_table);   -- still empty once locked
            FOR v_index IN SELECT i.indexrelid::regclass AS idx, pg_catalog.pg_get_indexdef(i.indexrelid) AS def
                           FROM pg_catalog.pg_index i
                           WHERE i.indrelid = v_table AND NOT i.indisunique
                           ORDER BY i.indexrelid LOOP
              EXECUTE format('DROP INDEX %s', v_index.idx);
              v_rebuild := v_rebuild || v_index.def;
            END LOOP;
          END LOOP;
        END IF;
        INSERT INTO reelscore.metric_values (movie_id, metric_id, raw_value, observed_at, source_record, batch_id, updated_at)
        SELECT s.movie_id, d.id, s.raw_value, coalesce(s.observed_at, now()), s.source_record, p_batch_id, now()
        FROM pg_temp.rs_load_staging s
        JOIN reelscore.metric_definitions d ON d.code = s.metric_code
        WHERE s.problem IS NULL
        ORDER BY s.movie_id, d.id;   -- primary key order: index pages are visited once, in order
        GET DIAGNOSTICS v_inserted = ROW_COUNT;
        v_updated := 0;
        FOREACH v_index_def IN ARRAY v_rebuild LOOP
          EXECUTE v_index_def;
        END LOOP;
      ELSE
        WITH merged AS (
          INSERT INTO reelscore.metric_values AS mv
            (movie_id, metric_id, raw_value, observed_at, source_record, batch_id, updated_at)
          SELECT s.movie_id, d.id, s.raw_value, coalesce(s.observed_at, now()), s.source_record, p_batch_id, now()
          FROM pg_temp.rs_load_staging s
          JOIN reelscore.metric_definitions d ON d.code = s.metric_code
          WHERE s.problem IS NULL
          ORDER BY s.movie_id, d.id   -- primary key order: index pages are visited once, in order
          ON CONFLICT (movie_id, metric_id) DO UPDATE
            SET raw_value = excluded.raw_value, observed_at = excluded.observed_at,
                source_record = excluded.source_record, batch_id = excluded.batch_id, updated_at = excluded.updated_at
            WHERE excluded.observed_at >= mv.observed_at
              AND (excluded.raw_value <> mv.raw_value
                   OR (excluded.observed_at > mv.observed_at AND excluded.observed_at <> now()))
          RETURNING (mv.xmax = 0) AS was_inserted
        )
        SELECT count(*) FILTER (WHERE was_inserted), count(*) FILTER (WHERE NOT was_inserted)
        INTO v_inserted, v_updated
        FROM merged;
      END IF;
      EXIT;
    EXCEPTION WHEN unique_violation OR cardinality_violation THEN
      IF v_attempt = 2 OR NOT p_check_duplicates THEN
        RAISE;
      END IF;
    END;
  END LOOP;

  -- 3. The quarantine: reason and original text (the fields, when the client sent no raw_text).
  INSERT INTO reelscore.load_rejections (batch_id, source_name, line_no, raw_text, reason)
  SELECT p_batch_id, v_source, s.line_no,
         coalesce(s.raw_text, concat_ws(',', coalesce(s.movie_id::text, s.movie_key), s.metric_code,
                                        s.raw_value::text, s.observed_at::text)),
         s.problem
  FROM pg_temp.rs_load_staging s
  WHERE s.problem IS NOT NULL;
  GET DIAGNOSTICS v_rejected = ROW_COUNT;

  SELECT count(*) INTO v_total FROM pg_temp.rs_load_staging;

  UPDATE reelscore.load_batches b
  SET finished_at = clock_timestamp(), status = 'done', inserted = v_inserted, updated = v_updated,
      unchanged = v_total - v_rejected - v_inserted - v_updated, rejected = v_rejected
  WHERE b.id = p_batch_id;

  RETURN QUERY SELECT p_batch_id, v_inserted, v_updated, v_total - v_rejected - v_inserted - v_updated, v_rejected;
END
$$;
COMMENT ON FUNCTION reelscore.finish_load(bigint, text, boolean) IS
  'Finish a bulk load batch: resolve movie keys (id, tmdb_id, imdb_id or movielens_id), quarantine bad rows of pg_temp.rs_load_staging in load_rejections with the reason and original text (unknown metric or movie, value outside the raw scale, not a number, duplicate in the batch, rows the client could not parse), then merge the rest into metric_values in one INSERT ... ON CONFLICT (new rows inserted, changed rows updated, identical rows untouched). Returns the counts, also stored in load_batches.';

-- ---------------------------------------------------------------------------------------
-- Single values, for apps.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.upsert_metric(p_movie_id bigint, p_metric_code text, p_raw_value double precision,
                                                   p_observed_at timestamptz DEFAULT NULL,
                                                   p_source_record text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_def reelscore.metric_definitions%ROWTYPE;
  v_problem text;
  v_inserted boolean;
BEGIN
  SELECT * INTO v_def FROM reelscore.metric_definitions d WHERE d.code = p_metric_code;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'upsert_metric: unknown metric code %', coalesce(quote_literal(p_metric_code), 'NULL')
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'SELECT code FROM reelscore.metric_definitions lists the known metrics.';
  END IF;
  IF p_movie_id IS NULL OR NOT EXISTS (SELECT 1 FROM reelscore.movies m WHERE m.id = p_movie_id) THEN
    RAISE EXCEPTION 'upsert_metric: unknown movie id %', coalesce(p_movie_id::text, 'NULL')
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  v_problem := reelscore.raw_value_problem(v_def.data_type, v_def.raw_scale_min, v_def.raw_scale_max, p_raw_value);
  IF v_problem IS NOT NULL THEN
    RAISE EXCEPTION 'upsert_metric: invalid raw value for %: %', v_def.code, v_problem
      USING ERRCODE = CASE WHEN v_problem LIKE '%raw scale%' THEN 'numeric_value_out_of_range'
                           ELSE 'invalid_parameter_value' END,
            DETAIL = format('raw scale [%s, %s], data type %s', coalesce(v_def.raw_scale_min::text, '-inf'),
                            coalesce(v_def.raw_scale_max::text, 'inf'), v_def.data_type);
  END IF;
  INSERT INTO reelscore.metric_values AS mv (movie_id, metric_id, raw_value, observed_at, source_record, updated_at)
  VALUES (p_movie_id, v_def.id, p_raw_value, coalesce(p_observed_at, now()), p_source_record, now())
  ON CONFLICT (movie_id, metric_id) DO UPDATE
    SET raw_value = excluded.raw_value, observed_at = excluded.observed_at,
        source_record = excluded.source_record, batch_id = NULL, updated_at = excluded.updated_at
    WHERE excluded.observed_at >= mv.observed_at
      AND (excluded.raw_value <> mv.raw_value
           OR (p_observed_at IS NOT NULL AND excluded.observed_at > mv.observed_at))
  RETURNING (mv.xmax = 0) INTO v_inserted;
  RETURN CASE WHEN v_inserted IS NULL THEN 'unchanged' WHEN v_inserted THEN 'inserted' ELSE 'updated' END;
END
$$;
COMMENT ON FUNCTION reelscore.upsert_metric(bigint, text, float8, timestamptz, text) IS
  'Insert or update one raw metric value of a movie (for apps): ''inserted'', ''updated'' or ''unchanged'' (same value, or an observation older than the stored one). Errors (22023 / 22003 / 23503) on an unknown metric, a bad value or an unknown movie. The history trigger records the change.';

-- ---------------------------------------------------------------------------------------
-- Adapters: the shapes the data arrives in, turned into (metric_code, raw_value) rows.
-- Pure parsing functions (IMMUTABLE) plus ingest functions that find or create the movie
-- and upsert its values. A field the source marks as missing ("N/A", 0 budget) gives no
-- row; a field present but unreadable gives a row with raw_value NULL and a problem.
-- ---------------------------------------------------------------------------------------
-- A number written for people: "$292,587,330", "2,345,678", "87%", "8.8/10", "74/100".
-- NULL for missing markers ("N/A", "", null); NaN for text that is not a number.
CREATE OR REPLACE FUNCTION reelscore.parse_display_number(p_text text) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT CASE
    WHEN p_text IS NULL OR btrim(p_text) IN ('', 'N/A', 'n/a', 'NA', '-') THEN NULL
    WHEN regexp_replace(split_part(btrim(p_text), '/', 1), '[$,%\s]', '', 'g') ~ '^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)$'
      THEN regexp_replace(split_part(btrim(p_text), '/', 1), '[$,%\s]', '', 'g')::double precision
    ELSE 'NaN'::double precision
  END
$$;
COMMENT ON FUNCTION reelscore.parse_display_number(text) IS
  'Parse a number formatted for display ("$292,587,330", "2,345,678", "87%", "8.8/10"): NULL for N/A or empty, NaN when unreadable.';

-- A JSON value as a number: numbers as they are, display strings parsed, else NaN; null -> NULL.
CREATE OR REPLACE FUNCTION reelscore.json_number(p_value jsonb) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT CASE
    WHEN p_value IS NULL OR jsonb_typeof(p_value) = 'null' THEN NULL
    WHEN jsonb_typeof(p_value) = 'number' THEN (p_value #>> '{}')::double precision
    WHEN jsonb_typeof(p_value) = 'string' THEN reelscore.parse_display_number(p_value #>> '{}')
    ELSE 'NaN'::double precision
  END
$$;
COMMENT ON FUNCTION reelscore.json_number(jsonb) IS
  'A JSON value as a number: a number as is, a display string parsed (parse_display_number), null as NULL, anything else NaN.';

CREATE OR REPLACE FUNCTION reelscore.tmdb_metrics(p_doc jsonb)
RETURNS TABLE (metric_code text, raw_value double precision)
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT v.code, v.val
  FROM (VALUES
    -- TMDb reports vote_average 0 for films nobody rated: no rating then.
    ('tmdb_rating', CASE WHEN coalesce(reelscore.json_number(p_doc -> 'vote_count'), 0) > 0
                         THEN reelscore.json_number(p_doc -> 'vote_average') END),
    ('tmdb_vote_count', reelscore.json_number(p_doc -> 'vote_count')),
    -- budget and revenue 0 mean "unknown" in TMDb.
    ('tmdb_budget', nullif(reelscore.json_number(p_doc -> 'budget'), 0)),
    ('tmdb_revenue', nullif(reelscore.json_number(p_doc -> 'revenue'), 0)),
    ('tmdb_popularity', reelscore.json_number(p_doc -> 'popularity'))) AS v(code, val)
  WHERE v.val IS NOT NULL
$$;
COMMENT ON FUNCTION reelscore.tmdb_metrics(jsonb) IS
  'The metrics in a TMDb movie-details JSON document: vote_average, vote_count, budget, revenue, popularity (0 budget or revenue and unrated averages are missing, not zero).';

CREATE OR REPLACE FUNCTION reelscore.omdb_metrics(p_doc jsonb)
RETURNS TABLE (metric_code text, raw_value double precision)
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT v.code, v.val
  FROM (VALUES
    ('imdb_rating', reelscore.json_number(p_doc -> 'imdbRating')),
    ('imdb_vote_count', reelscore.json_number(p_doc -> 'imdbVotes')),
    ('metacritic_score', coalesce(reelscore.json_number(p_doc -> 'Metascore'),
                                  (SELECT reelscore.json_number(r -> 'Value') FROM jsonb_array_elements(
                                     CASE WHEN jsonb_typeof(p_doc -> 'Ratings') = 'array' THEN p_doc -> 'Ratings' END) r
                                   WHERE r ->> 'Source' = 'Metacritic' LIMIT 1))),
    ('rt_tomatometer', (SELECT reelscore.json_number(r -> 'Value') FROM jsonb_array_elements(
                          CASE WHEN jsonb_typeof(p_doc -> 'Ratings') = 'array' THEN p_doc -> 'Ratings' END) r
                        WHERE r ->> 'Source' = 'Rotten Tomatoes' LIMIT 1)),
    ('omdb_box_office', reelscore.json_number(p_doc -> 'BoxOffice'))) AS v(code, val)
  WHERE v.val IS NOT NULL
$$;
COMMENT ON FUNCTION reelscore.omdb_metrics(jsonb) IS
  'The metrics in an OMDb JSON document: imdbRating, imdbVotes ("2,345,678"), Metascore, the Rotten Tomatoes rating ("87%"), BoxOffice ("$123,456,789"); "N/A" is missing.';

-- Find the movie a document describes (by TMDb id, then IMDb id), or create it.
CREATE OR REPLACE FUNCTION reelscore.find_or_create_movie(p_title text, p_release_date date DEFAULT NULL,
                                                          p_tmdb_id integer DEFAULT NULL, p_imdb_id text DEFAULT NULL,
                                                          p_genres text[] DEFAULT NULL, p_director text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_id bigint;
BEGIN
  SELECT m.id INTO v_id FROM reelscore.movies m
  WHERE (p_tmdb_id IS NOT NULL AND m.tmdb_id = p_tmdb_id) OR (p_imdb_id IS NOT NULL AND m.imdb_id = p_imdb_id)
  ORDER BY (m.tmdb_id = p_tmdb_id) DESC NULLS LAST LIMIT 1;
  IF FOUND THEN
    UPDATE reelscore.movies m
    SET tmdb_id = coalesce(m.tmdb_id, p_tmdb_id), imdb_id = coalesce(m.imdb_id, p_imdb_id),
        release_date = coalesce(m.release_date, p_release_date), director = coalesce(m.director, p_director),
        genres = CASE WHEN m.genres = '{}' THEN coalesce(p_genres, '{}') ELSE m.genres END, updated_at = now()
    WHERE m.id = v_id
      AND (m.tmdb_id IS NULL AND p_tmdb_id IS NOT NULL OR m.imdb_id IS NULL AND p_imdb_id IS NOT NULL
           OR m.release_date IS NULL AND p_release_date IS NOT NULL OR m.director IS NULL AND p_director IS NOT NULL
           OR m.genres = '{}' AND cardinality(p_genres) > 0);
    RETURN v_id;
  END IF;
  IF p_title IS NULL OR btrim(p_title) = '' THEN
    RAISE EXCEPTION 'cannot create a movie without a title (tmdb_id %, imdb_id %)',
      coalesce(p_tmdb_id::text, 'NULL'), coalesce(p_imdb_id, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  INSERT INTO reelscore.movies (title, release_date, tmdb_id, imdb_id, genres, director)
  VALUES (btrim(p_title), p_release_date, p_tmdb_id, p_imdb_id, coalesce(p_genres, '{}'), p_director)
  RETURNING id INTO v_id;
  RETURN v_id;
END
$$;
COMMENT ON FUNCTION reelscore.find_or_create_movie(text, date, integer, text, text[], text) IS
  'The movie with this TMDb or IMDb id (filling in what it lacks), or a new movie. Returns its id.';

-- Upsert a set of values of one movie; rows with a problem are reported, not written.
CREATE OR REPLACE FUNCTION reelscore.apply_document_metrics(p_movie_id bigint, p_metrics jsonb,
                                                            p_observed_at timestamptz, p_source text)
RETURNS TABLE (movie_id bigint, metric_code text, raw_value double precision, status text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  r record;
  v_problem text;
BEGIN
  FOR r IN SELECT e.key AS code, (e.value #>> '{}')::float8 AS val FROM jsonb_each(p_metrics) e LOOP
    SELECT reelscore.raw_value_problem(d.data_type, d.raw_scale_min, d.raw_scale_max, r.val) INTO v_problem
    FROM reelscore.metric_definitions d WHERE d.code = r.code;
    movie_id := p_movie_id; metric_code := r.code; raw_value := r.val;
    IF v_problem IS NOT NULL THEN
      status := 'rejected: ' || v_problem;
    ELSE
      status := reelscore.upsert_metric(p_movie_id, r.code, r.val, p_observed_at, p_source);
    END IF;
    RETURN NEXT;
  END LOOP;
END
$$;
COMMENT ON FUNCTION reelscore.apply_document_metrics(bigint, jsonb, timestamptz, text) IS
  'Upsert {metric_code: raw_value} of one movie through upsert_metric; a value its metric refuses is reported as rejected, not written.';

CREATE OR REPLACE FUNCTION reelscore.ingest_tmdb(p_doc jsonb, p_observed_at timestamptz DEFAULT NULL)
RETURNS TABLE (movie_id bigint, metric_code text, raw_value double precision, status text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_movie bigint;
  v_date date;
BEGIN
  IF p_doc IS NULL OR jsonb_typeof(p_doc) <> 'object' OR coalesce(jsonb_typeof(p_doc -> 'id'), 'missing') <> 'number' THEN
    RAISE EXCEPTION 'ingest_tmdb: not a TMDb movie-details document (an object with a numeric "id")'
      USING ERRCODE = 'invalid_parameter_value', DETAIL = left(coalesce(p_doc::text, 'NULL'), 200);
  END IF;
  v_date := CASE WHEN p_doc ->> 'release_date' ~ '^\d{4}-\d{2}-\d{2}$' THEN (p_doc ->> 'release_date')::date END;
  v_movie := reelscore.find_or_create_movie(
    coalesce(p_doc ->> 'title', p_doc ->> 'original_title'), v_date, (p_doc ->> 'id')::integer,
    nullif(p_doc ->> 'imdb_id', ''),
    (SELECT array_agg(g ->> 'name') FROM jsonb_array_elements(
       CASE WHEN jsonb_typeof(p_doc -> 'genres') = 'array' THEN p_doc -> 'genres' END) g),
    NULL);
  RETURN QUERY SELECT * FROM reelscore.apply_document_metrics(
    v_movie, (SELECT coalesce(jsonb_object_agg(t.metric_code, t.raw_value), '{}') FROM reelscore.tmdb_metrics(p_doc) t),
    p_observed_at, 'tmdb:' || (p_doc ->> 'id'));
END
$$;
COMMENT ON FUNCTION reelscore.ingest_tmdb(jsonb, timestamptz) IS
  'Load a TMDb movie-details document: finds (by tmdb_id / imdb_id) or creates the movie, upserts its TMDb metrics. One row per metric with its status (inserted, updated, unchanged, rejected: reason).';

CREATE OR REPLACE FUNCTION reelscore.ingest_omdb(p_doc jsonb, p_observed_at timestamptz DEFAULT NULL)
RETURNS TABLE (movie_id bigint, metric_code text, raw_value double precision, status text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_movie bigint;
  v_date date;
  v_imdb text := p_doc ->> 'imdbID';
BEGIN
  IF p_doc IS NULL OR jsonb_typeof(p_doc) <> 'object' OR coalesce(p_doc ->> 'Response', 'True') <> 'True'
     OR v_imdb IS NULL OR v_imdb !~ '^tt[0-9]{5,10}$' THEN
    RAISE EXCEPTION 'ingest_omdb: not an OMDb movie document (an object with "imdbID" like tt0133093 and Response True)'
      USING ERRCODE = 'invalid_parameter_value', DETAIL = left(coalesce(p_doc::text, 'NULL'), 200);
  END IF;
  -- OMDb's "Released" reads "31 Mar 1999".
  v_date := CASE WHEN p_doc ->> 'Released' ~ '^\d{1,2} [A-Z][a-z]{2} \d{4}$'
                 THEN to_date(p_doc ->> 'Released', 'DD Mon YYYY') END;
  v_movie := reelscore.find_or_create_movie(
    p_doc ->> 'Title', v_date, NULL, v_imdb,
    CASE WHEN coalesce(p_doc ->> 'Genre', 'N/A') <> 'N/A' THEN regexp_split_to_array(p_doc ->> 'Genre', '\s*,\s*') END,
    nullif(nullif(p_doc ->> 'Director', 'N/A'), ''));
  RETURN QUERY SELECT * FROM reelscore.apply_document_metrics(
    v_movie, (SELECT coalesce(jsonb_object_agg(o.metric_code, o.raw_value), '{}') FROM reelscore.omdb_metrics(p_doc) o),
    p_observed_at, 'omdb:' || v_imdb);
END
$$;
COMMENT ON FUNCTION reelscore.ingest_omdb(jsonb, timestamptz) IS
  'Load an OMDb document: finds (by imdb_id) or creates the movie, upserts IMDb rating and votes, Metacritic, Rotten Tomatoes and box office. One row per metric with its status.';

-- ---------------------------------------------------------------------------------------
-- The legacy "scattered" shape (revision 0005: legacy_movies with metrics in a JSONB
-- column, legacy_festival_results) migrated in one call: movies matched by TMDb / IMDb id
-- or created, every value staged and merged through the bulk path (so bad values are
-- quarantined with their reason and the batch is counted in load_batches).
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.legacy_metrics(p_external jsonb)
RETURNS TABLE (metric_code text, raw_value double precision)
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  -- The source documents first; the "financials" object fills what they lack.
  SELECT DISTINCT ON (x.metric_code) x.metric_code, x.raw_value
  FROM (
    SELECT t.metric_code, t.raw_value, 1 AS prio FROM reelscore.tmdb_metrics(p_external -> 'tmdb') t
    WHERE jsonb_typeof(p_external -> 'tmdb') = 'object'
    UNION ALL
    SELECT o.metric_code, o.raw_value, 1 FROM reelscore.omdb_metrics(p_external -> 'omdb') o
    WHERE jsonb_typeof(p_external -> 'omdb') = 'object'
    UNION ALL
    SELECT f.code, f.val, 2
    FROM (VALUES ('tmdb_budget', nullif(reelscore.json_number(p_external #> '{financials,budget}'), 0)),
                 ('tmdb_revenue', nullif(reelscore.json_number(p_external #> '{financials,revenue}'), 0)),
                 ('omdb_box_office', reelscore.json_number(p_external #> '{financials,box_office}'))) f(code, val)
    WHERE f.val IS NOT NULL
  ) x
  ORDER BY x.metric_code, x.prio
$$;
COMMENT ON FUNCTION reelscore.legacy_metrics(jsonb) IS
  'The metrics in a legacy movie''s external_data JSONB: its "tmdb" and "omdb" documents (as tmdb_metrics / omdb_metrics read them), then "financials" (budget, revenue, box_office) for what they lack.';

CREATE OR REPLACE FUNCTION reelscore.migrate_legacy(p_observed_at timestamptz DEFAULT NULL)
RETURNS TABLE (movies_matched bigint, movies_created bigint, batch_id bigint, inserted bigint, updated bigint,
               unchanged bigint, rejected bigint)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_matched bigint := 0;
  v_created bigint := 0;
  v_n bigint;
  v_batch bigint;
BEGIN
  -- 1. Movies: match by TMDb id, then IMDb id; create the rest.
  UPDATE reelscore.legacy_movies l SET migrated_movie_id = m.id
  FROM reelscore.movies m
  WHERE l.migrated_movie_id IS NULL AND l.tmdb_id IS NOT NULL AND m.tmdb_id = l.tmdb_id;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  v_matched := v_n;
  UPDATE reelscore.legacy_movies l SET migrated_movie_id = m.id
  FROM reelscore.movies m
  WHERE l.migrated_movie_id IS NULL AND l.imdb_id IS NOT NULL AND m.imdb_id = l.imdb_id;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  v_matched := v_matched + v_n;

  CREATE TEMP TABLE rs_legacy_new ON COMMIT DROP AS
  SELECT l.id AS legacy_id, nextval(pg_get_serial_sequence('reelscore.movies', 'id')) AS movie_id
  FROM reelscore.legacy_movies l WHERE l.migrated_movie_id IS NULL;
  INSERT INTO reelscore.movies (id, title, release_date, tmdb_id, imdb_id, genres)
  SELECT n.movie_id, l.title, l.release_date, l.tmdb_id, l.imdb_id,
         coalesce((SELECT array_agg(g ->> 'name') FROM jsonb_array_elements(
                     CASE WHEN jsonb_typeof(l.external_data #> '{tmdb,genres}') = 'array'
                          THEN l.external_data #> '{tmdb,genres}' END) g), '{}')
  FROM rs_legacy_new n JOIN reelscore.legacy_movies l ON l.id = n.legacy_id;
  GET DIAGNOSTICS v_created = ROW_COUNT;
  UPDATE reelscore.legacy_movies l SET migrated_movie_id = n.movie_id
  FROM rs_legacy_new n WHERE l.id = n.legacy_id;
  DROP TABLE rs_legacy_new;
  UPDATE reelscore.legacy_movies SET migrated_at = now() WHERE migrated_at IS NULL;

  -- 2. Values: the JSONB metrics and the festival table, through the bulk path.
  v_batch := reelscore.begin_load('legacy_movies', 'legacy');
  INSERT INTO pg_temp.rs_load_staging (line_no, movie_id, metric_code, raw_value, observed_at, source_record, raw_text)
  SELECT l.id, l.migrated_movie_id, x.metric_code, x.raw_value, p_observed_at, 'legacy:' || l.id,
         format('legacy_movies %s: %s = %s', l.id, x.metric_code, x.raw_value)
  FROM reelscore.legacy_movies l
  CROSS JOIN LATERAL reelscore.legacy_metrics(l.external_data) x
  UNION ALL
  SELECT f.legacy_movie_id, l.migrated_movie_id, f.code, f.val, p_observed_at, 'legacy_festival:' || f.legacy_movie_id,
         format('legacy_festival_results of %s: %s = %s', f.legacy_movie_id, f.code, f.val)
  FROM (
    SELECT r.legacy_movie_id, v.code, v.val
    FROM (SELECT legacy_movie_id,
                 count(*) FILTER (WHERE festival = 'oscars') AS oscar_noms,
                 count(*) FILTER (WHERE festival = 'oscars' AND won) AS oscar_wins,
                 bool_or(festival = 'cannes' AND won AND category ILIKE 'palme d%or') AS palme,
                 bool_or(festival = 'cannes') AS cannes_sel,
                 bool_or(festival = 'venice' AND won AND category ILIKE 'golden lion%') AS lion,
                 bool_or(festival = 'venice') AS venice_sel,
                 bool_or(festival = 'berlin' AND won AND category ILIKE 'golden bear%') AS bear,
                 bool_or(festival = 'sundance' AND won AND category ILIKE 'grand jury prize%') AS sundance
          FROM reelscore.legacy_festival_results GROUP BY legacy_movie_id) r
    CROSS JOIN LATERAL (VALUES
      ('oscar_nominations', CASE WHEN r.oscar_noms > 0 THEN r.oscar_noms::float8 END),
      ('oscar_wins', CASE WHEN r.oscar_noms > 0 THEN r.oscar_wins::float8 END),
      ('cannes_palme_dor', CASE WHEN r.palme THEN 1.0::float8 END),
      ('cannes_selection', CASE WHEN r.cannes_sel THEN 1.0::float8 END),
      ('venice_golden_lion', CASE WHEN r.lion THEN 1.0::float8 END),
      ('venice_selection', CASE WHEN r.venice_sel THEN 1.0::float8 END),
      ('berlin_golden_bear', CASE WHEN r.bear THEN 1.0::float8 END),
      ('sundance_grand_jury', CASE WHEN r.sundance THEN 1.0::float8 END)) v(code, val)
    WHERE v.val IS NOT NULL
  ) f
  JOIN reelscore.legacy_movies l ON l.id = f.legacy_movie_id;

  RETURN QUERY SELECT v_matched, v_created, r.batch_id, r.inserted, r.updated, r.unchanged, r.rejected
  FROM reelscore.finish_load(v_batch) r;
END
$$;
COMMENT ON FUNCTION reelscore.migrate_legacy(timestamptz) IS
  'Migrate the legacy scattered shape (legacy_movies.external_data JSONB, legacy_festival_results) into movies and metric_values in one call: movies matched by TMDb/IMDb id or created, values merged through the bulk path (quarantine included). Re-running is safe: identical values stay unchanged.';
