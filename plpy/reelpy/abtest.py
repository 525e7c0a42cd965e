"""A/B test statistics, pure standard library (the server's Python has no numpy/scipy).

- normal CDF/quantile, Student t CDF/quantile (regularized incomplete beta by Lentz's
  continued fraction, quantiles by bracketing + bisection/Newton);
- Welch's t-test for a difference of means, with its confidence interval;
- the two-proportion z-test (pooled standard error for the test, unpooled for the CI);
- sample size per arm from a power calculation (normal approximation);
- `analyze(...)`: the decision, which refuses to name a winner before both arms reach
  the planned sample size.

Everything is checked against scipy in tests/unit/test_ml_abtest.py."""
import math

__all__ = [
    "analyze",
    "norm_cdf",
    "norm_ppf",
    "sample_size_means",
    "sample_size_proportions",
    "t_cdf",
    "t_ppf",
    "two_proportion_z_test",
    "welch_t_test",
]


# ---- distributions -------------------------------------------------------------------

def norm_cdf(x):
    """Standard normal CDF."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def norm_sf(x):
    """Standard normal survival function 1 - CDF, accurate in the upper tail."""
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def norm_ppf(p):
    """Standard normal quantile (Acklam's rational approximation, then two Newton steps)."""
    if not 0.0 < p < 1.0:
        if p == 0.0:
            return -math.inf
        if p == 1.0:
            return math.inf
        raise ValueError(f"probability must be in [0, 1], got {p!r}")
    a = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
         1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00)
    b = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
         6.680131188771972e+01, -1.328068155288572e+01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
         -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00)
    plow = 0.02425
    if p < plow:
        q = math.sqrt(-2 * math.log(p))
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    elif p <= 1 - plow:
        q = p - 0.5
        r = q * q
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    else:
        q = math.sqrt(-2 * math.log(1 - p))
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    for _ in range(2):  # Newton refinement on the CDF
        err = norm_cdf(x) - p
        x -= err / (math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi))
    return x


def _betacf(a, b, x):
    """Continued fraction of the regularized incomplete beta (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a, b, x):
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(lbeta + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(t, df):
    """Student t survival function P(T > t) with df degrees of freedom (df may be fractional)."""
    if math.isinf(df):
        return norm_sf(t)
    x = df / (df + t * t)
    tail = 0.5 * betainc(df / 2.0, 0.5, x)  # P(T > |t|)
    return tail if t >= 0 else 1.0 - tail


def t_cdf(t, df):
    """Student t CDF."""
    return 1.0 - t_sf(t, df) if t >= 0 else t_sf(-t, df)


def t_pdf(t, df):
    """Student t density."""
    return math.exp(math.lgamma((df + 1) / 2.0) - math.lgamma(df / 2.0)
                    - 0.5 * math.log(df * math.pi) - (df + 1) / 2.0 * math.log1p(t * t / df))


def t_ppf(p, df):
    """Student t quantile: Newton's method from the normal quantile, safeguarded by a
    bracket that falls back to bisection."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {p!r}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    lo, hi = 0.0, max(1.0, norm_ppf(p))
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    x = min(max(norm_ppf(p), lo), hi)
    for _ in range(200):
        f = t_cdf(x, df) - p
        if f < 0:
            lo = x
        else:
            hi = x
        step = f / t_pdf(x, df)
        nxt = x - step
        if not lo < nxt < hi:
            nxt = 0.5 * (lo + hi)
        if abs(nxt - x) < 1e-13 * max(1.0, abs(x)):
            return nxt
        x = nxt
    return x


# ---- tests -----------------------------------------------------------------------------

def welch_t_test(n1, mean1, var1, n2, mean2, var2, alpha=0.05):
    """Welch's two-sided t-test of mean2 - mean1 (arm 2 = experiment, arm 1 = control),
    from each arm's size, mean and sample variance (ddof=1). Returns the difference,
    its standard error, t, Welch-Satterthwaite df, the p-value and the (1-alpha) CI."""
    if n1 < 2 or n2 < 2:
        raise ValueError(f"each arm needs at least 2 observations (got {n1} and {n2})")
    s1, s2 = var1 / n1, var2 / n2
    se = math.sqrt(s1 + s2)
    diff = mean2 - mean1
    if se == 0.0:
        df = float(n1 + n2 - 2)
        t = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        p = 1.0 if diff == 0 else 0.0
        return {"diff": diff, "se": 0.0, "t": t, "df": df, "p_value": p, "ci": [diff, diff]}
    df = (s1 + s2) ** 2 / (s1 * s1 / (n1 - 1) + s2 * s2 / (n2 - 1))
    t = diff / se
    p = 2.0 * t_sf(abs(t), df)
    q = t_ppf(1.0 - alpha / 2.0, df)
    return {"diff": diff, "se": se, "t": t, "df": df, "p_value": min(1.0, p),
            "ci": [diff - q * se, diff + q * se]}


def two_proportion_z_test(x1, n1, x2, n2, alpha=0.05):
    """Two-sided z-test of p2 - p1 (successes x out of n per arm): pooled standard error
    for the test statistic, unpooled (Wald) standard error for the (1-alpha) CI."""
    if n1 < 1 or n2 < 1:
        raise ValueError(f"each arm needs at least 1 observation (got {n1} and {n2})")
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    se0 = math.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    diff = p2 - p1
    if se0 == 0.0:
        z, p = 0.0, 1.0
    else:
        z = diff / se0
        p = 2.0 * norm_sf(abs(z))
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    q = norm_ppf(1.0 - alpha / 2.0)
    return {"p1": p1, "p2": p2, "diff": diff, "se": se, "z": z, "p_value": min(1.0, p),
            "ci": [diff - q * se, diff + q * se]}


def sample_size_means(sd, mde, alpha=0.05, power=0.8, split=0.5):
    """(n_control, n_experiment) users needed to detect a difference of
    means `mde` with a two-sided test at `alpha` and the given power, when both arms have
    standard deviation `sd` and a share `split` of traffic goes to the experiment."""
    if sd <= 0 or mde <= 0:
        raise ValueError(f"sd and mde must be positive (got {sd!r}, {mde!r})")
    if not 0 < split < 1:
        raise ValueError(f"split must be in (0, 1), got {split!r}")
    z = norm_ppf(1 - alpha / 2) + norm_ppf(power)
    # Var(diff) = sd^2 (1/n_c + 1/n_e) with n_c = N(1-split), n_e = N split.
    total = (z * sd / mde) ** 2 * (1.0 / (1 - split) + 1.0 / split)
    return math.ceil(total * (1 - split)), math.ceil(total * split)


def sample_size_proportions(p1, mde, alpha=0.05, power=0.8, split=0.5):
    """(n_control, n_experiment) to detect a change of a rate from p1 to p1 + mde
    (two-sided, unpooled normal approximation)."""
    p2 = p1 + mde
    if not (0 < p1 < 1 and 0 < p2 < 1) or mde == 0:
        raise ValueError(f"rates must stay inside (0, 1) and mde must be non-zero (p1={p1!r}, mde={mde!r})")
    if not 0 < split < 1:
        raise ValueError(f"split must be in (0, 1), got {split!r}")
    z = norm_ppf(1 - alpha / 2) + norm_ppf(power)
    total = (z / mde) ** 2 * (p1 * (1 - p1) / (1 - split) + p2 * (1 - p2) / split)
    return math.ceil(total * (1 - split)), math.ceil(total * split)


def analyze(kind, control, experiment, planned, alpha=0.05):
    """Decision for one metric.

    kind 'mean': control/experiment are dicts {n, mean, var} of per-user values;
    kind 'proportion': dicts {n, successes}. planned = (n_control, n_experiment).
    Returns the test result plus `decision`: 'insufficient_sample' (no winner is named
    before both arms reach the planned size, however small the p-value), else
    'experiment_wins', 'control_wins' or 'no_significant_difference'."""
    if kind == "mean":
        n1, n2 = int(control["n"]), int(experiment["n"])
        res = welch_t_test(n1, control["mean"], control["var"], n2, experiment["mean"],
                           experiment["var"], alpha) if min(n1, n2) >= 2 else None
        test = "welch_t"
    elif kind == "proportion":
        n1, n2 = int(control["n"]), int(experiment["n"])
        res = two_proportion_z_test(control["successes"], n1, experiment["successes"], n2,
                                    alpha) if min(n1, n2) >= 1 else None
        test = "two_proportion_z"
    else:
        raise ValueError(f"kind must be 'mean' or 'proportion', got {kind!r}")
    out = {"test": test, "alpha": alpha, "n_control": n1, "n_experiment": n2,
           "planned_control": int(planned[0]), "planned_experiment": int(planned[1]),
           "result": res, "winner": None}
    if n1 < planned[0] or n2 < planned[1] or res is None:
        out["decision"] = "insufficient_sample"
        out["message"] = (f"no winner before the planned sample size: {n1}/{planned[0]} control, "
                          f"{n2}/{planned[1]} experiment")
    elif res["p_value"] < alpha:
        out["winner"] = "experiment" if res["diff"] > 0 else "control"
        out["decision"] = out["winner"] + "_wins"
        out["message"] = "significant at alpha={:g} (p={:.3g})".format(alpha, res["p_value"])
    else:
        out["decision"] = "no_significant_difference"
        out["message"] = "not significant at alpha={:g} (p={:.3g})".format(alpha, res["p_value"])
    return out
