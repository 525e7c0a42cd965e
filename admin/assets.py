"""Third-party front-end code served from node_modules (installed by `make npm` from
package.json), never copied into the repository. Only the files listed here are served."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, current_app, send_from_directory

bp = Blueprint("assets", __name__, url_prefix="/vendor")

VENDOR_FILES = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "chart.umd.js": "chart.js/dist/chart.umd.js",
}


@bp.get("/<name>")
def vendor(name: str):
    rel = VENDOR_FILES.get(name)
    if rel is None:
        abort(404)
    path = Path(current_app.config["NODE_MODULES"]) / rel
    if not path.is_file():
        abort(404, description=f"{rel} is missing: run 'make npm' (npm install) first")
    return send_from_directory(path.parent, path.name, max_age=86400)
