"""Synthetic movies for benchmarks: realistic coverage and distributions, deterministic per seed.

What "realistic" means here (the shapes of TMDb/IMDb/box-office data, not their numbers):
- every movie has latent *quality* q ~ N(0, 1) and *fame* f (quality-correlated, higher for
  recent films); coverage and values are drawn from those, so sources agree with each other;
- coverage falls with obscurity: most films have TMDb data, fewer IMDb, a minority critics'
  scores and money figures, a tiny share awards and list entries;
- votes, money and mentions are log-normal (heavy-tailed: the top 1% of films hold a large
  share of all votes); ratings are correlated across sources (IMDb vs TMDb r ~ 0.8);
- awards are sparse (Oscar nominations ~0.5%, festival wins ~0.01%), lists are fixed-size
  rankings (AFI 100, Sight and Sound 250, ...) scaled down with the number of movies;
- release dates spread from 1900 to 2026, skewed to recent years as production grew.

Every value respects its metric's raw scale and data type (see migrations 0002), so loaders
and normalization accept them. Each metric draws from its own child of the seed's
`SeedSequence`, so the same seed and count always give the same rows.

`write()` loads movies and metric_values through COPY (ids continue after the largest
existing movie id); `reelscore synth` is the CLI front end.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

# The seed's 29 metrics, in registry order. Generation order is fixed (child seeds are
# indexed by this order), so adding a metric later appends and leaves the others unchanged.
METRIC_CODES = (
    "tmdb_rating", "tmdb_vote_count", "imdb_rating", "imdb_vote_count", "metacritic_score",
    "rt_tomatometer", "rt_audience_score",
    "tmdb_budget", "tmdb_revenue", "omdb_box_office", "bom_domestic", "bom_worldwide",
    "oscar_nominations", "oscar_wins", "cannes_palme_dor", "cannes_selection",
    "venice_golden_lion", "venice_selection", "berlin_golden_bear", "sundance_grand_jury",
    "afi_top_100", "bfi_top_100", "sight_sound_rank", "criterion_collection", "1001_movies",
    "nfr_preserved",
    "tmdb_popularity", "tmdb_trending_rank", "twitter_mentions",
)

GENRES = ("Drama", "Comedy", "Thriller", "Action", "Romance", "Horror", "Crime", "Documentary",
          "Adventure", "Science Fiction", "Family", "Mystery", "Fantasy", "Animation", "Music",
          "History", "War", "Western", "TV Movie")
# Marginal share of films carrying each genre (TMDb-like: drama and comedy dominate).
GENRE_SHARE = np.array([0.42, 0.28, 0.16, 0.14, 0.13, 0.11, 0.10, 0.09, 0.07, 0.06, 0.06,
                        0.06, 0.05, 0.05, 0.04, 0.03, 0.025, 0.015, 0.04])

_ADJ = ("Silent", "Last", "Dark", "Golden", "Broken", "Hidden", "Lost", "Crimson", "Endless",
        "Wild", "Secret", "Final", "Burning", "Frozen", "Distant", "Quiet", "Hollow", "Bright",
        "Savage", "Electric", "Midnight", "Forgotten", "Little", "Great", "Strange", "Blue",
        "Iron", "Shattered", "Sweet", "Bitter", "Red", "White", "Black", "Long", "Empty",
        "Restless", "Velvet", "Paper", "Glass", "Wandering")
_NOUN = ("River", "Night", "Summer", "Heart", "City", "House", "Road", "Storm", "Garden",
         "Mirror", "Empire", "Shadow", "Dream", "Winter", "Island", "Kingdom", "Train", "Sky",
         "Promise", "Stranger", "Machine", "Harbor", "Letter", "Mountain", "Sea", "Hunter",
         "Song", "Circus", "Orchard", "Frontier", "Witness", "Lighthouse", "Desert", "Bridge",
         "Forest", "Voyage", "Crown", "Signal", "Factory", "Echo", "Fire", "Angel", "Ghost",
         "Wolf", "Daughter", "Son", "King", "Queen", "Soldier", "Dancer")
_PLACE = ("Paris", "Tokyo", "Berlin", "Rome", "Cairo", "Lagos", "Mumbai", "Seoul", "Lima",
          "Oslo", "Havana", "Dublin", "Vienna", "Lisbon", "Brooklyn", "Texas", "Mars",
          "the North", "the Valley", "Yesterday", "Tomorrow", "the Sun", "the Dead", "Nowhere")
_FIRST = ("Anna", "James", "Maria", "John", "Yuki", "Pedro", "Sofia", "Ahmed", "Chen", "Olga",
          "David", "Fatima", "Lars", "Priya", "Kenji", "Elena", "Marco", "Aisha", "Tom", "Ines",
          "Hiro", "Nadia", "Paul", "Lena", "Omar", "Grace", "Ivan", "Mei", "Carlos", "Zoe",
          "Sam", "Rosa", "Ali", "Emma", "Raj", "Julia", "Luca", "Sara", "Ben", "Noor")
_LAST = ("Smith", "Garcia", "Kim", "Muller", "Rossi", "Tanaka", "Kowalski", "Silva", "Nguyen",
         "Okafor", "Johansson", "Dubois", "Ivanova", "Patel", "Cohen", "Haddad", "Lopez",
         "Wright", "Larsen", "Moreau", "Novak", "Sato", "Fischer", "Mendes", "Brennan",
         "Khan", "Bauer", "Costa", "Herrera", "Walsh", "Park", "Varga", "Horvat", "Lindqvist",
         "Ortiz", "Abebe", "Murphy", "Weber", "Romano", "Castro")

REFERENCE_DATE = np.datetime64("2026-11-01T00:00:00")
LAST_RELEASE = np.datetime64("2026-11-25")
CHUNK_ROWS = 200_000
NULL = "\\N"   # COPY text NULL


def list_size(full_size: int, n_movies: int, minimum: int = 5) -> int:
    """Entries of a fixed-size list (AFI 100, ...) at this catalogue size: the full list at
    1M movies, proportionally fewer below (so lists stay as sparse as in life)."""
    return int(min(full_size, n_movies, max(minimum, round(full_size * n_movies / 1_000_000))))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Catalogue:
    """Latent traits and descriptive columns of n synthetic movies (index 0..n-1)."""
    n: int
    seed: int
    quality: np.ndarray           # q ~ N(0, 1)
    fame: np.ndarray              # f: quality-correlated, recency-boosted
    recency: np.ndarray           # (year - 2000) / 25, clipped to [-1, 1]
    year: np.ndarray              # release year (int)
    release_date: np.ndarray      # datetime64[D], NaT for ~2% with unknown dates
    genre_mask: np.ndarray        # bool (n, len(GENRES))
    title_parts: np.ndarray       # int (n, 4): pattern, adjective, noun, place/sequel
    director: np.ndarray          # int index into the director pool, -1 = unknown
    values: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def title(self, i: int) -> str:
        pat, a, b, c = (int(x) for x in self.title_parts[i])
        adj, noun = _ADJ[a % len(_ADJ)], _NOUN[b % len(_NOUN)]
        if pat == 0:
            t = f"The {adj} {noun}"
        elif pat == 1:
            t = f"{noun} of {_PLACE[c % len(_PLACE)]}"
        elif pat == 2:
            t = f"{adj} {noun}s"
        elif pat == 3:
            t = f"A {noun} in {_PLACE[c % len(_PLACE)]}"
        elif pat == 4:
            t = f"The {noun}"
        else:
            t = f"{_FIRST[c % len(_FIRST)]}'s {noun}"
        if c % 29 == 0:
            t += f" {2 + c % 3}"   # sequels
        return t

    def director_name(self, i: int) -> str | None:
        d = int(self.director[i])
        if d < 0:
            return None
        first, last = _FIRST[d % len(_FIRST)], _LAST[(d // len(_FIRST)) % len(_LAST)]
        initial = d // (len(_FIRST) * len(_LAST))
        return f"{first} {chr(65 + initial % 26)}. {last}" if initial else f"{first} {last}"


def generate(n_movies: int, seed: int = 42, codes: tuple[str, ...] = METRIC_CODES,
             min_coverage: float = 0.0) -> Catalogue:
    """All movies and metric values for (n_movies, seed), in memory (about 200 bytes per
    movie): deterministic, independent of how it is written out later. With min_coverage > 0
    every metric is then filled up to that share of movies (see _fill_to_coverage): a dense
    catalogue for load tests, no longer a realistic one."""
    if n_movies < 1:
        raise ValueError(f"n_movies must be at least 1, got {n_movies}")
    if not 0.0 <= min_coverage <= 1.0:
        raise ValueError(f"min_coverage must be between 0 and 1, got {min_coverage}")
    n = int(n_movies)
    ss = np.random.SeedSequence(int(seed))
    base_ss, *metric_ss = ss.spawn(1 + len(METRIC_CODES))
    rng = np.random.default_rng(base_ss)

    # Release years: production grew over the century, so years back from 2026 are roughly
    # exponential (median ~2011); a thin silent-era tail back to 1900.
    back = np.minimum(rng.exponential(22.0, n), 126.0)
    year = (2026 - np.floor(back)).astype(np.int64)
    day = rng.integers(0, 365, n)
    release = (year - 1970).astype("datetime64[Y]").astype("datetime64[D]") + day
    release = np.minimum(release, LAST_RELEASE)
    release[rng.random(n) < 0.02] = np.datetime64("NaT")
    recency = np.clip((year - 2000) / 25.0, -1.0, 1.0)

    quality = rng.standard_normal(n)
    fame = 0.35 * quality + 0.9 * rng.standard_normal(n) + 0.5 * recency

    genre_mask = rng.random((n, len(GENRES))) < GENRE_SHARE
    none = ~genre_mask.any(axis=1)
    genre_mask[none, rng.choice(len(GENRES), int(none.sum()), p=GENRE_SHARE / GENRE_SHARE.sum())] = True

    title_parts = np.stack([rng.integers(0, 6, n), rng.integers(0, len(_ADJ), n),
                            rng.integers(0, len(_NOUN), n), rng.integers(0, 10_000, n)], axis=1)
    # Directors: a pool of n/4 names; a few prolific directors make many films (power law).
    pool = max(20, n // 4)
    director = np.floor(pool * rng.random(n) ** 2.5).astype(np.int64)
    director[rng.random(n) < 0.03] = -1

    cat = Catalogue(n=n, seed=int(seed), quality=quality, fame=fame, recency=recency, year=year,
                    release_date=release, genre_mask=genre_mask, title_parts=title_parts,
                    director=director)
    makers = _metric_makers()
    for code, child in zip(METRIC_CODES, metric_ss):
        if code in codes:
            idx, val = makers[code](cat, np.random.default_rng(child))
            if min_coverage > 0:
                idx, val = _fill_to_coverage(cat, METRIC_CODES.index(code), idx, val, min_coverage)
            order = np.argsort(idx, kind="stable")
            cat.values[code] = (idx[order].astype(np.int64), val[order].astype(np.float64))
    return cat


def _fill_to_coverage(cat: Catalogue, metric_index: int, idx: np.ndarray, val: np.ndarray,
                      min_coverage: float) -> tuple[np.ndarray, np.ndarray]:
    """The metric's values plus values for random movies without one, until it covers
    ceil(min_coverage * n) movies. The added values are drawn from the metric's own values
    (so they fit its raw scale and type; a metric with none stays empty), from a stream of the
    seed of their own: the realistic rows are the same with or without the fill."""
    want = int(np.ceil(min_coverage * cat.n))
    if idx.size >= want or val.size == 0:
        return idx, val
    rng = np.random.default_rng(np.random.SeedSequence([cat.seed, 8000 + metric_index]))
    missing = np.setdiff1d(np.arange(cat.n), idx, assume_unique=False)
    extra = rng.choice(missing, size=want - idx.size, replace=False)
    return np.concatenate([idx, extra]), np.concatenate([val, rng.choice(val, size=extra.size)])


# --------------------------------------------------------------------------------------
# Per-metric generators: (catalogue, rng) -> (movie indexes, raw values)
# --------------------------------------------------------------------------------------
def _present(cat: Catalogue, rng: np.random.Generator, a: float, b: float,
             c: float = 0.0, base: np.ndarray | None = None) -> np.ndarray:
    """Indexes of movies that have a metric, with probability sigmoid(a + b*fame + c*recency),
    optionally only among `base` (a bool mask)."""
    p = _sigmoid(a + b * cat.fame + c * cat.recency)
    mask = rng.random(cat.n) < p
    if base is not None:
        mask &= base
    return np.flatnonzero(mask)


def _has_tmdb(cat: Catalogue) -> np.ndarray:
    # Shared presence for the TMDb family: derived from its own fixed stream of the seed.
    r = np.random.default_rng(np.random.SeedSequence([cat.seed, 7001])).random(cat.n)
    return r < _sigmoid(3.0 + 1.5 * cat.fame)


def _has_imdb(cat: Catalogue) -> np.ndarray:
    r = np.random.default_rng(np.random.SeedSequence([cat.seed, 7002])).random(cat.n)
    return r < _sigmoid(1.4 + 1.6 * cat.fame)


def _tmdb_votes_latent(cat: Catalogue) -> np.ndarray:
    noise = np.random.default_rng(np.random.SeedSequence([cat.seed, 7003])).standard_normal(cat.n)
    return 2.3 + 1.9 * cat.fame + 0.9 * noise   # log of the vote count


def _money_latent(cat: Catalogue) -> tuple[np.ndarray, np.ndarray]:
    """(log budget, log worldwide gross) shared by the money metrics, and whether a film has
    money data at all."""
    g = np.random.default_rng(np.random.SeedSequence([cat.seed, 7004]))
    log_budget = 15.4 + 0.8 * cat.fame + 0.6 * cat.recency + 1.0 * g.standard_normal(cat.n)
    log_gross = log_budget + 0.2 + 0.5 * cat.quality + 0.6 * cat.fame + 1.1 * g.standard_normal(cat.n)
    return log_budget, log_gross


def _has_money(cat: Catalogue) -> np.ndarray:
    r = np.random.default_rng(np.random.SeedSequence([cat.seed, 7005])).random(cat.n)
    return r < _sigmoid(-1.9 + 1.4 * cat.fame + 0.4 * cat.recency)


def _rating(cat, rng, base, center, q_slope, noise, lo, hi, decimals, few_votes_noise=0.0):
    idx = np.flatnonzero(base)
    v = center + q_slope * cat.quality[idx] + noise * rng.standard_normal(idx.size)
    if few_votes_noise:
        # films with few votes have noisier averages
        small = _tmdb_votes_latent(cat)[idx] < 2.0
        v += few_votes_noise * small * rng.standard_normal(idx.size)
    return idx, np.clip(np.round(v, decimals), lo, hi)


def _percent(cat, rng, idx, a, q_slope, f_slope, noise):
    z = a + q_slope * cat.quality[idx] + f_slope * cat.fame[idx] + noise * rng.standard_normal(idx.size)
    return np.clip(np.round(100 * _sigmoid(z)), 0, 100)


def _ranked_list(cat, rng, full_size, max_rank, score, eligible):
    """A fixed-size ranking: the best `list_size` eligible films by score (plus noise), given
    distinct ranks from 1..max_rank in score order."""
    k = min(list_size(full_size, cat.n), int(eligible.sum()))
    if k == 0:
        return np.empty(0, np.int64), np.empty(0)
    s = np.where(eligible, score + 0.3 * rng.standard_normal(cat.n), -np.inf)
    chosen = np.argpartition(-s, k - 1)[:k]
    chosen = chosen[np.argsort(-s[chosen], kind="stable")]
    ranks = np.sort(rng.choice(np.arange(1, max_rank + 1), size=k, replace=False))
    return chosen, ranks.astype(np.float64)


def _flag_list(cat, rng, full_size, score, eligible):
    idx, _ = _ranked_list(cat, rng, full_size, max(full_size, 1), score, eligible)
    return idx, np.ones(idx.size)


def _metric_makers() -> dict[str, Callable]:
    def tmdb_rating(cat, rng):
        return _rating(cat, rng, _has_tmdb(cat), 6.1, 0.9, 0.45, 0.5, 10.0, 1, few_votes_noise=1.0)

    def tmdb_vote_count(cat, rng):
        idx = np.flatnonzero(_has_tmdb(cat))
        return idx, np.minimum(np.floor(np.exp(_tmdb_votes_latent(cat)[idx])), 5e6)

    def imdb_rating(cat, rng):
        return _rating(cat, rng, _has_imdb(cat), 6.2, 0.95, 0.35, 1.0, 10.0, 1)

    def imdb_vote_count(cat, rng):
        idx = np.flatnonzero(_has_imdb(cat))
        v = _tmdb_votes_latent(cat)[idx] + 2.2 + 0.5 * rng.standard_normal(idx.size)
        return idx, np.minimum(np.floor(np.exp(v)) + 5, 3e7)

    def metacritic_score(cat, rng):
        idx = _present(cat, rng, -3.2, 1.5, 0.6, base=_has_imdb(cat))
        v = 57 + 16 * cat.quality[idx] + 8 * rng.standard_normal(idx.size)
        return idx, np.clip(np.round(v), 1, 100)

    def rt_tomatometer(cat, rng):
        idx = _present(cat, rng, -2.4, 1.5, 0.5, base=_has_imdb(cat))
        return idx, _percent(cat, rng, idx, 0.4, 1.7, 0.0, 0.6)

    def rt_audience_score(cat, rng):
        idx = _present(cat, rng, -2.2, 1.5, 0.5, base=_has_imdb(cat))
        return idx, _percent(cat, rng, idx, 0.6, 1.2, 0.3, 0.6)

    def tmdb_budget(cat, rng):
        lb, _ = _money_latent(cat)
        idx = np.flatnonzero(_has_money(cat) & (rng.random(cat.n) < 0.9))
        return idx, np.clip(np.round(np.exp(lb[idx]), -3), 1000, 460e6)

    def tmdb_revenue(cat, rng):
        _, lg = _money_latent(cat)
        idx = np.flatnonzero(_has_money(cat) & (rng.random(cat.n) < 0.85))
        return idx, np.clip(np.round(np.exp(lg[idx] + 0.05 * rng.standard_normal(idx.size))), 0, 2.9e9)

    def bom_worldwide(cat, rng):
        _, lg = _money_latent(cat)
        idx = np.flatnonzero(_has_money(cat) & (cat.year >= 1980) & (rng.random(cat.n) < 0.6))
        return idx, np.clip(np.round(np.exp(lg[idx])), 0, 2.9e9)

    def _domestic_share(cat):
        g = np.random.default_rng(np.random.SeedSequence([cat.seed, 7006]))
        return g.beta(2.0, 3.0, cat.n)

    def bom_domestic(cat, rng):
        _, lg = _money_latent(cat)
        idx = np.flatnonzero(_has_money(cat) & (cat.year >= 1980) & (rng.random(cat.n) < 0.6))
        return idx, np.clip(np.round(np.exp(lg[idx]) * _domestic_share(cat)[idx]), 0, 9.9e8)

    def omdb_box_office(cat, rng):
        _, lg = _money_latent(cat)
        idx = np.flatnonzero(_has_money(cat) & (rng.random(cat.n) < 0.7))
        v = np.exp(lg[idx] + 0.03 * rng.standard_normal(idx.size)) * _domestic_share(cat)[idx]
        return idx, np.clip(np.round(v), 0, 9.9e8)

    def _nominations(cat):
        g = np.random.default_rng(np.random.SeedSequence([cat.seed, 7007]))
        p = _sigmoid(-7.6 + 1.4 * cat.quality + 1.0 * cat.fame)
        nominated = (g.random(cat.n) < p) & (cat.year >= 1928) & (cat.year <= 2025)
        count = np.minimum(g.geometric(0.45, cat.n), 14)
        return nominated, count

    def oscar_nominations(cat, rng):
        nominated, count = _nominations(cat)
        idx = np.flatnonzero(nominated)
        return idx, count[idx].astype(np.float64)

    def oscar_wins(cat, rng):
        nominated, count = _nominations(cat)
        idx = np.flatnonzero(nominated)   # nominees have a win count, 0 included
        p = _sigmoid(-1.6 + 0.8 * cat.quality[idx])
        return idx, rng.binomial(count[idx], p).astype(np.float64)

    def _festival(cat, key, a, since):
        g = np.random.default_rng(np.random.SeedSequence([cat.seed, key]))
        p = _sigmoid(a + 1.6 * cat.quality + 0.2 * cat.fame)
        return (g.random(cat.n) < p) & (cat.year >= since) & (cat.year <= 2026)

    def cannes_selection(cat, rng):
        idx = np.flatnonzero(_festival(cat, 7010, -8.3, 1946))
        return idx, np.ones(idx.size)

    def cannes_palme_dor(cat, rng):
        idx = np.flatnonzero(_festival(cat, 7010, -8.3, 1946))   # competition entries: 0 or 1
        return idx, (rng.random(idx.size) < 0.05 + 0.05 * (cat.quality[idx] > 1.5)).astype(np.float64)

    def venice_selection(cat, rng):
        idx = np.flatnonzero(_festival(cat, 7011, -8.5, 1932))
        return idx, np.ones(idx.size)

    def venice_golden_lion(cat, rng):
        idx = np.flatnonzero(_festival(cat, 7011, -8.5, 1932))
        return idx, (rng.random(idx.size) < 0.05 + 0.05 * (cat.quality[idx] > 1.5)).astype(np.float64)

    def berlin_golden_bear(cat, rng):
        idx = np.flatnonzero(_festival(cat, 7012, -10.9, 1951))   # winners only
        return idx, np.ones(idx.size)

    def sundance_grand_jury(cat, rng):
        idx = np.flatnonzero(_festival(cat, 7013, -10.0, 1985))
        return idx, np.ones(idx.size)

    def afi_top_100(cat, rng):
        return _ranked_list(cat, rng, 100, 100, cat.quality + 0.4 * cat.fame, cat.year <= 2005)

    def bfi_top_100(cat, rng):
        return _ranked_list(cat, rng, 100, 100, cat.quality + 0.3 * cat.fame, cat.year <= 1999)

    def sight_sound_rank(cat, rng):
        return _ranked_list(cat, rng, 250, 250, 1.2 * cat.quality, cat.year <= 2020)

    def criterion_collection(cat, rng):
        return _flag_list(cat, rng, 1800, cat.quality + 0.2 * cat.fame, cat.year <= 2025)

    def movies_1001(cat, rng):
        return _flag_list(cat, rng, 1001, cat.quality + 0.5 * cat.fame, cat.year <= 2024)

    def nfr_preserved(cat, rng):
        return _flag_list(cat, rng, 900, cat.quality + 0.3 * cat.fame, cat.year <= 2016)

    def tmdb_popularity(cat, rng):
        idx = np.flatnonzero(_has_tmdb(cat))
        v = np.exp(0.2 + 1.1 * cat.fame[idx] + 0.6 * cat.recency[idx] + 0.5 * rng.standard_normal(idx.size))
        return idx, np.round(v, 3)

    def tmdb_trending_rank(cat, rng):
        k_full = 1000   # the weekly trending list, at 1M movies
        return _ranked_list(cat, rng, k_full, list_size(k_full, cat.n, minimum=20),
                            cat.fame + cat.recency, cat.year >= 2025)

    def twitter_mentions(cat, rng):
        idx = _present(cat, rng, -2.6, 1.2, 1.0)
        v = np.exp(3.0 + 1.8 * cat.fame[idx] + 1.2 * rng.standard_normal(idx.size))
        return idx, np.minimum(np.floor(v), 5e7)

    makers = {name: fn for name, fn in locals().items() if name in METRIC_CODES}
    makers["1001_movies"] = movies_1001
    assert set(makers) == set(METRIC_CODES), set(METRIC_CODES) - set(makers)
    return makers


# --------------------------------------------------------------------------------------
# COPY text
# --------------------------------------------------------------------------------------
def genre_literal(mask_row: np.ndarray) -> str:
    """A text[] literal, every element quoted ("Science Fiction" has a space)."""
    return "{" + ",".join(f'"{GENRES[j]}"' for j in np.flatnonzero(mask_row)) + "}"


def movie_lines(cat: Catalogue, first_id: int, start: int, stop: int) -> Iterator[str]:
    """COPY text rows (id, title, release_date, genres, director, tmdb_id, imdb_id) for
    catalogue indexes start..stop-1. Synthetic external ids live in their own ranges
    (tmdb 900M+, imdb tt9NNNNNNNNN) so they never collide with real ones."""
    dates = np.datetime_as_string(cat.release_date[start:stop], unit="D")
    for k, i in enumerate(range(start, stop)):
        mid = first_id + i
        d = dates[k]
        director = cat.director_name(i)
        d = NULL if d == "NaT" else d
        director = NULL if director is None else director
        yield (f"{mid}\t{cat.title(i)}\t{d}\t{genre_literal(cat.genre_mask[i])}\t"
               f"{director}\t{900_000_000 + mid}\ttt9{mid:09d}\n")


def format_raw(values: np.ndarray) -> list[str]:
    """Shortest exact text of each value: whole numbers without a decimal point."""
    whole = values == np.floor(values)
    if whole.all() and np.abs(values).max(initial=0) < 2**53:
        return values.astype(np.int64).astype(str).tolist()
    return [repr(float(v)) if not w else str(int(v)) for v, w in zip(values.tolist(), whole.tolist())]


def observed_times(n: int, rng: np.random.Generator) -> np.ndarray:
    """When each value was observed: within the 180 days before the reference date."""
    secs = rng.integers(0, 180 * 86400, n)
    return np.datetime_as_string(REFERENCE_DATE - secs.astype("timedelta64[s]"), unit="s")


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------
@dataclass
class WriteStats:
    movies: int
    values: int
    first_id: int
    seconds: float
    per_metric: dict[str, int]


def write(conn, n_movies: int, seed: int = 42, *, truncate: bool = False,
          progress: bool = True, analyze: bool = True, min_coverage: float = 0.0) -> WriteStats:
    """Generate (n_movies, seed) and load it through COPY into reelscore.movies and
    reelscore.metric_values, in one transaction. Movie ids continue after the largest
    existing id. Metrics missing from the registry are skipped (and reported)."""
    t0 = time.monotonic()
    ids = dict(conn.execute("SELECT code, id FROM reelscore.metric_definitions").fetchall())
    codes = tuple(c for c in METRIC_CODES if c in ids)
    cat = generate(n_movies, seed, codes, min_coverage=min_coverage)
    total = cat.n + sum(v[0].size for v in cat.values.values())
    bar = _progress(total, progress)
    source = f"synth:seed={seed}"
    with conn.transaction():
        # Scoring's documented switch for bulk loads: mark the new movies' features stale
        # instead of rescoring them inside the COPY (refresh_scores() rescores them).
        conn.execute("SELECT set_config('reelscore.defer_scoring', 'on', true)")
        if truncate:
            # two statements: a TRUNCATE trigger on movies may itself truncate metric_values
            conn.execute("TRUNCATE reelscore.metric_values")
            conn.execute("TRUNCATE reelscore.movies CASCADE")
        first_id = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM reelscore.movies").fetchone()[0]
        with conn.cursor() as cur:
            with cur.copy("COPY reelscore.movies (id, title, release_date, genres, director, tmdb_id, imdb_id) "
                          "FROM STDIN") as cp:
                for start in range(0, cat.n, CHUNK_ROWS // 4):
                    stop = min(cat.n, start + CHUNK_ROWS // 4)
                    cp.write("".join(movie_lines(cat, first_id, start, stop)))
                    bar(stop - start)
            conn.execute("SELECT setval(pg_get_serial_sequence('reelscore.movies', 'id'), "
                         "(SELECT max(id) FROM reelscore.movies))")
            if analyze:   # statistics for the statement triggers that join the new values to movies
                conn.execute("ANALYZE reelscore.movies")
            per_metric = {}
            trng = np.random.default_rng(np.random.SeedSequence([seed, 9001]))
            with cur.copy("COPY reelscore.metric_values (movie_id, metric_id, raw_value, observed_at, "
                          "source_record, updated_at) FROM STDIN") as cp:
                for code in codes:
                    idx, val = cat.values[code]
                    per_metric[code] = int(idx.size)
                    mid = ids[code]
                    for start in range(0, idx.size, CHUNK_ROWS):
                        stop = min(idx.size, start + CHUNK_ROWS)
                        movie_ids = (idx[start:stop] + first_id).tolist()
                        raws = format_raw(val[start:stop])
                        obs = observed_times(stop - start, trng).tolist()
                        cp.write("".join(f"{m}\t{mid}\t{r}\t{o}+00\t{source}\t{o}+00\n"
                                         for m, r, o in zip(movie_ids, raws, obs)))
                        bar(stop - start)
    if analyze:
        conn.execute("ANALYZE reelscore.movies")
        conn.execute("ANALYZE reelscore.metric_values")
    bar(0, done=True)
    return WriteStats(movies=cat.n, values=sum(per_metric.values()), first_id=first_id,
                      seconds=time.monotonic() - t0, per_metric=per_metric)


def _progress(total: int, enabled: bool):
    """A callable advancing progress on stderr: a tqdm bar on a terminal, a line per 10%
    otherwise (logs, CI), or nothing."""
    if not enabled:
        return lambda k, done=False: None
    if sys.stderr.isatty():
        from tqdm import tqdm
        bar = tqdm(total=total, unit="row", unit_scale=True, desc="synth", file=sys.stderr,
                   mininterval=0.5, dynamic_ncols=True)

        def advance(k: int, done: bool = False) -> None:
            if k:
                bar.update(k)
            if done:
                bar.close()
        return advance
    state = {"rows": 0, "next": 0.1, "t0": time.monotonic()}

    def advance_lines(k: int, done: bool = False) -> None:
        state["rows"] += k
        share = state["rows"] / max(total, 1)
        if share >= state["next"] or done:
            print(f"synth: {state['rows']:,} of {total:,} rows ({share:.0%}), "
                  f"{time.monotonic() - state['t0']:.1f} s", file=sys.stderr, flush=True)
            while state["next"] <= share:
                state["next"] += 0.1
    return advance_lines
