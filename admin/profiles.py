"""Section 2, weight profiles: cards with a pie of category weights and ML badges; a profile
page with sliders whose instant preview is reelscore.top_movies_adhoc (nothing is saved
until an admin presses Save, which calls reelscore.save_profile with the admin's name and
reason); effective weights (reelscore.profile_effective_weights), versions, the change
history, and a side-by-side comparison of two profiles (reelscore.top_movies under each).
System profiles are read-only here as in the database."""
from __future__ import annotations

import json

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from psycopg import errors as pgerr

from admin.auth import admin_required, require_login
from admin.db import query, query_one, relation_exists, transaction
from admin.errors import db_message, render_error
from admin.forms import EmptyForm, NewProfileForm, ProfileForm
from admin.scoring import (
    CATEGORIES,
    BadInput,
    scoring_ready,
    top_movies,
    top_movies_adhoc,
    weights_from_form,
)

bp = Blueprint("profiles", __name__, url_prefix="/profiles")
bp.before_request(require_login)

PREVIEW_LIMIT = 20


def _installed() -> bool:
    return relation_exists("reelscore.weight_profiles")


def _profile(name: str) -> dict:
    row = query_one("SELECT * FROM reelscore.weight_profiles WHERE name = %s", (name,))
    if row is None:
        abort(404, description=f"no weight profile named {name!r}")
    return row


def _category_weights(p: dict) -> dict[str, float]:
    return {c: p[f"{c}_weight"] for c in CATEGORIES}


def _metric_codes() -> list[str]:
    return [r["code"] for r in query("SELECT code FROM reelscore.metric_definitions ORDER BY slot")]


@bp.get("/")
def index():
    if not _installed():
        return render_template("pending.html", title="Weight profiles")
    form = NewProfileForm(formdata=None)
    return _render_index(form)


def _render_profile(p: dict, form: ProfileForm | None = None, errors: dict | None = None,
                    form_error: dict | None = None, status: int = 200):
    effective = query("""SELECT e.*, d.normalized_weight AS registry_weight, o.weight AS override_weight,
                                o.enabled AS override_enabled
                         FROM reelscore.profile_effective_weights(%s) e
                         JOIN reelscore.metric_definitions d ON d.code = e.metric_code
                         LEFT JOIN reelscore.profile_metric_weights o
                           ON o.profile_id = %s AND o.metric_code = e.metric_code
                         ORDER BY array_position(reelscore.score_categories(), e.category), d.slot""",
                      (p["name"], p["id"]))
    history = query("""SELECT changed_at, changed_by, change_reason, target, operation, old_values, new_values
                       FROM reelscore.weight_profile_history WHERE profile_id = %s
                       ORDER BY changed_at DESC, id DESC LIMIT 30""", (p["id"],))
    versions = query("""SELECT v.version, v.created_at, v.created_by, v.change_reason, v.rating_weight, v.award_weight,
                               v.financial_weight, v.cultural_weight, v.popularity_weight, v.metric_weights
                        FROM reelscore.weight_profile_versions v WHERE v.profile_id = %s
                        ORDER BY v.version DESC LIMIT 30""", (p["id"],))
    activations = query("""SELECT version, action, activated_at, activated_by, reason
                           FROM reelscore.weight_profile_activations WHERE profile_id = %s
                           ORDER BY id DESC LIMIT 30""", (p["id"],))
    top, top_error = [], None
    if scoring_ready():
        try:
            top = top_movies(p["name"], PREVIEW_LIMIT)
        except (pgerr.DataError, pgerr.RaiseException, pgerr.ObjectNotInPrerequisiteState) as exc:
            top_error = db_message(exc)["message"]
    if form is None:
        form = ProfileForm(formdata=None)
    weights = _category_weights(p)
    if request.method == "POST":
        try:
            posted = weights_from_form(request.form, [])
            weights = posted["categories"]
        except BadInput:
            pass
    return render_template("profiles/detail.html", p=p, weights=weights, effective=effective, history=history,
                           versions=versions, activations=activations, top=top, top_error=top_error,
                           form=form, errors=errors or {}, form_error=form_error,
                           editable=(g.role == "admin" and not p["is_system"]),
                           scoring=scoring_ready(), activate_form=EmptyForm()), status


@bp.get("/<name>")
def detail(name: str):
    if not _installed():
        return render_template("pending.html", title="Weight profiles")
    return _render_profile(_profile(name))


@bp.get("/<name>/preview")
def preview(name: str):
    """Top movies under the weights on the sliders (ad-hoc: nothing is saved)."""
    _profile(name)
    if not scoring_ready():
        return render_error(501, "Not installed", "reelscore.top_movies_adhoc is not installed yet")
    try:
        weights = weights_from_form(request.args, _metric_codes())
    except BadInput as exc:
        return render_error(400, "Bad weight", f"{exc.field}: {exc}")
    weights["profile"] = name  # the profile's config (inversion, shrinkage, cut-off) still applies
    try:
        rows = top_movies_adhoc(weights, PREVIEW_LIMIT)
    except (pgerr.DataError, pgerr.RaiseException, pgerr.IntegrityError) as exc:
        info = db_message(exc)
        return render_error(400, "Invalid weights", info["message"], info["detail"], info["hint"])
    saved = {r["movie_id"] for r in top_movies(name, PREVIEW_LIMIT)}
    return render_template("profiles/_preview.html", rows=rows, saved=saved, weights=weights)


@bp.post("/<name>")
@admin_required
def save(name: str):
    p = _profile(name)
    form = ProfileForm()
    if not form.validate():
        errors = {k: "; ".join(v) for k, v in form.errors.items() if k != "csrf_token"}
        return _render_profile(p, form, errors=errors, status=400)
    try:
        weights = weights_from_form(request.form, _metric_codes())
    except BadInput as exc:
        field = "weights" if exc.field.startswith("cat_") else "metric_weights"
        return _render_profile(p, form, errors={field: f"{exc.field.split('_', 1)[1]}: {exc}"}, status=400)
    try:
        with transaction(g.user, form.reason.data.strip()) as conn:
            version = conn.execute(
                "SELECT reelscore.save_profile(%s, %s::jsonb, %s::jsonb, %s) AS v",
                (name, json.dumps(weights["categories"]),
                 json.dumps(weights["metrics"]) if request.form.get("has_metrics") == "1" else None,
                 (form.description.data or "").strip() or None)).fetchone()["v"]
    except pgerr.InsufficientPrivilege as exc:
        info = db_message(exc)
        return _render_profile(p, form, form_error=info, status=403)
    except (pgerr.DataError, pgerr.IntegrityError, pgerr.RaiseException) as exc:
        info = db_message(exc)
        field = "weights" if "categor" in info["message"] or "weights sum" in info["message"] else \
                "metric_weights" if "metric" in info["message"] else None
        if field:
            return _render_profile(p, form, errors={field: info["message"]}, status=400)
        return _render_profile(p, form, form_error=info, status=400)
    flash(f"{name} saved: version {version} is active", "ok")
    return redirect(url_for("profiles.detail", name=name))


@bp.post("/<name>/activate/<int:version>")
@admin_required
def activate(name: str, version: int):
    p = _profile(name)
    form = EmptyForm()
    if not form.validate():
        abort(400, description="the form is invalid or expired")
    reason = (request.form.get("reason") or "").strip() or f"activate version {version}"
    try:
        with transaction(g.user, reason) as conn:
            conn.execute("SELECT reelscore.activate_profile_version(%s, %s)", (name, version))
    except pgerr.InsufficientPrivilege as exc:
        return _render_profile(p, form_error=db_message(exc), status=403)
    except (pgerr.DataError, pgerr.RaiseException) as exc:
        return _render_profile(p, form_error=db_message(exc), status=400)
    flash(f"{name}: version {version} is active", "ok")
    return redirect(url_for("profiles.detail", name=name))


def _render_index(new_form: NewProfileForm, new_error: dict | None = None, status: int = 200):
    profiles = query("""SELECT p.*, u.username AS owner
                        FROM reelscore.weight_profiles p LEFT JOIN reelscore.users u ON u.id = p.user_id
                        ORDER BY p.is_system DESC, p.is_default DESC, p.name""")
    for p in profiles:
        p["weights"] = _category_weights(p)
    return render_template("profiles/index.html", profiles=profiles, new_form=new_form, new_error=new_error,
                           all_names=[p["name"] for p in profiles]), status


@bp.post("/")
@admin_required
def create():
    """A new (editable) profile, copied from an existing one."""
    form = NewProfileForm()
    form.copy_from.choices = [r["name"] for r in query("SELECT name FROM reelscore.weight_profiles ORDER BY name")]
    if not form.validate():
        errors = "; ".join(f"{k}: {'; '.join(v)}" for k, v in form.errors.items() if k != "csrf_token")
        return _render_index(form, {"message": errors}, 400)
    src = _profile(form.copy_from.data)
    snap = query_one("SELECT reelscore.profile_snapshot(%s) AS s", (src["id"],))["s"]
    try:
        with transaction(g.user, form.reason.data.strip()) as conn:
            conn.execute("SELECT reelscore.save_profile(%s, %s::jsonb, %s::jsonb, %s, %s::jsonb)",
                         (form.name.data.strip(), json.dumps(_category_weights(src)),
                          json.dumps(snap["metric_weights"]),
                          (form.description.data or "").strip() or f"copy of {src['name']}",
                          json.dumps(snap["config"])))
    except (pgerr.DataError, pgerr.IntegrityError, pgerr.RaiseException) as exc:
        return _render_index(form, db_message(exc), 400)
    flash(f"profile {form.name.data.strip()} created from {src['name']}", "ok")
    return redirect(url_for("profiles.detail", name=form.name.data.strip()))


@bp.get("/compare")
def compare():
    """Top movies under two profiles side by side, and where they differ."""
    if not _installed():
        return render_template("pending.html", title="Weight profiles")
    names = [r["name"] for r in query("SELECT name FROM reelscore.weight_profiles ORDER BY name")]
    a = request.args.get("a") or (names[0] if names else "")
    b = request.args.get("b") or (names[1] if len(names) > 1 else a)
    try:
        limit = int(request.args.get("limit", "20"))
    except ValueError:
        return render_error(400, "Bad parameter", f"limit must be a whole number, got {request.args.get('limit')!r}")
    if not 1 <= limit <= 200:
        return render_error(400, "Bad parameter", f"limit must be between 1 and 200, got {limit}")
    for n in (a, b):
        if n not in names:
            return render_error(400, "Unknown profile", f"no weight profile named {n!r}")
    if not scoring_ready():
        return render_template("pending.html", title="Compare profiles")
    top_a, top_b = top_movies(a, limit), top_movies(b, limit)
    rank_a = {r["movie_id"]: i + 1 for i, r in enumerate(top_a)}
    rank_b = {r["movie_id"]: i + 1 for i, r in enumerate(top_b)}
    pa, pb = _profile(a), _profile(b)
    weights = {"labels": CATEGORIES, "datasets": [
        {"label": a, "data": [pa[f"{c}_weight"] for c in CATEGORIES]},
        {"label": b, "data": [pb[f"{c}_weight"] for c in CATEGORIES]}]}
    return render_template("profiles/compare.html", names=names, a=a, b=b, top_a=top_a, top_b=top_b,
                           rank_a=rank_a, rank_b=rank_b, limit=limit, bars=json.dumps(weights),
                           only_a=[r for r in top_a if r["movie_id"] not in rank_b],
                           only_b=[r for r in top_b if r["movie_id"] not in rank_a])
