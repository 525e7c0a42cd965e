-- 400-search: search_movies (the seed's search use cases) and the validation of its filter JSON.
--
-- A filter is validated into a normalized tree (validate_search_filters), the tree is
-- rendered into SQL text (search_query) whose only variable parts are fixed column names
-- chosen from whitelists and references into ONE jsonb parameter ($2->i) holding the
-- validated values; the query then runs through EXECUTE ... USING. Nothing a filter
-- contains ever becomes SQL text. EXECUTE plans with the parameter values (a custom plan),
-- so the planner sees the real thresholds and picks the driving index itself.

-- ---------------------------------------------------------------------------------------
-- Small helpers
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.jsonb_text_array(p_value jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SECURITY INVOKER
AS $$ SELECT coalesce(array_agg(x ORDER BY n), '{}') FROM jsonb_array_elements_text(p_value) WITH ORDINALITY AS t(x, n) $$;
COMMENT ON FUNCTION reelscore.jsonb_text_array(jsonb) IS
  'A JSON array of strings as text[] (empty array for []).';

CREATE OR REPLACE FUNCTION reelscore.jsonb_float_array(p_value jsonb) RETURNS double precision[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SECURITY INVOKER
AS $$ SELECT coalesce(array_agg(x::float8 ORDER BY n), '{}') FROM jsonb_array_elements_text(p_value) WITH ORDINALITY AS t(x, n) $$;
COMMENT ON FUNCTION reelscore.jsonb_float_array(jsonb) IS
  'A JSON array of numbers as double precision[] (empty array for []).';

-- Raise the one error every bad filter gets: SQLSTATE 22023, the offending key (its path
-- in the document, e.g. filters[1].min_normalized) in the message and in the COLUMN field.
CREATE OR REPLACE FUNCTION reelscore.search_filter_error(p_key text, p_problem text, p_value jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
DECLARE
  v_key text := CASE WHEN length(p_key) > 80 THEN left(p_key, 77) || '...' ELSE p_key END;
  v_value text := left(coalesce(p_value::text, ''), 120);
  v_hint text := 'A filter object takes category, metric_code, min_normalized, max_normalized, min_raw_value, '
                 || 'max_raw_value, genre, year_min, year_max, filters (all must hold) and any (one must hold); '
                 || 'see docs/search.md.';
BEGIN
  IF p_value IS NULL THEN
    RAISE EXCEPTION 'invalid search filter: "%" %', v_key, p_problem
      USING ERRCODE = 'invalid_parameter_value', COLUMN = v_key, HINT = v_hint;
  END IF;
  RAISE EXCEPTION 'invalid search filter: "%" %', v_key, p_problem
    USING ERRCODE = 'invalid_parameter_value', COLUMN = v_key, HINT = v_hint,
          DETAIL = format('offending value: %s', v_value);
END
$$;
COMMENT ON FUNCTION reelscore.search_filter_error(text, text, jsonb) IS
  'Raise SQLSTATE 22023 for a bad search filter, naming the offending key (also in the error''s COLUMN field).';

-- ---------------------------------------------------------------------------------------
-- Validation: one filter object -> a node of the normalized tree.
--   node := {"op": "and"|"or", "items": [node, ...]}
--         | {"i": n, "kind": "category", "category": c, "key": c, "min": x, "max": y}
--         | {"i": n, "kind": "metric", "measure": "raw"|"normalized", "metric_id": id, "key": code,
--            "type": normalization_type, "args": [...], "min": x, "max": y}
--           (args absent on a raw condition whose metric has none: a percentile metric without
--            its distribution)
--         | {"i": n, "kind": "genre", "genres": [...], "key": "genres"}
--         | {"i": n, "kind": "year", "min": y1, "max": y2, "key": "release_year"}
-- "i" numbers the conditions 1..n in document order; min/max are absent when not given.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.search_filter_node(p_node jsonb, p_path text, p_depth integer,
                                                       INOUT p_count integer, OUT p_tree jsonb)
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
DECLARE
  c_keys CONSTANT text[] := ARRAY['category', 'metric_code', 'min_normalized', 'max_normalized', 'min_raw_value',
                                  'max_raw_value', 'genre', 'year_min', 'year_max', 'filters', 'any'];
  c_annotations CONSTANT text[] := ARRAY['recognized', 'unparsed'];
  c_categories CONSTANT text[] := ARRAY['rating', 'award', 'financial', 'cultural', 'popularity'];
  c_max_depth CONSTANT integer := 4;
  c_max_items CONSTANT integer := 32;
  c_max_conditions CONSTANT integer := 32;
  v_prefix text := CASE WHEN p_path = '' THEN '' ELSE p_path || '.' END;
  v_key text;
  v_items jsonb := '[]';
  v_child jsonb;
  v_elem jsonb;
  v_n integer;
  v_atom jsonb;
  v_metric record;
  v_bound text;
  v_num numeric;
  v_genres jsonb;
  v_list text;
BEGIN
  IF p_depth > c_max_depth THEN
    PERFORM reelscore.search_filter_error(rtrim(p_path, '.'),
      format('is nested too deep: at most %s levels of filters/any', c_max_depth));
  END IF;
  IF jsonb_typeof(p_node) IS DISTINCT FROM 'object' THEN
    PERFORM reelscore.search_filter_error(coalesce(nullif(p_path, ''), '(filters)'),
      format('must be a JSON object, got %s', coalesce(jsonb_typeof(p_node), 'NULL')), p_node);
  END IF;

  -- Keys: known ones only (annotations of parse_query's output are accepted at the top level).
  FOR v_key IN SELECT k FROM jsonb_object_keys(p_node) AS k ORDER BY k LOOP
    IF v_key = ANY (c_annotations) AND p_depth = 1 THEN
      IF jsonb_typeof(p_node -> v_key) <> 'array' OR EXISTS (
           SELECT 1 FROM jsonb_array_elements(p_node -> v_key) e WHERE jsonb_typeof(e) <> 'string') THEN
        PERFORM reelscore.search_filter_error(v_prefix || v_key, 'must be an array of strings (an annotation)',
                                              p_node -> v_key);
      END IF;
    ELSIF NOT v_key = ANY (c_keys) THEN
      PERFORM reelscore.search_filter_error(v_prefix || v_key, 'is not a filter key');
    END IF;
  END LOOP;

  -- Numbers.
  FOREACH v_bound IN ARRAY ARRAY['min_normalized', 'max_normalized', 'min_raw_value', 'max_raw_value',
                                 'year_min', 'year_max'] LOOP
    IF p_node ? v_bound THEN
      IF jsonb_typeof(p_node -> v_bound) <> 'number' THEN
        PERFORM reelscore.search_filter_error(v_prefix || v_bound,
          format('must be a number, got %s', jsonb_typeof(p_node -> v_bound)), p_node -> v_bound);
      END IF;
      v_num := (p_node ->> v_bound)::numeric;
      IF v_bound LIKE '%normalized' AND v_num NOT BETWEEN 0 AND 1 THEN
        PERFORM reelscore.search_filter_error(v_prefix || v_bound,
          'must be between 0 and 1 (normalized values are in 0..1)', p_node -> v_bound);
      ELSIF v_bound LIKE '%raw_value' AND abs(v_num) > 1e15 THEN
        PERFORM reelscore.search_filter_error(v_prefix || v_bound, 'is out of range (|value| <= 1e15)',
                                              p_node -> v_bound);
      ELSIF v_bound LIKE 'year%' AND (v_num <> trunc(v_num) OR v_num NOT BETWEEN 1800 AND 2200) THEN
        PERFORM reelscore.search_filter_error(v_prefix || v_bound, 'must be a whole year between 1800 and 2200',
                                              p_node -> v_bound);
      END IF;
    END IF;
  END LOOP;
  FOREACH v_bound IN ARRAY ARRAY['normalized', 'raw_value'] LOOP
    IF p_node ? ('min_' || v_bound) AND p_node ? ('max_' || v_bound)
       AND (p_node ->> ('min_' || v_bound))::numeric > (p_node ->> ('max_' || v_bound))::numeric THEN
      PERFORM reelscore.search_filter_error(v_prefix || 'min_' || v_bound,
        format('(%s) is above max_%s (%s)', p_node ->> ('min_' || v_bound), v_bound, p_node ->> ('max_' || v_bound)),
        p_node -> ('min_' || v_bound));
    END IF;
  END LOOP;
  IF p_node ? 'year_min' AND p_node ? 'year_max'
     AND (p_node ->> 'year_min')::numeric > (p_node ->> 'year_max')::numeric THEN
    PERFORM reelscore.search_filter_error(v_prefix || 'year_min',
      format('(%s) is above year_max (%s)', p_node ->> 'year_min', p_node ->> 'year_max'), p_node -> 'year_min');
  END IF;

  -- The target of the bounds: a category (normalized only) or a metric.
  IF p_node ? 'category' AND p_node ? 'metric_code' THEN
    PERFORM reelscore.search_filter_error(v_prefix || 'metric_code',
      'cannot be combined with category in one object (put each in its own object of "filters")');
  END IF;
  IF p_node ? 'category' THEN
    IF jsonb_typeof(p_node -> 'category') <> 'string' THEN
      PERFORM reelscore.search_filter_error(v_prefix || 'category',
        format('must be a string, got %s', jsonb_typeof(p_node -> 'category')), p_node -> 'category');
    END IF;
    IF NOT (p_node ->> 'category') = ANY (c_categories) THEN
      PERFORM reelscore.search_filter_error(v_prefix || 'category',
        format('is not a category: %s (one of %s)', left(quote_literal(p_node ->> 'category'), 80),
               array_to_string(c_categories, ', ')), p_node -> 'category');
    END IF;
    FOREACH v_bound IN ARRAY ARRAY['min_raw_value', 'max_raw_value'] LOOP
      IF p_node ? v_bound THEN
        PERFORM reelscore.search_filter_error(v_prefix || v_bound,
          'applies to a metric_code only: a category has normalized values (use min_normalized / max_normalized)');
      END IF;
    END LOOP;
    IF NOT (p_node ? 'min_normalized' OR p_node ? 'max_normalized') THEN
      PERFORM reelscore.search_filter_error(v_prefix || 'category', 'needs min_normalized and/or max_normalized');
    END IF;
    p_count := p_count + 1;
    v_atom := jsonb_build_object('i', p_count, 'kind', 'category', 'category', p_node ->> 'category',
                                 'key', p_node ->> 'category', 'path', v_prefix || 'category');
    IF p_node ? 'min_normalized' THEN v_atom := v_atom || jsonb_build_object('min', p_node -> 'min_normalized'); END IF;
    IF p_node ? 'max_normalized' THEN v_atom := v_atom || jsonb_build_object('max', p_node -> 'max_normalized'); END IF;
    v_items := v_items || jsonb_build_array(v_atom);
  ELSIF p_node ? 'metric_code' THEN
    IF jsonb_typeof(p_node -> 'metric_code') <> 'string' THEN
      PERFORM reelscore.search_filter_error(v_prefix || 'metric_code',
        format('must be a string, got %s', jsonb_typeof(p_node -> 'metric_code')), p_node -> 'metric_code');
    END IF;
    SELECT p.metric_id, p.metric_code, p.normalization_type, p.args, p.slot, p.active INTO v_metric
    FROM reelscore.metric_norm_params p WHERE p.metric_code = (p_node ->> 'metric_code');
    IF NOT FOUND THEN
      SELECT string_agg(d.code, ', ' ORDER BY similarity(d.code, p_node ->> 'metric_code') DESC, d.code) INTO v_list
      FROM (SELECT code FROM reelscore.metric_definitions
            ORDER BY similarity(code, p_node ->> 'metric_code') DESC, code LIMIT 3) d;
      PERFORM reelscore.search_filter_error(v_prefix || 'metric_code',
        format('is not a known metric: %s (closest: %s)', left(quote_literal(p_node ->> 'metric_code'), 80),
               coalesce(v_list, 'none')), p_node -> 'metric_code');
    END IF;
    IF NOT (p_node ? 'min_normalized' OR p_node ? 'max_normalized' OR p_node ? 'min_raw_value'
            OR p_node ? 'max_raw_value') THEN
      PERFORM reelscore.search_filter_error(v_prefix || 'metric_code',
        'needs a bound: min_raw_value, max_raw_value, min_normalized or max_normalized');
    END IF;
    IF p_node ? 'min_raw_value' OR p_node ? 'max_raw_value' THEN
      p_count := p_count + 1;
      -- type and args ride along (args only when the metric has them: a percentile metric
      -- may lack its distribution): the matched column normalizes the value with them, as
      -- constants of the plan, instead of joining metric_norm_params (1.3 ms more planning)
      v_atom := jsonb_build_object('i', p_count, 'kind', 'metric', 'measure', 'raw', 'metric_id', v_metric.metric_id,
                                   'key', v_metric.metric_code, 'type', v_metric.normalization_type,
                                   'path', v_prefix || 'metric_code')
                || CASE WHEN v_metric.args IS NULL THEN '{}'::jsonb
                        ELSE jsonb_build_object('args', to_jsonb(v_metric.args)) END;
      IF p_node ? 'min_raw_value' THEN v_atom := v_atom || jsonb_build_object('min', p_node -> 'min_raw_value'); END IF;
      IF p_node ? 'max_raw_value' THEN v_atom := v_atom || jsonb_build_object('max', p_node -> 'max_raw_value'); END IF;
      v_items := v_items || jsonb_build_array(v_atom);
    END IF;
    IF p_node ? 'min_normalized' OR p_node ? 'max_normalized' THEN
      IF v_metric.args IS NULL OR cardinality(v_metric.args) = 0 THEN
        RAISE EXCEPTION 'search filter "%": metric % has no stored distribution for its percentile normalization',
                        v_prefix || 'metric_code', v_metric.metric_code
          USING ERRCODE = 'object_not_in_prerequisite_state',
                HINT = 'Run SELECT reelscore.refresh_distributions() after loading values.';
      END IF;
      p_count := p_count + 1;
      v_atom := jsonb_build_object('i', p_count, 'kind', 'metric', 'measure', 'normalized',
                                   'metric_id', v_metric.metric_id, 'key', v_metric.metric_code,
                                   'type', v_metric.normalization_type, 'args', to_jsonb(v_metric.args),
                                   'path', v_prefix || 'metric_code')
                -- the metric's place in movie_features.nvec, when its stored normalized value
                -- can stand for the condition (search_predicate): active, and not a percentile
                -- (whose knots move with the data between feature rebuilds)
                || CASE WHEN v_metric.active AND v_metric.normalization_type <> 'percentile'
                        THEN jsonb_build_object('slot', v_metric.slot) ELSE '{}'::jsonb END;
      IF p_node ? 'min_normalized' THEN v_atom := v_atom || jsonb_build_object('min', p_node -> 'min_normalized'); END IF;
      IF p_node ? 'max_normalized' THEN v_atom := v_atom || jsonb_build_object('max', p_node -> 'max_normalized'); END IF;
      v_items := v_items || jsonb_build_array(v_atom);
    END IF;
  ELSE
    FOREACH v_bound IN ARRAY ARRAY['min_normalized', 'max_normalized', 'min_raw_value', 'max_raw_value'] LOOP
      IF p_node ? v_bound THEN
        PERFORM reelscore.search_filter_error(v_prefix || v_bound,
          'needs a category or a metric_code in the same object');
      END IF;
    END LOOP;
  END IF;

  -- Genre: a label or a list of labels (the movie has at least one of them).
  IF p_node ? 'genre' THEN
    v_genres := CASE jsonb_typeof(p_node -> 'genre') WHEN 'string' THEN jsonb_build_array(p_node -> 'genre')
                                                     ELSE p_node -> 'genre' END;
    IF jsonb_typeof(v_genres) <> 'array' OR jsonb_array_length(v_genres) = 0 OR jsonb_array_length(v_genres) > 20
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(v_genres) e
                  WHERE jsonb_typeof(e) <> 'string' OR length(e #>> '{}') NOT BETWEEN 1 AND 100) THEN
      PERFORM reelscore.search_filter_error(v_prefix || 'genre',
        'must be a genre name or a list of 1 to 20 genre names (strings of 1 to 100 characters)', p_node -> 'genre');
    END IF;
    p_count := p_count + 1;
    v_items := v_items || jsonb_build_array(jsonb_build_object('i', p_count, 'kind', 'genre', 'genres', v_genres,
                                                               'key', 'genres', 'path', v_prefix || 'genre'));
  END IF;

  -- Release year range.
  IF p_node ? 'year_min' OR p_node ? 'year_max' THEN
    p_count := p_count + 1;
    v_atom := jsonb_build_object('i', p_count, 'kind', 'year', 'key', 'release_year',
                                 'path', v_prefix || CASE WHEN p_node ? 'year_min' THEN 'year_min' ELSE 'year_max' END);
    IF p_node ? 'year_min' THEN v_atom := v_atom || jsonb_build_object('min', p_node -> 'year_min'); END IF;
    IF p_node ? 'year_max' THEN v_atom := v_atom || jsonb_build_object('max', p_node -> 'year_max'); END IF;
    v_items := v_items || jsonb_build_array(v_atom);
  END IF;

  -- Nested lists: "filters" (all must hold) and "any" (at least one must hold).
  FOREACH v_key IN ARRAY ARRAY['filters', 'any'] LOOP
    IF p_node ? v_key THEN
      IF jsonb_typeof(p_node -> v_key) <> 'array' THEN
        PERFORM reelscore.search_filter_error(v_prefix || v_key,
          format('must be an array of filter objects, got %s', jsonb_typeof(p_node -> v_key)), p_node -> v_key);
      END IF;
      v_n := jsonb_array_length(p_node -> v_key);
      IF v_n > c_max_items THEN
        PERFORM reelscore.search_filter_error(v_prefix || v_key,
          format('is too large: %s items, at most %s', v_n, c_max_items));
      END IF;
      IF v_key = 'any' AND v_n = 0 THEN
        PERFORM reelscore.search_filter_error(v_prefix || v_key, 'must hold at least one filter object');
      END IF;
      v_child := NULL;
      FOR i IN 0 .. v_n - 1 LOOP
        v_elem := (p_node -> v_key) -> i;
        SELECT r.p_count, CASE WHEN v_child IS NULL THEN jsonb_build_array(r.p_tree)
                               ELSE v_child || jsonb_build_array(r.p_tree) END
          INTO p_count, v_child
        FROM reelscore.search_filter_node(v_elem, format('%s%s[%s]', v_prefix, v_key, i), p_depth + 1, p_count) r;
        IF p_count > c_max_conditions THEN
          PERFORM reelscore.search_filter_error(format('%s%s[%s]', v_prefix, v_key, i),
            format('makes the filter too large: more than %s conditions', c_max_conditions));
        END IF;
      END LOOP;
      v_items := v_items || jsonb_build_array(jsonb_build_object(
        'op', CASE v_key WHEN 'filters' THEN 'and' ELSE 'or' END, 'items', coalesce(v_child, '[]')));
    END IF;
  END LOOP;

  p_tree := CASE WHEN jsonb_array_length(v_items) = 1 THEN v_items -> 0
                 ELSE jsonb_build_object('op', 'and', 'items', v_items) END;
END
$$;
COMMENT ON FUNCTION reelscore.search_filter_node(jsonb, text, integer, integer) IS
  'Internal to validate_search_filters: validate one filter object and return its node of the normalized tree.';

CREATE OR REPLACE FUNCTION reelscore.validate_search_filters(p_filters jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
DECLARE
  c_max_bytes CONSTANT integer := 16384;
  v_len integer;
  v_tree jsonb;
BEGIN
  IF p_filters IS NULL OR p_filters = 'null'::jsonb THEN
    RETURN '{"op": "and", "items": []}';
  END IF;
  v_len := octet_length(p_filters::text);
  IF v_len > c_max_bytes THEN
    PERFORM reelscore.search_filter_error('(filters)',
      format('is too large: %s bytes of JSON, at most %s', v_len, c_max_bytes));
  END IF;
  SELECT r.p_tree INTO v_tree FROM reelscore.search_filter_node(p_filters, '', 1, 0) r;
  RETURN v_tree;
END
$$;
COMMENT ON FUNCTION reelscore.validate_search_filters(jsonb) IS
  'Check a search filter (the format of search_movies, docs/search.md) and return its normalized condition tree. Errors are SQLSTATE 22023 and name the offending key, e.g. filters[1].min_normalized (also in the COLUMN field).';

-- ---------------------------------------------------------------------------------------
-- Rendering: tree -> SQL text. Only fixed text and "$2->k" references (k is the condition's
-- position, an integer the validator assigned) are written; every value stays in $2.
-- Aliases: s = movie_scores, f = movie_features, m = movies.
-- ---------------------------------------------------------------------------------------
DROP FUNCTION IF EXISTS reelscore.search_predicate(jsonb);
-- p_stored: the query joins movie_features f (for a category condition), so a normalized
-- metric condition may read f's stored values instead of looking the raw value up
CREATE OR REPLACE FUNCTION reelscore.search_predicate(p_node jsonb, p_stored boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
DECLARE
  v_parts text[] := '{}';
  v_item jsonb;
  v_ref text;
  v_col text;
  v_val text;
  v_conds text[] := '{}';
  v_exists text;
  v_stored boolean;
  v_in text[];    -- tests that the stored value is inside the range by more than the margin
  v_out text[];   -- ... outside it by more than the margin
BEGIN
  IF p_node ? 'op' THEN
    -- Cheap tests first (columns of the joined rows), metric look-ups last: AND stops early.
    FOR v_item IN SELECT e FROM jsonb_array_elements(p_node -> 'items') WITH ORDINALITY AS t(e, n)
                  ORDER BY (e ->> 'kind' = 'metric' OR e ? 'op'), n LOOP
      v_parts := v_parts || reelscore.search_predicate(v_item, p_stored);
    END LOOP;
    IF cardinality(v_parts) = 0 THEN
      RETURN CASE WHEN p_node ->> 'op' = 'and' THEN 'true' ELSE 'false' END;
    END IF;
    RETURN '(' || array_to_string(v_parts, CASE WHEN p_node ->> 'op' = 'and' THEN ' AND ' ELSE ' OR ' END) || ')';
  END IF;

  v_ref := format('($2 -> %s)', (p_node ->> 'i')::integer - 1);   -- an integer, never filter text
  CASE p_node ->> 'kind'
  WHEN 'category' THEN
    v_col := CASE p_node ->> 'category'
               WHEN 'rating' THEN 'f.cat_rating' WHEN 'award' THEN 'f.cat_award'
               WHEN 'financial' THEN 'f.cat_financial' WHEN 'cultural' THEN 'f.cat_cultural'
               WHEN 'popularity' THEN 'f.cat_popularity' END;
    v_val := v_col;
  WHEN 'metric' THEN
    v_val := CASE p_node ->> 'measure'
               WHEN 'raw' THEN 'v.raw_value'
               WHEN 'normalized' THEN format('reelscore.normalize_with(%1$s ->> ''type'', '
                                             'reelscore.jsonb_float_array(%1$s -> ''args''), v.raw_value)', v_ref) END;
  WHEN 'year' THEN
    v_val := 'm.release_year';
  WHEN 'genre' THEN
    RETURN format('(m.genres && reelscore.jsonb_text_array(%s -> ''genres''))', v_ref);
  ELSE
    v_val := NULL;
  END CASE;
  IF v_val IS NULL THEN
    RAISE EXCEPTION 'search_predicate: not a validated condition node: %', left(p_node::text, 200)
      USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass the output of reelscore.validate_search_filters().';
  END IF;
  IF p_node ? 'min' THEN
    v_conds := v_conds || format('%s >= (%s ->> ''min'')::%s', v_val, v_ref,
                                 CASE WHEN p_node ->> 'kind' = 'year' THEN 'smallint' ELSE 'float8' END);
  END IF;
  IF p_node ? 'max' THEN
    v_conds := v_conds || format('%s <= (%s ->> ''max'')::%s', v_val, v_ref,
                                 CASE WHEN p_node ->> 'kind' = 'year' THEN 'smallint' ELSE 'float8' END);
  END IF;
  IF cardinality(v_conds) = 0 THEN
    RETURN 'true';
  END IF;
  IF p_node ->> 'kind' = 'metric' THEN
    -- A metric condition holds when the movie has the metric and its value is in range.
    v_stored := p_stored AND p_node ->> 'measure' = 'normalized' AND p_node ? 'slot';
    -- keyed on f when the stored value is read: the whole test is then about f alone, and the
    -- planner applies it on f's rows before their scores are looked up
    v_exists := format('EXISTS (SELECT 1 FROM reelscore.metric_values v WHERE v.movie_id = %s.movie_id '
                       'AND v.metric_id = (%s ->> ''metric_id'')::smallint AND %s)',
                       CASE WHEN v_stored THEN 'f' ELSE 's' END, v_ref, array_to_string(v_conds, ' AND '));
    IF NOT v_stored THEN
      RETURN v_exists;
    END IF;
    -- A normalized condition reads the value stored in the movie's feature row when the query
    -- has f at hand anyway, instead of looking the raw value up: the hidden gems' 1,574
    -- candidates at 1M spent 25 ms of their 35 ms in those look-ups. (Joining f only for this
    -- is no gain: one look-up replaces another, of a wider row; a walk over "tomatometer >=
    -- 0.9" took 7.6 -> 10.5 ms at 1M, side by side.) The stored value is the same
    -- normalization of the same raw value in single precision, so it decides only when it is
    -- more than 1e-6 from a bound (single precision is within 6e-8 on 0..1); nearer a bound,
    -- and for a row whose features lag its values (stale, or definitions changed since the
    -- last rebuild), the look-up decides.
    v_val := format('(f.nvec::real[])[(%s ->> ''slot'')::integer]', v_ref);
    v_in := '{}';
    v_out := '{}';
    IF p_node ? 'min' THEN
      v_out := v_out || format('%s < (%s ->> ''min'')::float8 - 1e-6', v_val, v_ref);
      v_in := v_in || format('%s >= (%s ->> ''min'')::float8 + 1e-6', v_val, v_ref);
    END IF;
    IF p_node ? 'max' THEN
      v_out := v_out || format('%s > (%s ->> ''max'')::float8 + 1e-6', v_val, v_ref);
      v_in := v_in || format('%s <= (%s ->> ''max'')::float8 - 1e-6', v_val, v_ref);
    END IF;
    RETURN format('(CASE WHEN f.stale OR NOT (SELECT reelscore.features_current()) THEN %1$s '
                  'WHEN get_bit(f.present, (%2$s ->> ''slot'')::integer - 1) = 0 THEN false '
                  'WHEN %3$s THEN false WHEN %4$s THEN true ELSE %1$s END)',
                  v_exists, v_ref, array_to_string(v_out, ' OR '), array_to_string(v_in, ' AND '));
  END IF;
  RETURN '(' || array_to_string(v_conds, ' AND ') || ')';
END
$$;
COMMENT ON FUNCTION reelscore.search_predicate(jsonb, boolean) IS
  'Internal to search_movies: the SQL predicate of a validated filter tree; values are referenced in parameter $2, never written. With p_stored (the query joins movie_features f), normalized metric conditions read f''s stored values, the raw value deciding near a bound or for lagging features.';

-- The "matched" column: for each condition, the movie''s value that it tested.
CREATE OR REPLACE FUNCTION reelscore.search_matched_expr(p_tree jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT coalesce('jsonb_strip_nulls(jsonb_build_object(' || string_agg(
           format('%1$s ->> ''key'', %2$s', format('($2 -> %s)', (a ->> 'i')::integer - 1),
             CASE a ->> 'kind'
               WHEN 'category' THEN CASE a ->> 'category'
                 WHEN 'rating' THEN 'fm.cat_rating' WHEN 'award' THEN 'fm.cat_award'
                 WHEN 'financial' THEN 'fm.cat_financial' WHEN 'cultural' THEN 'fm.cat_cultural'
                 WHEN 'popularity' THEN 'fm.cat_popularity' END
               -- normalized with the condition's own type and args (in $2, constants of the plan)
               WHEN 'metric' THEN format(
                 '(SELECT jsonb_build_object(''raw'', v.raw_value, ''normalized'', reelscore.normalize_with('
                 '%1$s ->> ''type'', reelscore.jsonb_float_array(%1$s -> ''args''), v.raw_value)) '
                 'FROM reelscore.metric_values v '
                 'WHERE v.movie_id = r.movie_id AND v.metric_id = (%1$s ->> ''metric_id'')::smallint)',
                 format('($2 -> %s)', (a ->> 'i')::integer - 1))
               WHEN 'genre' THEN 'mv.genres'
               WHEN 'year' THEN 'mv.release_year'
             END), ', ' ORDER BY (a ->> 'i')::integer) || '))', '''{}''::jsonb')
  FROM jsonb_path_query(p_tree, 'strict $.**') AS a
  WHERE jsonb_typeof(a) = 'object' AND a ? 'kind'
$$;
COMMENT ON FUNCTION reelscore.search_matched_expr(jsonb) IS
  'Internal to search_movies: the SQL expression of the matched column for a validated filter tree.';

-- The conditions of a tree as a JSON array in their order "i" (the $2 parameter of the query).
CREATE OR REPLACE FUNCTION reelscore.search_conditions(p_tree jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT coalesce(jsonb_agg(a ORDER BY (a ->> 'i')::integer), '[]')
  FROM jsonb_path_query(p_tree, 'strict $.**') AS a
  WHERE jsonb_typeof(a) = 'object' AND a ? 'kind'
$$;
COMMENT ON FUNCTION reelscore.search_conditions(jsonb) IS
  'Internal to search_movies: the condition nodes of a validated filter tree, in order.';

-- The condition nodes of a validated tree that every match must meet (those not under an "any").
CREATE OR REPLACE FUNCTION reelscore.search_required_conditions(p_tree jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT coalesce(jsonb_agg(a ORDER BY (a ->> 'i')::integer), '[]')
  FROM jsonb_array_elements(reelscore.search_conditions(p_tree)) AS a
  WHERE NOT EXISTS (SELECT 1 FROM jsonb_path_query(p_tree, 'strict $.**') AS o
                    WHERE jsonb_typeof(o) = 'object' AND o ->> 'op' = 'or'
                      AND jsonb_path_exists(o, 'strict $.**.i ? (@ == $i)', jsonb_build_object('i', a -> 'i')))
$$;
COMMENT ON FUNCTION reelscore.search_required_conditions(jsonb) IS
  'Internal to search_movies: the condition nodes of a validated filter tree that every match must meet (not under an any).';

-- The queries for a validated tree. Ordered by score (best first, movies without a score
-- last), then movie id: a total order, so pages never overlap or skip while the scores
-- stand still. Two ways to find a page of movie ids, both exact:
--   'prefix': walk the profile's score index from the top, at most $5 rows, testing each
--             movie. Fast when matches are common among well-scored movies ("highly
--             rated"); the page is right whenever it comes back full, because the first
--             off + lim matches of the score order all lie in the walked prefix.
--   'full':   all matching movies (the planner drives from the most selective index:
--             a category index, metric_values (metric_id, raw_value), genres, years),
--             then the top of them by score. search_movies uses it when the prefix walk
--             does not fill the page (rare or badly-scored matches: "hidden gems").
--             When a required raw-value condition matches few movies (condition $6), its
--             movie ids drive instead, all at once (see the 'full' branch).
-- Parameters: $1 profile id, $2 conditions (jsonb), $3 limit, $4 offset, $5 prefix size;
-- $6: the ids of a page, for 'rows'; for 'full' and 'page', the number ("i") of the required
-- raw-value condition that matches few movies, or NULL (the answer of 'few', whose
-- parameters are $1 conditions, $2 the cap); $7, for 'prefix' and 'page': the floor of the
-- profile's ranking index (ranking_floor).
DROP FUNCTION IF EXISTS reelscore.search_query(jsonb);
CREATE OR REPLACE FUNCTION reelscore.search_query(p_tree jsonb, p_mode text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
DECLARE
  -- rows of the score index the probe tests before the walk goes on or gives up
  c_probe CONSTANT text := 'least($5, 200)';
  -- "few" matches, as search_movies counts them for a raw-value condition
  c_few CONSTANT integer := 50000;
  -- the longest walk: a rare but large match set ("dramas of the 90s", 1-2% of the top)
  -- fills a page within a few thousand rows (10 us a row), where its full search reads every
  -- score (0.5 s at 1M movies)
  c_walk_max CONSTANT integer := 5000;
  v_conds jsonb := reelscore.search_conditions(p_tree);
  v_needs_f boolean := jsonb_path_exists(v_conds, '$[*] ? (@.kind == "category")');
  v_needs_m boolean := jsonb_path_exists(v_conds, '$[*] ? (@.kind == "genre" || @.kind == "year")');
  -- (search_required_conditions is the costly part of rendering: called only when it can matter)
  v_has_raw boolean := jsonb_path_exists(v_conds, '$[*] ? (@.kind == "metric" && @.measure == "raw")');
  v_joins text := CASE WHEN v_needs_f THEN 'JOIN reelscore.movie_features f ON f.movie_id = s.movie_id ' ELSE '' END
               || CASE WHEN v_needs_m THEN 'JOIN reelscore.movies m ON m.id = s.movie_id ' ELSE '' END;
  v_pred text := reelscore.search_predicate(p_tree, v_needs_f);
  v_test text;
  v_walk text;
  v_cats jsonb;
  v_raw text[];
  v_full_pred text;
  v_cond jsonb;
  v_exists text;
  v_ids text;
  v_counts text[];
  v_prev integer;
BEGIN
  -- A movie s of the score order matches: the test as a scalar subquery, run row by row as a
  -- walk goes (never turned into a hash join that would read every match first), so a walk
  -- stops at the page's end.
  v_test := 'coalesce((SELECT ' || v_pred
         || CASE WHEN v_needs_f AND v_needs_m THEN ' FROM reelscore.movie_features f JOIN reelscore.movies m '
                                                 || 'ON m.id = f.movie_id WHERE f.movie_id = s.movie_id'
                 WHEN v_needs_f THEN ' FROM reelscore.movie_features f WHERE f.movie_id = s.movie_id'
                 WHEN v_needs_m THEN ' FROM reelscore.movies m WHERE m.id = s.movie_id'
                 ELSE '' END || '), false)';
  -- A walk: rows %1$s + 1 .. %1$s + %2$s of the profile's score index (index order, so it stops
  -- early), each tested; the ids of the first %3$s matches after %4$s of them, in order.
  -- The score order is read in two parts: the rows at or above the floor $7 of the partition's
  -- partial ranking index (migration 0021), in index order, then (only if the walk goes that
  -- far) the rest, sorted. UNION ALL without an ORDER BY over it: the Append returns its first
  -- part whole before it starts the second (no parallel append: search runs without workers),
  -- so the walk stops inside the first part when it holds enough rows. Each part has the
  -- walk's end as its LIMIT, without which the planner reads and sorts the whole part. $7 is a
  -- constant of the plan (EXECUTE ... USING): the planner needs one to use a partial index.
  v_walk := 'SELECT coalesce(array_agg(q.movie_id ORDER BY q.score DESC NULLS LAST, q.movie_id), ''{}'') FROM ('
         || 'SELECT s.movie_id, s.score FROM (SELECT r.movie_id, r.score FROM ('
         || '(SELECT s0.movie_id, s0.score FROM reelscore.movie_scores s0 WHERE s0.profile_id = $1 AND s0.score >= $7 '
         || 'ORDER BY s0.score DESC NULLS LAST, s0.movie_id LIMIT %1$s + %2$s) UNION ALL '
         || '(SELECT s0.movie_id, s0.score FROM reelscore.movie_scores s0 WHERE s0.profile_id = $1 '
         || 'AND NOT coalesce(s0.score >= $7, false) ORDER BY s0.score DESC NULLS LAST, s0.movie_id '
         || 'LIMIT %1$s + %2$s)) r '
         || 'LIMIT %2$s OFFSET %1$s) s '
         || 'WHERE %5$s ORDER BY s.score DESC NULLS LAST, s.movie_id LIMIT %3$s OFFSET %4$s) q';
  IF p_mode = 'prefix' THEN
    RETURN format(v_walk, '0', '$5', '$3', '$4', v_test);
  ELSIF p_mode = 'full' THEN
    -- The raw-value condition numbered $6 (required, few matches: see 'few') drives with its
    -- movie ids as one array: index-only from metric_values (metric_id, raw_value) INCLUDE
    -- (observed_at, movie_id), then one scan of the scores' primary key, which sorts the keys.
    -- Id order is what makes it fast: driven from the index in raw-value order each look-up
    -- jumps across the partition (imdb_rating <= 4 at 1M: 9.5k look-ups 86 ms under EXPLAIN
    -- ANALYZE, 45 ms in id order). The array replaces the condition's EXISTS, which would look
    -- every driven movie up again. $6 is a constant of the plan, so the CASE folds to one
    -- branch. The two branches are the same test for any raw-value condition, required or not;
    -- only the plan differs.
    v_full_pred := v_pred;
    FOR v_cond IN SELECT a FROM jsonb_array_elements(v_conds) AS a
                  WHERE a ->> 'kind' = 'metric' AND a ->> 'measure' = 'raw' LOOP
      v_exists := reelscore.search_predicate(v_cond);
      -- the same test on v, as a set of ids
      v_ids := regexp_replace(v_exists,
        '^EXISTS \(SELECT 1 FROM reelscore\.metric_values v WHERE v\.movie_id = s\.movie_id AND (.*)\)$',
        's.movie_id = ANY (ARRAY(SELECT v.movie_id FROM reelscore.metric_values v WHERE \1))');
      IF v_ids = v_exists THEN
        RAISE EXCEPTION 'search_query: unexpected text of a raw-value condition: %', left(v_exists, 200);
      END IF;
      v_full_pred := replace(v_full_pred, v_exists,
                             format('CASE WHEN $6 = %s THEN %s ELSE %s END', (v_cond ->> 'i')::integer, v_ids, v_exists));
    END LOOP;
    -- OFFSET 0 fences the matches off from the ORDER BY ... LIMIT, so that the planner does not
    -- turn them into a walk of the score index; unlike a MATERIALIZED CTE it streams them into
    -- the sort (9.5k matches: 2-3 ms less)
    RETURN 'SELECT coalesce(array_agg(q.movie_id ORDER BY q.score DESC NULLS LAST, q.movie_id), ''{}'') FROM ('
        || 'SELECT hits.movie_id, hits.score FROM (SELECT s.movie_id, s.score FROM reelscore.movie_scores s '
        || v_joins || 'WHERE s.profile_id = $1 AND ' || v_full_pred || ' OFFSET 0) hits '
        || 'ORDER BY hits.score DESC NULLS LAST, hits.movie_id LIMIT $3 OFFSET $4) q';
  ELSIF p_mode = 'rows' THEN
    -- The result rows for a page of ids ($6, in order): score, confidence, rank, matched values.
    -- movie_features only when a category value is to be shown.
    RETURN 'SELECT r.movie_id, mv.title::text, mv.release_year, mv.genres, s.score, s.confidence, '
        || '$4 + r.ord AS rank, ' || reelscore.search_matched_expr(p_tree) || ' AS matched '
        || 'FROM unnest($6::bigint[]) WITH ORDINALITY AS r(movie_id, ord) '
        || 'JOIN reelscore.movie_scores s ON s.profile_id = $1 AND s.movie_id = r.movie_id '
        || 'JOIN reelscore.movies mv ON mv.id = r.movie_id '
        || CASE WHEN v_needs_f THEN 'LEFT JOIN reelscore.movie_features fm ON fm.movie_id = r.movie_id ' ELSE '' END
        || 'ORDER BY r.ord';
  ELSIF p_mode = 'page' THEN
    -- All in one statement (one planning); each later step runs only when the earlier ones
    -- did not settle the page (a CASE runs a subquery only when its branch is taken):
    --   probe: walk the first 200 rows of the score index.
    --   walk:  if the probe did not fill the page, go on as far as the probe's hit rate says
    --          the page needs (1.5 times that: at least row $5, at most c_walk_max), unless that
    --          rate says a walk to row $5 will not fill it and the full search is known to be
    --          small: then go straight to the full search (a long walk is for match sets too
    --          large to search whole). "Will not": at the probe's rate a walk to row $5
    --          would find under half the matches the page needs (the seed's
    --          hidden gems and "imdb <= 4" find none among the top 1000 movies: a failed walk
    --          of 1000 rows cost 8-16 ms). "Small": a required raw-value condition matches
    --          fewer than 50,000 movies ($6 names it, counted by search_movies), or the required
    --          category conditions do (a capped count, run only here). Without that bound a
    --          misjudged probe could turn a walk of a few ms into a full search of 0.5 s.
    --   full:  only when the walk did not fill the page.
    -- The walk keeps the first off + lim matches (a prefix of the score order); the page is
    -- its tail.
    SELECT coalesce(jsonb_agg(a ORDER BY (a ->> 'i')::integer), '[]') INTO v_cats
    FROM jsonb_array_elements(reelscore.search_required_conditions(p_tree)) AS a
    WHERE a ->> 'kind' = 'category';
    RETURN 'WITH probe AS MATERIALIZED (SELECT CASE WHEN $4 + $3 <= $5 THEN ('
        || format(v_walk, '0', c_probe, '$4 + $3', '0', v_test) || ') END AS ids), '
        || 'walk AS MATERIALIZED (SELECT CASE '
        ||   'WHEN probe.ids IS NULL OR cardinality(probe.ids) >= $4 + $3 THEN probe.ids '
        ||   'WHEN 2 * cardinality(probe.ids) * $5 < ($4 + $3) * ' || c_probe || ' AND ($6 IS NOT NULL'
        ||   CASE WHEN jsonb_array_length(v_cats) > 0
                  -- SELECT of no column: the bitmap scan reads visibility instead of tuples where
                  -- it can (hidden gems at 1M: 11-13 -> 6-7 ms)
                  THEN format(' OR (SELECT count(*) FROM (SELECT FROM reelscore.movie_features f WHERE %s '
                              'LIMIT %s) few) < %s',
                              reelscore.search_predicate(jsonb_build_object('op', 'and', 'items', v_cats)), c_few, c_few)
                  ELSE '' END || ') THEN probe.ids '
        ||   'ELSE probe.ids || ('
        ||     format(v_walk, c_probe, format(
                 -- as far as the probe's hit rate says the page needs, with a margin: at least
                 -- $5 rows, at most c_walk_max (all of them when the probe found nothing)
                 'CASE WHEN cardinality(probe.ids) = 0 THEN %1$s '
                 'ELSE least(%1$s, greatest($5, ceil(1.5 * ($4 + $3) * %2$s / cardinality(probe.ids))::integer)) '
                 'END - %2$s', c_walk_max, c_probe),
                 '$4 + $3 - cardinality(probe.ids)', '0', v_test)
        || ') END AS ids FROM probe), '
        || 'pick AS MATERIALIZED (SELECT CASE WHEN cardinality(walk.ids) >= $4 + $3 THEN walk.ids[$4 + 1 : $4 + $3] '
        || 'ELSE (' || reelscore.search_query(p_tree, 'full') || ') END AS ids FROM walk) '
        || replace(reelscore.search_query(p_tree, 'rows'), '$6::bigint[]', '(SELECT pick.ids FROM pick)');
  ELSIF p_mode = 'few' THEN
    -- Which raw-value condition that every match must meet matches fewer than $2 movies, the
    -- fewest of them ("imdb_rating <= 4"), by its number "i"; NULL when none does. Such a set
    -- drives the full search, each match looking up its score. The planner cannot see that it
    -- is small: raw_value holds every metric, so its statistics mix them (that condition is
    -- estimated at 121k movies of 1M, 9.5k in fact), and it would rather read all 1M scores
    -- into a hash join (0.5 s against 0.15 s).
    -- A capped count per condition, index-only on metric_values (metric_id, raw_value)
    -- (1-2 ms for 9.5k); its parameters: $1 conditions, $2 the cap. Each count stops at the
    -- one before it, so a wide range after a narrow one costs no more than the narrow one (up
    -- to 50k entries, 10-20 ms at 1M, otherwise): a count that reaches its cap is not the
    -- fewest, and the fewest (the first of the smallest counts) is below its cap, so exact.
    v_raw := '{}';
    v_counts := '{}';
    FOR v_cond IN SELECT a FROM jsonb_array_elements(CASE WHEN v_has_raw THEN reelscore.search_required_conditions(p_tree) END) AS a
                  WHERE a ->> 'kind' = 'metric' AND a ->> 'measure' = 'raw' ORDER BY (a ->> 'i')::integer LOOP
      v_raw := v_raw || format(
        'n%1$s AS MATERIALIZED (SELECT %1$s AS i, count(*) AS n FROM (SELECT FROM reelscore.metric_values v '
        'WHERE v.metric_id = (($1 -> %2$s) ->> ''metric_id'')::smallint%3$s%4$s LIMIT %5$s) c)',
        (v_cond ->> 'i')::integer, (v_cond ->> 'i')::integer - 1,
        CASE WHEN v_cond ? 'min' THEN format(' AND v.raw_value >= (($1 -> %s) ->> ''min'')::float8',
                                             (v_cond ->> 'i')::integer - 1) ELSE '' END,
        CASE WHEN v_cond ? 'max' THEN format(' AND v.raw_value <= (($1 -> %s) ->> ''max'')::float8',
                                             (v_cond ->> 'i')::integer - 1) ELSE '' END,
        CASE WHEN cardinality(v_raw) = 0 THEN '$2' ELSE format('(SELECT p.n FROM n%s p)', v_prev) END);
      v_counts := v_counts || format('SELECT n.i, n.n FROM n%s n', (v_cond ->> 'i')::integer);
      v_prev := (v_cond ->> 'i')::integer;
    END LOOP;
    IF cardinality(v_raw) = 0 THEN
      RETURN 'SELECT NULL::integer';
    END IF;
    RETURN 'WITH ' || array_to_string(v_raw, ', ') || ' SELECT (SELECT x.i FROM ('
        || array_to_string(v_counts, ' UNION ALL ') || ') x WHERE x.n < $2 ORDER BY x.n, x.i LIMIT 1)';
  END IF;
  RAISE EXCEPTION 'search_query: p_mode must be prefix, full, rows, page or few, got %', coalesce(quote_literal(p_mode), 'NULL')
    USING ERRCODE = 'invalid_parameter_value';
END
$$;
COMMENT ON FUNCTION reelscore.search_query(jsonb, text) IS
  'The SQL texts of search_movies for a validated filter tree: p_mode prefix (ids: walk the top of the score index), full (ids: all matches, then the top; driven by the movie ids of condition $6 when it is not NULL), rows (the result rows of the ids in $6), page (what search_movies runs: a probe of the top 200 rows, the walk, the full search when needed, the rows, in one statement) or few (the number of the required raw-value condition with the fewest matches when fewer than $2, else NULL; $1 conditions). Parameters $1 profile id, $2 conditions, $3 limit, $4 offset, $5 prefix size; $6 for full and page: the answer of few. For inspection and EXPLAIN.';

-- Profile name -> id, with the errors search shares with scoring.
CREATE OR REPLACE FUNCTION reelscore.search_profile_id(p_profile text) RETURNS bigint
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
DECLARE
  v_id bigint;
BEGIN
  SELECT w.id INTO v_id FROM reelscore.weight_profiles w WHERE w.name = p_profile;
  IF v_id IS NULL THEN
    RAISE EXCEPTION 'unknown profile: %', coalesce(left(quote_literal(p_profile), 60), 'NULL')
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'SELECT name FROM reelscore.weight_profiles lists the profiles.';
  END IF;
  RETURN v_id;
END
$$;
COMMENT ON FUNCTION reelscore.search_profile_id(text) IS
  'Internal to search_movies: the id of a weight profile by name; SQLSTATE 22023 when unknown.';

CREATE OR REPLACE FUNCTION reelscore.search_check_page(p_lim integer, p_off integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
BEGIN
  IF p_lim IS NULL OR p_lim NOT BETWEEN 1 AND 1000 THEN
    RAISE EXCEPTION 'lim must be between 1 and 1000, got %', coalesce(p_lim::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value', COLUMN = 'lim';
  END IF;
  IF p_off IS NULL OR p_off NOT BETWEEN 0 AND 100000 THEN
    RAISE EXCEPTION 'off must be between 0 and 100000, got %', coalesce(p_off::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value', COLUMN = 'off',
            HINT = 'Narrow the filter instead of paging that deep.';
  END IF;
END
$$;
COMMENT ON FUNCTION reelscore.search_check_page(integer, integer) IS
  'Internal to search_movies: lim in 1..1000 and off in 0..100000, else SQLSTATE 22023 naming the argument.';

-- ---------------------------------------------------------------------------------------
-- search_movies: the public entry point.
-- Parallel workers are turned off for the call: a page of 50 rows never pays back the
-- start-up of a worker (measured: 100+ ms of a 150 ms call on this machine), and JIT is off:
-- the row estimates of a page query can pass jit_above_cost, and compiling took 300 ms.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION reelscore.search_movies(filters jsonb, profile text DEFAULT 'balanced',
                                                   lim integer DEFAULT 50, off integer DEFAULT 0)
RETURNS TABLE (movie_id bigint, title text, release_year smallint, genres text[], score double precision,
               confidence double precision, rank bigint, matched jsonb)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET max_parallel_workers_per_gather = 0
SET jit = off
SET enable_hashjoin = on     -- named here so that the set_config() below ends with the call
SET enable_mergejoin = on
SET enable_memoize = off     -- search joins on movie ids, each met once: a cache never hits
AS $$
DECLARE
  c_prefix CONSTANT integer := 1000;   -- rows of the score index the prefix walk may test
  c_few CONSTANT integer := 50000;     -- "few movies" for a raw-value condition
  v_tree jsonb;
  v_conds jsonb;
  v_profile_id bigint;
  v_drive integer;
BEGIN
  PERFORM reelscore.search_check_page(search_movies.lim, search_movies.off);
  v_tree := reelscore.validate_search_filters(search_movies.filters);
  v_conds := reelscore.search_conditions(v_tree);
  v_profile_id := reelscore.search_profile_id(search_movies.profile);
  -- precomputed scores are unlogged (migration 0018): a standby has none
  IF pg_is_in_recovery() THEN
    RAISE EXCEPTION 'search_movies needs precomputed scores, which a standby does not have'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = 'movie_scores is unlogged: its rows exist on the primary only.',
            HINT = 'Run search_movies on the primary.';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM reelscore.profile_score_state st WHERE st.profile_id = v_profile_id) THEN
    RAISE EXCEPTION 'profile % has no precomputed scores to search by', search_movies.profile
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = 'search_movies orders by movie_scores; the profile is inactive, has config precompute = false, was never refreshed, or its scores (unlogged) were emptied by a crash.',
            HINT = format('SELECT * FROM reelscore.refresh_scores(%L);', search_movies.profile);
  END IF;
  -- A rare raw-value condition drives the full search with nested loops (see search_query's
  -- 'few' and 'full'); the page query also lets a failed probe skip the walk then.
  EXECUTE reelscore.search_query(v_tree, 'few') INTO v_drive USING v_conds, c_few;
  IF v_drive IS NOT NULL THEN
    PERFORM set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);
  END IF;
  RETURN QUERY EXECUTE reelscore.search_query(v_tree, 'page')
    USING v_profile_id, v_conds, search_movies.lim, search_movies.off, c_prefix, v_drive,
          reelscore.ranking_floor(v_profile_id);
END
$$;
COMMENT ON FUNCTION reelscore.search_movies(jsonb, text, integer, integer) IS
  'Movies matching a filter (docs/search.md: category / metric_code thresholds on normalized or raw values, genre, year range, nested filters (all) and any (one)), best score first under the profile, with score, confidence, rank and the values that matched. Pages with lim/off over a total order (score, movie id). Bad filters: SQLSTATE 22023 naming the key; a profile without precomputed scores: 55000.';

DROP FUNCTION IF EXISTS reelscore.search_explain(jsonb, text, integer, integer, boolean);
CREATE OR REPLACE FUNCTION reelscore.search_explain(filters jsonb, profile text DEFAULT 'balanced',
                                                    lim integer DEFAULT 50, off integer DEFAULT 0,
                                                    p_analyze boolean DEFAULT false, p_mode text DEFAULT 'page')
RETURNS SETOF text
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET max_parallel_workers_per_gather = 0
SET jit = off
SET enable_hashjoin = on
SET enable_mergejoin = on
SET enable_memoize = off
AS $$
DECLARE
  v_tree jsonb;
  v_line text;
  v_drive integer;
BEGIN
  PERFORM reelscore.search_check_page(search_explain.lim, search_explain.off);
  IF p_mode IS NULL OR p_mode NOT IN ('prefix', 'full', 'page') THEN
    RAISE EXCEPTION 'p_mode must be prefix, full or page, got %', coalesce(quote_literal(p_mode), 'NULL')
      USING ERRCODE = 'invalid_parameter_value', COLUMN = 'p_mode';
  END IF;
  v_tree := reelscore.validate_search_filters(search_explain.filters);
  -- the settings and parameters search_movies would use, so that the plan is its plan
  EXECUTE reelscore.search_query(v_tree, 'few') INTO v_drive USING reelscore.search_conditions(v_tree), 50000;
  IF v_drive IS NOT NULL THEN
    PERFORM set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);
  END IF;
  FOR v_line IN EXECUTE CASE WHEN search_explain.p_analyze THEN 'EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) '
                             ELSE 'EXPLAIN (COSTS OFF) ' END || reelscore.search_query(v_tree, p_mode)
    USING reelscore.search_profile_id(search_explain.profile), reelscore.search_conditions(v_tree),
          search_explain.lim, search_explain.off, 1000, v_drive,
          reelscore.ranking_floor(reelscore.search_profile_id(search_explain.profile))
  LOOP
    RETURN NEXT v_line;
  END LOOP;
END
$$;
COMMENT ON FUNCTION reelscore.search_explain(jsonb, text, integer, integer, boolean, text) IS
  'The plan of search_movies (p_mode page, the default), or of one of its two ways to find a page (prefix: walk the top of the score index; full: all matches, then the top), as EXPLAIN, or EXPLAIN ANALYZE with buffers when p_analyze is true.';

-- ---------------------------------------------------------------------------------------
-- Title search (the playground, apps' search boxes)
-- ---------------------------------------------------------------------------------------
-- Titles containing the text, case-insensitively: those that start with it first (an exact
-- match is the shortest of them), then the others, each part shortest title first, ties by id.
-- Each part walks the (length(title), id) index (index-only: it includes the title) and stops
-- at the lim-th match: a common word is found among the first titles. The walk gives up after
-- 20,000 titles without a match or 200,000 titles in all; the text is rare then, and its
-- matches come from the trigram index instead (few rows), sorted.
CREATE OR REPLACE FUNCTION reelscore.search_titles(q text, lim integer DEFAULT 25)
RETURNS TABLE (movie_id bigint, title text, release_year smallint, director text, n_values bigint)
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
  v_q text := lower(btrim(q));
  v_ids bigint[] := '{}';
  v_part bigint[];
  v_pattern text;
  v_walk integer;
  v_esc text;
BEGIN
  IF v_q IS NULL OR length(v_q) < 2 OR length(v_q) > 200 THEN
    RAISE EXCEPTION 'search text must be 2 to 200 characters, got %', coalesce(length(v_q)::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF lim IS NULL OR lim < 1 OR lim > 1000 THEN
    RAISE EXCEPTION 'lim must be 1..1000, got %', lim USING ERRCODE = 'invalid_parameter_value';
  END IF;
  v_esc := replace(replace(replace(v_q, '\', '\\'), '%', '\%'), '_', '\_');   -- LIKE wildcards are literal
  FOREACH v_pattern IN ARRAY ARRAY[v_esc || '%', '%' || v_esc || '%'] LOOP
    EXIT WHEN cardinality(v_ids) >= lim;
    v_part := '{}';
    FOREACH v_walk IN ARRAY ARRAY[20000, 200000] LOOP
      v_part := ARRAY(SELECT x.id
                      FROM (SELECT m.id, m.title FROM reelscore.movies m
                            ORDER BY length(m.title), m.id LIMIT v_walk) x
                      WHERE lower(x.title) LIKE v_pattern AND x.id <> ALL (v_ids)
                      ORDER BY length(x.title), x.id
                      LIMIT lim - cardinality(v_ids));
      EXIT WHEN cardinality(v_part) = 0 OR cardinality(v_part) = lim - cardinality(v_ids);
    END LOOP;
    IF cardinality(v_part) < lim - cardinality(v_ids) THEN
      -- rare text, or the walk ended with the table: every match, through the trigram index
      -- (EXECUTE: planned for this pattern; a generic plan would scan every title)
      EXECUTE 'SELECT ARRAY(SELECT m.id FROM reelscore.movies m '
              '             WHERE lower(m.title) LIKE $1 AND m.id <> ALL ($2) '
              '             ORDER BY length(m.title), m.id LIMIT $3)'
        INTO v_part USING v_pattern, v_ids, lim - cardinality(v_ids);
    END IF;
    v_ids := v_ids || v_part;
  END LOOP;
  RETURN QUERY
  SELECT m.id, m.title, m.release_year, m.director,
         (SELECT count(*) FROM reelscore.metric_values v WHERE v.movie_id = m.id)
  FROM unnest(v_ids) WITH ORDINALITY u(id, n)
  JOIN reelscore.movies m ON m.id = u.id
  ORDER BY u.n;
END
$$;
COMMENT ON FUNCTION reelscore.search_titles(text, integer) IS
  'Movies whose title contains q (case-insensitive; % and _ are literal): titles starting with q first, then the others, shortest first, ties by id; with how many metric values each has. q 2..200 characters, lim 1..1000.';
