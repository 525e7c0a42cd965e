-- 350-scoring: the scoring engine: per-movie features (pgvector), scores fresh from raw values,
-- explanations, ad-hoc weights, precomputed scores per profile kept correct incrementally.
--
-- Score semantics (DESIGN.md): a category score is the weighted mean of the movie's present
-- metrics in it (metric weights: the profile's, else the registry's normalized_weight); the
-- movie score is the category-weighted mean over the categories it has data in; confidence is
-- the share of the profile's effective weight (category weight x metric share) that had data.
-- Missing values follow each definition's missing_policy: skip (renormalize), constant or
-- median (imputed values count for the score, not for confidence).

-- ---------------------------------------------------------------------------------------
-- Versions and staleness
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.definitions_version() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$ SELECT s.definitions_version FROM reelscore.scoring_state s $$;
COMMENT ON FUNCTION reelscore.definitions_version() IS
  'Version of the metric definitions scores are computed from: bumped whenever a definition''s version changes.';

-- Schema of the vector extension, for qualified names in generated SQL.
CREATE OR REPLACE FUNCTION reelscore.vector_schema() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$ SELECT n.nspname::text FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
      WHERE e.extname = 'vector' $$;

-- Mark features stale for movies; rows are added for movies that have none yet.
CREATE OR REPLACE FUNCTION reelscore.mark_features_stale(p_movie_ids bigint[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_n bigint;
  v_zero text := '[' || array_to_string(array_fill(0, ARRAY[32]), ',') || ']';
BEGIN
  PERFORM reelscore.lock_features(false);
  EXECUTE format($q$
    INSERT INTO reelscore.movie_features AS f (movie_id, nvec, pvec, present, n_present, definitions_version, stale)
    SELECT DISTINCT u.id, %1$L::%2$I.vector, %1$L::%2$I.vector, repeat('0', 32)::bit(32), 0, 0, true
    FROM unnest($1) u(id)
    ON CONFLICT (movie_id) DO UPDATE SET stale = true WHERE NOT f.stale
  $q$, v_zero, reelscore.vector_schema()) USING p_movie_ids;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  RETURN v_n;
END
$$;

-- Definition changes: bump the definitions version. Every movie's features are then stale
-- until the next full rebuild (features_current() is false); rows are not touched here, so a
-- definition edit stays cheap (movie_features carries an HNSW index: rewriting 1M rows costs minutes).
CREATE OR REPLACE FUNCTION reelscore.definitions_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    IF NOT EXISTS (SELECT 1 FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE n.version <> o.version) THEN
      RETURN NULL;  -- descriptions, reliability, ...: scores do not change
    END IF;
  END IF;
  UPDATE reelscore.scoring_state
  SET definitions_version = definitions_version + 1, definitions_changed_at = clock_timestamp();
  RETURN NULL;
END
$$;

-- True while movie_features reflect the current definitions (no definition changed since the
-- last full rebuild). Single rows may still be stale (movie_features.stale) after deferred loads.
CREATE OR REPLACE FUNCTION reelscore.features_current() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$ SELECT coalesce(s.features_refreshed_at >= s.definitions_changed_at, false) FROM reelscore.scoring_state s $$;
COMMENT ON FUNCTION reelscore.features_current() IS
  'Whether movie_features reflect the current metric definitions: false from a definition change (its version bump) until the next refresh_features()/refresh_scores().';

CREATE OR REPLACE TRIGGER metric_definitions_scoring_upd
  AFTER UPDATE ON reelscore.metric_definitions REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION reelscore.definitions_changed();
CREATE OR REPLACE TRIGGER metric_definitions_scoring_ins
  AFTER INSERT ON reelscore.metric_definitions REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION reelscore.definitions_changed();
CREATE OR REPLACE TRIGGER metric_definitions_scoring_del
  AFTER DELETE ON reelscore.metric_definitions REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION reelscore.definitions_changed();

-- ---------------------------------------------------------------------------------------
-- Features: normalized values by slot, presence, registry-weighted category means
-- ---------------------------------------------------------------------------------------
-- SQL text selecting the feature columns; $1 is a bigint[] of movie ids, or NULL for all movies.
CREATE OR REPLACE FUNCTION reelscore.features_sql() RETURNS text
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
  v_vs text := reelscore.vector_schema();
  v_cols text := '';
  v_n text[] := '{}';
  v_p text[] := '{}';
  v_bits text[] := '{}';
  v_cat text[] := '{}';
  v_c text;
  v_num text;
  v_den text;
  s integer;
  r record;
BEGIN
  FOR s IN 1..32 LOOP
    IF EXISTS (SELECT 1 FROM reelscore.metric_definitions d WHERE d.slot = s AND d.active) THEN
      v_cols := v_cols || format(', max(n) FILTER (WHERE slot = %s) AS s%s', s, s);
      v_n := v_n || format('coalesce(s%s, 0)', s);
      v_p := v_p || format('(s%s IS NOT NULL)::int', s);
      v_bits := v_bits || format('CASE WHEN s%s IS NOT NULL THEN %s::bigint ELSE 0 END', s, (1::bigint << (32 - s)));
    ELSE
      v_n := v_n || '0'::text;
      v_p := v_p || '0'::text;
    END IF;
  END LOOP;
  FOREACH v_c IN ARRAY reelscore.score_categories() LOOP
    v_num := NULL;
    v_den := NULL;
    FOR r IN SELECT d.slot, d.normalized_weight AS w FROM reelscore.metric_definitions d
             WHERE d.category = v_c AND d.active AND d.normalized_weight > 0 ORDER BY d.slot LOOP
      v_num := concat_ws(' + ', v_num, format('%s::float8 * coalesce(s%s, 0)', r.w, r.slot));
      v_den := concat_ws(' + ', v_den, format('CASE WHEN s%s IS NOT NULL THEN %s::float8 ELSE 0::float8 END', r.slot, r.w));
    END LOOP;
    v_cat := v_cat || CASE WHEN v_num IS NULL THEN 'NULL::float8'
                           ELSE format('(%s) / nullif(%s, 0)', v_num, v_den) END;
  END LOOP;
  RETURN format($q$
    SELECT m.id AS movie_id,
           ARRAY[%1$s]::real[]::%5$I.vector AS nvec,
           ARRAY[%2$s]::real[]::%5$I.vector AS pvec,
           (%3$s)::bit(32) AS present,
           (%4$s)::smallint AS n_present,
           %6$s AS cat_rating, %7$s AS cat_award, %8$s AS cat_financial, %9$s AS cat_cultural, %10$s AS cat_popularity
    FROM reelscore.movies m
    LEFT JOIN (
      SELECT mv.movie_id %11$s
      FROM (SELECT v.movie_id, np.slot,
                   reelscore.normalize_with(np.normalization_type, np.args, v.raw_value) AS n
            FROM reelscore.metric_values v
            JOIN (SELECT p.metric_id, p.slot, p.normalization_type, p.args FROM reelscore.metric_norm_params p
                  WHERE p.active OFFSET 0) np ON np.metric_id = v.metric_id
            WHERE ($1 IS NULL OR v.movie_id = ANY ($1))
            OFFSET 0) mv  -- OFFSET 0: normalize once per row, not once per FILTER aggregate
      GROUP BY mv.movie_id
    ) x ON x.movie_id = m.id
    WHERE ($1 IS NULL OR m.id = ANY ($1))
  $q$,
    array_to_string(v_n, ', '), array_to_string(v_p, ', '),
    coalesce(nullif(array_to_string(v_bits, ' + '), ''), '0'),
    coalesce(nullif(array_to_string(v_p, ' + '), ''), '0'),
    v_vs, v_cat[1], v_cat[2], v_cat[3], v_cat[4], v_cat[5], v_cols);
END
$$;

-- (SET jit = off on the set-based functions below: JIT compiled their wide expressions for
-- seconds per call on this machine, e.g. 1M normalizations took 4.0 s with JIT and 0.98 s
-- without; bench/results, normalize group.)
-- Mean and median of each metric's normalized values (median imputation, shrinkage prior).
CREATE OR REPLACE FUNCTION reelscore.refresh_score_stats() RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET jit = off
AS $$
DECLARE
  v_n integer;
BEGIN
  DELETE FROM reelscore.metric_score_stats;
  INSERT INTO reelscore.metric_score_stats (metric_id, mean_normalized, median_normalized, sample_size)
  SELECT x.metric_id, avg(x.n), percentile_cont(0.5) WITHIN GROUP (ORDER BY x.n), count(*)
  FROM (SELECT v.metric_id, reelscore.normalize_with(np.normalization_type, np.args, v.raw_value) AS n
        FROM reelscore.metric_values v JOIN (SELECT p.metric_id, p.normalization_type, p.args FROM reelscore.metric_norm_params p OFFSET 0) np
          ON np.metric_id = v.metric_id) x
  WHERE x.n IS NOT NULL
  GROUP BY x.metric_id;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  UPDATE reelscore.scoring_state SET stats_refreshed_at = clock_timestamp();
  RETURN v_n;
END
$$;
COMMENT ON FUNCTION reelscore.refresh_score_stats() IS
  'Recompute each metric''s mean and median normalized value (used for median imputation and as the shrinkage prior). Returns the number of metrics.';

-- Writers of single movies' features and a rebuild of all of them exclude each other. The
-- rebuild reads the raw values with one snapshot and upserts every row: a writer that commits
-- a movie's features after that snapshot and before the upsert reaches the row would have them
-- overwritten from the older values, and nothing would mark the movie stale (a mixed-workload
-- test caught 9 movies scored from lost features). So the rebuild takes this lock exclusively
-- (writers wait for it: a definition change's rebuild), writers share it.
CREATE OR REPLACE FUNCTION reelscore.lock_features(p_exclusive boolean) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
BEGIN
  IF p_exclusive THEN
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('reelscore.movie_features'), 0);
  ELSE
    PERFORM pg_catalog.pg_advisory_xact_lock_shared(pg_catalog.hashtext('reelscore.movie_features'), 0);
  END IF;
END
$$;
COMMENT ON FUNCTION reelscore.lock_features(boolean) IS
  'Internal: the transaction lock that keeps a full feature rebuild (exclusive) and writers of single movies'' features (shared) apart, so the rebuild cannot overwrite newer features with older ones.';

-- Recompute the features of some movies (NULL: all); removes rows of movies that no longer exist.
CREATE OR REPLACE FUNCTION reelscore.compute_features(p_movie_ids bigint[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET jit = off
AS $$
DECLARE
  v_n bigint;
  v_defs bigint := reelscore.definitions_version();
  v_gone bigint[];
BEGIN
  PERFORM reelscore.lock_features(p_movie_ids IS NULL);
  EXECUTE format($q$
    INSERT INTO reelscore.movie_features AS f
      (movie_id, nvec, pvec, present, n_present, cat_rating, cat_award, cat_financial, cat_cultural, cat_popularity,
       definitions_version, computed_at, stale)
    SELECT x.*, $2, now(), false FROM (%s) x
    ON CONFLICT (movie_id) DO UPDATE SET
      nvec = excluded.nvec, pvec = excluded.pvec, present = excluded.present, n_present = excluded.n_present,
      cat_rating = excluded.cat_rating, cat_award = excluded.cat_award, cat_financial = excluded.cat_financial,
      cat_cultural = excluded.cat_cultural, cat_popularity = excluded.cat_popularity,
      definitions_version = excluded.definitions_version, computed_at = excluded.computed_at, stale = false,
      -- the HNSW copy (similarity_vectors) is brought up to date by sync_similarity_vectors()
      similarity_synced = f.similarity_synced AND f.nvec::real[] = excluded.nvec::real[]
    WHERE f.stale
       OR (f.nvec::real[], f.present, f.cat_rating, f.cat_award, f.cat_financial, f.cat_cultural, f.cat_popularity)
          IS DISTINCT FROM (excluded.nvec::real[], excluded.present, excluded.cat_rating, excluded.cat_award,
                            excluded.cat_financial, excluded.cat_cultural, excluded.cat_popularity)
          -- (compared as real[]: the vector type's = operator lives on the caller's search_path)
  $q$, reelscore.features_sql()) USING p_movie_ids, v_defs;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  IF p_movie_ids IS NULL THEN
    DELETE FROM reelscore.movie_features f WHERE NOT EXISTS (SELECT 1 FROM reelscore.movies m WHERE m.id = f.movie_id);
    DELETE FROM reelscore.movie_scores s WHERE NOT EXISTS (SELECT 1 FROM reelscore.movies m WHERE m.id = s.movie_id);
    DELETE FROM reelscore.similarity_vectors v WHERE NOT EXISTS (SELECT 1 FROM reelscore.movies m WHERE m.id = v.movie_id);
  ELSE
    -- Movies of the list that no longer exist (usually none: the delete trigger on movies
    -- already removed their rows). Checked first: a delete from movie_scores probes every
    -- profile's partition.
    v_gone := ARRAY(SELECT u.id FROM unnest(p_movie_ids) u(id)
                    WHERE NOT EXISTS (SELECT 1 FROM reelscore.movies m WHERE m.id = u.id));
    IF cardinality(v_gone) > 0 THEN
      DELETE FROM reelscore.movie_features f WHERE f.movie_id = ANY (v_gone);
      DELETE FROM reelscore.movie_scores s WHERE s.movie_id = ANY (v_gone);
      DELETE FROM reelscore.similarity_vectors v WHERE v.movie_id = ANY (v_gone);
    END IF;
  END IF;
  RETURN v_n;
END
$$;

CREATE OR REPLACE FUNCTION reelscore.refresh_features() RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_n bigint;
  v_start timestamptz := clock_timestamp();
BEGIN
  PERFORM reelscore.refresh_score_stats();
  v_n := reelscore.compute_features(NULL);
  UPDATE reelscore.scoring_state SET features_refreshed_at = v_start;
  RETURN v_n;
END
$$;
COMMENT ON FUNCTION reelscore.refresh_features() IS
  'Rebuild every movie''s features (normalized vector by slot, presence, category means) from the raw values and the current definitions, after refreshing the per-metric mean/median. Rows that did not change are not rewritten. Returns the number of rows written. Follow with refresh_scores().';

-- ---------------------------------------------------------------------------------------
-- Ad-hoc weights: {"categories": {...}, "metrics": {...}, "config": {...}, "profile": "base"}
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.parse_adhoc_weights(p_weights jsonb,
  OUT category_weights double precision[], OUT metric_weights jsonb, OUT config jsonb)
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
DECLARE
  v_base reelscore.weight_profile_versions%ROWTYPE;
  v_sum float8;
  v_key text;
BEGIN
  IF p_weights IS NULL OR jsonb_typeof(p_weights) <> 'object' THEN
    RAISE EXCEPTION 'ad-hoc weights must be a JSON object {"categories": {...}, "metrics": {...}}, got %',
                    coalesce(p_weights::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  FOR v_key IN SELECT jsonb_object_keys(p_weights) LOOP
    IF v_key NOT IN ('categories', 'metrics', 'config', 'profile') THEN
      RAISE EXCEPTION 'unknown key in ad-hoc weights: %', quote_literal(v_key)
        USING ERRCODE = 'invalid_parameter_value', HINT = 'Keys: categories, metrics, config, profile.';
    END IF;
  END LOOP;
  SELECT v.* INTO v_base
  FROM reelscore.weight_profiles p
  JOIN reelscore.weight_profile_versions v ON v.profile_id = p.id AND v.version = p.current_version
  WHERE p.id = CASE WHEN p_weights ? 'profile' THEN reelscore.profile_id(p_weights ->> 'profile')
                    ELSE (SELECT d.id FROM reelscore.weight_profiles d WHERE d.is_default LIMIT 1) END;
  IF p_weights ? 'categories' THEN
    category_weights := reelscore.parse_category_weights(p_weights -> 'categories', false);
  ELSE
    category_weights := ARRAY[coalesce(v_base.rating_weight, 0.25), coalesce(v_base.award_weight, 0.25),
                              coalesce(v_base.financial_weight, 0.25), coalesce(v_base.cultural_weight, 0.25),
                              coalesce(v_base.popularity_weight, 0)];
  END IF;
  v_sum := category_weights[1] + category_weights[2] + category_weights[3] + category_weights[4] + category_weights[5];
  IF v_sum <= 0 THEN
    RAISE EXCEPTION 'ad-hoc category weights sum to 0: at least one category needs a weight'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  category_weights := ARRAY[category_weights[1] / v_sum, category_weights[2] / v_sum, category_weights[3] / v_sum,
                            category_weights[4] / v_sum, category_weights[5] / v_sum];
  metric_weights := CASE WHEN p_weights ? 'profile' THEN coalesce(v_base.metric_weights, '{}') ELSE '{}' END
                    || reelscore.parse_metric_weights(p_weights -> 'metrics');
  -- a null in "metrics" drops the base profile's override
  IF jsonb_typeof(p_weights -> 'metrics') = 'object' THEN
    metric_weights := metric_weights - ARRAY(SELECT e.key FROM jsonb_each(p_weights -> 'metrics') e
                                            WHERE jsonb_typeof(e.value) = 'null');
  END IF;
  config := reelscore.validate_profile_config(
              CASE WHEN p_weights ? 'config' THEN p_weights -> 'config'
                   WHEN p_weights ? 'profile' THEN v_base.config ELSE '{}' END);
END
$$;
COMMENT ON FUNCTION reelscore.parse_adhoc_weights(jsonb) IS
  'Validate ad-hoc weights {"categories": {"rating": 0.5, ...}, "metrics": {"imdb_rating": 2.0, ...}, "config": {...}, "profile": "base_profile"}: categories are rescaled to sum 1 (absent: the base or default profile''s); metrics override the base profile''s per-metric weights. Errors 22023 name the unknown category, metric or key.';

-- ---------------------------------------------------------------------------------------
-- Fresh from raw values: the step-by-step breakdown of one movie under a set of weights
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.score_breakdown(p_movie_id bigint, p_cw double precision[],
                                                    p_metric jsonb, p_config jsonb)
RETURNS TABLE (category text, metric_code text, metric_name text, slot smallint, raw_value double precision,
               normalized_value double precision, used_value double precision, status text,
               category_weight double precision, metric_weight double precision,
               metric_weight_share double precision, effective_weight double precision,
               applied_weight double precision, contribution double precision)
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  -- MATERIALIZED: inlined, v's normalized value (the normalization formulas, themselves
  -- inlined) was copied into every expression of u and w that uses it, a dozen times; compiling
  -- those copies at each executor start was half of a fresh score (1.85 -> 0.93 ms a breakdown)
  WITH v AS MATERIALIZED (
    SELECT pl.*, d.name::text AS metric_name, mv.raw_value,
           CASE WHEN mv.raw_value IS NOT NULL
                THEN reelscore.normalize_with(np.normalization_type, np.args, mv.raw_value) END AS nz,
           vv.raw_value AS votes
    FROM reelscore.weights_plan(p_cw, p_metric, p_config) pl
    JOIN reelscore.metric_definitions d ON d.id = pl.metric_id
    -- OFFSET 0: args become a plain column, so the inlined formulas do not repeat the view's CASE
    JOIN (SELECT p.metric_id, p.normalization_type, p.args FROM reelscore.metric_norm_params p OFFSET 0) np
      ON np.metric_id = pl.metric_id
    LEFT JOIN reelscore.metric_values mv ON mv.movie_id = p_movie_id AND mv.metric_id = pl.metric_id
    LEFT JOIN reelscore.metric_values vv ON vv.movie_id = p_movie_id AND vv.metric_id = pl.shrink_votes_metric_id
  ), u AS (
    SELECT v.*,
           CASE WHEN v.nz IS NOT NULL AND v.shrink_m > 0 AND v.votes >= 0 AND v.shrink_prior IS NOT NULL
                  THEN v.votes / (v.votes + v.shrink_m) * v.nz + v.shrink_m / (v.votes + v.shrink_m) * v.shrink_prior
                WHEN v.nz IS NOT NULL THEN v.nz
                WHEN v.raw_value IS NULL THEN v.impute_value END AS base,
           CASE WHEN v.nz IS NOT NULL THEN 'present'
                WHEN v.raw_value IS NOT NULL THEN 'unnormalizable'
                WHEN v.impute_value IS NOT NULL THEN 'imputed'
                ELSE 'missing' END AS status
    FROM v
  ), w AS (
    SELECT u.*, CASE WHEN u.invert THEN 1 - u.base ELSE u.base END AS used,
           (u.base IS NOT NULL AND u.metric_weight > 0 AND u.category_weight > 0) AS counts
    FROM u
  ), c AS (
    SELECT w.category AS cat, max(w.category_weight) AS cw,
           sum(w.metric_weight) FILTER (WHERE w.counts) AS den
    FROM w GROUP BY w.category
  ), t AS (
    SELECT sum(c.cw) FILTER (WHERE c.den > 0) AS tot FROM c
  )
  SELECT w.category, w.metric_code, w.metric_name, w.slot, w.raw_value, w.nz, w.used, w.status,
         w.category_weight, w.metric_weight, w.metric_weight_share, w.effective_weight,
         CASE WHEN w.counts THEN w.category_weight / t.tot * w.metric_weight / c.den ELSE 0 END,
         CASE WHEN w.counts THEN w.category_weight / t.tot * w.metric_weight / c.den * w.used ELSE 0 END
  FROM w JOIN c ON c.cat = w.category CROSS JOIN t
$$;
COMMENT ON FUNCTION reelscore.score_breakdown(bigint, float8[], jsonb, jsonb) IS
  'One row per metric definition: raw, normalized and used value (after shrinkage/inversion/imputation), status (present, imputed, missing, unnormalizable), category weight, metric weight share, effective weight, applied weight (renormalized over what the movie has) and contribution (applied weight x used value; contributions sum to the score).';

CREATE OR REPLACE FUNCTION reelscore.profile_weights_args(p_profile_id bigint,
  OUT category_weights double precision[], OUT metric_weights jsonb, OUT config jsonb, OUT version integer)
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT ARRAY[v.rating_weight, v.award_weight, v.financial_weight, v.cultural_weight, v.popularity_weight],
         v.metric_weights, v.config, v.version
  FROM reelscore.weight_profiles p
  JOIN reelscore.weight_profile_versions v ON v.profile_id = p.id AND v.version = p.current_version
  WHERE p.id = p_profile_id
$$;

CREATE OR REPLACE FUNCTION reelscore.check_movie(p_movie_id bigint) RETURNS void
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM reelscore.movies m WHERE m.id = p_movie_id) THEN
    RAISE EXCEPTION 'unknown movie: %', coalesce(p_movie_id::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION reelscore.explain_score(movie_id bigint, profile text DEFAULT 'balanced',
                                                   p_include_missing boolean DEFAULT false)
RETURNS TABLE (category text, metric_code text, metric_name text, raw_value double precision,
               normalized_value double precision, used_value double precision, status text,
               category_weight double precision, metric_weight_share double precision,
               effective_weight double precision, applied_weight double precision, contribution double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER
-- generic plans: the breakdown query is expensive to plan (inlined formulas), cheap to run
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  a record;
BEGIN
  PERFORM reelscore.check_movie(explain_score.movie_id);
  SELECT * INTO a FROM reelscore.profile_weights_args(reelscore.profile_id(explain_score.profile));
  RETURN QUERY
  SELECT b.category, b.metric_code, b.metric_name, b.raw_value, b.normalized_value, b.used_value, b.status,
         b.category_weight, b.metric_weight_share, b.effective_weight, b.applied_weight, b.contribution
  FROM reelscore.score_breakdown(explain_score.movie_id, a.category_weights, a.metric_weights, a.config) b
  WHERE p_include_missing OR b.applied_weight > 0
  ORDER BY array_position(reelscore.score_categories(), b.category), b.slot;
END
$$;
COMMENT ON FUNCTION reelscore.explain_score(bigint, text, boolean) IS
  'Step-by-step score of a movie under a profile, fresh from raw values: per metric used, raw value, normalized value, used value (after shrinkage, inversion or imputation), category weight, metric weight share, effective weight = category weight x share, applied weight (renormalized over the categories and metrics the movie has) and contribution = applied weight x used value. Contributions sum to movie_score(). p_include_missing adds the metrics that did not count (status missing, zero contribution).';

CREATE OR REPLACE FUNCTION reelscore.explain_score_adhoc(movie_id bigint, weights jsonb,
                                                         p_include_missing boolean DEFAULT false)
RETURNS TABLE (category text, metric_code text, metric_name text, raw_value double precision,
               normalized_value double precision, used_value double precision, status text,
               category_weight double precision, metric_weight_share double precision,
               effective_weight double precision, applied_weight double precision, contribution double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER
-- generic plans: the breakdown query is expensive to plan (inlined formulas), cheap to run
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  a record;
BEGIN
  PERFORM reelscore.check_movie(explain_score_adhoc.movie_id);
  SELECT * INTO a FROM reelscore.parse_adhoc_weights(weights);
  RETURN QUERY
  SELECT b.category, b.metric_code, b.metric_name, b.raw_value, b.normalized_value, b.used_value, b.status,
         b.category_weight, b.metric_weight_share, b.effective_weight, b.applied_weight, b.contribution
  FROM reelscore.score_breakdown(explain_score_adhoc.movie_id, a.category_weights, a.metric_weights, a.config) b
  WHERE p_include_missing OR b.applied_weight > 0
  ORDER BY array_position(reelscore.score_categories(), b.category), b.slot;
END
$$;
COMMENT ON FUNCTION reelscore.explain_score_adhoc(bigint, jsonb, boolean) IS
  'explain_score() under ad-hoc weights (format: see parse_adhoc_weights).';

-- Score and confidence of one movie, fresh from raw values. plpgsql, not SQL: a SQL function
-- that is not inlined is planned on every call, and this query costs ~30 ms to plan.
CREATE OR REPLACE FUNCTION reelscore.score_fresh(p_movie_id bigint, p_cw double precision[], p_metric jsonb,
                                                p_config jsonb, OUT score double precision, OUT confidence double precision)
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY INVOKER
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
  SELECT CASE WHEN bool_or(b.applied_weight > 0) THEN sum(b.contribution) END,
         coalesce(sum(b.effective_weight) FILTER (WHERE b.status = 'present'), 0)
  INTO score, confidence
  FROM reelscore.score_breakdown(p_movie_id, p_cw, p_metric, p_config) b;
END
$$;

-- ---------------------------------------------------------------------------------------
-- Set-based scoring over movie_features: one wide expression per profile
-- ---------------------------------------------------------------------------------------
-- How each category enters a score under these weights: NULL when it does not (no category
-- weight, or no weighted metric in it); 'mean' when the category mean stored in movie_features
-- is exact for it (metric weights proportional to the registry's, no inversion, imputation or
-- shrinkage); else 'vector' (inner products of the normalized and presence vectors).
CREATE OR REPLACE FUNCTION reelscore.category_score_sources(p_cw double precision[], p_metric jsonb, p_config jsonb)
RETURNS text[]
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
  SELECT array_agg(s.source ORDER BY c.i)
  FROM unnest(reelscore.score_categories()) WITH ORDINALITY c(name, i)
  CROSS JOIN LATERAL (
    SELECT CASE
             WHEN coalesce(p_cw[c.i], 0) <= 0 OR coalesce(sum(x.metric_weight), 0) <= 0 THEN NULL
             WHEN bool_and(NOT (x.active AND (x.lambda IS NULL
                                              OR abs(x.metric_weight - x.lambda * x.nw) > 1e-12 * greatest(1, x.metric_weight)))
                           AND NOT (x.metric_weight > 0
                                    AND (x.invert OR x.impute_value IS NOT NULL
                                         OR (x.shrink_m > 0 AND x.shrink_votes_metric_id IS NOT NULL
                                             AND x.shrink_prior IS NOT NULL))))
               THEN 'mean'
             ELSE 'vector' END AS source
    FROM (SELECT pl.metric_weight, pl.invert, pl.impute_value, pl.shrink_m, pl.shrink_votes_metric_id,
                 pl.shrink_prior, d.normalized_weight AS nw, d.active,
                 -- the registry proportionality factor of the category
                 sum(pl.metric_weight) OVER () / nullif(sum(d.normalized_weight) FILTER (WHERE d.active) OVER (), 0) AS lambda
          FROM reelscore.weights_plan(p_cw, p_metric, p_config) pl
          JOIN reelscore.metric_definitions d ON d.id = pl.metric_id
          WHERE pl.category = c.name) x
  ) s
$$;
COMMENT ON FUNCTION reelscore.category_score_sources(float8[], jsonb, jsonb) IS
  'Per score category (in score_categories() order): NULL when it does not enter the score under these weights, ''mean'' when the stored category mean of movie_features is exact for it, ''vector'' when it is computed from the normalized and presence vectors.';

-- SQL text: SELECT movie_id, score, confidence FROM movie_features f ... WHERE <p_filter>.
-- Per category either the stored registry-weighted mean (when the weights are the registry's,
-- up to a factor, with no imputation, inversion or shrinkage) or inner products of the
-- normalized and presence vectors with constant weight vectors (see docs/scoring.md).
-- One level, each category's value written once: the score is
--   sum_c w_c * coalesce(s_c, 0) / sum_c (w_c where category c has data)
-- and whether c has data is read from the presence bits (a vector category: some metric of
-- weight > 0 present, or an imputed one) or the stored mean's NULL, not from s_c again. A
-- pulled-up subquery would copy each s_c into both sums: 2x the inner products per row (a
-- full rescore of hidden_gems at 1M movies 1.24 s -> 0.9 s for the table alone).
DROP FUNCTION IF EXISTS reelscore.score_sql(float8[], jsonb, jsonb, text);   -- before p_fenced (0013)
CREATE OR REPLACE FUNCTION reelscore.score_sql(p_cw double precision[], p_metric jsonb, p_config jsonb,
                                              p_filter text DEFAULT 'true', p_fenced boolean DEFAULT true)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
  v_vs text := reelscore.vector_schema();
  v_cats text[] := reelscore.score_categories();
  v_num text[] := '{}';
  v_den text[] := '{}';
  v_joins text := '';
  v_shrink text;
  v_a float8[]; v_b float8[]; v_d float8[]; v_e float8[];
  v_src text[] := reelscore.category_score_sources(p_cw, p_metric, p_config);
  v_k float8; v_l float8;
  v_mask bigint;   -- the presence bits of the category's metrics of weight > 0 that are not imputed
  v_n text; v_dw text; v_s text;
  i integer;
  r record;
BEGIN
  v_e := array_fill(0::float8, ARRAY[32]);
  FOR i IN 1..5 LOOP
    CONTINUE WHEN v_src[i] IS NULL;
    v_a := array_fill(0::float8, ARRAY[32]); v_b := v_a; v_d := v_a;
    v_k := 0; v_l := 0; v_shrink := ''; v_mask := 0;
    FOR r IN SELECT pl.* FROM reelscore.weights_plan(p_cw, p_metric, p_config) pl
             WHERE pl.category = v_cats[i] LOOP
      CONTINUE WHEN r.metric_weight <= 0;
      v_e[r.slot] := r.effective_weight;
      v_a[r.slot] := r.metric_weight * CASE WHEN r.invert THEN -1 ELSE 1 END;
      v_b[r.slot] := r.metric_weight * CASE WHEN r.invert THEN 1 ELSE 0 END;
      v_d[r.slot] := r.metric_weight;
      v_mask := v_mask | (1::bigint << (32 - r.slot));   -- bit r.slot of movie_features.present
      IF r.impute_value IS NOT NULL THEN
        v_b[r.slot] := v_b[r.slot] - r.metric_weight * CASE WHEN r.invert THEN 1 - r.impute_value ELSE r.impute_value END;
        v_k := v_k + r.metric_weight * CASE WHEN r.invert THEN 1 - r.impute_value ELSE r.impute_value END;
        v_d[r.slot] := 0;
        v_l := v_l + r.metric_weight;
      END IF;
      IF r.shrink_m > 0 AND r.shrink_votes_metric_id IS NOT NULL AND r.shrink_prior IS NOT NULL THEN
        -- w * sign * p * m/(V+m) * (C - n): the IMDb weighted-rating correction, where the vote count is known
        v_joins := v_joins || format(
          ' LEFT JOIN reelscore.metric_values sv%1$s ON sv%1$s.movie_id = f.movie_id AND sv%1$s.metric_id = %2$s',
          r.slot, r.shrink_votes_metric_id);
        v_shrink := v_shrink || format(
          ' + coalesce(%1$s::float8 * get_bit(f.present, %2$s) * (%3$s::float8 / (sv%4$s.raw_value + %3$s::float8)) * (%5$s::float8 - (f.nvec::real[])[%4$s]), 0)',
          r.metric_weight * CASE WHEN r.invert THEN -1 ELSE 1 END, r.slot - 1, r.shrink_m, r.slot, r.shrink_prior);
      END IF;
    END LOOP;
    IF v_src[i] = 'mean' THEN
      v_s := format('f.cat_%s', v_cats[i]);
      v_den := v_den || format('CASE WHEN f.cat_%s IS NOT NULL THEN %s::float8 ELSE 0::float8 END', v_cats[i], p_cw[i]);
    ELSE
      v_n := format('%1$I.inner_product(f.nvec, %2$L::%1$I.vector)', v_vs, '[' || array_to_string(v_a, ',') || ']');
      v_dw := format('%1$I.inner_product(f.pvec, %2$L::%1$I.vector)', v_vs, '[' || array_to_string(v_d, ',') || ']');
      IF v_b = v_d AND v_l = 0 THEN
        -- every metric inverted, none imputed: (x + D) / D = 1 + x / D, one inner product less
        v_s := format('1::float8 + (%s%s) / nullif(%s, 0)', v_n, v_shrink, v_dw);
      ELSE
        -- weighted normalized values (+ inverted ones' weights, - imputed ones', + constants),
        -- divided by the weight of the metrics it has (imputed ones always count)
        IF EXISTS (SELECT 1 FROM unnest(v_b) b WHERE b <> 0) THEN
          v_n := v_n || format(' + %1$I.inner_product(f.pvec, %2$L::%1$I.vector)', v_vs, '[' || array_to_string(v_b, ',') || ']');
        END IF;
        v_s := format('(%s%s%s) / nullif(%s%s, 0)', v_n, CASE WHEN v_k <> 0 THEN format(' + %s::float8', v_k) ELSE '' END,
                      v_shrink, v_dw, CASE WHEN v_l <> 0 THEN format(' + %s::float8', v_l) ELSE '' END);
      END IF;
      v_den := v_den || CASE
        WHEN v_l > 0 THEN format('%s::float8', p_cw[i])   -- an imputed metric: always has a value
        ELSE format('CASE WHEN (f.present::integer & %s) <> 0 THEN %s::float8 ELSE 0::float8 END',
                    v_mask::bit(32)::integer, p_cw[i]) END;
    END IF;
    v_num := v_num || format('%s::float8 * coalesce(%s, 0)', p_cw[i], v_s);
  END LOOP;
  IF cardinality(v_num) = 0 THEN
    RETURN format('SELECT f.movie_id, NULL::float8 AS score, 0::float8 AS confidence FROM reelscore.movie_features f WHERE %s',
                  p_filter);
  END IF;
  -- Fenced (OFFSET 0): callers that filter and sort on score compute it once. Unfenced: a
  -- top-N that only sorts on it can run as a parallel scan (half the time on two cores).
  RETURN format(
    'SELECT f.movie_id, (%1$s) / nullif(%2$s, 0) AS score, %3$I.inner_product(f.pvec, %4$L::%3$I.vector) AS confidence '
    'FROM reelscore.movie_features f%5$s WHERE %6$s%7$s',
    array_to_string(v_num, ' + '), array_to_string(v_den, ' + '), v_vs, '[' || array_to_string(v_e, ',') || ']',
    v_joins, p_filter, CASE WHEN p_fenced THEN ' OFFSET 0' ELSE '' END);
END
$$;
COMMENT ON FUNCTION reelscore.score_sql(float8[], jsonb, jsonb, text, boolean) IS
  'The set-based scoring query for a set of weights: SELECT movie_id, score, confidence over movie_features (one wide expression, no GROUP BY, each category''s value computed once), restricted by p_filter (SQL text built by the caller); p_fenced => false lets the planner run it in parallel when the caller only sorts on score.';

-- The best rows of a scoring query, exact: score descending (NULLs last, so the expression is
-- only a sort key and the scan can be parallel), ties by movie id; $1 min confidence, $2 limit,
-- $3 offset. Movies without a score sort last and are dropped after the LIMIT.
CREATE OR REPLACE FUNCTION reelscore.top_n_sql(p_cw double precision[], p_metric jsonb, p_config jsonb,
                                              p_min_confidence double precision)
RETURNS text
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
  SELECT format(
    'SELECT t.movie_id, t.score, t.confidence FROM ('
    '  SELECT x.movie_id, x.score, x.confidence FROM (%s) x %s'
    '  ORDER BY x.score DESC NULLS LAST, x.movie_id LIMIT $2 OFFSET $3) t '
    'WHERE t.score IS NOT NULL',
    reelscore.score_sql(p_cw, p_metric, p_config, 'true', false),
    CASE WHEN coalesce(p_min_confidence, 0) > 0 THEN 'WHERE x.confidence >= $1' ELSE '' END)
$$;
COMMENT ON FUNCTION reelscore.top_n_sql(float8[], jsonb, jsonb, float8) IS
  'SQL text of an exact top-N over movie_features for a set of weights (parameters: $1 min confidence, $2 limit, $3 offset): score_sql unfenced, so it can run as a parallel scan.';

CREATE OR REPLACE FUNCTION reelscore.sequence_direction(p_values double precision[]) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT CASE WHEN bool_and(d >= 0) THEN 1 WHEN bool_and(d <= 0) THEN -1 END
  FROM (SELECT p_values[i + 1] - p_values[i] AS d FROM generate_subscripts(p_values, 1) i
        WHERE i < cardinality(p_values)) x
$$;
COMMENT ON FUNCTION reelscore.sequence_direction(float8[]) IS
  '1 when the numbers never decrease, -1 when they never increase (also for one number), NULL otherwise.';

-- Which way a normalization goes over the raw scale: 1 when it never decreases, -1 when it
-- never increases, NULL when it may do both (custom steps or piecewise knots that go up and
-- down) or may change without a definitions version bump ('percentile': the stored quantiles).
CREATE OR REPLACE FUNCTION reelscore.normalization_direction(p_type text, p_args double precision[])
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT CASE p_type
    WHEN 'linear' THEN CASE WHEN p_args[2] >= p_args[1] THEN 1 ELSE -1 END
    WHEN 'logarithmic' THEN 1
    WHEN 'sigmoid' THEN CASE WHEN p_args[1] >= 0 THEN -1 ELSE 1 END
    WHEN 'boolean' THEN 1
    WHEN 'custom' THEN reelscore.sequence_direction(p_args)
    WHEN 'piecewise' THEN reelscore.sequence_direction(p_args[cardinality(p_args) / 2 + 1:])
  END
$$;
COMMENT ON FUNCTION reelscore.normalization_direction(text, float8[]) IS
  'Monotony of a normalization over raw values: 1 non-decreasing, -1 non-increasing, NULL when not monotone or not fixed by the definition (percentile).';

-- A condition on metric_values v, "v.raw_value > a" or "v.raw_value < a", met by every value of
-- the metric whose normalized value is at least p_theta (and by few others): the cut-off is found
-- by bisection on the normalization itself between the smallest and largest raw values stored,
-- so no normalization needs an inverse. 'false' when no value reaches p_theta, 'true' when all
-- do, NULL when the normalization is not monotone (normalization_direction).
CREATE OR REPLACE FUNCTION reelscore.raw_values_reaching_sql(p_metric_id smallint, p_theta double precision)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET extra_float_digits = 3   -- the cut-off is written into SQL text: every digit of it
AS $$
DECLARE
  d record;
  v_lo float8;      -- normalizes below p_theta (the raw end with the least normalized value)
  v_hi float8;      -- normalizes at or above p_theta
  v_mid float8;
  v_min float8;
  v_max float8;
BEGIN
  SELECT np.normalization_type, np.args, reelscore.normalization_direction(np.normalization_type, np.args) AS dir
  INTO d FROM reelscore.metric_norm_params np WHERE np.metric_id = p_metric_id;
  IF d.dir IS NULL OR d.normalization_type = 'percentile' THEN
    RETURN NULL;
  END IF;
  SELECT min(v.raw_value), max(v.raw_value) INTO v_min, v_max FROM reelscore.metric_values v WHERE v.metric_id = p_metric_id;
  IF v_min IS NULL THEN
    RETURN 'false';
  END IF;
  IF d.dir > 0 THEN v_lo := v_min; v_hi := v_max; ELSE v_lo := v_max; v_hi := v_min; END IF;
  IF reelscore.normalize_with(d.normalization_type, d.args, v_hi) < p_theta THEN
    RETURN 'false';
  ELSIF reelscore.normalize_with(d.normalization_type, d.args, v_lo) >= p_theta THEN
    RETURN 'true';
  END IF;
  FOR i IN 1..100 LOOP
    v_mid := v_lo + (v_hi - v_lo) / 2;
    EXIT WHEN v_mid = v_lo OR v_mid = v_hi;
    IF reelscore.normalize_with(d.normalization_type, d.args, v_mid) >= p_theta THEN v_hi := v_mid; ELSE v_lo := v_mid; END IF;
  END LOOP;
  -- v_lo and every raw value on its far side normalize below p_theta (monotony)
  RETURN format('v.raw_value %s %s::float8', CASE WHEN d.dir > 0 THEN '>' ELSE '<' END, v_lo);
END
$$;
COMMENT ON FUNCTION reelscore.raw_values_reaching_sql(smallint, float8) IS
  'SQL condition on metric_values v met by every stored value of the metric that normalizes to at least p_theta (a raw-value cut-off found by bisection); NULL for a normalization that is not monotone.';

-- What bounds a score from above under these weights, or NULLs when nothing usable does. A
-- score is a weighted mean of category scores, so it is never above the largest of them; a
-- category score is
--   'mean' source: its stored mean (cat_*);
--   'vector' source with every weighted metric plain (not inverted, imputed or shrunk): write
--     each metric weight as w' = lambda * w + delta, w the registry weight, lambda the largest
--     factor that leaves every delta >= 0; the category score is then a weighted mean of the
--     stored mean (when lambda > 0) and of the normalized values of the metrics with delta > 0
--     (the up-weighted ones, or all weighted ones when a registry metric lost its weight), so
--     never above the largest of those.
-- cat_columns: the movie_features columns of the stored means; metric_ids: the up-weighted metrics.
CREATE OR REPLACE FUNCTION reelscore.score_upper_bounds(p_cw double precision[], p_metric jsonb, p_config jsonb,
                                                       OUT cat_columns text[], OUT metric_ids smallint[])
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
  v_src text[] := reelscore.category_score_sources(p_cw, p_metric, p_config);
  v_cats text[] := reelscore.score_categories();
  v_plain boolean;
  v_lambda float8;
  v_up smallint[];
  v_monotone boolean;
BEGIN
  cat_columns := '{}';
  metric_ids := '{}';
  FOR i IN 1..5 LOOP
    CONTINUE WHEN v_src[i] IS NULL;
    IF v_src[i] = 'vector' THEN
      SELECT bool_and(pl.metric_weight <= 0 OR NOT (pl.invert OR pl.impute_value IS NOT NULL
                      OR (pl.shrink_m > 0 AND pl.shrink_votes_metric_id IS NOT NULL AND pl.shrink_prior IS NOT NULL))),
             coalesce(min(pl.metric_weight / d.normalized_weight) FILTER (WHERE d.active AND d.normalized_weight > 0), 0)
      INTO v_plain, v_lambda
      FROM reelscore.weights_plan(p_cw, p_metric, p_config) pl
      JOIN reelscore.metric_definitions d ON d.id = pl.metric_id
      WHERE pl.category = v_cats[i];
      SELECT array_agg(pl.metric_id ORDER BY pl.metric_id),
             bool_and(reelscore.normalization_direction(d.normalization_type, d.norm_args) IS NOT NULL
                      AND d.normalization_type <> 'percentile')
      INTO v_up, v_monotone
      FROM reelscore.weights_plan(p_cw, p_metric, p_config) pl
      JOIN reelscore.metric_definitions d ON d.id = pl.metric_id
      WHERE pl.category = v_cats[i]
        AND pl.metric_weight - v_lambda * CASE WHEN d.active THEN d.normalized_weight ELSE 0 END
            > 1e-12 * greatest(1, pl.metric_weight);
      IF NOT v_plain OR NOT coalesce(v_monotone, true) THEN
        cat_columns := NULL;
        metric_ids := NULL;
        RETURN;
      END IF;
      metric_ids := metric_ids || coalesce(v_up, '{}');
      CONTINUE WHEN v_lambda <= 0;
    END IF;
    cat_columns := cat_columns || format('cat_%s', v_cats[i]);
  END LOOP;
END
$$;
COMMENT ON FUNCTION reelscore.score_upper_bounds(float8[], jsonb, jsonb) IS
  'What a score under these weights is never above the largest of: stored category means (cat_columns) and normalized values of up-weighted metrics (metric_ids); NULLs when inverted, imputed or shrunk metrics, or a normalization that is not monotone, leave no such bound.';

-- A condition on movie_features row <alias> met by every movie that can score at least $4 through
-- its stored category means (and by few others). A score is a weighted mean over the categories
-- present, so it is >= theta exactly when sum(w_c * (s_c - theta)) >= 0 over those categories.
-- Per category, the bound of s_c - theta: a 'mean' category's score is its stored mean; a
-- 'vector' category whose stored mean is in the bound (cat_columns) scores at most the larger of
-- that mean and its up-weighted metrics' normalized values, which top_n only lets through this
-- condition when they are below theta, so s_c - theta <= max(mean - theta, 0); a 'vector' one
-- whose mean is not in the bound scores below theta: left out (<= 0). Absent categories add 0.
-- Some category mean >= theta is needed too; written as the key of movie_features_best_category
-- (migration 0022, same column order), so the whole condition is read from that index alone.
CREATE OR REPLACE FUNCTION reelscore.category_bound_sql(p_cw double precision[], p_sources text[],
                                                       p_cat_columns text[], p_alias text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
AS $$
DECLARE
  v_src text[] := p_sources;
  v_cats text[] := reelscore.score_categories();
  v_terms text[] := '{}';
BEGIN
  IF coalesce(cardinality(p_cat_columns), 0) = 0 THEN
    RETURN 'false';
  END IF;
  FOR i IN 1..5 LOOP
    CONTINUE WHEN v_src[i] IS NULL OR NOT (format('cat_%s', v_cats[i]) = ANY (p_cat_columns));
    v_terms := v_terms || format(CASE WHEN v_src[i] = 'mean' THEN '%s::float8 * coalesce(%I.%I - $4, 0)'
                                      ELSE '%s::float8 * greatest(coalesce(%I.%I - $4, 0), 0)' END,
                                 p_cw[i], p_alias, 'cat_' || v_cats[i]);
  END LOOP;
  RETURN format('(greatest(%s) >= $4 AND %s >= 0)',
                (SELECT string_agg(format('%I.%I', p_alias, 'cat_' || c.name), ', ' ORDER BY c.i)
                 FROM unnest(v_cats) WITH ORDINALITY c(name, i)),
                array_to_string(v_terms, ' + '));
END
$$;
COMMENT ON FUNCTION reelscore.category_bound_sql(float8[], text[], text[], text) IS
  'SQL condition on a movie_features row (alias p_alias) met by every movie whose stored category means let it score at least $4 under these category weights (p_sources from category_score_sources, p_cat_columns from score_upper_bounds); decidable from the index movie_features_best_category alone.';

-- The best rows of a scoring query, exact, as top_n_sql orders them. A score is never above the
-- largest of its bounds (score_upper_bounds), so a movie scoring at least theta has a bound of at
-- least theta. theta is taken from the best movies of each bound (their index tops: the cat_*
-- indexes, metric_values by raw value), scored exactly: the (lim+off)-th best score among them is
-- a lower bound of the (lim+off)-th best score overall. Then only movies that can reach theta are
-- scored: those the weighted bounds of their stored means let through (category_bound_sql, read
-- index-only), the ids whose raw values of an up-weighted metric reach theta, and the stale rows,
-- whose stored values may not be their raw values; otherwise, or when theta cannot be found or
-- the candidates are too many, every movie is.
CREATE OR REPLACE FUNCTION reelscore.top_n(p_cw double precision[], p_metric jsonb, p_config jsonb,
                                          p_min_confidence double precision, p_lim integer, p_off integer)
RETURNS TABLE (movie_id bigint, score double precision, confidence double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET jit = off
AS $$
DECLARE
  -- past this many movies reached through up-weighted metrics, scoring them one by one costs
  -- about what a parallel pass over every movie does
  c_max_ids CONSTANT integer := 50000;
  -- theta comes from this many times k of the best movies of each bound: a closer theta (every
  -- 0.01 of it is thousands of candidates fewer at 1M movies) for more seed rows scored by key;
  -- 1, 3 and 10 measured side by side at 1M, 3 was the fastest for category and metric weights
  c_seeds CONSTANT integer := 3;
  -- past this many rows (lim + off), one pass over every movie is as fast or faster: at 1M with
  -- a metric weight, bounded 0.96 / 1.20 / 1.75 / 1.98 s for k = 1,000 / 2,000 / 5,000 / 10,000
  -- against 1.0-1.2 s for the pass; category weights 0.56 / 0.76 s at 2,000 / 5,000 against 0.58 s
  c_max_k CONSTANT integer := 1000;
  b record;
  v_k integer := p_lim + p_off;
  v_min float8 := coalesce(p_min_confidence, 0);
  v_src text[] := reelscore.category_score_sources(p_cw, p_metric, p_config);
  v_vector boolean := 'vector' = ANY (v_src);
  -- a margin for rounding: a weighted average of equal means may come out an ulp above them,
  -- and the vector inner products add in single precision
  v_margin float8 := CASE WHEN v_vector THEN 1e-5 ELSE 1e-9 END;
  v_tops text[];
  v_reach text[];
  v_theta float8;
  v_seen integer;
  v_ids bigint[];
  v_filter text;
  v_source text;
  v_metric smallint;
BEGIN
  SELECT * INTO b FROM reelscore.score_upper_bounds(p_cw, p_metric, p_config);
  IF b.cat_columns IS NOT NULL AND cardinality(b.cat_columns) + cardinality(b.metric_ids) > 0
     AND v_k BETWEEN 1 AND c_max_k
     -- the raw-value bounds hold for movie_features rows computed under the current definitions
     AND (cardinality(b.metric_ids) = 0 OR reelscore.features_current()) THEN
    v_tops := ARRAY(SELECT format('(SELECT t.movie_id FROM reelscore.movie_features t WHERE t.%1$I IS NOT NULL '
                                  'ORDER BY t.%1$I DESC LIMIT $3)', col.name) FROM unnest(b.cat_columns) col(name));
    FOREACH v_metric IN ARRAY b.metric_ids LOOP
      v_tops := v_tops || format(
        '(SELECT v.movie_id FROM reelscore.metric_values v WHERE v.metric_id = %s ORDER BY v.raw_value %s LIMIT $3)',
        v_metric, (SELECT CASE WHEN reelscore.normalization_direction(d.normalization_type, d.norm_args) > 0
                               THEN 'DESC' ELSE 'ASC' END
                   FROM reelscore.metric_definitions d WHERE d.id = v_metric));
    END LOOP;
    -- and the best movies of every precomputed profile (their ranking indexes): movies good in
    -- several categories, which the single-bound tops miss where data is dense. At 1M movies
    -- with 18.7M values theta for a top 50 went from 0.766 to 0.821 (the 50th best is 0.824),
    -- which took the movies reached through an up-weighted metric from over 50,000 (one pass
    -- over every movie) to 19,000. Any real movie's exact score is a valid theta; the stored
    -- scores only choose which movies to try. (Unlogged: none on a standby.)
    IF NOT pg_is_in_recovery() THEN
      v_tops := v_tops || ARRAY(
        SELECT format('(SELECT s.movie_id FROM reelscore.movie_scores s WHERE s.profile_id = %s AND s.score >= %L::float8 '
                      'ORDER BY s.score DESC NULLS LAST, s.movie_id LIMIT $3)', st.profile_id, reelscore.ranking_floor(st.profile_id))
        FROM reelscore.profile_score_state st ORDER BY st.profile_id);
    END IF;
    EXECUTE format(
      'SELECT min(x.score), count(*) FROM ('
      '  SELECT s.score FROM (%s) s WHERE s.score IS NOT NULL AND s.confidence >= $1'
      '  ORDER BY s.score DESC LIMIT $2) x',
      reelscore.score_sql(p_cw, p_metric, p_config, format('f.movie_id IN (%s)', array_to_string(v_tops, ' UNION '))))
    INTO v_theta, v_seen USING v_min, v_k, c_seeds * v_k;
    IF v_seen = v_k THEN
      -- the movies the stored means let through, found index-only (category_bound_sql), then
      -- fetched by key: at 1M, 735 rows instead of the 67k a bitmap over the cat_* indexes
      -- fetched ("some mean >= theta"; 190 ms of 290)
      v_filter := reelscore.category_bound_sql(p_cw, v_src, b.cat_columns, 'g');
      v_source := reelscore.score_sql(p_cw, p_metric, p_config,
        format('f.movie_id = ANY (ARRAY(SELECT g.movie_id FROM reelscore.movie_features g WHERE %s))', v_filter));
      IF cardinality(b.metric_ids) > 0 THEN
        v_reach := ARRAY(SELECT format('SELECT v.movie_id FROM reelscore.metric_values v WHERE v.metric_id = %s AND %s',
                                       mm.id, reelscore.raw_values_reaching_sql(mm.id, v_theta - v_margin))
                         FROM unnest(b.metric_ids) mm(id));
        EXECUTE format('SELECT array_agg(x.movie_id) FROM (%s LIMIT %s) x',
                       array_to_string(v_reach, ' UNION '), c_max_ids + 1) INTO v_ids;
        -- two scans, each with its own plan: the means' candidates with the stale rows, and the
        -- ids whose raw values reach theta by key, less those already in the first (the same
        -- condition on the same row). One OR of all made the planner price a bitmap above a
        -- parallel pass over every movie (1.4x slower at 1M).
        v_source := format('(%s) UNION ALL (%s)',
                           reelscore.score_sql(p_cw, p_metric, p_config, format(
                             'f.movie_id = ANY (ARRAY(SELECT g.movie_id FROM reelscore.movie_features g WHERE %s '
                             'UNION SELECT g.movie_id FROM reelscore.movie_features g WHERE g.stale))', v_filter)),
                           reelscore.score_sql(p_cw, p_metric, p_config,
                             format('f.movie_id = ANY ($5) AND NOT coalesce(%s OR f.stale, false)',
                                    reelscore.category_bound_sql(p_cw, v_src, b.cat_columns, 'f'))));
      END IF;
      IF coalesce(cardinality(v_ids), 0) <= c_max_ids THEN
        RETURN QUERY EXECUTE format(
          'SELECT x.movie_id, x.score, x.confidence FROM (%s) x '
          'WHERE x.score IS NOT NULL AND x.confidence >= $1 '
          'ORDER BY x.score DESC, x.movie_id LIMIT $2 OFFSET $3', v_source)
        USING v_min, p_lim, p_off, v_theta - v_margin, coalesce(v_ids, '{}');
        RETURN;
      END IF;
    END IF;
  END IF;
  RETURN QUERY EXECUTE reelscore.top_n_sql(p_cw, p_metric, p_config, v_min) USING v_min, p_lim, p_off;
END
$$;
COMMENT ON FUNCTION reelscore.top_n(float8[], jsonb, jsonb, float8, integer, integer) IS
  'The best movies for a set of weights, exact (score descending, ties by movie id, movies without a score left out): scores only the movies whose upper bounds (score_upper_bounds: stored category means, normalized values of up-weighted metrics) can reach the (lim+off)-th best score, else one pass over movie_features (top_n_sql).';

-- ---------------------------------------------------------------------------------------
-- Precomputed scores
-- ---------------------------------------------------------------------------------------
-- The name of a profile's partition of movie_scores (reelscore schema).
CREATE OR REPLACE FUNCTION reelscore.score_partition(p_profile_id bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$ SELECT 'movie_scores_p' || p_profile_id $$;
COMMENT ON FUNCTION reelscore.score_partition(bigint) IS
  'The table name of a profile''s partition of movie_scores (in schema reelscore).';

-- A score partition gets the privileges of movie_scores: rescore_movies writes into the
-- partitions directly (their key is not the parent's), as the loader's role.
CREATE OR REPLACE FUNCTION reelscore.grant_partition_like_parent(p_partition regclass) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  g record;
BEGIN
  FOR g IN SELECT a.grantee::regrole::text AS grantee, string_agg(a.privilege_type, ', ') AS privileges
           FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
           WHERE c.oid = 'reelscore.movie_scores'::regclass AND a.grantee <> c.relowner AND a.grantee <> 0
           GROUP BY a.grantee LOOP
    EXECUTE format('GRANT %s ON %s TO %I', g.privileges, p_partition, g.grantee);
  END LOOP;
END
$$;
REVOKE ALL ON FUNCTION reelscore.grant_partition_like_parent(regclass) FROM PUBLIC;
COMMENT ON FUNCTION reelscore.grant_partition_like_parent(regclass) IS
  'Grant a movie_scores partition the privileges movie_scores has (rescore_movies writes into partitions directly).';

-- The floor of a new partition's ranking index: about the score of its n-th best row among
-- those top_movies lists (confidence at least the profile's min_confidence), n the setting
-- reelscore.ranking_index_rows (default 50,000), estimated from a sample of about 10,000 rows
-- (the exact rank costs a sort of every row, which the partial index saves; the whole table
-- when it is that small). -Infinity for up to 2n rows, or when the sample holds too few rows
-- of that confidence: then the index covers every row with a score. The estimate only sets
-- how many rows the index holds; the readers are exact whatever it is.
DROP FUNCTION IF EXISTS reelscore.sampled_ranking_floor(regclass, bigint);
CREATE OR REPLACE FUNCTION reelscore.sampled_ranking_floor(p_partition regclass, p_rows bigint,
                                                           p_min_confidence double precision)
RETURNS double precision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_n bigint := coalesce(nullif(current_setting('reelscore.ranking_index_rows', true), '')::bigint, 50000);
  v_floor double precision;
BEGIN
  IF v_n < 1 THEN
    RAISE EXCEPTION 'reelscore.ranking_index_rows must be at least 1, got %', v_n
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p_rows <= 2 * v_n THEN
    RETURN '-Infinity';
  END IF;
  -- the k-th best listed score of the sample, k the sample's share of n
  EXECUTE format('WITH s AS MATERIALIZED (SELECT t.score, t.confidence FROM %s t TABLESAMPLE SYSTEM (%s)) '
                 'SELECT s.score FROM s WHERE s.score IS NOT NULL AND s.confidence >= $1 ORDER BY s.score DESC '
                 'OFFSET greatest(ceil($2::float8 * (SELECT count(*) FROM s) / $3)::bigint - 1, 0) LIMIT 1',
                 p_partition, least(100, 1e6 / p_rows))
    INTO v_floor USING coalesce(p_min_confidence, 0), v_n, p_rows;
  RETURN coalesce(v_floor, '-Infinity');
END
$$;
REVOKE ALL ON FUNCTION reelscore.sampled_ranking_floor(regclass, bigint, float8) FROM PUBLIC;
COMMENT ON FUNCTION reelscore.sampled_ranking_floor(regclass, bigint, float8) IS
  'Internal to rescore_profile_id: the score above which about the best reelscore.ranking_index_rows (default 50,000) rows of a new score partition with at least the given confidence lie (from a sample of ~10,000 rows), the floor of its partial ranking index; -Infinity for up to twice that many rows.';

-- The floor of a profile's partial ranking index, as its last full rescore chose it (top_floor):
-- the readers take the rows at or above it from the index. -Infinity when the index holds
-- every row (partitions built before migration 0021) or the profile has no scores.
CREATE OR REPLACE FUNCTION reelscore.ranking_floor(p_profile_id bigint) RETURNS double precision
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT coalesce((SELECT st.top_floor FROM reelscore.profile_score_state st WHERE st.profile_id = p_profile_id),
                  '-Infinity')
$$;
COMMENT ON FUNCTION reelscore.ranking_floor(bigint) IS
  'The score floor of a profile''s ranking index (movie_scores_p<id>_top holds the rows with score >= it; the rest are read by a scan when a page reaches below it); -Infinity when it holds every row.';

-- Full rescore of one profile: build its partition anew and swap it in (build-and-swap, so
-- readers see the old scores until the commit). Partitions are unlogged (migration 0018) and
-- indexed each on their own: PRIMARY KEY (movie_id) and the ranking _top (score DESC NULLS
-- LAST, movie_id) over the rows at or above profile_score_state.top_floor (migration 0021).
-- At 1M movies writing the rows and building the two indexes is nearly all of the time, so
-- the rows are written three columns wide and the ranking index sorts only the best rows.
-- SECURITY DEFINER: it creates, attaches and drops partitions, which the admin role cannot do
-- itself; it takes only a profile id.
CREATE OR REPLACE FUNCTION reelscore.rescore_profile_id(p_profile_id bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET jit = off
-- the score pass hands every row to the leader: at the default cost of a row through a Gather
-- (0.1) the planner keeps it serial, though two workers compute it in about half the time
SET parallel_tuple_cost = 0.001
-- set below from the CPU count: the leader alone writes the rows a parallel CREATE TABLE AS
-- computes, so it needs a core of its own (2 cores: 1 worker beats 2 by 0.1 s at 1M movies)
SET max_parallel_workers_per_gather = 1
AS $$
DECLARE
  a record;
  v_p record;
  v_part text := reelscore.score_partition(p_profile_id);
  v_new text := v_part || '_new' || txid_current();  -- unique: index names are schema-wide
  v_defs bigint := reelscore.definitions_version();
  v_stats timestamptz;
  v_n bigint;
  v_floor double precision;
  v_t0 timestamptz := clock_timestamp();
BEGIN
  -- exclusive against other rescores of the profile and against incremental writers (they
  -- share it, rescore_movies): taken before the snapshot the new partition is built from, so a
  -- writer in flight commits first and is seen, and a later one waits and writes the new one
  PERFORM pg_advisory_xact_lock(hashtext('reelscore.movie_scores'), p_profile_id::integer);
  SELECT p.id, p.active, coalesce((p.config ->> 'precompute')::boolean, true) AS precompute INTO v_p
  FROM reelscore.weight_profiles p WHERE p.id = p_profile_id;
  IF NOT FOUND OR NOT v_p.active OR NOT v_p.precompute THEN
    IF to_regclass(format('reelscore.%I', v_part)) IS NOT NULL THEN
      EXECUTE format('DROP TABLE reelscore.%I', v_part);
    END IF;
    DELETE FROM reelscore.profile_score_state s WHERE s.profile_id = p_profile_id;
    RETURN 0;
  END IF;
  SELECT * INTO a FROM reelscore.profile_weights_args(p_profile_id);
  SELECT s.stats_refreshed_at INTO v_stats FROM reelscore.scoring_state s;
  PERFORM set_config('max_parallel_workers_per_gather', greatest(reelscore.server_cpu_count() - 1, 1)::text, true);
  IF to_regclass(format('reelscore.%I', v_new)) IS NOT NULL THEN
    EXECUTE format('DROP TABLE reelscore.%I', v_new);
  END IF;
  -- Unlogged: scores are derived data, rebuilt by the next refresh after a crash (migration
  -- 0018). CREATE TABLE AS rather than INSERT: its query may run in parallel (an INSERT's may
  -- not), and the score pass is unfenced for that. Only the three columns that differ by row.
  EXECUTE format('CREATE UNLOGGED TABLE reelscore.%I AS SELECT x.movie_id, x.score, x.confidence FROM (%s) x',
                 v_new, reelscore.score_sql(a.category_weights, a.metric_weights, a.config, 'true', false));
  GET DIAGNOSTICS v_n = ROW_COUNT;
  -- The rest of movie_scores' columns (ATTACH checks them), each the same in every row: added
  -- with that value as its default, which PostgreSQL stores once in the catalog, not in the
  -- rows (without rewriting them); the defaults are then set to movie_scores' own (a dropped
  -- or changed default keeps the stored value). The NOT NULLs and the CHECK that spares ATTACH
  -- its scan cost one pass over the rows, for the whole statement.
  EXECUTE format(
    'ALTER TABLE reelscore.%1$I ADD COLUMN profile_id bigint NOT NULL DEFAULT %2$s, '
    'ADD COLUMN profile_version integer NOT NULL DEFAULT %3$s, ADD COLUMN definitions_version bigint NOT NULL DEFAULT %4$s, '
    'ADD COLUMN computed_at timestamptz NOT NULL DEFAULT %5$L, '
    'ALTER movie_id SET NOT NULL, ALTER confidence SET NOT NULL, ADD CONSTRAINT %6$I CHECK (profile_id = %2$s), '
    -- statistics from 3,000 sampled rows instead of 30,000: ANALYZE of a fresh 1M-row partition
    -- 0.19 s -> 0.03 s; the planner needs little of it (movie_id unique, the score's spread)
    'ALTER movie_id SET STATISTICS 10, ALTER score SET STATISTICS 10, ALTER confidence SET STATISTICS 10, '
    'ALTER profile_id SET STATISTICS 10, ALTER profile_version SET STATISTICS 10, '
    'ALTER definitions_version SET STATISTICS 10, ALTER computed_at SET STATISTICS 10',
    v_new, p_profile_id, a.version, v_defs, now(), v_new || '_check');
  EXECUTE format('ALTER TABLE reelscore.%I ALTER profile_id DROP DEFAULT, ALTER profile_version DROP DEFAULT, '
                 'ALTER definitions_version DROP DEFAULT, ALTER computed_at SET DEFAULT now()', v_new);
  -- the partition's own indexes, without the constant profile_id: narrower, cheaper to build
  EXECUTE format('ALTER TABLE reelscore.%I ADD CONSTRAINT %I PRIMARY KEY (movie_id)', v_new, v_new || '_pkey');
  v_floor := reelscore.sampled_ranking_floor(format('reelscore.%I', v_new)::regclass, v_n,
                                               (a.config ->> 'min_confidence')::float8);
  EXECUTE format('CREATE INDEX %I ON reelscore.%I (score DESC NULLS LAST, movie_id) WHERE score >= %L::float8',
                 v_new || '_top', v_new, v_floor);
  IF to_regclass(format('reelscore.%I', v_part)) IS NOT NULL THEN
    EXECUTE format('ALTER TABLE reelscore.movie_scores DETACH PARTITION reelscore.%I', v_part);
    EXECUTE format('DROP TABLE reelscore.%I', v_part);
  END IF;
  EXECUTE format('ALTER TABLE reelscore.%I RENAME TO %I', v_new, v_part);
  EXECUTE format('ALTER TABLE reelscore.%I RENAME CONSTRAINT %I TO %I', v_part, v_new || '_pkey', v_part || '_pkey');
  EXECUTE format('ALTER TABLE reelscore.%I RENAME CONSTRAINT %I TO %I', v_part, v_new || '_check', v_part || '_check');
  EXECUTE format('ALTER INDEX reelscore.%I RENAME TO %I', v_new || '_top', v_part || '_top');
  PERFORM reelscore.grant_partition_like_parent(format('reelscore.%I', v_part)::regclass);
  -- statistics now: a fresh table without them can make the planner sort instead of using _top
  EXECUTE format('ANALYZE reelscore.%I', v_part);
  EXECUTE format('ALTER TABLE reelscore.movie_scores ATTACH PARTITION reelscore.%I FOR VALUES IN (%s)', v_part, p_profile_id);
  INSERT INTO reelscore.profile_score_state AS s
    (profile_id, profile_version, definitions_version, stats_refreshed_at, movies, seconds, computed_at, top_floor)
  VALUES (p_profile_id, a.version, v_defs, v_stats, v_n, extract(epoch FROM clock_timestamp() - v_t0), now(), v_floor)
  ON CONFLICT (profile_id) DO UPDATE SET profile_version = excluded.profile_version,
    definitions_version = excluded.definitions_version, stats_refreshed_at = excluded.stats_refreshed_at,
    movies = excluded.movies, seconds = excluded.seconds, computed_at = excluded.computed_at,
    top_floor = excluded.top_floor;
  RETURN v_n;
END
$$;
REVOKE ALL ON FUNCTION reelscore.rescore_profile_id(bigint) FROM PUBLIC;
COMMENT ON FUNCTION reelscore.rescore_profile_id(bigint) IS
  'Full rescore of one profile from movie_features into its movie_scores partition (build and swap). Returns the number of movies.';

-- Rescore some movies: recompute their features, then their scores under every precomputed profile.
CREATE OR REPLACE FUNCTION reelscore.rescore_movies(p_movie_ids bigint[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET jit = off
AS $$
DECLARE
  a record;
  r record;
  v_defs bigint := reelscore.definitions_version();
  v_n bigint := 0;
  v_k bigint;
BEGIN
  IF p_movie_ids IS NULL OR cardinality(p_movie_ids) = 0 THEN
    RETURN 0;
  END IF;
  PERFORM reelscore.compute_features(p_movie_ids);
  FOR r IN SELECT s.profile_id FROM reelscore.profile_score_state s
           JOIN reelscore.weight_profiles p ON p.id = s.profile_id ORDER BY s.profile_id LOOP
    -- shared with other writers, excluded by a full rescore of the profile (which holds it
    -- exclusively from before it reads movie_features until it commits): that rescore builds a
    -- new partition from one snapshot and drops the old one, so scores written into the old one
    -- after its snapshot would be lost. In profile order, as refresh_scores takes them.
    PERFORM pg_catalog.pg_advisory_xact_lock_shared(pg_catalog.hashtext('reelscore.movie_scores'), r.profile_id::integer);
    SELECT * INTO a FROM reelscore.profile_weights_args(r.profile_id);
    -- into the profile's partition: its key is (movie_id), the parent has none
    EXECUTE format(
      'INSERT INTO reelscore.%I AS s (profile_id, movie_id, score, confidence, profile_version, definitions_version, computed_at) '
      'SELECT %s, x.movie_id, x.score, x.confidence, %s, %s, now() FROM (%s) x '
      'ON CONFLICT (movie_id) DO UPDATE SET score = excluded.score, confidence = excluded.confidence, '
      'profile_version = excluded.profile_version, definitions_version = excluded.definitions_version, computed_at = excluded.computed_at',
      reelscore.score_partition(r.profile_id), r.profile_id, a.version, v_defs,
      reelscore.score_sql(a.category_weights, a.metric_weights, a.config, 'f.movie_id = ANY ($1)'))
    USING p_movie_ids;
    GET DIAGNOSTICS v_k = ROW_COUNT;
    v_n := v_n + v_k;
  END LOOP;
  RETURN v_n;
END
$$;
COMMENT ON FUNCTION reelscore.rescore_movies(bigint[]) IS
  'Recompute the features of these movies from their raw values and their precomputed scores under every profile, set-based. Returns the number of score rows written.';

-- Raw value changes: statement-level triggers with transition tables. Small changes are
-- rescored in the same transaction; with reelscore.defer_scoring = on the touched movies'
-- features are only marked stale, and so are they when a statement touches more movies than
-- reelscore.incremental_limit (default 20000); past a quarter of the catalogue the whole
-- feature table is marked for one rebuild instead.
-- refresh_scores() (pg_cron or the CLI loop) catches up; movie_score computes fresh meanwhile.
CREATE OR REPLACE FUNCTION reelscore.values_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
SET jit = off
AS $$
DECLARE
  v_ids bigint[];
  v_limit integer := coalesce(nullif(current_setting('reelscore.incremental_limit', true), '')::integer, 20000);
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT array_agg(DISTINCT n.movie_id) INTO v_ids FROM new_rows n;
  ELSIF TG_OP = 'DELETE' THEN
    SELECT array_agg(DISTINCT o.movie_id) INTO v_ids FROM old_rows o;
  ELSE
    SELECT array_agg(DISTINCT x.movie_id) INTO v_ids FROM (
      SELECT n.movie_id FROM new_rows n
      LEFT JOIN old_rows o ON o.movie_id = n.movie_id AND o.metric_id = n.metric_id
      WHERE o.raw_value IS DISTINCT FROM n.raw_value OR o.movie_id IS NULL
      UNION ALL
      SELECT o.movie_id FROM old_rows o
      LEFT JOIN new_rows n ON o.movie_id = n.movie_id AND o.metric_id = n.metric_id
      WHERE n.movie_id IS NULL) x;
  END IF;
  IF v_ids IS NULL THEN
    RETURN NULL;
  END IF;
  IF cardinality(v_ids) > v_limit AND cardinality(v_ids) > (SELECT c.reltuples / 4 FROM pg_class c
                                                             WHERE c.oid = 'reelscore.movie_features'::regclass) THEN
    -- a load touching a quarter of the catalogue: one full rebuild of the feature table is
    -- cheaper than flagging each row and then recomputing them one set at a time
    UPDATE reelscore.scoring_state SET features_refreshed_at = NULL;
  ELSIF cardinality(v_ids) > v_limit OR coalesce(current_setting('reelscore.defer_scoring', true), '') = 'on' THEN
    PERFORM reelscore.mark_features_stale(v_ids);
  ELSE
    PERFORM reelscore.rescore_movies(v_ids);
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER metric_values_scoring_ins
  AFTER INSERT ON reelscore.metric_values REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION reelscore.values_changed();
CREATE OR REPLACE TRIGGER metric_values_scoring_upd
  AFTER UPDATE ON reelscore.metric_values REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION reelscore.values_changed();
CREATE OR REPLACE TRIGGER metric_values_scoring_del
  AFTER DELETE ON reelscore.metric_values REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION reelscore.values_changed();

CREATE OR REPLACE FUNCTION reelscore.movies_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
AS $$
BEGIN
  DELETE FROM reelscore.movie_features f USING old_rows o WHERE f.movie_id = o.id;
  DELETE FROM reelscore.movie_scores s USING old_rows o WHERE s.movie_id = o.id;
  DELETE FROM reelscore.similarity_vectors v USING old_rows o WHERE v.movie_id = o.id;
  RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER movies_scoring_del
  AFTER DELETE ON reelscore.movies REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION reelscore.movies_deleted();

-- What is stale, per profile.
CREATE OR REPLACE VIEW reelscore.score_staleness AS
SELECT p.id AS profile_id, p.name AS profile, p.active, p.current_version,
       s.profile_version AS scored_version, st.definitions_version AS current_definitions_version,
       s.definitions_version AS scored_definitions_version, s.computed_at, s.movies, s.seconds,
       (s.profile_id IS NULL AND p.active AND coalesce((p.config ->> 'precompute')::boolean, true)
        OR s.profile_version IS DISTINCT FROM p.current_version AND s.profile_id IS NOT NULL
        OR s.definitions_version < st.definitions_version
        OR s.stats_refreshed_at IS DISTINCT FROM st.stats_refreshed_at AND s.profile_id IS NOT NULL
        -- deactivated, or precompute turned off: the rescore drops its scores
        OR s.profile_id IS NOT NULL AND NOT (p.active AND coalesce((p.config ->> 'precompute')::boolean, true))
       ) AS needs_full_rescore,
       (SELECT count(*) FROM reelscore.movie_features f WHERE f.stale) AS stale_movies,
       coalesce(st.features_refreshed_at >= st.definitions_changed_at, false) AS features_current
FROM reelscore.weight_profiles p
CROSS JOIN reelscore.scoring_state st
LEFT JOIN reelscore.profile_score_state s ON s.profile_id = p.id;
COMMENT ON VIEW reelscore.score_staleness IS
  'Per profile: the version and definitions version its precomputed scores were computed from, when, and whether a full rescore is due; plus the number of movies whose features are stale.';

CREATE OR REPLACE FUNCTION reelscore.refresh_scores(profile text DEFAULT NULL)
RETURNS TABLE (profile_name text, action text, movies bigint, seconds double precision)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_t0 timestamptz;
  v_ids bigint[];
  v_n bigint;
  v_full boolean;
  r record;
BEGIN
  -- 1. features: a full rebuild after definition changes, else the stale movies only
  v_t0 := clock_timestamp();
  v_full := NOT reelscore.features_current();
  IF v_full THEN
    v_n := reelscore.refresh_features();
    profile_name := NULL; action := 'features: full rebuild'; movies := v_n;
    seconds := extract(epoch FROM clock_timestamp() - v_t0);
    RETURN NEXT;
  ELSE
    SELECT array_agg(f.movie_id) INTO v_ids FROM reelscore.movie_features f WHERE f.stale;
    IF v_ids IS NOT NULL THEN
      PERFORM reelscore.rescore_movies(v_ids);
      profile_name := NULL; action := 'stale movies rescored'; movies := cardinality(v_ids);
      seconds := extract(epoch FROM clock_timestamp() - v_t0);
      RETURN NEXT;
    END IF;
  END IF;
  -- 2. profiles: the named one, or every one whose scores are due
  FOR r IN SELECT s.profile_id, s.profile FROM reelscore.score_staleness s
           WHERE (refresh_scores.profile IS NULL AND s.needs_full_rescore)
              OR s.profile = refresh_scores.profile
           ORDER BY s.profile_id LOOP
    v_t0 := clock_timestamp();
    v_n := reelscore.rescore_profile_id(r.profile_id);
    profile_name := r.profile; action := 'full rescore'; movies := v_n;
    seconds := extract(epoch FROM clock_timestamp() - v_t0);
    RETURN NEXT;
  END LOOP;
  IF refresh_scores.profile IS NOT NULL AND NOT FOUND THEN
    PERFORM reelscore.profile_id(refresh_scores.profile);  -- raises for an unknown profile
  END IF;
  -- 3. the similarity index's copy of the vectors that changed
  v_t0 := clock_timestamp();
  v_n := reelscore.sync_similarity_vectors();
  IF v_n > 0 THEN
    profile_name := NULL; action := 'similarity vectors synced'; movies := v_n;
    seconds := extract(epoch FROM clock_timestamp() - v_t0);
    RETURN NEXT;
  END IF;
END
$$;
COMMENT ON FUNCTION reelscore.refresh_scores(text) IS
  'Bring precomputed scores up to date: rebuild features after definition changes (or rescore the movies whose features are stale), then fully rescore the given profile, or (NULL) every profile whose scores are due (see score_staleness), then sync the similarity vectors that changed. One row per step: profile, action, movies, seconds.';

-- ---------------------------------------------------------------------------------------
-- The public scoring API
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.movie_score_detail(movie_id bigint, profile text DEFAULT 'balanced',
                                                        p_user_id bigint DEFAULT NULL)
RETURNS TABLE (score double precision, confidence double precision, profile_name text, profile_version integer,
               definitions_version bigint, computed_at timestamptz, source text)
LANGUAGE plpgsql STABLE SECURITY INVOKER
-- generic plans: the breakdown query is expensive to plan (inlined formulas), cheap to run
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  v_name text := CASE WHEN p_user_id IS NULL THEN profile
                      ELSE reelscore.resolve_user_profile(p_user_id, profile) END;
  v_id bigint;
  v_ver integer;
  v_score float8;
  v_confidence float8;
  a record;
BEGIN
  SELECT p.id, p.current_version INTO v_id, v_ver FROM reelscore.weight_profiles p WHERE p.name = v_name;
  IF v_id IS NULL THEN
    PERFORM reelscore.profile_id(v_name);
  END IF;
  IF NOT pg_is_in_recovery() THEN  -- unlogged precomputed scores: none on a standby
    RETURN QUERY
    SELECT s.score, s.confidence, v_name, s.profile_version, s.definitions_version, s.computed_at, 'precomputed'::text
    FROM reelscore.movie_scores s
    WHERE s.profile_id = v_id AND s.movie_id = movie_score_detail.movie_id
      AND s.profile_version = v_ver AND s.definitions_version = reelscore.definitions_version()
      AND NOT EXISTS (SELECT 1 FROM reelscore.movie_features f WHERE f.movie_id = s.movie_id AND f.stale)
      AND reelscore.features_current();
    IF FOUND THEN
      RETURN;
    END IF;
  END IF;
  SELECT * INTO a FROM reelscore.profile_weights_args(v_id);
  SELECT x.score, x.confidence INTO v_score, v_confidence
  FROM reelscore.score_fresh(movie_score_detail.movie_id, a.category_weights, a.metric_weights, a.config) x;
  -- a movie with a score exists (its values reference it); only a NULL score may mean an
  -- unknown movie, so the check (an index probe, about 10% of a fresh score) runs only then
  IF v_score IS NULL THEN
    PERFORM reelscore.check_movie(movie_score_detail.movie_id);
  END IF;
  RETURN QUERY SELECT v_score, v_confidence, v_name, a.version, reelscore.definitions_version(), now(), 'fresh'::text;
END
$$;
COMMENT ON FUNCTION reelscore.movie_score_detail(bigint, text, bigint) IS
  'Score of a movie with its confidence, the profile (version) and definitions version it was computed from, and whether it was read precomputed or computed fresh from raw values (when the precomputed one is missing or stale). With p_user_id, the user''s profile (resolve_user_profile) replaces profile.';

CREATE OR REPLACE FUNCTION reelscore.movie_score(movie_id bigint, profile text DEFAULT 'balanced',
                                                 p_user_id bigint DEFAULT NULL)
RETURNS double precision
LANGUAGE plpgsql STABLE SECURITY INVOKER
-- generic plans: a custom plan of the score query (a partitioned table) was planned anew at
-- every call, 0.25 ms; the generic one prunes to the profile's partition when it runs
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  v_score float8;
  v_id bigint;
  v_ver integer;
BEGIN
  -- (precomputed scores are unlogged: a standby has none, it computes fresh)
  IF p_user_id IS NULL AND NOT pg_is_in_recovery() THEN
    -- the precomputed score, when it is current. The profile id first, as a value: the score
    -- query then reads one partition (its key is movie_id alone); joined to weight_profiles
    -- it probed every profile's partition (1.4 ms against 0.3 ms at 1M movies).
    SELECT p.id, p.current_version INTO v_id, v_ver FROM reelscore.weight_profiles p WHERE p.name = movie_score.profile;
    SELECT s.score INTO v_score
    FROM reelscore.movie_scores s
    CROSS JOIN reelscore.scoring_state st
    WHERE s.profile_id = v_id AND s.movie_id = movie_score.movie_id AND s.profile_version = v_ver
      AND s.definitions_version = st.definitions_version AND st.features_refreshed_at >= st.definitions_changed_at
      AND NOT EXISTS (SELECT 1 FROM reelscore.movie_features f WHERE f.movie_id = s.movie_id AND f.stale);
    IF FOUND THEN
      RETURN v_score;
    END IF;
  END IF;
  RETURN (SELECT d.score FROM reelscore.movie_score_detail(movie_score.movie_id, movie_score.profile, p_user_id) d);
END
$$;
COMMENT ON FUNCTION reelscore.movie_score(bigint, text, bigint) IS
  'Score of a movie (0..1) under a profile: precomputed when fresh, else computed from raw values. NULL when the movie has no data in any weighted category. With p_user_id, the user''s profile (own, assigned, else profile). Errors 22023: unknown movie or profile.';

CREATE OR REPLACE FUNCTION reelscore.score_movie_adhoc(movie_id bigint, weights jsonb) RETURNS double precision
LANGUAGE plpgsql STABLE SECURITY INVOKER
-- generic plans: the breakdown query is expensive to plan (inlined formulas), cheap to run
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  a record;
  v_score float8;
BEGIN
  SELECT * INTO a FROM reelscore.parse_adhoc_weights(weights);
  v_score := (SELECT x.score FROM reelscore.score_fresh(score_movie_adhoc.movie_id, a.category_weights,
                                                       a.metric_weights, a.config) x);
  IF v_score IS NULL THEN   -- only then may the movie be unknown (see movie_score_detail)
    PERFORM reelscore.check_movie(score_movie_adhoc.movie_id);
  END IF;
  RETURN v_score;
END
$$;
COMMENT ON FUNCTION reelscore.score_movie_adhoc(bigint, jsonb) IS
  'Score of a movie under unsaved weights {"categories": {"rating": 0.5, ...}, "metrics": {"imdb_rating": 2.0, ...}, "config": {...}, "profile": "base"} (see parse_adhoc_weights), fresh from raw values.';

CREATE OR REPLACE FUNCTION reelscore.top_movies(profile text DEFAULT 'balanced', lim integer DEFAULT 50,
                                                "off" integer DEFAULT 0)
RETURNS TABLE (movie_id bigint, title text, score double precision, confidence double precision,
               profile_version integer, computed_at timestamptz, stale boolean)
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
  v_id bigint := reelscore.profile_id(profile);
  v_ver integer;
  v_min float8;
  v_defs bigint := reelscore.definitions_version();
  v_floor float8;
  v_got bigint;
  v_above bigint;
  a record;
  -- $1 profile, $2 floor, $3 min confidence, $4 limit, $5 offset, $6 profile version, $7 definitions version
  -- (the page first, then its titles: a join under the LIMIT would keep the sort from
  -- stopping at the page, and look up the titles of every skipped row)
  c_rows CONSTANT text :=
    'SELECT s.movie_id, m.title, s.score, s.confidence, s.profile_version, s.computed_at, '
    '(s.profile_version <> $6 OR s.definitions_version <> $7) '
    'FROM (SELECT s.* FROM reelscore.movie_scores s WHERE s.profile_id = $1 AND s.confidence >= $3 AND %s '
    'ORDER BY s.score DESC NULLS LAST, s.movie_id LIMIT $4 OFFSET $5) s '
    'JOIN reelscore.movies m ON m.id = s.movie_id ORDER BY s.score DESC NULLS LAST, s.movie_id';
BEGIN
  IF lim IS NULL OR lim < 0 OR "off" IS NULL OR "off" < 0 THEN
    RAISE EXCEPTION 'lim and off must be >= 0, got % and %', lim, "off" USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT p.current_version, coalesce((p.config ->> 'min_confidence')::float8, 0) INTO v_ver, v_min
  FROM reelscore.weight_profiles p WHERE p.id = v_id;
  -- precomputed scores are unlogged: after a crash (until the next refresh) and on a standby
  -- there are none, and the top is computed now
  IF NOT pg_is_in_recovery() AND EXISTS (SELECT 1 FROM reelscore.profile_score_state s WHERE s.profile_id = v_id) THEN
    -- The ranking index holds the rows at or above the floor (migration 0021): the page from
    -- there, in index order; EXECUTE makes the floor a constant of the plan, which the
    -- planner needs to use the partial index.
    v_floor := reelscore.ranking_floor(v_id);
    RETURN QUERY EXECUTE format(c_rows, 's.score >= $2') USING v_id, v_floor, v_min, lim, "off", v_ver, v_defs;
    GET DIAGNOSTICS v_got = ROW_COUNT;
    IF v_got < lim THEN
      -- the page reaches below the floor: the rest of it from the rows under the floor (a scan
      -- and a sort), after the qualifying rows above the floor that the offset skips
      IF "off" = 0 THEN
        v_above := v_got;
      ELSE
        EXECUTE 'SELECT count(*) FROM reelscore.movie_scores s WHERE s.profile_id = $1 AND s.score >= $2 AND s.confidence >= $3'
          INTO v_above USING v_id, v_floor, v_min;
      END IF;
      RETURN QUERY EXECUTE format(c_rows, 'NOT (s.score >= $2)')
        USING v_id, v_floor, v_min, lim - v_got, greatest("off" - v_above, 0), v_ver, v_defs;
    END IF;
  ELSE
    -- not precomputed (config precompute = false, or not yet): exact, computed now
    SELECT * INTO a FROM reelscore.profile_weights_args(v_id);
    RETURN QUERY
    SELECT t.movie_id, m.title, t.score, t.confidence, a.version, now(), false
    FROM reelscore.top_n(a.category_weights, a.metric_weights, a.config, v_min, lim, "off") t
    JOIN reelscore.movies m ON m.id = t.movie_id
    ORDER BY t.score DESC, t.movie_id;
  END IF;
END
$$;
COMMENT ON FUNCTION reelscore.top_movies(text, integer, integer) IS
  'The best movies under a profile (an index scan of its precomputed scores), best first, ties by movie id; movies below the profile''s config.min_confidence are left out. stale says the row was computed from an older profile or definitions version.';

CREATE OR REPLACE FUNCTION reelscore.top_movies_adhoc(weights jsonb, lim integer DEFAULT 50, "off" integer DEFAULT 0)
RETURNS TABLE (movie_id bigint, title text, score double precision, confidence double precision)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET jit = off
AS $$
DECLARE
  a record;
BEGIN
  IF lim IS NULL OR lim < 0 OR "off" IS NULL OR "off" < 0 THEN
    RAISE EXCEPTION 'lim and off must be >= 0, got % and %', lim, "off" USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT * INTO a FROM reelscore.parse_adhoc_weights(weights);
  RETURN QUERY
  SELECT t.movie_id, m.title, t.score, t.confidence
  FROM reelscore.top_n(a.category_weights, a.metric_weights, a.config, (a.config ->> 'min_confidence')::float8,
                       lim, "off") t
  JOIN reelscore.movies m ON m.id = t.movie_id
  ORDER BY t.score DESC, t.movie_id;
END
$$;
COMMENT ON FUNCTION reelscore.top_movies_adhoc(jsonb, integer, integer) IS
  'The best movies under unsaved weights (format: see parse_adhoc_weights), exact: one set-based pass over movie_features. Returns movie_id, title, score, confidence.';

CREATE OR REPLACE FUNCTION reelscore.explain_sentence(movie_id bigint, profile text DEFAULT 'balanced') RETURNS text
LANGUAGE plpython3u STABLE SECURITY INVOKER
AS $$
if 'reelpy_import' not in GD:
    exec(plpy.execute("SELECT source FROM reelscore.plpy_modules WHERE name = 'reelpy._loader'")[0]['source'], GD)
return GD['reelpy_import'](plpy, GD, 'reelpy.explain').sentence_for(plpy, movie_id, profile)
$$;
COMMENT ON FUNCTION reelscore.explain_sentence(bigint, text) IS
  'A short sentence saying why a movie scored as it did under a profile ("high because of strong critic reviews and two Oscar wins; no box-office data"), from explain_score().';
