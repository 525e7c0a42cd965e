-- 850-recommend: recommendations from the collaborative-filtering factors (pgvector, HNSW on
-- inner product), optionally blended with a weight profile's score and limited to a genre;
-- cold-start users get their profile's ranking.

CREATE OR REPLACE FUNCTION reelscore.predict_rating(p_user_id bigint, p_movie_id bigint) RETURNS double precision
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
  SELECT least(5.0, greatest(1.0, u.bias - (mf.factors <#> u.factors)))
    FROM reelscore.user_factors u, reelscore.movie_factors mf
   WHERE u.user_id = p_user_id AND mf.movie_id = p_movie_id
$$;
COMMENT ON FUNCTION reelscore.predict_rating(bigint, bigint) IS
  'Predicted rating (1..5) of a movie by a user from the factors model: mu + b_u + b_i + p_u . q_i. NULL when either has no factors.';

-- The first two parameters keep DESIGN.md's names (user_id, k); a parameter name cannot be
-- changed by CREATE OR REPLACE, so an older definition with other names is dropped first.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_proc
              WHERE oid = to_regprocedure('reelscore.recommend(bigint, integer, text, double precision, text, boolean)')
                AND proargnames[1] <> 'user_id') THEN
    DROP FUNCTION reelscore.recommend(bigint, integer, text, double precision, text, boolean);
  END IF;
END $$;

CREATE OR REPLACE FUNCTION reelscore.recommend(
    user_id bigint, k integer DEFAULT 10, p_profile text DEFAULT NULL,
    p_blend double precision DEFAULT 0, p_genre text DEFAULT NULL, p_exact boolean DEFAULT false)
RETURNS TABLE (movie_id bigint, title text, predicted_rating double precision,
               profile_score double precision, score double precision, source text)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET hnsw.iterative_scan = 'relaxed_order'
SET hnsw.ef_search = 100
AS $$
DECLARE
  v_user reelscore.user_factors%ROWTYPE;
  v_profile text;
  v_pool integer;
  v_page integer := 200;
  v_off integer := 0;
  v_found integer := 0;
  v_seen integer;
  v_row record;
BEGIN
  IF recommend.k IS NULL OR recommend.k < 1 OR recommend.k > 1000 THEN
    RAISE EXCEPTION 'k must be between 1 and 1000, got %', recommend.k USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p_blend IS NULL OR p_blend < 0 OR p_blend > 1 THEN
    RAISE EXCEPTION 'blend must be between 0 and 1, got %', p_blend USING ERRCODE = 'invalid_parameter_value',
      HINT = '0 ranks by predicted rating only, 1 by the profile score only.';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM reelscore.users u WHERE u.id = recommend.user_id) THEN
    RAISE EXCEPTION 'unknown user %', recommend.user_id USING ERRCODE = 'invalid_parameter_value',
      HINT = 'Pass reelscore.users.id.';
  END IF;
  SELECT * INTO v_user FROM reelscore.user_factors f WHERE f.user_id = recommend.user_id;

  IF v_user.user_id IS NULL OR p_blend = 1 THEN
    -- Cold start (no factors: the user had no ratings at training time) or profile only:
    -- the user's profile ranking (own, else cluster, else default), unseen movies, by pages.
    v_profile := coalesce(p_profile, reelscore.resolve_user_profile(recommend.user_id));
    LOOP
      v_seen := 0;
      FOR v_row IN
        SELECT t.movie_id, t.title, t.score FROM reelscore.top_movies(v_profile, v_page, v_off) t
      LOOP
        v_seen := v_seen + 1;
        CONTINUE WHEN EXISTS (SELECT 1 FROM reelscore.metric_feedback f
                               WHERE f.user_id = recommend.user_id AND f.movie_id = v_row.movie_id);
        CONTINUE WHEN p_genre IS NOT NULL AND NOT EXISTS (
          SELECT 1 FROM reelscore.movies m WHERE m.id = v_row.movie_id AND p_genre = ANY (m.genres));
        movie_id := v_row.movie_id; title := v_row.title;
        predicted_rating := reelscore.predict_rating(recommend.user_id, v_row.movie_id);
        profile_score := v_row.score; score := v_row.score; source := 'profile:' || v_profile;
        RETURN NEXT;
        v_found := v_found + 1;
        EXIT WHEN v_found >= recommend.k;
      END LOOP;
      EXIT WHEN v_found >= recommend.k OR v_seen < v_page;  -- enough, or the ranking ran out
      v_off := v_off + v_page;
      EXIT WHEN v_off >= 20000;   -- bound the work when almost everything is filtered out
    END LOOP;
    RETURN;
  END IF;

  IF p_blend = 0 THEN
    -- Top-k unseen movies by predicted rating: an HNSW inner-product scan (iterative, so the
    -- seen and genre filters still return k rows), or an exact scan when asked.
    IF p_exact THEN
      RETURN QUERY
      SELECT mf.movie_id, m.title, least(5.0, greatest(1.0, v_user.bias - (mf.factors <#> v_user.factors))),
             NULL::float8, v_user.bias - (mf.factors <#> v_user.factors), 'factors:' || mf.source
        FROM reelscore.movie_factors mf JOIN reelscore.movies m ON m.id = mf.movie_id
       WHERE NOT EXISTS (SELECT 1 FROM reelscore.metric_feedback f
                          WHERE f.user_id = recommend.user_id AND f.movie_id = mf.movie_id)
         AND (p_genre IS NULL OR p_genre = ANY (m.genres))
       ORDER BY (mf.factors <#> v_user.factors) + 0, mf.movie_id   -- an expression: no index
       LIMIT recommend.k;
    ELSE
      RETURN QUERY
      SELECT c.movie_id, m.title, least(5.0, greatest(1.0, v_user.bias - c.d)), NULL::float8,
             v_user.bias - c.d, 'factors:' || c.source
        FROM (SELECT mf.movie_id, mf.source, mf.factors <#> v_user.factors AS d
                FROM reelscore.movie_factors mf
               WHERE NOT EXISTS (SELECT 1 FROM reelscore.metric_feedback f
                                  WHERE f.user_id = recommend.user_id AND f.movie_id = mf.movie_id)
                 AND (p_genre IS NULL OR EXISTS (SELECT 1 FROM reelscore.movies g
                                               WHERE g.id = mf.movie_id AND p_genre = ANY (g.genres)))
               ORDER BY mf.factors <#> v_user.factors
               -- relaxed_order returns candidates only roughly sorted: take twice k, keep the best k
               LIMIT 2 * recommend.k + 10) c
        JOIN reelscore.movies m ON m.id = c.movie_id
       ORDER BY c.d, c.movie_id
       LIMIT recommend.k;
    END IF;
    RETURN;
  END IF;

  -- Blend: re-rank a pool of the best max(10k, 100) unseen movies by predicted rating with
  -- score = (1 - blend) * (predicted - 1) / 4 + blend * profile score (both 0..1); a movie
  -- without a profile score counts 0 there.
  v_profile := coalesce(p_profile, reelscore.resolve_user_profile(recommend.user_id));
  v_pool := greatest(10 * recommend.k, 100);
  RETURN QUERY
  WITH pool AS (
    SELECT mf.movie_id, mf.source, mf.factors <#> v_user.factors AS d
      FROM reelscore.movie_factors mf
     WHERE NOT EXISTS (SELECT 1 FROM reelscore.metric_feedback f
                        WHERE f.user_id = recommend.user_id AND f.movie_id = mf.movie_id)
       AND (p_genre IS NULL OR EXISTS (SELECT 1 FROM reelscore.movies g
                                     WHERE g.id = mf.movie_id AND p_genre = ANY (g.genres)))
     ORDER BY mf.factors <#> v_user.factors
     LIMIT v_pool
  ), scored AS (
    SELECT p.movie_id, p.source, least(5.0, greatest(1.0, v_user.bias - p.d)) AS pred,
           reelscore.movie_score(p.movie_id, v_profile) AS ps
      FROM pool p
  )
  SELECT s.movie_id, m.title, s.pred, s.ps,
         (1 - p_blend) * (s.pred - 1) / 4 + p_blend * coalesce(s.ps, 0),
         'blend:' || v_profile
    FROM scored s JOIN reelscore.movies m ON m.id = s.movie_id
   ORDER BY 5 DESC, s.movie_id
   LIMIT recommend.k;
END
$$;
COMMENT ON FUNCTION reelscore.recommend(bigint, integer, text, double precision, text, boolean) IS
  'Top k movies the user has not rated. With factors (the user had ratings at training time): by predicted rating (HNSW inner-product index on movie_factors, iterative scan; p_exact => true scans all), or with p_blend in (0,1) a re-ranking of the best max(10 k, 100) by (1 - p_blend) (predicted - 1)/4 + p_blend profile score (p_profile, default the user''s: resolve_user_profile). Without factors (cold start), or p_blend = 1: the profile''s ranking. p_genre keeps movies of that genre. source says which path produced each row; movies without ratings have factors placed from their metric vector (source factors:metrics).';
