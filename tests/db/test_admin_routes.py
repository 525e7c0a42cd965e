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
    sel = lambda name: re.search(rf'<select[^>]*name="{name}".*?<option selected value="([^"]*)"', html, re.S)
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
    m = re.search(rf'<div class="field has-error" id="field-{field}">(.*?)</div>', r.text, re.S)
    assert m, f"no error beside {field}"
    assert message in m.group(1)
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
