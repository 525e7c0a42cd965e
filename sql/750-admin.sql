-- 750-admin: users of the admin panel (create, set password or role, check a login).
-- The table (revision 0009) is closed to everyone; these SECURITY DEFINER functions are
-- the only way in. Hashes come from werkzeug.security.generate_password_hash in the client;
-- the check runs in the server (reelpy.adminauth), so hashes never leave the database.

CREATE OR REPLACE FUNCTION reelscore.admin_create_user(p_username text, p_password_hash text,
                                                       p_role text DEFAULT 'viewer')
RETURNS bigint
LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_id bigint;
BEGIN
  IF p_username !~ '^[A-Za-z0-9_.@-]{1,100}$' THEN
    RAISE EXCEPTION 'invalid admin user name %', quote_literal(p_username)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = '1-100 characters of letters, digits, _ . @ and -.';
  END IF;
  IF p_role NOT IN ('viewer', 'admin') THEN
    RAISE EXCEPTION 'invalid admin role %', quote_literal(p_role)
      USING ERRCODE = 'invalid_parameter_value', HINT = 'The roles are viewer and admin.';
  END IF;
  IF p_password_hash !~ '^(scrypt|pbkdf2):[^$]+\$[^$]+\$[0-9a-f]+$' THEN
    RAISE EXCEPTION 'the password of % is not a werkzeug password hash', quote_literal(p_username)
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'Expected "<method>$<salt>$<hex digest>" with method scrypt:... or pbkdf2:...',
            HINT = 'Hash it with werkzeug.security.generate_password_hash; never pass a plain password.';
  END IF;
  IF EXISTS (SELECT 1 FROM reelscore.admin_users u WHERE lower(u.username) = lower(p_username)) THEN
    RAISE EXCEPTION 'admin user % already exists', quote_literal(p_username)
      USING ERRCODE = 'unique_violation',
            HINT = 'Use reelscore.admin_set_password or reelscore.admin_set_role to change it.';
  END IF;
  INSERT INTO reelscore.admin_users (username, password_hash, role, created_by)
  VALUES (p_username, p_password_hash, p_role, reelscore.current_actor())
  RETURNING id INTO v_id;
  RETURN v_id;
END
$$;
COMMENT ON FUNCTION reelscore.admin_create_user(text, text, text) IS
  'Create a user of the admin panel with a werkzeug password hash and a role (viewer or admin). Errors (22023, 23505) on a bad name, role or hash, or an existing user.';

CREATE OR REPLACE FUNCTION reelscore.admin_set_password(p_username text, p_password_hash text)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_password_hash !~ '^(scrypt|pbkdf2):[^$]+\$[^$]+\$[0-9a-f]+$' THEN
    RAISE EXCEPTION 'the password of % is not a werkzeug password hash', quote_literal(p_username)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Hash it with werkzeug.security.generate_password_hash; never pass a plain password.';
  END IF;
  UPDATE reelscore.admin_users u SET password_hash = p_password_hash, updated_at = now()
  WHERE lower(u.username) = lower(p_username);
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no admin user %', quote_literal(p_username)
      USING ERRCODE = 'no_data_found', HINT = 'Create it with reelscore.admin_create_user.';
  END IF;
END
$$;
COMMENT ON FUNCTION reelscore.admin_set_password(text, text) IS
  'Replace the password hash (werkzeug format) of an admin panel user. Errors (22023, P0002) on a bad hash or an unknown user.';

CREATE OR REPLACE FUNCTION reelscore.admin_set_role(p_username text, p_role text, p_active boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_role NOT IN ('viewer', 'admin') THEN
    RAISE EXCEPTION 'invalid admin role %', quote_literal(p_role)
      USING ERRCODE = 'invalid_parameter_value', HINT = 'The roles are viewer and admin.';
  END IF;
  UPDATE reelscore.admin_users u SET role = p_role, active = p_active, updated_at = now()
  WHERE lower(u.username) = lower(p_username);
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no admin user %', quote_literal(p_username)
      USING ERRCODE = 'no_data_found', HINT = 'Create it with reelscore.admin_create_user.';
  END IF;
END
$$;
COMMENT ON FUNCTION reelscore.admin_set_role(text, text, boolean) IS
  'Change the role (viewer or admin) of an admin panel user, or deactivate it (p_active false). Errors (22023, P0002) on a bad role or an unknown user.';

CREATE OR REPLACE FUNCTION reelscore.admin_check_login(p_username text, p_password text)
RETURNS text
LANGUAGE plpython3u VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
if 'reelpy_import' not in GD:
    exec(plpy.execute("SELECT source FROM reelscore.plpy_modules WHERE name = 'reelpy._loader'")[0]['source'], GD)
return GD['reelpy_import'](plpy, GD, 'reelpy.adminauth').check_login(plpy, p_username, p_password)
$$;
COMMENT ON FUNCTION reelscore.admin_check_login(text, text) IS
  'The role (viewer or admin) of an active admin panel user whose password matches, else NULL. The hash never leaves the database.';

CREATE OR REPLACE FUNCTION reelscore.admin_user_role(p_username text)
RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT u.role FROM reelscore.admin_users u WHERE lower(u.username) = lower(p_username) AND u.active $$;
COMMENT ON FUNCTION reelscore.admin_user_role(text) IS
  'The role of an active admin panel user, or NULL (the panel re-reads it on every request).';

CREATE OR REPLACE FUNCTION reelscore.admin_list_users()
RETURNS TABLE (username text, role text, active boolean, created_by text, created_at timestamptz,
               updated_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT u.username, u.role, u.active, u.created_by, u.created_at, u.updated_at
      FROM reelscore.admin_users u ORDER BY lower(u.username) $$;
COMMENT ON FUNCTION reelscore.admin_list_users() IS
  'Users of the admin panel with role and state (no password hashes).';

REVOKE ALL ON FUNCTION reelscore.admin_create_user(text, text, text), reelscore.admin_set_password(text, text),
  reelscore.admin_set_role(text, text, boolean), reelscore.admin_check_login(text, text),
  reelscore.admin_user_role(text), reelscore.admin_list_users() FROM PUBLIC;
