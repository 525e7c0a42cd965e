"""ML in the database: the MovieLens loader on a slice, taste features against numpy,
nearest-centroid assignment, A/B experiments (assignment, outcomes, analysis vs scipy),
and the weights/clusters runs end to end on a small planted data set."""
from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest
from scipy import stats

from reelscore.datasets import movielens

GENRES = list(movielens.GENRES)


# ---------------------------------------------------------------------------------------
# MovieLens loader
# ---------------------------------------------------------------------------------------

def _slice() -> movielens.MovieLens:
    d = movielens.MovieLens()
    d.users = [{"movielens_id": 1, "age": 24, "gender": "M", "occupation": "technician", "zip_code": "85711"},
               {"movielens_id": 2, "age": 53, "gender": "F", "occupation": "other", "zip_code": "94043"}]
    d.items = [{"movielens_id": 12, "title": "Usual Suspects, The", "year": 1995, "genres": ["Crime", "Thriller"]},
               {"movielens_id": 11, "title": "Seven (Se7en)", "year": 1995, "genres": ["Crime"]},
               {"movielens_id": 99, "title": "Nowhere Film, A", "year": 1996, "genres": ["Drama"]}]
    d.ratings = [(1, 12, 5.0, 881250949), (1, 99, 2.0, 881250950), (2, 11, 4.0, 891717742)]
    return d


def test_movielens_load_matches_films_and_is_idempotent(conn):
    conn.execute("""INSERT INTO reelscore.movies (title, release_date, genres)
                    VALUES ('The Usual Suspects', '1995-08-16', '{Thriller/Suspense}'),
                           ('Se7en', '1995-09-22', '{}'), ('Se7en', '2001-01-01', '{}')""")
    first = movielens.load(conn, _slice())
    assert first["films_matched_now"] == 2 and first["films_inserted_now"] == 1
    assert first["ratings_inserted_now"] == 3
    again = movielens.load(conn, _slice())
    assert again["films_matched_now"] == 0 and again["films_inserted_now"] == 0
    assert again["ratings_inserted_now"] == 0 and again["ratings"] == 3 and again["users"] == 2
    row = conn.execute("""SELECT genres, release_year FROM reelscore.movies WHERE movielens_id = 12""").fetchone()
    assert row == (["Crime", "Thriller", "Thriller/Suspense"], 1995)
    assert conn.execute("SELECT release_year FROM reelscore.movies WHERE movielens_id = 11").fetchone()[0] == 1995
    new = conn.execute("SELECT title, release_date::text FROM reelscore.movies WHERE movielens_id = 99").fetchone()
    assert new == ("A Nowhere Film", "1996-01-01")
    ts = conn.execute("""SELECT f.created_at, f.user_rating FROM reelscore.metric_feedback f
                           JOIN reelscore.users u ON u.id = f.user_id JOIN reelscore.movies m ON m.id = f.movie_id
                          WHERE u.movielens_id = 2 AND m.movielens_id = 11""").fetchone()
    assert ts == (datetime.fromtimestamp(891717742, tz=UTC), 4.0)


def test_title_normalization_pairs():
    assert movielens.normalize_title("Usual Suspects, The") == movielens.normalize_title("The Usual Suspects")
    assert movielens.normalize_title("Misérables, Les") == movielens.normalize_title("Les Miserables")
    assert "se7en" in movielens.title_variants("Seven (Se7en)")
    assert movielens.display_title("Fish Called Wanda, A") == "A Fish Called Wanda"


# ---------------------------------------------------------------------------------------
# A small planted world: movies with two metrics, users whose ratings follow them
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(db_url):
    """40 movies with imdb_rating and tmdb_budget, 60 users in two planted taste groups:
    group A rates by imdb_rating, group B by budget; 25 ratings each."""
    rng = np.random.default_rng(7)
    with psycopg.connect(db_url, autocommit=True) as c:
        ids = dict(c.execute("SELECT code, id FROM reelscore.metric_definitions").fetchall())
        movies = []
        for j in range(40):
            g = [GENRES[j % 5], GENRES[(j * 7) % 18]]
            mid = c.execute("""INSERT INTO reelscore.movies (title, release_date, genres)
                               VALUES (%s, '2000-01-01', %s) RETURNING id""", (f"planted {j}", g)).fetchone()[0]
            imdb = float(rng.uniform(2, 9.5))
            budget = float(np.exp(rng.uniform(np.log(1e6), np.log(3e8))))
            c.execute("INSERT INTO reelscore.metric_values (movie_id, metric_id, raw_value) VALUES (%s, %s, %s), (%s, %s, %s)",
                      (mid, ids["imdb_rating"], imdb, mid, ids["tmdb_budget"], budget))
            movies.append((mid, imdb, budget, g))
        c.execute("SELECT reelscore.refresh_features()")
        c.execute("SELECT * FROM reelscore.refresh_scores()")
        feats = dict(c.execute("SELECT movie_id, array[cat_rating, cat_financial] FROM reelscore.movie_features").fetchall())
        users, rows = [], []
        for k in range(60):
            grp = k % 2
            uid = c.execute("INSERT INTO reelscore.users (username) VALUES (%s) RETURNING id", (f"planted{k}",)).fetchone()[0]
            for j in rng.choice(40, 25, replace=False):
                mid = movies[j][0]
                x = feats[mid][0] if grp == 0 else feats[mid][1]
                rows.append((uid, mid, float(np.clip(np.round(1 + 4 * x + rng.normal(0, 0.3)), 1, 5))))
            users.append((uid, grp))
        with c.cursor() as cur:
            cur.executemany("INSERT INTO reelscore.metric_feedback (user_id, movie_id, user_rating) VALUES (%s, %s, %s)",
                            rows)
    return {"movies": movies, "users": users, "features": feats}


def test_taste_features_match_numpy(conn, world):
    names = conn.execute("SELECT reelscore.taste_feature_names()").fetchone()[0]
    uid = world["users"][0][0]
    got = conn.execute("SELECT n_ratings, features FROM reelscore.user_taste_features(5, %s)", (uid,)).fetchone()
    rows = conn.execute("""SELECT f.movie_id, f.user_rating, m.genres FROM reelscore.metric_feedback f
                             JOIN reelscore.movies m ON m.id = f.movie_id WHERE f.user_id = %s""", (uid,)).fetchall()
    r = np.array([x[1] for x in rows])
    cat_rating = np.array([world["features"][x[0]][0] for x in rows])
    cat_fin = np.array([world["features"][x[0]][1] for x in rows])
    # every movie's rating count over all users
    counts = dict(conn.execute("SELECT movie_id, count(*) FROM reelscore.metric_feedback GROUP BY movie_id").fetchall())
    means = dict(conn.execute("SELECT movie_id, avg(user_rating) FROM reelscore.metric_feedback GROUP BY movie_id").fetchall())
    f = dict(zip(names, got[1]))
    assert got[0] == 25
    assert f["follows_rating"] == pytest.approx(np.corrcoef(r, cat_rating)[0, 1], abs=1e-9)
    assert f["follows_financial"] == pytest.approx(np.corrcoef(r, cat_fin)[0, 1], abs=1e-9)
    assert f["follows_award"] == 0.0
    assert f["follows_consensus"] == pytest.approx(np.corrcoef(r, [float(means[x[0]]) for x in rows])[0, 1], abs=1e-9)
    assert f["mainstream"] == pytest.approx(np.mean([math.log(1 + counts[x[0]]) for x in rows]), abs=1e-9)
    assert f["activity"] == pytest.approx(math.log(25))
    assert f["sd_rating"] == pytest.approx(np.std(r, ddof=1))
    dev = r - r.mean()
    for g in ("Action", "Crime", "Western"):
        inside = np.array([g in x[2] for x in rows])
        assert f[f"genre:{g}"] == pytest.approx(dev[inside].sum() / (inside.sum() + 5), abs=1e-9)
    # users below the threshold get no row
    assert conn.execute("SELECT count(*) FROM reelscore.user_taste_features(26)").fetchone()[0] == 0


def test_weights_run_recovers_the_planted_mix_and_publishes(conn, world):
    from ml import runs
    with psycopg.connect(conn.info.dsn) as c:
        rep = runs.run_weights(c, seed=1, test_share=0.25, min_items=3)
    # half the users rate by the rating category, half by the financial one
    cw = rep["category_weights"]
    assert cw["rating"] == pytest.approx(0.5, abs=0.12) and cw["financial"] == pytest.approx(0.5, abs=0.12)
    assert cw["award"] == cw["cultural"] == cw["popularity"] == 0.0
    p = conn.execute("""SELECT rating_weight + award_weight + financial_weight + cultural_weight + popularity_weight,
                               ml_model_version, ml_model_accuracy, training_sample_size, training_date IS NOT NULL
                          FROM reelscore.weight_profiles WHERE name = 'ml_learned'""").fetchone()
    assert p[0] == pytest.approx(1.0) and p[1] == rep["version"] and p[4]
    assert p[2] == pytest.approx(rep["heldout_ndcg10"]["learned"]["mean_ndcg10"])
    assert p[3] == rep["train_ratings"] == 45 * 25
    m = conn.execute("SELECT kind, active, metrics, params FROM reelscore.ml_models WHERE version = %s",
                     (rep["version"],)).fetchone()
    assert m[0] == "weights" and m[1]
    assert set(m[2]["heldout_ndcg10"]) >= {"learned", "popularity", "random", "profile:balanced"}
    assert len(m[3]["heldout_users"]) == 15
    # the learned profile ranks held-out users' movies better than random order
    assert m[2]["heldout_ndcg10"]["learned"]["mean_ndcg10"] > m[2]["heldout_ndcg10"]["random"]["mean_ndcg10"]


def test_clusters_run_finds_the_planted_groups_and_assigns_in_sql(conn, world):
    from sklearn.metrics import adjusted_rand_score

    from ml import runs
    with psycopg.connect(conn.info.dsn) as c:
        rep = runs.run_clusters(c, seed=0, min_ratings=5, k_range=(2, 3))
    got = dict(conn.execute("""SELECT user_id, cluster_no FROM reelscore.user_cluster_assignments
                                WHERE model_id = %s""", (rep["model_id"],)).fetchall())
    truth = dict(world["users"])
    uids = sorted(truth)
    if rep["k"] == 2:
        assert adjusted_rand_score([truth[u] for u in uids], [got[u] for u in uids]) > 0.8
    # SQL nearest-centroid assignment reproduces the training assignment
    for uid in uids[:12]:
        row = conn.execute("SELECT cluster_no, distance FROM reelscore.assign_user_cluster(%s)", (uid,)).fetchone()
        assert row[0] == got[uid]
    # each cluster's profile is assigned to its users and resolves for them
    prof = conn.execute("""SELECT p.name FROM reelscore.user_profile_assignments a
                             JOIN reelscore.weight_profiles p ON p.id = a.profile_id
                            WHERE a.user_id = %s AND a.source = 'cluster'""", (uids[0],)).fetchone()[0]
    assert prof == f"ml_cluster_{got[uids[0]]}"
    assert conn.execute("SELECT reelscore.resolve_user_profile(%s)", (uids[0],)).fetchone()[0] == prof
    # a new user with enough ratings is assigned and recorded; one without is not
    new = conn.execute("INSERT INTO reelscore.users (username) VALUES ('newcomer') RETURNING id").fetchone()[0]
    assert conn.execute("SELECT reelscore.save_user_cluster(%s)", (new,)).fetchone()[0] is None
    for mid, imdb, budget, g in world["movies"][:10]:
        conn.execute("INSERT INTO reelscore.metric_feedback (user_id, movie_id, user_rating) VALUES (%s, %s, %s)",
                     (new, mid, float(np.clip(round(imdb / 2), 1, 5))))
    cno = conn.execute("SELECT reelscore.save_user_cluster(%s)", (new,)).fetchone()[0]
    assert cno is not None
    assert conn.execute("""SELECT cluster_no, source FROM reelscore.user_cluster_assignments
                            WHERE user_id = %s AND model_id = %s""", (new, rep["model_id"])).fetchone() == (cno, "assign")


def test_assign_user_cluster_is_the_nearest_standardized_centroid(conn, world):
    """A hand-made model: expected cluster from numpy distances."""
    names = conn.execute("SELECT reelscore.taste_feature_names()").fetchone()[0]
    d = len(names)
    rng = np.random.default_rng(3)
    mean, scale = rng.normal(0, 1, d), rng.uniform(0.5, 2, d)
    cents = rng.normal(0, 1, (4, d))
    conn.execute("UPDATE reelscore.ml_models SET active = false WHERE kind = 'clusters'")
    mid = conn.execute("""INSERT INTO reelscore.ml_models (kind, version, algorithm, params, active)
                          VALUES ('clusters', 'hand-made', 'test', %s::jsonb, true) RETURNING id""",
                       (json.dumps({"min_ratings": 5, "mean": mean.tolist(), "scale": scale.tolist()}),)).fetchone()[0]
    for c in range(4):
        conn.execute("""INSERT INTO reelscore.user_clusters (model_id, cluster_no, label, description, centroid,
                                                              centroid_raw, size)
                        VALUES (%s, %s, 'c', 'c', %s::real[]::vector, %s, 0)""",
                     (mid, c, cents[c].tolist(), cents[c].tolist()))
    for uid, _ in world["users"][:8]:
        f = np.array(conn.execute("SELECT features FROM reelscore.user_taste_features(5, %s)", (uid,)).fetchone()[0])
        dist = np.sqrt((((f - mean) / scale - cents) ** 2).sum(axis=1))
        got = conn.execute("SELECT cluster_no, distance FROM reelscore.assign_user_cluster(%s)", (uid,)).fetchone()
        assert got[0] == int(dist.argmin())
        assert got[1] == pytest.approx(dist.min(), rel=1e-5)


# ---------------------------------------------------------------------------------------
# A/B experiments
# ---------------------------------------------------------------------------------------

def test_ab_bucket_is_deterministic_and_uniform(conn):
    b = np.array([x[0] for x in conn.execute(
        "SELECT reelscore.ab_bucket('exp-a', u) FROM generate_series(1, 20000) u").fetchall()])
    b2 = np.array([x[0] for x in conn.execute(
        "SELECT reelscore.ab_bucket('exp-a', u) FROM generate_series(1, 20000) u").fetchall()])
    assert (b == b2).all() and b.min() >= 0 and b.max() < 1
    counts = np.histogram(b, bins=10, range=(0, 1))[0]
    assert stats.chisquare(counts).pvalue > 0.001
    other = np.array([x[0] for x in conn.execute(
        "SELECT reelscore.ab_bucket('exp-b', u) FROM generate_series(1, 20000) u").fetchall()])
    assert abs(np.corrcoef(b, other)[0, 1]) < 0.05  # another salt reshuffles users


def _experiment(conn, name, planned_sd=1.0, mde=0.5, split=0.5):
    conn.execute("""SELECT reelscore.create_experiment(%s, 'balanced', 'crowd_pleaser', 'rating', 'mean', %s, %s, %s,
                           0.05, 0.8, '{"liked": "proportion"}'::jsonb)""", (name, mde, planned_sd, split))
    return conn.execute("SELECT planned_control, planned_experiment FROM reelscore.experiments WHERE name = %s",
                        (name,)).fetchone()


def test_experiment_plan_assignment_outcomes_and_analysis(conn):
    planned = _experiment(conn, "exp-welch", planned_sd=1.0, mde=0.5)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert planned == (math.ceil(2 * (z / 0.5) ** 2), math.ceil(2 * (z / 0.5) ** 2))
    users = [conn.execute("INSERT INTO reelscore.users (username) VALUES (%s) RETURNING id", (f"ab{k}",)).fetchone()[0]
             for k in range(160)]
    rng = np.random.default_rng(5)
    values = {"control": [], "experiment": []}
    for uid in users:
        arm = conn.execute("SELECT reelscore.assign_experiment('exp-welch', %s)", (uid,)).fetchone()[0]
        assert arm == conn.execute("SELECT reelscore.experiment_arm('exp-welch', %s)", (uid,)).fetchone()[0]
        vals = rng.normal(3.4 if arm == "control" else 3.8, 1.0, 2)
        for v in vals:
            conn.execute("SELECT reelscore.record_outcome('exp-welch', %s, 'rating', %s)", (uid, float(v)))
        values[arm].append(vals.mean())
    res = conn.execute("SELECT reelscore.analyze_experiment('exp-welch')").fetchone()[0]
    ref = stats.ttest_ind(values["experiment"], values["control"], equal_var=False)
    assert res["result"]["t"] == pytest.approx(ref.statistic, rel=1e-9)
    assert res["result"]["p_value"] == pytest.approx(ref.pvalue, rel=1e-6)
    lo, hi = ref.confidence_interval(0.95)
    assert res["result"]["ci"] == pytest.approx([lo, hi], rel=1e-7)
    assert res["n_control"] == len(values["control"]) and res["n_experiment"] == len(values["experiment"])
    if min(res["n_control"], res["n_experiment"]) < planned[0]:
        assert res["decision"] == "insufficient_sample" and res["winner"] is None
    else:
        assert res["decision"] in ("experiment_wins", "control_wins", "no_significant_difference")
    # the assignment is sticky even if the split changed afterwards
    conn.execute("UPDATE reelscore.experiments SET traffic_split = 0.01 WHERE name = 'exp-welch'")
    assert conn.execute("SELECT count(*) FROM reelscore.experiment_assignments a WHERE a.arm <> "
                        "reelscore.experiment_arm('exp-welch', a.user_id)").fetchone()[0] == 0


def test_proportion_analysis_matches_the_two_proportion_z_test(conn):
    _experiment(conn, "exp-prop", planned_sd=1.0, mde=2.0)   # small planned size
    users = [conn.execute("INSERT INTO reelscore.users (username) VALUES (%s) RETURNING id", (f"pz{k}",)).fetchone()[0]
             for k in range(120)]
    rng = np.random.default_rng(9)
    hits = {"control": [0, 0], "experiment": [0, 0]}
    for uid in users:
        arm = conn.execute("SELECT reelscore.experiment_arm('exp-prop', %s)", (uid,)).fetchone()[0]
        v = int(rng.uniform() < (0.3 if arm == "control" else 0.5))
        conn.execute("SELECT reelscore.record_outcome('exp-prop', %s, 'liked', %s)", (uid, float(v)))
        hits[arm][0] += v
        hits[arm][1] += 1
    res = conn.execute("SELECT reelscore.analyze_experiment('exp-prop', 'liked')").fetchone()[0]
    (x1, n1), (x2, n2) = hits["control"], hits["experiment"]
    pool = (x1 + x2) / (n1 + n2)
    zz = (x2 / n2 - x1 / n1) / math.sqrt(pool * (1 - pool) * (1 / n1 + 1 / n2))
    assert res["test"] == "two_proportion_z"
    assert res["result"]["z"] == pytest.approx(zz, rel=1e-9)
    assert res["result"]["p_value"] == pytest.approx(2 * stats.norm.sf(abs(zz)), rel=1e-9)


def test_experiment_errors_name_the_bad_value(conn):
    _experiment(conn, "exp-err")
    uid = conn.execute("INSERT INTO reelscore.users (username) VALUES ('err1') RETURNING id").fetchone()[0]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="does not measure clicks"):
        conn.execute("SELECT reelscore.record_outcome('exp-err', %s, 'clicks', 1)", (uid,))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="must be 0 or 1, got 0.5"):
        conn.execute("SELECT reelscore.record_outcome('exp-err', %s, 'liked', 0.5)", (uid,))
    with pytest.raises(psycopg.errors.NoDataFound, match="unknown experiment nope"):
        conn.execute("SELECT reelscore.assign_experiment('nope', %s)", (uid,))
    with pytest.raises(psycopg.errors.NoDataFound, match="unknown experiment profile nope"):
        conn.execute("""SELECT reelscore.create_experiment('exp-x', 'balanced', 'nope', 'm', 'mean', 0.1, 1)""")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("""SELECT reelscore.create_experiment('exp-y', 'balanced', 'crowd_pleaser', 'm', 'median', 0.1, 1)""")


def test_roles_can_use_experiments_and_clusters(conn, role_conn, world):
    _experiment(conn, "exp-roles")
    uid = world["users"][3][0]
    w = role_conn("write")
    arm = w.execute("SELECT reelscore.assign_experiment('exp-roles', %s)", (uid,)).fetchone()[0]
    assert arm in ("control", "experiment")
    w.execute("SELECT reelscore.record_outcome('exp-roles', %s, 'rating', 4)", (uid,))
    r = role_conn("read")
    assert r.execute("SELECT reelscore.analyze_experiment('exp-roles')").fetchone()[0]["decision"] == "insufficient_sample"
    r.execute("SELECT * FROM reelscore.assign_user_cluster(%s)", (uid,)).fetchall()
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        r.execute("SELECT reelscore.record_outcome('exp-roles', %s, 'rating', 4)", (uid,))
