"""Live updates in a real browser (headless Chromium via Playwright): a change committed in
the database reaches open admin pages over Server-Sent Events, and each page reacts:
the playground's movie page, a profile page another admin changed, the coverage page
after a new snapshot, the metric table (refreshed by htmx).

The change is made with SQL from the test, as another admin would through any client."""
from __future__ import annotations

import json
import threading

import psycopg
import pytest
from werkzeug.security import generate_password_hash

from admin.views import fmt_num

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
USER, PASSWORD = "rt_eve", "realtime e2e password"
WEIGHTS = {"rating": 0.4, "award": 0.2, "financial": 0.2, "cultural": 0.2, "popularity": 0.0}


@pytest.fixture(scope="module")
def movie_id(db_url) -> int:
    with psycopg.connect(db_url, autocommit=True) as c:
        mid = c.execute("INSERT INTO reelscore.movies (title, release_date) VALUES ('Live Film', '2001-01-01') "
                        "RETURNING id").fetchone()[0]
        c.execute("INSERT INTO reelscore.metric_values (movie_id, metric_id, raw_value) "
                  "SELECT %s, id, 6.5 FROM reelscore.metric_definitions WHERE code = 'imdb_rating'", (mid,))
        c.execute("SELECT reelscore.admin_create_user(%s, %s, 'admin')",
                  (USER, generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")))
        c.execute("SELECT reelscore.save_profile('rt_e2e', %s::jsonb)", (json.dumps(WEIGHTS),))
        c.execute("SELECT reelscore.refresh_coverage()")
    return mid


@pytest.fixture(scope="module")
def server(db_url, movie_id):
    from werkzeug.serving import make_server

    from admin import create_app
    from admin.db import close_pool
    from admin.realtime import stop_hub
    app = create_app({"DATABASE_URL": db_url, "SECRET_KEY": "rt-e2e-secret", "DB_POOL_MAX": 4})
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    stop_hub(app)
    srv.shutdown()
    thread.join(5)
    close_pool(app)


@pytest.fixture(scope="module")
def context(server):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        ctx = browser.new_context(base_url=server)
        pg = ctx.new_page()
        pg.set_default_timeout(15000)
        pg.goto("/login")
        pg.fill("input[name=username]", USER)
        pg.fill("input[name=password]", PASSWORD)
        pg.click("button[type=submit]")
        pg.wait_for_url("**/metrics/")
        pg.close()
        yield ctx
        browser.close()


def open_live(ctx, path: str):
    """Open a page and wait until its event stream is connected."""
    pg = ctx.new_page()
    pg.set_default_timeout(15000)
    pg.goto(path)
    pg.wait_for_function("() => window.reelscoreRealtime && window.reelscoreRealtime.source"
                         " && window.reelscoreRealtime.source.readyState === 1")
    return pg


def sql(db_url: str, statement: str, params=(), actor: str = "bob") -> None:
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("SELECT set_config('reelscore.actor', %s, false)", (actor,))
        c.execute(statement, params)


def last_seq(db_url: str) -> int:
    with psycopg.connect(db_url) as c:
        return c.execute("SELECT coalesce(max(seq), 0) FROM reelscore.event_outbox").fetchone()[0]


def test_playground_page_hears_about_its_movie_only(context, db_url, movie_id):
    pg = open_live(context, f"/playground/movie/{movie_id}")
    notice = pg.locator(".live-notice[data-rs-on]")
    assert notice.is_hidden()
    # another movie's value changes: this page does not react
    sql(db_url, "INSERT INTO reelscore.movies (title) VALUES ('Other Film')")
    sql(db_url, """INSERT INTO reelscore.metric_values (movie_id, metric_id, raw_value)
                   SELECT m.id, d.id, 5 FROM reelscore.movies m, reelscore.metric_definitions d
                   WHERE m.title = 'Other Film' AND d.code = 'imdb_rating'""")
    seen_other = last_seq(db_url)
    pg.wait_for_function(f"() => window.reelscoreRealtime.lastSeq >= {seen_other}")
    assert notice.is_hidden()
    # this movie's value changes: the notice appears, naming who changed it
    sql(db_url, "UPDATE reelscore.metric_values SET raw_value = 8.1 WHERE movie_id = %s", (movie_id,), actor="carol")
    notice.wait_for(state="visible")
    assert "carol" in notice.inner_text()
    assert int(notice.get_attribute("data-rs-last-seq")) == last_seq(db_url)
    # the numbers follow without a reload: the raw value, the scores, the breakdown
    pg.wait_for_function("() => document.querySelector('#movie-live tr[data-code=imdb_rating] td.raw')"
                         ".textContent.trim().startsWith('8.1')")
    with psycopg.connect(db_url) as c:
        want = c.execute("SELECT reelscore.movie_score(%s, 'balanced')", (movie_id,)).fetchone()[0]
    pg.wait_for_function(f"() => document.querySelector('#movie-live tr[data-profile=balanced] td.num')"
                         f".textContent.trim() === '{fmt_num(want, 4)}'")
    pg.wait_for_function("() => Array.from(document.querySelectorAll('#breakdown td'))"
                         ".some(td => td.textContent.trim().startsWith('8.1'))")
    assert pg.locator("#live-form").count() == 1   # the sliders are still there, untouched
    pg.close()


def test_profile_page_shows_another_admins_change(context, db_url):
    pg = open_live(context, "/profiles/rt_e2e")
    notice = pg.locator(".live-notice[data-rs-on]")
    assert notice.is_hidden()
    sql(db_url, "SELECT reelscore.save_profile('rt_e2e', NULL, %s::jsonb)", (json.dumps({"imdb_rating": 2.0}),),
        actor="bob")
    notice.wait_for(state="visible")
    assert "bob" in notice.inner_text()
    pg.close()


def test_coverage_page_hears_about_a_new_snapshot(context, db_url):
    pg = open_live(context, "/coverage/")
    notice = pg.locator(".live-notice[data-rs-on]")
    assert notice.is_hidden()
    before = pg.locator("#value-count").inner_text()
    # one more value, then a snapshot: the page's numbers follow without a reload
    sql(db_url, "INSERT INTO reelscore.movies (title) VALUES ('Coverage Film')")
    sql(db_url, """INSERT INTO reelscore.metric_values (movie_id, metric_id, raw_value)
                   SELECT m.id, d.id, 7 FROM reelscore.movies m, reelscore.metric_definitions d
                   WHERE m.title = 'Coverage Film' AND d.code = 'imdb_rating'""")
    sql(db_url, "SELECT reelscore.refresh_coverage()")
    notice.wait_for(state="visible")
    with psycopg.connect(db_url) as c:
        count = c.execute("SELECT value_count FROM reelscore.coverage_latest").fetchone()[0]
    want = fmt_num(count)
    assert want != before
    pg.wait_for_function(f"() => document.querySelector('#value-count').textContent.trim() === '{want}'")
    # the charts are drawn again in the new numbers (htmx settles, admin.js redraws)
    pg.wait_for_function("() => window.reelscoreCharts['category-bars'] !== undefined")
    pg.close()


def test_metric_table_is_refreshed_by_htmx(context, db_url):
    pg = open_live(context, "/metrics/")
    with pg.expect_request(lambda r: "/metrics/" in r.url and r.headers.get("hx-request") == "true"):
        sql(db_url, "UPDATE reelscore.metric_definitions SET description = 'changed live' WHERE code = 'imdb_rating'")
    pg.wait_for_function(f"() => document.querySelector('#metrics-table').dataset.rsLastSeq == '{last_seq(db_url)}'")
    pg.close()


def test_a_page_that_reconnects_gets_what_it_missed(context, db_url, movie_id):
    """The page's stream is closed; a change is committed; the page reconnects from the last
    seq it saw and still gets the change (replayed from the outbox)."""
    pg = open_live(context, f"/playground/movie/{movie_id}")
    pg.evaluate("() => { const s = window.reelscoreRealtime; document.body.dataset.rsSince = String(s.lastSeq ?? "
                f"{last_seq(db_url)}); s.source.close(); s.source = null; }}")
    sql(db_url, "UPDATE reelscore.metric_values SET raw_value = 8.3 WHERE movie_id = %s", (movie_id,), actor="dave")
    pg.evaluate("() => window.reelscoreRealtime.connect()")
    notice = pg.locator(".live-notice[data-rs-on]")
    notice.wait_for(state="visible")
    assert "dave" in notice.inner_text()
    pg.close()
