"""reelpy.abtest (pure stdlib) against scipy on the same numbers, and its error rates."""
import math

import numpy as np
import pytest
from reelpy import abtest
from scipy import stats


@pytest.mark.parametrize("x", [-8.0, -3.1, -1.0, 0.0, 0.4, 1.96, 5.5])
def test_norm_cdf_and_ppf_match_scipy(x):
    assert abtest.norm_cdf(x) == pytest.approx(stats.norm.cdf(x), rel=1e-12, abs=1e-300)
    p = stats.norm.cdf(x)
    if 0 < p < 1:
        assert abtest.norm_ppf(p) == pytest.approx(stats.norm.ppf(p), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("df", [1.0, 2.5, 7.0, 29.3, 120.0, 5000.0])
@pytest.mark.parametrize("t", [-6.0, -2.1, -0.3, 0.0, 0.7, 1.9, 4.4, 12.0])
def test_t_cdf_matches_scipy(t, df):
    assert abtest.t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), rel=1e-9, abs=1e-13)


@pytest.mark.parametrize("df", [1.0, 3.3, 10.0, 57.8, 1000.0])
@pytest.mark.parametrize("p", [0.001, 0.025, 0.2, 0.5, 0.9, 0.975, 0.9995])
def test_t_ppf_matches_scipy(p, df):
    assert abtest.t_ppf(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-8, abs=1e-10)


def _summary(x):
    return len(x), float(np.mean(x)), float(np.var(x, ddof=1))


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_welch_matches_scipy_ttest_ind(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(3.5, 1.0, size=rng.integers(5, 300))
    b = rng.normal(3.5 + 0.2 * seed, 1.7, size=rng.integers(5, 300))
    ref = stats.ttest_ind(b, a, equal_var=False)
    got = abtest.welch_t_test(*_summary(a), *_summary(b), alpha=0.05)
    assert got["t"] == pytest.approx(ref.statistic, rel=1e-10)
    assert got["p_value"] == pytest.approx(ref.pvalue, rel=1e-7, abs=1e-14)
    assert got["df"] == pytest.approx(ref.df, rel=1e-10)
    lo, hi = ref.confidence_interval(0.95)
    assert got["ci"][0] == pytest.approx(lo, rel=1e-8)
    assert got["ci"][1] == pytest.approx(hi, rel=1e-8)


@pytest.mark.parametrize("x1,n1,x2,n2", [(120, 1000, 150, 1000), (5, 40, 15, 60), (300, 310, 290, 305)])
def test_two_proportion_z_matches_formula_with_scipy_normal(x1, n1, x2, n2):
    p1, p2, pooled = x1 / n1, x2 / n2, (x1 + x2) / (n1 + n2)
    z = (p2 - p1) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    p = 2 * stats.norm.sf(abs(z))
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    q = stats.norm.ppf(0.975)
    got = abtest.two_proportion_z_test(x1, n1, x2, n2, alpha=0.05)
    assert got["z"] == pytest.approx(z, rel=1e-12)
    assert got["p_value"] == pytest.approx(p, rel=1e-9)
    assert got["ci"] == pytest.approx([p2 - p1 - q * se, p2 - p1 + q * se], rel=1e-9)
    # the pooled z statistic squared is the Pearson chi-square of the 2x2 table
    chi2 = stats.chi2_contingency([[x1, n1 - x1], [x2, n2 - x2]], correction=False)[0]
    assert got["z"] ** 2 == pytest.approx(chi2, rel=1e-9)


def test_sample_size_means_gives_the_requested_power():
    n_c, n_e = abtest.sample_size_means(sd=1.0, mde=0.2, alpha=0.05, power=0.8, split=0.5)
    # textbook: 2 (z_.975 + z_.8)^2 / 0.2^2 = 392.4 -> 393 per arm
    assert (n_c, n_e) == (393, 393)
    # the power of a z test with these sizes, computed with scipy, is at least 0.8
    se = math.sqrt(1 / n_c + 1 / n_e)
    power = stats.norm.sf(stats.norm.ppf(0.975) - 0.2 / se)
    assert 0.8 <= power < 0.802
    # unequal split needs more users in total
    a, b = abtest.sample_size_means(1.0, 0.2, split=0.2)
    assert a + b > 2 * 393 and b < a


def test_sample_size_proportions_gives_the_requested_power():
    n_c, n_e = abtest.sample_size_proportions(0.10, 0.02, alpha=0.05, power=0.9)
    se = math.sqrt(0.1 * 0.9 / n_c + 0.12 * 0.88 / n_e)
    power = stats.norm.sf(stats.norm.ppf(0.975) - 0.02 / se)
    assert 0.9 <= power < 0.9005


def test_aa_tests_reject_at_about_alpha():
    """2,000 simulated A/A tests (no true difference): Welch's test rejects about 5%."""
    rng = np.random.default_rng(20261126)
    rejections = 0
    runs = 2000
    for _ in range(runs):
        a = rng.normal(3.5, 1.1, 60)
        b = rng.normal(3.5, 1.1, 60)
        rejections += abtest.welch_t_test(*_summary(a), *_summary(b))["p_value"] < 0.05
    rate = rejections / runs
    sd = math.sqrt(0.05 * 0.95 / runs)
    assert abs(rate - 0.05) < 3.5 * sd, rate


def test_aa_proportion_tests_reject_at_about_alpha():
    rng = np.random.default_rng(7)
    runs = 2000
    x1 = rng.binomial(500, 0.3, runs)
    x2 = rng.binomial(500, 0.3, runs)
    rate = np.mean([abtest.two_proportion_z_test(a, 500, b, 500)["p_value"] < 0.05 for a, b in zip(x1, x2)])
    assert abs(rate - 0.05) < 3.5 * math.sqrt(0.05 * 0.95 / runs), rate


def test_a_true_effect_is_detected_with_about_the_planned_power():
    rng = np.random.default_rng(11)
    n_c, n_e = abtest.sample_size_means(sd=1.0, mde=0.3, power=0.8)
    runs = 600
    hits = sum(abtest.welch_t_test(*_summary(rng.normal(0, 1, n_c)), *_summary(rng.normal(0.3, 1, n_e)))["p_value"] < 0.05
               for _ in range(runs))
    assert abs(hits / runs - 0.8) < 3.5 * math.sqrt(0.8 * 0.2 / runs)


def test_analyze_refuses_a_winner_before_the_planned_sample_size():
    big = {"n": 50, "mean": 4.0, "var": 0.5}
    small = {"n": 50, "mean": 3.0, "var": 0.5}
    early = abtest.analyze("mean", small, big, planned=(100, 100))
    assert early["decision"] == "insufficient_sample" and early["winner"] is None
    assert early["result"]["p_value"] < 1e-6  # overwhelming, yet no winner
    done = abtest.analyze("mean", dict(small, n=100), dict(big, n=100), planned=(100, 100))
    assert done["decision"] == "experiment_wins" and done["winner"] == "experiment"
    same = abtest.analyze("proportion", {"n": 400, "successes": 100}, {"n": 400, "successes": 101}, (400, 400))
    assert same["decision"] == "no_significant_difference"
    with pytest.raises(ValueError):
        abtest.analyze("median", small, big, (1, 1))
