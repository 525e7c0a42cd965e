"""Evaluation measures and protocols (numpy only): ranking quality (NDCG, precision,
recall at k), rating error (RMSE, MAE), seeded k-fold splits."""
from __future__ import annotations

import numpy as np


def dcg(gains: np.ndarray) -> float:
    g = np.asarray(gains, dtype=float)
    return float(np.sum(g / np.log2(np.arange(2, len(g) + 2))))


def ndcg_at_k(scores: np.ndarray, relevance: np.ndarray, k: int = 10, exponential: bool = True) -> float:
    """NDCG@k of ranking the items by `scores` (descending; NaN ranks last; ties broken by
    item order) against graded relevance (gain 2^rel - 1 when exponential, else rel)."""
    s = np.where(np.isnan(scores), -np.inf, np.asarray(scores, dtype=float))
    rel = np.asarray(relevance, dtype=float)
    gain = (2.0 ** rel - 1.0) if exponential else rel
    order = np.lexsort((np.arange(len(s)), -s))[:k]
    ideal = np.sort(gain)[::-1][:k]
    idcg = dcg(ideal)
    return dcg(gain[order]) / idcg if idcg > 0 else 0.0


def per_user_ndcg(users: np.ndarray, scores: np.ndarray, relevance: np.ndarray, k: int = 10,
                  min_items: int = 2) -> dict[int, float]:
    """NDCG@k for each user, ranking that user's items only."""
    out: dict[int, float] = {}
    order = np.argsort(users, kind="stable")
    u_sorted = users[order]
    bounds = np.flatnonzero(np.diff(u_sorted)) + 1
    for grp in np.split(order, bounds):
        if len(grp) >= min_items:
            out[int(users[grp[0]])] = ndcg_at_k(scores[grp], relevance[grp], k)
    return out


def topk_metrics(ranked: np.ndarray, relevant: set[int], k: int = 10) -> tuple[float, float, float]:
    """(precision@k, recall@k, NDCG@k with binary relevance) of a ranked list of item ids."""
    top = list(ranked[:k])
    hits = np.array([1.0 if i in relevant else 0.0 for i in top])
    if not relevant:
        return 0.0, 0.0, 0.0
    ideal = dcg(np.ones(min(k, len(relevant))))
    return float(hits.sum() / k), float(hits.sum() / len(relevant)), dcg(hits) / ideal


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) - np.asarray(truth)) ** 2)))


def mae(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(pred) - np.asarray(truth))))


def kfold(n: int, folds: int = 5, seed: int = 42) -> list[np.ndarray]:
    """Index sets of a seeded random partition of range(n) into `folds` parts."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.array_split(perm, folds)


def paired_summary(a: dict[int, float], b: dict[int, float]) -> dict:
    """Mean of b - a over the users both have, with a 95% t interval and the relative change."""
    from scipy import stats
    common = sorted(set(a) & set(b))
    d = np.array([b[u] - a[u] for u in common])
    mean_a = float(np.mean([a[u] for u in common])) if common else float("nan")
    if len(d) < 2:
        return {"n": len(d), "mean_diff": float("nan")}
    se = float(d.std(ddof=1) / np.sqrt(len(d)))
    q = float(stats.t.ppf(0.975, len(d) - 1))
    return {"n": len(d), "mean_diff": float(d.mean()), "ci95": [float(d.mean() - q * se), float(d.mean() + q * se)],
            "relative_change": float(d.mean() / mean_a) if mean_a else float("nan"),
            "p_value": float(stats.ttest_1samp(d, 0.0).pvalue) if se > 0 else 1.0}
