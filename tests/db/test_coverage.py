"""Coverage snapshots (sql/500-coverage.sql) against independent counts made here in Python
after random loads and deletes; alerts at their exact thresholds; gaps; trends; locking."""
from __future__ import annotations

import random
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

SEED = 20261126


@pytest.fixture(autouse=True)
def _no_side_triggers(conn):
    """Data set-up here runs with triggers off (session_replication_role = replica): the
    coverage tests need rows, not the history, rescoring or announcements other parts hang
    on metric_values. Foreign keys do not cascade then, so deletes below are explicit."""
    conn.execute("set session_replication_role = replica")
    yield
    conn.execute("set session_replication_role = default")


def _defs(conn):
    rows = conn.execute("""select id, code, category, source, active, coverage_threshold, freshness_days,
                                  data_type from reelscore.metric_definitions order by slot""").fetchall()
    return {r[0]: dict(id=r[0], code=r[1], category=r[2], source=r[3], active=r[4], threshold=r[5],
                       freshness=r[6], data_type=r[7]) for r in rows}


def _reset(conn):
    conn.execute("truncate reelscore.coverage_snapshots cascade")
    conn.execute("delete from reelscore.metric_values")
    conn.execute("delete from reelscore.movies")  # the foreign keys' triggers are off: values first


def _load_random(conn, rng, n_movies, defs, start_id=1):
    """Random movies (some without release date) and random values with random observation times."""
    movies = []
    for i in range(start_id, start_id + n_movies):
        year = None if rng.random() < 0.1 else rng.randint(1925, 2025)
        movies.append((i, f"Film {i}", None if year is None else f"{year}-06-15"))
    with conn.cursor() as cur:
        with cur.copy("copy reelscore.movies (id, title, release_date) from stdin") as cp:
            for m in movies:
                cp.write_row(m)
    now = datetime.now(UTC)
    values = []
    cover = {mid: rng.choice([0.05, 0.3, 0.6, 0.9]) for mid in defs}
    for (mid_movie, _, _) in movies:
        for mid, d in defs.items():
            if rng.random() < cover[mid]:
                raw = float(rng.randint(0, 1)) if d["data_type"] == "boolean" else float(rng.randint(1, 100))
                observed = now - timedelta(days=rng.uniform(0, 40))
                values.append((mid_movie, mid, raw, observed))
    with conn.cursor() as cur:
        with cur.copy("copy reelscore.metric_values (movie_id, metric_id, raw_value, observed_at) from stdin") as cp:
            for v in values:
                cp.write_row(v)


def _expected(conn, defs):
    """Independent computation from the raw rows (read back, counted in Python)."""
    movies = dict(conn.execute("select id, release_date from reelscore.movies").fetchall())
    rows = conn.execute("select movie_id, metric_id, raw_value, observed_at from reelscore.metric_values").fetchall()
    taken = conn.execute("select taken_at from reelscore.coverage_snapshots order by id desc limit 1").fetchone()[0]
    active = {mid for mid, d in defs.items() if d["active"]}
    per_metric = defaultdict(list)
    stale = defaultdict(int)
    per_movie = defaultdict(set)
    for movie, mid, raw, observed in rows:
        if mid not in active:
            continue
        per_metric[mid].append(raw)
        per_movie[movie].add(mid)
        f = defs[mid]["freshness"]
        if f is not None and observed < taken - timedelta(days=f):
            stale[mid] += 1
    total = len(movies)
    groups = defaultdict(set)
    for movie, mids in per_movie.items():
        groups[("overall", "all")].add(movie)
        for mid in mids:
            groups[("category", defs[mid]["category"])].add(movie)
            groups[("source", defs[mid]["source"])].add(movie)
    heat = defaultdict(int)
    heat_total = defaultdict(int)
    for movie, rd in movies.items():
        bucket = "unknown" if rd is None else f"{rd.year // 10 * 10}s"
        heat_total[bucket] += 1
        for mid in per_movie.get(movie, ()):
            heat[(bucket, mid)] += 1
    return dict(total=total, per_metric=per_metric, stale=stale, groups=groups, heat=heat,
                heat_total=heat_total)


def _check_snapshot(conn, defs):
    exp = _expected(conn, defs)
    got = {r[0]: r[1:] for r in conn.execute(
        """select c.metric_id, c.total_movies, c.movies_with_data, c.coverage_percentage, c.avg_value,
                  c.min_value, c.max_value, c.median_value, c.stale_movies
           from reelscore.metric_coverage_stats c
           where c.snapshot_id = (select max(id) from reelscore.coverage_snapshots)""").fetchall()}
    active = [mid for mid, d in defs.items() if d["active"]]
    assert set(got) == set(active)
    for mid in active:
        vals = exp["per_metric"].get(mid, [])
        total, n, pct, avg, mn, mx, med, stale = got[mid]
        assert total == exp["total"]
        assert n == len(vals), defs[mid]["code"]
        assert pct == pytest.approx(100.0 * len(vals) / exp["total"])
        assert stale == exp["stale"].get(mid, 0), defs[mid]["code"]
        if vals:
            assert avg == pytest.approx(statistics.fmean(vals))
            assert (mn, mx) == (min(vals), max(vals))
            assert med == pytest.approx(statistics.median(vals))
        else:
            assert avg is None and med is None
    groups = {(r[0], r[1]): r[2:] for r in conn.execute(
        """select dimension, group_name, total_movies, movies_with_data from reelscore.coverage_group_stats
           where snapshot_id = (select max(id) from reelscore.coverage_snapshots)""").fetchall()}
    cats = {d["category"] for d in defs.values() if d["active"]}
    srcs = {d["source"] for d in defs.values() if d["active"]}
    assert set(groups) == {("overall", "all")} | {("category", c) for c in cats} | {("source", s) for s in srcs}
    for key, (total, n) in groups.items():
        assert total == exp["total"]
        assert n == len(exp["groups"].get(key, ())), key
    heat = {(r[0], r[1]): (r[2], r[3]) for r in conn.execute(
        """select h.bucket, h.metric_id, h.total_movies, h.movies_with_data from reelscore.coverage_heatmap h
           where h.snapshot_id = (select max(id) from reelscore.coverage_snapshots)""").fetchall()}
    assert {b for b, _ in heat} == set(exp["heat_total"])
    for (bucket, mid), (total, n) in heat.items():
        assert total == exp["heat_total"][bucket]
        assert n == exp["heat"].get((bucket, mid), 0), (bucket, defs[mid]["code"])
    return exp


def test_coverage_equals_independent_counts_after_random_loads_and_deletes(conn):
    _reset(conn)
    rng = random.Random(SEED)
    defs = _defs(conn)
    _load_random(conn, rng, 400, defs)
    snap1 = conn.execute("select reelscore.refresh_coverage()").fetchone()[0]
    assert snap1 is not None
    _check_snapshot(conn, defs)

    # Random deletes of values and of whole movies, a deactivated metric, more loads.
    ids = [r[0] for r in conn.execute("select movie_id from reelscore.metric_values").fetchall()]
    victims = rng.sample(ids, len(ids) // 5)
    conn.execute("delete from reelscore.metric_values where movie_id = any(%s) and metric_id %% 3 = 0", (victims,))
    gone = rng.sample(range(1, 401), 60)
    conn.execute("delete from reelscore.metric_values where movie_id = any(%s)", (gone,))
    conn.execute("delete from reelscore.movies where id = any(%s)", (gone,))
    conn.execute("update reelscore.metric_definitions set active = false where code = 'twitter_mentions'")
    try:
        defs = _defs(conn)
        _load_random(conn, rng, 150, defs, start_id=1000)
        snap2 = conn.execute("select reelscore.refresh_coverage()").fetchone()[0]
        assert snap2 > snap1
        exp = _check_snapshot(conn, defs)
        latest = conn.execute("select total_movies, movies_with_data from reelscore.coverage_latest").fetchone()
        assert latest == (exp["total"], len(exp["groups"][("overall", "all")]))
        # The history keeps both snapshots.
        assert conn.execute("select count(*) from reelscore.coverage_snapshots").fetchone()[0] == 2
    finally:
        conn.execute("update reelscore.metric_definitions set active = true where code = 'twitter_mentions'")


def test_empty_database_snapshot(conn):
    _reset(conn)
    conn.execute("select reelscore.refresh_coverage()")
    row = conn.execute("""select count(*), sum(movies_with_data), max(coverage_percentage)
                          from reelscore.metric_coverage_stats""").fetchone()
    assert row == (29, 0, 0.0)
    assert conn.execute("select count(*) from reelscore.coverage_alerts").fetchone()[0] == 0


def _setup_threshold_case(conn, n_movies=200, with_data=140):
    _reset(conn)
    conn.execute("insert into reelscore.movies (id, title) select i, 'M' || i from generate_series(1, %s) i",
                 (n_movies,))
    conn.execute("""insert into reelscore.metric_values (movie_id, metric_id, raw_value, observed_at)
                    select i, d.id, 7, now() from generate_series(1, %s) i, reelscore.metric_definitions d
                    where d.code = 'tmdb_rating'""", (with_data,))


def _alerts(conn, kind):
    return {r[0]: r[1:] for r in conn.execute(
        "select metric_code, affected_movies, observed, threshold from reelscore.coverage_alerts where kind = %s",
        (kind,)).fetchall()}


@pytest.mark.parametrize("threshold, fires", [(0.70, False), (0.69, False), (0.705, True), (0.71, True)])
def test_low_coverage_alert_fires_exactly_under_threshold(conn, threshold, fires):
    _setup_threshold_case(conn)  # 140 of 200 movies: coverage exactly 0.70
    conn.execute("update reelscore.metric_definitions set coverage_threshold = %s where code = 'tmdb_rating'",
                 (threshold,))
    try:
        conn.execute("select reelscore.refresh_coverage()")
        alerts = _alerts(conn, "low_coverage")
        assert ("tmdb_rating" in alerts) is fires
        if fires:
            assert alerts["tmdb_rating"][1] == pytest.approx(140 / 200)
        # Metrics with no data at all are critical alerts (their thresholds are all > 0).
        assert "imdb_rating" in alerts
        sev = conn.execute("select severity from reelscore.coverage_alerts where metric_code = 'imdb_rating'"
                           ).fetchone()[0]
        assert sev == "critical"
    finally:
        conn.execute("update reelscore.metric_definitions set coverage_threshold = 0.7 where code = 'tmdb_rating'")


def test_threshold_edit_changes_alert_without_refresh(conn):
    _setup_threshold_case(conn)
    conn.execute("select reelscore.refresh_coverage()")
    assert "tmdb_rating" not in _alerts(conn, "low_coverage")
    conn.execute("update reelscore.metric_definitions set coverage_threshold = 0.75 where code = 'tmdb_rating'")
    try:
        assert "tmdb_rating" in _alerts(conn, "low_coverage")
    finally:
        conn.execute("update reelscore.metric_definitions set coverage_threshold = 0.7 where code = 'tmdb_rating'")


def test_staleness_alert_fires_exactly_past_freshness_days(conn):
    _reset(conn)
    conn.execute("insert into reelscore.movies (id, title) select i, 'M' || i from generate_series(1, 6) i")
    # tmdb_rating has freshness_days = 7: two values just past it, two just inside, one new.
    fresh = conn.execute("select freshness_days from reelscore.metric_definitions where code = 'tmdb_rating'"
                         ).fetchone()[0]
    assert fresh == 7
    conn.execute("""insert into reelscore.metric_values (movie_id, metric_id, raw_value, observed_at)
                    select m, d.id, 5, now() - make_interval(days => 7) + o
                    from (values (1, interval '-2 minutes'), (2, interval '-1 hour'),
                                 (3, interval '2 minutes'), (4, interval '1 hour'),
                                 (5, interval '6 days')) x(m, o),
                         reelscore.metric_definitions d where d.code = 'tmdb_rating'""")
    conn.execute("select reelscore.refresh_coverage()")
    stale = _alerts(conn, "stale")
    assert stale["tmdb_rating"][0] == 2
    assert stale["tmdb_rating"][1] > 7.0  # observed = age in days of the oldest value
    # A metric whose values are all fresh raises no staleness alert.
    conn.execute("update reelscore.metric_values set observed_at = now()")
    conn.execute("select reelscore.refresh_coverage()")
    assert "tmdb_rating" not in _alerts(conn, "stale")


def test_gaps_ranked_by_reach(conn):
    _reset(conn)
    rng = random.Random(SEED + 1)
    conn.execute("insert into reelscore.movies (id, title) select i, 'M' || i from generate_series(1, 300) i")
    pop = {}
    rating = set()
    for i in range(1, 301):
        if rng.random() < 0.7:
            pop[i] = float(rng.randint(0, 900))
        if rng.random() < 0.5:
            rating.add(i)
    pid = conn.execute("select id from reelscore.metric_definitions where code='tmdb_popularity'").fetchone()[0]
    rid = conn.execute("select id from reelscore.metric_definitions where code='imdb_rating'").fetchone()[0]
    with conn.cursor() as cur:
        with cur.copy("copy reelscore.metric_values (movie_id, metric_id, raw_value) from stdin") as cp:
            for i, v in pop.items():
                cp.write_row((i, pid, v))
            for i in rating:
                cp.write_row((i, rid, 7.0))
    conn.execute("select reelscore.refresh_coverage()")
    rows = conn.execute("select movie_id, gap_cost, rank_value, ranked_by from reelscore.coverage_gaps("
                        "'category', 'rating', 'tmdb_popularity', 1000)").fetchall()
    import math
    lacking = [i for i in range(1, 301) if i not in rating]
    expected = sorted(lacking, key=lambda i: (0 if i in pop else 1, -pop.get(i, 0), i))
    assert [r[0] for r in rows] == expected
    for movie, cost, raw, by in rows:
        assert by == "tmdb_popularity"
        want = min(1.0, math.log(pop[movie] + 1) / math.log(1001)) if movie in pop else 0.0
        assert cost == pytest.approx(want)
    # Paging, and the default reach metric (the only popularity metric with data).
    page = conn.execute("select movie_id from reelscore.coverage_gaps('metric', 'imdb_rating', null, 10, 5)").fetchall()
    assert [r[0] for r in page] == expected[5:15]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="no active metric in category 'ratings'"):
        conn.execute("select * from reelscore.coverage_gaps('category', 'ratings')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown gap scope 'genre'"):
        conn.execute("select * from reelscore.coverage_gaps('genre', 'x')")


def test_trend_and_history_thinning(conn):
    _setup_threshold_case(conn, 100, 50)
    # Past snapshots (written as refresh would): one per 10 minutes for 9 days, coverage rising.
    now = conn.execute("select now()").fetchone()[0]
    mid = conn.execute("select id from reelscore.metric_definitions where code = 'tmdb_rating'").fetchone()[0]
    with conn.cursor() as cur:
        for k in range(9 * 144, 0, -1):
            t = now - timedelta(minutes=10 * k)
            sid = cur.execute("""insert into reelscore.coverage_snapshots (taken_at, total_movies, movies_with_data,
                                 value_count) values (%s, 100, 0, 0) returning id""", (t,)).fetchone()[0]
            n = 50 - k // 144  # 41 nine days ago .. 50 today
            cur.execute("""insert into reelscore.metric_coverage_stats (snapshot_id, metric_id, metric_code,
                           total_movies, movies_with_data, coverage_percentage, last_calculated)
                           values (%s, %s, 'tmdb_rating', 100, %s, %s, %s)""", (sid, mid, n, float(n), t))
    conn.execute("select reelscore.refresh_coverage()")
    row = conn.execute("""select current_percentage, start_percentage, change, days, daily_percentage
                          from reelscore.coverage_trend_7d where metric_code = 'tmdb_rating'""").fetchone()
    latest = conn.execute("select taken_at from reelscore.coverage_snapshots order by id desc limit 1").fetchone()[0]
    start = latest - timedelta(days=7)
    # Independent: the first kept snapshot at or after latest - 7 days.
    ks = [k for k in range(9 * 144, 0, -1) if now - timedelta(minutes=10 * k) >= start]
    # Thinning has run: older than a day only the last snapshot of each hour is left.
    first_kept = min(ks, key=lambda k: -k)
    first_hour_last = [k for k in ks if (now - timedelta(minutes=10 * k)).replace(minute=0, second=0, microsecond=0)
                       == (now - timedelta(minutes=10 * first_kept)).replace(minute=0, second=0, microsecond=0)]
    k0 = min(first_hour_last)
    assert row[0] == 50.0
    assert row[1] == float(50 - k0 // 144)
    assert row[2] == pytest.approx(50.0 - row[1])
    assert len(row[3]) == len(set(row[3])) == len(row[4]) and 7 <= len(row[3]) <= 8
    assert row[4] == sorted(row[4])
    counts = conn.execute("""select count(*) filter (where taken_at >= %s - interval '1 day'),
                                    count(*) filter (where taken_at < %s - interval '1 day')
                             from reelscore.coverage_snapshots""", (latest, latest)).fetchone()
    assert counts[0] >= 144
    hours = {(now - timedelta(minutes=10 * k)).replace(minute=0, second=0, microsecond=0)
             for k in range(9 * 144, 0, -1) if now - timedelta(minutes=10 * k) < latest - timedelta(days=1)}
    assert counts[1] == len(hours)


def test_refresh_takes_no_lock_that_blocks_writers(conn, db_url):
    _setup_threshold_case(conn, 50, 20)
    with psycopg.connect(db_url) as refresher, psycopg.connect(db_url, autocommit=True) as writer:
        refresher.execute("select reelscore.refresh_coverage()")  # transaction left open
        modes = {r[0] for r in refresher.execute(
            """select l.mode from pg_locks l join pg_class c on c.oid = l.relation
               where l.pid = pg_backend_pid() and c.relname in ('movies', 'metric_values')""").fetchall()}
        assert modes <= {"AccessShareLock"}
        writer.execute("set lock_timeout = '2s'")
        writer.execute("update reelscore.metric_values set raw_value = 8 where movie_id = 1")
        writer.execute("insert into reelscore.movies (id, title) values (9999, 'New')")
        writer.execute("delete from reelscore.metric_values where movie_id = 2")
        # A second refresh while the first is open does not queue behind it.
        assert writer.execute("select reelscore.refresh_coverage()").fetchone()[0] is None
        refresher.rollback()


def test_roles(conn, role_conn):
    _setup_threshold_case(conn, 20, 10)
    w = role_conn("write")
    assert w.execute("select reelscore.refresh_coverage()").fetchone()[0] is not None
    r = role_conn("read")
    for view in ("coverage_latest", "metric_coverage", "coverage_by_category", "coverage_by_source",
                 "coverage_heatmap_latest", "coverage_trend_7d", "coverage_alerts"):
        r.execute(f"select * from reelscore.{view}").fetchall()
    assert r.execute("select count(*) from reelscore.coverage_gaps('source', 'imdb')").fetchone()[0] == 20
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        r.execute("select reelscore.refresh_coverage()")


def _expected_gaps(values, movies, scope_ids, reach_id):
    """Independent: the movies with no value of any scope metric; those with a reach value
    first by (raw desc, id), then the rest by id."""
    has = defaultdict(set)
    for (movie, mid) in values:
        has[movie].add(mid)
    lacking = [m for m in movies if not (has[m] & scope_ids)]
    ranked = sorted((m for m in lacking if (m, reach_id) in values), key=lambda m: (-values[(m, reach_id)], m))
    rest = sorted(m for m in lacking if (m, reach_id) not in values)
    return [(m, values[(m, reach_id)]) for m in ranked] + [(m, None) for m in rest]


def test_gaps_equal_independent_computation_dense_sparse_and_stale(conn):
    """Loads with the scoring triggers on (movie_features kept as in production), a sparse
    category (rating: 6 of 500 movies lack it, 3 of them with reach), a dense source, a metric;
    then stale feature rows (deferred scoring) whose masks are out of date: still exact."""
    _reset(conn)
    conn.execute("delete from reelscore.movie_features")
    conn.execute("set session_replication_role = default")
    rng = random.Random(SEED + 2)
    defs = {d["code"]: d for d in _defs(conn).values()}
    n = 500
    conn.execute("insert into reelscore.movies (id, title) select i, 'G' || i from generate_series(1, %s) i", (n,))
    values = {}
    sparse_rating = {7, 99, 250, 311, 420, 499}
    for m in range(1, n + 1):
        if rng.random() < 0.8 or m in (7, 99, 250):
            values[(m, defs["tmdb_popularity"]["id"])] = float(rng.randint(0, 50))  # ties on raw
        if rng.random() < 0.6 and m not in sparse_rating:  # (a rating metric)
            values[(m, defs["imdb_vote_count"]["id"])] = float(rng.randint(1, 10 ** 6))
        if m not in sparse_rating:
            values[(m, defs[rng.choice(["tmdb_rating", "imdb_rating", "metacritic_score"])]["id"])] = 7.0
        if rng.random() < 0.1 and m not in sparse_rating:
            values[(m, defs["rt_tomatometer"]["id"])] = 80.0
        if rng.random() < 0.3:
            values[(m, defs["tmdb_budget"]["id"])] = 1e6
    with conn.cursor() as cur:
        with cur.copy("copy reelscore.metric_values (movie_id, metric_id, raw_value) from stdin") as cp:
            for (m, mid), v in values.items():
                cp.write_row((m, mid, v))
    conn.execute("select reelscore.refresh_features()")
    conn.execute("select reelscore.refresh_coverage()")
    assert conn.execute("select count(*) from reelscore.movie_features where not stale").fetchone()[0] == n

    def check(scope, name, rank_by, scope_codes):
        scope_ids = {defs[c]["id"] for c in scope_codes}
        want = _expected_gaps(values, range(1, n + 1), scope_ids, defs[rank_by]["id"])
        for limit, offset in ((1000, 0), (5, 0), (7, 3), (10, len(want) - 4)):
            got = conn.execute("select movie_id, rank_value from reelscore.coverage_gaps(%s, %s, %s, %s, %s)",
                               (scope, name, rank_by, limit, max(offset, 0))).fetchall()
            assert [tuple(r) for r in got] == want[max(offset, 0):max(offset, 0) + limit], (scope, name, limit)
        return want

    rating = [c for c, d in defs.items() if d["category"] == "rating"]
    want = check("category", "rating", "tmdb_popularity", rating)
    assert {m for m, _ in want} == sparse_rating                      # sparse: 6 of 500
    assert {m for m, raw in want if raw is not None} >= {7, 99, 250}   # 3 or more with reach
    check("source", "rotten_tomatoes", "imdb_vote_count",
          [c for c, d in defs.items() if d["source"] == "rotten_tomatoes"])          # dense
    check("metric", "tmdb_budget", "tmdb_popularity", ["tmdb_budget"])
    check("source", "tmdb", "imdb_vote_count", [c for c, d in defs.items() if d["source"] == "tmdb"])

    # Deferred scoring: the changed movies' feature rows are only marked stale, their masks
    # out of date. A rating value removed (movie 5 becomes a gap with reach), one added.
    conn.execute("set reelscore.defer_scoring = on")
    try:
        gone = [k for k in values if k[0] == 5 and defs_by_id(defs)[k[1]] in rating]
        conn.execute("delete from reelscore.metric_values where movie_id = 5 and metric_id = any(%s)",
                     ([k[1] for k in gone],))
        for k in gone:
            del values[k]
        values[(7, defs["imdb_rating"]["id"])] = 6.0
        conn.execute("insert into reelscore.metric_values (movie_id, metric_id, raw_value) values (7, %s, 6)",
                     (defs["imdb_rating"]["id"],))
        assert conn.execute("select count(*) from reelscore.movie_features where stale").fetchone()[0] == 2
        want = check("category", "rating", "tmdb_popularity", rating)
        assert 5 in [m for m, _ in want] and 7 not in [m for m, _ in want]
    finally:
        conn.execute("reset reelscore.defer_scoring")


def defs_by_id(defs):
    return {d["id"]: code for code, d in defs.items()}



def test_gaps_with_many_candidates_ranked_by_stored_reach_or_walked(conn):
    """More candidates than the cap (2,000 here): gaps only at low reach (source tmdb, as at
    1M movies) are ranked by the normalized reach in movie_features; gaps at a few per cent
    near the top (rotten_tomatoes) make the walk go on; frequent gaps (metacritic) fill the
    page in the walk's first stage. Vote counts tie often, also across page boundaries; then
    stale feature rows. Every page equals the independent computation, and the path taken is
    the one expected (the function's DEBUG message)."""
    _reset(conn)
    conn.execute("delete from reelscore.movie_features")
    conn.execute("set session_replication_role = default")
    rng = random.Random(SEED + 3)
    defs = {d["code"]: d for d in _defs(conn).values()}
    votes, tmdb, rt, meta = (defs[c]["id"] for c in ("imdb_vote_count", "tmdb_rating", "rt_tomatometer",
                                                      "metacritic_score"))
    n = 6000
    conn.execute("insert into reelscore.movies (id, title) select i, 'H' || i from generate_series(1, %s) i", (n,))
    values = {}
    for m in range(1, n + 1):
        v = rng.randint(1, 4000)                      # about 1.5 movies per vote count: ties
        if rng.random() < 0.95:
            values[(m, votes)] = float(v)
        if v >= 2500 or rng.random() < 0.2:           # tmdb gaps only below 2,500 votes
            values[(m, tmdb)] = 7.0
        if (rng.random() < 0.1) if v < 2000 else (rng.random() < 0.97):
            values[(m, rt)] = 80.0                    # 3% gaps near the top, most below 2,000
        if rng.random() < 0.5:
            values[(m, meta)] = 70.0
    with conn.cursor() as cur, cur.copy("copy reelscore.metric_values (movie_id, metric_id, raw_value) "
                                        "from stdin") as cp:
        for (m, mid), v in values.items():
            cp.write_row((m, mid, v))
    conn.execute("select reelscore.refresh_features()")
    conn.execute("select reelscore.refresh_coverage()")
    conn.execute("analyze reelscore.movie_features")   # the cap reads reltuples

    paths = []
    conn.add_notice_handler(lambda d: paths.append(d.message_primary.split(": ", 1)[1])
                            if (d.message_primary or "").startswith("coverage_gaps: ") else None)
    conn.execute("set client_min_messages = debug1")

    def check(scope, name, scope_ids, pages, path):
        want = _expected_gaps(values, range(1, n + 1), scope_ids, votes)
        for limit, offset in pages:
            paths.clear()
            got = conn.execute("select movie_id, rank_value from reelscore.coverage_gaps(%s, %s, 'imdb_vote_count', %s, %s)",
                               (scope, name, limit, offset)).fetchall()
            assert [tuple(r) for r in got] == want[offset:offset + limit], (scope, name, limit, offset)
            if path is not None:
                assert paths == [path], (scope, name, limit, offset)
        return want

    try:
        tmdb_ids = {d["id"] for d in defs.values() if d["source"] == "tmdb"}
        want = check("source", "tmdb", tmdb_ids, ((50, 0), (7, 13), (30, 200)), "ranked candidates")
        assert len([m for m, raw in want if raw is not None]) > 2000
        assert want[49][1] == want[50][1] or want[20][1] == want[19][1] or want[212][1] == want[213][1]  # ties
        rt_ids = {d["id"] for d in defs.values() if d["source"] == "rotten_tomatoes"}
        check("source", "rotten_tomatoes", rt_ids, ((50, 0), (20, 25)), "walk, resumed")
        check("source", "rotten_tomatoes", rt_ids, ((1000, 0),), "ranked candidates")
        check("metric", "metacritic_score", {meta}, ((50, 0), (100, 300)), "walk")

        # Deferred scoring: movies near the top lose their tmdb rating (gaps of high reach
        # whose masks are out of date), one low gap gains one.
        conn.execute("set reelscore.defer_scoring = on")
        top = sorted((m for m in range(1, n + 1) if (m, votes) in values and (m, tmdb) in values),
                     key=lambda m: -values[(m, votes)])[:3]
        conn.execute("delete from reelscore.metric_values where metric_id = %s and movie_id = any(%s)", (tmdb, top))
        for m in top:
            del values[(m, tmdb)]
        low = want[0][0]
        conn.execute("insert into reelscore.metric_values (movie_id, metric_id, raw_value) values (%s, %s, 7)", (low, tmdb))
        values[(low, tmdb)] = 7.0
        assert conn.execute("select count(*) from reelscore.movie_features where stale").fetchone()[0] == 4
        want = check("source", "tmdb", tmdb_ids, ((50, 0), (10, 40)), "ranked candidates")
        assert [m for m, _ in want[:3]] == top and low not in [m for m, _ in want]
    finally:
        conn.execute("reset reelscore.defer_scoring")
        conn.execute("reset client_min_messages")
