-- 650-schedules: pg_cron jobs for the periodic refreshes (coverage every minute, the seed's
-- 60 seconds; rollups; scores when the scoring part provides refresh_scores; retention),
-- and their removal. Without pg_cron in this database the CLI does the same:
-- `reelscore refresh --every 60`.
--
-- pg_cron 1.4 has minute granularity: "every 60 seconds" is '* * * * *'. It lives in the
-- one database named by cron.database_name; the functions say so when called elsewhere.

CREATE OR REPLACE FUNCTION reelscore.schedule_refreshes(
  p_coverage  text DEFAULT '* * * * *',
  p_rollups   text DEFAULT '*/5 * * * *',
  p_scores    text DEFAULT NULL,
  p_retention text DEFAULT '17 3 * * *')
RETURNS TABLE (job_name text, schedule text, command text, job_id bigint)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_jobs text[][] := ARRAY[
    ARRAY['reelscore-coverage', p_coverage, 'SELECT reelscore.refresh_coverage()'],
    ARRAY['reelscore-rollups', p_rollups, 'SELECT * FROM reelscore.refresh_rollups()'],
    ARRAY['reelscore-scores', p_scores, 'SELECT count(*) FROM reelscore.refresh_scores()'],
    ARRAY['reelscore-retention', p_retention,
          'SELECT reelscore.apply_retention() WHERE (SELECT raw_retention FROM reelscore.ts_settings) IS NOT NULL']];
  v_i integer;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
    RAISE EXCEPTION 'pg_cron is not installed in database %', current_database()
      USING ERRCODE = 'feature_not_supported',
            DETAIL = format('pg_cron runs only in the database named by cron.database_name (%s).',
                            coalesce(current_setting('cron.database_name', true), 'pg_cron not loaded')),
            HINT = 'Run the refreshes from the CLI instead: reelscore refresh --every 60';
  END IF;
  FOR v_i IN 1 .. array_length(v_jobs, 1) LOOP
    job_name := v_jobs[v_i][1];
    schedule := v_jobs[v_i][2];
    command := v_jobs[v_i][3];
    IF job_name = 'reelscore-scores' AND schedule IS NULL THEN
      -- Scores follow coverage's cadence when the scoring part is installed.
      schedule := CASE WHEN to_regprocedure('reelscore.refresh_scores(text)') IS NOT NULL THEN p_coverage END;
    END IF;
    IF schedule IS NULL THEN
      CONTINUE;
    END IF;
    -- cron.schedule(name, ...) replaces a job of the same name: calling again is safe.
    EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job_id USING job_name, schedule, command;
    RETURN NEXT;
  END LOOP;
END
$$;
COMMENT ON FUNCTION reelscore.schedule_refreshes(text, text, text, text) IS
  'Schedule the periodic refreshes with pg_cron (cron syntax; NULL skips a job): coverage every minute, rollups every 5 minutes, scores with coverage when refresh_scores exists, retention nightly when ts_settings.raw_retention is set. Idempotent. Without pg_cron raises feature_not_supported naming the CLI fallback (reelscore refresh --every 60).';

CREATE OR REPLACE FUNCTION reelscore.unschedule_refreshes() RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
  v_n integer := 0;
  v_name text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
    RETURN 0;
  END IF;
  -- Only the jobs schedule_refreshes makes (other parts schedule their own reelscore-* jobs).
  FOR v_name IN EXECUTE $q$SELECT jobname FROM cron.job
                           WHERE jobname IN ('reelscore-coverage', 'reelscore-rollups', 'reelscore-scores',
                                             'reelscore-retention')$q$ LOOP
    EXECUTE 'SELECT cron.unschedule($1)' USING v_name;
    v_n := v_n + 1;
  END LOOP;
  RETURN v_n;
END
$$;
COMMENT ON FUNCTION reelscore.unschedule_refreshes() IS
  'Remove the pg_cron jobs schedule_refreshes made (reelscore-coverage, -rollups, -scores, -retention); returns how many (0 without pg_cron).';
