"""Features for training, built from what ml/dataset.py read.

- `weight_design`: one row per rating of a movie that has metric data; columns = the
  metrics with enough coverage among the rated movies (normalized values, a missing value
  imputed with the metric's mean over those movies, so it adds nothing after centering);
- `user_split`: a seeded split of users into training and held-out sets;
- `cluster_label`: words for a cluster from how its centroid departs from the mean user.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.dataset import MovieMetrics, Ratings


@dataclass
class WeightDesign:
    X: np.ndarray             # (n_ratings, n_metrics)
    y: np.ndarray             # ratings
    users: np.ndarray
    movies: np.ndarray
    codes: list[str]          # metric code of each column
    categories: list[str]     # its category
    impute: np.ndarray        # the mean used for missing values, per column
    coverage: np.ndarray      # share of the rows where the metric was present


def weight_design(r: Ratings, mm: MovieMetrics, min_coverage: float = 0.2) -> WeightDesign:
    """Rows: ratings of movies that have metric data. Columns: metrics present for at least
    `min_coverage` of those rows."""
    pos = {int(m): j for j, m in enumerate(mm.movie_id)}
    idx = np.array([pos.get(int(m), -1) for m in r.movie_id])
    keep = idx >= 0
    idx = idx[keep]
    V = mm.values[idx]
    present = ~np.isnan(V)
    cov = present.mean(axis=0) if len(idx) else np.zeros(V.shape[1])
    cols = [j for j in range(V.shape[1]) if mm.metric_codes[j] is not None and cov[j] >= min_coverage]
    V = V[:, cols]
    some = ~np.isnan(V).all(axis=1)        # a movie with none of the metrics carries no signal
    keep[np.flatnonzero(keep)[~some]] = False
    V = V[some]
    impute = np.nanmean(V, axis=0) if len(V) else np.zeros(len(cols))
    X = np.where(np.isnan(V), impute, V)
    # A column that barely varies once imputed (a list metric whose present value is always
    # the same, e.g. a boolean 'on the list' = 0.8) carries no signal under the serving rule
    # (missing = skipped), and its float noise would buy a huge coefficient: leave it out.
    varies = X.std(axis=0) > 1e-6 if len(X) else np.zeros(len(cols), dtype=bool)
    cols = [c for c, ok in zip(cols, varies) if ok]
    X, impute = X[:, varies], impute[varies]
    return WeightDesign(X=X, y=r.rating[keep], users=r.user_id[keep], movies=r.movie_id[keep],
                        codes=[mm.metric_codes[j] for j in cols],
                        categories=[mm.metric_categories[j] for j in cols],
                        impute=impute, coverage=cov[cols])


def user_split(users: np.ndarray, test_share: float = 0.2, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """(training users, held-out users): a seeded permutation of the distinct users."""
    u = np.unique(users)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(u)
    n_test = round(len(u) * test_share)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def profile_weights(beta: np.ndarray, codes: list[str], categories: list[str],
                    all_categories: tuple[str, ...]) -> tuple[dict[str, float], dict[str, float]]:
    """Category weights (sum 1) and metric weights within category from non-negative
    metric-level coefficients: a category weighs the sum of its metrics' coefficients."""
    beta = np.clip(np.asarray(beta, dtype=float), 0, None)
    total = beta.sum()
    cat_w = {c: 0.0 for c in all_categories}
    metric_w: dict[str, float] = {}
    if total <= 0:
        raise ValueError("no metric predicts the ratings (all coefficients are zero)")
    for b, code, cat in zip(beta, codes, categories):
        cat_w[cat] += b / total
    for b, code, cat in zip(beta, codes, categories):
        share = cat_w[cat] * total
        metric_w[code] = float(b / share) if share > 0 else 0.0
    # round to 6 places, then put the rounding remainder on the largest weight
    cat_w = {c: round(float(w), 6) for c, w in cat_w.items()}
    top = max(cat_w, key=cat_w.get)
    cat_w[top] = round(cat_w[top] + 1.0 - sum(cat_w.values()), 6)
    return cat_w, metric_w


_WORDS = {
    "follows_rating": ("critics' followers", "shrug at critics"),
    "follows_financial": ("blockbuster fans", "indifferent to box office"),
    "follows_popularity": ("trend followers", "trend-averse"),
    "follows_award": ("award seekers", "award-indifferent"),
    "follows_cultural": ("canon lovers", "canon-indifferent"),
    "follows_consensus": ("consensus raters", "contrarians"),
    "mainstream": ("mainstream viewers", "niche explorers"),
    "activity": ("heavy raters", "light raters"),
    "mean_rating": ("generous raters", "harsh raters"),
    "sd_rating": ("polarized raters", "even-keeled raters"),
}


def describe_cluster(z: np.ndarray, raw: np.ndarray, overall: np.ndarray, names: list[str],
                     top: int = 3) -> tuple[str, str]:
    """(label, description) of a cluster from its standardized centroid z (distance from the
    mean user in standard deviations) and its raw centroid vs the overall mean."""
    order = np.argsort(-np.abs(z))
    words: list[str] = []
    parts: list[str] = []
    for j in order[:top + 2]:
        name = names[j]
        hi = z[j] > 0
        if name.startswith("genre:"):
            g = name.split(":", 1)[1]
            word = f"{g} fans" if hi else f"{g} avoiders"
        else:
            word = _WORDS.get(name, (f"high {name}", f"low {name}"))[0 if hi else 1]
        if len(words) < 2 and abs(z[j]) >= 0.5:
            words.append(word)
        if len(parts) < top + 1:
            parts.append(f"{name} {raw[j]:.2f} vs {overall[j]:.2f} overall ({z[j]:+.1f} sd)")
    label = " / ".join(words) if words else "typical raters"
    return label, "; ".join(parts)
