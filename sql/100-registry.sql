-- 100-registry: normalization formulas, raw-value checks, definition validation, normalize_value.

-- ---------------------------------------------------------------------------------------
-- The formulas. Pure math on arguments: IMMUTABLE PARALLEL SAFE single-SELECT SQL, so the
-- planner inlines them into set-based queries. They are not STRICT on purpose: a STRICT SQL
-- function is only inlined when its body is provably strict, and least()/greatest() are not.
-- A NULL argument still gives NULL.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.norm_linear(p_raw double precision, p_min double precision,
                                                 p_max double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  -- Fractions under 1e-290 are flushed to 0: PostgreSQL raises "underflow" rather than
  -- returning a denormal, and such a value means nothing on a 0..1 scale.
  SELECT least(1.0::float8, greatest(0.0::float8,
           CASE WHEN p_raw - p_min < 1e-290 * (p_max - p_min) THEN 0.0::float8
                ELSE (p_raw - p_min) / (p_max - p_min) END))
$$;
COMMENT ON FUNCTION reelscore.norm_linear(float8, float8, float8) IS
  'Linear normalization (raw - min) / (max - min), clamped to 0..1.';

CREATE OR REPLACE FUNCTION reelscore.norm_log(p_raw double precision, p_threshold double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$ SELECT least(1.0::float8, greatest(0.0::float8, ln(greatest(p_raw, 0) + 1) / ln(p_threshold + 1))) $$;
COMMENT ON FUNCTION reelscore.norm_log(float8, float8) IS
  'Logarithmic normalization ln(raw + 1) / ln(threshold + 1), clamped to 0..1.';

-- exp() overflows past 709: the exponent is capped at 700, where the result is 0 anyway.
CREATE OR REPLACE FUNCTION reelscore.norm_sigmoid(p_rank double precision, p_k double precision,
                                                  p_midpoint double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$ SELECT 1.0 / (1.0 + exp(least(p_k * (p_rank - p_midpoint), 700.0))) $$;
COMMENT ON FUNCTION reelscore.norm_sigmoid(float8, float8, float8) IS
  'Sigmoid on ranks 1 / (1 + exp(k * (rank - midpoint))): rank 1 near 1, far ranks near 0.';

-- Step map: value i maps to steps[i+1]; the last level holds for "n or more".
CREATE OR REPLACE FUNCTION reelscore.norm_steps(p_raw double precision, p_steps double precision[])
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$ SELECT p_steps[least(greatest(floor(p_raw), 0)::int, cardinality(p_steps) - 1) + 1] $$;
COMMENT ON FUNCTION reelscore.norm_steps(float8, float8[]) IS
  'Custom step map (e.g. the Oscar tables): count i gives steps[i+1], the last step for counts past the table.';

CREATE OR REPLACE FUNCTION reelscore.norm_boolean(p_raw double precision, p_value double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$ SELECT CASE WHEN p_raw <> 0 THEN p_value ELSE 0.0::float8 END $$;
COMMENT ON FUNCTION reelscore.norm_boolean(float8, float8) IS
  'Boolean normalization: true (non-zero) gives the metric''s value, false gives 0.';

-- a / b for 0 <= a <= b, with fractions under 1e-290 flushed to 0 (no "underflow" error).
CREATE OR REPLACE FUNCTION reelscore.safe_fraction(p_num double precision, p_den double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$ SELECT CASE WHEN p_num < 1e-290 * p_den THEN 0.0::float8 ELSE p_num / p_den END $$;
COMMENT ON FUNCTION reelscore.safe_fraction(float8, float8) IS
  'num / den for 0 <= num <= den, flushing results under 1e-290 to 0 instead of raising underflow.';

-- Piecewise linear between knots; p_args holds the n knot x values, then the n y values.
-- Below the first knot: the first y; past the last: the last y.
CREATE OR REPLACE FUNCTION reelscore.norm_piecewise(p_raw double precision, p_args double precision[])
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT CASE
    WHEN width_bucket(p_raw, p_args[1:cardinality(p_args) / 2]) = 0 THEN p_args[cardinality(p_args) / 2 + 1]
    WHEN width_bucket(p_raw, p_args[1:cardinality(p_args) / 2]) >= cardinality(p_args) / 2
      THEN p_args[cardinality(p_args)]
    ELSE p_args[cardinality(p_args) / 2 + width_bucket(p_raw, p_args[1:cardinality(p_args) / 2])]
       + reelscore.safe_fraction(
           p_raw - p_args[width_bucket(p_raw, p_args[1:cardinality(p_args) / 2])],
           p_args[width_bucket(p_raw, p_args[1:cardinality(p_args) / 2]) + 1]
             - p_args[width_bucket(p_raw, p_args[1:cardinality(p_args) / 2])])
       * (p_args[cardinality(p_args) / 2 + width_bucket(p_raw, p_args[1:cardinality(p_args) / 2]) + 1]
          - p_args[cardinality(p_args) / 2 + width_bucket(p_raw, p_args[1:cardinality(p_args) / 2])])
  END
$$;
COMMENT ON FUNCTION reelscore.norm_piecewise(float8, float8[]) IS
  'Piecewise linear normalization between knots (x1..xn, y1..yn), flat outside the knots.';

-- Empirical CDF from n ascending quantile knots q1..qn (knot i sits at cumulative share
-- (i-1)/(n-1)), linear between knots: below q1 gives 0, at or past qn gives 1.
CREATE OR REPLACE FUNCTION reelscore.norm_percentile(p_raw double precision, p_quantiles double precision[])
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT CASE
    WHEN width_bucket(p_raw, p_quantiles) = 0 THEN 0.0::float8
    WHEN width_bucket(p_raw, p_quantiles) >= cardinality(p_quantiles) THEN 1.0::float8
    ELSE ((width_bucket(p_raw, p_quantiles) - 1)
          + reelscore.safe_fraction(p_raw - p_quantiles[width_bucket(p_raw, p_quantiles)],
              p_quantiles[width_bucket(p_raw, p_quantiles) + 1] - p_quantiles[width_bucket(p_raw, p_quantiles)]))
         / (cardinality(p_quantiles) - 1)
  END
$$;
COMMENT ON FUNCTION reelscore.norm_percentile(float8, float8[]) IS
  'Percentile normalization: the raw value''s empirical CDF, interpolated between stored quantile knots.';

-- One dispatcher over decoded arguments (metric_definitions.norm_args, or the stored
-- quantiles for 'percentile'): what set-based code calls per row. Inlines to a CASE.
CREATE OR REPLACE FUNCTION reelscore.normalize_with(p_type text, p_args double precision[],
                                                    p_raw double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT CASE p_type
    WHEN 'linear'      THEN reelscore.norm_linear(p_raw, p_args[1], p_args[2])
    WHEN 'logarithmic' THEN reelscore.norm_log(p_raw, p_args[1])
    WHEN 'sigmoid'     THEN reelscore.norm_sigmoid(p_raw, p_args[1], p_args[2])
    WHEN 'custom'      THEN reelscore.norm_steps(p_raw, p_args)
    WHEN 'boolean'     THEN reelscore.norm_boolean(p_raw, p_args[1])
    WHEN 'piecewise'   THEN reelscore.norm_piecewise(p_raw, p_args)
    WHEN 'percentile'  THEN reelscore.norm_percentile(p_raw, p_args)
  END
$$;
COMMENT ON FUNCTION reelscore.normalize_with(text, float8[], float8) IS
  'Normalize a raw value given a normalization type and its decoded arguments (no table access).';

-- Why a raw value cannot be accepted for a metric, or NULL when it can. Shared by
-- normalize_value (which raises) and the loaders (which quarantine the row with it).
-- Messages are built with || and ::text, not format(): format() is STABLE, and an IMMUTABLE
-- SQL function whose body holds a STABLE call is never inlined (25 us a row in bulk loads).
CREATE OR REPLACE FUNCTION reelscore.raw_value_problem(p_data_type text, p_min double precision,
                                                       p_max double precision, p_raw double precision)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT CASE
    WHEN p_raw IS NULL THEN 'missing value'
    WHEN p_raw = 'NaN'::float8 THEN 'not a number (NaN)'
    WHEN p_raw IN ('Infinity'::float8, '-Infinity'::float8) THEN 'infinite value'
    WHEN p_data_type = 'boolean' AND p_raw NOT IN (0, 1) THEN 'boolean value must be 0 or 1, got ' || p_raw::text
    WHEN p_min IS NOT NULL AND p_raw < p_min THEN 'value ' || p_raw::text || ' is below the raw scale minimum ' || p_min::text
    WHEN p_max IS NOT NULL AND p_raw > p_max THEN 'value ' || p_raw::text || ' is above the raw scale maximum ' || p_max::text
    WHEN p_data_type IN ('count', 'rank') AND p_raw <> floor(p_raw)
      THEN p_data_type || ' value must be a whole number, got ' || p_raw::text
  END
$$;
COMMENT ON FUNCTION reelscore.raw_value_problem(text, float8, float8, float8) IS
  'Why a raw value is not acceptable for a metric of this data type and raw scale, or NULL if it is.';

-- Per metric, what set-based normalization needs: type and decoded arguments (stored
-- quantiles for 'percentile'), raw-scale bounds and data type for checks.
CREATE OR REPLACE VIEW reelscore.metric_norm_params AS
SELECT d.id AS metric_id, d.code AS metric_code, d.category, d.slot, d.data_type,
       d.normalization_type, d.raw_scale_min, d.raw_scale_max, d.version, d.active,
       CASE WHEN d.normalization_type = 'percentile' THEN dist.quantiles ELSE d.norm_args END AS args
FROM reelscore.metric_definitions d
LEFT JOIN reelscore.metric_distributions dist ON dist.metric_id = d.id;
COMMENT ON VIEW reelscore.metric_norm_params IS
  'Decoded normalization arguments per metric, for joining into set-based normalization.';
-- Statistics for the registry's small tables, at every install and upgrade. Autovacuum never
-- analyzes a table that stays empty (metric_distributions until a percentile metric exists),
-- and a never-analyzed table is planned as ten pages of rows: every set-based normalization
-- joining metric_norm_params was then estimated 36 times too large (200k time-series points
-- planned as 7.2M rows), enough to pay a JIT compile of 0.7-1 s per bulk insert.
ANALYZE reelscore.metric_definitions, reelscore.metric_distributions;

-- ---------------------------------------------------------------------------------------
-- normalize_value: the public entry point. Validates, then dispatches on the definition.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.normalize_value(metric_code text, raw double precision)
RETURNS double precision
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
DECLARE
  v reelscore.metric_norm_params%ROWTYPE;
  v_problem text;
BEGIN
  IF raw IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT * INTO v FROM reelscore.metric_norm_params p WHERE p.metric_code = normalize_value.metric_code;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown metric code: %', coalesce(quote_literal(normalize_value.metric_code), 'NULL')
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'SELECT code FROM reelscore.metric_definitions lists the known metrics.';
  END IF;
  v_problem := reelscore.raw_value_problem(v.data_type, v.raw_scale_min, v.raw_scale_max, raw);
  IF v_problem IS NOT NULL THEN
    RAISE EXCEPTION 'invalid raw value for %: %', v.metric_code, v_problem
      USING ERRCODE = CASE WHEN v_problem LIKE '%raw scale%' THEN 'numeric_value_out_of_range'
                           ELSE 'invalid_parameter_value' END,
            DETAIL = format('raw scale [%s, %s], data type %s', coalesce(v.raw_scale_min::text, '-inf'),
                            coalesce(v.raw_scale_max::text, 'inf'), v.data_type);
  END IF;
  IF v.args IS NULL OR cardinality(v.args) = 0 THEN
    RAISE EXCEPTION 'no stored distribution for percentile metric %', v.metric_code
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Run SELECT reelscore.refresh_distributions() after loading values.';
  END IF;
  RETURN reelscore.normalize_with(v.normalization_type, v.args, raw);
END
$$;
COMMENT ON FUNCTION reelscore.normalize_value(text, float8) IS
  'Normalize one raw value of a metric to 0..1 per its definition. Errors (SQLSTATE 22023 / 22003 / 55000) on an unknown metric, NaN, infinity, a value outside the raw scale, or a percentile metric without a stored distribution. NULL gives NULL.';

-- ---------------------------------------------------------------------------------------
-- Definition validation: params must fit the type; decoded into norm_args. Errors name the field.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.decode_normalization_params(
  p_code text, p_type text, p_params jsonb, p_min double precision, p_max double precision)
RETURNS double precision[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
DECLARE
  v_allowed text[];
  v_key text;
  v_args float8[] := '{}';
  v_elem jsonb;
  v_prev float8;
  v_x float8;
  v_y float8;
  v_xs float8[] := '{}';
  v_ys float8[] := '{}';
BEGIN
  IF p_params IS NULL OR jsonb_typeof(p_params) <> 'object' THEN
    RAISE EXCEPTION 'metric %: normalization_params must be a JSON object', p_code
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  v_allowed := CASE p_type
    WHEN 'linear' THEN '{}'::text[] WHEN 'logarithmic' THEN '{threshold}' WHEN 'sigmoid' THEN '{k,midpoint}'
    WHEN 'custom' THEN '{steps}' WHEN 'boolean' THEN '{value}' WHEN 'piecewise' THEN '{knots}'
    WHEN 'percentile' THEN '{}' END;
  IF v_allowed IS NULL THEN
    RAISE EXCEPTION 'metric %: unknown normalization_type %', p_code, quote_literal(p_type)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'One of linear, logarithmic, sigmoid, custom, boolean, piecewise, percentile.';
  END IF;
  FOR v_key IN SELECT jsonb_object_keys(p_params) LOOP
    IF NOT v_key = ANY (v_allowed) THEN
      RAISE EXCEPTION 'metric %: normalization_params.% is not a parameter of % normalization', p_code, v_key, p_type
        USING ERRCODE = 'invalid_parameter_value',
              HINT = format('%s takes: %s', p_type, coalesce(nullif(array_to_string(v_allowed, ', '), ''), 'no parameters'));
    END IF;
  END LOOP;
  FOREACH v_key IN ARRAY v_allowed LOOP
    IF NOT p_params ? v_key THEN
      RAISE EXCEPTION 'metric %: normalization_params.% is required for % normalization', p_code, v_key, p_type
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_key IN ('threshold', 'k', 'midpoint', 'value') AND jsonb_typeof(p_params -> v_key) <> 'number' THEN
      RAISE EXCEPTION 'metric %: normalization_params.% must be a number, got %', p_code, v_key, p_params -> v_key
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
  END LOOP;

  CASE p_type
  WHEN 'linear' THEN
    IF p_min IS NULL OR p_max IS NULL THEN
      RAISE EXCEPTION 'metric %: linear normalization needs raw_scale_min and raw_scale_max', p_code
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_args := ARRAY[p_min, p_max];
  WHEN 'logarithmic' THEN
    IF (p_params ->> 'threshold')::float8 <= 0 THEN
      RAISE EXCEPTION 'metric %: normalization_params.threshold must be > 0, got %', p_code, p_params -> 'threshold'
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_args := ARRAY[(p_params ->> 'threshold')::float8];
  WHEN 'sigmoid' THEN
    IF (p_params ->> 'k')::float8 <= 0 THEN
      RAISE EXCEPTION 'metric %: normalization_params.k must be > 0 (better ranks are smaller), got %', p_code, p_params -> 'k'
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_args := ARRAY[(p_params ->> 'k')::float8, (p_params ->> 'midpoint')::float8];
  WHEN 'boolean' THEN
    IF (p_params ->> 'value')::float8 NOT BETWEEN 0 AND 1 THEN
      RAISE EXCEPTION 'metric %: normalization_params.value must be between 0 and 1, got %', p_code, p_params -> 'value'
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_args := ARRAY[(p_params ->> 'value')::float8];
  WHEN 'custom' THEN
    IF jsonb_typeof(p_params -> 'steps') <> 'array' OR jsonb_array_length(p_params -> 'steps') = 0 THEN
      RAISE EXCEPTION 'metric %: normalization_params.steps must be a non-empty array of numbers in 0..1', p_code
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR v_elem IN SELECT jsonb_array_elements(p_params -> 'steps') LOOP
      IF jsonb_typeof(v_elem) <> 'number' OR v_elem::text::float8 NOT BETWEEN 0 AND 1 THEN
        RAISE EXCEPTION 'metric %: normalization_params.steps holds %, not a number in 0..1', p_code, v_elem
          USING ERRCODE = 'invalid_parameter_value';
      END IF;
      v_args := v_args || v_elem::text::float8;
    END LOOP;
  WHEN 'piecewise' THEN
    IF jsonb_typeof(p_params -> 'knots') <> 'array' OR jsonb_array_length(p_params -> 'knots') < 2 THEN
      RAISE EXCEPTION 'metric %: normalization_params.knots must be an array of at least two [x, y] pairs', p_code
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR v_elem IN SELECT jsonb_array_elements(p_params -> 'knots') LOOP
      IF jsonb_typeof(v_elem) <> 'array' OR jsonb_array_length(v_elem) <> 2
         OR jsonb_typeof(v_elem -> 0) <> 'number' OR jsonb_typeof(v_elem -> 1) <> 'number' THEN
        RAISE EXCEPTION 'metric %: normalization_params.knots holds %, not an [x, y] pair of numbers', p_code, v_elem
          USING ERRCODE = 'invalid_parameter_value';
      END IF;
      v_x := (v_elem ->> 0)::float8;
      v_y := (v_elem ->> 1)::float8;
      IF v_prev IS NOT NULL AND v_x <= v_prev THEN
        RAISE EXCEPTION 'metric %: normalization_params.knots x values must increase, % follows %', p_code, v_x, v_prev
          USING ERRCODE = 'invalid_parameter_value';
      END IF;
      IF v_y NOT BETWEEN 0 AND 1 THEN
        RAISE EXCEPTION 'metric %: normalization_params.knots y value % is outside 0..1', p_code, v_y
          USING ERRCODE = 'invalid_parameter_value';
      END IF;
      v_prev := v_x;
      v_xs := v_xs || v_x;
      v_ys := v_ys || v_y;
    END LOOP;
    v_args := v_xs || v_ys;
  WHEN 'percentile' THEN
    v_args := '{}';  -- the stored distribution (metric_distributions) supplies the knots
  END CASE;
  RETURN v_args;
END
$$;
COMMENT ON FUNCTION reelscore.decode_normalization_params(text, text, jsonb, float8, float8) IS
  'Validate normalization_params for a normalization type and decode them into numbers; errors name the field.';

CREATE OR REPLACE FUNCTION reelscore.metric_definitions_validate() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
AS $$
BEGIN
  IF NEW.code !~ '^[a-z0-9_]{2,50}$' THEN
    RAISE EXCEPTION 'metric code % must be 2-50 characters of a-z, 0-9 and _', quote_literal(NEW.code)
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF NEW.data_type = 'boolean' AND NEW.normalization_type NOT IN ('boolean') THEN
    RAISE EXCEPTION 'metric %: a boolean metric needs boolean normalization, not %', NEW.code, NEW.normalization_type
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  NEW.norm_args := reelscore.decode_normalization_params(NEW.code, NEW.normalization_type,
                     NEW.normalization_params, NEW.raw_scale_min, NEW.raw_scale_max);
  IF TG_OP = 'UPDATE' THEN
    IF NEW.code IS DISTINCT FROM OLD.code THEN
      RAISE EXCEPTION 'metric %: the code of a metric cannot change (values and profiles refer to it)', OLD.code
        USING ERRCODE = 'feature_not_supported', HINT = 'Add a new metric and deactivate the old one.';
    END IF;
    IF (NEW.normalization_type, NEW.normalization_params, NEW.raw_scale_min, NEW.raw_scale_max, NEW.normalized_weight,
        NEW.missing_policy, NEW.missing_value, NEW.category, NEW.active)
       IS DISTINCT FROM
       (OLD.normalization_type, OLD.normalization_params, OLD.raw_scale_min, OLD.raw_scale_max, OLD.normalized_weight,
        OLD.missing_policy, OLD.missing_value, OLD.category, OLD.active) THEN
      NEW.version := OLD.version + 1;   -- what was derived from the old version is now stale
    END IF;
    IF row(NEW.*) IS DISTINCT FROM row(OLD.*) THEN
      NEW.updated_at := now();
    END IF;
  END IF;
  RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION reelscore.metric_definitions_record() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND row(NEW.*) IS NOT DISTINCT FROM row(OLD.*) THEN
    RETURN NULL;
  END IF;
  INSERT INTO reelscore.metric_definition_history
    (metric_code, version, changed_by, old_values, new_values, change_reason)
  VALUES (coalesce(NEW.code, OLD.code), coalesce(NEW.version, OLD.version), reelscore.current_actor(),
          CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) - 'norm_args' END,
          CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) - 'norm_args' END,
          reelscore.current_reason());
  RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER metric_definitions_validate
  BEFORE INSERT OR UPDATE ON reelscore.metric_definitions
  FOR EACH ROW EXECUTE FUNCTION reelscore.metric_definitions_validate();
CREATE OR REPLACE TRIGGER metric_definitions_record
  AFTER INSERT OR UPDATE OR DELETE ON reelscore.metric_definitions
  FOR EACH ROW EXECUTE FUNCTION reelscore.metric_definitions_record();

-- Decode the params of rows written before these triggers existed (the seed). A no-op
-- once decoded: the UPDATE touches only rows whose norm_args are still empty.
UPDATE reelscore.metric_definitions
SET norm_args = reelscore.decode_normalization_params(code, normalization_type, normalization_params,
                                                      raw_scale_min, raw_scale_max)
WHERE norm_args = '{}' AND normalization_type <> 'percentile';

-- ---------------------------------------------------------------------------------------
-- Stored distributions for 'percentile' normalization.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.refresh_distributions(p_knots integer DEFAULT 101)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_n integer;
BEGIN
  IF p_knots IS NULL OR p_knots NOT BETWEEN 2 AND 10001 THEN
    RAISE EXCEPTION 'p_knots must be between 2 and 10001, got %', p_knots USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF to_regclass('reelscore.metric_values') IS NULL THEN
    RETURN 0;
  END IF;
  EXECUTE $q$
    INSERT INTO reelscore.metric_distributions AS md (metric_id, quantiles, sample_size, refreshed_at)
    SELECT v.metric_id,
           percentile_cont((SELECT array_agg(i::float8 / ($1 - 1)) FROM generate_series(0, $1 - 1) i))
             WITHIN GROUP (ORDER BY v.raw_value),
           count(*), now()
    FROM reelscore.metric_values v
    GROUP BY v.metric_id
    ON CONFLICT (metric_id) DO UPDATE
      SET quantiles = excluded.quantiles, sample_size = excluded.sample_size, refreshed_at = excluded.refreshed_at
  $q$ USING p_knots;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  RETURN v_n;
END
$$;
COMMENT ON FUNCTION reelscore.refresh_distributions(integer) IS
  'Recompute every metric''s stored distribution (p_knots quantile knots of its raw values), used by percentile normalization. Returns the number of metrics refreshed.';
