-- 900-grants: least privilege for the three group roles; PUBLIC gets nothing.
-- reelscore_read: the read API; reelscore_write: read + loading values;
-- reelscore_admin: write + editing definitions and profiles (roles inherit in that order).

REVOKE ALL ON ALL TABLES IN SCHEMA reelscore FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA reelscore FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA reelscore FROM PUBLIC;
GRANT USAGE ON SCHEMA reelscore TO reelscore_read;

-- == foundation ==
GRANT EXECUTE ON FUNCTION reelscore.current_actor(), reelscore.current_reason(),
  reelscore.python_info(), reelscore.extension_version(text), reelscore.capabilities()
  TO reelscore_read;
GRANT SELECT ON reelscore.plpy_modules TO reelscore_read;  -- PL/Python shims read their sources as the caller
