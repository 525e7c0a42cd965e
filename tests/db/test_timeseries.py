"""Time series (sql/600-timeseries.sql): rollups equal aggregates computed here from the raw
points; windowed refresh; retention keeps rollups; trending finds the planted risers with
the Theil-Sen slope and Mann-Kendall test computed independently (scipy); spikes flagged;
seasonality by genre visible."""
from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
from scipy import stats

from reelscore.synth_timeseries import generate


def _hour(t):
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _day(t):
    return t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _week(t):
    d = _day(t)
    return d - timedelta(days=d.weekday())  # weeks start on Monday (time_bucket's origin)


def _agg(points, key):
    out = defaultdict(list)
    for mid, movie, t, v in points:
        out[(mid, key(t), movie)].append((t, v))
    res = {}
    for k, tv in out.items():
        vals = [v for _, v in tv]
        res[k] = (len(vals), sum(vals), sum(v * v for v in vals), min(vals), max(vals), max(tv)[1])
    return res


def _clear(conn):
    conn.execute("truncate reelscore.ts_rollup_hourly, reelscore.ts_rollup_daily")
    conn.execute("delete from reelscore.metric_timeseries")
    conn.execute("update reelscore.ts_settings set refreshed_from = null, refreshed_through = null, "
                 "raw_retained_from = null")


def _insert(conn, points):
    with conn.cursor() as cur, cur.copy("copy reelscore.metric_timeseries (metric_id, movie_id, time, value) "
                                        "from stdin") as cp:
        for p in points:
            cp.write_row(p)


def _check(conn, table, expected):
    got = {(r[0], r[1], r[2]): tuple(r[3:]) for r in conn.execute(
        f"select metric_id, bucket, movie_id, n, sum_value, sumsq_value, min_value, max_value, last_value "
        f"from {table}").fetchall()}
    assert set(got) == set(expected)
    for k, e in expected.items():
        g = got[k]
        assert g[0] == e[0] and g[3:] == e[3:], k
        assert g[1] == pytest.approx(e[1]) and g[2] == pytest.approx(e[2]), k


def test_rollups_equal_aggregates_of_raw_points(conn):
    _clear(conn)
    rng = random.Random(7)
    now = datetime.now(UTC)
    start = _day(now) - timedelta(days=9)
    points = []
    for mid in (27, 2):
        for movie in range(1, 6):
            secs = rng.sample(range(10 * 86400 - 1), 60)
            for s in secs:
                t = start + timedelta(seconds=s)
                if t < now:
                    points.append((mid, movie, t, round(rng.uniform(0, 500), 3)))
    _insert(conn, points)
    conn.execute("select * from reelscore.refresh_rollups(%s)", (start,))
    _check(conn, "reelscore.ts_rollup_hourly", _agg(points, _hour))
    _check(conn, "reelscore.ts_rollup_daily", _agg(points, _day))
    _check(conn, "reelscore.metric_rollup_weekly", _agg(points, _week))
    avg = conn.execute("select avg_value, stddev_value, n from reelscore.metric_rollup_daily "
                       "where metric_id = 27 and movie_id = 1 order by bucket limit 1").fetchone()
    first_day = min(_day(t) for m, mv, t, _ in points if m == 27 and mv == 1)
    vals = [v for m, mv, t, v in points if m == 27 and mv == 1 and _day(t) == first_day]
    assert avg[0] == pytest.approx(np.mean(vals))
    if len(vals) > 1:
        assert avg[1] == pytest.approx(np.std(vals, ddof=1))

    # Incremental: the default window (2 days) picks up a new point, not one from a week ago.
    new = [(27, 1, now - timedelta(minutes=5), 9999.0), (27, 1, now - timedelta(days=7, hours=1), 8888.0)]
    _insert(conn, new)
    conn.execute("select * from reelscore.refresh_rollups()")
    daily = _agg(points + new[:1], _day)
    got_old = conn.execute("select max_value from reelscore.ts_rollup_daily where metric_id = 27 and movie_id = 1 "
                           "and bucket = %s", (_day(new[1][2]),)).fetchone()
    assert got_old is None or got_old[0] != 8888.0
    assert conn.execute("select max_value from reelscore.ts_rollup_daily where metric_id = 27 and movie_id = 1 "
                        "and bucket = %s", (_day(now - timedelta(minutes=5)),)).fetchone()[0] == \
        daily[(27, _day(now - timedelta(minutes=5)), 1)][4]
    # A backfill range picks the old one up.
    conn.execute("select * from reelscore.refresh_rollups(%s)", (start,))
    _check(conn, "reelscore.ts_rollup_daily", _agg(points + new, _day))


def test_a_rerun_rewrites_nothing_and_deleted_points_leave_their_buckets(conn):
    """refresh_rollups merges: a re-roll of unchanged days writes no row (and keeps the trend
    candidates), a deleted point's bucket goes, a changed one is rewritten."""
    _clear(conn)
    now = datetime.now(UTC)
    t1, t2 = _hour(now) - timedelta(hours=30), _hour(now) - timedelta(hours=5)
    points = [(27, 1, t1 + timedelta(minutes=5), 10.0), (27, 1, t1 + timedelta(minutes=9), 30.0),
              (27, 2, t2 + timedelta(minutes=1), 7.0)]
    _insert(conn, points)
    start = _day(now) - timedelta(days=2)
    conn.execute("select * from reelscore.refresh_rollups(%s)", (start,))
    conn.execute("select reelscore.refresh_trend_candidates()")
    xmins = lambda: conn.execute(
        "select array_agg(xmin::text order by metric_id, bucket, movie_id) from reelscore.ts_rollup_hourly").fetchone()[0]
    cands = lambda: conn.execute(
        "select array_agg(xmin::text) from reelscore.ts_trend_candidates").fetchone()[0]
    before, cand_before = xmins(), cands()
    conn.execute("select * from reelscore.refresh_rollups(%s)", (start,))
    assert xmins() == before and cands() == cand_before
    # a deleted point: its hour goes; a changed one: its hour is rewritten
    conn.execute("delete from reelscore.metric_timeseries where movie_id = 2 and metric_id = 27")
    conn.execute("update reelscore.metric_timeseries set value = 50 where movie_id = 1 and value = 30")
    conn.execute("select * from reelscore.refresh_rollups(%s)", (start,))
    _check(conn, "reelscore.ts_rollup_hourly", _agg([points[0], (27, 1, points[1][2], 50.0)], _hour))
    _check(conn, "reelscore.ts_rollup_daily", _agg([points[0], (27, 1, points[1][2], 50.0)], _day))


def test_retention_drops_only_rolled_up_raw_points_and_keeps_rollups(conn):
    _clear(conn)
    now = datetime.now(UTC)
    points = [(27, m, _day(now) - timedelta(days=d) + timedelta(hours=13), float(10 * m + d))
              for m in (1, 2) for d in range(20)]
    points = [p for p in points if p[2] < now]
    _insert(conn, points)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="retention age"):
        conn.execute("select reelscore.apply_retention()")
    # Nothing rolled up yet: nothing may be dropped.
    assert conn.execute("select reelscore.apply_retention('10 days')").fetchone()[0] == 0
    assert conn.execute("select count(*) from reelscore.metric_timeseries").fetchone()[0] == len(points)
    conn.execute("select * from reelscore.refresh_rollups(%s)", (_day(now) - timedelta(days=30),))
    before = conn.execute("select * from reelscore.ts_rollup_daily order by 1, 2, 3").fetchall()
    conn.execute("select reelscore.apply_retention('10 days')")
    cutoff = _day(now - timedelta(days=10))
    left = conn.execute("select min(time), count(*) from reelscore.metric_timeseries").fetchone()
    assert left[0] >= cutoff
    assert left[1] == sum(1 for p in points if p[2] >= cutoff)
    # A refresh over the whole range afterwards leaves the old days' rollups alone.
    conn.execute("select * from reelscore.refresh_rollups(%s)", (_day(now) - timedelta(days=30),))
    after = conn.execute("select * from reelscore.ts_rollup_daily order by 1, 2, 3").fetchall()
    assert after == before
    assert len(after) == len({(p[0], _day(p[2]), p[1]) for p in points})


# ---------------------------------------------------------------------------------------
# Trends, spikes and seasonality on the synthetic series.
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth(db_url):
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("truncate reelscore.ts_rollup_hourly, reelscore.ts_rollup_daily")
        c.execute("delete from reelscore.metric_timeseries")
        c.execute("update reelscore.ts_settings set refreshed_from = null, refreshed_through = null, "
                  "raw_retained_from = null")
        truth = generate(c, movies=300, days=100, seed=11, riser_share=0.03, spike_share=0.03)
        c.execute("select * from reelscore.refresh_rollups(now() - interval '120 days')")
    return truth


def _series(conn, movie, days):
    rows = conn.execute("""select time, value from reelscore.metric_timeseries t
                           join reelscore.metric_definitions d on d.id = t.metric_id
                           where d.code = 'tmdb_popularity' and t.movie_id = %s order by time""", (movie,)).fetchall()
    start = _day(datetime.now(UTC) - timedelta(days=days))
    xs = [(_day(t) - start).days for t, _ in rows if _day(t) >= start]
    raw = [v for t, v in rows if _day(t) >= start]
    y = [min(1.0, max(0.0, math.log(v + 1) / math.log(1001))) for v in raw]
    return np.array(xs, float), np.array(y), np.array(raw)


def test_trending_finds_the_planted_risers(conn, synth):
    k = len(synth.risers)
    assert k == 9
    rows = conn.execute("""select movie_id, slope_per_day, raw_slope_per_day, kendall_tau, z, p_value, days
                           from reelscore.trending('tmdb_popularity', '30 days', %s)""", (k,)).fetchall()
    assert {r[0] for r in rows} == set(synth.risers)
    slopes = [r[1] for r in rows]
    assert slopes == sorted(slopes, reverse=True)
    for movie, slope, raw_slope, tau, z, p, n in rows:
        x, y, raw = _series(conn, movie, 30)
        assert n == len(x)
        assert slope == pytest.approx(stats.theilslopes(y, x)[0], rel=1e-9)
        assert raw_slope == pytest.approx(stats.theilslopes(raw, x)[0], rel=1e-9)
        s = sum(np.sign(y[j] - y[i]) for i in range(n) for j in range(i + 1, n))
        var = n * (n - 1) * (2 * n + 5) / 18
        z_exp = (s - np.sign(s)) / math.sqrt(var)
        assert tau == pytest.approx(s / (n * (n - 1) / 2))
        assert z == pytest.approx(z_exp)
        assert p == pytest.approx(2 * stats.norm.sf(abs(z_exp)), abs=1e-6)
        assert p < 1e-4
        # The planted growth rate, seen through the log normalization.
        assert slope == pytest.approx(synth.risers[movie] / math.log(1001), rel=0.35)
    # The same query over the raw points gives the same answer.
    raw_rows = conn.execute("""select movie_id, slope_per_day from reelscore.trending('tmdb_popularity', '30 days',
                               %s, true)""", (k,)).fetchall()
    assert [(r[0], pytest.approx(r[1])) for r in rows] == raw_rows


def test_trending_errors(conn, synth):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown metric 'nope'"):
        conn.execute("select * from reelscore.trending('nope', '30 days', 5)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="k must be"):
        conn.execute("select * from reelscore.trending('tmdb_popularity', '30 days', 0)")


def test_spikes_are_flagged(conn, synth):
    rows = conn.execute("""select movie_id, day, value, baseline_mean, baseline_sd, z
                           from reelscore.spikes('tmdb_popularity', '14 days', 4, '60 days', 1000)""").fetchall()
    flagged = defaultdict(set)
    for r in rows:
        flagged[r[0]].add(r[1].astimezone(UTC).date())
    for movie, day in synth.spikes.items():
        assert day in flagged[movie], movie
    # Anything else flagged is a riser (its recent days are far above its own past).
    assert set(flagged) <= set(synth.spikes) | set(synth.risers)
    # z recomputed here for one planted spike.
    movie, day = next(iter(synth.spikes.items()))
    r = next(r for r in rows if r[0] == movie and r[1].astimezone(UTC).date() == day)
    pts = conn.execute("""select time, value from reelscore.metric_timeseries
                          where metric_id = 27 and movie_id = %s""", (movie,)).fetchall()
    win = _day(datetime.now(UTC) - timedelta(days=14))
    hist = [v for t, v in pts if win - timedelta(days=60) <= _day(t) < win]
    assert r[5] == pytest.approx((r[2] - np.mean(hist)) / np.std(hist, ddof=1))


def test_seasonality_by_genre(conn, synth):
    rows = conn.execute("select genre, month, movies, seasonal_index from "
                        "reelscore.seasonal_by_genre('tmdb_popularity', '100 days')").fetchall()
    horror = {m: idx for g, m, _, idx in rows if g == "Horror"}
    assert horror[10] == max(horror.values())
    assert horror[10] > 1.15
    doc = {m: idx for g, m, _, idx in rows if g == "Documentary"}
    assert abs(doc[10] - 1.0) < 0.1


def test_schedule_without_pg_cron_names_the_cli_fallback(conn):
    assert conn.execute("select count(*) from pg_extension where extname = 'pg_cron'").fetchone()[0] == 0
    with pytest.raises(psycopg.errors.FeatureNotSupported) as err:
        conn.execute("select * from reelscore.schedule_refreshes()")
    assert "reelscore refresh --every 60" in err.value.diag.message_hint
    assert conn.execute("select reelscore.unschedule_refreshes()").fetchone()[0] == 0


def test_refresh_cli_runs_the_sql_refreshes(db_url, conn, monkeypatch, capsys):
    from reelscore.cli import main
    monkeypatch.setenv("REELSCORE_DATABASE_URL", db_url)
    before = conn.execute("select count(*) from reelscore.coverage_snapshots").fetchone()[0]
    assert main(["refresh", "--coverage", "--rollups", "--every", "1", "--count", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("coverage snapshot") == 2 and out.count("rollups:") == 2
    assert conn.execute("select count(*) from reelscore.coverage_snapshots").fetchone()[0] == before + 2
    assert main(["refresh", "--every", "0.1"]) == 1


def test_trending_stage_one_is_stored_by_the_refresh(conn, synth):
    # refresh_rollups stored the 30-day pre-ranking; trending reads it, and the live path
    # (a window not in trend_windows: 29 days) agrees with scipy too.
    n = conn.execute("select count(*) from reelscore.ts_trend_candidates where window_days = 30").fetchone()[0]
    assert n > 0
    rows = conn.execute("select movie_id, slope_per_day from reelscore.trending('tmdb_popularity', '29 days', 9)"
                        ).fetchall()
    assert {r[0] for r in rows} == set(synth.risers)
    for movie, slope in rows:
        x, y, _ = _series(conn, movie, 29)
        assert slope == pytest.approx(stats.theilslopes(y, x)[0], rel=1e-9)


def test_roles_for_time_series(conn, role_conn, synth):
    r = role_conn("read")
    assert len(r.execute("select * from reelscore.trending('tmdb_popularity', '30 days', 3)").fetchall()) == 3
    r.execute("select * from reelscore.metric_rollup_weekly limit 1").fetchall()
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        r.execute("select * from reelscore.refresh_rollups()")
    w = role_conn("write")
    assert w.execute("select hourly_rows from reelscore.refresh_rollups()").fetchone()[0] > 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        w.execute("select reelscore.apply_retention('400 days')")


def _ols_top(conn, code, days, top):
    """Stage 1 recomputed here: numpy least-squares slope of each movie's normalized daily
    mean (log(v + 1) / log(1001), tmdb_popularity's normalization) over the window, the
    steepest `top` rising movies with 3+ days, ordered as trending orders them."""
    rows = conn.execute("""select t.movie_id, t.time, t.value from reelscore.metric_timeseries t
                           join reelscore.metric_definitions d on d.id = t.metric_id
                           where d.code = %s and t.time >= now() - interval '40 days'""", (code,)).fetchall()
    start = _day(datetime.now(UTC) - timedelta(days=days))
    per_day = defaultdict(list)
    for movie, t, v in rows:
        if _day(t) >= start:
            per_day[(movie, (_day(t) - start).days)].append(v)
    series = defaultdict(list)
    for (movie, x), vals in per_day.items():
        series[movie].append((x, min(1.0, max(0.0, math.log(np.mean(vals) + 1) / math.log(1001)))))
    slopes = []
    for movie, xy in series.items():
        if len(xy) >= 3:
            x, y = np.array(xy).T
            slope = np.polyfit(x, y, 1)[0]
            if slope > 0:
                slopes.append((-slope, movie))
    return [(m, -s) for s, m in sorted(slopes)[:top]]


def _stored_top(conn, code, days, top):
    return conn.execute("""select c.movie_id, c.ols_slope from reelscore.ts_trend_candidates c
                           join reelscore.metric_definitions d on d.id = c.metric_id
                           where d.code = %s and c.window_days = %s
                           order by c.ols_slope desc, c.movie_id limit %s""", (code, days, top)).fetchall()


def _top_per_window(conn, top=10):
    """The top `top` stored rows of every metric and window: what trending's stored path reads."""
    return conn.execute("""select metric_id, window_days, movie_id, ols_slope, days from (
                             select c.*, row_number() over (partition by metric_id, window_days
                                                            order by ols_slope desc, movie_id) as rn
                             from reelscore.ts_trend_candidates c) c
                           where rn <= %s order by 1, 2, ols_slope desc, 3""", (top,)).fetchall()


def _assert_same_ranking(a, b):
    assert [r[:3] + r[4:] for r in a] == [r[:3] + r[4:] for r in b]
    assert [r[3] for r in a] == pytest.approx([r[3] for r in b], rel=1e-9)


def test_trend_candidates_follow_changed_points_incrementally(conn, synth):
    """A refresh after points changed recomputes stage 1 only for the changed movies (rows of
    the others are not rewritten), and the ranking stays what a from-scratch pass gives: a
    riser whose points fall leaves it, a flat movie that starts rising enters it. Then so many
    stored movies fall that fewer than trend_candidates remain: the metric is redone whole."""
    with conn.transaction(force_rollback=True):
        conn.execute("update reelscore.ts_settings set trend_candidates = 10")   # stores 10..20
        conn.execute("select reelscore.refresh_trend_candidates()")
        top = _stored_top(conn, "tmdb_popularity", 30, 20)
        assert len(top) == 20
        assert [m for m, _ in top[:10]] == [m for m, _ in _ols_top(conn, "tmdb_popularity", 30, 10)]
        faller, untouched = top[0][0], top[5][0]
        riser = next(m for m in synth.movie_ids if m not in {m for m, _ in top} and m not in synth.risers)
        xmin = lambda m: conn.execute("select xmin::text from reelscore.ts_trend_candidates where movie_id = %s "
                                      "and window_days = 30 and metric_id = 27", (m,)).fetchone()
        before = xmin(untouched)
        conn.execute("""update reelscore.metric_timeseries set value = 1 where metric_id = 27 and movie_id = %s
                        and time >= now() - interval '15 days'""", (faller,))
        conn.execute("""update reelscore.metric_timeseries
                        set value = value * exp(0.5 * extract(epoch from time - (now() - interval '10 days')) / 86400)
                        where metric_id = 27 and movie_id = %s and time >= now() - interval '10 days'""", (riser,))
        conn.execute("select * from reelscore.refresh_rollups(now() - interval '31 days')")
        assert xmin(untouched) == before   # incremental: an unchanged movie's row was not rewritten
        expected = _ols_top(conn, "tmdb_popularity", 30, 10)
        got = _stored_top(conn, "tmdb_popularity", 30, 10)
        assert [m for m, _ in got] == [m for m, _ in expected]
        assert [s for _, s in got] == pytest.approx([s for _, s in expected], rel=1e-9)
        assert got[0][0] == riser and faller not in [m for m, _ in got]
        # trending on the stored stage 1 = trending with stage 1 computed live over the raw points
        stored_tr = conn.execute("select movie_id, slope_per_day from reelscore.trending('tmdb_popularity', "
                                 "'30 days', 5, p_candidates => 10)").fetchall()
        live_tr = conn.execute("select movie_id, slope_per_day from reelscore.trending('tmdb_popularity', "
                               "'30 days', 5, true, p_candidates => 10)").fetchall()
        assert [m for m, _ in stored_tr] == [m for m, _ in live_tr] and stored_tr[0][0] == riser
        assert [s for _, s in stored_tr] == pytest.approx([s for _, s in live_tr], rel=1e-9)
        # every metric and window ranks as a from-scratch pass (by hand) ranks
        incremental = _top_per_window(conn)
        conn.execute("select reelscore.refresh_trend_candidates()")
        _assert_same_ranking(incremental, _top_per_window(conn))

        # Fifteen of the stored twenty fall: fewer than ten left, the metric is redone whole.
        fallers = [m for m, _ in _stored_top(conn, "tmdb_popularity", 30, 15)]
        conn.execute("""update reelscore.metric_timeseries set value = 1 where metric_id = 27
                        and movie_id = any(%s) and time >= now() - interval '15 days'""", (fallers,))
        conn.execute("select * from reelscore.refresh_rollups(now() - interval '31 days')")
        got = _stored_top(conn, "tmdb_popularity", 30, 10)
        assert [m for m, _ in got] == [m for m, _ in _ols_top(conn, "tmdb_popularity", 30, 10)]
        assert not set(fallers) & {m for m, _ in got}
        refilled = _top_per_window(conn)
        conn.execute("select reelscore.refresh_trend_candidates()")
        _assert_same_ranking(refilled, _top_per_window(conn))


def test_append_points_normalizes_and_rejects_unknown_metrics(db_url):
    with psycopg.connect(db_url) as c:                 # one transaction, rolled back
        mid = c.execute("SELECT id FROM reelscore.metric_definitions WHERE code = 'imdb_rating'").fetchone()[0]
        c.execute("CREATE TEMP TABLE pts (time timestamptz, movie_id bigint, metric_id smallint, value float8)")
        c.execute("INSERT INTO pts VALUES ('2026-01-05 10:00+00', 1, %s, 7.5), ('2026-01-06 10:00+00', 2, %s, 3.0)",
                  (mid, mid))
        assert c.execute("SELECT reelscore.append_points('pts', '{\"src\": \"test\"}')").fetchone()[0] == 2
        rows = c.execute("""SELECT t.movie_id, t.normalized_value, reelscore.normalize_value('imdb_rating', t.value),
                                   t.metadata FROM reelscore.metric_timeseries t
                            WHERE t.metadata @> '{"src": "test"}' ORDER BY t.movie_id""").fetchall()
        assert [(r[0], r[3]) for r in rows] == [(1, {"src": "test"}), (2, {"src": "test"})]
        assert all(r[1] == pytest.approx(r[2]) and r[1] is not None for r in rows)
        c.execute("INSERT INTO pts VALUES ('2026-01-07 10:00+00', 3, 32000, 1.0)")
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match=r"unknown metric ids \{32000\}"):
            c.execute("SELECT reelscore.append_points('pts')")
        c.rollback()
        c.execute("CREATE TEMP TABLE pts (time timestamptz, movie_id bigint, metric_id smallint, value float8)")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="JSON object"):
            c.execute("SELECT reelscore.append_points('pts', '[1]')")
        c.rollback()


def _sums(conn):
    return conn.execute("""select metric_id, window_days, movie_id, days, n, n_nonfinite, sum_x, sum_xx, sum_y, sum_xy,
                                  slope from reelscore.ts_trend_sums order by 1, 2, 3""").fetchall()


def _candidates(conn):
    return conn.execute("""select metric_id, window_days, movie_id, ols_slope, days, window_from
                           from reelscore.ts_trend_candidates order by 1, 2, 3""").fetchall()


def _sums_writes(conn):
    return conn.execute("""select n_tup_ins, n_tup_upd, n_tup_del from pg_stat_xact_user_tables
                           where relid = 'reelscore.ts_trend_sums'::regclass""").fetchone()


def test_trend_window_move_subtracts_the_day_that_left(conn, synth):
    """The first refresh of a day moves every window one day on: the running sums lose the
    day that left the window (and changed movies are recomputed), and sums, candidates and
    trending() are then exactly what a from-scratch pass gives, and the candidates rank as
    numpy ranks. Yesterday's state is made by a full pass over windows one day longer (today's
    8- and 31-day windows start where yesterday's 7- and 30-day ones did), relabelled."""
    day = _day(datetime.now(UTC))
    with conn.transaction(force_rollback=True):
        # a pair whose only day in yesterday's 7-day window is the day that leaves it: one
        # imdb_rating point for a movie without any
        lone = conn.execute("""select m.id from reelscore.movies m where not exists (
                                 select 1 from reelscore.metric_timeseries t
                                 join reelscore.metric_definitions d on d.id = t.metric_id
                                 where d.code = 'imdb_rating' and t.movie_id = m.id)
                               order by m.id limit 1""").fetchone()[0]
        conn.execute("""insert into reelscore.metric_timeseries (time, movie_id, metric_id, value)
                        select %s, %s, d.id, 7.0 from reelscore.metric_definitions d where d.code = 'imdb_rating'""",
                     (day - timedelta(days=8) + timedelta(hours=12), lone))
        conn.execute("select * from reelscore.refresh_rollups(%s, %s)", (day - timedelta(days=8), day - timedelta(days=7)))
        lone_sums = lambda: conn.execute(
            "select s.window_days, s.days from reelscore.ts_trend_sums s join reelscore.metric_definitions d "
            "on d.id = s.metric_id where d.code = 'imdb_rating' and s.movie_id = %s order by 1", (lone,)).fetchall()

        conn.execute("update reelscore.ts_settings set trend_candidates = 10, trend_windows = '{8,31}'")
        conn.execute("select reelscore.refresh_trend_candidates()")
        for t in ("ts_trend_sums", "ts_trend_windows", "ts_trend_candidates"):
            conn.execute(f"delete from reelscore.{t} where window_days not in (8, 31)")
            conn.execute(f"update reelscore.{t} set window_days = window_days - 1")
        conn.execute("update reelscore.ts_settings set trend_windows = '{7,30}'")
        assert lone_sums() == [(7, 1), (30, 1)]
        froms = dict(conn.execute("select window_days, min(window_from) from reelscore.ts_trend_windows "
                                  "group by 1").fetchall())
        assert froms == {7: day - timedelta(days=8), 30: day - timedelta(days=31)}
        # the day leaving the 30-day window holds points of every synthetic movie
        assert conn.execute("select count(distinct movie_id) from reelscore.ts_rollup_daily where metric_id = 27 "
                            "and bucket = %s", (day - timedelta(days=31),)).fetchone()[0] == len(synth.movie_ids)
        stale = _sums(conn)
        # and a new point in today's window for one flat movie: the move and a changed pair at once
        mover = next(m for m in synth.movie_ids if m not in synth.risers)
        conn.execute("""insert into reelscore.metric_timeseries (time, movie_id, metric_id, value)
                        values (now() - interval '1 minute', %s, 27, 900)""", (mover,))
        before = _sums_writes(conn)
        conn.execute("select * from reelscore.refresh_rollups()")
        ins, upd, _ = (a - b for a, b in zip(_sums_writes(conn), before))
        assert ins <= 2   # incremental: no full pass (it inserts every movie's sums)
        froms = dict(conn.execute("select window_days, min(window_from) from reelscore.ts_trend_windows "
                                  "group by 1").fetchall())
        assert froms == {7: day - timedelta(days=7), 30: day - timedelta(days=30)}
        moved, moved_cands = _sums(conn), _candidates(conn)
        assert moved != stale
        assert lone_sums() == [(30, 1)]   # its only day left the 7-day window: the row went
        trend = [conn.execute(f"select * from reelscore.trending('{code}', '{w} days', 5, p_candidates => 10)"
                              ).fetchall() for code in ("tmdb_popularity", "tmdb_vote_count") for w in (7, 30)]

        conn.execute("select reelscore.refresh_trend_candidates()")   # from scratch
        assert _sums(conn) == moved   # exact: numeric sums and the slopes made from them
        assert _candidates(conn) == moved_cands
        assert trend == [conn.execute(f"select * from reelscore.trending('{code}', '{w} days', 5, p_candidates => 10)"
                                      ).fetchall() for code in ("tmdb_popularity", "tmdb_vote_count") for w in (7, 30)]
        assert {r[0] for r in trend[1]} <= set(synth.risers) | {mover}
        # and the stored ranking is numpy's least-squares ranking over today's windows
        for w in (7, 30):
            got = _stored_top(conn, "tmdb_popularity", w, 20)
            expected = _ols_top(conn, "tmdb_popularity", w, 20)
            assert [m for m, _ in got] == [m for m, _ in expected]
            assert [s for _, s in got] == pytest.approx([s for _, s in expected], rel=1e-9)
        assert upd >= 2 * len(synth.movie_ids)   # every movie lost a day in each window, in place
