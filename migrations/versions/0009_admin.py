"""admin panel users: user names, password hashes (werkzeug.security format) and roles
(viewer reads, admin edits), written only through the SQL functions of sql/750-admin.sql.

Revision ID: 0009
Revises: 0008
"""
from migrations.helpers import run_sql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(r"""
    CREATE TABLE reelscore.admin_users (
      id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      username       text NOT NULL CHECK (username ~ '^[A-Za-z0-9_.@-]{1,100}$'),
      -- werkzeug.security.generate_password_hash output: "<method>$<salt>$<hex digest>"
      password_hash  text NOT NULL CHECK (password_hash ~ '^(scrypt|pbkdf2):[^$]+\$[^$]+\$[0-9a-f]+$'),
      role           text NOT NULL CHECK (role IN ('viewer', 'admin')),
      active         boolean NOT NULL DEFAULT true,
      created_by     text NOT NULL DEFAULT session_user,
      created_at     timestamptz NOT NULL DEFAULT now(),
      updated_at     timestamptz NOT NULL DEFAULT now(),
      last_login_at  timestamptz
    );
    CREATE UNIQUE INDEX admin_users_username ON reelscore.admin_users (lower(username));
    COMMENT ON TABLE reelscore.admin_users IS
      'Users of the admin panel: password hashes and roles (viewer, admin); written through admin_* functions';
    REVOKE ALL ON reelscore.admin_users FROM PUBLIC;
    """)


def downgrade() -> None:
    run_sql(r"""
    DROP TABLE IF EXISTS reelscore.admin_users CASCADE;
    """)
