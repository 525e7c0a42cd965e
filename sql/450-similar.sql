-- 450-similar: similar_movies, nearest neighbours on the per-movie normalized metric vectors.
--
-- "Similar" means similar in how the world rated and received them: close in the 32-d
-- vector of normalized metric values (movie_features.nvec, 0 where a metric is missing),
-- by Euclidean (L2) distance. Not similar in story, cast or style. The candidates come from
-- similarity_vectors (a copy of nvec with the HNSW index similarity_vectors_hnsw, migration
-- 0013), synced by refresh_scores(): the query movie's vector is always the current one,
-- its neighbours' may lag a value change by one refresh. Each call sets hnsw.ef_search for its k and
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

  -- ef_search: the candidate list; 100 gave recall@10 0.957 at 100k movies; at 1M, 120 gave
  -- 0.945 and 200 0.967 at the same latency (docs/search.md); it grows with k. Iterative scans (relaxed order, re-sorted below) keep going when the
  -- filters reject candidates, up to hnsw.max_scan_tuples.
  PERFORM set_config('hnsw.ef_search', greatest(200, least(1000, 2 * similar_movies.k))::text, true);
  PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);

  IF similar_movies.same_genre THEN
    RETURN QUERY
    WITH nn AS MATERIALIZED (
      SELECT f.movie_id, f.nvec <-> v_vec AS d
      FROM reelscore.similarity_vectors f
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
      FROM reelscore.similarity_vectors f
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
  'The k movies most similar in how the world rated and received them: nearest neighbours by Euclidean distance on the normalized metric vectors (the movie''s current movie_features.nvec against similarity_vectors, HNSW index; neighbours'' vectors as of the last refresh_scores), optionally sharing a genre with the movie. similarity = 1 / (1 + distance). Approximate (recall@10 >= 0.95, docs/search.md); similar_movies_exact gives the exact answer.';

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
    FROM reelscore.similarity_vectors f
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

-- The HNSW index. HNSW grows one insertion at a time, far slower than a build over the
-- finished table: sync_similarity_vectors() drops it before copying many vectors and builds
-- it after; drop_/build_similarity_index() let a bulk loader do the same by hand.
CREATE OR REPLACE FUNCTION reelscore.drop_similarity_index() RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  DROP INDEX IF EXISTS reelscore.similarity_vectors_hnsw;
END
$$;
COMMENT ON FUNCTION reelscore.drop_similarity_index() IS
  'Drop the HNSW index of similar_movies before a bulk load (similar_movies still answers, by a sequential scan); build_similarity_index() puts it back.';

CREATE OR REPLACE FUNCTION reelscore.build_similarity_index(p_maintenance_work_mem text DEFAULT '1GB')
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_maintenance_work_mem IS NULL OR p_maintenance_work_mem !~ '^[0-9]+(kB|MB|GB)$' THEN
    RAISE EXCEPTION 'p_maintenance_work_mem must look like 256MB, got %', coalesce(quote_literal(p_maintenance_work_mem), 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- the graph of 1M 32-d vectors needs about 600 MB: a build that spills is several times slower
  PERFORM set_config('maintenance_work_mem', p_maintenance_work_mem, true);
  EXECUTE format('CREATE INDEX IF NOT EXISTS similarity_vectors_hnsw ON reelscore.similarity_vectors '
                 'USING hnsw (nvec %I.vector_l2_ops) WITH (m = 24, ef_construction = 128)', reelscore.vector_schema());
END
$$;
COMMENT ON FUNCTION reelscore.build_similarity_index(text) IS
  'Build the HNSW index of similar_movies (migration 0013''s definition) if it is missing, e.g. after a bulk load; the graph is built in maintenance_work_mem (default 1GB).';

-- Copy the vectors that changed since the last sync (movie_features.similarity_synced =
-- false) into similarity_vectors. One statement marks and copies, so a feature write that
-- commits meanwhile is either copied now or left unsynced for the next call. Above
-- p_rebuild_over rows (or a fifth of the table) the index is dropped and rebuilt instead
-- of updated row by row.
CREATE OR REPLACE FUNCTION reelscore.sync_similarity_vectors(p_rebuild_over bigint DEFAULT 50000)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_pending bigint;
  v_total bigint;
  v_rebuild boolean;
  v_n bigint;
BEGIN
  IF p_rebuild_over IS NULL OR p_rebuild_over < 0 THEN
    RAISE EXCEPTION 'p_rebuild_over must be a row count >= 0, got %', coalesce(p_rebuild_over::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT count(*) INTO v_pending FROM reelscore.movie_features f WHERE NOT f.similarity_synced;
  IF v_pending = 0 THEN
    RETURN 0;
  END IF;
  SELECT greatest(c.reltuples, 0)::bigint INTO v_total FROM pg_class c WHERE c.oid = 'reelscore.similarity_vectors'::regclass;
  v_rebuild := to_regclass('reelscore.similarity_vectors_hnsw') IS NOT NULL
               AND (v_pending > p_rebuild_over OR v_pending > v_total / 5) AND v_pending > 1000;
  IF v_rebuild THEN
    PERFORM reelscore.drop_similarity_index();
  END IF;
  WITH marked AS (
    UPDATE reelscore.movie_features f SET similarity_synced = true
    WHERE NOT f.similarity_synced
    RETURNING f.movie_id, f.nvec)
  INSERT INTO reelscore.similarity_vectors AS v (movie_id, nvec, synced_at)
  SELECT m.movie_id, m.nvec, now() FROM marked m
  ON CONFLICT (movie_id) DO UPDATE SET nvec = excluded.nvec, synced_at = excluded.synced_at;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  IF v_rebuild THEN
    PERFORM reelscore.build_similarity_index();
  END IF;
  RETURN v_n;
END
$$;
COMMENT ON FUNCTION reelscore.sync_similarity_vectors(bigint) IS
  'Copy changed movie vectors (movie_features.similarity_synced = false) into similarity_vectors, the table under similar_movies'' HNSW index; above p_rebuild_over rows (or a fifth of the table) the index is rebuilt rather than updated. refresh_scores() calls it. Returns the number of vectors copied.';
