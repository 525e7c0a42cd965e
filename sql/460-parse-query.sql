-- 460-parse-query: parse_query, plain English to the search filter format (PL/Python shim;
-- the logic and its vocabulary are plpy/reelpy/nlquery.py, documented in docs/search.md).

CREATE OR REPLACE FUNCTION reelscore.parse_query(text text) RETURNS jsonb
LANGUAGE plpython3u STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
if 'reelpy_import' not in GD:
    exec(plpy.execute("SELECT source FROM reelscore.plpy_modules WHERE name = 'reelpy._loader'")[0]['source'], GD)
return GD['reelpy_import'](plpy, GD, 'reelpy.nlquery').parse_query_sql(plpy, text)
$$;
COMMENT ON FUNCTION reelscore.parse_query(text) IS
  'Plain English to the search filter format: {"filters": [...], "recognized": [...], "unparsed": [...]}; search_movies accepts the result as is. "unparsed" lists the words it did not understand. Vocabulary: docs/search.md. Text over 1000 characters: SQLSTATE 22023.';
