"""Section 1, metric definitions: list with category/source filters, coverage and
reliability per metric, a normalization tester, each metric's transformation curve
(points computed by reelscore.normalize_value in SQL), and editing of normalization
parameters (an UPDATE of reelscore.metric_definitions; the registry's triggers validate,
bump the version and write the history with the admin's name and reason)."""
from __future__ import annotations

import psycopg
from flask import Blueprint, abort, flash, g, jsonify, redirect, render_template, request, url_for
from psycopg import errors as pgerr

from admin.auth import admin_required, require_login
from admin.db import query, query_one, relation_exists, transaction
from admin.errors import db_message, render_error
from admin.forms import DefinitionForm

bp = Blueprint("metrics", __name__, url_prefix="/metrics")
bp.before_request(require_login)

CURVE_POINTS = 120

# Coverage of each metric from the latest refresh snapshot (sql/500-coverage.sql writes it).
_COVERAGE_SQL = """
SELECT c.metric_id, c.coverage_percentage / 100.0 AS coverage, c.below_threshold,
       c.movies_with_data, c.total_movies, c.avg_value, c.min_value, c.max_value, c.median_value,
       c.last_calculated
FROM reelscore.metric_coverage c
WHERE c.snapshot_id IS NOT NULL
"""

# The curve: x values spread over the metric's useful raw range, chosen from its definition,
# whole numbers for counts, ranks and booleans; y = reelscore.normalize_value(code, x).
# Logarithmic metrics get geometric spacing (and a log x axis in the chart).
_CURVE_SQL = """
WITH d AS (
  SELECT m.code, m.data_type, m.normalization_type, m.norm_args, p.args,
         coalesce(m.raw_scale_min, 0) AS lo,
         coalesce(m.raw_scale_max,
           CASE m.normalization_type
             WHEN 'logarithmic' THEN m.norm_args[1] * 2
             WHEN 'sigmoid'     THEN greatest(m.norm_args[2] * 2, m.norm_args[2] + 6 / m.norm_args[1])
             WHEN 'custom'      THEN cardinality(m.norm_args) + 1
             WHEN 'piecewise'   THEN m.norm_args[cardinality(m.norm_args) / 2] * 1.25
             WHEN 'percentile'  THEN p.args[cardinality(p.args)]
             END,
           coalesce(m.raw_scale_min, 0) + 1) AS hi
  FROM reelscore.metric_definitions m
  JOIN reelscore.metric_norm_params p ON p.metric_id = m.id
  WHERE m.code = %(code)s
), xs AS (
  SELECT DISTINCT
    CASE WHEN d.data_type IN ('count', 'rank', 'boolean') THEN round(x.v) ELSE x.v END AS x
  FROM d, LATERAL (
    SELECT CASE WHEN d.normalization_type = 'logarithmic' AND d.hi > d.lo
                THEN d.lo + power(d.hi - d.lo + 1, i::float8 / %(n)s) - 1
                ELSE d.lo + (d.hi - d.lo) * i::float8 / %(n)s END AS v
    FROM generate_series(0, %(n)s) i) x
)
SELECT xs.x, reelscore.normalize_value(%(code)s, xs.x) AS y
FROM xs ORDER BY xs.x
"""


def _definition(code: str) -> dict:
    row = query_one("""SELECT d.*, p.args FROM reelscore.metric_definitions d
                       JOIN reelscore.metric_norm_params p ON p.metric_id = d.id
                       WHERE d.code = %s""", (code,))
    if row is None:
        abort(404, description=f"no metric with code {code!r}")
    return row


@bp.get("/")
def index():
    category = request.args.get("category", "").strip()
    source = request.args.get("source", "").strip()
    options = query_one("""SELECT array_agg(DISTINCT category ORDER BY category) AS categories,
                                  array_agg(DISTINCT source ORDER BY source) AS sources
                           FROM reelscore.metric_definitions""")
    errors = []
    if category and category not in (options["categories"] or []):
        errors.append(f"unknown category {category!r}: one of {', '.join(options['categories'] or [])}")
    if source and source not in (options["sources"] or []):
        errors.append(f"unknown source {source!r}")
    if errors:
        return render_template("metrics/index.html", metrics=[], options=options, category=category,
                               source=source, errors=errors, coverage={}), 400
    metrics = query("""SELECT d.id, d.code, d.name, d.category, d.source, d.data_type, d.normalization_type,
                              d.normalization_params, d.raw_scale_min, d.raw_scale_max, d.raw_unit,
                              d.normalized_weight, d.source_reliability, d.coverage_threshold,
                              d.version, d.active, d.slot
                       FROM reelscore.metric_definitions d
                       WHERE (%(c)s = '' OR d.category = %(c)s) AND (%(s)s = '' OR d.source = %(s)s)
                       ORDER BY d.slot""", {"c": category, "s": source})
    coverage = {}
    if relation_exists("reelscore.metric_coverage"):
        coverage = {r["metric_id"]: r for r in query(_COVERAGE_SQL)}
    template = "metrics/_table.html" if request.headers.get("HX-Request") == "true" else "metrics/index.html"
    return render_template(template, metrics=metrics, options=options, category=category,
                           source=source, errors=[], coverage=coverage)


def _form_from_definition(d: dict) -> DefinitionForm:
    import json
    form = DefinitionForm(formdata=None)
    form.normalization_type.data = d["normalization_type"]
    form.normalization_params.data = json.dumps(d["normalization_params"])
    form.raw_scale_min.data = "" if d["raw_scale_min"] is None else repr(d["raw_scale_min"])
    form.raw_scale_max.data = "" if d["raw_scale_max"] is None else repr(d["raw_scale_max"])
    form.normalized_weight.data = repr(d["normalized_weight"])
    form.source_reliability.data = repr(d["source_reliability"])
    form.missing_policy.data = d["missing_policy"]
    form.missing_value.data = "" if d["missing_value"] is None else repr(d["missing_value"])
    form.active.data = d["active"]
    return form


def _render_detail(d: dict, form: DefinitionForm, field_errors: dict | None = None,
                   form_error: dict | None = None, status: int = 200):
    history = query("""SELECT version, changed_by, changed_at, change_reason, old_values, new_values
                       FROM reelscore.metric_definition_history WHERE metric_code = %s
                       ORDER BY changed_at DESC, id DESC LIMIT 20""", (d["code"],))
    coverage = None
    if relation_exists("reelscore.metric_coverage"):
        coverage = query_one(_COVERAGE_SQL + " AND c.metric_id = %s", (d["id"],))
    return render_template("metrics/detail.html", d=d, form=form, history=history, coverage=coverage,
                           field_errors=field_errors or {}, form_error=form_error), status


@bp.get("/<code>")
def detail(code: str):
    d = _definition(code)
    return _render_detail(d, _form_from_definition(d))


@bp.get("/<code>/normalize")
def normalize(code: str):
    """The tester: the normalized value of one raw value, or the database's error."""
    _definition(code)
    raw = request.args.get("raw", "").strip()
    if not raw:
        return render_error(400, "Missing value", "enter a raw value")
    try:
        row = query_one("SELECT reelscore.normalize_value(%s, %s::float8) AS y", (code, raw))
    except (pgerr.DataError, pgerr.RaiseException, pgerr.ObjectNotInPrerequisiteState) as exc:
        info = db_message(exc)
        return render_error(400, "Invalid raw value", info["message"], info["detail"], info["hint"])
    return render_template("metrics/_normalized.html", code=code, raw=raw, y=row["y"])


@bp.get("/<code>/curve")
def curve(code: str):
    """Points of the transformation curve, computed in SQL."""
    d = _definition(code)
    try:
        rows = query(_CURVE_SQL, {"code": code, "n": CURVE_POINTS})
    except pgerr.ObjectNotInPrerequisiteState as exc:  # percentile metric without a distribution
        return jsonify({"code": code, "error": db_message(exc)["message"], "points": []}), 409
    return jsonify({"code": code, "version": d["version"], "normalization_type": d["normalization_type"],
                    "xscale": "logarithmic" if d["normalization_type"] == "logarithmic" else "linear",
                    "points": [{"x": r["x"], "y": r["y"]} for r in rows]})


# Which form field a database error is about: constraint names first, then the message.
_CONSTRAINT_FIELDS = {
    "metric_definitions_check": "raw_scale_max",
    "metric_definitions_check1": "missing_value",
    "metric_definitions_normalized_weight_check": "normalized_weight",
    "metric_definitions_source_reliability_check": "source_reliability",
    "metric_definitions_missing_value_check": "missing_value",
    "metric_definitions_normalization_type_check": "normalization_type",
    "metric_definitions_missing_policy_check": "missing_policy",
}
_MESSAGE_FIELDS = [
    ("normalization_params", "normalization_params"), ("invalid input syntax for type json", "normalization_params"),
    ("normalization_type", "normalization_type"), ("needs boolean normalization", "normalization_type"),
    ("raw_scale_min", "raw_scale_min"), ("raw_scale_max", "raw_scale_max"),
    ("missing_value", "missing_value"), ("normalized_weight", "normalized_weight"),
    ("source_reliability", "source_reliability"),
]


def field_for_error(exc: psycopg.Error) -> str | None:
    diag = exc.diag
    if diag.constraint_name in _CONSTRAINT_FIELDS:
        return _CONSTRAINT_FIELDS[diag.constraint_name]
    text = " ".join(filter(None, [diag.message_primary, diag.message_detail])).lower()
    for needle, field in _MESSAGE_FIELDS:
        if needle in text:
            return field
    return None


@bp.post("/<code>")
@admin_required
def update(code: str):
    d = _definition(code)
    form = DefinitionForm()
    if not form.validate():
        errors = {name: "; ".join(errs) for name, errs in form.errors.items() if name != "csrf_token"}
        return _render_detail(d, form, field_errors=errors, status=400)
    params = {
        "code": code,
        "normalization_type": form.normalization_type.data,
        "normalization_params": (form.normalization_params.data or "").strip() or "{}",
        "raw_scale_min": form.raw_scale_min.number,
        "raw_scale_max": form.raw_scale_max.number,
        "normalized_weight": form.normalized_weight.number,
        "source_reliability": form.source_reliability.number,
        "missing_policy": form.missing_policy.data,
        "missing_value": form.missing_value.number,
        "active": bool(form.active.data),
    }
    try:
        with transaction(g.user, form.reason.data.strip()) as conn:
            row = conn.execute("""
                UPDATE reelscore.metric_definitions SET
                  normalization_type = %(normalization_type)s,
                  normalization_params = %(normalization_params)s::jsonb,
                  raw_scale_min = %(raw_scale_min)s, raw_scale_max = %(raw_scale_max)s,
                  normalized_weight = %(normalized_weight)s, source_reliability = %(source_reliability)s,
                  missing_policy = %(missing_policy)s, missing_value = %(missing_value)s,
                  active = %(active)s
                WHERE code = %(code)s
                RETURNING version""", params).fetchone()
    except (pgerr.DataError, pgerr.IntegrityError, pgerr.RaiseException, pgerr.FeatureNotSupported) as exc:
        info = db_message(exc)
        field = field_for_error(exc)
        if field:
            return _render_detail(d, form, field_errors={field: info["message"]}, status=400)
        return _render_detail(d, form, form_error=info, status=400)
    flash(f"{code} saved (version {row['version']})", "ok")
    return redirect(url_for("metrics.detail", code=code))
