"""Model fitting, numpy / scipy / scikit-learn only; no database access here.

- `fit_simplex_weights`: non-negative weights summing to 1 that predict ratings from
  per-movie normalized values, with a per-user intercept (within-user centering) and a
  common positive scale, by non-negative least squares;
- `fit_clusters`: k-means on standardized taste features, k chosen in a range by the
  mean silhouette coefficient;
- `BiasedALS`: biased matrix factorization r = mu + b_u + b_i + p_u . q_i fitted by
  alternating least squares with weighted-lambda regularization (ALS-WR).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls


def center_by_group(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Subtract each group's mean (rows of `values` grouped by the integer ids `groups`)."""
    values = np.asarray(values, dtype=float)
    _, inv, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if values.ndim == 1:
        sums = np.bincount(inv, weights=values)
        return values - (sums / counts)[inv]
    out = np.empty_like(values)
    for j in range(values.shape[1]):
        sums = np.bincount(inv, weights=values[:, j])
        out[:, j] = values[:, j] - (sums / counts)[inv]
    return out


@dataclass
class SimplexWeights:
    weights: np.ndarray          # >= 0, sums to 1 (all zero only when nothing predicts)
    scale: float                 # rating points per unit of weighted score
    train_rmse: float            # of the centered fit
    n_ratings: int
    n_users: int


def fit_simplex_weights(X: np.ndarray, y: np.ndarray, users: np.ndarray) -> SimplexWeights:
    """Fit y_ui = a_u + s * sum_j w_j X_ij + e with w >= 0, sum w = 1, s >= 0.

    Centering X and y within each user removes a_u; NNLS gives beta = s * w >= 0;
    s = sum(beta) and w = beta / s. A user with one rating carries no information and
    contributes zeros after centering."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    Xc = center_by_group(X, users)
    yc = center_by_group(y, users)
    beta, resid = nnls(Xc, yc)
    s = float(beta.sum())
    w = beta / s if s > 0 else np.zeros_like(beta)
    return SimplexWeights(weights=w, scale=s, train_rmse=float(resid / np.sqrt(len(y))),
                          n_ratings=len(y), n_users=len(np.unique(users)))


@dataclass
class Clusters:
    k: int
    labels: np.ndarray
    centroids: np.ndarray        # in standardized feature space
    mean: np.ndarray             # feature means used to standardize
    scale: np.ndarray            # feature standard deviations (1 where constant)
    silhouette: dict[int, float] = field(default_factory=dict)
    inertia: dict[int, float] = field(default_factory=dict)


def standardize(F: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = F.mean(axis=0)
    scale = F.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    return (F - mean) / scale, mean, scale


def fit_clusters(F: np.ndarray, k_range: tuple[int, int] = (4, 6), seed: int = 0, n_init: int = 20) -> Clusters:
    """k-means (k-means++, n_init starts) for every k in k_range; keeps the k with the highest
    mean silhouette coefficient (Rousseeuw 1987) on the standardized features."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    Z, mean, scale = standardize(np.asarray(F, dtype=float))
    best = None
    sil: dict[int, float] = {}
    inertia: dict[int, float] = {}
    for k in range(k_range[0], k_range[1] + 1):
        km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(Z)
        sil[k] = float(silhouette_score(Z, km.labels_))
        inertia[k] = float(km.inertia_)
        if best is None or sil[k] > sil[best[0]]:
            best = (k, km)
    k, km = best
    return Clusters(k=k, labels=km.labels_.copy(), centroids=km.cluster_centers_.copy(),
                    mean=mean, scale=scale, silhouette=sil, inertia=inertia)


def assign_nearest(F: np.ndarray, clusters: Clusters) -> np.ndarray:
    """Nearest centroid (Euclidean, standardized space) for each row of raw features F."""
    Z = (np.asarray(F, dtype=float) - clusters.mean) / clusters.scale
    d = ((Z[:, None, :] - clusters.centroids[None, :, :]) ** 2).sum(axis=2)
    return d.argmin(axis=1)


class BiasedALS:
    """r_ui ~ mu + b_u + b_i + p_u . q_i, by alternating ridge regressions.

    Each user step solves, for [p_u, b_u], the least squares of (r - mu - b_i) on
    [q_i, 1] over the user's ratings, with penalty reg * n_u * |p_u|^2 and
    reg_bias * n_u * b_u^2 (ALS-WR's weighted lambda) + bias_prior * b_u^2 (a fixed
    shrinkage, so a movie with one 5-star rating does not get a large bias); items
    symmetrically."""

    def __init__(self, factors: int = 20, reg: float = 0.1, reg_bias: float = 0.01,
                 iterations: int = 15, seed: int = 0, init_scale: float = 0.1, bias_prior: float = 0.0):
        self.factors, self.reg, self.reg_bias, self.bias_prior = factors, reg, reg_bias, bias_prior
        self.iterations, self.seed, self.init_scale = iterations, seed, init_scale

    @staticmethod
    def _index(keys: np.ndarray, n: int) -> list[np.ndarray]:
        order = np.argsort(keys, kind="stable")
        bounds = np.searchsorted(keys[order], np.arange(n + 1))
        return [order[bounds[j]:bounds[j + 1]] for j in range(n)]

    def _solve(self, rows: list[np.ndarray], other: np.ndarray, other_bias: np.ndarray,
               other_idx: np.ndarray, resid_base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = self.factors
        n = len(rows)
        vecs = np.zeros((n, k))
        bias = np.zeros(n)
        pen = np.full(k + 1, self.reg)
        pen[k] = self.reg_bias
        for j, idx in enumerate(rows):
            if len(idx) == 0:
                continue
            A = np.empty((len(idx), k + 1))
            A[:, :k] = other[other_idx[idx]]
            A[:, k] = 1.0
            b = resid_base[idx] - other_bias[other_idx[idx]]
            ridge = pen * len(idx)
            ridge[k] += self.bias_prior   # a fixed shrinkage of the bias: few ratings, small bias
            sol = np.linalg.solve(A.T @ A + np.diag(ridge), A.T @ b)
            vecs[j], bias[j] = sol[:k], sol[k]
        return vecs, bias

    def fit(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray,
            n_users: int, n_items: int) -> BiasedALS:
        rng = np.random.default_rng(self.seed)
        users = np.asarray(users)
        items = np.asarray(items)
        r = np.asarray(ratings, dtype=float)
        self.mu = float(r.mean())
        self.P = rng.normal(0, self.init_scale, (n_users, self.factors))
        self.Q = rng.normal(0, self.init_scale, (n_items, self.factors))
        self.bu = np.zeros(n_users)
        self.bi = np.zeros(n_items)
        by_user = self._index(users, n_users)
        by_item = self._index(items, n_items)
        base = r - self.mu
        for _ in range(self.iterations):
            self.P, self.bu = self._solve(by_user, self.Q, self.bi, items, base)
            self.Q, self.bi = self._solve(by_item, self.P, self.bu, users, base)
        self.user_counts = np.bincount(users, minlength=n_users)
        self.item_counts = np.bincount(items, minlength=n_items)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray, clip: tuple[float, float] | None = (1.0, 5.0)) -> np.ndarray:
        p = self.mu + self.bu[users] + self.bi[items] + np.einsum("ij,ij->i", self.P[users], self.Q[items])
        return np.clip(p, *clip) if clip else p


class BaselineOnly:
    """r_ui ~ mu + b_u + b_i with ridge-regularized biases (alternating updates), the
    'baseline-only' reference model."""

    def __init__(self, reg_user: float = 15.0, reg_item: float = 10.0, iterations: int = 10):
        self.reg_user, self.reg_item, self.iterations = reg_user, reg_item, iterations

    def fit(self, users, items, ratings, n_users: int, n_items: int) -> BaselineOnly:
        r = np.asarray(ratings, dtype=float)
        self.mu = float(r.mean())
        self.bu = np.zeros(n_users)
        self.bi = np.zeros(n_items)
        cu = np.bincount(users, minlength=n_users)
        ci = np.bincount(items, minlength=n_items)
        for _ in range(self.iterations):
            self.bi = np.bincount(items, weights=r - self.mu - self.bu[users], minlength=n_items) / (ci + self.reg_item)
            self.bu = np.bincount(users, weights=r - self.mu - self.bi[items], minlength=n_users) / (cu + self.reg_user)
        return self

    def predict(self, users, items, clip=(1.0, 5.0)):
        p = self.mu + self.bu[users] + self.bi[items]
        return np.clip(p, *clip) if clip else p


class GlobalMean:
    def fit(self, users, items, ratings, n_users: int, n_items: int) -> GlobalMean:
        self.mu = float(np.mean(ratings))
        return self

    def predict(self, users, items, clip=None):
        return np.full(len(users), self.mu)
