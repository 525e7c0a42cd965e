"""Synthetic time series for reelscore: a span of daily popularity and vote counts for N
movies, with planted risers (steady exponential growth over the last weeks), spikes (one
day several times the usual level) and seasonality by genre (horror peaks in October,
romance in February, family films in December, action in summer).

Points are streamed through COPY into a temporary staging table and moved into
reelscore.metric_timeseries by one INSERT ... SELECT that normalizes them with the
registry's own formulas (reelscore.normalize_with), so no normalization is computed here.
Deterministic for a seed. The returned `Truth` says what was planted, for tests and docs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import psycopg

GENRES = ["Drama", "Comedy", "Horror", "Action", "Romance", "Family", "Thriller", "Documentary"]
# Month multipliers by genre (the seasonality planted): month -> factor.
SEASONALITY: dict[str, dict[int, float]] = {
    "Horror": {9: 1.15, 10: 1.6, 11: 1.1},
    "Romance": {2: 1.4},
    "Family": {12: 1.3},
    "Action": {6: 1.1, 7: 1.2, 8: 1.1},
}


@dataclass
class Truth:
    """What the generator planted."""
    movie_ids: list[int]
    start: date
    end: date
    risers: dict[int, float] = field(default_factory=dict)      # movie id -> daily log growth
    rise_days: int = 60
    spikes: dict[int, date] = field(default_factory=dict)       # movie id -> spike day
    spike_factor: dict[int, float] = field(default_factory=dict)
    points: int = 0


def _ensure_movies(conn: psycopg.Connection, n: int, rng: np.random.Generator) -> list[tuple[int, list[str]]]:
    rows = conn.execute("select id, genres from reelscore.movies order by id limit %s", (n,)).fetchall()
    missing = n - len(rows)
    if missing > 0:
        made = []
        for i in range(missing):
            k = 1 + int(rng.integers(0, 2))
            genres = sorted(set(rng.choice(GENRES, size=k, replace=False).tolist()))
            made.append((f"Synthetic series film {len(rows) + i + 1}", "{" + ",".join(genres) + "}"))
        with conn.cursor() as cur:
            with cur.copy("copy reelscore.movies (title, genres) from stdin") as cp:
                for row in made:
                    cp.write_row(row)
        rows = conn.execute("select id, genres from reelscore.movies order by id limit %s", (n,)).fetchall()
    return [(r[0], list(r[1] or [])) for r in rows]


def generate(conn: psycopg.Connection, movies: int = 100_000, days: int = 365, seed: int = 1,
             end: date | None = None, riser_share: float = 0.01, spike_share: float = 0.01,
             rise_days: int = 60, spike_window: int = 14, normalize: bool = True,
             chunk: int = 2000, progress: bool = False) -> Truth:
    """Write `days` daily points of tmdb_popularity and tmdb_vote_count for `movies` movies
    (the lowest ids; created when missing) ending at `end` (default: today, UTC)."""
    if movies < 1 or days < 2:
        raise ValueError("movies >= 1 and days >= 2")
    rng = np.random.default_rng(seed)
    end = end or datetime.now(UTC).date()
    start = end - timedelta(days=days - 1)
    mlist = _ensure_movies(conn, movies, rng)
    ids = np.array([m[0] for m in mlist], dtype=np.int64)
    n = len(ids)
    metric = dict(conn.execute("select code, id from reelscore.metric_definitions "
                               "where code in ('tmdb_popularity', 'tmdb_vote_count')").fetchall())

    dates = [start + timedelta(days=d) for d in range(days)]
    months = np.array([d.month for d in dates])
    # Seasonality: the mean of the movie's genres' month factors.
    season = np.ones((n, days))
    for i, (_, genres) in enumerate(mlist):
        if genres:
            f = np.zeros(days)
            for g in genres:
                table = SEASONALITY.get(g, {})
                f += np.array([table.get(int(m), 1.0) for m in months])
            season[i] = f / len(genres)

    base = rng.lognormal(mean=2.5, sigma=1.0, size=n)
    drift = rng.normal(0.0, 0.0005, size=n)
    t = np.arange(days)
    log_level = np.log(base)[:, None] + drift[:, None] * t[None, :]

    truth = Truth(movie_ids=ids.tolist(), start=start, end=end, rise_days=rise_days)
    order = rng.permutation(n)
    n_rise = round(riser_share * n)
    n_spike = round(spike_share * n)
    rise_idx = order[:n_rise]
    spike_idx = order[n_rise:n_rise + n_spike]
    rates = rng.uniform(0.03, 0.05, size=n_rise)
    ramp = np.clip(t - (days - rise_days), 0, None)
    for i, g in zip(rise_idx, rates):
        log_level[i] += g * ramp
        truth.risers[int(ids[i])] = float(g)
    level = np.exp(log_level) * season * rng.lognormal(0.0, 0.08, size=(n, days))
    for i in spike_idx:
        d = days - 1 - int(rng.integers(0, spike_window))
        f = float(rng.uniform(6.0, 10.0))
        level[i, d] *= f
        truth.spikes[int(ids[i])] = dates[d]
        truth.spike_factor[int(ids[i])] = f
    popularity = np.round(level, 3)
    votes = np.floor(rng.lognormal(7.0, 1.5, size=n)[:, None] + np.cumsum(2.0 * level, axis=1))

    stamps = [datetime(d.year, d.month, d.day, 12, tzinfo=UTC).isoformat() for d in dates]
    table = "reelscore.metric_timeseries"
    with conn.transaction():
        if normalize:
            conn.execute("create temp table if not exists ts_synth_stage (time timestamptz, movie_id bigint, "
                         "metric_id smallint, value float8) on commit drop")
            table = "ts_synth_stage"
        written = 0
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=2 * n * days, unit="pt", desc="time series")
        with conn.cursor() as cur:
            with cur.copy(f"copy {table} (time, movie_id, metric_id, value) from stdin") as cp:
                for lo in range(0, n, chunk):
                    hi = min(n, lo + chunk)
                    lines = []
                    for code, arr in (("tmdb_popularity", popularity), ("tmdb_vote_count", votes)):
                        mid = metric[code]
                        for i in range(lo, hi):
                            movie = ids[i]
                            row = arr[i].tolist()
                            lines.append("".join(f"{stamps[d]}\t{movie}\t{mid}\t{row[d]!r}\n" for d in range(days)))
                    cp.write("".join(lines))
                    written += 2 * (hi - lo) * days
                    if bar:
                        bar.update(2 * (hi - lo) * days)
        if bar:
            bar.close()
        if normalize:
            conn.execute("select reelscore.append_points('ts_synth_stage', '{\"synthetic\": true}')")
    truth.points = written
    return truth


def riser_slope(rate: float, threshold: float = 1000.0) -> float:
    """Expected slope per day of the normalized (log) popularity of a riser with daily log
    growth `rate`: d/dt ln(x + 1) / ln(threshold + 1), about rate / ln(1001) for x >> 1."""
    return rate / math.log(threshold + 1)
