"""search_movies, similar_movies and parse_query on a real server.

The data is generated here (numpy, a fixed seed) and loaded with COPY; every expected
answer is computed here from the raw values with the registry's formulas (written out
below, independently of the SQL), never read back from the code under test."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

N_MOVIES = 3000
GENRES = ["Drama", "Comedy", "Action", "Horror", "Science Fiction", "Western"]
# metric code -> (coverage, generator(rng, n) of raw values)
METRICS = {
    "imdb_rating": (0.9, lambda r, n: np.round(np.clip(r.normal(6.3, 1.2, n), 1, 10), 1)),
    "imdb_vote_count": (0.85, lambda r, n: np.floor(r.lognormal(8, 2, n))),
    "metacritic_score": (0.4, lambda r, n: np.clip(np.round(r.normal(60, 18, n)), 0, 100)),
    "rt_tomatometer": (0.5, lambda r, n: np.clip(np.round(r.normal(62, 25, n)), 0, 100)),
    "tmdb_popularity": (0.8, lambda r, n: np.round(r.lognormal(2.0, 1.3, n), 3)),
    "oscar_wins": (0.06, lambda r, n: r.integers(0, 5, n).astype(float)),
    "oscar_nominations": (0.1, lambda r, n: r.integers(0, 8, n).astype(float)),
    "afi_top_100": (0.03, lambda r, n: r.integers(1, 101, n).astype(float)),
    "criterion_collection": (0.12, lambda r, n: r.integers(0, 2, n).astype(float)),
    "nfr_preserved": (0.08, lambda r, n: r.integers(0, 2, n).astype(float)),
    "bom_worldwide": (0.35, lambda r, n: np.floor(r.lognormal(16.5, 2.0, n))),
    "tmdb_budget": (0.3, lambda r, n: np.floor(r.lognormal(16, 1.5, n))),
}
HOSTILE = [
    "'; DROP TABLE reelscore.movies; --",
    "rating' OR '1'='1",
    "x\" OR 1=1 --",
    "$1",
    "($2 -> 0)",
    "f.cat_rating >= 0 OR true",
    "1); SELECT pg_sleep(5); --",
    "%s %I %L $$ $q$",
    "Robert'); DELETE FROM reelscore.metric_values; --",
    "\\\\ \\' \\\" \t\n",
    "𝔲𝔫𝔦𝔠𝔬𝔡𝔢 ☃ \u202e",
    "a" * 3000,
]


# ---------------------------------------------------------------------------------------
# The registry's formulas, written out independently of sql/100-registry.sql.
# ---------------------------------------------------------------------------------------
def normalize(defn: dict, x: float) -> float:
    t, p = defn["normalization_type"], defn["normalization_params"]
    if t == "linear":
        return min(1.0, max(0.0, (x - defn["raw_scale_min"]) / (defn["raw_scale_max"] - defn["raw_scale_min"])))
    if t == "logarithmic":
        return min(1.0, max(0.0, math.log(max(x, 0) + 1) / math.log(p["threshold"] + 1)))
    if t == "custom":
        steps = p["steps"]
        return steps[min(math.floor(x), len(steps) - 1)]
    if t == "boolean":
        return p["value"] if x != 0 else 0.0
    if t == "sigmoid":
        return 1.0 / (1.0 + math.exp(p["k"] * (x - p["midpoint"])))
    raise AssertionError(f"no reference formula for {t}")


@pytest.fixture(scope="module")
def data(db_url):
    """Load the synthetic catalogue once; return raw values, normalized values, category means."""
    rng = np.random.default_rng(20261126)
    with psycopg.connect(db_url, autocommit=True) as c:
        defs = {r[0]: dict(zip(["code", "id", "category", "normalization_type", "normalization_params",
                                "raw_scale_min", "raw_scale_max", "normalized_weight", "slot"], r))
                for r in c.execute("""SELECT code, id, category, normalization_type, normalization_params,
                                             raw_scale_min, raw_scale_max, normalized_weight, slot
                                      FROM reelscore.metric_definitions""")}
        years = rng.integers(1950, 2026, N_MOVIES)
        movie_genres = []
        for _ in range(N_MOVIES):
            k = rng.integers(0, 3)
            movie_genres.append(sorted(rng.choice(GENRES, size=k, replace=False).tolist()))
        raw: dict[str, dict[int, float]] = {}
        for code, (cov, gen) in METRICS.items():
            has = rng.random(N_MOVIES) < cov
            vals = gen(rng, N_MOVIES)
            if code == "afi_top_100":   # a rank list: each rank at most once
                ids = np.flatnonzero(has)[:100]
                raw[code] = {int(i) + 1: float(r) for i, r in zip(ids, rng.permutation(100)[:len(ids)] + 1)}
            else:
                raw[code] = {int(i) + 1: float(vals[i]) for i in np.flatnonzero(has)}
        c.execute("SELECT reelscore.drop_similarity_index()")
        with c.transaction():
            with c.cursor().copy("COPY reelscore.movies (id, title, release_date, genres) FROM STDIN") as cp:
                for i in range(N_MOVIES):
                    cp.write_row((i + 1, f"Movie {i + 1}", f"{years[i]}-06-15", movie_genres[i]))
            with c.cursor().copy("COPY reelscore.metric_values (movie_id, metric_id, raw_value) FROM STDIN") as cp:
                for code, vals in raw.items():
                    for mid, v in vals.items():
                        cp.write_row((mid, defs[code]["id"], v))
        list(c.execute("SELECT * FROM reelscore.refresh_scores()"))
        c.execute("SELECT reelscore.build_similarity_index()")
        c.execute("ANALYZE")
    norm = {code: {m: normalize(defs[code], v) for m, v in vals.items()} for code, vals in raw.items()}
    cats: dict[str, dict[int, float]] = {}
    for cat in ("rating", "award", "financial", "cultural", "popularity"):
        cats[cat] = {}
        for m in range(1, N_MOVIES + 1):
            num = den = 0.0
            for code in METRICS:
                if defs[code]["category"] == cat and m in norm[code]:
                    w = defs[code]["normalized_weight"]
                    num += w * norm[code][m]
                    den += w
            if den > 0:
                cats[cat][m] = num / den
    return {"raw": raw, "norm": norm, "cats": cats, "years": {i + 1: int(years[i]) for i in range(N_MOVIES)},
            "genres": {i + 1: movie_genres[i] for i in range(N_MOVIES)}, "defs": defs}


def scores(conn, profile="balanced") -> dict[int, float | None]:
    return dict(conn.execute("""SELECT s.movie_id, s.score FROM reelscore.movie_scores s
                                JOIN reelscore.weight_profiles p ON p.id = s.profile_id WHERE p.name = %s""",
                             (profile,)).fetchall())


def expected_order(ids, sc) -> list[int]:
    return sorted(ids, key=lambda m: (sc.get(m) is None, -(sc.get(m) or 0.0), m))


def search(conn, filters, profile="balanced", lim=1000, off=0):
    return conn.execute("SELECT movie_id, score, confidence, rank, matched FROM reelscore.search_movies(%s, %s, %s, %s)",
                        (Jsonb(filters), profile, lim, off)).fetchall()


# A condition as a Python predicate over the generated data (None when the movie lacks the value).
def holds(d, cond, m) -> bool:
    if "filters" in cond and not all(holds(d, c, m) for c in cond["filters"]):
        return False
    if "any" in cond and not any(holds(d, c, m) for c in cond["any"]):
        return False
    if "genre" in cond:
        g = [cond["genre"]] if isinstance(cond["genre"], str) else cond["genre"]
        if not set(g) & set(d["genres"][m]):
            return False
    if "year_min" in cond and d["years"][m] < cond["year_min"]:
        return False
    if "year_max" in cond and d["years"][m] > cond["year_max"]:
        return False
    if "category" in cond:
        v = d["cats"][cond["category"]].get(m)
        if v is None or not bound_ok(v, cond, "normalized"):
            return False
    if "metric_code" in cond:
        code = cond["metric_code"]
        if m not in d["raw"].get(code, {}):
            return False
        if not bound_ok(d["raw"][code][m], cond, "raw_value") or not bound_ok(d["norm"][code][m], cond, "normalized"):
            return False
    return True


def bound_ok(v, cond, suffix) -> bool:
    lo, hi = cond.get(f"min_{suffix}"), cond.get(f"max_{suffix}")
    return (lo is None or v >= lo) and (hi is None or v <= hi)


def near_boundary(d, cond, m, eps=1e-9) -> bool:
    """True when a normalized value sits within eps of a threshold (float rounding may differ)."""
    for c in [cond] + cond.get("filters", []) + cond.get("any", []):
        for suffix in ("normalized",):
            for key in (f"min_{suffix}", f"max_{suffix}"):
                if key in c:
                    v = (d["cats"][c["category"]].get(m) if "category" in c
                         else d["norm"].get(c.get("metric_code"), {}).get(m))
                    if v is not None and abs(v - c[key]) < eps:
                        return True
    return False


SEED_CASES = {
    "highly rated (category >= 0.8)": {"category": "rating", "min_normalized": 0.8},
    "metacritic > 80 (raw)": {"metric_code": "metacritic_score", "min_raw_value": 80},
    "metacritic normalized >= 0.75": {"metric_code": "metacritic_score", "min_normalized": 0.75},
    "upper bound on raw": {"metric_code": "imdb_rating", "max_raw_value": 4.5},
    "upper bound on a category": {"category": "financial", "max_normalized": 0.45},
    "hidden gems (seed combination)": {"filters": [
        {"metric_code": "tmdb_popularity", "max_normalized": 0.3},
        {"category": "rating", "min_normalized": 0.6},
        {"category": "cultural", "min_normalized": 0.6}]},
    "range on one metric": {"metric_code": "rt_tomatometer", "min_raw_value": 40, "max_raw_value": 45},
    "genre and years": {"genre": "Western", "year_min": 1960, "year_max": 1979},
    "genre list is any-of": {"genre": ["Horror", "Science Fiction"], "category": "rating", "min_normalized": 0.7},
    "any of two metrics": {"any": [{"metric_code": "metacritic_score", "min_raw_value": 85},
                                   {"metric_code": "rt_tomatometer", "min_raw_value": 95}],
                           "filters": [{"year_min": 1990}]},
    "award category": {"category": "award", "min_normalized": 0.5},
    "empty filter: everything": {},
}


@pytest.mark.parametrize("name", list(SEED_CASES))
def test_search_matches_independent_computation(conn, data, name):
    cond = SEED_CASES[name]
    sc = scores(conn)
    universe = [m for m in sc if not near_boundary(data, cond, m)]
    want = [m for m in expected_order(universe, sc) if holds(data, cond, m)]
    rows = search(conn, cond)
    got = [r[0] for r in rows if r[0] in set(universe)]
    assert len(want) > 0 or name == "award category"
    assert got == want[:1000]
    assert [r[3] for r in rows] == list(range(1, len(rows) + 1))
    for movie_id, score, confidence, _, _ in rows:
        assert score == sc[movie_id]
        assert 0 <= confidence <= 1


def test_matched_values_are_the_movies_values(conn, data):
    cond = {"filters": [{"metric_code": "metacritic_score", "min_raw_value": 70, "min_normalized": 0.7},
                        {"category": "rating", "min_normalized": 0.5}, {"genre": "Drama"}, {"year_min": 1980}]}
    rows = search(conn, cond, lim=50)
    assert rows
    for movie_id, _, _, _, matched in rows:
        assert matched["metacritic_score"]["raw"] == data["raw"]["metacritic_score"][movie_id]
        assert matched["metacritic_score"]["normalized"] == pytest.approx(data["norm"]["metacritic_score"][movie_id])
        assert matched["rating"] == pytest.approx(data["cats"]["rating"][movie_id])
        assert "Drama" in matched["genres"]
        assert matched["release_year"] == data["years"][movie_id]


def test_pagination_is_stable_and_complete(conn, data):
    cond = {"category": "rating", "min_normalized": 0.55}
    whole = [r[0] for r in search(conn, cond, lim=1000)]
    assert len(whole) > 100
    pages = []
    for off in range(0, 140, 7):
        page = search(conn, cond, lim=7, off=off)
        assert [r[3] for r in page] == list(range(off + 1, off + len(page) + 1))
        pages += [r[0] for r in page]
    assert pages == whole[:140]
    assert len(set(pages)) == len(pages)


def test_other_profile_orders_by_its_scores(conn, data):
    cond = {"category": "rating", "min_normalized": 0.7}
    sc = scores(conn, "critics_choice")
    got = [r[0] for r in search(conn, cond, profile="critics_choice")]
    assert got == expected_order(got, sc)
    boundary = {m for m in sc if near_boundary(data, cond, m)}
    assert set(got) - boundary == {m for m in sc if holds(data, cond, m)} - boundary


BAD_FILTERS = [
    ({"bogus": 1}, "bogus"),
    ({"filters": [{"category": "rating", "min_normalized": 0.5}, {"colour": "red"}]}, "filters[1].colour"),
    ({"category": "ratings", "min_normalized": 0.8}, "category"),
    ({"category": 7, "min_normalized": 0.8}, "category"),
    ({"metric_code": "metacritic", "min_raw_value": 80}, "metric_code"),
    ({"filters": [{"metric_code": "imdb_rating", "min_raw_value": "8"}]}, "filters[0].min_raw_value"),
    ({"category": "rating", "min_normalized": True}, "min_normalized"),
    ({"category": "rating", "min_normalized": 1.5}, "min_normalized"),
    ({"category": "rating", "min_normalized": 0.9, "max_normalized": 0.1}, "min_normalized"),
    ({"metric_code": "imdb_rating", "min_raw_value": 9, "max_raw_value": 2}, "min_raw_value"),
    ({"category": "rating", "min_raw_value": 3}, "min_raw_value"),
    ({"min_normalized": 0.3}, "min_normalized"),
    ({"category": "rating"}, "category"),
    ({"metric_code": "imdb_rating", "category": "rating", "min_normalized": 0.3}, "metric_code"),
    ({"year_min": 2000, "year_max": 1990}, "year_min"),
    ({"year_min": 1999.5}, "year_min"),
    ({"year_max": "1999"}, "year_max"),
    ({"genre": 5}, "genre"),
    ({"genre": []}, "genre"),
    ({"filters": {"category": "rating"}}, "filters"),
    ({"filters": [1]}, "filters[0]"),
    ({"any": []}, "any"),
    ({"filters": [{"any": [{"filters": [{"filters": [{"genre": "Drama"}]}]}]}]}, "filters[0].any[0].filters[0].filters[0]"),
    ({"filters": [{"genre": "Drama"}] * 33}, "filters"),
    ({"filters": [{"filters": [{"year_min": 1900}] * 20}, {"filters": [{"year_min": 1900}] * 20}]},
     "filters[1].filters[12]"),   # 20 + 13 = the 33rd condition
    ({"recognized": "x"}, "recognized"),
    ({"filters": [{"unparsed": []}]}, "filters[0].unparsed"),
    ({"metric_code": "imdb_rating", "min_raw_value": 1e300}, "min_raw_value"),
]


@pytest.mark.parametrize("bad,key", BAD_FILTERS, ids=[k for _, k in BAD_FILTERS])
def test_bad_filters_name_the_offending_key(conn, bad, key):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as exc:
        search(conn, bad)
    assert f'"{key}"' in str(exc.value)
    assert exc.value.diag.column_name == key


def test_filters_that_are_not_objects_or_too_large(conn):
    for bad in (["rating"], "rating", 3):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as exc:
            search(conn, bad)
        assert "(filters)" in str(exc.value)
    huge = {"filters": [{"genre": ["x" * 90] * 20}] * 10}
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="too large"):
        search(conn, huge)


def test_profile_without_precomputed_scores(conn, data):
    conn.execute("SELECT reelscore.save_profile('search_test_adhoc', %s, NULL, 'not precomputed', %s)",
                 (Jsonb({"rating": 1.0, "award": 0, "financial": 0, "cultural": 0, "popularity": 0}),
                  Jsonb({"precompute": False})))
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="search_test_adhoc"):
        search(conn, {}, profile="search_test_adhoc")


def test_bad_arguments(conn):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown profile"):
        search(conn, {}, profile="no_such_profile")
    for lim, off, name in ((0, 0, "lim"), (1001, 0, "lim"), (10, -1, "off"), (10, 100001, "off")):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as exc:
            search(conn, {}, lim=lim, off=off)
        assert exc.value.diag.column_name == name


@pytest.mark.parametrize("hostile", HOSTILE, ids=[f"hostile{i}" for i in range(len(HOSTILE))])
def test_hostile_strings_never_reach_sql(conn, data, hostile):
    before = conn.execute("SELECT (SELECT count(*) FROM reelscore.movies), "
                          "(SELECT count(*) FROM reelscore.metric_values)").fetchone()
    # As a genre, a hostile string is a valid (non-matching) label: no rows, and the SQL text
    # is the same as for a harmless value (values never become SQL text).
    label = hostile[:100]
    assert search(conn, {"genre": label}) == []
    assert search(conn, {"filters": [{"genre": ["Drama", label]}], "recognized": [hostile]}, lim=1)

    def sql_for(genre, threshold):
        tree = Jsonb({"genre": genre, "category": "rating", "min_normalized": threshold})
        return [conn.execute("SELECT reelscore.search_query(reelscore.validate_search_filters(%s), %s)",
                             (tree, mode)).fetchone()[0] for mode in ("prefix", "full", "rows")]
    assert sql_for(label, 0.123456) == sql_for("Drama", 0.5)
    # As a metric, a category, a key or a profile: a clean 22023 naming the key.
    for bad, key in (({"metric_code": hostile, "min_raw_value": 1}, "metric_code"),
                     ({"category": hostile, "min_normalized": 0.1}, "category"),
                     ({"filters": [{hostile: 1}]}, None)):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as exc:
            search(conn, bad)
        if key:
            assert exc.value.diag.column_name == key
        else:
            assert exc.value.diag.column_name.startswith("filters[0].")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown profile"):
        search(conn, {}, profile=hostile)
    parsed = conn.execute("SELECT reelscore.parse_query(%s)", (hostile[:1000],)).fetchone()[0]
    search(conn, parsed, lim=1)
    after = conn.execute("SELECT (SELECT count(*) FROM reelscore.movies), "
                         "(SELECT count(*) FROM reelscore.metric_values)").fetchone()
    assert after == before


@pytest.mark.parametrize("name", ["highly rated (category >= 0.8)", "metacritic > 80 (raw)", "upper bound on raw",
                                  "hidden gems (seed combination)", "genre list is any-of", "any of two metrics"])
def test_prefix_walk_and_full_search_agree(conn, data, name):
    """The two ways search_movies finds a page give the same page whenever the walk fills it;
    the full search gives the same page whichever raw-value condition drives it ($6), or none."""
    tree = conn.execute("SELECT reelscore.validate_search_filters(%s)", (Jsonb(SEED_CASES[name]),)).fetchone()[0]
    conds = conn.execute("SELECT reelscore.search_conditions(%s)", (Jsonb(tree),)).fetchone()[0]
    pid = conn.execute("SELECT id FROM reelscore.weight_profiles WHERE name = 'balanced'").fetchone()[0]
    drivers = [None] + [c["i"] for c in conds if c["kind"] == "metric" and c["measure"] == "raw"]
    # The walk reads the ranking in two parts split at a floor ($7): the profile's own (the
    # partial index's), and floors that put the split inside the walk, above it, below it.
    scores = [r[0] for r in conn.execute(
        "SELECT score FROM reelscore.movie_scores WHERE profile_id = %s AND score IS NOT NULL "
        "ORDER BY score DESC", (pid,))]
    floors = [conn.execute("SELECT reelscore.ranking_floor(%s)", (pid,)).fetchone()[0],
              scores[7], scores[len(scores) // 2], float("inf"), float("-inf")]
    filled = 0
    for lim, off, prefix in ((10, 0, 200), (10, 5, 400), (20, 0, 3000), (5, 0, 50)):
        args = (pid, Jsonb(conds), lim, off, prefix)
        q_prefix, q_full = (conn.execute("SELECT reelscore.search_query(%s, %s)", (Jsonb(tree), m)).fetchone()[0]
                            for m in ("prefix", "full"))
        for stmt in ("walk", "whole"):
            if conn.execute("SELECT 1 FROM pg_prepared_statements WHERE name = %s", (stmt,)).fetchone():
                conn.execute(f"DEALLOCATE {stmt}")
        conn.execute("PREPARE walk (bigint, jsonb, int, int, int, int, float8) AS " + q_prefix)
        conn.execute("PREPARE whole (bigint, jsonb, int, int, int, int) AS " + q_full)
        lits = [sql.Literal(json.dumps(conds)) if i == 1 else sql.Literal(a) for i, a in enumerate(args)]
        fulls = [conn.execute(sql.SQL("EXECUTE whole({}, {}, {}, {}, NULL, {})").format(*lits[:4], sql.Literal(d)))
                 .fetchone()[0] for d in drivers]
        full = fulls[0]
        assert all(f == full for f in fulls[1:]), (drivers, fulls)
        walks = [conn.execute(sql.SQL("EXECUTE walk({}, {}, {}, {}, {}, NULL, {}::float8)")
                              .format(*lits, sql.Literal(str(f)))).fetchone()[0] for f in floors]
        walked = walks[0]
        assert all(w == walked for w in walks[1:]), (floors, walks)
        assert walked == full[:len(walked)]
        if len(walked) == lim:
            filled += 1
            assert walked == full
    assert filled or name in ("hidden gems (seed combination)", "upper bound on raw")


def test_values_reach_the_planner_as_constants(conn, data):
    """EXECUTE ... USING plans with the values (a custom plan): the threshold shows in the plan."""
    plan = "\n".join(r[0] for r in conn.execute(
        "SELECT reelscore.search_explain(%s, 'balanced', 50, 0)",
        (Jsonb({"metric_code": "metacritic_score", "min_raw_value": 87}),)))
    assert "'87'::double precision" in plan and "($2 ->" not in plan


def _walk_section(plan: list[str]) -> list[str]:
    """The lines of the page plan's "walk" CTE (the walk beyond the probe), without the probe's."""
    start = next(i for i, line in enumerate(plan) if line.strip().startswith("CTE walk"))
    end = next(i for i, line in enumerate(plan) if line.strip().startswith("CTE pick"))
    return plan[start:end]


def _scans_of_scores(lines: list[str]) -> list[str]:
    return [line for line in lines if "Scan" in line and "movie_scores" in line]


@pytest.mark.parametrize("lim,off", [(50, 0), (10, 45), (50, 100), (30, 170), (50, 400), (20, 980)])
def test_pages_on_both_sides_of_the_probe(conn, data, lim, off):
    """A condition met by about one movie in six: the 200-row probe fills small first pages,
    the walk goes on for later ones (the probe's rate says it will fill them), deeper pages
    come from the full search. Every page equals the independent ranking."""
    cond = {"genre": "Drama"}
    sc = scores(conn)
    want = [m for m in expected_order(list(sc), sc) if holds(data, cond, m)]
    assert len(want) > 450
    got = [r[0] for r in search(conn, cond, lim=lim, off=off)]
    assert got == want[off:off + lim]


def test_a_failed_probe_skips_the_rest_of_the_walk(conn, data):
    """Low ratings are anti-correlated with the score: the probe of the top 200 rows finds
    (almost) none, the raw-value condition is known to match few movies, so the walk stops
    there and the full search runs; the page is the independent ranking. A common condition
    walks on past the probe."""
    cond = {"metric_code": "imdb_rating", "max_raw_value": 4}
    sc = scores(conn)
    top = expected_order(list(sc), sc)[:200]
    assert sum(holds(data, cond, m) for m in top) <= 4, "the probe must fail for the test to mean anything"
    want = [m for m in expected_order(list(sc), sc) if holds(data, cond, m)]
    assert [r[0] for r in search(conn, cond, lim=50)] == want[:50]
    plan = [r[0] for r in conn.execute("SELECT reelscore.search_explain(%s, 'balanced', 50, 0, true)",
                                       (Jsonb(cond),))]
    rest = _scans_of_scores(_walk_section(plan))
    assert rest and all("never executed" in line for line in rest), "\n".join(plan)
    # the same for the hidden gems, bounded by a count of their category conditions
    gems = SEED_CASES["hidden gems (seed combination)"]
    if sum(holds(data, gems, m) for m in top) <= 4:
        plan = [r[0] for r in conn.execute("SELECT reelscore.search_explain(%s, 'balanced', 50, 0, true)",
                                           (Jsonb(gems),))]
        rest = _scans_of_scores(_walk_section(plan))
        assert rest and all("never executed" in line for line in rest), "\n".join(plan)
    # one movie in six: the probe finds about 30 of the 50, the walk goes on and fills the page
    # from the ranking index (the rows under its floor, read by a scan, are not needed)
    plan = [r[0] for r in conn.execute("SELECT reelscore.search_explain(%s, 'balanced', 50, 0, true)",
                                       (Jsonb({"genre": "Drama"}),))]
    rest = [line for line in _scans_of_scores(_walk_section(plan)) if "_top" in line]
    assert rest and not any("never executed" in line for line in rest), "\n".join(plan)
    assert "never executed" in "\n".join(plan[next(i for i, line in enumerate(plan) if "CTE pick" in line):])


def test_a_sparse_match_set_walks_as_far_as_the_probe_says(conn, data):
    """Matches that are rare at the top but many in all (a genre in a few years): the probe
    finds one or two, so the walk goes past its usual 1000 rows, as far as the probe's rate
    says 10 matches need (1.5 times that), and fills the page there: the full search, which
    would read every score, never runs. The page is the independent ranking."""
    sc = scores(conn)
    order = expected_order(list(sc), sc)
    chosen = None
    for genre in GENRES:
        for y0 in range(1950, 2026, 2):
            cond = {"genre": genre, "year_min": y0, "year_max": y0 + 5}
            hits = [i for i, m in enumerate(order) if holds(data, cond, m)]
            probe = sum(1 for i in hits if i < 200)
            if not probe:
                continue
            walk = min(5000, max(1000, math.ceil(1.5 * 10 * 200 / probe)))   # as search_query sizes it
            if sum(1 for i in hits if i < 1000) < 10 <= sum(1 for i in hits if i < walk):
                chosen = cond
                break
        if chosen:
            break
    assert chosen, "the synthetic catalogue has no sparse-at-the-top condition for this test"
    want = [m for m in order if holds(data, chosen, m)]
    assert [r[0] for r in search(conn, chosen, lim=10)] == want[:10]
    plan = [r[0] for r in conn.execute("SELECT reelscore.search_explain(%s, 'balanced', 10, 0, true)",
                                       (Jsonb(chosen),))]
    rest = [line for line in _scans_of_scores(_walk_section(plan)) if "_top" in line]
    assert rest and not any("never executed" in line for line in rest), "\n".join(plan)
    pick = "\n".join(plan[next(i for i, line in enumerate(plan) if "CTE pick" in line):])
    assert "never executed" in pick, "\n".join(plan)


def _section(plan: list[str], head: str) -> list[str]:
    """The lines of the plan node starting with `head` and everything below it."""
    start = next(i for i, line in enumerate(plan) if line.strip().startswith(head))
    indent = len(plan[start]) - len(plan[start].lstrip())
    end = next((i for i in range(start + 1, len(plan)) if len(plan[i]) - len(plan[i].lstrip()) <= indent), len(plan))
    return plan[start:end]


RARE_RAW = {
    "low ratings": {"metric_code": "imdb_rating", "max_raw_value": 4},
    "two raw ranges": {"filters": [{"metric_code": "tmdb_popularity", "min_raw_value": 2},
                                   {"metric_code": "imdb_rating", "max_raw_value": 5}]},
    "raw range, genre, years": {"filters": [{"metric_code": "imdb_rating", "max_raw_value": 5.5},
                                            {"genre": ["Drama", "Comedy"]}, {"year_min": 1970}]},
    "raw range and a category": {"metric_code": "rt_tomatometer", "max_raw_value": 30,
                                 "filters": [{"category": "rating", "max_normalized": 0.7}]},
    "raw range and an any of raw ranges": {"filters": [{"metric_code": "imdb_rating", "max_raw_value": 5}],
                                           "any": [{"metric_code": "metacritic_score", "min_raw_value": 60},
                                                   {"metric_code": "imdb_vote_count", "max_raw_value": 500}]},
    "a raw bound and a normalized one on the same metric": {"metric_code": "imdb_rating", "max_raw_value": 5,
                                                            "min_normalized": 0.3},
    "nothing matches": {"metric_code": "imdb_rating", "max_raw_value": 0.5},
}


@pytest.mark.parametrize("name", list(RARE_RAW))
@pytest.mark.parametrize("lim,off", [(1000, 0), (7, 0), (10, 23)])
def test_a_rare_raw_value_condition_drives_the_full_search(conn, data, name, lim, off):
    """Raw-value ranges that match few movies, alone and with other conditions: the full search
    starts from the movie ids of the fewest-matching one (an array, looked up in the scores'
    key), and its pages are the independent ranking."""
    cond = RARE_RAW[name]
    sc = scores(conn)
    universe = [m for m in sc if not near_boundary(data, cond, m)]
    want = [m for m in expected_order(universe, sc) if holds(data, cond, m)]
    got = [r[0] for r in search(conn, cond, lim=lim, off=off)]
    assert [m for m in got if m in set(universe)] == want[off:off + lim]
    assert len(want) > 0 or name == "nothing matches"


def test_the_fewest_matching_raw_value_condition_drives(conn, data):
    """search_query's 'few': the number of the required raw-value condition with the fewest
    matches under the cap (the first of equal counts), NULL when none is under it or none is
    required; counted here from the generated values."""
    conds = [{"metric_code": "imdb_vote_count", "min_raw_value": 100},          # most movies
             {"metric_code": "metacritic_score", "min_raw_value": 75},
             {"metric_code": "imdb_rating", "max_raw_value": 4.5},
             {"metric_code": "rt_tomatometer", "min_raw_value": 90}]
    n = [sum(1 for v in data["raw"][c["metric_code"]].values() if bound_ok(v, c, "raw_value")) for c in conds]

    def few(filters, cap):
        tree = conn.execute("SELECT reelscore.validate_search_filters(%s)", (Jsonb(filters),)).fetchone()[0]
        text = conn.execute("SELECT reelscore.search_query(%s, 'few')", (Jsonb(tree),)).fetchone()[0]
        if conn.execute("SELECT 1 FROM pg_prepared_statements WHERE name = 'few'").fetchone():
            conn.execute("DEALLOCATE few")
        conn.execute("PREPARE few (jsonb, int) AS " + text)
        fj = json.dumps(conn.execute("SELECT reelscore.search_conditions(%s)", (Jsonb(tree),)).fetchone()[0])
        return conn.execute(sql.SQL("EXECUTE few({}, {})").format(sql.Literal(fj), sql.Literal(cap))).fetchone()[0]

    assert len(set(n)) == len(n) and min(n) > 0, n
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]):
        filters = {"filters": [conds[k] for k in order]}
        best = min(range(4), key=lambda j: n[order[j]])
        assert few(filters, 100000) == best + 1, (order, n)
        assert few(filters, n[order[best]]) is None            # under the cap: none
        assert few(filters, n[order[best]] + 1) == best + 1
    # equal counts: the first
    assert few({"filters": [conds[2], conds[2]]}, 100000) == 1
    # a raw range under "any" is not required of every match: it never drives
    assert few({"any": [conds[2], conds[3]]}, 100000) is None
    assert few({"category": "rating", "min_normalized": 0.5}, 100000) is None


def test_the_full_search_reads_the_driving_ids_index_only_in_key_order(conn, data):
    """The plan of a full search driven by a rare raw-value range: its movie ids index-only
    from metric_values (metric_id, raw_value) INCLUDE (observed_at, movie_id), one scan of
    the scores' primary key with the array, and no second look-up of the condition per
    movie; without a driver ($6 NULL) the condition stays a test per movie."""
    cond = {"filters": [{"metric_code": "imdb_rating", "max_raw_value": 4}, {"genre": "Drama"}]}
    # an index-only scan needs the pages marked all-visible, as vacuum leaves them (the module
    # loaded the values just now)
    conn.execute("VACUUM (ANALYZE) reelscore.metric_values")
    plan = [r[0] for r in conn.execute("SELECT reelscore.search_explain(%s, 'balanced', 50, 0, true)",
                                       (Jsonb(cond),))]
    pick = _section(plan, "CTE pick")
    text = "\n".join(pick)
    assert "never executed" not in pick[1], "the full search must run for the test to mean anything\n" + text
    assert any(re.search(r"Index Scan using movie_scores_p\d+_pkey", line) for line in pick), text
    assert any("Index Cond: (movie_id = ANY (" in line for line in pick), text
    assert any("Index Only Scan using metric_values_metric_value_observed" in line for line in pick), text
    assert "metric_values_pkey" not in text, text
    index = conn.execute("SELECT pg_get_indexdef('reelscore.metric_values_metric_value_observed'::regclass)"
                         ).fetchone()[0]
    assert index.endswith("(metric_id, raw_value) INCLUDE (observed_at, movie_id)"), index


def test_the_walk_tests_genre_and_year_index_only(conn, data):
    """A walk testing genre and year reads movies (id) INCLUDE (release_year, genres) alone
    (migration 0020), once vacuum has marked the pages all-visible; the page is unchanged."""
    cond = {"genre": "Drama", "year_min": 1960}
    conn.execute("VACUUM (ANALYZE) reelscore.movies")
    plan = [r[0] for r in conn.execute("SELECT reelscore.search_explain(%s, 'balanced', 20, 0, true)", (Jsonb(cond),))]
    text = "\n".join(plan)
    walk = [line for line in plan if re.search(r" on movies m \(", line)]   # the walk's test (m), not the rows (mv)
    assert walk and all("Index Only Scan using movies_id_year_genres" in line for line in walk), text
    sc = scores(conn)
    want = [m for m in expected_order(list(sc), sc) if holds(data, cond, m)]
    assert [r[0] for r in search(conn, cond, lim=20)] == want[:20]


def _popularity_movie(conn, data):
    """A movie with a tmdb_popularity value, its slot in the feature vector and its exact
    normalized value (as the registry computes it)."""
    code = "tmdb_popularity"
    m = sorted(data["raw"][code])[17]
    v = conn.execute("SELECT reelscore.normalize_value(%s, %s)", (code, data["raw"][code][m])).fetchone()[0]
    assert abs(v - data["norm"][code][m]) < 1e-12
    return m, data["defs"][code]["slot"], v


def _set_stored_value(conn, movie_id, slot, value, stale):
    """Overwrite one normalized value stored in a movie's feature row (what search may read)."""
    conn.execute("""UPDATE reelscore.movie_features f
                    SET nvec = (SELECT array_agg(CASE WHEN u.i = %s THEN %s::real ELSE u.x END ORDER BY u.i)
                                FROM unnest(f.nvec::real[]) WITH ORDINALITY AS u(x, i))::real[]::vector,
                        stale = %s
                    WHERE f.movie_id = %s""", (slot, value, stale, movie_id))


def test_a_normalized_condition_reads_the_stored_features_and_is_exact_at_its_bound(conn, data):
    """With a category condition (the query reads movie_features anyway), a normalized metric
    condition is decided from the feature row's stored value (single precision) unless the
    value is within 1e-6 of a bound, where the raw value decides: a bound equal to a movie's
    exact normalized value keeps it, a bound just past it drops it. Without a category
    condition the raw value is looked up as before."""
    m, slot, v = _popularity_movie(conn, data)
    pop = {"category": "popularity", "min_normalized": 0}
    assert m in data["cats"]["popularity"]
    same = sorted(k for k, raw in data["raw"]["tmdb_popularity"].items()
                  if raw == data["raw"]["tmdb_popularity"][m] and k in data["cats"]["popularity"])
    cond = {"filters": [{"metric_code": "tmdb_popularity", "min_normalized": v, "max_normalized": v}, pop]}
    plan = "\n".join(r[0] for r in conn.execute("SELECT reelscore.search_explain(%s)", (Jsonb(cond),)))
    assert "nvec" in plan, plan
    alone = cond["filters"][0]
    plan = "\n".join(r[0] for r in conn.execute("SELECT reelscore.search_explain(%s)", (Jsonb(alone),)))
    assert "nvec" not in plan and "movie_features" not in plan, plan
    assert sorted(r[0] for r in search(conn, cond)) == same
    for bound in ({"min_normalized": v + 1e-12, "max_normalized": v + 0.01},
                  {"min_normalized": v - 0.01, "max_normalized": v - 1e-12}):
        got = [r[0] for r in search(conn, {"filters": [{"metric_code": "tmdb_popularity", **bound}, pop]})]
        assert m not in got and 0 < len(got) < 1000
    # the hidden gems' shape, against the independent computation with no boundary exclusion
    gems = {"filters": [{"metric_code": "tmdb_popularity", "max_normalized": v},
                        {"category": "rating", "min_normalized": 0.5}]}
    sc = scores(conn)
    want = [k for k in expected_order(list(sc), sc)
            if data["norm"]["tmdb_popularity"].get(k, 9) <= v and data["cats"]["rating"].get(k, -1) >= 0.5]
    assert [r[0] for r in search(conn, gems)] == want[:1000] and m in want


def test_stored_features_decide_only_while_they_are_current(conn, data):
    """With the stored value altered, the search follows it while the row is current (the test
    can tell the paths apart), and the raw value decides once the row is stale or the
    definitions changed since the features were built."""
    m, slot, v = _popularity_movie(conn, data)
    # a narrow window around the movie's value: its matches fit in one page
    low = {"filters": [{"metric_code": "tmdb_popularity", "min_normalized": max(0.0, v - 0.001),
                        "max_normalized": min(1.0, v + 0.001)}, {"category": "popularity", "min_normalized": 0}]}
    assert m in [r[0] for r in search(conn, low)]
    with conn.transaction(force_rollback=True):
        _set_stored_value(conn, m, slot, 0.99, stale=False)
        assert m not in [r[0] for r in search(conn, low)], "the stored value was not read"
        _set_stored_value(conn, m, slot, 0.99, stale=True)
        assert m in [r[0] for r in search(conn, low)]
        _set_stored_value(conn, m, slot, 0.99, stale=False)
        conn.execute("UPDATE reelscore.scoring_state SET definitions_changed_at = clock_timestamp()")
        assert not conn.execute("SELECT reelscore.features_current()").fetchone()[0]
        assert m in [r[0] for r in search(conn, low)]


# ---------------------------------------------------------------------------------------
# parse_query in the server, fed to search_movies
# ---------------------------------------------------------------------------------------
ISSUE_QUERIES = {
    "critically acclaimed sci-fi movies that bombed at the box office":
        lambda d, m: ("Science Fiction" in d["genres"][m]
                      and (d["raw"]["metacritic_score"].get(m, -1) >= 75 or d["raw"]["rt_tomatometer"].get(m, -1) >= 80)
                      and d["raw"]["bom_worldwide"].get(m, math.inf) <= 20e6),
    "hidden gems from the 90s":
        lambda d, m: (1990 <= d["years"][m] <= 1999 and d["norm"]["tmdb_popularity"].get(m, 9) <= 0.3
                      and d["cats"]["rating"].get(m, -1) >= 0.8 and d["cats"]["cultural"].get(m, -1) >= 0.6),
    "Oscar winners with low IMDb ratings":
        lambda d, m: d["raw"]["oscar_wins"].get(m, 0) >= 1 and d["raw"]["imdb_rating"].get(m, 99) <= 5.5,
    "popular comedies since 2005":
        lambda d, m: ("Comedy" in d["genres"][m] and d["years"][m] >= 2005
                      and (d["cats"]["popularity"].get(m, -1) >= 0.6 or d["raw"]["imdb_vote_count"].get(m, -1) >= 100000)),
}


@pytest.mark.parametrize("text", list(ISSUE_QUERIES))
def test_parse_query_output_is_accepted_by_search(conn, data, text):
    parsed = conn.execute("SELECT reelscore.parse_query(%s)", (text,)).fetchone()[0]
    assert parsed["unparsed"] == []
    got = [r[0] for r in search(conn, parsed)]
    sc = scores(conn)
    want = expected_order([m for m in sc if ISSUE_QUERIES[text](data, m)], sc)
    assert got == want


def test_parse_query_reports_what_it_did_not_understand(conn):
    parsed = conn.execute("SELECT reelscore.parse_query('cult zombie westerns from the 70s')").fetchone()[0]
    assert parsed["unparsed"] == ["cult zombie"]
    assert {"genre": ["Western"]} in parsed["filters"]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="1000"):
        conn.execute("SELECT reelscore.parse_query(%s)", ("x" * 1001,))


# ---------------------------------------------------------------------------------------
# similar_movies
# ---------------------------------------------------------------------------------------
def vectors(conn):
    rows = conn.execute("SELECT movie_id, nvec FROM reelscore.movie_features ORDER BY movie_id").fetchall()
    ids = np.array([r[0] for r in rows])
    return ids, np.stack([np.asarray(r[1], dtype=np.float64) for r in rows])


def recall_at_k(conn, sample, k=10, same_genre=False, genres=None):
    ids, X = vectors(conn)
    pos = {m: i for i, m in enumerate(ids)}
    hits = total = 0
    for m in sample:
        d = np.sqrt(((X - X[pos[m]]) ** 2).sum(axis=1))
        d[pos[m]] = np.inf
        if same_genre:
            mask = np.array([bool(set(genres[int(x)]) & set(genres[m])) for x in ids])
            d[~mask] = np.inf
        kth = np.sort(d)[k - 1]
        got = conn.execute("SELECT movie_id, distance FROM reelscore.similar_movies(%s, %s, %s)",
                           (m, k, same_genre)).fetchall()
        assert len(got) == k
        assert m not in [g[0] for g in got]
        for g_id, g_dist in got:
            assert g_dist == pytest.approx(d[pos[g_id]], abs=1e-5)   # the distance it reports is the true one
        # a tie at the k-th distance counts as a hit: any of the tied movies is a right answer
        hits += sum(1 for g_id, _ in got if d[pos[g_id]] <= kth + 1e-6)
        total += k
    return hits / total


def test_similar_movies_recall_against_exact_search(conn, data):
    rng = np.random.default_rng(5)
    sample = [int(x) for x in rng.choice(np.arange(1, N_MOVIES + 1), 60, replace=False)]
    assert recall_at_k(conn, sample) >= 0.95


def test_similar_movies_same_genre(conn, data):
    rng = np.random.default_rng(6)
    sample = [int(x) for x in rng.choice([m for m in range(1, N_MOVIES + 1) if data["genres"][m]], 25, replace=False)]
    for m in sample:
        rows = conn.execute("SELECT movie_id, shared_genres FROM reelscore.similar_movies(%s, 10, true)",
                            (m,)).fetchall()
        for other, shared in rows:
            assert set(data["genres"][other]) & set(data["genres"][m])
            assert set(shared) == set(data["genres"][other]) & set(data["genres"][m])
    assert recall_at_k(conn, sample, same_genre=True, genres=data["genres"]) >= 0.95


def test_similar_movies_uses_the_hnsw_index(conn, data):
    conn.execute("SET hnsw.iterative_scan = relaxed_order")
    plan = "\n".join(r[0] for r in conn.execute(
        "EXPLAIN SELECT movie_id FROM reelscore.similarity_vectors WHERE movie_id <> 1 "
        "ORDER BY nvec <-> (SELECT nvec FROM reelscore.movie_features WHERE movie_id = 1) LIMIT 10"))
    assert "similarity_vectors_hnsw" in plan


def test_feature_writes_do_not_touch_the_hnsw_index_until_the_sync(conn, data):
    """A value change rescores the movie at once (its features and scores) but leaves the
    HNSW copy of its vector alone; refresh_scores() copies it, and only changed vectors."""
    conn.execute("BEGIN")
    try:
        movie = 7
        before = conn.execute("SELECT nvec::text FROM reelscore.similarity_vectors WHERE movie_id = %s",
                              (movie,)).fetchone()[0]
        assert conn.execute("SELECT count(*) FROM reelscore.movie_features WHERE NOT similarity_synced").fetchone()[0] == 0
        conn.execute("SELECT reelscore.upsert_metric(%s, 'imdb_rating', 9.9)", (movie,))
        conn.execute("SELECT reelscore.upsert_metric(%s, 'metacritic_score', 3)", (movie,))
        fresh = conn.execute("SELECT nvec::text, similarity_synced FROM reelscore.movie_features WHERE movie_id = %s",
                             (movie,)).fetchone()
        assert fresh[0] != before and fresh[1] is False
        # the neighbours' side still has the old vector; the query side already uses the new one
        assert conn.execute("SELECT nvec::text FROM reelscore.similarity_vectors WHERE movie_id = %s",
                            (movie,)).fetchone()[0] == before
        steps = conn.execute("SELECT action, movies FROM reelscore.refresh_scores()").fetchall()
        assert ("similarity vectors synced", 1) in steps
        assert conn.execute("SELECT nvec::text FROM reelscore.similarity_vectors WHERE movie_id = %s",
                            (movie,)).fetchone()[0] == fresh[0]
        assert conn.execute("SELECT count(*) FROM reelscore.movie_features WHERE NOT similarity_synced").fetchone()[0] == 0
        assert conn.execute("SELECT reelscore.sync_similarity_vectors()").fetchone()[0] == 0
        # a deleted movie leaves the index's table at once
        conn.execute("DELETE FROM reelscore.movies WHERE id = %s", (movie,))
        assert conn.execute("SELECT count(*) FROM reelscore.similarity_vectors WHERE movie_id = %s",
                            (movie,)).fetchone()[0] == 0
    finally:
        conn.execute("ROLLBACK")


def test_a_large_sync_rebuilds_the_index(conn, data):
    conn.execute("BEGIN")
    try:
        conn.execute("UPDATE reelscore.movie_features SET similarity_synced = false")
        n = conn.execute("SELECT reelscore.sync_similarity_vectors(10)").fetchone()[0]
        assert n == conn.execute("SELECT count(*) FROM reelscore.movie_features").fetchone()[0]
        assert conn.execute("SELECT to_regclass('reelscore.similarity_vectors_hnsw') IS NOT NULL").fetchone()[0]
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="p_rebuild_over"):
            conn.execute("SELECT reelscore.sync_similarity_vectors(-1)")
    finally:
        conn.execute("ROLLBACK")


def test_similar_movies_arguments(conn, data):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as exc:
        conn.execute("SELECT * FROM reelscore.similar_movies(-5)")
    assert exc.value.diag.column_name == "movie_id"
    for k in (0, 1001, None):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as exc:
            conn.execute("SELECT * FROM reelscore.similar_movies(1, %s)", (k,))
        assert exc.value.diag.column_name == "k"
    k = conn.execute("SELECT count(*) FROM reelscore.similar_movies(1, 150)").fetchone()[0]
    assert k == 150   # more than ef_search's default 40: the scan keeps going


def test_similar_movies_after_updates_and_vacuum(conn, data):
    """pgvector 0.8.0's HNSW under updates and VACUUM: changed vectors are found where they are now."""
    rng = np.random.default_rng(8)
    movers = [int(x) for x in rng.choice(np.arange(1, N_MOVIES + 1), 150, replace=False)]
    imdb = data["defs"]["imdb_rating"]["id"]
    with conn.transaction():
        conn.execute("""UPDATE reelscore.metric_values SET raw_value = 10 - raw_value
                        WHERE metric_id = %s AND movie_id = ANY(%s)""", (imdb, movers))
    list(conn.execute("SELECT * FROM reelscore.refresh_scores()"))
    conn.execute("VACUUM reelscore.movie_features")
    assert recall_at_k(conn, movers[:40]) >= 0.95
    # and back, so the module's other tests see the original data whatever their order
    with conn.transaction():
        conn.execute("""UPDATE reelscore.metric_values SET raw_value = 10 - raw_value
                        WHERE metric_id = %s AND movie_id = ANY(%s)""", (imdb, movers))
    list(conn.execute("SELECT * FROM reelscore.refresh_scores()"))


def test_read_role_can_search(role_conn, data):
    c = role_conn("read")
    n = c.execute("SELECT count(*) FROM reelscore.search_movies(%s, 'balanced', 10)",
                  (Jsonb({"category": "rating", "min_normalized": 0.5}),)).fetchone()[0]
    assert n == 10
    assert c.execute("SELECT count(*) FROM reelscore.similar_movies(1, 5)").fetchone()[0] == 5
    parsed = c.execute("SELECT reelscore.parse_query('highly rated dramas')").fetchone()[0]
    assert json.loads(json.dumps(parsed))["filters"]


# --------------------------------------------------------------------------- title search
def _title_reference(titles: dict[int, str], q: str, lim: int) -> list[int]:
    """Starts-with matches first, then contains-matches; shortest title first, ties by id."""
    q = q.strip().lower()
    hits = [(not t.lower().startswith(q), len(t), i) for i, t in titles.items() if q in t.lower()]
    return [i for _, _, i in sorted(hits)][:lim]


def test_search_titles_equals_a_full_ranking(db_url):
    """30,000 extra titles, so that every path of the walk is taken: a word among the first
    20,000 shortest titles, one that only longer titles carry (the second walk), a rare one
    (the trigram index), a word that is both a prefix and inside other titles, wildcards."""
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    rows = []
    for i in range(30_000):
        base = f"{words[i % 8]} {words[(i * 7) % 8]} {i}"
        if i % 3000 == 7:                               # one short title, the others walked past 20,000
            base = f"longword {i}" if i == 7 else "x" * 40 + " longword " + str(i)
        if i in (11, 29_999):
            base = f"Zanzibar_{i}%"                     # rare, with LIKE wildcards in it
        rows.append(base)
    with psycopg.connect(db_url) as c:                 # one transaction, rolled back
        c.execute("CREATE TEMP TABLE t (title text) ON COMMIT DROP")
        with c.cursor().copy("COPY t (title) FROM STDIN") as cp:
            for r in rows:
                cp.write_row((r,))
        c.execute("INSERT INTO reelscore.movies (id, title) "
                  "SELECT (SELECT coalesce(max(id), 0) FROM reelscore.movies) + row_number() OVER (), title FROM t")
        titles = dict(c.execute("SELECT id, title FROM reelscore.movies").fetchall())
        for q, lim in [("alpha", 25), ("ALPHA", 5), ("lpha", 25), ("longword", 5), ("longword", 25), ("zanzibar_2", 3),
                       ("zanzibar", 10), ("o 1", 40), ("e 29", 25), ("_1", 5), ("9%", 5)]:
            got = [r[0] for r in c.execute("SELECT movie_id FROM reelscore.search_titles(%s, %s)", (q, lim))]
            assert got == _title_reference(titles, q, lim), q
        n_values = c.execute("SELECT n_values FROM reelscore.search_titles('alpha', 1)").fetchone()[0]
        assert n_values == 0
        for bad, message in [("x", "2 to 200 characters"), ("  ", "2 to 200 characters"),
                             ("a" * 201, "2 to 200 characters")]:
            with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
                c.execute("SELECT * FROM reelscore.search_titles(%s)", (bad,))
            c.rollback()
            c.execute("SELECT 1")
        c.rollback()


def test_planner_settings_do_not_leak_out_of_search(db_url, data):
    """search_movies turns hash and merge joins off for a query driven by a rare raw-value
    condition; the caller's transaction must get its settings back."""
    with psycopg.connect(db_url) as c:
        rows = c.execute("SELECT movie_id FROM reelscore.search_movies(%s, 'balanced', 10)",
                         (Jsonb({"metric_code": "imdb_rating", "max_raw_value": 6}),)).fetchall()
        assert rows, "the filter must match something for the test to mean anything"
        assert c.execute("SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin')"
                         ).fetchone() == ("on", "on")
        c.rollback()
