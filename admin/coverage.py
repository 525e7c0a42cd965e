"""Section 3, coverage: overall and per category and source (latest snapshot of
reelscore.refresh_coverage()), 7-day sparklines per metric (reelscore.coverage_trend), the
heatmap of coverage by release decade, alerts, and gap analysis (reelscore.coverage_gaps:
the movies missing a metric, category or source, most costly first). Admins can take a new
snapshot (reelscore.refresh_coverage())."""
from __future__ import annotations

import json

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from psycopg import errors as pgerr

from admin.auth import admin_required, require_login
from admin.db import function_exists, query, query_one, transaction
from admin.errors import db_message, render_error
from admin.forms import EmptyForm

bp = Blueprint("coverage", __name__, url_prefix="/coverage")
bp.before_request(require_login)

SCOPES = ("metric", "category", "source")


def _installed() -> bool:
    return function_exists("refresh_coverage")


@bp.get("/")
def index():
    if request.args.get("fragment") not in (None, "live"):
        return render_error(400, "Bad parameter", f"fragment must be 'live', got {request.args.get('fragment')!r}")
    if not _installed():
        return render_template("pending.html", title="Coverage")
    latest = query_one("SELECT * FROM reelscore.coverage_latest")
    categories = query("SELECT * FROM reelscore.coverage_by_category")
    sources = query("SELECT * FROM reelscore.coverage_by_source")
    metrics = query("""SELECT m.*, t.days, t.daily_percentage, t.change, t.snapshots
                       FROM reelscore.metric_coverage m
                       LEFT JOIN reelscore.coverage_trend(7) t ON t.metric_code = m.metric_code""")
    for m in metrics:
        m["spark"] = json.dumps([{"x": str(d), "y": v} for d, v in zip(m["days"] or [], m["daily_percentage"] or [])])
    alerts = query("""SELECT * FROM reelscore.coverage_alerts
                      ORDER BY severity = 'critical' DESC, kind, metric_code""")
    heat = query("SELECT * FROM reelscore.coverage_heatmap_latest")
    buckets = sorted({(h["bucket_order"], h["bucket"]) for h in heat})
    heat_codes = sorted({(h["slot"], h["metric_code"]) for h in heat})
    heat_cells = {(h["bucket"], h["metric_code"]): h for h in heat}
    gap_counts = query("""SELECT * FROM reelscore.coverage_gap_counts()
                          WHERE dimension IN ('category', 'source') ORDER BY dimension, movies_missing DESC""")
    bars = json.dumps({"horizontal": False, "labels": [c["category"] for c in categories],
                       "datasets": [{"label": "coverage %", "data": [c["coverage_percentage"] for c in categories]}]})
    # ?fragment=live: the numbers alone, for the page's live refresh after a new snapshot
    template = "coverage/_live.html" if request.args.get("fragment") == "live" else "coverage/index.html"
    return render_template(template, latest=latest, categories=categories, sources=sources,
                           metrics=metrics, alerts=alerts, buckets=buckets, heat_codes=heat_codes,
                           heat_cells=heat_cells, gap_counts=gap_counts, bars=bars, refresh_form=EmptyForm(),
                           scopes=SCOPES)


@bp.get("/gaps")
def gaps():
    """Gap analysis: movies that lack every metric of a scope, most costly first."""
    if not _installed():
        return render_template("pending.html", title="Coverage gaps")
    scope = request.args.get("scope", "category")
    name = request.args.get("name", "award")
    rank_by = request.args.get("rank_by") or None
    try:
        limit = int(request.args.get("limit", "50"))
        offset = int(request.args.get("offset", "0"))
    except ValueError:
        return render_error(400, "Bad parameter", "limit and offset must be whole numbers")
    try:
        rows = query("SELECT * FROM reelscore.coverage_gaps(%s, %s, %s, %s, %s)",
                     (scope, name, rank_by, limit, offset))
    except (pgerr.DataError, pgerr.RaiseException) as exc:
        info = db_message(exc)
        return render_error(400, "Bad gap query", info["message"], info["detail"], info["hint"])
    template = "coverage/_gaps.html" if request.headers.get("HX-Request") == "true" else "coverage/gaps.html"
    options = query_one("""SELECT array_agg(DISTINCT code ORDER BY code) AS metric,
                                  array_agg(DISTINCT category ORDER BY category) AS category,
                                  array_agg(DISTINCT source ORDER BY source) AS source
                           FROM reelscore.metric_definitions WHERE active""")
    return render_template(template, rows=rows, scope=scope, name=name, rank_by=rank_by or "", limit=limit,
                           offset=offset, options=options, scopes=SCOPES)


@bp.post("/refresh")
@admin_required
def refresh():
    """Take a coverage snapshot now (the scheduler does it every minute where pg_cron runs)."""
    if not EmptyForm().validate():
        return render_error(400, "Form expired", "the form is invalid or expired")
    with transaction(g.user, "coverage refresh from the admin panel") as conn:
        snap = conn.execute("SELECT reelscore.refresh_coverage() AS id").fetchone()["id"]
    flash(f"coverage snapshot {snap} taken", "ok")
    return redirect(url_for("coverage.index"))
