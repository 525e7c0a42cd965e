"""Read what training needs from the database (the only source: nothing is read from files).

Every function takes an open psycopg connection and returns numpy arrays."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CATEGORIES = ("rating", "award", "financial", "cultural", "popularity")


@dataclass
class Ratings:
    user_id: np.ndarray      # reelscore.users.id
    movie_id: np.ndarray     # reelscore.movies.id
    rating: np.ndarray
    ts: np.ndarray           # epoch seconds

    def __len__(self) -> int:
        return len(self.rating)

    def subset(self, mask: np.ndarray) -> Ratings:
        return Ratings(self.user_id[mask], self.movie_id[mask], self.rating[mask], self.ts[mask])


def ratings(conn) -> Ratings:
    """Every rating in metric_feedback (one per user and movie: the latest), in a fixed
    order (user, movie) so that seeded splits are reproducible."""
    rows = conn.execute(
        """SELECT DISTINCT ON (user_id, movie_id) user_id, movie_id, user_rating,
                  extract(epoch FROM created_at)::float8
             FROM reelscore.metric_feedback
            WHERE user_rating IS NOT NULL
            ORDER BY user_id, movie_id, created_at DESC, id DESC""").fetchall()
    if not rows:
        return Ratings(*(np.array([], dtype=t) for t in (np.int64, np.int64, float, float)))
    a = np.array(rows, dtype=float)
    return Ratings(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2], a[:, 3])


@dataclass
class MovieMetrics:
    movie_id: np.ndarray                 # movies with a movie_features row
    values: np.ndarray                   # (n, 32) normalized value by slot, NaN where missing
    categories: np.ndarray               # (n, 5) category means, NaN where the movie has none
    metric_codes: list[str | None]       # code of each of the 32 slots (None: free slot)
    metric_categories: list[str | None]


def movie_metrics(conn) -> MovieMetrics:
    """Per-movie normalized metric values (movie_features.nvec with pvec as presence) and
    category means, as computed by the scoring layer."""
    slots = conn.execute("SELECT slot, code, category FROM reelscore.metric_definitions WHERE active").fetchall()
    codes: list[str | None] = [None] * 32
    cats: list[str | None] = [None] * 32
    for slot, code, cat in slots:
        codes[slot - 1], cats[slot - 1] = code, cat
    rows = conn.execute(
        """SELECT movie_id, nvec::real[], pvec::real[], cat_rating, cat_award, cat_financial,
                  cat_cultural, cat_popularity
             FROM reelscore.movie_features WHERE n_present > 0 ORDER BY movie_id""").fetchall()
    n = len(rows)
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    vals = np.full((n, 32), np.nan)
    catm = np.full((n, 5), np.nan)
    for j, r in enumerate(rows):
        nv, pv = np.array(r[1], dtype=float), np.array(r[2], dtype=float)
        vals[j] = np.where(pv > 0, nv, np.nan)
        catm[j] = [np.nan if x is None else x for x in r[3:8]]
    return MovieMetrics(ids, vals, catm, codes, cats)


def taste_features(conn, min_ratings: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(user ids, rating counts, feature matrix, feature names) from
    reelscore.user_taste_features(): the same definition assign_user_cluster() uses."""
    names = conn.execute("SELECT reelscore.taste_feature_names()").fetchone()[0]
    rows = conn.execute("SELECT user_id, n_ratings, features FROM reelscore.user_taste_features(%s)",
                        (min_ratings,)).fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    counts = np.array([r[1] for r in rows], dtype=np.int64)
    F = np.array([r[2] for r in rows], dtype=float).reshape(len(rows), len(names))
    return ids, counts, F, list(names)


def system_profiles(conn) -> list[str]:
    """Names of the active system profiles (the comparison set of the weights report)."""
    return [r[0] for r in conn.execute(
        "SELECT name FROM reelscore.weight_profiles WHERE is_system AND active ORDER BY name").fetchall()]


def profile_scores(conn, profile: str, movie_ids: np.ndarray) -> np.ndarray:
    """Score of each movie under a profile, from the SQL scoring API (NaN when the movie has
    no score). ml/ never recomputes a score."""
    rows = conn.execute(
        """SELECT t.movie_id, reelscore.movie_score(t.movie_id, %s)
             FROM unnest(%s::bigint[]) AS t(movie_id)""", (profile, [int(m) for m in movie_ids])).fetchall()
    got = {r[0]: r[1] for r in rows}
    return np.array([np.nan if got.get(int(m)) is None else got[int(m)] for m in movie_ids], dtype=float)
