"""The training runs behind `reelscore ml weights|clusters|factors|abtest|all`: read
(dataset), build features (features), fit (train), measure (evaluate), write rows
(publish). Each run returns a JSON-able report; every figure in it is also stored in the
model registry row (reelscore.ml_models.metrics)."""
from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np

from ml import dataset, evaluate, features, publish, train
from ml.dataset import CATEGORIES

LEARNED_PROFILE = "ml_learned"


class MLError(RuntimeError):
    """A run cannot proceed (missing data or model); the message says what to do."""


def _end_reads(conn) -> None:
    """Commit the implicit read transaction, so the next `conn.transaction()` is a real
    transaction (not a savepoint that a later rollback could undo)."""
    if not conn.autocommit:
        conn.commit()


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _adhoc_scores(conn, weights: dict, movie_ids: np.ndarray) -> np.ndarray:
    """Scores under unsaved weights, from the SQL scoring API (score_movie_adhoc)."""
    rows = conn.execute(
        """SELECT t.movie_id, reelscore.score_movie_adhoc(t.movie_id, %s::jsonb)
             FROM unnest(%s::bigint[]) AS t(movie_id)""",
        (publish._json(weights), [int(m) for m in movie_ids])).fetchall()
    got = dict(rows)
    return np.array([np.nan if got.get(int(m)) is None else got[int(m)] for m in movie_ids], dtype=float)


def _all_metric_codes(conn) -> list[str]:
    return [r[0] for r in conn.execute("SELECT code FROM reelscore.metric_definitions WHERE active ORDER BY slot")]


def _fit_profile(design: features.WeightDesign, mask: np.ndarray, all_codes: list[str]):
    fit = train.fit_simplex_weights(design.X[mask], design.y[mask], design.users[mask])
    cat_w, learned = features.profile_weights(fit.weights * fit.scale, design.codes, design.categories, CATEGORIES)
    # every other metric weighs 0, so the served score uses exactly the learned metrics
    metric_w = {c: float(learned.get(c, 0.0)) for c in all_codes}
    return fit, cat_w, metric_w


# ---------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------

def run_weights(conn, seed: int = 42, test_share: float = 0.2, min_coverage: float = 0.2,
                min_items: int = 5) -> dict:
    """Learn category and metric weights from MovieLens ratings of films with metric data
    (NNLS within users, weights >= 0 summing to 1) on training users; measure NDCG@10 per
    held-out user of the learned weights, every system profile, popularity and random
    order; publish the registry row and the profile `ml_learned`."""
    r = dataset.ratings(conn)
    mm = dataset.movie_metrics(conn)
    design = features.weight_design(r, mm, min_coverage)
    if len(design.y) < 200 or not design.codes:
        raise MLError(f"only {len(design.y)} ratings of movies with metric data: load MovieLens "
                      "(reelscore ml load-movielens) and the films' metrics, then refresh features")
    train_users, test_users = features.user_split(design.users, test_share, seed)
    tr = np.isin(design.users, train_users)
    te = ~tr
    all_codes = _all_metric_codes(conn)
    fit, cat_w, metric_w = _fit_profile(design, tr, all_codes)

    # held-out ranking: each held-out user's rated movies (with metric data), ranked per method
    movies_te = np.unique(design.movies[te])
    pos = {int(m): j for j, m in enumerate(movies_te)}
    idx = np.array([pos[int(m)] for m in design.movies[te]])
    users_te, rel_te = design.users[te], design.y[te]
    learned_scores = _adhoc_scores(conn, {"categories": cat_w, "metrics": metric_w}, movies_te)
    methods: dict[str, np.ndarray] = {"learned": learned_scores[idx]}
    for name in dataset.system_profiles(conn):
        methods[f"profile:{name}"] = dataset.profile_scores(conn, name, movies_te)[idx]
    train_all = np.isin(r.user_id, train_users) | ~np.isin(r.user_id, test_users)
    counts = {int(m): int(c) for m, c in zip(*np.unique(r.movie_id[train_all], return_counts=True))}
    methods["popularity"] = np.array([counts.get(int(m), 0) for m in design.movies[te]], dtype=float)
    methods["random"] = np.random.default_rng(seed).permutation(len(users_te)).astype(float)
    per_user = {k: evaluate.per_user_ndcg(users_te, v, rel_te, 10, min_items) for k, v in methods.items()}
    summary = {k: {"mean_ndcg10": float(np.mean(list(v.values()))) if v else None, "users": len(v)}
               for k, v in per_user.items()}
    comparisons = {k: evaluate.paired_summary(per_user[k], per_user["learned"])
                   for k in per_user if k != "learned"}
    accuracy = summary["learned"]["mean_ndcg10"]

    version = publish.new_version("nnls")
    params = {"seed": seed, "test_share": test_share, "min_coverage": min_coverage, "min_items": min_items,
              "columns": design.codes, "column_categories": design.categories,
              "impute": design.impute, "coverage": design.coverage,
              "coefficients": fit.weights * fit.scale, "scale": fit.scale,
              "category_weights": cat_w, "metric_weights": {c: w for c, w in metric_w.items() if w > 0},
              "heldout_users": [int(u) for u in test_users]}
    metrics = {"heldout_ndcg10": summary, "learned_minus_other": comparisons,
               "train_rmse_within_user": fit.train_rmse, "train_ratings": int(tr.sum()),
               "train_users": len(train_users), "heldout_ratings": int(te.sum()),
               "heldout_users": len(test_users), "gain": "2^rating - 1", "k": 10}
    _end_reads(conn)
    with conn.transaction():
        model_id = publish.register_model(conn, "weights", version, "nnls-within-user", params, metrics,
                                          int(tr.sum()))
        desc = ("Learned from MovieLens ratings (non-negative least squares within users, weights sum to 1); "
                f"held-out NDCG@10 {accuracy:.4f} over {summary['learned']['users']} users")
        pver = publish.save_profile(conn, LEARNED_PROFILE, cat_w, metric_w, desc,
                                    ml={"model_version": version, "accuracy": accuracy,
                                        "training_date": _now(), "sample_size": int(tr.sum())})
    return {"model_id": model_id, "version": version, "profile": LEARNED_PROFILE, "profile_version": pver,
            "category_weights": cat_w, "metric_weights": params["metric_weights"],
            "heldout_ndcg10": summary, "learned_minus_other": comparisons,
            "train_ratings": int(tr.sum()), "heldout_users": len(test_users)}


# ---------------------------------------------------------------------------------------
# Clusters
# ---------------------------------------------------------------------------------------

def run_clusters(conn, seed: int = 42, min_ratings: int = 20, k_range: tuple[int, int] = (4, 6),
                 min_coverage: float = 0.2) -> dict:
    """k-means on the SQL taste features (k in k_range by silhouette), words for each
    cluster, a learned profile per cluster (ml_cluster_<n>), assignments as rows."""
    ids, counts, F, names = dataset.taste_features(conn, min_ratings)
    if len(ids) < 10 * k_range[1]:
        raise MLError(f"only {len(ids)} users with {min_ratings}+ ratings: load MovieLens first")
    cl = train.fit_clusters(F, k_range, seed)
    Z = (F - cl.mean) / cl.scale
    dist = np.sqrt(((Z - cl.centroids[cl.labels]) ** 2).sum(axis=1))
    overall = F.mean(axis=0)
    r = dataset.ratings(conn)
    mm = dataset.movie_metrics(conn)
    design = features.weight_design(r, mm, min_coverage)
    all_codes = _all_metric_codes(conn)
    version = publish.new_version("kmeans")
    clusters = []
    labels_used: dict[str, int] = {}
    for c in range(cl.k):
        members = ids[cl.labels == c]
        raw = F[cl.labels == c].mean(axis=0)
        label, desc = features.describe_cluster(cl.centroids[c], raw, overall, names)
        labels_used[label] = labels_used.get(label, 0) + 1
        if labels_used[label] > 1:
            label = f"{label} ({labels_used[label]})"
        row = {"cluster_no": c, "label": label, "description": desc, "centroid": cl.centroids[c],
               "centroid_raw": raw, "size": len(members),
               "stats": {"median_ratings": float(np.median(counts[cl.labels == c]))}}
        mask = np.isin(design.users, members)
        if mask.sum() >= 200:
            try:
                fit, cat_w, metric_w = _fit_profile(design, mask, all_codes)
                row.update(profile=f"ml_cluster_{c}", category_weights=cat_w, metric_weights=metric_w)
                row["stats"].update(category_weights=cat_w, train_ratings=int(mask.sum()),
                                    train_rmse_within_user=fit.train_rmse)
            except ValueError:
                pass
        clusters.append(row)
    params = {"seed": seed, "min_ratings": min_ratings, "k_range": list(k_range),
              "criterion": "highest mean silhouette coefficient on standardized features",
              "feature_names": names, "mean": cl.mean, "scale": cl.scale, "n_init": 20}
    metrics = {"k": cl.k, "silhouette": {str(k): v for k, v in cl.silhouette.items()},
               "inertia": {str(k): v for k, v in cl.inertia.items()},
               "sizes": [c["size"] for c in clusters], "users": len(ids)}
    _end_reads(conn)
    with conn.transaction():
        model_id = publish.register_model(conn, "clusters", version, "kmeans", params, metrics, len(ids))
        for c in clusters:
            if "profile" in c:
                publish.save_profile(
                    conn, c["profile"], c["category_weights"], c["metric_weights"],
                    f"Learned for taste cluster {c['cluster_no']} ({c['label']}) of {version}",
                    ml={"model_version": version, "accuracy": None, "training_date": _now(),
                        "sample_size": c["stats"]["train_ratings"]})
        publish.publish_clusters(conn, model_id, clusters,
                                 [(u, l, d) for u, l, d in zip(ids, cl.labels, dist)], version)
    return {"model_id": model_id, "version": version, "k": cl.k, "silhouette": metrics["silhouette"],
            "clusters": [{k: c[k] for k in ("cluster_no", "label", "description", "size")}
                         | {"profile": c.get("profile"), "category_weights": c.get("category_weights")}
                         for c in clusters]}


# ---------------------------------------------------------------------------------------
# Factors (collaborative filtering)
# ---------------------------------------------------------------------------------------

# movie_factors.factors is vector(33): up to 31 factors (zero-padded), one component that
# gives every movie vector the same norm (user side 0, so inner products are unchanged),
# then the bias. Equal norms turn the inner-product search into a metric one (Bachrach et
# al. 2014): HNSW recall on raw MF vectors was 0.95 here, 1.0 with the extra component.
FACTOR_SLOTS = 31
ALS_DEFAULTS = {"factors": 31, "reg": 0.15, "reg_bias": 0.01, "iterations": 15, "bias_prior": 5.0}


def _topk_eval(scores: np.ndarray, seen: list[set], relevant: list[set], k: int = 10) -> dict:
    """Mean precision/recall/NDCG@k over users with relevant items; scores (users, items)."""
    p, rcl, n = [], [], []
    for u in range(scores.shape[0]):
        if not relevant[u]:
            continue
        s = scores[u].copy()
        if seen[u]:
            s[list(seen[u])] = -np.inf
        top = np.argpartition(-s, k)[:k]
        top = top[np.lexsort((top, -s[top]))]
        a, b, c = evaluate.topk_metrics(top, relevant[u], k)
        p.append(a)
        rcl.append(b)
        n.append(c)
    return {"precision@10": float(np.mean(p)), "recall@10": float(np.mean(rcl)),
            "ndcg@10": float(np.mean(n)), "users": len(p)}


def cross_validate(r: dataset.Ratings, profile_scores: np.ndarray | None = None, folds: int = 5,
                   seed: int = 42, als: dict | None = None, blend: float = 0.3) -> dict:
    """5-fold CV on the ratings (seeded permutation of rows ordered by user, movie):
    RMSE/MAE of global mean, baseline-only and biased ALS; top-10 ranking of ALS,
    popularity, the profile scores alone and the blend, against held-out ratings >= 4."""
    als = {**ALS_DEFAULTS, **(als or {})}
    uids, u = np.unique(r.user_id, return_inverse=True)
    mids, i = np.unique(r.movie_id, return_inverse=True)
    nu, ni = len(uids), len(mids)
    y = r.rating
    parts = evaluate.kfold(len(y), folds, seed)
    res: dict[str, dict[str, list]] = {}

    def add(model, key, val):
        res.setdefault(model, {}).setdefault(key, []).append(val)

    for f in range(folds):
        te = parts[f]
        tr = np.concatenate([parts[g] for g in range(folds) if g != f])
        models = {"global_mean": train.GlobalMean(),
                  "baseline_only": train.BaselineOnly(),
                  "biased_als": train.BiasedALS(seed=seed, **als)}
        for name, m in models.items():
            m.fit(u[tr], i[tr], y[tr], nu, ni)
            pred = m.predict(u[te], i[te])
            add(name, "rmse", evaluate.rmse(pred, y[te]))
            add(name, "mae", evaluate.mae(pred, y[te]))
        m = models["biased_als"]
        seen = [set() for _ in range(nu)]
        for a, b in zip(u[tr], i[tr]):
            seen[a].add(b)
        relevant = [set() for _ in range(nu)]
        for a, b, rr in zip(u[te], i[te], y[te]):
            if rr >= 4:
                relevant[a].add(b)
        full = m.mu + m.bu[:, None] + m.bi[None, :] + m.P @ m.Q.T
        pop = np.bincount(i[tr], minlength=ni).astype(float)
        rankers = {"biased_als": full, "popularity": np.tile(pop, (nu, 1))}
        if profile_scores is not None:
            ps = np.where(np.isnan(profile_scores), -1.0, profile_scores)
            rankers["profile_only"] = np.tile(ps, (nu, 1))
            pred01 = (np.clip(full, 1, 5) - 1) / 4
            rankers[f"blend_{blend:g}"] = (1 - blend) * pred01 + blend * np.where(np.isnan(profile_scores), 0, profile_scores)[None, :]
        for name, sc in rankers.items():
            for key, val in _topk_eval(sc, seen, relevant).items():
                add("top10:" + name, key, val)
    out = {}
    for model, d in res.items():
        out[model] = {k: {"mean": float(np.mean(v)), "folds": [float(x) for x in v]} for k, v in d.items()}
    return out


def place_cold_movies(mm: dataset.MovieMetrics, rated_ids: np.ndarray, item_vecs: np.ndarray,
                      min_ratings_mask: np.ndarray, alpha: float = 1.0):
    """Ridge map from a movie's metric vector (normalized values, 0 when missing, plus
    presence flags) to its [q_i, b_i]; fitted on rated movies with metric data, applied to
    movies with metric data but no ratings. Returns (fitted model, feature function)."""
    from sklearn.linear_model import Ridge

    def feats(rows: np.ndarray) -> np.ndarray:
        V = mm.values[rows]
        return np.c_[np.nan_to_num(V, nan=0.0), (~np.isnan(V)).astype(float)]

    pos = {int(m): j for j, m in enumerate(mm.movie_id)}
    have = np.array([pos.get(int(m), -1) for m in rated_ids])
    ok = (have >= 0) & min_ratings_mask
    model = Ridge(alpha=alpha).fit(feats(have[ok]), item_vecs[ok])
    return model, feats, ok, have


def equal_norm(rows: list[tuple]) -> list[tuple]:
    """Insert, before the bias, the component sqrt(M^2 - |v|^2) that gives every movie
    vector v = [q_i, b_i] the norm M (the largest)."""
    norms = np.array([np.linalg.norm(r[1]) for r in rows])
    big = float(norms.max()) if len(rows) else 0.0
    out = []
    for r, nrm in zip(rows, norms):
        v = np.asarray(r[1], dtype=float)
        out.append((r[0], np.r_[v[:-1], np.sqrt(max(big * big - nrm * nrm, 0.0)), v[-1]], *r[2:]))
    return out


def run_factors(conn, seed: int = 42, folds: int = 5, cv: bool = True, als: dict | None = None,
                latency_users: int = 200) -> dict:
    """Biased ALS on every rating: 5-fold CV figures (when cv), the final model's factors
    written as vectors (movies without ratings placed from their metrics), then recommend()
    measured in SQL (p50/p95 and agreement of the HNSW path with the exact scan)."""
    als = {**ALS_DEFAULTS, **(als or {})}
    r = dataset.ratings(conn)
    if len(r) < 1000:
        raise MLError(f"only {len(r)} ratings: load MovieLens first (reelscore ml load-movielens)")
    mm = dataset.movie_metrics(conn)
    uids, u = np.unique(r.user_id, return_inverse=True)
    mids, i = np.unique(r.movie_id, return_inverse=True)
    metrics: dict = {}
    if cv:
        balanced = dataset.profile_scores(conn, "balanced", mids) if "balanced" in dataset.system_profiles(conn) else None
        t0 = time.time()
        metrics["cv"] = cross_validate(r, balanced, folds, seed, als)
        metrics["cv_seconds"] = round(time.time() - t0, 1)
    if als["factors"] > FACTOR_SLOTS:
        raise MLError(f"at most {FACTOR_SLOTS} factors fit the vector(33) columns, got {als['factors']}")
    model = train.BiasedALS(seed=seed, **als).fit(u, i, r.rating, len(uids), len(mids))
    pad = np.zeros((1, FACTOR_SLOTS - als["factors"]))
    item_vecs = np.c_[model.Q, np.repeat(pad, len(mids), axis=0), model.bi]   # zero-padded to 31 + bias
    counts = np.bincount(i, minlength=len(mids))

    # cold movies: a ridge map from metric vectors, checked on 10% of rated movies held out
    cold_report = {}
    movies_rows = [(int(m), item_vecs[j], float(model.bi[j]), int(counts[j]), "ratings") for j, m in enumerate(mids)]
    if len(mm.movie_id):
        ridge, feats, ok, have = place_cold_movies(mm, mids, item_vecs, counts >= 5)
        cand = np.flatnonzero(ok)
        rng = np.random.default_rng(seed)
        hold = rng.choice(cand, size=max(1, len(cand) // 10), replace=False)
        keep = np.setdiff1d(cand, hold)
        from sklearn.linear_model import Ridge
        check = Ridge(alpha=1.0).fit(feats(have[keep]), item_vecs[keep])
        placed = check.predict(feats(have[hold]))
        in_hold = np.isin(i, hold)
        hu, hi_ = u[in_hold], i[in_hold]
        col = {int(h): j for j, h in enumerate(hold)}
        pv = np.array([placed[col[int(x)]] for x in hi_])
        pred_placed = np.clip(model.mu + model.bu[hu] + pv[:, -1]
                              + np.einsum("ij,ij->i", model.P[hu], pv[:, :als["factors"]]), 1, 5)
        pred_nothing = np.clip(model.mu + model.bu[hu], 1, 5)
        cold_report = {"heldout_movies": len(hold), "ratings": int(in_hold.sum()),
                       "rmse_placed_by_metrics": evaluate.rmse(pred_placed, r.rating[in_hold]),
                       "rmse_user_mean_only": evaluate.rmse(pred_nothing, r.rating[in_hold])}
        rated = {int(m) for m in mids}
        cold_ids = [j for j, m in enumerate(mm.movie_id) if int(m) not in rated]
        if cold_ids:
            vecs = ridge.predict(feats(np.array(cold_ids)))
            movies_rows += [(int(mm.movie_id[j]), v, float(v[-1]), 0, "metrics") for j, v in zip(cold_ids, vecs)]
        cold_report["movies_placed"] = len(cold_ids)
    metrics["cold_movies"] = cold_report
    movies_rows = equal_norm(movies_rows)
    users_rows = [(int(x), np.r_[model.P[j], pad[0], 0.0, 1.0], model.mu + float(model.bu[j]), int(model.user_counts[j]))
                  for j, x in enumerate(uids)]
    version = publish.new_version("als")
    params = {**als, "seed": seed, "folds": folds, "mu": model.mu, "users": len(uids), "movies": len(mids),
              "layout": "movie [q_i (31, zero-padded), sqrt(M^2 - |q_i, b_i|^2), b_i], user [p_u, 0, 1]; "
                        "rating = (mu + b_u) + <user, movie>",
              "relevant_threshold": 4, "blend_formula": "(1-a)*(clip(pred,1,5)-1)/4 + a*profile_score"}
    _end_reads(conn)
    with conn.transaction():
        model_id = publish.register_model(conn, "factors", version, "biased-als", params, metrics, len(r))
        publish.publish_factors(conn, model_id, users_rows, movies_rows)
    rec = measure_recommend(conn, uids, latency_users, seed) if latency_users else {}
    if rec:
        metrics["recommend"] = rec
        with conn.transaction():
            conn.execute("UPDATE reelscore.ml_models SET metrics = metrics || %s::jsonb WHERE id = %s",
                         (publish._json({"recommend": rec}), model_id))
    return {"model_id": model_id, "version": version, **metrics}


def measure_recommend(conn, user_ids: np.ndarray, n_users: int = 200, seed: int = 42, k: int = 10) -> dict:
    """recommend(u, k) for a sample of users: client-side wall time per call (warm, after one
    warm-up pass) and the overlap of its top-k (HNSW) with the exact scan's."""
    rng = np.random.default_rng(seed)
    sample = rng.choice(user_ids, size=min(n_users, len(user_ids)), replace=False)
    times, overlap = [], []
    with conn.cursor() as cur:
        for uid in sample[:20]:
            cur.execute("SELECT movie_id FROM reelscore.recommend(%s, %s)", (int(uid), k), prepare=True)
            cur.fetchall()
        for uid in sample:
            t0 = time.perf_counter()
            cur.execute("SELECT movie_id FROM reelscore.recommend(%s, %s)", (int(uid), k), prepare=True)
            got = [x[0] for x in cur.fetchall()]
            times.append((time.perf_counter() - t0) * 1000)
            cur.execute("SELECT movie_id FROM reelscore.recommend(%s, %s, p_exact => true)", (int(uid), k))
            exact = [x[0] for x in cur.fetchall()]
            overlap.append(len(set(got) & set(exact)) / max(1, len(exact)))
    _end_reads(conn)
    t = np.array(times)
    return {"users": len(sample), "k": k, "p50_ms": float(np.percentile(t, 50)),
            "p95_ms": float(np.percentile(t, 95)), "max_ms": float(t.max()),
            "recall_vs_exact": float(np.mean(overlap)), "min_recall_vs_exact": float(np.min(overlap))}


# ---------------------------------------------------------------------------------------
# A/B experiment replayed on held-out MovieLens ratings
# ---------------------------------------------------------------------------------------

def _top_outcomes(scores: np.ndarray, user_movies: np.ndarray, ratings: np.ndarray) -> tuple[list[float], int]:
    """The user's real ratings of the 10 movies a profile ranks first among those the user
    rated (scores: the profile's score of each of those movies), and whether the first was liked."""
    sc = np.where(np.isnan(scores), -np.inf, scores)
    order = np.lexsort((user_movies, -sc))[:10]
    return [float(x) for x in ratings[order]], int(ratings[order[0]] >= 4)


def run_abtest(conn, name: str | None = None, mde: float = 0.15, seed: int = 42, min_coverage: float = 0.2) -> dict:
    """Experiment 'balanced' (control) vs 'ml_learned' on the weights model's held-out users:
    each user is assigned in SQL; the arm's profile ranks the movies the user rated (with
    metric data); the outcomes are the user's real ratings of the top 10 (metric
    top10_rating, mean) and whether the top one was rated 4+ (liked_top1, proportion).
    The planned size comes from the power calculation with the sd measured on training users."""
    model = conn.execute("""SELECT version, params FROM reelscore.ml_models
                             WHERE kind = 'weights' AND active""").fetchone()
    if not model:
        raise MLError("no active weights model: run 'reelscore ml weights' first")
    version, params = model
    heldout = set(params["heldout_users"])
    r = dataset.ratings(conn)
    design = features.weight_design(r, dataset.movie_metrics(conn), params.get("min_coverage", min_coverage))
    by_user: dict[int, np.ndarray] = {}
    for uid in np.unique(design.users):
        by_user[int(uid)] = np.flatnonzero(design.users == uid)
    # every movie's score under both profiles, once, from the SQL scoring API
    movies = np.unique(design.movies)
    col = {int(m): j for j, m in enumerate(movies)}
    prof_scores = {p: dataset.profile_scores(conn, p, movies) for p in ("balanced", LEARNED_PROFILE)}

    def outcomes(profile: str, rows: np.ndarray) -> tuple[list[float], int]:
        sc = prof_scores[profile][[col[int(m)] for m in design.movies[rows]]]
        return _top_outcomes(sc, design.movies[rows], design.y[rows])

    # baseline sd of the per-user outcome, from training users under the control profile
    train_vals = []
    for uid, rows in by_user.items():
        if uid not in heldout and len(rows) >= 10:
            vals, _ = outcomes("balanced", rows)
            train_vals.append(np.mean(vals))
    sd = float(np.std(train_vals, ddof=1))
    name = name or f"learned_vs_balanced_{version.split('-', 1)[1].lower()}"
    _end_reads(conn)
    with conn.transaction():
        conn.execute("""SELECT reelscore.create_experiment(%s, 'balanced', %s, 'top10_rating', 'mean', %s, %s,
                               0.5, 0.05, 0.8, '{"liked_top1": "proportion"}'::jsonb, %s)""",
                     (name, LEARNED_PROFILE, mde, sd,
                      f"Replay of held-out MovieLens ratings of {version}'s held-out users"))
        for uid in sorted(heldout):
            rows = by_user.get(uid)
            if rows is None or len(rows) < 10:
                continue
            prof = conn.execute("SELECT reelscore.experiment_profile(%s, %s)", (name, uid)).fetchone()[0]
            vals, liked = outcomes(prof, rows)
            for v in vals:
                conn.execute("SELECT reelscore.record_outcome(%s, %s, 'top10_rating', %s)", (name, uid, v))
            conn.execute("SELECT reelscore.record_outcome(%s, %s, 'liked_top1', %s)", (name, uid, float(liked)))
        primary = conn.execute("SELECT reelscore.analyze_experiment(%s)", (name,)).fetchone()[0]
        secondary = conn.execute("SELECT reelscore.analyze_experiment(%s, 'liked_top1')", (name,)).fetchone()[0]
        conn.execute("""UPDATE reelscore.experiments SET result = %s::jsonb, status = 'stopped', stopped_at = now()
                         WHERE name = %s""", (publish._json({"top10_rating": primary, "liked_top1": secondary}), name))
    plan = conn.execute("SELECT planned_control, planned_experiment FROM reelscore.experiments WHERE name = %s",
                        (name,)).fetchone()
    return {"experiment": name, "baseline_sd": sd, "mde": mde, "planned_per_arm": list(plan),
            "top10_rating": primary, "liked_top1": secondary}
