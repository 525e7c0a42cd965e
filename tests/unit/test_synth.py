"""The synthetic generator: deterministic, valid for the registry's raw scales, and shaped
like real movie data (coverage, heavy tails, correlated ratings, sparse awards, date spread).
Expectations are stated independently here (the registry's scales copied from the seed's
inventory, statistics computed with numpy), not read from reelscore.synth."""
import re

import numpy as np
import pytest

from reelscore import synth

# code -> (data_type, raw_scale_min, raw_scale_max), from the seed's inventory (migration 0002)
SCALES = {
    "tmdb_rating": ("numeric", 0, 10), "tmdb_vote_count": ("count", 0, None),
    "imdb_rating": ("numeric", 0, 10), "imdb_vote_count": ("count", 0, None),
    "metacritic_score": ("numeric", 0, 100), "rt_tomatometer": ("numeric", 0, 100),
    "rt_audience_score": ("numeric", 0, 100),
    "tmdb_budget": ("money", 0, None), "tmdb_revenue": ("money", 0, None),
    "omdb_box_office": ("money", 0, None), "bom_domestic": ("money", 0, None),
    "bom_worldwide": ("money", 0, None),
    "oscar_nominations": ("count", 0, None), "oscar_wins": ("count", 0, None),
    "cannes_palme_dor": ("boolean", 0, 1), "cannes_selection": ("boolean", 0, 1),
    "venice_golden_lion": ("boolean", 0, 1), "venice_selection": ("boolean", 0, 1),
    "berlin_golden_bear": ("boolean", 0, 1), "sundance_grand_jury": ("boolean", 0, 1),
    "afi_top_100": ("rank", 1, 100), "bfi_top_100": ("rank", 1, 100),
    "sight_sound_rank": ("rank", 1, 250), "criterion_collection": ("boolean", 0, 1),
    "1001_movies": ("boolean", 0, 1), "nfr_preserved": ("boolean", 0, 1),
    "tmdb_popularity": ("numeric", 0, None), "tmdb_trending_rank": ("rank", 1, None),
    "twitter_mentions": ("count", 0, None),
}
N = 60_000


@pytest.fixture(scope="module")
def cat():
    return synth.generate(N, seed=11)


def joined(cat, a, b):
    """Values of metrics a and b for the movies that have both."""
    ia, va = cat.values[a]
    ib, vb = cat.values[b]
    _common, xa, xb = np.intersect1d(ia, ib, return_indices=True)
    return va[xa], vb[xb]


def coverage(cat, code):
    return cat.values[code][0].size / cat.n


def test_all_29_metrics_generated(cat):
    assert set(cat.values) == set(SCALES)


def test_deterministic_for_a_seed():
    a, b, c = synth.generate(3000, 5), synth.generate(3000, 5), synth.generate(3000, 6)
    for code in SCALES:
        np.testing.assert_array_equal(a.values[code][0], b.values[code][0])
        np.testing.assert_array_equal(a.values[code][1], b.values[code][1])
    assert [a.title(i) for i in range(50)] == [b.title(i) for i in range(50)]
    assert not np.array_equal(a.values["imdb_rating"][1], c.values["imdb_rating"][1])
    # generating a subset of metrics does not change the ones generated
    sub = synth.generate(3000, 5, codes=("imdb_rating",))
    np.testing.assert_array_equal(sub.values["imdb_rating"][1], a.values["imdb_rating"][1])


def test_values_fit_raw_scale_and_type(cat):
    for code, (dtype, lo, hi) in SCALES.items():
        idx, val = cat.values[code]
        assert np.all((idx >= 0) & (idx < cat.n)), code
        assert np.unique(idx).size == idx.size, f"{code}: one value per movie"
        assert np.all(np.isfinite(val)), code
        if lo is not None:
            assert val.min(initial=lo) >= lo, code
        if hi is not None:
            assert val.max(initial=hi) <= hi, code
        if dtype in ("count", "rank", "boolean"):
            assert np.all(val == np.floor(val)), code
        if dtype == "boolean":
            assert set(np.unique(val)) <= {0.0, 1.0}, code


@pytest.mark.parametrize("code,lo,hi", [
    ("tmdb_rating", 0.80, 0.98), ("imdb_rating", 0.60, 0.90), ("metacritic_score", 0.04, 0.25),
    ("rt_tomatometer", 0.08, 0.35), ("tmdb_budget", 0.10, 0.35), ("bom_worldwide", 0.05, 0.25),
    ("tmdb_popularity", 0.80, 0.98), ("twitter_mentions", 0.05, 0.30),
    ("oscar_nominations", 0.001, 0.01), ("cannes_selection", 0.0003, 0.003),
    ("berlin_golden_bear", 0.0, 0.0005), ("criterion_collection", 0.0005, 0.004),
])
def test_coverage_is_realistic(cat, code, lo, hi):
    assert lo <= coverage(cat, code) <= hi


def test_coverage_falls_from_common_to_rare(cat):
    order = ["tmdb_rating", "imdb_rating", "tmdb_budget", "metacritic_score", "oscar_nominations",
             "cannes_selection", "cannes_palme_dor"]
    shares = [coverage(cat, c) for c in order]
    assert shares[:5] == sorted(shares[:5], reverse=True)
    assert sum(cat.values["cannes_palme_dor"][1]) < cat.values["cannes_selection"][0].size


def test_votes_and_money_are_heavy_tailed(cat):
    for code in ("imdb_vote_count", "tmdb_vote_count", "twitter_mentions"):
        v = np.sort(cat.values[code][1])[::-1]
        top1 = v[: v.size // 100].sum() / v.sum()
        assert top1 > 0.25, f"{code}: top 1% hold only {top1:.2f} of the total"
        assert v[0] > 1000 * max(np.median(v), 1), code
    for code in ("tmdb_budget", "tmdb_revenue", "bom_worldwide"):
        v = cat.values[code][1]
        assert v.max() > 20 * np.median(v), code
        # log-money is roughly symmetric (log-normal): mean and median of the logs are close
        lv = np.log(v[v > 0])
        assert abs(lv.mean() - np.median(lv)) < 0.3 * lv.std(), code


def test_ratings_correlate_across_sources(cat):
    r = np.corrcoef(*joined(cat, "imdb_rating", "tmdb_rating"))[0, 1]
    assert r > 0.6
    assert np.corrcoef(*joined(cat, "metacritic_score", "imdb_rating"))[0, 1] > 0.5
    assert np.corrcoef(*joined(cat, "rt_tomatometer", "metacritic_score"))[0, 1] > 0.5
    # but they are not copies of each other
    assert r < 0.98


def test_awards_are_consistent(cat):
    noms, wins = joined(cat, "oscar_nominations", "oscar_wins")
    assert noms.size == cat.values["oscar_wins"][0].size
    assert np.all(wins <= noms) and np.all(noms >= 1)
    assert (wins == 0).any() and (wins > 0).any()
    palme_idx = cat.values["cannes_palme_dor"][0]
    assert set(palme_idx) <= set(cat.values["cannes_selection"][0])
    # award winners are better films on average: their IMDb ratings beat the catalogue's
    imdb_idx, imdb = cat.values["imdb_rating"]
    nominated = np.isin(imdb_idx, cat.values["oscar_nominations"][0])
    assert imdb[nominated].mean() > imdb.mean() + 0.5


def test_lists_are_fixed_size_rankings(cat):
    for code, full, max_rank in (("afi_top_100", 100, 100), ("sight_sound_rank", 250, 250)):
        idx, ranks = cat.values[code]
        expected = min(full, max(5, round(full * N / 1_000_000)))
        assert idx.size == expected
        assert np.unique(ranks).size == ranks.size and ranks.min() >= 1 and ranks.max() <= max_rank
    assert synth.list_size(100, 1_000_000) == 100 and synth.list_size(100, 1000) == 5


def test_release_dates_spread_and_skew_recent(cat):
    years = cat.year
    assert years.min() <= 1930 and years.max() == 2026
    assert 1995 <= np.median(years) <= 2020
    assert np.unique(years // 10).size >= 9
    dates = cat.release_date
    known = dates[~np.isnat(dates)]
    assert 0.005 < np.isnat(dates).mean() < 0.05
    assert known.max() <= np.datetime64("2026-11-25")


def test_copy_rows_are_well_formed(cat):
    lines = list(synth.movie_lines(cat, 101, 0, 500))
    titles = set()
    for k, line in enumerate(lines):
        assert line.endswith("\n")
        f = line[:-1].split("\t")
        assert len(f) == 7
        assert int(f[0]) == 101 + k
        assert f[1] and "\\" not in f[1]
        titles.add(f[1])
        assert f[2] == "\\N" or re.fullmatch(r"\d{4}-\d{2}-\d{2}", f[2])
        assert re.fullmatch(r'\{"[A-Za-z ]+"(,"[A-Za-z ]+")*\}', f[3])
        assert re.fullmatch(r"tt[0-9]{5,10}", f[6])
    assert len(titles) > 300  # titles vary


def test_format_raw_round_trips():
    vals = np.array([0.0, 6.1, 100.0, 1234567.0, 0.007, 932.441, 2.9e9])
    text = synth.format_raw(vals)
    assert [float(t) for t in text] == vals.tolist()
    assert text[0] == "0" and text[2] == "100" and text[6] == "2900000000"


def test_rejects_bad_counts():
    with pytest.raises(ValueError):
        synth.generate(0)


def test_min_coverage_fills_every_metric_from_its_own_values():
    n, share = 5000, 0.6
    sparse = synth.generate(n, 5)
    dense = synth.generate(n, 5, min_coverage=share)
    total = 0
    for code in SCALES:
        si, sv = sparse.values[code]
        di, dv = dense.values[code]
        total += di.size
        assert np.unique(di).size == di.size, code                     # one value per movie
        if sv.size == 0:
            assert di.size == 0, code                                  # nothing to draw from
            continue
        assert di.size == max(si.size, int(np.ceil(share * n))), code
        # the realistic values are all still there, each on its own movie
        kept = dict(zip(di.tolist(), dv.tolist()))
        assert all(kept[i] == v for i, v in zip(si.tolist(), sv.tolist())), code
        # the added ones are values the metric already had
        assert set(dv.tolist()) <= set(sv.tolist()), code
    assert total >= 0.55 * n * len(SCALES)
    again = synth.generate(n, 5, min_coverage=share)
    for code in SCALES:
        np.testing.assert_array_equal(again.values[code][1], dense.values[code][1])


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_rejects_bad_min_coverage(share):
    with pytest.raises(ValueError, match="min_coverage"):
        synth.generate(100, min_coverage=share)
