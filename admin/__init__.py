"""reelscore admin: a thin Flask panel over the SQL API (application factory, one blueprint
per section). Every number it shows comes from a SQL function, view or table; the panel
never recomputes a score, a normalization or a coverage figure in Python."""
from __future__ import annotations

import importlib
import importlib.util
import os
import secrets
from typing import Any

from flask import Flask

from reelscore.config import ROOT, database_url

# The sections, in menu order. Adding a blueprint is a one-line change here: each module
# defines `bp` (a flask.Blueprint). Modules listed in OPTIONAL_BLUEPRINTS are registered
# only when they exist (admin/realtime.py: Server-Sent Events and /metrics, another owner).
BLUEPRINTS: list[str] = [
    "admin.auth",
    "admin.assets",
    "admin.metrics",
    "admin.profiles",
    "admin.coverage",
    "admin.playground",
    "admin.realtime",
]
OPTIONAL_BLUEPRINTS: set[str] = {"admin.realtime"}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the admin app. `config` overrides the defaults, e.g.
    {"DATABASE_URL": ..., "SECRET_KEY": ..., "TESTING": True}."""
    app = Flask(__name__, instance_relative_config=False)
    app.config.from_mapping(
        DATABASE_URL=database_url(),
        # Sessions are signed with this key; set REELSCORE_SECRET_KEY to keep logins across
        # restarts (a random key per process otherwise: everyone logs in again).
        SECRET_KEY=os.environ.get("REELSCORE_SECRET_KEY") or secrets.token_hex(32),
        SESSION_COOKIE_NAME="reelscore_admin",
        SESSION_COOKIE_SECURE=True,      # browsers treat http://127.0.0.1 as a secure context
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=8 * 3600,
        WTF_CSRF_ENABLED=True,
        WTF_CSRF_TIME_LIMIT=8 * 3600,
        NODE_MODULES=str(ROOT / "node_modules"),
        DB_POOL_MIN=1,
        DB_POOL_MAX=int(os.environ.get("REELSCORE_ADMIN_POOL_MAX", "8")),
        STATEMENT_TIMEOUT_MS=int(os.environ.get("REELSCORE_ADMIN_STATEMENT_TIMEOUT_MS", "30000")),
        MAX_CONTENT_LENGTH=1 << 20,
    )
    if config:
        app.config.update(config)

    from flask_wtf.csrf import CSRFProtect
    CSRFProtect(app)

    from admin import db, errors, views
    db.init_app(app)
    errors.init_app(app)
    views.init_app(app)

    for name in BLUEPRINTS:
        if name in OPTIONAL_BLUEPRINTS and importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        app.register_blueprint(module.bp)
    return app


__all__ = ["BLUEPRINTS", "OPTIONAL_BLUEPRINTS", "create_app"]
