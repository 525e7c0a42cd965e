"""The admin panel through Flask's test client: every route, both roles, and the errors
(bad parameters show the error and change nothing). Users are created through the SQL
function; expected numbers come from the formulas, computed here with math."""
from __future__ import annotations

import math
import re

import pytest
from werkzeug.security import generate_password_hash

from admin import create_app
from admin.db import close_pool

ADMIN, VIEWER, PASSWORD = "ada", "vic", "correct horse battery"
# A cheap hash keeps the suite fast; the server verifies it like any werkzeug hash.
FAST = "pbkdf2:sha256:1000"


@pytest.fixture(scope="module")
def app(db_url):
    import psycopg
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("SELECT reelscore.admin_create_user(%s, %s, 'admin')",
                  (ADMIN, generate_password_hash(PASSWORD, method=FAST)))
        c.execute("SELECT reelscore.admin_create_user(%s, %s, 'viewer')",
                  (VIEWER, generate_password_hash(PASSWORD, method=FAST)))
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "SECRET_KEY": "test-secret",
                      "DB_POOL_MAX": 2})
    yield app
    close_pool(app)


def csrf_from(html: str) -> str:
    m = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or \
        re.search(r'name="csrf_token" value="([^"]+)"', html) or \
        re.search(r'"X-CSRFToken": "([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def login(client, user: str, password: str = PASSWORD):
    page = client.get("/login")
    return client.post("/login", data={"username": user, "password": password,
                                       "csrf_token": csrf_from(page.text)})


@pytest.fixture()
def admin_client(app):
    c = app.test_client()
    assert login(c, ADMIN).status_code == 302
    return c


@pytest.fixture()
def viewer_client(app):
    c = app.test_client()
    assert login(c, VIEWER).status_code == 302
    return c


def field_error(html: str, field: str) -> str | None:
    """The error text shown inside the field's block (up to the next field), or None."""
    start = html.find(f'id="field-{field}"')
    if start < 0:
        return None
    end = html.find('id="field-', start + 1)
    block = html[start:end if end > 0 else len(html)]
    m = re.search(r'<span class="field-error"[^>]*>([^<]*)</span>', block)
    return m.group(1) if m else None


def definition(conn, code):
    return conn.execute("SELECT version, normalization_params, normalized_weight FROM reelscore.metric_definitions "
                        "WHERE code = %s", (code,)).fetchone()


# --------------------------------------------------------------------------- auth
def test_anonymous_is_sent_to_login(app):
    c = app.test_client()
    for path in ["/", "/metrics/", "/metrics/imdb_rating", "/profiles/", "/coverage/", "/playground/"]:
        r = c.get(path)
        assert r.status_code == 302, path
        assert "/login" in r.headers["Location"]


def test_login_page_and_bad_password(app):
    c = app.test_client()
    r = c.get("/login")
    assert r.status_code == 200 and 'name="password"' in r.text
    r = login(c, ADMIN, "wrong password")
    assert r.status_code == 401 and "invalid user name or password" in r.text
    r = login(c, "nobody", PASSWORD)
    assert r.status_code == 401
    assert c.get("/metrics/").status_code == 302


def test_login_without_csrf_is_refused(app):
    c = app.test_client()
    r = c.post("/login", data={"username": ADMIN, "password": PASSWORD})
    assert r.status_code == 400 and "CSRF" in r.text
    assert c.get("/metrics/").status_code == 302


def test_login_sets_a_secure_httponly_cookie_and_follows_only_local_next(app):
    c = app.test_client()
    page = c.get("/login?next=https://evil.example/x")
    r = c.post("/login?next=https://evil.example/x",
               data={"username": ADMIN, "password": PASSWORD, "csrf_token": csrf_from(page.text)})
    assert r.status_code == 302 and r.headers["Location"] == "/metrics/"
    cookie = r.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    c2 = app.test_client()
    page = c2.get("/login")
    r = c2.post("/login?next=/coverage/", data={"username": VIEWER, "password": PASSWORD,
                                                 "csrf_token": csrf_from(page.text)})
    assert r.headers["Location"] == "/coverage/"


def test_logout_needs_csrf_and_ends_the_session(admin_client):
    page = admin_client.get("/metrics/")
    assert admin_client.post("/logout").status_code == 400
    assert admin_client.get("/metrics/").status_code == 200
    r = admin_client.post("/logout", data={"csrf_token": csrf_from(page.text)})
    assert r.status_code == 302
    assert admin_client.get("/metrics/").status_code == 302


def test_deactivated_user_loses_access_at_once(app, conn):
    conn.execute("SELECT reelscore.admin_create_user('temp', %s, 'admin')",
                 (generate_password_hash(PASSWORD, method=FAST),))
    c = app.test_client()
    assert login(c, "temp").status_code == 302
    assert c.get("/metrics/").status_code == 200
    conn.execute("SELECT reelscore.admin_set_role('temp', 'admin', false)")
    assert c.get("/metrics/").status_code == 302
    assert login(c, "temp").status_code == 401


def test_home_redirects_to_metrics(viewer_client):
    r = viewer_client.get("/")
    assert r.status_code == 302 and r.headers["Location"].endswith("/metrics/")


def test_vendor_assets_come_from_node_modules(app, viewer_client):
    from pathlib import Path
    nm = Path(app.config["NODE_MODULES"])
    for name, rel in [("htmx.min.js", "htmx.org/dist/htmx.min.js"), ("chart.umd.js", "chart.js/dist/chart.umd.js")]:
        r = viewer_client.get(f"/vendor/{name}")
        assert r.status_code == 200
        assert r.data == (nm / rel).read_bytes()
        r.close()
    assert viewer_client.get("/vendor/../package.json").status_code == 404
    assert viewer_client.get("/vendor/jquery.js").status_code == 404


# --------------------------------------------------------------------------- metrics
def test_metrics_list_shows_every_metric_with_reliability(viewer_client, conn):
    codes = [r[0] for r in conn.execute("SELECT code FROM reelscore.metric_definitions ORDER BY slot")]
    r = viewer_client.get("/metrics/")
    assert r.status_code == 200
    shown = re.findall(r'<tr class="[^"]*" data-code="([^"]+)"', r.text)
    assert shown == codes and len(codes) == 29
    assert "0.90" in r.text  # imdb's reliability 0.9, as a number


def test_metrics_filters_by_category_and_source(viewer_client):
    r = viewer_client.get("/metrics/?category=rating")
    shown = set(re.findall(r'data-code="([^"]+)"', r.text))
    # the seed's inventory: seven rating metrics
    assert shown == {"tmdb_rating", "tmdb_vote_count", "imdb_rating", "imdb_vote_count", "metacritic_score",
                     "rt_tomatometer", "rt_audience_score"}
    r = viewer_client.get("/metrics/?source=box_office_mojo")
    assert set(re.findall(r'data-code="([^"]+)"', r.text)) == {"bom_domestic", "bom_worldwide"}
    r = viewer_client.get("/metrics/?category=award&source=tmdb")
    assert re.findall(r'data-code="([^"]+)"', r.text) == []
    r = viewer_client.get("/metrics/?category=financial", headers={"HX-Request": "true"})
    assert r.status_code == 200 and "<html" not in r.text and "tmdb_budget" in r.text


def test_metrics_bad_filter_shows_the_error(viewer_client):
    r = viewer_client.get("/metrics/?category=nonsense")
    assert r.status_code == 400
    assert "unknown category" in r.text and "nonsense" in r.text


def test_metric_detail_and_unknown_metric(viewer_client):
    r = viewer_client.get("/metrics/oscar_wins")
    assert r.status_code == 200 and "Transformation curve" in r.text and "Normalization tester" in r.text
    r = viewer_client.get("/metrics/no_such_metric")
    assert r.status_code == 404 and "no_such_metric" in r.text and "Traceback" not in r.text


@pytest.mark.parametrize("code, raw, expected", [
    ("metacritic_score", "85", 85 / 100),
    ("tmdb_vote_count", "999", math.log(1000) / math.log(1_000_001)),
    ("afi_top_100", "25", 1 / (1 + math.exp(0.05 * (25 - 50)))),
    ("oscar_wins", "2", 0.8),
    ("venice_golden_lion", "1", 0.95),
])
def test_normalization_tester(viewer_client, code, raw, expected):
    r = viewer_client.get(f"/metrics/{code}/normalize?raw={raw}", headers={"HX-Request": "true"})
    assert r.status_code == 200
    got = float(re.search(r'data-normalized="([^"]+)"', r.text).group(1))
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("raw, message", [
    ("abc", "invalid input syntax for type double precision"),
    ("150", "above the raw scale maximum"),
    ("", "enter a raw value"),
    ("NaN", "not a number"),
])
def test_normalization_tester_errors(viewer_client, raw, message):
    r = viewer_client.get(f"/metrics/metacritic_score/normalize?raw={raw}", headers={"HX-Request": "true"})
    assert r.status_code == 400
    assert message in r.text and "Traceback" not in r.text and "<html" not in r.text


def test_tester_on_percentile_metric_without_distribution(viewer_client, conn):
    conn.execute("SELECT set_config('reelscore.actor', 'test', false)")
    conn.execute("UPDATE reelscore.metric_definitions SET normalization_type = 'percentile', "
                 "normalization_params = '{}' WHERE code = 'twitter_mentions'")
    r = viewer_client.get("/metrics/twitter_mentions/normalize?raw=10")
    assert r.status_code == 400 and "no stored distribution" in r.text and "refresh_distributions" in r.text
    r = viewer_client.get("/metrics/twitter_mentions/curve")
    assert r.status_code == 409 and "no stored distribution" in r.get_json()["error"]


def test_curve_points_follow_the_formula(viewer_client):
    data = viewer_client.get("/metrics/metacritic_score/curve").get_json()
    assert data["xscale"] == "linear" and len(data["points"]) > 50
    xs = [p["x"] for p in data["points"]]
    assert min(xs) == 0 and max(xs) == 100
    for p in data["points"]:
        assert p["y"] == pytest.approx(p["x"] / 100, abs=1e-12)
    data = viewer_client.get("/metrics/imdb_vote_count/curve").get_json()
    assert data["xscale"] == "logarithmic"
    for p in data["points"]:
        assert p["x"] == int(p["x"])  # a count: whole numbers only
        assert p["y"] == pytest.approx(min(1.0, math.log(p["x"] + 1) / math.log(10_000_001)), abs=1e-12)
    data = viewer_client.get("/metrics/oscar_nominations/curve").get_json()
    steps = [0, 0.5, 0.7, 1.0]
    for p in data["points"]:
        assert p["y"] == pytest.approx(steps[min(int(p["x"]), 3)])


# --------------------------------------------------------------------------- editing
def edit_form(client, code, **changes):
    page = client.get(f"/metrics/{code}")
    html = page.text
    def val(name):
        m = re.search(rf'name="{name}"[^>]*value="([^"]*)"', html) or re.search(rf'value="([^"]*)"[^>]*name="{name}"', html)
        return m.group(1) if m else ""
    import html as h
    params = re.search(r'<textarea[^>]*name="normalization_params"[^>]*>\s*([^<]*)</textarea>', html).group(1)
    sel = lambda name: re.search(rf'<select[^>]*name="{name}".*?<option selected value="([^"]*)"', html, re.DOTALL)
    data = {
        "csrf_token": csrf_from(html),
        "normalization_type": sel("normalization_type").group(1),
        "normalization_params": h.unescape(params.strip()),
        "raw_scale_min": val("raw_scale_min"), "raw_scale_max": val("raw_scale_max"),
        "normalized_weight": val("normalized_weight"), "source_reliability": val("source_reliability"),
        "missing_policy": sel("missing_policy").group(1), "missing_value": val("missing_value"),
        "active": "y", "reason": "testing",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_viewer_cannot_edit(viewer_client, conn):
    before = definition(conn, "tmdb_popularity")
    data = edit_form(viewer_client, "tmdb_popularity", normalization_params='{"threshold": 5000}')
    r = viewer_client.post("/metrics/tmdb_popularity", data=data)
    assert r.status_code == 403 and "admin role" in r.text
    assert definition(conn, "tmdb_popularity") == before


def test_edit_without_csrf_is_refused(admin_client, conn):
    before = definition(conn, "tmdb_popularity")
    data = edit_form(admin_client, "tmdb_popularity", normalization_params='{"threshold": 5000}')
    del data["csrf_token"]
    r = admin_client.post("/metrics/tmdb_popularity", data=data)
    assert r.status_code == 400
    assert definition(conn, "tmdb_popularity") == before


@pytest.mark.parametrize("changes, field, message", [
    ({"normalization_params": '{"threshold": -5}'}, "normalization_params", "threshold must be &gt; 0"),
    ({"normalization_params": '{"threshold": 5'}, "normalization_params", "invalid input syntax for type json"),
    ({"normalization_params": '{"k": 1}'}, "normalization_params", "not a parameter of logarithmic"),
    ({"normalized_weight": "-1"}, "normalized_weight", "normalized_weight"),
    ({"normalized_weight": "heavy"}, "normalized_weight", "not a number"),
    ({"source_reliability": "1.5"}, "source_reliability", "source_reliability"),
    ({"raw_scale_min": "10", "raw_scale_max": "5"}, "raw_scale_max", "violates check constraint"),
    ({"missing_policy": "constant", "missing_value": ""}, "missing_value", "violates check constraint"),
    ({"normalization_type": "linear", "normalization_params": "{}"}, "raw_scale_min", "needs raw_scale_min and raw_scale_max"),
    ({"reason": ""}, "reason", "say why"),
    ({"normalization_type": "quadratic"}, "normalization_type", "Not a valid choice"),
])
def test_bad_edit_shows_error_beside_field_and_changes_nothing(admin_client, conn, changes, field, message):
    before = definition(conn, "tmdb_popularity")
    n_hist = conn.execute("SELECT count(*) FROM reelscore.metric_definition_history").fetchone()[0]
    r = admin_client.post("/metrics/tmdb_popularity", data=edit_form(admin_client, "tmdb_popularity", **changes))
    assert r.status_code == 400
    assert f'<div class="field has-error" id="field-{field}">' in r.text, f"no error beside {field}"
    assert message in (field_error(r.text, field) or "")
    assert definition(conn, "tmdb_popularity") == before
    assert conn.execute("SELECT count(*) FROM reelscore.metric_definition_history").fetchone()[0] == n_hist


def test_edit_saves_records_admin_and_reason_and_changes_the_curve(admin_client, conn):
    before = definition(conn, "tmdb_popularity")
    data = edit_form(admin_client, "tmdb_popularity", normalization_params='{"threshold": 50000}',
                     reason="popularity index grew")
    r = admin_client.post("/metrics/tmdb_popularity", data=data)
    assert r.status_code == 302
    after = definition(conn, "tmdb_popularity")
    assert after[0] == before[0] + 1 and after[1] == {"threshold": 50000}
    who, why = conn.execute("SELECT changed_by, change_reason FROM reelscore.metric_definition_history "
                            "WHERE metric_code = 'tmdb_popularity' ORDER BY id DESC LIMIT 1").fetchone()
    assert (who, why) == (ADMIN, "popularity index grew")
    page = admin_client.get("/metrics/tmdb_popularity")
    assert "saved (version" in page.text and "popularity index grew" in page.text
    data = admin_client.get("/metrics/tmdb_popularity/curve").get_json()
    assert data["version"] == after[0]
    for p in data["points"]:
        assert p["y"] == pytest.approx(min(1.0, math.log(p["x"] + 1) / math.log(50001)), abs=1e-12)
    # the actor does not leak into the next request's connection
    assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'reelscore-admin'").fetchone()[0] >= 1


# --------------------------------------------------------------------------- data for scoring sections
# (title, {metric code: raw value}); the last movie has no values at all.
MOVIES = [
    ("The Godfather", {"imdb_rating": 9.2, "imdb_vote_count": 2_000_000, "metacritic_score": 100,
                       "rt_tomatometer": 97, "oscar_wins": 3, "oscar_nominations": 11, "afi_top_100": 2,
                       "tmdb_budget": 6_000_000, "tmdb_popularity": 120}),
    ("Parasite", {"imdb_rating": 8.5, "metacritic_score": 96, "oscar_wins": 4, "cannes_palme_dor": 1,
                  "tmdb_popularity": 90}),
    ("Avatar", {"imdb_rating": 7.9, "imdb_vote_count": 1_400_000, "metacritic_score": 83,
                "bom_worldwide": 2_923_000_000, "tmdb_budget": 237_000_000, "tmdb_popularity": 400}),
    ("Plan 9 from Outer Space", {"imdb_rating": 3.9, "rt_tomatometer": 66, "tmdb_popularity": 8}),
    ("The Room", {"imdb_rating": 3.6, "metacritic_score": 9, "tmdb_budget": 6_000_000}),
    ("100% Wolf", {"imdb_rating": 5.5}),
    ("Unrated Obscurity", {}),
]

# The registry's rating formulas and within-category weights (seed inventory), for expected values.
RATING = {
    "imdb_rating": (lambda x: x / 10, 1.0),
    "imdb_vote_count": (lambda x: min(1.0, math.log(x + 1) / math.log(10_000_001)), 0.5),
    "metacritic_score": (lambda x: x / 100, 1.0),
    "rt_tomatometer": (lambda x: x / 100, 1.0),
}


def rating_mean(values: dict) -> float | None:
    """A movie's rating-category value: the weighted mean of its present rating metrics."""
    present = [(f(values[c]), w) for c, (f, w) in RATING.items() if c in values]
    if not present:
        return None
    return sum(v * w for v, w in present) / sum(w for _, w in present)


@pytest.fixture(scope="module")
def movie_ids(db_url):
    import psycopg
    ids = {}
    with psycopg.connect(db_url, autocommit=True) as c:
        for title, values in MOVIES:
            mid = c.execute("INSERT INTO reelscore.movies (title) VALUES (%s) RETURNING id", (title,)).fetchone()[0]
            ids[title] = mid
            for code, raw in values.items():
                c.execute("INSERT INTO reelscore.metric_values (movie_id, metric_id, raw_value) "
                          "SELECT %s, id, %s FROM reelscore.metric_definitions WHERE code = %s", (mid, raw, code))
        c.execute("SELECT * FROM reelscore.refresh_scores()")
        try:
            c.execute("SELECT reelscore.refresh_coverage()")
        except psycopg.Error as exc:  # reported by the coverage tests themselves
            print(f"refresh_coverage failed: {exc}")
    return ids


def weights_query(**cats) -> str:
    return "&".join(f"cat_{c}={cats.get(c, 0)}" for c in ["rating", "award", "financial", "cultural", "popularity"])


# --------------------------------------------------------------------------- profiles
def test_profiles_cards_show_pie_weights_and_badges(viewer_client, conn, movie_ids):
    conn.execute("SELECT reelscore.save_profile('ml_learned', '{\"rating\": 0.6, \"award\": 0.4}', NULL, 'learned', "
                 "NULL, NULL, '{\"model_version\": \"lr_v1\", \"accuracy\": 0.87, \"sample_size\": 1234}')")
    r = viewer_client.get("/profiles/")
    assert r.status_code == 200
    cards = dict(re.findall(r'<article class="card profile-card" data-name="([^"]+)">(.*?)</article>', r.text, re.DOTALL))
    names = {n for (n,) in conn.execute("SELECT name FROM reelscore.weight_profiles")}
    assert set(cards) == names
    assert "system" in cards["balanced"] and "system" not in cards["ml_learned"]
    assert "ML lr_v1" in cards["ml_learned"] and "0.87" in cards["ml_learned"] and "1234" in cards["ml_learned"]
    import html as h
    import json
    pie = json.loads(h.unescape(re.search(r"data-weights='([^']+)'", cards["critics_choice"]).group(1)))
    assert pie == {"rating": 0.5, "award": 0.25, "financial": 0.0, "cultural": 0.25, "popularity": 0.0}


def test_profile_page_effective_weights_are_category_times_share(viewer_client, movie_ids):
    r = viewer_client.get("/profiles/critics_choice")
    assert r.status_code == 200
    rows = dict(re.findall(r'<tr data-code="([^"]+)">.*?<td class="num effective-weight">([^<]+)</td>', r.text, re.DOTALL))
    # critics_choice: rating 0.5; within rating metacritic 2.0, tomatometer 2.0, imdb/tmdb/audience 0.5, votes off
    share = 2.0 / (2.0 + 2.0 + 0.5 + 0.5 + 0.5)
    assert float(rows["metacritic_score"]) == pytest.approx(0.5 * share, abs=5e-5)
    assert float(rows["imdb_vote_count"]) == 0
    assert float(rows["tmdb_budget"]) == 0  # financial weighs 0
    assert "read-only" in r.text and 'id="save-profile"' not in r.text


def test_profile_page_unknown_profile(viewer_client):
    r = viewer_client.get("/profiles/nope")
    assert r.status_code == 404 and "nope" in r.text


def test_preview_ranks_by_adhoc_weights(viewer_client, movie_ids):
    r = viewer_client.get(f"/profiles/balanced/preview?{weights_query(rating=1)}", headers={"HX-Request": "true"})
    assert r.status_code == 200
    shown = [int(x) for x in re.findall(r'<tr data-movie="(\d+)">', r.text)]
    scores = [float(x) for x in re.findall(r'<td class="num score">([^<]+)</td>', r.text)]
    expected = sorted(((rating_mean(v), movie_ids[t]) for t, v in MOVIES if rating_mean(v) is not None),
                      key=lambda x: (-x[0], x[1]))
    assert shown == [mid for _, mid in expected]
    assert scores == pytest.approx([round(s, 4) for s, _ in expected], abs=1e-4)
    # unnormalized slider values are rescaled: 0.3 on rating alone ranks the same
    r2 = viewer_client.get(f"/profiles/balanced/preview?{weights_query(rating=0.3)}", headers={"HX-Request": "true"})
    assert [int(x) for x in re.findall(r'<tr data-movie="(\d+)">', r2.text)] == shown


def test_preview_changes_with_the_sliders(viewer_client, movie_ids):
    a = viewer_client.get(f"/profiles/balanced/preview?{weights_query(rating=1)}").text
    b = viewer_client.get(f"/profiles/balanced/preview?{weights_query(financial=1)}").text
    first = lambda t: int(re.search(r'<tr data-movie="(\d+)">', t).group(1))
    assert first(a) == movie_ids["The Godfather"]
    assert first(b) == movie_ids["Avatar"]


@pytest.mark.parametrize("qs, message", [
    (weights_query(), "sum to 0"),
    (weights_query(rating="lots"), "not a number"),
    (weights_query(rating=-0.5), "must be a number between 0 and"),
    (weights_query(rating=1) + "&has_metrics=1&m_imdb_rating=-3&en_imdb_rating=on", "must be a finite number &gt;= 0"),
])
def test_preview_bad_weights_show_the_error(viewer_client, movie_ids, qs, message):
    r = viewer_client.get(f"/profiles/balanced/preview?{qs}", headers={"HX-Request": "true"})
    assert r.status_code == 400 and message in r.text and "Traceback" not in r.text


def profile_row(conn, name):
    return conn.execute("SELECT current_version, rating_weight, award_weight, financial_weight, cultural_weight, "
                        "popularity_weight FROM reelscore.weight_profiles WHERE name = %s", (name,)).fetchone()


def test_create_and_save_profile_records_admin_and_reason(admin_client, conn, movie_ids):
    page = admin_client.get("/profiles/")
    r = admin_client.post("/profiles/", data={"csrf_token": csrf_from(page.text), "name": "mine",
                                             "copy_from": "critics_choice", "description": "", "reason": "a copy to tune"})
    assert r.status_code == 302, r.text
    assert profile_row(conn, "mine")[1:] == profile_row(conn, "critics_choice")[1:]
    page = admin_client.get("/profiles/mine")
    assert 'id="save-profile"' in page.text
    data = {"csrf_token": csrf_from(page.text), "reason": "more awards", "description": "tuned",
            "cat_rating": "0.4", "cat_award": "0.6", "cat_financial": "0", "cat_cultural": "0", "cat_popularity": "0"}
    r = admin_client.post("/profiles/mine", data=data)
    assert r.status_code == 302, r.text
    version, *weights = profile_row(conn, "mine")
    assert weights == pytest.approx([0.4, 0.6, 0, 0, 0])
    who, why = conn.execute("SELECT changed_by, change_reason FROM reelscore.weight_profile_history h "
                            "JOIN reelscore.weight_profiles p ON p.id = h.profile_id WHERE p.name = 'mine' "
                            "ORDER BY h.id DESC LIMIT 1").fetchone()
    assert (who, why) == (ADMIN, "more awards")
    page = admin_client.get("/profiles/mine")
    assert "more awards" in page.text and f"version {version} is active" in page.text


@pytest.mark.parametrize("changes, field, message", [
    ({"cat_rating": "0.5", "cat_award": "0.2"}, "weights", "sum to 0.7"),
    ({"cat_rating": "x"}, "weights", "rating: not a number"),
    ({"has_metrics": "1", "m_imdb_rating": "heavy", "en_imdb_rating": "on"}, "metric_weights", "imdb_rating: not a number"),
    ({"has_metrics": "1", "m_imdb_rating": "-1", "en_imdb_rating": "on"}, "metric_weights", "imdb_rating"),
    ({"reason": ""}, "reason", "say why"),
])
def test_bad_profile_save_shows_error_and_changes_nothing(admin_client, conn, movie_ids, changes, field, message):
    if profile_row(conn, "tuneme") is None:
        conn.execute("SELECT reelscore.save_profile('tuneme', '{\"rating\": 1}')")
    before = profile_row(conn, "tuneme")
    page = admin_client.get("/profiles/tuneme")
    data = {"csrf_token": csrf_from(page.text), "reason": "try", "cat_rating": "0.5", "cat_award": "0.5",
            "cat_financial": "0", "cat_cultural": "0", "cat_popularity": "0"}
    data.update(changes)
    r = admin_client.post("/profiles/tuneme", data=data)
    assert r.status_code == 400
    assert message in (field_error(r.text, field) or "")
    assert profile_row(conn, "tuneme") == before


def test_system_profile_cannot_be_saved_even_by_admin(admin_client, conn, movie_ids):
    before = profile_row(conn, "balanced")
    page = admin_client.get("/profiles/balanced")
    assert 'id="save-profile"' not in page.text
    r = admin_client.post("/profiles/balanced", data={
        "csrf_token": csrf_from(page.text), "reason": "forced", "cat_rating": "1", "cat_award": "0",
        "cat_financial": "0", "cat_cultural": "0", "cat_popularity": "0"})
    assert r.status_code == 403 and "system profile" in r.text
    assert profile_row(conn, "balanced") == before


def test_viewer_cannot_save_or_create_profiles(viewer_client, conn, movie_ids):
    page = viewer_client.get("/profiles/critics_choice")
    token = csrf_from(page.text)
    n = conn.execute("SELECT count(*) FROM reelscore.weight_profile_versions").fetchone()[0]
    assert viewer_client.post("/profiles/", data={"csrf_token": token, "name": "v", "copy_from": "balanced",
                                                  "reason": "x"}).status_code == 403
    assert viewer_client.post("/profiles/critics_choice", data={"csrf_token": token, "reason": "x",
                                                               "cat_rating": "1"}).status_code == 403
    assert conn.execute("SELECT count(*) FROM reelscore.weight_profile_versions").fetchone()[0] == n


def test_create_profile_errors(admin_client, conn, movie_ids):
    page = admin_client.get("/profiles/")
    n = conn.execute("SELECT count(*) FROM reelscore.weight_profiles").fetchone()[0]
    r = admin_client.post("/profiles/", data={"csrf_token": csrf_from(page.text), "name": "Bad Name!",
                                             "copy_from": "balanced", "reason": "x"})
    assert r.status_code == 400 and "profile name" in r.text
    r = admin_client.post("/profiles/", data={"csrf_token": csrf_from(page.text), "name": "ok_name",
                                             "copy_from": "no_such", "reason": "x"})
    assert r.status_code == 400 and "copy_from" in r.text
    assert conn.execute("SELECT count(*) FROM reelscore.weight_profiles").fetchone()[0] == n


def test_activate_an_older_version(admin_client, conn, movie_ids):
    conn.execute("SELECT reelscore.save_profile('flipper', '{\"rating\": 1}')")
    conn.execute("SELECT reelscore.save_profile('flipper', '{\"award\": 1}')")
    assert profile_row(conn, "flipper")[0] == 2
    page = admin_client.get("/profiles/flipper")
    r = admin_client.post("/profiles/flipper/activate/1", data={"csrf_token": csrf_from(page.text)})
    assert r.status_code == 302
    assert profile_row(conn, "flipper")[:3] == (1, 1.0, 0.0)
    r = admin_client.post("/profiles/flipper/activate/9", data={"csrf_token": csrf_from(page.text)})
    assert r.status_code == 400 and "no version 9" in r.text


def test_compare_two_profiles(viewer_client, movie_ids):
    conn_free = viewer_client.get("/profiles/compare?a=critics_choice&b=crowd_pleaser&limit=5")
    assert conn_free.status_code == 200
    cols = re.findall(r'<section class="card compare-col" data-profile="([^"]+)">(.*?)</section>', conn_free.text, re.DOTALL)
    assert [c[0] for c in cols] == ["critics_choice", "crowd_pleaser"]
    assert all(len(re.findall(r"<tr data-movie", body)) == 5 for _, body in cols)
    for qs, message in [("a=nope&b=balanced", "no weight profile named"), ("limit=abc", "whole number"),
                        ("limit=0", "between 1 and 200")]:
        r = viewer_client.get(f"/profiles/compare?{qs}")
        assert r.status_code == 400 and message in r.text


# --------------------------------------------------------------------------- coverage
def test_coverage_overview(viewer_client, movie_ids):
    r = viewer_client.get("/coverage/")
    assert r.status_code == 200
    with_data = sum(1 for _, v in MOVIES if v)
    overall = re.search(r'<div class="stat" id="overall">([^<]+)</div>', r.text).group(1)
    assert overall == f"{100 * with_data / len(MOVIES):.1f}%"
    award_codes = {"oscar_wins", "oscar_nominations", "cannes_palme_dor"}
    n_award = sum(1 for _, v in MOVIES if award_codes & set(v))
    cat = re.search(r'<tr data-category="award">.*?<td class="num coverage">([^<]+)</td>', r.text, re.DOTALL).group(1)
    assert cat == f"{100 * n_award / len(MOVIES):.1f}%"
    assert 'id="spark-imdb_rating"' in r.text and "Heatmap" in r.text
    assert "low_coverage" in r.text  # e.g. oscar metrics under their thresholds? at least one alert
    assert "Refresh now" not in r.text  # viewers do not refresh


def test_coverage_gaps(viewer_client, movie_ids):
    r = viewer_client.get("/coverage/gaps?scope=category&name=award")
    assert r.status_code == 200
    shown = {int(x) for x in re.findall(r'<tr data-movie="(\d+)">', r.text)}
    award_codes = {"oscar_wins", "oscar_nominations", "cannes_palme_dor"}
    assert shown == {movie_ids[t] for t, v in MOVIES if not award_codes & set(v)}
    for qs, message in [("scope=planet&name=x", "unknown gap scope"), ("scope=category&name=nothing", "no active metric"),
                        ("scope=metric&name=imdb_rating&limit=x", "whole numbers")]:
        r = viewer_client.get(f"/coverage/gaps?{qs}")
        assert r.status_code == 400 and message in r.text


def test_coverage_refresh_is_for_admins(viewer_client, admin_client, conn, movie_ids):
    n = conn.execute("SELECT count(*) FROM reelscore.coverage_snapshots").fetchone()[0]
    token = csrf_from(viewer_client.get("/coverage/").text)
    assert viewer_client.post("/coverage/refresh", data={"csrf_token": token}).status_code == 403
    assert admin_client.post("/coverage/refresh").status_code == 400  # no CSRF token
    assert conn.execute("SELECT count(*) FROM reelscore.coverage_snapshots").fetchone()[0] == n
    page = admin_client.get("/coverage/")
    assert "Refresh now" in page.text
    assert admin_client.post("/coverage/refresh", data={"csrf_token": csrf_from(page.text)}).status_code == 302
    assert conn.execute("SELECT count(*) FROM reelscore.coverage_snapshots").fetchone()[0] == n + 1


# --------------------------------------------------------------------------- playground
def test_playground_search(viewer_client, movie_ids):
    r = viewer_client.get("/playground/?q=god")
    assert r.status_code == 200
    assert [int(x) for x in re.findall(r'<tr data-movie="(\d+)">', r.text)] == [movie_ids["The Godfather"]]
    r = viewer_client.get("/playground/?q=THE", headers={"HX-Request": "true"})
    assert {int(x) for x in re.findall(r'<tr data-movie="(\d+)">', r.text)} == \
        {movie_ids["The Godfather"], movie_ids["The Room"]}
    # LIKE wildcards in the text are literal characters
    r = viewer_client.get("/playground/?q=0%25")
    assert [int(x) for x in re.findall(r'<tr data-movie="(\d+)">', r.text)] == [movie_ids["100% Wolf"]]
    r = viewer_client.get("/playground/?q=__")
    assert re.findall(r'<tr data-movie="(\d+)">', r.text) == []
    r = viewer_client.get("/playground/?q=x")
    assert r.status_code == 400 and "at least two characters" in r.text


def test_playground_movie_raw_and_normalized(viewer_client, movie_ids):
    r = viewer_client.get(f"/playground/movie/{movie_ids['The Godfather']}")
    assert r.status_code == 200
    norm = dict(re.findall(r'<tr data-code="([^"]+)">.*?<td class="num normalized" data-value="([^"]+)"', r.text, re.DOTALL))
    assert float(norm["imdb_rating"]) == pytest.approx(0.92)
    assert float(norm["imdb_vote_count"]) == pytest.approx(math.log(2_000_001) / math.log(10_000_001))
    assert float(norm["afi_top_100"]) == pytest.approx(1 / (1 + math.exp(0.05 * (2 - 50))))
    assert float(norm["oscar_nominations"]) == 1.0
    assert "Step by step" in r.text and 'class="sentence"' in r.text
    profiles = re.findall(r'<tr data-profile="([^"]+)"', r.text)
    assert {"balanced", "critics_choice", "crowd_pleaser", "award_seeker", "hidden_gems"} <= set(profiles)


def test_live_fragments_render_the_numbers_alone(viewer_client, movie_ids):
    """What an open page fetches when an announcement arrives: the same numbers, no layout."""
    page = viewer_client.get("/coverage/")
    frag = viewer_client.get("/coverage/?fragment=live")
    assert frag.status_code == 200 and "<html" not in frag.text and "<html" in page.text
    grab = lambda t: re.search(r'<div class="stat" id="overall">([^<]+)</div>', t).group(1)
    assert grab(frag.text) == grab(page.text)
    mid = movie_ids["The Godfather"]
    page = viewer_client.get(f"/playground/movie/{mid}?profile=critics_choice")
    frag = viewer_client.get(f"/playground/movie/{mid}?profile=critics_choice&fragment=live")
    assert frag.status_code == 200 and "<html" not in frag.text and 'id="live-form"' not in frag.text
    rows = lambda t: re.findall(r'<tr data-profile="([^"]+)"[^>]*>.*?<td class="num">([^<]+)</td>', t, re.DOTALL)
    assert rows(frag.text) == rows(page.text) and len(rows(frag.text)) >= 5
    assert "critics_choice" in frag.text and 'class="sentence"' in frag.text
    for url in ("/coverage/?fragment=all", f"/playground/movie/{mid}?fragment=%3Cscript%3E"):
        bad = viewer_client.get(url)
        assert bad.status_code == 400 and "fragment must be" in bad.text and "<script>" not in bad.text


def test_playground_breakdown_under_a_rating_only_profile(viewer_client, conn, movie_ids):
    conn.execute("SELECT reelscore.save_profile('ratings_only', '{\"rating\": 1}')")
    mid = movie_ids["Avatar"]
    r = viewer_client.get(f"/playground/movie/{mid}?profile=ratings_only")
    score = float(re.search(r'class="total-score" data-score="([^"]+)"', r.text).group(1))
    assert score == pytest.approx(rating_mean(dict(MOVIES)["Avatar"]), abs=1e-9)
    contributions = [float(x) for x in re.findall(r'<td class="num contribution">([^<]+)</td>', r.text)]
    assert sum(contributions) == pytest.approx(score, abs=1e-3)


def test_playground_live_score_follows_the_sliders(viewer_client, movie_ids):
    mid = movie_ids["The Godfather"]
    r = viewer_client.get(f"/playground/movie/{mid}/score?profile=balanced&{weights_query(rating=1)}",
                          headers={"HX-Request": "true"})
    assert r.status_code == 200 and "<html" not in r.text
    score = float(re.search(r'data-score="([^"]+)"', r.text).group(1))
    assert score == pytest.approx(rating_mean(dict(MOVIES)["The Godfather"]), abs=1e-9)
    r = viewer_client.get(f"/playground/movie/{mid}/score?profile=balanced&{weights_query(award=1)}")
    # awards: oscar_wins 3 -> 1.0, oscar_nominations 11 -> 1.0 (equal registry weights)
    assert float(re.search(r'data-score="([^"]+)"', r.text).group(1)) == pytest.approx(1.0)


def test_playground_errors(viewer_client, movie_ids):
    assert viewer_client.get("/playground/movie/999999999").status_code == 404
    r = viewer_client.get(f"/playground/movie/{movie_ids['Parasite']}?profile=nope")
    assert r.status_code == 400 and "nope" in r.text
    r = viewer_client.get(f"/playground/movie/{movie_ids['Parasite']}/score?{weights_query()}")
    assert r.status_code == 400 and "sum to 0" in r.text
    r = viewer_client.get(f"/playground/movie/{movie_ids['Parasite']}/score?cat_rating=abc")
    assert r.status_code == 400 and "not a number" in r.text
    r = viewer_client.get(f"/playground/movie/{movie_ids['Unrated Obscurity']}")
    assert r.status_code == 200 and "No metric values." in r.text


# --------------------------------------------------------------------------- CLI
def run_cli(db_url, *args, stdin=""):
    import os
    import subprocess
    import sys
    env = dict(os.environ, REELSCORE_DATABASE_URL=db_url)
    return subprocess.run([sys.executable, "-m", "reelscore.cli", "admin", *args], input=stdin, env=env, check=False,
                          capture_output=True, text=True, timeout=120)


def test_cli_creates_users_who_can_log_in(app, db_url, conn):
    r = run_cli(db_url, "create-user", "carol", "--role", "admin", "--password-stdin", stdin="carols secret pw\n")
    assert r.returncode == 0, r.stderr
    assert conn.execute("SELECT reelscore.admin_user_role('carol')").fetchone()[0] == "admin"
    # the stored hash is werkzeug's (scrypt by default), never the password
    stored = conn.execute("SELECT password_hash FROM reelscore.admin_users WHERE username = 'carol'").fetchone()[0]
    assert stored.startswith("scrypt:") and "carols secret pw" not in stored
    c = app.test_client()
    assert login(c, "carol", "carols secret pw").status_code == 302
    r = run_cli(db_url, "create-user", "carol", "--password-stdin", stdin="another password\n")
    assert r.returncode == 1 and "already exists" in r.stderr and "Traceback" not in r.stderr
    r = run_cli(db_url, "create-user", "dave", "--password-stdin", stdin="short\n")
    assert r.returncode == 1 and "at least 8 characters" in r.stderr
    r = run_cli(db_url, "create-user", "bad name", "--password-stdin", stdin="long enough pw\n")
    assert r.returncode == 1 and "invalid admin user name" in r.stderr
    r = run_cli(db_url, "set-password", "carol", "--password-stdin", stdin="a new password\n")
    assert r.returncode == 0
    assert login(app.test_client(), "carol", "carols secret pw").status_code == 401
    assert login(app.test_client(), "carol", "a new password").status_code == 302
    r = run_cli(db_url, "set-role", "carol", "viewer")
    assert r.returncode == 0 and conn.execute("SELECT reelscore.admin_user_role('carol')").fetchone()[0] == "viewer"
    r = run_cli(db_url, "list-users")
    assert r.returncode == 0 and "carol" in r.stdout and "viewer" in r.stdout


def test_users_table_is_closed_to_the_app_roles(role_conn):
    import psycopg
    for kind in ("read", "write", "admin"):
        c = role_conn(kind)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT password_hash FROM reelscore.admin_users")
    viewer = role_conn("read")
    # logging in works for the read role; creating users does not
    assert viewer.execute("SELECT reelscore.admin_check_login(%s, %s)", (ADMIN, PASSWORD)).fetchone()[0] == "admin"
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        viewer.execute("SELECT reelscore.admin_create_user('x', %s, 'admin')",
                       (generate_password_hash("whatever pw", method=FAST),))


def test_a_plain_password_is_refused_as_a_hash(conn):
    import psycopg
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not a werkzeug password hash"):
        conn.execute("SELECT reelscore.admin_create_user('plain', 'hunter2hunter2', 'admin')")


# --------------------------------------------------------------------------- every route
OWN_BLUEPRINTS = ("metrics.", "profiles.", "coverage.", "playground.")


def own_rules(app):
    return [r for r in app.url_map.iter_rules() if r.endpoint.startswith(OWN_BLUEPRINTS)]


def sample_path(rule, movie_ids):
    values = {"code": "imdb_rating", "name": "critics_choice", "movie_id": movie_ids["Parasite"], "version": 1}
    path = rule.rule
    for arg in rule.arguments:
        path = re.sub(rf"<(?:\w+:)?{arg}>", str(values[arg]), path)
    return path


def test_every_section_route_needs_a_login(app, movie_ids):
    rules = own_rules(app)
    assert len(rules) >= 15
    c = app.test_client()
    token = csrf_from(c.get("/login").text)
    for rule in rules:
        path = sample_path(rule, movie_ids)
        if "GET" in rule.methods:
            r = c.get(path)
        else:
            r = c.post(path, data={"csrf_token": token})
        assert r.status_code == 302 and "/login" in r.headers["Location"], (rule.rule, r.status_code)


def test_every_section_post_needs_the_admin_role(app, viewer_client, conn, movie_ids):
    token = csrf_from(viewer_client.get("/metrics/").text)
    posts = [r for r in own_rules(app) if "POST" in r.methods]
    assert {r.endpoint for r in posts} >= {"metrics.update", "profiles.save", "profiles.create",
                                           "profiles.activate", "coverage.refresh"}
    before = conn.execute("SELECT (SELECT count(*) FROM reelscore.metric_definition_history), "
                          "(SELECT count(*) FROM reelscore.weight_profile_history), "
                          "(SELECT count(*) FROM reelscore.coverage_snapshots)").fetchone()
    for rule in posts:
        r = viewer_client.post(sample_path(rule, movie_ids), data={"csrf_token": token, "reason": "x"})
        assert r.status_code == 403 and "admin role" in r.text, rule.rule
    after = conn.execute("SELECT (SELECT count(*) FROM reelscore.metric_definition_history), "
                         "(SELECT count(*) FROM reelscore.weight_profile_history), "
                         "(SELECT count(*) FROM reelscore.coverage_snapshots)").fetchone()
    assert after == before


def test_every_section_get_renders_for_a_viewer_without_a_trace(app, viewer_client, movie_ids):
    for rule in own_rules(app):
        if "GET" not in rule.methods:
            continue
        r = viewer_client.get(sample_path(rule, movie_ids))
        # the tester without a value and a bare preview are client errors; all else renders
        assert r.status_code in (200, 400), (rule.rule, r.status_code)
        assert "Traceback" not in r.text and "Internal error" not in r.text
