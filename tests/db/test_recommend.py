"""reelscore.recommend(): factors from a hand-made model checked against numpy, the HNSW
path against the exact scan, genre filter, blend, cold-start users and movies, errors,
and the factors run end to end on a small synthetic data set."""
from __future__ import annotations

import numpy as np
import psycopg
import pytest

DIM = 33


def vec(x) -> str:
    return "[" + ",".join(f"{v:.7g}" for v in x) + "]"


@pytest.fixture(scope="module")
def world(db_url):
    rng = np.random.default_rng(11)
    with psycopg.connect(db_url, autocommit=True) as c:
        ids = dict(c.execute("SELECT code, id FROM reelscore.metric_definitions").fetchall())
        movies = []
        for j in range(60):
            genres = ["Drama"] if j % 3 == 0 else ["Comedy"]
            mid = c.execute("INSERT INTO reelscore.movies (title, genres) VALUES (%s, %s) RETURNING id",
                            (f"rec {j}", genres)).fetchone()[0]
            if j < 40:  # metric data for most: profile scores exist
                c.execute("INSERT INTO reelscore.metric_values (movie_id, metric_id, raw_value) VALUES (%s, %s, %s)",
                          (mid, ids["imdb_rating"], float(rng.uniform(3, 9))))
            movies.append((mid, genres))
        c.execute("SELECT reelscore.refresh_features()")
        c.execute("SELECT * FROM reelscore.refresh_scores()")
        users = [c.execute("INSERT INTO reelscore.users (username) VALUES (%s) RETURNING id", (f"rec{k}",)).fetchone()[0]
                 for k in range(4)]
        model = c.execute("""INSERT INTO reelscore.ml_models (kind, version, algorithm, active)
                             VALUES ('factors', 'hand-made', 'test', true) RETURNING id""").fetchone()[0]
        M = rng.normal(0, 0.5, (60, DIM))
        for (mid, _), m in zip(movies, M):
            c.execute("""INSERT INTO reelscore.movie_factors (movie_id, model_id, factors, bias, n_ratings, source)
                         VALUES (%s, %s, %s, %s, 10, 'ratings')""", (mid, model, vec(m), float(m[-1])))
        U = np.c_[rng.normal(0, 0.5, (3, DIM - 1)), np.ones(3)]
        bias = [3.4, 3.6, 3.2]
        for uid, u, b in zip(users[:3], U, bias):   # users[3] has no factors: cold start
            c.execute("""INSERT INTO reelscore.user_factors (user_id, model_id, factors, bias, n_ratings)
                         VALUES (%s, %s, %s, %s, 20)""", (uid, model, vec(u), b))
        seen = {users[0]: [movies[j][0] for j in range(0, 60, 4)], users[3]: [movies[j][0] for j in range(5)]}
        for uid, mids in seen.items():
            for mid in mids:
                c.execute("INSERT INTO reelscore.metric_feedback (user_id, movie_id, user_rating) VALUES (%s, %s, 4)",
                          (uid, mid))
    return {"movies": movies, "users": users, "M": M, "U": U, "bias": bias, "seen": seen, "model": model}


def expected(world, k_user: int, k: int, genre: str | None = None) -> list[tuple[int, float]]:
    uid = world["users"][k_user]
    seen = set(world["seen"].get(uid, []))
    pred = world["bias"][k_user] + world["M"] @ world["U"][k_user]
    rows = [(mid, p) for (mid, g), p in zip(world["movies"], pred)
            if mid not in seen and (genre is None or genre in g)]
    rows.sort(key=lambda x: (-x[1], x[0]))
    return rows[:k]


@pytest.mark.parametrize("k_user", [0, 1])
def test_recommend_is_the_top_unseen_by_predicted_rating(conn, world, k_user):
    uid = world["users"][k_user]
    for exact in (False, True):
        got = conn.execute("SELECT movie_id, predicted_rating, score, source FROM reelscore.recommend(%s, 7, p_exact => %s)",
                           (uid, exact)).fetchall()
        want = expected(world, k_user, 7)
        assert [g[0] for g in got] == [w[0] for w in want]
        for g, w in zip(got, want):
            assert g[2] == pytest.approx(w[1], abs=1e-4)             # vectors are stored as float4
            assert g[1] == pytest.approx(min(5, max(1, w[1])), abs=1e-4)
            assert g[3] == "factors:ratings"
    assert not {r[0] for r in got} & set(world["seen"].get(uid, []))


def test_genre_filter_and_predict_rating(conn, world):
    uid = world["users"][0]
    got = [r[0] for r in conn.execute("SELECT movie_id FROM reelscore.recommend(%s, 5, p_genre => 'Drama')", (uid,))]
    assert got == [w[0] for w in expected(world, 0, 5, "Drama")]
    mid = world["movies"][1][0]
    want = world["bias"][1] + world["M"][1] @ world["U"][1]
    assert conn.execute("SELECT reelscore.predict_rating(%s, %s)", (world["users"][1], mid)).fetchone()[0] == \
        pytest.approx(min(5, max(1, want)), abs=1e-4)


def test_blend_follows_the_documented_mix(conn, world):
    uid = world["users"][1]
    got = conn.execute("""SELECT movie_id, score, profile_score, source
                            FROM reelscore.recommend(%s, 10, 'balanced', 0.5)""", (uid,)).fetchall()
    scores = dict(conn.execute("SELECT m.id, reelscore.movie_score(m.id, 'balanced') FROM reelscore.movies m").fetchall())
    pred = world["bias"][1] + world["M"] @ world["U"][1]
    mix = [(mid, 0.5 * (min(5, max(1, p)) - 1) / 4 + 0.5 * (scores.get(mid) or 0.0))
           for (mid, _), p in zip(world["movies"], pred)]
    mix.sort(key=lambda x: (-x[1], x[0]))
    assert [g[0] for g in got] == [m[0] for m in mix[:10]]
    assert all(g[3] == "blend:balanced" for g in got)
    for g, m in zip(got, mix):
        assert g[1] == pytest.approx(m[1], abs=1e-4)


def test_cold_start_user_gets_the_profile_ranking(conn, world):
    uid = world["users"][3]   # no factors, five movies seen
    got = conn.execute("SELECT movie_id, source FROM reelscore.recommend(%s, 6)", (uid,)).fetchall()
    top = [r[0] for r in conn.execute("SELECT movie_id FROM reelscore.top_movies('balanced', 100)")]
    want = [m for m in top if m not in set(world["seen"][uid])][:6]
    assert [g[0] for g in got] == want and all(g[1] == "profile:balanced" for g in got)
    # assigned to a cluster profile: that profile's ranking
    conn.execute("""SELECT reelscore.save_profile('rec_cluster', '{"rating": 1}'::jsonb)""")
    conn.execute("""INSERT INTO reelscore.user_profile_assignments (user_id, profile_id, source)
                    SELECT %s, id, 'cluster' FROM reelscore.weight_profiles WHERE name = 'rec_cluster'""", (uid,))
    got = conn.execute("SELECT movie_id, source FROM reelscore.recommend(%s, 3)", (uid,)).fetchall()
    top = [r[0] for r in conn.execute("SELECT movie_id FROM reelscore.top_movies('rec_cluster', 100)")]
    assert [g[0] for g in got] == [m for m in top if m not in set(world["seen"][uid])][:3]
    assert got[0][1] == "profile:rec_cluster"


def test_a_movie_without_ratings_is_reachable_through_its_metric_placement(conn, world):
    uid = world["users"][2]
    mid = conn.execute("INSERT INTO reelscore.movies (title) VALUES ('brand new') RETURNING id").fetchone()[0]
    v = world["U"][2].copy()
    v[-1] = 0.5
    conn.execute("""INSERT INTO reelscore.movie_factors (movie_id, model_id, factors, bias, n_ratings, source)
                    VALUES (%s, %s, %s, 0.5, 0, 'metrics')""", (mid, world["model"], vec(v * 3)))
    got = conn.execute("SELECT movie_id, source FROM reelscore.recommend(%s, 3)", (uid,)).fetchall()
    assert got[0] == (mid, "factors:metrics")
    conn.execute("DELETE FROM reelscore.movies WHERE id = %s", (mid,))


def test_recommend_errors_name_the_bad_value(conn, world):
    uid = world["users"][0]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="k must be between 1 and 1000, got 0"):
        conn.execute("SELECT * FROM reelscore.recommend(%s, 0)", (uid,))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="blend must be between 0 and 1, got 2"):
        conn.execute("SELECT * FROM reelscore.recommend(%s, 5, NULL, 2)", (uid,))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown user -5"):
        conn.execute("SELECT * FROM reelscore.recommend(-5, 5)")


def test_hnsw_index_serves_the_inner_product_order(conn, world):
    u = vec(world["U"][0])
    conn.execute("SET enable_seqscan = off")
    plan = "\n".join(r[0] for r in conn.execute(
        "EXPLAIN SELECT movie_id FROM reelscore.movie_factors ORDER BY factors <#> %s::vector LIMIT 10", (u,)))
    conn.execute("RESET enable_seqscan")
    assert "movie_factors_hnsw" in plan


def test_read_role_can_recommend(role_conn, world):
    r = role_conn("read")
    assert len(r.execute("SELECT * FROM reelscore.recommend(%s, 3)", (world["users"][1],)).fetchall()) == 3


def test_factors_run_end_to_end(db_url, world):
    """A planted rank-2 world: the run writes factors for every user and rated movie, places
    the unrated movies that have metrics, and recommend() agrees with the exact scan."""
    from ml import runs
    rng = np.random.default_rng(2)
    with psycopg.connect(db_url, autocommit=True) as c:
        users = [c.execute("INSERT INTO reelscore.users (username) VALUES (%s) RETURNING id", (f"f{k}",)).fetchone()[0]
                 for k in range(60)]
        movies = [r[0] for r in c.execute("SELECT id FROM reelscore.movies WHERE title LIKE 'rec %%' ORDER BY id")]
        P, Q = rng.normal(0, 1, (60, 2)), rng.normal(0, 1, (len(movies), 2))
        for a, uid in enumerate(users):
            for b in rng.choice(35, 20, replace=False):   # movies 35.. stay unrated
                r = float(np.clip(np.round(3.5 + P[a] @ Q[b] + rng.normal(0, 0.3)), 1, 5))
                c.execute("INSERT INTO reelscore.metric_feedback (user_id, movie_id, user_rating) VALUES (%s, %s, %s)",
                          (uid, movies[b], r))
    with psycopg.connect(db_url) as c:
        rep = runs.run_factors(c, cv=False, latency_users=10, als={"factors": 4, "iterations": 8})
    with psycopg.connect(db_url, autocommit=True) as c:
        n_users = c.execute("SELECT count(DISTINCT user_id) FROM reelscore.metric_feedback").fetchone()[0]
        assert c.execute("SELECT count(*) FROM reelscore.user_factors").fetchone()[0] == n_users
        src = dict(c.execute("SELECT source, count(*) FROM reelscore.movie_factors GROUP BY 1").fetchall())
        # rated movies from ratings; movies 40..59 have no metric data and no ratings: not placed
        rated = c.execute("SELECT count(DISTINCT movie_id) FROM reelscore.metric_feedback").fetchone()[0]
        assert src["ratings"] == rated
        assert src["metrics"] == 40 - len({m for m in movies[:40]} & {r[0] for r in c.execute(
            "SELECT DISTINCT movie_id FROM reelscore.metric_feedback")})
        m = c.execute("SELECT kind, active, metrics -> 'recommend' FROM reelscore.ml_models WHERE id = %s",
                      (rep["model_id"],)).fetchone()
        assert m[0] == "factors" and m[1] and m[2]["recall_vs_exact"] >= 0.9
        # the predicted rating is the stored vectors' inner product plus the user's bias
        uid, mid = users[0], movies[0]
        u, ub = c.execute("SELECT factors::real[], bias FROM reelscore.user_factors WHERE user_id = %s", (uid,)).fetchone()
        mv = c.execute("SELECT factors::real[] FROM reelscore.movie_factors WHERE movie_id = %s", (mid,)).fetchone()[0]
        assert c.execute("SELECT reelscore.predict_rating(%s, %s)", (uid, mid)).fetchone()[0] == \
            pytest.approx(min(5, max(1, ub + float(np.dot(u, mv)))), abs=1e-5)
