-- 500-coverage: coverage snapshots (refresh_coverage), coverage by category/source/overall,
-- heatmap by release decade, 7-day trends, alerts (threshold and freshness), gap analysis.
--
-- refresh_coverage() only reads the data tables (ACCESS SHARE, like any SELECT) and appends
-- snapshot rows, so it never blocks readers or writers of movies / metric_values. Every
-- view below reads the latest snapshot: cheap to read at any rate.

-- ---------------------------------------------------------------------------------------
-- The refresh.
-- ---------------------------------------------------------------------------------------
-- jit off: compiling these queries costs more than it saves.
CREATE OR REPLACE FUNCTION reelscore.refresh_coverage() RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET jit = off
AS $$
DECLARE
  v_t0        timestamptz := clock_timestamp();
  v_snapshot  bigint;
  v_total     integer;
  v_slots     smallint[];
  v_ids       smallint[];
  v_groups    text[] := '{}';     -- 'category:rating', 'source:tmdb', ...
  v_masks     bigint[] := '{}';   -- slot bit masks of those groups
  v_all_mask  bigint;
  v_bits      bigint[];           -- slot bit of each active metric, indexed by metric id
  v_bit_expr  text;
  v_cutoffs   timestamptz[];      -- freshness cutoff of each metric, indexed by metric id
  v_metric_aggs text;
  v_group_aggs  text;
  v_sql       text;
  v_rec       record;
  v_sort      text := current_setting('enable_sort');
  v_hashjoin  text := current_setting('enable_hashjoin');
BEGIN
  -- One refresh at a time; a second caller returns NULL at once instead of queueing.
  IF NOT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('reelscore.refresh_coverage')) THEN
    RAISE NOTICE 'refresh_coverage: another refresh is running; skipped';
    RETURN NULL;
  END IF;

  -- Each active metric gets one bit of a per-movie mask: bit (slot - 1) of the 32-d layout.
  SELECT array_agg(d.slot ORDER BY d.slot), array_agg(d.id ORDER BY d.slot),
         coalesce(bit_or(1::bigint << (d.slot - 1)), 0)
    INTO v_slots, v_ids, v_all_mask
  FROM reelscore.metric_definitions d WHERE d.active;
  -- The bit of each metric, indexed by metric id: the per-movie pass needs no join, so it
  -- streams from an index-only scan of the primary key (movie_id, metric_id).
  SELECT array_agg(b.bit ORDER BY b.i) INTO v_bits
  FROM (SELECT i, (SELECT 1::bigint << (d.slot - 1) FROM reelscore.metric_definitions d
                   WHERE d.id = i AND d.active) AS bit
        FROM generate_series(1, (SELECT coalesce(max(d.id), 0) FROM reelscore.metric_definitions d)) i) b;
  -- When every metric id is its slot (the seeded registry) the lookup is a plain shift.
  v_bit_expr := CASE
    WHEN NOT EXISTS (SELECT 1 FROM reelscore.metric_definitions d WHERE d.id <> d.slot)
      THEN '1::bigint << (v.metric_id - 1)'
    ELSE format('(%L::bigint[])[v.metric_id]', v_bits) END;

  FOR v_rec IN
    SELECT 'category' AS dim, d.category::text AS name, bit_or(1::bigint << (d.slot - 1)) AS mask
    FROM reelscore.metric_definitions d WHERE d.active GROUP BY d.category
    UNION ALL
    SELECT 'source', d.source::text, bit_or(1::bigint << (d.slot - 1))
    FROM reelscore.metric_definitions d WHERE d.active GROUP BY d.source
    ORDER BY 1, 2
  LOOP
    v_groups := v_groups || (v_rec.dim || ':' || v_rec.name);
    v_masks := v_masks || v_rec.mask;
  END LOOP;

  SELECT count(*) INTO v_total FROM reelscore.movies;

  INSERT INTO reelscore.coverage_snapshots (taken_at, total_movies, movies_with_data, value_count)
  VALUES (v_t0, v_total, 0, 0) RETURNING id INTO v_snapshot;

  -- Pass 1, per metric, one index-only scan of metric_values (metric_id, raw_value)
  -- INCLUDE (observed_at): count and value statistics (the input is already in the order
  -- the median needs) and freshness against each metric's cutoff (indexed by metric id).
  SELECT array_agg(x.cutoff ORDER BY x.i) INTO v_cutoffs
  FROM (SELECT i, coalesce((SELECT v_t0 - d.freshness_days * interval '1 day'
                            FROM reelscore.metric_definitions d WHERE d.id = i), '-infinity') AS cutoff
        FROM generate_series(1, (SELECT coalesce(max(d.id), 0) FROM reelscore.metric_definitions d)) i) x;

  INSERT INTO reelscore.metric_coverage_stats
    (snapshot_id, metric_id, metric_code, total_movies, movies_with_data, coverage_percentage,
     avg_value, min_value, max_value, median_value, stale_movies, oldest_observed_at,
     newest_observed_at, last_calculated)
  SELECT v_snapshot, d.id, d.code, v_total, coalesce(s.n, 0),
         CASE WHEN v_total > 0 THEN 100.0::float8 * coalesce(s.n, 0) / v_total ELSE 0 END,
         s.avg_value, s.min_value, s.max_value, s.median_value, coalesce(s.stale, 0),
         s.oldest, s.newest, v_t0
  FROM reelscore.metric_definitions d
  LEFT JOIN (
    SELECT v.metric_id, count(*) AS n, avg(v.raw_value) AS avg_value, min(v.raw_value) AS min_value,
           max(v.raw_value) AS max_value,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY v.raw_value) AS median_value,
           count(*) FILTER (WHERE v.observed_at < v_cutoffs[v.metric_id]) AS stale,
           min(v.observed_at) AS oldest, max(v.observed_at) AS newest
    FROM reelscore.metric_values v
    GROUP BY v.metric_id
  ) s ON s.metric_id = d.id
  WHERE d.active;

  -- Pass 2, per movie: a bit mask of the metrics it has, by release decade. From it, the
  -- heatmap (per metric and decade) and the group coverage (category, source, overall).
  SELECT string_agg(format('coalesce(sum(dm.n) FILTER (WHERE dm.mask & %s <> 0), 0)', 1::bigint << (s - 1)), ', ' ORDER BY s)
    INTO v_metric_aggs FROM unnest(v_slots) s;
  SELECT string_agg(format('coalesce(sum(dm.n) FILTER (WHERE dm.mask & %s <> 0), 0)', m), ', ' ORDER BY i)
    INTO v_group_aggs FROM unnest(v_masks) WITH ORDINALITY AS g(m, i);

  v_sql := format($q$
    INSERT INTO pg_temp.coverage_per_decade
    WITH pm AS (
      SELECT v.movie_id, bit_or(%s) AS mask
      FROM reelscore.metric_values v
      %s
      GROUP BY v.movie_id
    ), dm AS (
      -- First collapse movies to (decade, mask) pairs: far fewer rows for the filters below.
      SELECT (m.release_year / 10) * 10 AS decade, pm.mask, count(*) AS n
      FROM reelscore.movies m
      LEFT JOIN pm ON pm.movie_id = m.id
      GROUP BY 1, 2
    ), per_decade AS (
      SELECT dm.decade, sum(dm.n) AS total,
             coalesce(sum(dm.n) FILTER (WHERE dm.mask IS NOT NULL), 0) AS with_any,
             ARRAY[%s]::bigint[] AS metric_counts,
             ARRAY[%s]::bigint[] AS group_counts
      FROM dm
      GROUP BY 1
    )
    SELECT decade, total, with_any, metric_counts, group_counts FROM per_decade
  $q$, v_bit_expr,
      -- inactive metrics (plain-shift path) must not count
      CASE WHEN v_bit_expr LIKE '1::bigint%' AND EXISTS (SELECT 1 FROM reelscore.metric_definitions d WHERE NOT d.active)
           THEN format('WHERE v.metric_id = ANY (%L::smallint[])', v_ids) ELSE '' END,
      coalesce(v_metric_aggs, ''), coalesce(v_group_aggs, ''));

  CREATE TEMP TABLE IF NOT EXISTS pg_temp.coverage_per_decade (
    decade integer, total bigint, with_any bigint, metric_counts bigint[], group_counts bigint[]
  ) ON COMMIT DROP;
  TRUNCATE pg_temp.coverage_per_decade;
  -- Grouping 1M movies by hashing spills: the per-movie masks stream from the primary key's
  -- order (a group aggregate, merge-joined to movies), so sorts are off. The (decade, mask)
  -- pairs, a few thousand, are then hashed: with hash aggregation off as well (as before),
  -- the 1M joined rows were sorted on disk for them, 1.1-1.3 s of a 4.7-6 s pass at 1M movies.
  PERFORM set_config('enable_sort', 'off', true);
  PERFORM set_config('enable_hashjoin', 'off', true);
  EXECUTE v_sql;
  PERFORM set_config('enable_sort', v_sort, true);
  PERFORM set_config('enable_hashjoin', v_hashjoin, true);

  INSERT INTO reelscore.coverage_heatmap
    (snapshot_id, dimension, bucket, bucket_order, metric_id, total_movies, movies_with_data)
  SELECT v_snapshot, 'decade', coalesce(p.decade || 's', 'unknown'), coalesce(p.decade, 999999),
         v_ids[k.i], p.total, coalesce(p.metric_counts[k.i], 0)
  FROM pg_temp.coverage_per_decade p
  CROSS JOIN generate_subscripts(v_ids, 1) AS k(i);

  INSERT INTO reelscore.coverage_group_stats
    (snapshot_id, dimension, group_name, metric_count, total_movies, movies_with_data, coverage_percentage)
  SELECT v_snapshot, split_part(v_groups[g.i], ':', 1), split_part(v_groups[g.i], ':', 2),
         (SELECT count(*) FROM unnest(v_slots) s WHERE v_masks[g.i] & (1::bigint << (s - 1)) <> 0),
         v_total, x.n, CASE WHEN v_total > 0 THEN 100.0::float8 * x.n / v_total ELSE 0 END
  FROM generate_subscripts(v_groups, 1) AS g(i)
  CROSS JOIN LATERAL (SELECT coalesce(sum(p.group_counts[g.i]), 0)::integer AS n
                      FROM pg_temp.coverage_per_decade p) x
  UNION ALL
  SELECT v_snapshot, 'overall', 'all', coalesce(cardinality(v_slots), 0), v_total, x.n,
         CASE WHEN v_total > 0 THEN 100.0::float8 * x.n / v_total ELSE 0 END
  FROM (SELECT coalesce(sum(p.with_any), 0)::integer AS n FROM pg_temp.coverage_per_decade p) x;

  UPDATE reelscore.coverage_snapshots s
  SET movies_with_data = (SELECT g.movies_with_data FROM reelscore.coverage_group_stats g
                          WHERE g.snapshot_id = v_snapshot AND g.dimension = 'overall'),
      value_count = (SELECT coalesce(sum(c.movies_with_data), 0) FROM reelscore.metric_coverage_stats c
                     WHERE c.snapshot_id = v_snapshot),
      duration_ms = extract(epoch FROM clock_timestamp() - v_t0) * 1000
  WHERE s.id = v_snapshot;

  PERFORM reelscore.prune_coverage_history(v_t0);
  RETURN v_snapshot;
END
$$;
COMMENT ON FUNCTION reelscore.refresh_coverage() IS
  'Take a coverage snapshot: per metric (the seed''s metric_coverage_stats: total movies, movies with data, coverage percentage, average, minimum, maximum and median raw value, stale values), per category, source and overall, and the heatmap by release decade. Never blocks readers or writers; a concurrent second call returns NULL. Returns the snapshot id.';

-- History is kept, thinned as it ages: every snapshot of the last day, then the last one
-- of each hour for 30 days, then the last one of each day. Heatmaps are kept for the
-- newest 10 snapshots only (the panel shows the latest).
CREATE OR REPLACE FUNCTION reelscore.prune_coverage_history(p_now timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_n integer;
BEGIN
  DELETE FROM reelscore.coverage_snapshots s
  USING (SELECT c.id, row_number() OVER (
                  PARTITION BY date_trunc(CASE WHEN c.taken_at < p_now - interval '30 days' THEN 'day'
                                               ELSE 'hour' END, c.taken_at)
                  ORDER BY c.taken_at DESC) AS rn
         FROM reelscore.coverage_snapshots c
         WHERE c.taken_at < p_now - interval '1 day') x
  WHERE s.id = x.id AND x.rn > 1;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  DELETE FROM reelscore.coverage_heatmap h
  WHERE h.snapshot_id < (SELECT min(t.id) FROM (SELECT c.id FROM reelscore.coverage_snapshots c
                                                ORDER BY c.id DESC LIMIT 10) t);
  RETURN v_n;
END
$$;
COMMENT ON FUNCTION reelscore.prune_coverage_history(timestamptz) IS
  'Thin the coverage history: all snapshots of the last day, the last of each hour up to 30 days, the last of each day beyond; heatmaps for the newest 10 snapshots. Returns the number of snapshots removed.';

-- ---------------------------------------------------------------------------------------
-- Reading the latest snapshot.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE VIEW reelscore.coverage_latest AS
SELECT s.id AS snapshot_id, s.taken_at, s.total_movies, s.movies_with_data,
       CASE WHEN s.total_movies > 0 THEN 100.0::float8 * s.movies_with_data / s.total_movies ELSE 0 END
         AS coverage_percentage,
       s.value_count, s.duration_ms,
       (SELECT count(*) FROM reelscore.metric_coverage_stats c
        WHERE c.snapshot_id = s.id AND c.movies_with_data > 0) AS metrics_with_data,
       (SELECT count(DISTINCT d.source) FROM reelscore.metric_coverage_stats c
        JOIN reelscore.metric_definitions d ON d.id = c.metric_id
        WHERE c.snapshot_id = s.id AND c.movies_with_data > 0) AS active_sources
FROM reelscore.coverage_snapshots s
ORDER BY s.id DESC
LIMIT 1;
COMMENT ON VIEW reelscore.coverage_latest IS
  'The latest coverage snapshot: overall coverage (movies with any active metric), values, metrics and sources with data.';

CREATE OR REPLACE VIEW reelscore.metric_coverage AS
SELECT d.id AS metric_id, d.code AS metric_code, d.name, d.category, d.source, d.source_reliability,
       d.coverage_threshold, d.freshness_days, d.active,
       c.total_movies, c.movies_with_data, c.coverage_percentage,
       c.movies_with_data::float8 / nullif(c.total_movies, 0) < d.coverage_threshold AS below_threshold,
       c.avg_value, c.min_value, c.max_value, c.median_value,
       c.stale_movies, c.oldest_observed_at, c.newest_observed_at, c.last_calculated, c.snapshot_id
FROM reelscore.metric_definitions d
LEFT JOIN reelscore.metric_coverage_stats c
  ON c.metric_id = d.id AND c.snapshot_id = (SELECT max(s.id) FROM reelscore.coverage_snapshots s)
ORDER BY d.slot;
COMMENT ON VIEW reelscore.metric_coverage IS
  'Per metric, the latest snapshot''s coverage and value statistics beside its reliability, threshold and freshness.';

CREATE OR REPLACE VIEW reelscore.coverage_by_category AS
SELECT g.group_name AS category, g.metric_count, g.total_movies, g.movies_with_data, g.coverage_percentage,
       r.avg_reliability, g.snapshot_id, s.taken_at
FROM reelscore.coverage_group_stats g
JOIN reelscore.coverage_snapshots s ON s.id = g.snapshot_id
LEFT JOIN (SELECT d.category::text AS name, avg(d.source_reliability) AS avg_reliability
           FROM reelscore.metric_definitions d WHERE d.active GROUP BY d.category) r ON r.name = g.group_name
WHERE g.dimension = 'category' AND g.snapshot_id = (SELECT max(s2.id) FROM reelscore.coverage_snapshots s2)
ORDER BY g.group_name;
COMMENT ON VIEW reelscore.coverage_by_category IS
  'Latest coverage per category: movies with at least one active metric of the category.';

CREATE OR REPLACE VIEW reelscore.coverage_by_source AS
SELECT g.group_name AS source, g.metric_count, g.total_movies, g.movies_with_data, g.coverage_percentage,
       r.source_reliability, r.min_reliability, r.max_reliability, r.metric_codes, g.snapshot_id, s.taken_at
FROM reelscore.coverage_group_stats g
JOIN reelscore.coverage_snapshots s ON s.id = g.snapshot_id
LEFT JOIN (SELECT d.source::text AS name, avg(d.source_reliability) AS source_reliability,
                  min(d.source_reliability) AS min_reliability, max(d.source_reliability) AS max_reliability,
                  array_agg(d.code::text ORDER BY d.slot) AS metric_codes
           FROM reelscore.metric_definitions d WHERE d.active GROUP BY d.source) r ON r.name = g.group_name
WHERE g.dimension = 'source' AND g.snapshot_id = (SELECT max(s2.id) FROM reelscore.coverage_snapshots s2)
ORDER BY g.group_name;
COMMENT ON VIEW reelscore.coverage_by_source IS
  'Latest coverage per source beside the source''s reliability (mean of its metrics'' source_reliability; min and max when they differ).';

CREATE OR REPLACE VIEW reelscore.coverage_heatmap_latest AS
SELECT h.dimension, h.bucket, h.bucket_order, d.code AS metric_code, d.category, d.slot,
       h.total_movies, h.movies_with_data,
       CASE WHEN h.total_movies > 0 THEN 100.0::float8 * h.movies_with_data / h.total_movies ELSE 0 END
         AS coverage_percentage,
       h.snapshot_id
FROM reelscore.coverage_heatmap h
JOIN reelscore.metric_definitions d ON d.id = h.metric_id
WHERE h.snapshot_id = (SELECT max(h2.snapshot_id) FROM reelscore.coverage_heatmap h2)
ORDER BY h.bucket_order, d.slot;
COMMENT ON VIEW reelscore.coverage_heatmap_latest IS
  'Heatmap data set: coverage of each metric by release decade (bucket ''unknown'' for movies without a release date), latest snapshot.';

-- ---------------------------------------------------------------------------------------
-- Trends from the snapshot history.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.coverage_trend(p_days integer DEFAULT 7)
RETURNS TABLE (metric_code text, category text, source text, current_percentage double precision,
               start_percentage double precision, change double precision,
               days date[], daily_percentage double precision[], snapshots bigint)
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  WITH hist AS (
    SELECT c.metric_id, c.last_calculated, c.coverage_percentage,
           row_number() OVER (PARTITION BY c.metric_id, c.last_calculated::date
                              ORDER BY c.last_calculated DESC) AS rn_day
    FROM reelscore.metric_coverage_stats c
    WHERE c.last_calculated >= (SELECT max(s.taken_at) FROM reelscore.coverage_snapshots s)
                               - make_interval(days => p_days)
  )
  SELECT d.code::text, d.category::text, d.source::text,
         (array_agg(h.coverage_percentage ORDER BY h.last_calculated DESC))[1],
         (array_agg(h.coverage_percentage ORDER BY h.last_calculated))[1],
         (array_agg(h.coverage_percentage ORDER BY h.last_calculated DESC))[1]
           - (array_agg(h.coverage_percentage ORDER BY h.last_calculated))[1],
         array_agg(h.last_calculated::date ORDER BY h.last_calculated) FILTER (WHERE h.rn_day = 1),
         array_agg(h.coverage_percentage ORDER BY h.last_calculated) FILTER (WHERE h.rn_day = 1),
         count(*)
  FROM hist h
  JOIN reelscore.metric_definitions d ON d.id = h.metric_id
  GROUP BY d.code, d.category, d.source, d.slot
  ORDER BY d.slot
$$;
COMMENT ON FUNCTION reelscore.coverage_trend(integer) IS
  'Per metric over the last p_days days of snapshots: current and starting coverage percentage, the change, and one point per day (the day''s last snapshot) for sparklines.';

CREATE OR REPLACE VIEW reelscore.coverage_trend_7d AS
SELECT * FROM reelscore.coverage_trend(7);
COMMENT ON VIEW reelscore.coverage_trend_7d IS
  '7-day coverage trend per metric (reelscore.coverage_trend(7)).';

CREATE OR REPLACE FUNCTION reelscore.coverage_history(p_metric_code text, p_since interval DEFAULT '7 days')
RETURNS TABLE (last_calculated timestamptz, movies_with_data integer, total_movies integer,
               coverage_percentage double precision, stale_movies integer)
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT c.last_calculated, c.movies_with_data, c.total_movies, c.coverage_percentage, c.stale_movies
  FROM reelscore.metric_coverage_stats c
  JOIN reelscore.metric_definitions d ON d.id = c.metric_id
  WHERE d.code = p_metric_code AND c.last_calculated >= now() - p_since
  ORDER BY c.last_calculated
$$;
COMMENT ON FUNCTION reelscore.coverage_history(text, interval) IS
  'Every kept snapshot of one metric''s coverage since now() - p_since, oldest first.';

-- ---------------------------------------------------------------------------------------
-- Alerts: what an admin or a monitoring system reads.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE VIEW reelscore.coverage_alerts AS
SELECT m.metric_code::text, m.category::text, m.source::text, 'low_coverage'::text AS kind,
       CASE WHEN m.movies_with_data = 0 THEN 'critical' ELSE 'warning' END AS severity,
       m.movies_with_data::float8 / nullif(m.total_movies, 0) AS observed,
       m.coverage_threshold AS threshold, m.movies_with_data::bigint AS affected_movies,
       format('%s covers %s%% of movies, under its threshold of %s%%', m.metric_code,
              round(m.coverage_percentage::numeric, 2), round((100 * m.coverage_threshold)::numeric, 2)) AS message,
       m.last_calculated AS as_of
FROM reelscore.metric_coverage m
WHERE m.active AND m.total_movies > 0 AND m.below_threshold
UNION ALL
SELECT m.metric_code::text, m.category::text, m.source::text, 'stale',
       'warning',
       extract(epoch FROM m.last_calculated - m.oldest_observed_at) / 86400.0,
       m.freshness_days::float8, m.stale_movies::bigint,
       format('%s: %s values older than %s days (oldest observed %s)', m.metric_code, m.stale_movies,
              m.freshness_days, m.oldest_observed_at),
       m.last_calculated
FROM reelscore.metric_coverage m
WHERE m.active AND m.stale_movies > 0;
COMMENT ON VIEW reelscore.coverage_alerts IS
  'Alerts from the latest snapshot: low_coverage (movies with data / total under coverage_threshold; critical when none) and stale (values observed more than freshness_days before the snapshot; observed = age of the oldest value in days).';

-- ---------------------------------------------------------------------------------------
-- Gap analysis.
-- ---------------------------------------------------------------------------------------
-- The movies that lack every active metric of a scope (a metric, a category or a source),
-- ranked by what the gap costs: the movie's reach (the normalized value of a reach metric,
-- e.g. its vote count or popularity), so popular movies without the data come first.
-- Movies without the reach metric follow with cost 0, by id.
--
-- Two parts, each exact, each with a fast way for dense and for sparse gaps (docs/coverage.md):
-- A. Gaps with reach, by reach. Dense (many movies with reach lack the scope): walk the reach
--    metric's (metric_id, raw_value) index from the top, probing the scope per movie, and stop
--    at the page. Sparse (few or none): the walk would read most of the index for nothing, so
--    the candidates come from movie_features instead: the presence masks with the scope's bits
--    clear and the reach bit set (found by a skip scan, below), their movies (index-only), plus
--    every stale row; each is then checked against metric_values. The mask path is taken when
--    it yields at most about sqrt(page x catalogue) candidates. Past that, many gaps but maybe
--    all at low reach: the walk's first entries measure how often it meets a gap; when the rest
--    of the walk would cost more, the candidates are ranked by the normalized reach stored in
--    movie_features.nvec, and only those that can reach the page get the raw check.
-- B. Gaps without reach, by id, only when part A does not fill the page: walk movies by id,
--    probing scope and reach (fast while such gaps are not rare among all movies).
-- movie_features is only a source of candidates, never of the answer: every candidate is
-- checked against metric_values, and the mask path is used only when the features are
-- current (features_current(): no definition changed since the last rebuild), the reach
-- metric is active with its normalization arguments (else its bit says nothing), and at
-- most 10,000 rows are stale.
CREATE OR REPLACE FUNCTION reelscore.coverage_gaps(p_scope text, p_name text, p_rank_by text DEFAULT NULL,
                                                   p_limit integer DEFAULT 50, p_offset integer DEFAULT 0)
RETURNS TABLE (movie_id bigint, title text, release_year smallint, gap_cost double precision,
               rank_value double precision, ranked_by text)
LANGUAGE plpgsql STABLE SECURITY INVOKER
-- Serial on purpose: the walks stop at the page; a parallel plan would read everything.
SET max_parallel_workers_per_gather = 0
AS $$
DECLARE
  v_scope_ids  smallint[];
  v_scope_mask bigint;
  v_rank       reelscore.metric_norm_params%ROWTYPE;
  v_need       integer := p_limit + p_offset;
  v_masks      bigint[];
  v_stale      bigint[];
  v_cand       bigint[];
  v_cap        integer;
  v_a_ids      bigint[] := '{}';
  v_a_raw      float8[] := '{}';
  v_b_ids      bigint[] := '{}';
  v_jit        text := current_setting('jit');
  v_zero       bigint;
  v_one        bigint;
  v_lo         bigint := 0;
  v_mask       bigint;
  v_bad        bigint;
  v_shift      integer;
  v_bits       bit(32)[];
  v_many       boolean := false;   -- the masks yield more candidates than v_cap
  v_budget     integer;
  v_w_ids      bigint[];
  v_w_raw      float8[];
  v_w_gap      boolean[];
  v_g          integer;
  v_bound      bigint;
  v_n          bigint;
  v_k          integer;
  v_ranked     boolean := false;
  v_rec        record;
  v_nstar      float8;
  v_done       boolean := false;
  v_path       text := 'none';
BEGIN
  IF p_scope IS NULL OR p_scope NOT IN ('metric', 'category', 'source') THEN
    RAISE EXCEPTION 'unknown gap scope %', coalesce(quote_literal(p_scope), 'NULL')
      USING ERRCODE = 'invalid_parameter_value', HINT = 'Use ''metric'', ''category'' or ''source''.';
  END IF;
  IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 OR p_offset IS NULL OR p_offset < 0 THEN
    RAISE EXCEPTION 'p_limit must be 1..10000 and p_offset >= 0, got % and %', p_limit, p_offset
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT array_agg(d.id), bit_or(1::bigint << (32 - d.slot)) INTO v_scope_ids, v_scope_mask
  FROM reelscore.metric_definitions d
  WHERE d.active AND CASE p_scope WHEN 'metric' THEN d.code = p_name
                                  WHEN 'category' THEN d.category = p_name
                                  ELSE d.source = p_name END;
  IF v_scope_ids IS NULL THEN
    RAISE EXCEPTION 'no active metric in % %', p_scope, coalesce(quote_literal(p_name), 'NULL')
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'See reelscore.metric_definitions for codes, categories and sources.';
  END IF;

  IF p_rank_by IS NOT NULL THEN
    SELECT * INTO v_rank FROM reelscore.metric_norm_params p WHERE p.metric_code = p_rank_by;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'unknown metric % to rank gaps by', quote_literal(p_rank_by)
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
  ELSE
    -- Default reach metric: a popularity metric or a vote count outside the scope, the
    -- best covered one in the latest snapshot.
    SELECT p.* INTO v_rank
    FROM reelscore.metric_norm_params p
    LEFT JOIN reelscore.metric_coverage c ON c.metric_id = p.metric_id
    WHERE p.active AND p.metric_id <> ALL (v_scope_ids)
      AND (p.category = 'popularity' OR p.metric_code LIKE '%vote_count')
      AND p.data_type IN ('count', 'numeric')
    ORDER BY coalesce(c.movies_with_data, 0) DESC, p.slot
    LIMIT 1;
  END IF;

  -- The walks below cost thousands of times less than their estimates (they stop at the
  -- page): JIT would compile them for 100-200 ms. Restored before returning.
  PERFORM set_config('jit', 'off', true);

  -- A. Gaps with reach (none when there is no reach metric, or when it is in the scope).
  IF v_rank.metric_id IS NOT NULL AND v_rank.metric_id <> ALL (v_scope_ids) THEN
    IF reelscore.features_current() AND v_rank.active AND cardinality(v_rank.args) > 0 THEN
      v_stale := ARRAY(SELECT f.movie_id FROM reelscore.movie_features f WHERE f.stale LIMIT 10001);
      IF cardinality(v_stale) <= 10000 THEN
        -- The distinct masks (slot s = bit 32 - s, as bigint in [0, 2^32), which orders as
        -- bit(32) does) with the scope's bits clear and the reach bit set, by a skip scan of
        -- movie_features_present (present, movie_id): from the smallest mask not yet seen,
        -- find the next one in the index; if it breaks a condition, its leftmost broken bit
        -- rules out every mask sharing its prefix up to that bit, so the scan jumps past them
        -- (for a missing 1: straight to that prefix with the bit set). A dense scope has many
        -- masks: past 500 probes (about 5 ms) the walk below is used instead.
        v_zero := v_scope_mask;
        v_one := 1::bigint << (32 - v_rank.slot);
        v_masks := '{}';
        FOR v_step IN 1..501 LOOP
          EXIT WHEN v_lo > 4294967295;
          IF v_step > 500 THEN
            v_masks := NULL;
            EXIT;
          END IF;
          SELECT f.present::bigint INTO v_mask
          FROM reelscore.movie_features f
          WHERE f.present >= v_lo::bit(32)
          ORDER BY f.present
          LIMIT 1;
          EXIT WHEN NOT FOUND;
          v_bad := (v_mask & v_zero) | (~v_mask & v_one);
          IF v_bad = 0 THEN
            v_masks := v_masks || v_mask;
            v_lo := v_mask + 1;
          ELSE
            v_shift := 32 - position('1' IN v_bad::bit(32)::text);  -- bits right of the leftmost broken one
            v_lo := CASE WHEN v_mask & (1::bigint << v_shift) <> 0
                         THEN ((v_mask >> v_shift) + 1) << v_shift   -- a 1 where a 0 is needed
                         ELSE ((v_mask >> v_shift) | 1) << v_shift   -- a 0 where a 1 is needed
                    END;
          END IF;
        END LOOP;
      END IF;
      IF v_masks IS NOT NULL THEN
        v_bits := ARRAY(SELECT m::bit(32) FROM unnest(v_masks) m);
        v_cap := greatest(2000, ceil(sqrt(v_need::float8 * greatest(
                   (SELECT c.reltuples FROM pg_catalog.pg_class c
                    WHERE c.oid = 'reelscore.movie_features'::regclass), 1))))::integer;
        v_cand := ARRAY(SELECT f.movie_id FROM reelscore.movie_features f
                        WHERE f.present = ANY (v_bits)
                        LIMIT v_cap + 1);   -- index-only; stale rows among them are checked like the rest
        IF cardinality(v_cand) > v_cap THEN
          v_cand := NULL;
          v_many := true;
        ELSE
          v_cand := ARRAY(SELECT DISTINCT u.id FROM unnest(v_cand || v_stale) u(id));
          v_path := 'candidates';
        END IF;
      END IF;
    END IF;

    -- Many candidates. Either the gaps are frequent near the top of the reach index (the walk
    -- fills the page soon) or they sit at low reach (source tmdb at 1M movies: 34,404 gaps
    -- with reach, 17 of them among the top 20,000; the walk reads ~37,000 entries, 0.3 s).
    -- The first v_budget entries of the walk measure the gap rate; from it, the rest of the
    -- walk is estimated and compared with ranking the candidates by their normalized reach,
    -- read from movie_features.nvec (one bitmap heap scan and a sort: about 1.4 us per
    -- candidate at 1M movies; a walked entry costs about 7.5 us, a heap fetch and a probe;
    -- the bound below takes a ratio of 3, not 5, as the gap rate is measured on few gaps).
    -- This needs the stored normalized value to be non-decreasing in the raw value, so that
    -- it bounds the raw order: linear with max > min, logarithmic with a positive threshold
    -- (their arguments change only with the definition, and then features_current() is false;
    -- not percentile, whose stored distribution can change without it). Otherwise: the walk.
    IF v_many AND ((v_rank.normalization_type = 'linear' AND v_rank.args[2] > v_rank.args[1])
                   OR (v_rank.normalization_type = 'logarithmic' AND v_rank.args[1] > 0)) THEN
      v_budget := greatest(1000, 2 * v_need);
      SELECT array_agg(w.movie_id ORDER BY w.raw_value DESC, w.movie_id),
             array_agg(w.raw_value ORDER BY w.raw_value DESC, w.movie_id),
             array_agg(w.gap ORDER BY w.raw_value DESC, w.movie_id)
        INTO v_w_ids, v_w_raw, v_w_gap
      FROM (SELECT t.movie_id, t.raw_value,
                   NOT EXISTS (SELECT 1 FROM reelscore.metric_values x
                               WHERE x.movie_id = t.movie_id AND x.metric_id = ANY (v_scope_ids) OFFSET 0) AS gap
            FROM (SELECT r.movie_id, r.raw_value FROM reelscore.metric_values r
                  WHERE r.metric_id = v_rank.metric_id
                  ORDER BY r.raw_value DESC, r.movie_id
                  LIMIT v_budget) t) w;
      SELECT coalesce(array_agg(u.id ORDER BY u.ord), '{}'), coalesce(array_agg(u.raw ORDER BY u.ord), '{}')
        INTO v_a_ids, v_a_raw
      FROM unnest(v_w_ids, v_w_raw, v_w_gap) WITH ORDINALITY u(id, raw, gap, ord)
      WHERE u.gap;
      v_g := cardinality(v_a_ids);
      IF v_g >= v_need OR coalesce(cardinality(v_w_ids), 0) < v_budget THEN
        -- The page is full, or the whole reach index was read: every gap with reach is here.
        v_a_ids := v_a_ids[1:v_need];
        v_a_raw := v_a_raw[1:v_need];
        v_done := true;
        v_path := 'walk';
      ELSE
        -- Candidates are worth ranking while they cost less than the estimated rest of the
        -- walk: (v_need - v_g) more gaps at v_g per v_budget entries, 3 times a candidate's
        -- cost. Their number is estimated as the planner does, from the statistics of
        -- movie_features.present (frequent masks; the rest share what is left), within 10-30%
        -- at 1M movies, and counted exactly (index-only, ~0.7 us each) only without
        -- statistics or when the estimate is within a factor of 2 of the bound.
        v_bound := least(500000000, ceil(3.0 * (v_need - v_g) * v_budget / greatest(v_g, 0.5)))::bigint;
        SELECT greatest(c.reltuples, 0)
               * (coalesce((SELECT sum(st.freqs[k]) FROM generate_subscripts(st.vals, 1) k
                            WHERE st.vals[k] = ANY (v_bits)), 0)
                  + (SELECT count(*) FROM unnest(v_bits) b WHERE b <> ALL (st.vals))
                    * greatest(1 - st.null_frac - (SELECT sum(x) FROM unnest(st.freqs) x), 0)
                    / greatest(CASE WHEN st.n_distinct < 0 THEN -st.n_distinct * c.reltuples
                                    ELSE st.n_distinct END - cardinality(st.vals), 1))
          INTO v_n
        FROM pg_catalog.pg_class c
        CROSS JOIN (SELECT s.most_common_vals::text::bit(32)[] AS vals, s.most_common_freqs AS freqs,
                           s.null_frac, s.n_distinct
                    FROM pg_catalog.pg_stats s
                    WHERE s.schemaname = 'reelscore' AND s.tablename = 'movie_features'
                      AND s.attname = 'present' AND s.most_common_vals IS NOT NULL
                    OFFSET 0) st   -- converted once, not once per reference
        WHERE c.oid = 'reelscore.movie_features'::regclass;
        IF v_n IS NULL OR v_n BETWEEN v_bound / 2 AND v_bound * 2 THEN
          SELECT count(*) INTO v_n
          FROM (SELECT 1 FROM reelscore.movie_features f WHERE f.present = ANY (v_bits) LIMIT v_bound + 1) c;
        END IF;
        IF v_n <= v_bound THEN
          -- The candidates by normalized reach, highest first (slot s of nvec, as nvec . e_s:
          -- exact, and cheaper than a cast to real[]); stale rows are left to the raw check
          -- below. Read while the estimate holds (at most 4 x v_bound, else the walk goes on).
          -- Confirmed gaps are counted in that order: once v_need are (the v_need-th at
          -- normalized reach v_nstar), a candidate below v_nstar has v_need gaps of strictly
          -- higher raw reach ahead of it (the normalization is non-decreasing), so it is not on
          -- the page. The candidates down to v_nstar, ties included, go to the raw check.
          -- The probes run only for the rows fetched (the sort is below the projection).
          v_cand := '{}';
          v_k := 0;
          FOR v_rec IN EXECUTE format($q$
            SELECT c.id, c.n, c.total,
                   NOT EXISTS (SELECT 1 FROM reelscore.metric_values x
                               WHERE x.movie_id = c.id AND x.metric_id = ANY ($3) OFFSET 0)
                   AND EXISTS (SELECT 1 FROM reelscore.metric_values y
                               WHERE y.movie_id = c.id AND y.metric_id = $4 OFFSET 0) AS gap
            FROM (SELECT l.id, l.n, count(*) OVER () AS total
                  FROM (SELECT f.movie_id AS id, -(f.nvec OPERATOR(%1$I.<#>) $2::%1$I.vector) AS n
                        FROM reelscore.movie_features f
                        WHERE f.present = ANY ($1) AND NOT f.stale
                        LIMIT $5) l
                  ORDER BY l.n DESC
                  OFFSET 0) c
          $q$, reelscore.vector_schema())
            USING v_bits, (SELECT array_agg(CASE WHEN i = v_rank.slot THEN 1 ELSE 0 END::real ORDER BY i)
                           FROM generate_series(1, 32) i),
                  v_scope_ids, v_rank.metric_id, 4 * v_bound + 1
          LOOP
            IF v_rec.total > 4 * v_bound THEN
              v_cand := NULL;   -- far more than estimated: the walk goes on
              EXIT;
            END IF;
            EXIT WHEN v_k >= v_need AND v_rec.n < v_nstar;
            v_cand := v_cand || v_rec.id;
            IF v_rec.gap THEN
              v_k := v_k + 1;
              IF v_k = v_need THEN
                v_nstar := v_rec.n;
              END IF;
            END IF;
          END LOOP;
          v_ranked := v_cand IS NOT NULL;
        END IF;
        IF v_ranked THEN
          v_cand := ARRAY(SELECT DISTINCT u.id FROM unnest(v_cand || v_stale || v_a_ids) u(id));
          v_path := 'ranked candidates';
        ELSE
          -- The walk goes on from its last entry (order: raw value descending, then id).
          SELECT v_a_ids || coalesce(array_agg(a.movie_id ORDER BY a.raw_value DESC, a.movie_id), '{}'),
                 v_a_raw || coalesce(array_agg(a.raw_value ORDER BY a.raw_value DESC, a.movie_id), '{}')
            INTO v_a_ids, v_a_raw
          FROM (SELECT r.movie_id, r.raw_value
                FROM reelscore.metric_values r
                WHERE r.metric_id = v_rank.metric_id
                  AND r.raw_value <= v_w_raw[v_budget]
                  AND (r.raw_value < v_w_raw[v_budget] OR r.movie_id > v_w_ids[v_budget])
                  AND NOT EXISTS (SELECT 1 FROM reelscore.metric_values x
                                  WHERE x.movie_id = r.movie_id AND x.metric_id = ANY (v_scope_ids) OFFSET 0)
                ORDER BY r.raw_value DESC, r.movie_id
                LIMIT v_need - v_g) a;
          v_done := true;
          v_path := 'walk, resumed';
        END IF;
      END IF;
    END IF;

    IF v_done THEN
      NULL;
    ELSIF v_cand IS NOT NULL THEN
      SELECT coalesce(array_agg(a.movie_id ORDER BY a.raw_value DESC, a.movie_id), '{}'),
             coalesce(array_agg(a.raw_value ORDER BY a.raw_value DESC, a.movie_id), '{}')
        INTO v_a_ids, v_a_raw
      FROM (SELECT r.movie_id, r.raw_value
            FROM unnest(v_cand) c(id)
            JOIN reelscore.metric_values r ON r.movie_id = c.id AND r.metric_id = v_rank.metric_id
            WHERE NOT EXISTS (SELECT 1 FROM reelscore.metric_values x
                              WHERE x.movie_id = c.id AND x.metric_id = ANY (v_scope_ids))
            ORDER BY r.raw_value DESC, r.movie_id
            LIMIT v_need) a;
    ELSE
      v_path := 'walk';
      SELECT coalesce(array_agg(a.movie_id ORDER BY a.raw_value DESC, a.movie_id), '{}'),
             coalesce(array_agg(a.raw_value ORDER BY a.raw_value DESC, a.movie_id), '{}')
        INTO v_a_ids, v_a_raw
      FROM (SELECT r.movie_id, r.raw_value
            FROM reelscore.metric_values r
            WHERE r.metric_id = v_rank.metric_id
              -- OFFSET 0 keeps each probe a per-row index probe (a subplan that cannot be
              -- hashed): unnested, the planner may hash the whole scope, millions of rows
              -- (3-4 s at 1M movies), because it cannot know how soon the page fills
              AND NOT EXISTS (SELECT 1 FROM reelscore.metric_values x
                              WHERE x.movie_id = r.movie_id AND x.metric_id = ANY (v_scope_ids) OFFSET 0)
            ORDER BY r.raw_value DESC, r.movie_id
            LIMIT v_need) a;
    END IF;
  END IF;

  -- B. Gaps without reach, by id, for what part A leaves of the page.
  IF cardinality(v_a_ids) < v_need THEN
    v_b_ids := ARRAY(
      SELECT m.id
      FROM reelscore.movies m
      WHERE NOT EXISTS (SELECT 1 FROM reelscore.metric_values x
                        WHERE x.movie_id = m.id AND x.metric_id = ANY (v_scope_ids) OFFSET 0)
        AND NOT EXISTS (SELECT 1 FROM reelscore.metric_values y
                        WHERE y.movie_id = m.id AND y.metric_id = coalesce(v_rank.metric_id, -1) OFFSET 0)
      ORDER BY m.id
      LIMIT v_need - cardinality(v_a_ids));
  END IF;
  PERFORM set_config('jit', v_jit, true);
  -- Which way part A went ('candidates', 'ranked candidates', 'walk', 'walk, resumed', 'none'):
  -- the tests check it.
  RAISE DEBUG 'coverage_gaps: %', v_path;

  RETURN QUERY
  SELECT g.id, mv.title, mv.release_year,
         CASE WHEN g.raw IS NULL THEN 0::float8
              ELSE coalesce(reelscore.normalize_with(v_rank.normalization_type, v_rank.args, g.raw), 0) END,
         g.raw, v_rank.metric_code::text
  FROM (SELECT a.id, a.raw, a.ord FROM unnest(v_a_ids, v_a_raw) WITH ORDINALITY a(id, raw, ord)
        UNION ALL
        SELECT b.id, NULL::float8, cardinality(v_a_ids) + b.ord FROM unnest(v_b_ids) WITH ORDINALITY b(id, ord)
        ORDER BY 3
        OFFSET p_offset LIMIT p_limit) g
  JOIN reelscore.movies mv ON mv.id = g.id
  ORDER BY g.ord;
END
$$;
COMMENT ON FUNCTION reelscore.coverage_gaps(text, text, text, integer, integer) IS
  'Movies lacking every active metric of a scope (p_scope ''metric'' | ''category'' | ''source'', p_name its code or name), most costly gaps first: cost = the movie''s normalized reach (p_rank_by, default the best-covered popularity or vote-count metric outside the scope); movies without reach data follow with cost 0.';

CREATE OR REPLACE FUNCTION reelscore.coverage_gap_counts()
RETURNS TABLE (dimension text, group_name text, movies_missing integer, total_movies integer,
               missing_percentage double precision)
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT 'metric', c.metric_code::text, c.total_movies - c.movies_with_data, c.total_movies,
         100.0 - c.coverage_percentage
  FROM reelscore.metric_coverage c WHERE c.active AND c.snapshot_id IS NOT NULL
  UNION ALL
  SELECT g.dimension, g.group_name, g.total_movies - g.movies_with_data, g.total_movies,
         100.0 - g.coverage_percentage
  FROM reelscore.coverage_group_stats g
  WHERE g.snapshot_id = (SELECT max(s.id) FROM reelscore.coverage_snapshots s)
$$;
COMMENT ON FUNCTION reelscore.coverage_gap_counts() IS
  'How many movies lack each metric, category and source (and any data at all), from the latest snapshot.';
