"""ml/ maths on synthetic data with planted structure (no database)."""
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, ndcg_score

from ml import evaluate, features, train


def planted_feedback(weights, n_users=300, n_movies=400, per_user=40, noise=0.4, seed=0):
    """Ratings = user offset + 3 * (planted weights . movie values) + noise."""
    rng = np.random.default_rng(seed)
    M = rng.uniform(0, 1, (n_movies, len(weights)))
    users, movies = [], []
    for u in range(n_users):
        users += [u] * per_user
        movies += list(rng.choice(n_movies, per_user, replace=False))
    users, movies = np.array(users), np.array(movies)
    offset = rng.normal(3.5, 0.5, n_users)
    y = offset[users] + 3.0 * M[movies] @ np.asarray(weights) + rng.normal(0, noise, len(users))
    return M[movies], y, users


def test_simplex_weights_recover_planted_weights():
    planted = np.array([0.5, 0.0, 0.3, 0.0, 0.2])
    X, y, users = planted_feedback(planted)
    fit = train.fit_simplex_weights(X, y, users)
    assert fit.weights.sum() == pytest.approx(1.0)
    assert (fit.weights >= 0).all()
    np.testing.assert_allclose(fit.weights, planted, atol=0.03)
    assert fit.scale == pytest.approx(3.0, rel=0.05)


def test_simplex_weights_ignore_a_negative_effect():
    """A metric that lowers ratings gets weight 0 (non-negativity), the others share 1."""
    rng = np.random.default_rng(3)
    X = rng.uniform(0, 1, (5000, 3))
    users = np.repeat(np.arange(500), 10)
    y = 2 * X[:, 0] + 2 * X[:, 1] - 1.5 * X[:, 2] + rng.normal(0, 0.3, 5000)
    w = train.fit_simplex_weights(X, y, users).weights
    assert w[2] == 0.0
    np.testing.assert_allclose(w[:2], [0.5, 0.5], atol=0.04)


def test_user_offsets_do_not_leak_into_weights():
    """Users who rate everything high and also watch high-X movies: without per-user
    centering the weight of X would absorb the offset; with it the planted zero stays ~0."""
    rng = np.random.default_rng(5)
    n_users, per = 400, 30
    users = np.repeat(np.arange(n_users), per)
    generous = rng.uniform(0, 1, n_users)
    x0 = np.clip(generous[users] + rng.normal(0, 0.2, len(users)), 0, 1)   # confounded
    x1 = rng.uniform(0, 1, len(users))
    y = 2 + 2 * generous[users] + 2 * x1 + rng.normal(0, 0.3, len(users))
    w = train.fit_simplex_weights(np.c_[x0, x1], y, users).weights
    assert w[1] > 0.95


def test_profile_weights_from_metric_coefficients():
    cat_w, metric_w = features.profile_weights(
        np.array([0.2, 0.6, 0.2, 0.0]), ["imdb_rating", "rt_tomatometer", "tmdb_budget", "tmdb_revenue"],
        ["rating", "rating", "financial", "financial"], ("rating", "award", "financial", "cultural", "popularity"))
    assert cat_w == {"rating": 0.8, "award": 0.0, "financial": 0.2, "cultural": 0.0, "popularity": 0.0}
    assert metric_w == pytest.approx({"imdb_rating": 0.25, "rt_tomatometer": 0.75, "tmdb_budget": 1.0,
                                      "tmdb_revenue": 0.0})
    with pytest.raises(ValueError):
        features.profile_weights(np.zeros(2), ["a", "b"], ["rating", "rating"], ("rating",))


def test_clusters_recover_planted_groups_and_pick_k_in_range():
    rng = np.random.default_rng(1)
    k_true, dim = 5, 12
    centers = rng.normal(0, 4, (k_true, dim))
    labels = rng.integers(0, k_true, 600)
    F = centers[labels] + rng.normal(0, 1, (600, dim))
    F[:, 3] *= 50  # one feature on another scale: standardization must handle it
    cl = train.fit_clusters(F, (4, 6), seed=0, n_init=4)
    assert cl.k == k_true
    assert set(cl.silhouette) == {4, 5, 6}
    assert adjusted_rand_score(labels, cl.labels) > 0.95
    # nearest-centroid assignment of the training points reproduces k-means' labels
    assert (train.assign_nearest(F, cl) == cl.labels).mean() > 0.99


def test_biased_als_recovers_a_planted_low_rank_matrix():
    rng = np.random.default_rng(2)
    nu, ni, k = 200, 150, 3
    P, Q = rng.normal(0, 0.7, (nu, k)), rng.normal(0, 0.7, (ni, k))
    bu, bi = rng.normal(0, 0.3, nu), rng.normal(0, 0.3, ni)
    truth = 3.5 + bu[:, None] + bi[None, :] + P @ Q.T
    mask = rng.uniform(size=(nu, ni)) < 0.3
    u, i = np.nonzero(mask)
    r = truth[u, i] + rng.normal(0, 0.1, len(u))
    tu, ti = np.nonzero(~mask)
    als = train.BiasedALS(factors=3, reg=0.02, reg_bias=0.01, iterations=25, seed=0).fit(u, i, r, nu, ni)
    err = evaluate.rmse(als.predict(tu, ti, clip=None), truth[tu, ti])
    base = train.BaselineOnly(reg_user=5, reg_item=5).fit(u, i, r, nu, ni)
    err_base = evaluate.rmse(base.predict(tu, ti, clip=None), truth[tu, ti])
    assert err < 0.2 < err_base


def test_ndcg_matches_sklearn():
    rng = np.random.default_rng(4)
    for _ in range(20):
        n = rng.integers(3, 30)
        rel = rng.integers(1, 6, n).astype(float)
        s = rng.normal(size=n)
        ref = ndcg_score([2 ** rel - 1], [s], k=10)
        assert evaluate.ndcg_at_k(s, rel, 10) == pytest.approx(ref, rel=1e-12)


def test_topk_metrics_by_hand():
    p, r, n = evaluate.topk_metrics(np.array([5, 1, 9, 7]), {1, 7, 42}, k=2)
    assert (p, r) == (0.5, 1 / 3)
    assert n == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))


def test_user_split_is_seeded_and_disjoint():
    users = np.repeat(np.arange(100), 3)
    a, b = features.user_split(users, 0.2, seed=9)
    a2, b2 = features.user_split(users, 0.2, seed=9)
    assert len(b) == 20 and not set(a) & set(b) and (a == a2).all() and (b == b2).all()


def test_weight_design_drops_columns_without_variation():
    """A boolean list metric present only as 0.8 is constant after mean imputation: it must
    not enter the fit (float noise would buy it a huge coefficient)."""
    from ml.dataset import MovieMetrics, Ratings
    rng = np.random.default_rng(8)
    n = 50
    vals = np.full((n, 32), np.nan)
    vals[:, 0] = rng.uniform(0, 1, n)                      # a real metric
    vals[rng.choice(n, 20, replace=False), 1] = 0.8        # 'on the list'
    codes = ["m0", "listed"] + [None] * 30
    mm = MovieMetrics(np.arange(n), vals, np.full((n, 5), np.nan), codes, ["rating", "cultural"] + [None] * 30)
    users = np.repeat(np.arange(20), 10)
    movies = rng.integers(0, n, 200)
    r = Ratings(users, movies, 1 + 4 * vals[movies, 0], np.zeros(200))
    d = features.weight_design(r, mm, min_coverage=0.1)
    assert d.codes == ["m0"] and d.X.shape == (200, 1)
