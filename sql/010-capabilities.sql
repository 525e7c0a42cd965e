-- 010-capabilities: what this database offers and which path each optional feature took.

CREATE OR REPLACE FUNCTION reelscore.python_info() RETURNS jsonb
LANGUAGE plpython3u STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
if 'reelpy_import' not in GD:
    exec(plpy.execute("SELECT source FROM reelscore.plpy_modules WHERE name = 'reelpy._loader'")[0]['source'], GD)
import json
return json.dumps(GD['reelpy_import'](plpy, GD, 'reelpy.capabilities').python_info())
$$;
COMMENT ON FUNCTION reelscore.python_info() IS
  'The Python embedded in the server (PL/Python): version and implementation.';

-- The CPUs the server may run on (its affinity mask), for sizing parallel work where the
-- planner's own choice is measured to be wrong (rescore_profile_id).
CREATE OR REPLACE FUNCTION reelscore.server_cpu_count() RETURNS integer
LANGUAGE plpython3u STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
import os
return len(os.sched_getaffinity(0))
$$;
COMMENT ON FUNCTION reelscore.server_cpu_count() IS
  'How many CPUs the database server process may run on.';

CREATE OR REPLACE FUNCTION reelscore.extension_version(p_name text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$ SELECT extversion FROM pg_catalog.pg_extension WHERE extname = p_name $$;
COMMENT ON FUNCTION reelscore.extension_version(text) IS
  'Installed version of an extension in this database, or NULL when it is not installed.';

-- Some settings (cron.database_name) are readable only by superusers and pg_read_all_settings;
-- the read API must still answer for everyone, so an unreadable setting is reported as NULL.
CREATE OR REPLACE FUNCTION reelscore.setting_or_null(p_name text) RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$
BEGIN
  RETURN current_setting(p_name, true);
EXCEPTION WHEN insufficient_privilege THEN
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION reelscore.setting_or_null(text) IS
  'A server setting, or NULL when it does not exist or the caller may not read it.';

CREATE OR REPLACE FUNCTION reelscore.capabilities() RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
DECLARE
  v_tsdb text := reelscore.extension_version('timescaledb');
  v_cron text := reelscore.extension_version('pg_cron');
  v_license text := CASE WHEN v_tsdb IS NOT NULL THEN current_setting('timescaledb.license', true) END;
  v_hyper boolean := false;
  v_rollups text;
BEGIN
  IF v_tsdb IS NOT NULL AND to_regclass('reelscore.metric_timeseries') IS NOT NULL THEN
    EXECUTE $q$SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                              WHERE hypertable_schema = 'reelscore'
                                AND hypertable_name = 'metric_timeseries')$q$ INTO v_hyper;
  END IF;
  v_rollups := CASE WHEN v_license = 'timescale' THEN 'continuous aggregates (TimescaleDB TSL)'
                    ELSE 'materialized views over time_bucket, refreshed for the recent window' END;
  RETURN jsonb_build_object(
    'postgresql', current_setting('server_version'),
    'python', reelscore.python_info(),
    'plpython3u', reelscore.extension_version('plpython3u'),
    'pgvector', reelscore.extension_version('vector'),
    'timescaledb', CASE WHEN v_tsdb IS NULL THEN NULL
                        ELSE jsonb_build_object('version', v_tsdb, 'license', v_license) END,
    'pg_cron', CASE WHEN v_cron IS NULL THEN NULL
                    ELSE jsonb_build_object('version', v_cron,
                                            'database', reelscore.setting_or_null('cron.database_name')) END,
    'pg_stat_statements', reelscore.extension_version('pg_stat_statements'),
    'track_functions', current_setting('track_functions'),
    'paths', jsonb_build_object(
      'timeseries_storage', CASE WHEN v_hyper THEN 'TimescaleDB hypertable'
                                 ELSE 'PostgreSQL range-partitioned table' END,
      'rollups', CASE WHEN v_tsdb IS NULL THEN 'materialized views over date_trunc buckets'
                      ELSE v_rollups END,
      'scheduling', CASE WHEN v_cron IS NOT NULL THEN 'pg_cron jobs in this database'
                         ELSE 'CLI loop (reelscore refresh --every N); pg_cron runs only in database '
                              || coalesce(reelscore.setting_or_null('cron.database_name'), '(not loaded)') END
    ));
END
$$;
COMMENT ON FUNCTION reelscore.capabilities() IS
  'What this database offers (PostgreSQL, PL/Python, pgvector, TimescaleDB and its license, pg_cron) and the path each optional feature took.';
