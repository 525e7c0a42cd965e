"""Section 4, test playground: find a movie by title, see its raw values beside their
normalized values (reelscore.normalize_with over metric_norm_params, in SQL), the
step-by-step score breakdown (reelscore.explain_score) with the explanation sentence
(reelscore.explain_sentence), the movie under every profile (reelscore.movie_score_detail),
and weight sliders that rescore it live (reelscore.explain_score_adhoc: nothing is saved)."""
from __future__ import annotations

import json

from flask import Blueprint, abort, render_template, request
from psycopg import errors as pgerr

from admin.auth import require_login
from admin.db import function_exists, query, query_one
from admin.errors import db_message, is_htmx, render_error
from admin.scoring import CATEGORIES, BadInput, weights_from_form

bp = Blueprint("playground", __name__, url_prefix="/playground")
bp.before_request(require_login)

SEARCH_LIMIT = 25


@bp.get("/")
def index():
    q = request.args.get("q", "").strip()
    results, error = [], None
    if q:
        if len(q) < 2:
            error = "type at least two characters"
        elif len(q) > 200:
            error = "the search text is too long (200 characters at most)"
        else:
            results = query("SELECT * FROM reelscore.search_titles(%s, %s)", (q, SEARCH_LIMIT))
    status = 400 if error else 200
    template = "playground/_results.html" if is_htmx() else "playground/index.html"
    return render_template(template, q=q, results=results, error=error), status


def _movie(movie_id: int) -> dict:
    row = query_one("SELECT * FROM reelscore.movies WHERE id = %s", (movie_id,))
    if row is None:
        abort(404, description=f"no movie with id {movie_id}")
    return row


def _profiles() -> list[dict]:
    return query("""SELECT name, is_system, is_default, rating_weight, award_weight, financial_weight,
                           cultural_weight, popularity_weight
                    FROM reelscore.weight_profiles WHERE active ORDER BY is_default DESC, name""")


@bp.get("/movie/<int:movie_id>")
def movie(movie_id: int):
    fragment = request.args.get("fragment")
    if fragment not in (None, "live"):
        return render_error(400, "Bad parameter", f"fragment must be 'live', got {fragment!r}")
    m = _movie(movie_id)
    values = query("""SELECT d.code, d.name, d.category, d.source, d.raw_unit, d.normalization_type, v.raw_value,
                             v.observed_at,
                             reelscore.normalize_with(p.normalization_type, p.args, v.raw_value) AS normalized_value
                      FROM reelscore.metric_values v
                      JOIN reelscore.metric_definitions d ON d.id = v.metric_id
                      JOIN reelscore.metric_norm_params p ON p.metric_id = v.metric_id
                      WHERE v.movie_id = %s ORDER BY d.slot""", (movie_id,))
    scoring = function_exists("explain_score")
    profiles = _profiles() if scoring else []
    names = [p["name"] for p in profiles]
    profile = request.args.get("profile") or (names[0] if names else "balanced")
    if scoring and profile not in names:
        return render_error(400, "Unknown profile", f"no active weight profile named {profile!r}")
    breakdown, sentence, by_profile, total = [], None, [], None
    if scoring:
        breakdown = query("SELECT * FROM reelscore.explain_score(%s, %s, true)", (movie_id, profile))
        sentence = query_one("SELECT reelscore.explain_sentence(%s, %s) AS s", (movie_id, profile))["s"]
        by_profile = query("""SELECT p.name, d.score, d.confidence, d.source, d.profile_version
                              FROM reelscore.weight_profiles p
                              CROSS JOIN LATERAL reelscore.movie_score_detail(%s, p.name) d
                              WHERE p.active ORDER BY d.score DESC NULLS LAST, p.name""", (movie_id,))
        total = next((r for r in by_profile if r["name"] == profile), None)
    current = next((p for p in profiles if p["name"] == profile), None)
    weights = {c: (current[f"{c}_weight"] if current else 0.2) for c in CATEGORIES}
    chart = json.dumps({"horizontal": True, "labels": [v["code"] for v in values],
                        "datasets": [{"label": "normalized", "data": [v["normalized_value"] for v in values]}]})
    # ?fragment=live: values, scores and sentence alone, for the page's live refresh
    template = "playground/_live.html" if fragment == "live" else "playground/movie.html"
    return render_template(template, m=m, values=values, breakdown=breakdown, sentence=sentence,
                           by_profile=by_profile, total=total, profile=profile, profiles=profiles,
                           weights=weights, scoring=scoring, chart=chart)


@bp.get("/movie/<int:movie_id>/score")
def live_score(movie_id: int):
    """The movie's score and breakdown under the weights on the sliders (nothing saved)."""
    _movie(movie_id)
    if not function_exists("explain_score_adhoc"):
        return render_error(501, "Not installed", "reelscore.explain_score_adhoc is not installed yet")
    try:
        weights = weights_from_form(request.args, [])
    except BadInput as exc:
        return render_error(400, "Bad weight", f"{exc.field}: {exc}")
    base = request.args.get("profile")
    if base:
        weights["profile"] = base
    weights.pop("metrics", None)
    try:
        breakdown = query("SELECT * FROM reelscore.explain_score_adhoc(%s, %s::jsonb, true)",
                          (movie_id, json.dumps(weights)))
        score = query_one("SELECT reelscore.score_movie_adhoc(%s, %s::jsonb) AS s",
                          (movie_id, json.dumps(weights)))["s"]
    except (pgerr.DataError, pgerr.RaiseException) as exc:
        info = db_message(exc)
        return render_error(400, "Invalid weights", info["message"], info["detail"], info["hint"])
    return render_template("playground/_breakdown.html", breakdown=breakdown, score=score, live=True)
