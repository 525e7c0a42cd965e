-- 000-header: shared helpers every later file may use (errors, the actor of a change).
-- Load order: files run in the order of their three-digit prefix, on every upgrade to head.

-- Who makes the current change, and why: set by the admin and the CLI with
-- set_config('reelscore.actor' / 'reelscore.reason'); falls back to the database user.
CREATE OR REPLACE FUNCTION reelscore.current_actor() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$ SELECT coalesce(nullif(current_setting('reelscore.actor', true), ''), session_user::text) $$;
COMMENT ON FUNCTION reelscore.current_actor() IS
  'Who makes the current change: the reelscore.actor session setting, else the database user.';

CREATE OR REPLACE FUNCTION reelscore.current_reason() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
AS $$ SELECT nullif(current_setting('reelscore.reason', true), '') $$;
COMMENT ON FUNCTION reelscore.current_reason() IS
  'Why the current change is made: the reelscore.reason session setting, or NULL.';
