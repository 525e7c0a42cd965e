"""The Prometheus endpoint of the admin app: no login, the Prometheus text format, counters
that move by exactly the calls the test makes, coverage gauges equal to the shares computed
here from the rows the test wrote, rejected rows, SSE clients, and nothing secret."""
from __future__ import annotations

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.db.test_realtime import ADMIN, LiveApp


@pytest.fixture(scope="module")
def live(db_url):
    app = LiveApp(db_url, REALTIME_HEARTBEAT_S=0.2)
    yield app
    app.close()


def scrape(live) -> dict[tuple[str, tuple], float]:
    """GET /metrics anonymously; samples as {(name, sorted labels): value}."""
    client = live.app.test_client()
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def flush_stats(c: psycopg.Connection) -> None:
    """Make this session's function statistics visible to others now (PG 15)."""
    c.execute("select pg_stat_force_next_flush()")


def test_metrics_needs_no_login_and_leaves_the_admin_pages_alone(live):
    client = live.app.test_client()
    assert client.get("/metrics").status_code == 200
    # the metric definitions section lives under /metrics/ and still asks for a login
    r = client.get("/metrics/")
    assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_function_counters_move_by_exactly_the_calls_made(live, db_url):
    before = scrape(live)
    with psycopg.connect(db_url, autocommit=True) as c:
        assert c.execute("show track_functions").fetchone()[0] in ("pl", "all")
        for raw in (1.0, 2.5, 7.0, 9.9, 0.0, 5.5, 3.3):
            c.execute("select reelscore.normalize_value('imdb_rating', %s)", (raw,))
        for _ in range(3):
            c.execute("select reelscore.refresh_distributions()")
        flush_stats(c)
    after = scrape(live)
    assert value(after, "reelscore_function_calls_total", function="normalize_value") \
        - value(before, "reelscore_function_calls_total", function="normalize_value") == 7
    assert value(after, "reelscore_normalizations_total") - value(before, "reelscore_normalizations_total") == 7
    # refresh durations: a summary per refresh function (count and total seconds)
    name = "reelscore_refresh_duration_seconds"
    assert value(after, name + "_count", function="refresh_distributions") \
        - value(before, name + "_count", function="refresh_distributions") == 3
    assert value(after, name + "_sum", function="refresh_distributions") \
        > value(before, name + "_sum", function="refresh_distributions")
    assert value(after, "reelscore_track_functions_info", setting="all") == 1


def test_score_calculations_and_scoring_duration(live, db_url):
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("insert into reelscore.movies (id, title) values (901, 'Scored') on conflict do nothing")
        c.execute("""insert into reelscore.metric_values (movie_id, metric_id, raw_value)
                     select 901, id, 7 from reelscore.metric_definitions where code = 'imdb_rating'
                     on conflict do nothing""")
        flush_stats(c)
    before = scrape(live)
    with psycopg.connect(db_url, autocommit=True) as c:
        for _ in range(4):
            c.execute("select reelscore.movie_score(901)")
        for _ in range(2):
            c.execute("select * from reelscore.explain_score(901)")
        flush_stats(c)
    after = scrape(live)
    assert value(after, "reelscore_score_calculations_total") - value(before, "reelscore_score_calculations_total") == 6
    name = "reelscore_scoring_duration_seconds"
    assert value(after, name + "_count", function="movie_score") - value(before, name + "_count", function="movie_score") == 4
    assert value(after, name + "_count", function="explain_score") \
        - value(before, name + "_count", function="explain_score") == 2
    assert value(after, name + "_sum", function="movie_score") > value(before, name + "_sum", function="movie_score")


def test_coverage_gauges_equal_the_shares_of_the_data(live, db_url):
    """10 movies; imdb_rating on 4 of them, metacritic_score on 1: after refresh_coverage()
    the gauges are 4/N and 1/N of all movies."""
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("set reelscore.defer_scoring = on")
        c.execute("insert into reelscore.movies (id, title) select g, 'Cov ' || g from generate_series(1001, 1010) g")
        c.execute("delete from reelscore.metric_values")
        c.execute("""insert into reelscore.metric_values (movie_id, metric_id, raw_value)
                     select g, d.id, 7 from generate_series(1001, 1004) g, reelscore.metric_definitions d
                     where d.code = 'imdb_rating'
                     union all
                     select 1005, d.id, 80 from reelscore.metric_definitions d where d.code = 'metacritic_score'""")
        total = c.execute("select count(*) from reelscore.movies").fetchone()[0]
        c.execute("select reelscore.refresh_coverage()")
    s = scrape(live)
    assert value(s, "reelscore_metric_coverage_ratio", metric="imdb_rating", category="rating") == pytest.approx(4 / total)
    assert value(s, "reelscore_metric_coverage_ratio", metric="metacritic_score", category="rating") \
        == pytest.approx(1 / total)
    assert value(s, "reelscore_metric_movies_with_data", metric="imdb_rating", category="rating") == 4
    assert ("reelscore_metric_coverage_ratio", (("category", "award"), ("metric", "oscar_wins"))) in s
    assert value(s, "reelscore_metric_coverage_ratio", metric="oscar_wins", category="award") == 0


def test_rejected_rows_and_outbox_gauges(live, db_url):
    with psycopg.connect(db_url, autocommit=True) as c:
        start = c.execute("select count(*) from reelscore.load_rejections").fetchone()[0]
        c.execute("""insert into reelscore.load_rejections (source_name, line_no, raw_text, reason)
                     select 'test.csv', g, 'bad line', 'unparseable' from generate_series(1, 5) g""")
        c.execute("select reelscore.emit_event('metrics_test')")
        last = c.execute("select max(seq) from reelscore.event_outbox").fetchone()[0]
        kept = c.execute("select count(*) from reelscore.event_outbox").fetchone()[0]
    s = scrape(live)
    assert value(s, "reelscore_rejected_rows_total") == start + 5
    assert value(s, "reelscore_outbox_last_seq") == last
    assert value(s, "reelscore_outbox_retained_events") == kept
    assert value(s, "reelscore_database_up") == 1


def test_sse_clients_gauge_and_delivery_histogram(live, db_url):
    streams = [live.stream() for _ in range(3)]
    for st in streams:
        st.frame()
    s = scrape(live)
    assert value(s, "reelscore_sse_clients") == 3
    assert value(s, "reelscore_sse_listener_up") == 1
    received = value(s, "reelscore_sse_events_received_total")
    lag_count = value(s, "reelscore_event_delivery_seconds_count")
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("select reelscore.emit_event('gauge_test')")
    for st in streams:
        assert st.event()[1]["kind"] == "gauge_test"
        st.close()
    # closed pages leave the gauge once the server notices (at the next heartbeat write)
    import time
    deadline = time.monotonic() + 20
    while value(s := scrape(live), "reelscore_sse_clients") != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert value(s, "reelscore_sse_clients") == 0
    assert value(s, "reelscore_sse_events_received_total") == received + 1
    assert value(s, "reelscore_event_delivery_seconds_count") == lag_count + 1


def test_nothing_secret_in_the_metrics(live, db_url):
    client = live.app.test_client()
    text = client.get("/metrics").text
    dbname = db_url.rsplit("/", 1)[-1]
    for secret in (db_url, dbname, "rt-secret", ADMIN, "pbkdf2", "postgres@", "127.0.0.1"):
        assert secret not in text, secret


def test_metrics_answer_when_the_database_part_fails(fresh_db):
    """An empty database (no schema): the endpoint still answers, and says the database
    part is down."""
    from admin import create_app
    from admin.db import close_pool
    app = create_app({"DATABASE_URL": fresh_db(), "TESTING": True, "SECRET_KEY": "x"})
    try:
        r = app.test_client().get("/metrics")
        assert r.status_code == 200
        samples = {s.name: s.value for f in text_string_to_metric_families(r.text) for s in f.samples}
        assert samples["reelscore_database_up"] == 0
        assert samples["reelscore_sse_clients"] == 0
    finally:
        close_pool(app)
