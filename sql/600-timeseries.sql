-- 600-timeseries: rollups of metric_timeseries (hourly and daily partial state, weekly view),
-- their windowed refresh, retention of raw points, trend detection (Theil-Sen slope with a
-- Mann-Kendall test), spike flags (z-score against the movie's own history), and seasonal
-- patterns by genre.
--
-- Buckets are TimescaleDB's time_bucket where the extension is installed, date_bin with the
-- same origin (Monday 2000-01-03, UTC) otherwise: the two give the same buckets.

DO $do$
DECLARE
  v_schema text := (SELECT e.extnamespace::regnamespace::text FROM pg_extension e WHERE e.extname = 'timescaledb');
BEGIN
  IF v_schema IS NOT NULL THEN
    EXECUTE format($f$
      CREATE OR REPLACE FUNCTION reelscore.ts_bucket(p_width interval, p_ts timestamptz) RETURNS timestamptz
      LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
      AS $b$ SELECT %I.time_bucket(p_width, p_ts) $b$ $f$, v_schema);
  ELSE
    CREATE OR REPLACE FUNCTION reelscore.ts_bucket(p_width interval, p_ts timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
    AS $b$ SELECT date_bin(p_width, p_ts, timestamptz '2000-01-03 00:00:00+00') $b$;
  END IF;
END
$do$;
COMMENT ON FUNCTION reelscore.ts_bucket(interval, timestamptz) IS
  'The bucket a time falls in: time_bucket with TimescaleDB, date_bin with the same origin without it.';

-- ---------------------------------------------------------------------------------------
-- Appending points in bulk
-- ---------------------------------------------------------------------------------------
-- Points staged by the caller (COPY into a temp table with columns time, movie_id, metric_id,
-- value) are normalized and appended in one statement. JIT off: the compile cost more than a
-- third of a 200k-point insert and saves nothing on a plan this simple.
CREATE OR REPLACE FUNCTION reelscore.append_points(p_staging regclass, p_metadata jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET jit = off
AS $$
DECLARE
  v_unknown smallint[];
  v_n bigint;
BEGIN
  IF p_metadata IS NULL OR jsonb_typeof(p_metadata) <> 'object' THEN
    RAISE EXCEPTION 'p_metadata must be a JSON object, got %', coalesce(jsonb_typeof(p_metadata), 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  EXECUTE format('SELECT array_agg(DISTINCT s.metric_id ORDER BY s.metric_id) FROM %s s '
                 'WHERE NOT EXISTS (SELECT 1 FROM reelscore.metric_definitions d WHERE d.id = s.metric_id)',
                 p_staging) INTO v_unknown;
  IF v_unknown IS NOT NULL THEN
    RAISE EXCEPTION 'points of unknown metric ids %: nothing appended', v_unknown
      USING ERRCODE = 'foreign_key_violation', HINT = 'See reelscore.metric_definitions for the metric ids.';
  END IF;
  EXECUTE format(
    'INSERT INTO reelscore.metric_timeseries (time, movie_id, metric_id, value, normalized_value, metadata) '
    'SELECT s.time, s.movie_id, s.metric_id, s.value, '
    '       reelscore.normalize_with(p.normalization_type, p.args, s.value), $1 '
    'FROM %s s JOIN reelscore.metric_norm_params p ON p.metric_id = s.metric_id', p_staging)
  USING p_metadata;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  RETURN v_n;
END
$$;
COMMENT ON FUNCTION reelscore.append_points(regclass, jsonb) IS
  'Append staged time-series points (a table with time, movie_id, metric_id, value; e.g. a temp table filled by COPY) to metric_timeseries, normalized, in one statement, with p_metadata on each. Unknown metric ids reject the whole batch (23503). Returns the number of points.';

-- Two-sided p-value of a standard normal z: erfc(|z| / sqrt 2), Abramowitz-Stegun 7.1.26
-- (absolute error under 1.5e-7; PostgreSQL 15 has no erf).
CREATE OR REPLACE FUNCTION reelscore.normal_two_sided_p(p_z double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT least(1.0::float8, t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
              + t * 1.061405429)))) * exp(-(p_z * p_z) / 2.0))
  FROM (SELECT 1.0 / (1.0 + 0.3275911 * abs(p_z) / sqrt(2.0::float8)) AS t) x
$$;
COMMENT ON FUNCTION reelscore.normal_two_sided_p(float8) IS
  'Two-sided p-value of a standard normal statistic z (erfc(|z|/sqrt 2), error < 1.5e-7).';

-- ---------------------------------------------------------------------------------------
-- Readable rollups: averages and standard deviations from the partial state.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE VIEW reelscore.metric_rollup_hourly AS
SELECT r.metric_id, r.bucket, r.movie_id, r.n, r.sum_value / r.n AS avg_value, r.min_value, r.max_value,
       r.last_value, r.last_time,
       CASE WHEN r.n > 1 THEN sqrt(greatest(0, (r.sumsq_value - r.sum_value ^ 2 / r.n) / (r.n - 1))) END AS stddev_value,
       r.sum_value, r.sumsq_value
FROM reelscore.ts_rollup_hourly r;
COMMENT ON VIEW reelscore.metric_rollup_hourly IS
  'Hourly rollup per movie and metric: count, average, min, max, last, sample standard deviation, and the partial sums.';

CREATE OR REPLACE VIEW reelscore.metric_rollup_daily AS
SELECT r.metric_id, r.bucket, r.movie_id, r.n, r.sum_value / r.n AS avg_value, r.min_value, r.max_value,
       r.last_value, r.last_time,
       CASE WHEN r.n > 1 THEN sqrt(greatest(0, (r.sumsq_value - r.sum_value ^ 2 / r.n) / (r.n - 1))) END AS stddev_value,
       r.sum_value, r.sumsq_value
FROM reelscore.ts_rollup_daily r;
COMMENT ON VIEW reelscore.metric_rollup_daily IS
  'Daily rollup per movie and metric (rolled up from the hourly partial state).';

-- Weekly rolls up from the daily partial state (weeks start on Monday, UTC).
CREATE OR REPLACE VIEW reelscore.metric_rollup_weekly AS
SELECT r.metric_id, reelscore.ts_bucket('7 days', r.bucket) AS bucket, r.movie_id, sum(r.n)::bigint AS n,
       sum(r.sum_value) / sum(r.n) AS avg_value, min(r.min_value) AS min_value, max(r.max_value) AS max_value,
       (array_agg(r.last_value ORDER BY r.last_time DESC))[1] AS last_value, max(r.last_time) AS last_time,
       CASE WHEN sum(r.n) > 1
            THEN sqrt(greatest(0, (sum(r.sumsq_value) - sum(r.sum_value) ^ 2 / sum(r.n)) / (sum(r.n) - 1))) END
         AS stddev_value,
       sum(r.sum_value) AS sum_value, sum(r.sumsq_value) AS sumsq_value
FROM reelscore.ts_rollup_daily r
GROUP BY r.metric_id, reelscore.ts_bucket('7 days', r.bucket), r.movie_id;
COMMENT ON VIEW reelscore.metric_rollup_weekly IS
  'Weekly rollup per movie and metric, combined from the daily partial state.';

-- ---------------------------------------------------------------------------------------
-- Bring one rollup table's window in line with pg_temp.rs_rollup_new (the freshly computed
-- buckets of that window): new buckets inserted, changed ones updated, buckets no longer
-- backed by raw points deleted, identical ones left alone. The scheduled refresh re-rolls the
-- same recent days every run and most of their buckets have not changed: rewriting them
-- (the former delete + insert) cost a day at 100k movies 4-5 s per table in index writes
-- and dead rows. The window is read once, by a full join with the fresh buckets that keeps
-- only what differs (pg_temp.rs_rollup_diff); the writes then touch those rows alone. (An
-- upsert that skipped unchanged buckets and a delete of the missing ones read the window
-- twice: 0.4-0.6 s more per table for a day at 100k movies.) For the daily table the
-- (metric, movie) pairs whose buckets changed are appended to pg_temp.rs_rollup_changed:
-- refresh_trend_candidates recomputes only those. Empties rs_rollup_new for the next table;
-- returns how many buckets changed.
CREATE OR REPLACE FUNCTION reelscore.merge_rollup(p_table text, p_ids smallint[], p_from timestamptz, p_to timestamptz)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET jit = off
AS $$
DECLARE
  v_n bigint;
  v_sink text;
BEGIN
  IF p_table NOT IN ('ts_rollup_hourly', 'ts_rollup_daily') THEN
    RAISE EXCEPTION 'merge_rollup: unknown rollup table %', quote_literal(p_table) USING ERRCODE = 'invalid_parameter_value';
  END IF;
  CREATE TEMP TABLE IF NOT EXISTS rs_rollup_changed (metric_id smallint NOT NULL, movie_id bigint NOT NULL)
    ON COMMIT DROP;
  -- gone: the table holds the bucket, the fresh ones do not (its points are gone)
  CREATE TEMP TABLE IF NOT EXISTS rs_rollup_diff (
    metric_id smallint NOT NULL, bucket timestamptz NOT NULL, movie_id bigint NOT NULL, n bigint,
    sum_value double precision, sumsq_value double precision, min_value double precision,
    max_value double precision, last_value double precision, last_time timestamptz, gone boolean NOT NULL
  ) ON COMMIT DROP;
  TRUNCATE pg_temp.rs_rollup_diff;
  v_sink := CASE WHEN p_table = 'ts_rollup_daily'
                 THEN 'INSERT INTO pg_temp.rs_rollup_changed (metric_id, movie_id) SELECT m.metric_id, m.movie_id FROM merged m'
                 ELSE 'SELECT FROM merged' END;
  ANALYZE pg_temp.rs_rollup_new;
  EXECUTE format($q$
    INSERT INTO pg_temp.rs_rollup_diff
      (metric_id, bucket, movie_id, n, sum_value, sumsq_value, min_value, max_value, last_value, last_time, gone)
    SELECT coalesce(x.metric_id, o.metric_id), coalesce(x.bucket, o.bucket), coalesce(x.movie_id, o.movie_id),
           x.n, x.sum_value, x.sumsq_value, x.min_value, x.max_value, x.last_value, x.last_time,
           x.metric_id IS NULL
    FROM pg_temp.rs_rollup_new x
    FULL JOIN (SELECT * FROM reelscore.%1$I r
               WHERE r.metric_id = ANY ($1) AND r.bucket >= $2 AND r.bucket < $3) o   -- the window
      ON o.metric_id = x.metric_id AND o.bucket = x.bucket AND o.movie_id = x.movie_id
    WHERE o.metric_id IS NULL OR x.metric_id IS NULL
       OR (o.n, o.sum_value, o.sumsq_value, o.min_value, o.max_value, o.last_value, o.last_time)
          IS DISTINCT FROM (x.n, x.sum_value, x.sumsq_value, x.min_value, x.max_value, x.last_value, x.last_time)
  $q$, p_table) USING p_ids, p_from, p_to;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  TRUNCATE pg_temp.rs_rollup_new;
  IF v_n = 0 THEN
    RETURN 0;
  END IF;
  ANALYZE pg_temp.rs_rollup_diff;
  EXECUTE format($q$
    WITH merged AS (
      INSERT INTO reelscore.%1$I AS r
        (metric_id, bucket, movie_id, n, sum_value, sumsq_value, min_value, max_value, last_value, last_time)
      SELECT x.metric_id, x.bucket, x.movie_id, x.n, x.sum_value, x.sumsq_value, x.min_value, x.max_value,
             x.last_value, x.last_time
      FROM pg_temp.rs_rollup_diff x
      WHERE NOT x.gone
      ORDER BY x.metric_id, x.bucket, x.movie_id
      ON CONFLICT (metric_id, bucket, movie_id) DO UPDATE SET
        n = excluded.n, sum_value = excluded.sum_value, sumsq_value = excluded.sumsq_value,
        min_value = excluded.min_value, max_value = excluded.max_value, last_value = excluded.last_value,
        last_time = excluded.last_time
      RETURNING r.metric_id, r.movie_id
    )
    %2$s
  $q$, p_table, v_sink);
  -- Only when some bucket is gone (rare: its raw points were deleted); with none there is
  -- nothing to join. In one CI run a refresh of 60k points took 7 minutes instead of 4 s, in a
  -- nested loop that scanned a heap table again for each outer row; this join is the likeliest
  -- statement (the slow plan did not come back on demand, so that is not proven).
  IF EXISTS (SELECT 1 FROM pg_temp.rs_rollup_diff x WHERE x.gone) THEN
    EXECUTE format($q$
      WITH merged AS (
        DELETE FROM reelscore.%1$I r USING pg_temp.rs_rollup_diff x
        WHERE x.gone AND r.metric_id = x.metric_id AND r.bucket = x.bucket AND r.movie_id = x.movie_id
        RETURNING r.metric_id, r.movie_id
      )
      %2$s
    $q$, p_table, v_sink);
  END IF;
  RETURN v_n;
END
$$;
COMMENT ON FUNCTION reelscore.merge_rollup(text, smallint[], timestamptz, timestamptz) IS
  'Internal to refresh_rollups: merge the freshly computed buckets (pg_temp.rs_rollup_new) into a rollup table''s window, rewriting only buckets that changed (the window is read once); for the daily table the changed (metric, movie) pairs are noted in pg_temp.rs_rollup_changed for refresh_trend_candidates. Returns how many buckets were inserted, updated or deleted.';

-- Least-squares slope from running sums (see refresh_trend_candidates): the numerator is exact
-- in numeric, the denominator in bigint (n^2 var(x): x days since 1970, n up to 3,660 days stays
-- far below 2^63), each side is rounded once to float8. NULL under two distinct x; NaN when a
-- point was NaN or infinite (what regr_slope gives).
CREATE OR REPLACE FUNCTION reelscore.ols_slope_from_sums(p_n integer, p_nonfinite integer, p_sum_x bigint,
                                                         p_sum_xx bigint, p_sum_y numeric, p_sum_xy numeric)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT CASE
    WHEN p_nonfinite > 0 THEN 'NaN'::float8
    WHEN p_n::bigint * p_sum_xx - p_sum_x * p_sum_x > 0
      THEN (p_n * p_sum_xy - p_sum_x * p_sum_y)::float8 / (p_n::bigint * p_sum_xx - p_sum_x * p_sum_x)::float8
  END
$$;
COMMENT ON FUNCTION reelscore.ols_slope_from_sums(integer, integer, bigint, bigint, numeric, numeric) IS
  'Least-squares slope of y on x from n, sum x, sum x^2, sum y, sum xy (exact numerator in numeric); NULL under two distinct x, NaN when p_nonfinite > 0.';

-- Stage 1 of trending() for the configured windows: the least-squares slope of a movie's
-- normalized daily mean over the window, for the steepest movies per metric.
--
-- Kept as running sums (ts_trend_sums, migration 0017): per (metric, window, movie) the
-- daily rows in the window (days), the regression's points (n: finite normalized means),
-- sum x, sum x^2 (x: days since 1970-01-01, an absolute day number, so the sums stay valid
-- when the window moves), sum y, sum xy (y: the normalized daily mean, as numeric). Sums of
-- numeric are exact, so sums kept by subtraction equal sums computed afresh, digit for digit,
-- and so do the slopes: (n sum_xy - sum_x sum_y) / (n sum_xx - sum_x^2), the numerator exact
-- in numeric, then one rounding to float8 each side. y enters as float8::numeric (15
-- significant digits, a fixed function of the float8). A NaN or infinite y makes the slope
-- NaN (as regr_slope over float8 did); it is counted apart so that it can leave again.
--
-- What is stored in ts_trend_candidates, per metric and window: the 2 * trend_candidates
-- movies with the steepest slope (3+ days, slope > 0; ties by movie id, as trending()
-- orders), exactly what a full pass stores. trending() reads the top of it.
--
-- Within refresh_rollups (pg_temp.rs_rollup_changed exists) only what is stale is redone:
--   * a window moved to a new day: the daily rows that left it are subtracted (one day of
--     rows per window, 2 x 100k at 100k movies, instead of the 6.2M rows of a full pass);
--   * the (metric, movie) pairs whose daily buckets changed: their sums recomputed;
--   * a metric whose normalization changed since its last full pass (definition edited, or
--     for a percentile metric its stored distribution refreshed), without sums for a
--     configured window, or whose window moved by a whole window or back: full pass;
-- then each touched (metric, window) re-takes its top rows from the sums, and only rows that
-- differ are rewritten. Called by hand (outside refresh_rollups): a full pass of every metric.
-- The full pass aggregates each metric's daily rows once for all windows (FILTER per window);
-- with numeric sums it costs 2-3x the former float8 regr_slope pass (36-41 s against 12-17 s
-- at 100k movies), the price of moves that are exact.
CREATE OR REPLACE FUNCTION reelscore.refresh_trend_candidates() RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET jit = off
SET work_mem = '256MB'   -- 6M daily rows for 30 days of 100k movies x 2 metrics: grouped in memory
AS $$
DECLARE
  v_s reelscore.ts_settings%ROWTYPE;
  v_windows integer[];
  v_wfrom timestamptz[];    -- each window's first day now, in v_windows' order
  v_from timestamptz;       -- start of the longest window
  v_ids smallint[] := ARRAY(SELECT d.id FROM reelscore.metric_definitions d ORDER BY d.id);
  v_full smallint[];        -- metrics recomputed from all their daily rows
  v_incremental boolean := to_regclass('pg_temp.rs_rollup_changed') IS NOT NULL;   -- within refresh_rollups
  v_rows text;              -- per-row x, y of daily rows (%s: the rows' source)
  v_aggs text;
  v_unpivot text;
  v_sums text;              -- per (metric, window, movie) sums of the daily rows of %s, all windows
  v_n bigint := 0;
  v_k bigint;
BEGIN
  -- One writer at a time (refresh_rollups holds its own lock; this covers calls by hand).
  PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('reelscore.refresh_trend_candidates'));
  SELECT * INTO v_s FROM reelscore.ts_settings;
  v_windows := ARRAY(SELECT DISTINCT w FROM unnest(v_s.trend_windows) w WHERE w >= 1 ORDER BY w);
  IF cardinality(v_windows) = 0 THEN
    RETURN 0;
  END IF;
  v_wfrom := ARRAY(SELECT reelscore.ts_bucket('1 day', now() - make_interval(days => w))
                   FROM unnest(v_windows) WITH ORDINALITY u(w, i) ORDER BY i);
  v_from := v_wfrom[cardinality(v_wfrom)];

  -- Daily rows of a source (%s: metric_id, movie_id, bucket, sum_value, n, and a tag passed
  -- through) with x: whole days since the epoch (buckets are UTC midnights), y: the normalized
  -- daily mean, NULL unless finite (a non-finite one is flagged in bad).
  -- Each OFFSET 0 keeps a subquery from being flattened into its reader, which would
  -- evaluate the normalization and the numeric conversion once per reference.
  v_rows := $q$
    SELECT z.metric_id, z.movie_id, z.bucket, z.tag, z.x,
           CASE WHEN abs(z.yf) < 'Infinity'::float8 THEN z.yf::numeric END AS y,
           z.yf IS NOT NULL AND NOT abs(z.yf) < 'Infinity'::float8 AS bad
    FROM (SELECT r.metric_id, r.movie_id, r.bucket, r.tag, date_part('epoch', r.bucket)::bigint / 86400 AS x,
                 reelscore.normalize_with(p.normalization_type, p.args, r.sum_value / r.n) AS yf
          FROM (%s) r
          JOIN reelscore.metric_norm_params p ON p.metric_id = r.metric_id
          OFFSET 0) z
  $q$;
  SELECT string_agg(format($a$
           count(*) FILTER (WHERE s.bucket >= %1$L) AS days_%2$s,
           count(s.y) FILTER (WHERE s.bucket >= %1$L) AS n_%2$s,
           count(*) FILTER (WHERE s.bucket >= %1$L AND s.bad) AS bad_%2$s,
           coalesce(sum(s.x) FILTER (WHERE s.bucket >= %1$L AND s.y IS NOT NULL), 0)::bigint AS sx_%2$s,
           coalesce(sum(s.x * s.x) FILTER (WHERE s.bucket >= %1$L AND s.y IS NOT NULL), 0)::bigint AS sxx_%2$s,
           coalesce(sum(s.y) FILTER (WHERE s.bucket >= %1$L), 0) AS sy_%2$s,
           coalesce(sum(s.x * s.y) FILTER (WHERE s.bucket >= %1$L), 0) AS sxy_%2$s$a$, u.f, u.w), ', '),
         string_agg(format('(%1$s, g.days_%1$s, g.n_%1$s, g.bad_%1$s, g.sx_%1$s, g.sxx_%1$s, g.sy_%1$s, g.sxy_%1$s)',
                           u.w), ', ')
  INTO v_aggs, v_unpivot
  FROM unnest(v_windows, v_wfrom) u(w, f);
  v_sums := format($q$
    SELECT g.metric_id, w.window_days, g.movie_id, w.days::integer AS days, w.n::integer AS n,
           w.bad::integer AS n_nonfinite, w.sx AS sum_x, w.sxx AS sum_xx, w.sy AS sum_y, w.sxy AS sum_xy
    FROM (SELECT s.metric_id, s.movie_id, %1$s
          FROM (%2$s OFFSET 0) s   -- x and y computed once a row, not once per aggregate that reads them
          GROUP BY s.metric_id, s.movie_id) g
    CROSS JOIN LATERAL (VALUES %3$s) w (window_days, days, n, bad, sx, sxx, sy, sxy)
    WHERE w.days > 0
  $q$, v_aggs, v_rows, v_unpivot);

  -- Sums of windows no longer configured are dropped.
  IF EXISTS (SELECT 1 FROM reelscore.ts_trend_windows t WHERE t.window_days <> ALL (v_windows)) THEN
    DELETE FROM reelscore.ts_trend_sums t WHERE t.window_days <> ALL (v_windows);
    DELETE FROM reelscore.ts_trend_windows t WHERE t.window_days <> ALL (v_windows);
  END IF;

  IF NOT v_incremental THEN
    v_full := v_ids;   -- by hand
  ELSE
    v_full := ARRAY(
      SELECT d.id FROM reelscore.metric_definitions d
      LEFT JOIN reelscore.metric_distributions dist ON dist.metric_id = d.id
      CROSS JOIN unnest(v_windows, v_wfrom) u(w, f)
      LEFT JOIN reelscore.ts_trend_windows t ON t.metric_id = d.id AND t.window_days = u.w
      WHERE t.window_from IS NULL                                   -- no sums for this window
         OR t.window_from > u.f OR t.window_from <= u.f - make_interval(days => u.w)   -- moved back, or by a whole window
         OR d.updated_at >= t.computed_at                           -- normalization changed since
         OR (d.normalization_type = 'percentile' AND dist.refreshed_at >= t.computed_at)
      GROUP BY d.id);
  END IF;

  CREATE TEMP TABLE IF NOT EXISTS rs_trend_touched (metric_id smallint, window_days integer) ON COMMIT DROP;
  TRUNCATE pg_temp.rs_trend_touched;

  IF cardinality(v_full) > 0 THEN
    DELETE FROM reelscore.ts_trend_sums t WHERE t.metric_id = ANY (v_full);
    EXECUTE format($q$
      INSERT INTO reelscore.ts_trend_sums AS t
        (metric_id, window_days, movie_id, days, n, n_nonfinite, sum_x, sum_xx, sum_y, sum_xy, slope)
      SELECT q.metric_id, q.window_days, q.movie_id, q.days, q.n, q.n_nonfinite, q.sum_x, q.sum_xx, q.sum_y, q.sum_xy,
             reelscore.ols_slope_from_sums(q.n, q.n_nonfinite, q.sum_x, q.sum_xx, q.sum_y, q.sum_xy)
      FROM (%1$s) q
    $q$, format(v_sums, $r$
        SELECT r.metric_id, r.movie_id, r.bucket, r.sum_value, r.n, NULL::integer AS tag
        FROM reelscore.ts_rollup_daily r
        WHERE r.metric_id = ANY ($1) AND r.bucket >= $2$r$))
    USING v_full, v_from;
    INSERT INTO reelscore.ts_trend_windows AS t (metric_id, window_days, window_from, computed_at)
    SELECT m, u.w, u.f, now() FROM unnest(v_full) m CROSS JOIN unnest(v_windows, v_wfrom) u(w, f)
    ON CONFLICT (metric_id, window_days) DO UPDATE SET window_from = excluded.window_from,
                                                      computed_at = excluded.computed_at;
    INSERT INTO pg_temp.rs_trend_touched SELECT m, w FROM unnest(v_full) m CROSS JOIN unnest(v_windows) w;
  END IF;

  IF v_incremental THEN
    -- The windows that moved to a later day: the daily rows that left them are subtracted.
    CREATE TEMP TABLE IF NOT EXISTS rs_trend_moved (metric_id smallint, window_days integer,
                                                    old_from timestamptz, new_from timestamptz) ON COMMIT DROP;
    TRUNCATE pg_temp.rs_trend_moved;
    INSERT INTO pg_temp.rs_trend_moved
    SELECT t.metric_id, t.window_days, t.window_from, u.f
    FROM reelscore.ts_trend_windows t JOIN unnest(v_windows, v_wfrom) u(w, f) ON u.w = t.window_days
    WHERE t.window_from < u.f AND t.metric_id <> ALL (v_full);
    -- One MERGE per leaving day (k days after each window's old start; a move is one day),
    -- for every window at once: a pair has at most one daily row a day, so each row updates
    -- its sums directly, without grouping, and a pair whose only day left is deleted in the
    -- same pass (the former UPDATE ... RETURNING into a temp table and a second DELETE over
    -- the sums cost 0.5-0.6 s more at 100k movies). tag: the window.
    FOR v_i IN 0 .. coalesce((SELECT max(extract(epoch FROM m.new_from - m.old_from))::integer / 86400 - 1
                              FROM pg_temp.rs_trend_moved m), -1)
    LOOP
      EXECUTE format($q$
        MERGE INTO reelscore.ts_trend_sums t
        USING (SELECT s.metric_id, s.movie_id, s.tag, (s.y IS NOT NULL)::integer AS dn, s.bad::integer AS dbad,
                      CASE WHEN s.y IS NOT NULL THEN s.x ELSE 0 END AS dx,
                      CASE WHEN s.y IS NOT NULL THEN s.x * s.x ELSE 0 END AS dxx,
                      coalesce(s.y, 0) AS dy, coalesce(s.x * s.y, 0) AS dxy
               FROM (%1$s OFFSET 0) s
               OFFSET 0) l
        ON t.metric_id = l.metric_id AND t.window_days = l.tag AND t.movie_id = l.movie_id
        WHEN MATCHED AND t.days = 1 THEN DELETE   -- its only day in the window left
        WHEN MATCHED THEN UPDATE SET
          days = t.days - 1, n = t.n - l.dn, n_nonfinite = t.n_nonfinite - l.dbad,
          sum_x = t.sum_x - l.dx, sum_xx = t.sum_xx - l.dxx, sum_y = t.sum_y - l.dy, sum_xy = t.sum_xy - l.dxy,
          slope = reelscore.ols_slope_from_sums(t.n - l.dn, t.n_nonfinite - l.dbad, t.sum_x - l.dx,
                                                t.sum_xx - l.dxx, t.sum_y - l.dy, t.sum_xy - l.dxy)
      $q$, format(v_rows, $r$
          SELECT r.metric_id, r.movie_id, r.bucket, r.sum_value, r.n, m.window_days AS tag
          FROM pg_temp.rs_trend_moved m
          JOIN reelscore.ts_rollup_daily r ON r.metric_id = m.metric_id AND r.bucket = m.old_from + $1
          WHERE m.old_from + $1 < m.new_from$r$))
      USING make_interval(days => v_i);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_temp.rs_trend_moved) THEN
      UPDATE reelscore.ts_trend_windows t SET window_from = m.new_from
      FROM pg_temp.rs_trend_moved m WHERE t.metric_id = m.metric_id AND t.window_days = m.window_days;
      INSERT INTO pg_temp.rs_trend_touched SELECT m.metric_id, m.window_days FROM pg_temp.rs_trend_moved m;
    END IF;

    -- The pairs whose daily buckets changed (after the move: their sums are replaced whole).
    CREATE TEMP TABLE IF NOT EXISTS rs_trend_changed (metric_id smallint, movie_id bigint) ON COMMIT DROP;
    TRUNCATE pg_temp.rs_trend_changed;
    INSERT INTO pg_temp.rs_trend_changed
    SELECT DISTINCT x.metric_id, x.movie_id FROM pg_temp.rs_rollup_changed x WHERE x.metric_id <> ALL (v_full);
    IF FOUND THEN
      ANALYZE pg_temp.rs_trend_changed;
      EXECUTE format($q$
        WITH fresh AS (%1$s),
        gone AS (
          DELETE FROM reelscore.ts_trend_sums t USING pg_temp.rs_trend_changed x
          WHERE t.metric_id = x.metric_id AND t.movie_id = x.movie_id
            AND NOT EXISTS (SELECT 1 FROM fresh f WHERE f.metric_id = t.metric_id AND f.window_days = t.window_days
                              AND f.movie_id = t.movie_id)
        )
        INSERT INTO reelscore.ts_trend_sums AS t
          (metric_id, window_days, movie_id, days, n, n_nonfinite, sum_x, sum_xx, sum_y, sum_xy, slope)
        SELECT f.metric_id, f.window_days, f.movie_id, f.days, f.n, f.n_nonfinite, f.sum_x, f.sum_xx, f.sum_y, f.sum_xy,
               reelscore.ols_slope_from_sums(f.n, f.n_nonfinite, f.sum_x, f.sum_xx, f.sum_y, f.sum_xy)
        FROM fresh f
        ON CONFLICT (metric_id, window_days, movie_id) DO UPDATE SET
          days = excluded.days, n = excluded.n, n_nonfinite = excluded.n_nonfinite, sum_x = excluded.sum_x,
          sum_xx = excluded.sum_xx, sum_y = excluded.sum_y, sum_xy = excluded.sum_xy, slope = excluded.slope
      $q$, format(v_sums, $r$
          SELECT r.metric_id, r.movie_id, r.bucket, r.sum_value, r.n, NULL::integer AS tag
          FROM pg_temp.rs_trend_changed x
          JOIN reelscore.ts_rollup_daily r ON r.movie_id = x.movie_id AND r.metric_id = x.metric_id AND r.bucket >= $1$r$))
      USING v_from;
      INSERT INTO pg_temp.rs_trend_touched
      SELECT DISTINCT x.metric_id, w FROM pg_temp.rs_trend_changed x CROSS JOIN unnest(v_windows) w;
    END IF;
  END IF;

  -- Each touched (metric, window) re-takes its top rows from the sums; rows that did not
  -- change are left alone.
  EXECUTE $q$
    WITH touched AS (
      SELECT DISTINCT x.metric_id, x.window_days, t.window_from
      FROM pg_temp.rs_trend_touched x
      JOIN reelscore.ts_trend_windows t ON t.metric_id = x.metric_id AND t.window_days = x.window_days
    ), top AS (
      SELECT x.metric_id, x.window_days, s.movie_id, s.slope, s.days, x.window_from
      FROM touched x
      CROSS JOIN LATERAL (
        SELECT s.movie_id, s.slope, s.days FROM reelscore.ts_trend_sums s
        WHERE s.metric_id = x.metric_id AND s.window_days = x.window_days AND s.days >= 3 AND s.slope > 0
        ORDER BY s.slope DESC, s.movie_id
        LIMIT 2 * $1) s
    ), gone AS (
      DELETE FROM reelscore.ts_trend_candidates c USING touched x
      WHERE c.metric_id = x.metric_id AND c.window_days = x.window_days
        AND NOT EXISTS (SELECT 1 FROM top p WHERE p.metric_id = c.metric_id AND p.window_days = c.window_days
                          AND p.movie_id = c.movie_id)
    )
    INSERT INTO reelscore.ts_trend_candidates AS c (metric_id, window_days, movie_id, ols_slope, days, window_from)
    SELECT p.metric_id, p.window_days, p.movie_id, p.slope, p.days, p.window_from FROM top p
    ON CONFLICT (metric_id, window_days, movie_id) DO UPDATE SET
      ols_slope = excluded.ols_slope, days = excluded.days, window_from = excluded.window_from,
      computed_at = excluded.computed_at
    WHERE (c.ols_slope, c.days, c.window_from) IS DISTINCT FROM (excluded.ols_slope, excluded.days, excluded.window_from)
  $q$ USING v_s.trend_candidates;
  GET DIAGNOSTICS v_k = ROW_COUNT;
  v_n := v_n + v_k;
  RETURN v_n;
END
$$;
COMMENT ON FUNCTION reelscore.refresh_trend_candidates() IS
  'Stage 1 of trending(): per metric and configured window (ts_settings.trend_windows), the 2 x trend_candidates movies with the steepest least-squares slope of their normalized daily mean, ranked from running sums (ts_trend_sums). Called by hand: every sum recomputed (do so after changing trend_candidates). Within refresh_rollups: a window moved to a new day subtracts the day that left it, movies whose daily buckets changed are recomputed, a metric whose normalization changed is recomputed whole. Returns the candidate rows written.';

-- Refresh: recompute the buckets of a window (default: the configured refresh_window back
-- from now, from the start of that day) and merge them (merge_rollup: only changed buckets
-- are written). Readers keep seeing the old rows until commit (MVCC); writers of
-- metric_timeseries are never blocked.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.refresh_rollups(p_from timestamptz DEFAULT NULL, p_to timestamptz DEFAULT NULL)
RETURNS TABLE (hourly_rows bigint, daily_rows bigint, window_from timestamptz, window_to timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET jit = off
AS $$
DECLARE
  v_s reelscore.ts_settings%ROWTYPE;
  v_t0 timestamptz := clock_timestamp();
  v_from timestamptz;
  v_to timestamptz;
  v_h bigint;
  v_d bigint;
  v_tsdb boolean := EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb');
  v_last_raw text;
  v_last_hour text;
  v_ids smallint[];
  v_changed bigint;
BEGIN
  IF p_from IS NOT NULL AND p_to IS NOT NULL AND p_from >= p_to THEN
    RAISE EXCEPTION 'refresh window is empty: from % is not before to %', p_from, p_to
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF NOT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('reelscore.refresh_rollups')) THEN
    RAISE NOTICE 'refresh_rollups: another refresh is running; skipped';
    RETURN;
  END IF;
  SELECT * INTO v_s FROM reelscore.ts_settings;
  CREATE TEMP TABLE IF NOT EXISTS rs_rollup_new (LIKE reelscore.ts_rollup_hourly) ON COMMIT DROP;
  TRUNCATE pg_temp.rs_rollup_new;

  -- Whole days, so that every daily bucket is rebuilt from complete hours.
  v_from := reelscore.ts_bucket('1 day', coalesce(p_from, now() - v_s.refresh_window));
  IF v_s.raw_retained_from IS NOT NULL AND v_from < v_s.raw_retained_from THEN
    v_from := v_s.raw_retained_from;   -- older raw points are gone: keep their rollups
  END IF;
  v_to := CASE WHEN p_to IS NULL THEN 'infinity'::timestamptz
               WHEN reelscore.ts_bucket('1 day', p_to) = p_to THEN p_to
               ELSE reelscore.ts_bucket('1 day', p_to) + interval '1 day' END;

  v_last_raw := CASE WHEN v_tsdb THEN 'last(t.value, t.time)'
                     ELSE '(array_agg(t.value ORDER BY t.time DESC))[1]' END;
  v_last_hour := CASE WHEN v_tsdb THEN 'last(h.last_value, h.last_time)'
                      ELSE '(array_agg(h.last_value ORDER BY h.last_time DESC))[1]' END;

  -- metric_id = ANY: lets the primary key (metric_id, bucket, movie_id) find the window, and
  -- the raw points' (metric_id, time) index find the window's points (a chunk holds 7 days:
  -- scanning all of it for one day cost 1.1 s at 100k movies, the index 0.6 s).
  v_ids := ARRAY(SELECT d.id FROM reelscore.metric_definitions d ORDER BY d.id);
  EXECUTE format($q$
    INSERT INTO pg_temp.rs_rollup_new
      (metric_id, bucket, movie_id, n, sum_value, sumsq_value, min_value, max_value, last_value, last_time)
    SELECT t.metric_id, reelscore.ts_bucket('1 hour', t.time), t.movie_id, count(*), sum(t.value),
           sum(t.value * t.value), min(t.value), max(t.value), %s, max(t.time)
    FROM reelscore.metric_timeseries t
    WHERE t.metric_id = ANY ($3) AND t.time >= $1 AND t.time < $2
    GROUP BY 1, 2, 3
  $q$, v_last_raw) USING v_from, v_to, v_ids;
  GET DIAGNOSTICS v_h = ROW_COUNT;

  -- The daily buckets roll up from the fresh hourly ones: once merged, the hourly table's
  -- window holds exactly these, and this small temp table is cheaper to read than the
  -- window's pages of ts_rollup_hourly (0.7 s for a day at 100k movies). Input in hour order
  -- within each day, so that the float sums add up in the same order every run.
  CREATE TEMP TABLE IF NOT EXISTS rs_rollup_day (LIKE reelscore.ts_rollup_daily) ON COMMIT DROP;
  TRUNCATE pg_temp.rs_rollup_day;
  EXECUTE format($q$
    INSERT INTO pg_temp.rs_rollup_day
      (metric_id, bucket, movie_id, n, sum_value, sumsq_value, min_value, max_value, last_value, last_time)
    SELECT h.metric_id, h.day, h.movie_id, sum(h.n), sum(h.sum_value),
           sum(h.sumsq_value), min(h.min_value), max(h.max_value), %s, max(h.last_time)
    FROM (SELECT x.*, reelscore.ts_bucket('1 day', x.bucket) AS day FROM pg_temp.rs_rollup_new x
          ORDER BY x.metric_id, x.movie_id, day, x.bucket) h
    GROUP BY h.metric_id, h.movie_id, h.day
  $q$, v_last_hour);
  GET DIAGNOSTICS v_d = ROW_COUNT;
  PERFORM reelscore.merge_rollup('ts_rollup_hourly', v_ids, v_from, v_to);

  INSERT INTO pg_temp.rs_rollup_new
    (metric_id, bucket, movie_id, n, sum_value, sumsq_value, min_value, max_value, last_value, last_time)
  SELECT d.metric_id, d.bucket, d.movie_id, d.n, d.sum_value, d.sumsq_value, d.min_value, d.max_value,
         d.last_value, d.last_time
  FROM pg_temp.rs_rollup_day d;
  v_changed := reelscore.merge_rollup('ts_rollup_daily', v_ids, v_from, v_to);

  -- Stage 1 of trending(): brought up to date when a daily bucket changed or a window moved
  -- to a new day (a re-roll of unchanged days leaves the candidates as they are). The changed
  -- pairs are consumed here: a later call by hand in this transaction is a full pass.
  IF v_changed > 0 OR EXISTS (
       SELECT 1 FROM unnest(v_s.trend_windows) w CROSS JOIN reelscore.metric_definitions d
       WHERE w >= 1
         AND NOT EXISTS (SELECT 1 FROM reelscore.ts_trend_windows t
                         WHERE t.metric_id = d.id AND t.window_days = w
                           AND t.window_from = reelscore.ts_bucket('1 day', now() - make_interval(days => w)))) THEN
    PERFORM reelscore.refresh_trend_candidates();
  END IF;
  DROP TABLE IF EXISTS pg_temp.rs_rollup_changed;

  UPDATE reelscore.ts_settings s
  SET refreshed_from = v_from,
      refreshed_through = CASE WHEN p_to IS NULL THEN v_t0 ELSE s.refreshed_through END,
      last_refresh_at = v_t0,
      last_refresh_ms = extract(epoch FROM clock_timestamp() - v_t0) * 1000;

  hourly_rows := v_h; daily_rows := v_d; window_from := v_from;
  window_to := CASE WHEN isfinite(v_to) THEN v_to END;   -- NULL: open-ended (up to now and beyond)
  RETURN NEXT;
END
$$;
COMMENT ON FUNCTION reelscore.refresh_rollups(timestamptz, timestamptz) IS
  'Recompute the hourly and daily rollups for a window of whole days: by default from the start of the day refresh_window (ts_settings) ago to now; pass p_from / p_to to backfill a range. Never touches days whose raw points retention dropped. Returns the rows written and the window.';

-- ---------------------------------------------------------------------------------------
-- Retention: drop raw points older than an age once they are rolled up; rollups stay.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.apply_retention(p_older_than interval DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_s reelscore.ts_settings%ROWTYPE;
  v_age interval;
  v_cutoff timestamptz;
  v_n bigint := 0;
  v_hyper boolean := false;
  v_schema text := (SELECT e.extnamespace::regnamespace::text FROM pg_extension e WHERE e.extname = 'timescaledb');
BEGIN
  SELECT * INTO v_s FROM reelscore.ts_settings;
  v_age := coalesce(p_older_than, v_s.raw_retention);
  IF v_age IS NULL OR v_age <= interval '1 hour' THEN
    RAISE EXCEPTION 'retention age must be more than an hour, got %', coalesce(v_age::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Pass p_older_than, or set reelscore.ts_settings.raw_retention.';
  END IF;
  -- Only what the rollups hold: never past the last full refresh, on a day boundary.
  v_cutoff := reelscore.ts_bucket('1 day', least(now() - v_age, coalesce(v_s.refreshed_through, '-infinity')));
  IF v_cutoff IS NULL OR v_cutoff = '-infinity' THEN
    RETURN 0;
  END IF;
  IF v_schema IS NOT NULL THEN
    -- Whole chunks older than the cutoff go at once (drop_chunks is in the Apache build).
    EXECUTE $q$SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables h
                              WHERE h.hypertable_schema = 'reelscore'
                                AND h.hypertable_name = 'metric_timeseries')$q$ INTO v_hyper;
    IF v_hyper THEN
      EXECUTE format('SELECT count(*) FROM %I.drop_chunks(%L::regclass, older_than => $1)', v_schema,
                     'reelscore.metric_timeseries') USING v_cutoff;
    END IF;
  END IF;
  DELETE FROM reelscore.metric_timeseries t WHERE t.time < v_cutoff;   -- the rest of a partial chunk
  GET DIAGNOSTICS v_n = ROW_COUNT;
  UPDATE reelscore.ts_settings s SET raw_retained_from = greatest(s.raw_retained_from, v_cutoff);
  RETURN v_n;
END
$$;
COMMENT ON FUNCTION reelscore.apply_retention(interval) IS
  'Drop raw metric_timeseries points older than p_older_than (default ts_settings.raw_retention), never past the last rollup refresh; whole chunks go with drop_chunks on TimescaleDB. Rollups are kept. Returns the rows deleted row by row (chunks dropped whole are not counted).';

-- ---------------------------------------------------------------------------------------
-- Daily series for analysis: from the daily rollup, or (for comparison) from raw points.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.daily_series(p_metric_id smallint, p_from timestamptz,
                                                  p_from_raw boolean DEFAULT false)
RETURNS TABLE (movie_id bigint, day timestamptz, value double precision)
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT r.movie_id, r.bucket, r.sum_value / r.n
  FROM reelscore.ts_rollup_daily r
  WHERE NOT p_from_raw AND r.metric_id = p_metric_id AND r.bucket >= p_from
  UNION ALL
  SELECT t.movie_id, reelscore.ts_bucket('1 day', t.time), avg(t.value)
  FROM reelscore.metric_timeseries t
  WHERE p_from_raw AND t.metric_id = p_metric_id AND t.time >= p_from
  GROUP BY 1, 2
$$;
COMMENT ON FUNCTION reelscore.daily_series(smallint, timestamptz, boolean) IS
  'Daily mean of one metric per movie since p_from: from the daily rollup, or recomputed from raw points.';

-- ---------------------------------------------------------------------------------------
-- Trend detection.
-- ---------------------------------------------------------------------------------------
-- Which movies' metric rises fastest over the window. The series is each movie's daily
-- mean, normalized with the metric's normalization (so slopes compare across movies: for
-- logarithmic metrics it is relative growth). Stage 1 ranks every movie by least-squares
-- slope and keeps p_candidates: read from ts_trend_candidates when refresh_rollups stored
-- this window today, else one aggregate pass over the window; stage 2 computes on those the robust
-- Theil-Sen slope (median of pairwise slopes) and the Mann-Kendall test (S, Kendall's tau,
-- z with the no-ties variance n(n-1)(2n+5)/18 and continuity correction, two-sided p), and
-- returns the k steepest rising movies by Theil-Sen slope.
CREATE OR REPLACE FUNCTION reelscore.trending(metric_code text, since interval, k integer,
                                              p_from_raw boolean DEFAULT false,
                                              p_candidates integer DEFAULT NULL,
                                              p_min_days integer DEFAULT 5)
RETURNS TABLE (movie_id bigint, title text, slope_per_day double precision,
               raw_slope_per_day double precision, kendall_tau double precision, z double precision,
               p_value double precision, days integer, first_value double precision,
               last_value double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET jit = off
AS $$
DECLARE
  v_m reelscore.metric_norm_params%ROWTYPE;
  v_from timestamptz;
  v_cand integer;
  v_s reelscore.ts_settings%ROWTYPE;
  v_stored boolean;
BEGIN
  SELECT * INTO v_s FROM reelscore.ts_settings;
  SELECT * INTO v_m FROM reelscore.metric_norm_params p WHERE p.metric_code = trending.metric_code;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown metric %', coalesce(quote_literal(trending.metric_code), 'NULL')
      USING ERRCODE = 'invalid_parameter_value', HINT = 'See reelscore.metric_definitions for codes.';
  END IF;
  IF since IS NULL OR since < interval '2 days' OR since > interval '3660 days' THEN
    RAISE EXCEPTION 'since must be between 2 days and 10 years, got %', coalesce(since::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF k IS NULL OR k < 1 OR k > 10000 THEN
    RAISE EXCEPTION 'k must be between 1 and 10000, got %', coalesce(k::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  v_from := reelscore.ts_bucket('1 day', now() - since);
  v_cand := coalesce(p_candidates, greatest(20 * k, 200));

  -- Stage 1 precomputed by refresh_rollups for this window today? Then read it.
  v_stored := NOT p_from_raw AND extract(epoch FROM since) / 86400.0 = ANY (v_s.trend_windows)
    AND EXISTS (SELECT 1 FROM reelscore.ts_trend_candidates c
                WHERE c.metric_id = v_m.metric_id AND c.window_days = extract(epoch FROM since) / 86400
                  AND c.window_from = v_from)
    AND v_cand <= v_s.trend_candidates;

  RETURN QUERY
  WITH stored AS (
    SELECT c.movie_id FROM reelscore.ts_trend_candidates c
    WHERE v_stored AND c.metric_id = v_m.metric_id AND c.window_days = extract(epoch FROM since) / 86400
      AND c.days >= greatest(p_min_days, 3)
    ORDER BY c.ols_slope DESC, c.movie_id
    LIMIT v_cand
  ), live AS (
    SELECT s.movie_id
    FROM (SELECT d.movie_id, extract(epoch FROM d.day - v_from) / 86400.0 AS x,
                 reelscore.normalize_with(v_m.normalization_type, v_m.args, d.value) AS y
          FROM reelscore.daily_series(v_m.metric_id, v_from, p_from_raw) d
          WHERE NOT v_stored) s
    GROUP BY s.movie_id
    HAVING count(*) >= greatest(p_min_days, 3) AND regr_slope(s.y, s.x) > 0
    ORDER BY regr_slope(s.y, s.x) DESC, s.movie_id
    LIMIT v_cand
  ), candidates AS (
    SELECT * FROM stored UNION ALL SELECT * FROM live
  ), pts AS (
    SELECT c.movie_id, extract(epoch FROM d.day - v_from) / 86400.0 AS x, d.value AS raw,
           reelscore.normalize_with(v_m.normalization_type, v_m.args, d.value) AS y
    FROM candidates c
    CROSS JOIN LATERAL (
      SELECT r.bucket AS day, r.sum_value / r.n AS value FROM reelscore.ts_rollup_daily r
      WHERE NOT p_from_raw AND r.metric_id = v_m.metric_id AND r.movie_id = c.movie_id AND r.bucket >= v_from
      UNION ALL
      SELECT reelscore.ts_bucket('1 day', t.time), avg(t.value) FROM reelscore.metric_timeseries t
      WHERE p_from_raw AND t.movie_id = c.movie_id AND t.metric_id = v_m.metric_id AND t.time >= v_from
      GROUP BY 1
    ) d
  ), pairs AS (
    SELECT a.movie_id, (b.y - a.y) / (b.x - a.x) AS slope, (b.raw - a.raw) / (b.x - a.x) AS raw_slope,
           sign(b.y - a.y) AS sgn
    FROM pts a JOIN pts b ON b.movie_id = a.movie_id AND b.x > a.x
  ), per_movie AS (
    SELECT p.movie_id,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY p.slope) AS ts_slope,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY p.raw_slope) AS ts_raw_slope,
           sum(p.sgn) AS s_stat, count(*) AS n_pairs
    FROM pairs p GROUP BY p.movie_id
  ), ends AS (
    SELECT p.movie_id, count(*)::integer AS n,
           (array_agg(p.raw ORDER BY p.x))[1] AS first_raw,
           (array_agg(p.raw ORDER BY p.x DESC))[1] AS last_raw
    FROM pts p GROUP BY p.movie_id
  )
  SELECT pm.movie_id, mv.title, pm.ts_slope, pm.ts_raw_slope,
         pm.s_stat / pm.n_pairs,
         x.z, reelscore.normal_two_sided_p(x.z),
         e.n, e.first_raw, e.last_raw
  FROM per_movie pm
  JOIN ends e ON e.movie_id = pm.movie_id
  JOIN reelscore.movies mv ON mv.id = pm.movie_id
  CROSS JOIN LATERAL (
    SELECT CASE WHEN pm.s_stat = 0 THEN 0.0::float8
                ELSE (pm.s_stat - sign(pm.s_stat)) / sqrt(e.n * (e.n - 1) * (2 * e.n + 5) / 18.0) END AS z
  ) x
  WHERE pm.ts_slope > 0
  ORDER BY pm.ts_slope DESC, pm.movie_id
  LIMIT k;
END
$$;
COMMENT ON FUNCTION reelscore.trending(text, interval, integer, boolean, integer, integer) IS
  'The k movies whose metric rises fastest over the last `since`: Theil-Sen slope per day of the normalized daily mean (and of the raw value), Kendall''s tau, the Mann-Kendall z and its two-sided p-value. Reads the daily rollup (p_from_raw: the raw points, for comparison). Candidates come from a least-squares pre-ranking (p_candidates, default max(20k, 200)), stored by refresh_rollups for the ts_settings.trend_windows (days) and computed live otherwise.';

-- Sudden spikes: days in the recent window whose daily mean stands p_z standard deviations
-- above the movie's own daily means over the p_history before the window.
CREATE OR REPLACE FUNCTION reelscore.spikes(metric_code text, since interval DEFAULT '1 day',
                                            p_z double precision DEFAULT 4,
                                            p_history interval DEFAULT '30 days',
                                            p_limit integer DEFAULT 100)
RETURNS TABLE (movie_id bigint, title text, day timestamptz, value double precision,
               baseline_mean double precision, baseline_sd double precision, z double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET jit = off
AS $$
DECLARE
  v_id smallint;
  v_from timestamptz;
BEGIN
  SELECT d.id INTO v_id FROM reelscore.metric_definitions d WHERE d.code = spikes.metric_code;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown metric %', coalesce(quote_literal(spikes.metric_code), 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF since IS NULL OR since < interval '1 day' OR p_history IS NULL OR p_history < interval '3 days'
     OR p_z IS NULL OR p_z <= 0 OR p_limit IS NULL OR p_limit < 1 THEN
    RAISE EXCEPTION 'bad spike parameters: since %, history %, z %, limit %', since, p_history, p_z, p_limit
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'since >= 1 day, p_history >= 3 days, p_z > 0, p_limit >= 1.';
  END IF;
  v_from := reelscore.ts_bucket('1 day', now() - since);
  RETURN QUERY
  WITH base AS (
    SELECT r.movie_id, avg(r.sum_value / r.n) AS mu, stddev_samp(r.sum_value / r.n) AS sd
    FROM reelscore.ts_rollup_daily r
    WHERE r.metric_id = v_id AND r.bucket >= v_from - p_history AND r.bucket < v_from
    GROUP BY r.movie_id
    HAVING count(*) >= 3
  )
  SELECT r.movie_id, mv.title, r.bucket, r.sum_value / r.n, b.mu, b.sd, (r.sum_value / r.n - b.mu) / b.sd
  FROM reelscore.ts_rollup_daily r
  JOIN base b ON b.movie_id = r.movie_id
  JOIN reelscore.movies mv ON mv.id = r.movie_id
  WHERE r.metric_id = v_id AND r.bucket >= v_from AND b.sd > 0
    AND (r.sum_value / r.n - b.mu) / b.sd >= p_z
  ORDER BY 7 DESC, 1, 3
  LIMIT p_limit;
END
$$;
COMMENT ON FUNCTION reelscore.spikes(text, interval, float8, interval, integer) IS
  'Days in the last `since` whose daily mean is at least p_z standard deviations above the movie''s own daily means over the p_history before (z-score against its own history), highest first.';

-- Seasonal pattern by genre: for each genre and calendar month, the mean of each movie's
-- daily value divided by that movie's mean over the period (1 = no seasonal effect).
CREATE OR REPLACE FUNCTION reelscore.seasonal_by_genre(metric_code text, since interval DEFAULT '1 year')
RETURNS TABLE (genre text, month integer, movies bigint, seasonal_index double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET jit = off
AS $$
DECLARE
  v_id smallint;
BEGIN
  SELECT d.id INTO v_id FROM reelscore.metric_definitions d WHERE d.code = seasonal_by_genre.metric_code;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown metric %', coalesce(quote_literal(seasonal_by_genre.metric_code), 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  RETURN QUERY
  WITH d AS (
    SELECT r.movie_id, r.bucket, r.sum_value / r.n AS y
    FROM reelscore.ts_rollup_daily r
    WHERE r.metric_id = v_id AND r.bucket >= now() - since
  ), mm AS (
    SELECT d.movie_id, avg(d.y) AS mu FROM d GROUP BY d.movie_id HAVING avg(d.y) > 0
  ), per_movie_month AS (
    SELECT d.movie_id, extract(month FROM d.bucket AT TIME ZONE 'UTC')::integer AS month, avg(d.y / mm.mu) AS idx
    FROM d JOIN mm ON mm.movie_id = d.movie_id
    GROUP BY 1, 2
  )
  SELECT g.genre, p.month, count(*), avg(p.idx)
  FROM per_movie_month p
  JOIN reelscore.movies mv ON mv.id = p.movie_id
  CROSS JOIN LATERAL unnest(mv.genres) AS g(genre)
  GROUP BY g.genre, p.month
  ORDER BY g.genre, p.month;
END
$$;
COMMENT ON FUNCTION reelscore.seasonal_by_genre(text, interval) IS
  'Seasonal index per genre and calendar month over the daily rollup: mean of movie-month means of value / the movie''s mean (1 = no seasonality; e.g. horror above 1 in October).';
