-- 450-similar: similar_movies, nearest neighbours on the per-movie normalized metric vectors.
--
-- "Similar" means similar in how the world rated and received them: close in the 32-d
-- vector of normalized metric values (movie_features.nvec, 0 where a metric is missing),
-- by Euclidean (L2) distance. Not similar in story, cast or style. The HNSW index is
-- movie_features_nvec_hnsw (migration 0008); each call sets hnsw.ef_search for its k and
-- turns on pgvector 0.8's iterative index scans, so filters (the movie itself, the same
-- genre) do not starve the result, and restores both settings before returning.

CREATE OR REPLACE FUNCTION reelscore.similar_movies(p_movie_id bigint, k integer DEFAULT 10,
                                                    same_genre boolean DEFAULT false)
RETURNS TABLE (movie_id bigint, title text, release_year smallint, genres text[],
               distance double precision, similarity double precision, shared_genres text[])
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
  v_vec vector;
  v_genres text[];
  v_old_ef text := current_setting('hnsw.ef_search', true);
  v_old_iter text := current_setting('hnsw.iterative_scan', true);
BEGIN
  IF similar_movies.k IS NULL OR similar_movies.k NOT BETWEEN 1 AND 1000 THEN
    RAISE EXCEPTION 'k must be between 1 and 1000, got %', coalesce(similar_movies.k::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value', COLUMN = 'k';
  END IF;
  SELECT f.nvec, m.genres INTO v_vec, v_genres
  FROM reelscore.movies m LEFT JOIN reelscore.movie_features f ON f.movie_id = m.id
  WHERE m.id = similar_movies.p_movie_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown movie id: %', coalesce(similar_movies.p_movie_id::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value', COLUMN = 'movie_id';
  END IF;
  IF v_vec IS NULL THEN
    RAISE NOTICE 'movie % has no metric vector yet (no values, or features not refreshed): no neighbours',
                 similar_movies.p_movie_id;
    RETURN;
  END IF;
  IF similar_movies.same_genre AND cardinality(v_genres) = 0 THEN
    RETURN;   -- no genre to share
  END IF;

  -- ef_search: the candidate list; 100 gave recall@10 0.957 at 100k movies, 120 leaves a
  -- margin for larger catalogues (docs/search.md); it grows with k. Iterative scans (relaxed order, re-sorted below) keep going when the
  -- filters reject candidates, up to hnsw.max_scan_tuples.
  PERFORM set_config('hnsw.ef_search', greatest(120, least(1000, 2 * similar_movies.k))::text, true);
  PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);

  IF similar_movies.same_genre THEN
    RETURN QUERY
    WITH nn AS MATERIALIZED (
      SELECT f.movie_id, f.nvec <-> v_vec AS d
      FROM reelscore.movie_features f
      JOIN reelscore.movies g ON g.id = f.movie_id
      WHERE f.movie_id <> similar_movies.p_movie_id AND g.genres && v_genres
      ORDER BY f.nvec <-> v_vec
      LIMIT similar_movies.k)
    SELECT nn.movie_id, m.title::text, m.release_year, m.genres, nn.d, 1.0 / (1.0 + nn.d),
           ARRAY(SELECT x FROM unnest(m.genres) x WHERE x = ANY (v_genres))
    FROM nn JOIN reelscore.movies m ON m.id = nn.movie_id
    ORDER BY nn.d, nn.movie_id;
  ELSE
    RETURN QUERY
    WITH nn AS MATERIALIZED (
      SELECT f.movie_id, f.nvec <-> v_vec AS d
      FROM reelscore.movie_features f
      WHERE f.movie_id <> similar_movies.p_movie_id
      ORDER BY f.nvec <-> v_vec
      LIMIT similar_movies.k)
    SELECT nn.movie_id, m.title::text, m.release_year, m.genres, nn.d, 1.0 / (1.0 + nn.d),
           ARRAY(SELECT x FROM unnest(m.genres) x WHERE x = ANY (v_genres))
    FROM nn JOIN reelscore.movies m ON m.id = nn.movie_id
    ORDER BY nn.d, nn.movie_id;
  END IF;

  PERFORM set_config('hnsw.ef_search', coalesce(v_old_ef, '40'), true);
  PERFORM set_config('hnsw.iterative_scan', coalesce(v_old_iter, 'off'), true);
END
$$;
COMMENT ON FUNCTION reelscore.similar_movies(bigint, integer, boolean) IS
  'The k movies most similar in how the world rated and received them: nearest neighbours by Euclidean distance on the normalized metric vectors (movie_features.nvec, HNSW index), optionally sharing a genre with the movie. similarity = 1 / (1 + distance). Approximate (recall@10 >= 0.95, docs/search.md); similar_movies_exact gives the exact answer.';

-- The exact answer (a sequential scan over every vector): for measuring recall, and for
-- callers that need exactness over speed.
CREATE OR REPLACE FUNCTION reelscore.similar_movies_exact(p_movie_id bigint, k integer DEFAULT 10,
                                                          same_genre boolean DEFAULT false)
RETURNS TABLE (movie_id bigint, title text, release_year smallint, genres text[],
               distance double precision, similarity double precision, shared_genres text[])
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
#variable_conflict use_column
DECLARE
  v_vec vector;
  v_genres text[];
BEGIN
  IF similar_movies_exact.k IS NULL OR similar_movies_exact.k NOT BETWEEN 1 AND 1000 THEN
    RAISE EXCEPTION 'k must be between 1 and 1000, got %', coalesce(similar_movies_exact.k::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value', COLUMN = 'k';
  END IF;
  SELECT f.nvec, m.genres INTO v_vec, v_genres
  FROM reelscore.movies m LEFT JOIN reelscore.movie_features f ON f.movie_id = m.id
  WHERE m.id = similar_movies_exact.p_movie_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown movie id: %', coalesce(similar_movies_exact.p_movie_id::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value', COLUMN = 'movie_id';
  END IF;
  IF v_vec IS NULL OR (similar_movies_exact.same_genre AND cardinality(v_genres) = 0) THEN
    RETURN;
  END IF;
  RETURN QUERY
  WITH nn AS MATERIALIZED (
    SELECT f.movie_id, (f.nvec <-> v_vec) + 0.0 AS d   -- "+ 0" keeps the HNSW index out: exact
    FROM reelscore.movie_features f
    JOIN reelscore.movies g ON g.id = f.movie_id
    WHERE f.movie_id <> similar_movies_exact.p_movie_id
      AND (NOT similar_movies_exact.same_genre OR g.genres && v_genres)
    ORDER BY 2, 1
    LIMIT similar_movies_exact.k)
  SELECT nn.movie_id, m.title::text, m.release_year, m.genres, nn.d, 1.0 / (1.0 + nn.d),
         ARRAY(SELECT x FROM unnest(m.genres) x WHERE x = ANY (v_genres))
  FROM nn JOIN reelscore.movies m ON m.id = nn.movie_id
  ORDER BY nn.d, nn.movie_id;
END
$$;
COMMENT ON FUNCTION reelscore.similar_movies_exact(bigint, integer, boolean) IS
  'Exact nearest neighbours (sequential scan) with the same arguments and columns as similar_movies: the reference its recall is measured against.';

-- Bulk loads: HNSW grows one insertion at a time, which is far slower than building the
-- index over the finished table. A bulk load (the synthetic generator, a first
-- refresh_features over a large catalogue) may drop the index first and build it after.
-- The definition is the one of migration 0008.
CREATE OR REPLACE FUNCTION reelscore.drop_similarity_index() RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
BEGIN
  DROP INDEX IF EXISTS reelscore.movie_features_nvec_hnsw;
END
$$;
COMMENT ON FUNCTION reelscore.drop_similarity_index() IS
  'Drop the HNSW index of similar_movies before a bulk load (similar_movies still answers, by a sequential scan); build_similarity_index() puts it back.';

CREATE OR REPLACE FUNCTION reelscore.build_similarity_index(p_maintenance_work_mem text DEFAULT '256MB')
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
BEGIN
  IF p_maintenance_work_mem !~ '^[0-9]+(kB|MB|GB)$' THEN
    RAISE EXCEPTION 'p_maintenance_work_mem must look like 256MB, got %', quote_literal(p_maintenance_work_mem)
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM set_config('maintenance_work_mem', p_maintenance_work_mem, true);
  CREATE INDEX IF NOT EXISTS movie_features_nvec_hnsw ON reelscore.movie_features
    USING hnsw (nvec vector_l2_ops) WITH (m = 24, ef_construction = 128);
END
$$;
COMMENT ON FUNCTION reelscore.build_similarity_index(text) IS
  'Build the HNSW index of similar_movies (migration 0008''s definition) if it is missing, e.g. after a bulk load; the graph is built in maintenance_work_mem (default 256MB).';
