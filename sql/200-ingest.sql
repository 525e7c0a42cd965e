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
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO reelscore.metric_timeseries (time, movie_id, metric_id, value, normalized_value, metadata)
    SELECT n.observed_at, n.movie_id, n.metric_id, n.raw_value,
           CASE WHEN cardinality(p.args) > 0
                THEN reelscore.normalize_with(p.normalization_type, p.args, n.raw_value) END,
           CASE WHEN n.batch_id IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('batch_id', n.batch_id) END
    FROM new_rows n
    JOIN reelscore.metric_norm_params p ON p.metric_id = n.metric_id;
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
    WHERE n.raw_value IS DISTINCT FROM o.raw_value OR n.observed_at IS DISTINCT FROM o.observed_at;
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
-- CASCADE), deleting a metric that has values is refused (NO ACTION). Like a foreign key's
-- checks they run as the owner (SECURITY DEFINER): FOR KEY SHARE needs UPDATE rights on the
-- referenced table and a cascade needs DELETE on metric_values, which loaders do not hold.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.metric_values_check_refs() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_wanted bigint;
  v_locked bigint;
  v_missing text;
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

  SELECT count(DISTINCT n.metric_id) INTO v_wanted FROM new_rows n;
  SELECT count(*) INTO v_locked
  FROM (SELECT 1 FROM reelscore.metric_definitions d
        WHERE d.id IN (SELECT n.metric_id FROM new_rows n) FOR KEY SHARE OF d) x;
  IF v_locked <> v_wanted THEN
    SELECT string_agg(DISTINCT n.metric_id::text, ', ') INTO v_missing FROM new_rows n
    WHERE NOT EXISTS (SELECT 1 FROM reelscore.metric_definitions d WHERE d.id = n.metric_id);
    RAISE EXCEPTION 'insert on table "metric_values" violates foreign key: metric id % does not exist', v_missing
      USING ERRCODE = 'foreign_key_violation',
            HINT = 'Load values through reelscore.begin_load/finish_load, which quarantines such rows.';
  END IF;

  WITH ids AS MATERIALIZED (SELECT DISTINCT n.movie_id FROM new_rows n)
  SELECT (SELECT count(*) FROM ids),
         (SELECT count(*) FROM (SELECT 1 FROM reelscore.movies m WHERE m.id IN (SELECT ids.movie_id FROM ids)
                                FOR KEY SHARE OF m) x)
  INTO v_wanted, v_locked;
  IF v_locked <> v_wanted THEN
    SELECT string_agg(y.movie_id::text, ', ') INTO v_missing
    FROM (SELECT DISTINCT n.movie_id FROM new_rows n
          WHERE NOT EXISTS (SELECT 1 FROM reelscore.movies m WHERE m.id = n.movie_id)
          ORDER BY 1 LIMIT 10) y;
    RAISE EXCEPTION 'insert on table "metric_values" violates foreign key: movie id % does not exist', v_missing
      USING ERRCODE = 'foreign_key_violation',
            HINT = 'Load values through reelscore.begin_load/finish_load, which quarantines such rows.';
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION reelscore.metric_values_check_refs() IS
  'Trigger: the foreign keys of metric_values (movie_id -> movies, metric_id -> metric_definitions), checked per statement; referenced rows locked FOR KEY SHARE.';

CREATE OR REPLACE FUNCTION reelscore.metric_values_referenced() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
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

REVOKE ALL ON FUNCTION reelscore.metric_values_check_refs(), reelscore.metric_values_referenced() FROM PUBLIC;

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

CREATE OR REPLACE FUNCTION reelscore.finish_load(p_batch_id bigint, p_movie_key text DEFAULT 'id',
                                                 p_check_duplicates boolean DEFAULT true)
RETURNS TABLE (batch_id bigint, inserted bigint, updated bigint, unchanged bigint, rejected bigint)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_source text;
  v_total bigint;
  v_rejected bigint;
  v_inserted bigint;
  v_updated bigint;
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
  UPDATE pg_temp.rs_load_staging s
  SET problem = bad.problem
  FROM (SELECT t.ctid AS row_ctid,
               CASE WHEN d.id IS NULL THEN format('unknown metric %s', coalesce(quote_literal(t.metric_code), 'NULL'))
                    WHEN t.movie_id IS NULL
                      THEN format('unknown movie %s %s', p_movie_key, coalesce(quote_literal(t.movie_key), 'NULL'))
                    WHEN m.id IS NULL THEN format('unknown movie id %s', t.movie_id)
                    ELSE format('%s: %s', d.code,
                                reelscore.raw_value_problem(d.data_type, d.raw_scale_min, d.raw_scale_max, t.raw_value))
               END AS problem
        FROM pg_temp.rs_load_staging t
        LEFT JOIN reelscore.metric_definitions d ON d.code = t.metric_code
        LEFT JOIN reelscore.movies m ON m.id = t.movie_id
        WHERE t.problem IS NULL
          AND (d.id IS NULL OR m.id IS NULL
               OR reelscore.raw_value_problem(d.data_type, d.raw_scale_min, d.raw_scale_max, t.raw_value) IS NOT NULL)) bad
  WHERE s.ctid = bad.row_ctid;

  -- 2. Duplicates within the batch: the first valid occurrence (lowest line) loads, later ones are
  --    rejected. A client that has checked a sorted input itself may skip this pass.
  IF p_check_duplicates THEN
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

  -- 3. The quarantine: reason and original text (the fields, when the client sent no raw_text).
  INSERT INTO reelscore.load_rejections (batch_id, source_name, line_no, raw_text, reason)
  SELECT p_batch_id, v_source, s.line_no,
         coalesce(s.raw_text, concat_ws(',', coalesce(s.movie_id::text, s.movie_key), s.metric_code,
                                        s.raw_value::text, s.observed_at::text)),
         s.problem
  FROM pg_temp.rs_load_staging s
  WHERE s.problem IS NOT NULL;
  GET DIAGNOSTICS v_rejected = ROW_COUNT;

  -- 4. One merge: insert new, update changed, leave identical rows untouched. Changed means a
  --    different raw value, or an explicitly later observation of it. An observation older than
  --    the stored one never overwrites it. A row without observed_at is observed now():
  --    excluded.observed_at = now() marks it (an explicit timestamp equal to the transaction
  --    start to the microsecond is treated the same way, which is harmless).
  WITH merged AS (
    INSERT INTO reelscore.metric_values AS mv
      (movie_id, metric_id, raw_value, observed_at, source_record, batch_id, updated_at)
    SELECT s.movie_id, d.id, s.raw_value, coalesce(s.observed_at, now()), s.source_record, p_batch_id, now()
    FROM pg_temp.rs_load_staging s
    JOIN reelscore.metric_definitions d ON d.code = s.metric_code
    WHERE s.problem IS NULL
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
