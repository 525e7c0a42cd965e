"""Login, logout and roles. Users and password hashes live in reelscore.admin_users and are
only touched through SQL functions (sql/750-admin.sql): admin_check_login verifies a
password inside the database, admin_user_role re-reads the role on every request (so a
removed or demoted user loses access at once). Two roles: viewer reads, admin edits."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, abort, g, redirect, render_template, request, session, url_for
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from admin.db import query_one
from admin.errors import is_htmx

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired(), Length(max=100)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1000)])


class LogoutForm(FlaskForm):
    """Empty: carries the CSRF token of the logout button."""


@bp.before_app_request
def load_user() -> None:
    g.user = None
    g.role = None
    name = session.get("user")
    if not name:
        return
    row = query_one("SELECT reelscore.admin_user_role(%s) AS role", (name,))
    if row is None or row["role"] is None:
        session.clear()  # deleted or deactivated since login
        return
    g.user, g.role = name, row["role"]


def require_login() -> Any:
    """For a blueprint's before_request: anonymous users go to the login page."""
    if g.get("user") is None:
        if is_htmx():
            abort(401, description="your session has ended: log in again")
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    return None


def admin_required(view: Callable) -> Callable:
    """Only the admin role may run this view (viewers get 403)."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.get("user") is None:
            abort(401, description="log in first")
        if g.get("role") != "admin":
            abort(403, description="this action needs the admin role (you are a viewer)")
        return view(*args, **kwargs)
    return wrapped


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after login (no open redirect)."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//"):
            return target
    return url_for("metrics.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    error = None
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            row = query_one("SELECT reelscore.admin_check_login(%s, %s) AS role",
                            (form.username.data.strip(), form.password.data))
            if row and row["role"]:
                session.clear()
                session.permanent = True
                session["user"] = form.username.data.strip()
                return redirect(_safe_next(request.args.get("next")))
            error = "invalid user name or password"
            status = 401
        else:
            error = "enter a user name and a password"
            status = 400
    return render_template("login.html", form=form, error=error), status


@bp.post("/logout")
def logout():
    if not LogoutForm().validate_on_submit():
        abort(400, description="the logout form is invalid or expired")
    session.clear()
    return redirect(url_for("auth.login"))


@bp.get("/")
def home():
    if g.get("user") is None:
        return redirect(url_for("auth.login"))
    return redirect(url_for("metrics.index"))
