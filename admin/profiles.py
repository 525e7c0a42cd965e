"""Section: Weight profiles (filled in as its SQL lands)."""
from __future__ import annotations

from flask import Blueprint, render_template

from admin.auth import require_login

bp = Blueprint("profiles", __name__, url_prefix="/profiles")
bp.before_request(require_login)


@bp.get("/")
def index():
    return render_template("pending.html", title="Weight profiles")
