"""Section: Coverage (filled in as its SQL lands)."""
from __future__ import annotations

from flask import Blueprint, render_template

from admin.auth import require_login

bp = Blueprint("coverage", __name__, url_prefix="/coverage")
bp.before_request(require_login)


@bp.get("/")
def index():
    return render_template("pending.html", title="Coverage")
