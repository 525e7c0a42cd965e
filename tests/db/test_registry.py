"""The registry and normalization: formulas against values computed here, edges, monotonicity,
rejection of bad definitions and values, inlining, privileges."""
import math

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# The seed's inventory, written out independently of the migration: (type, params) per code.
INVENTORY = {
    "tmdb_rating": ("linear", (0, 10)), "imdb_rating": ("linear", (0, 10)),
    "metacritic_score": ("linear", (0, 100)), "rt_tomatometer": ("linear", (0, 100)),
    "rt_audience_score": ("linear", (0, 100)),
    "tmdb_vote_count": ("log", 1e6), "imdb_vote_count": ("log", 1e7), "tmdb_budget": ("log", 5e8),
    "tmdb_revenue": ("log", 2e9), "omdb_box_office": ("log", 1e9), "bom_domestic": ("log", 1e9),
    "bom_worldwide": ("log", 3e9), "tmdb_popularity": ("log", 1000), "twitter_mentions": ("log", 1e5),
    "oscar_nominations": ("steps", [0, 0.5, 0.7, 1.0]), "oscar_wins": ("steps", [0, 0.6, 0.8, 1.0]),
    "cannes_palme_dor": ("bool", 1.0), "cannes_selection": ("bool", 0.3), "venice_golden_lion": ("bool", 0.95),
    "venice_selection": ("bool", 0.3), "berlin_golden_bear": ("bool", 0.9), "sundance_grand_jury": ("bool", 0.85),
    "criterion_collection": ("bool", 0.7), "1001_movies": ("bool", 0.6), "nfr_preserved": ("bool", 0.8),
    "afi_top_100": ("sigmoid", (0.05, 50)), "bfi_top_100": ("sigmoid", (0.05, 50)),
    "sight_sound_rank": ("sigmoid", (0.02, 125)), "tmdb_trending_rank": ("sigmoid", (0.1, 10)),
}


def expected(code: str, x: float) -> float:
    kind, p = INVENTORY[code]
    if kind == "linear":
        return min(1.0, max(0.0, (x - p[0]) / (p[1] - p[0])))
    if kind == "log":
        return min(1.0, max(0.0, math.log(x + 1) / math.log(p + 1)))
    if kind == "steps":
        return p[min(int(x), len(p) - 1)]
    if kind == "bool":
        return p if x else 0.0
    if kind == "sigmoid":
        k, mid = p
        z = k * (x - mid)
        return 0.0 if z > 700 else 1.0 / (1.0 + math.exp(z))
    raise AssertionError(kind)


def norm(conn, code, x):
    return conn.execute("select reelscore.normalize_value(%s, %s)", (code, x)).fetchone()[0]


def test_all_29_metrics_seeded_as_the_inventory_states(conn):
    rows = conn.execute("select code, category, slot from reelscore.metric_definitions").fetchall()
    assert len(rows) == 29
    assert {r[0] for r in rows} == set(INVENTORY)
    assert len({r[2] for r in rows}) == 29
    cats = dict((r[0], r[1]) for r in rows)
    assert cats["tmdb_vote_count"] == "rating" and cats["bom_worldwide"] == "financial"
    assert cats["sundance_grand_jury"] == "award" and cats["nfr_preserved"] == "cultural"
    assert cats["twitter_mentions"] == "popularity"


@pytest.mark.parametrize("code,values", [
    ("imdb_rating", [0, 0.1, 5, 7.3, 9.99, 10]),
    ("metacritic_score", [0, 1, 50, 85, 100]),
    ("bom_domestic", [0, 1, 999, 1e6, 1e8, 1e9, 5e10]),
    ("imdb_vote_count", [0, 10, 123456, 1e7, 1e9]),
    ("afi_top_100", [1, 25, 50, 75, 100]),
    ("sight_sound_rank", [1, 125, 250]),
    ("tmdb_trending_rank", [1, 10, 11, 500, 100000, 1e9]),
    ("oscar_wins", [0, 1, 2, 3, 4, 11]),
    ("oscar_nominations", [0, 1, 2, 3, 14]),
    ("venice_golden_lion", [0, 1]), ("cannes_selection", [0, 1]),
])
def test_seeded_formulas_match_an_independent_computation(conn, code, values):
    for x in values:
        assert norm(conn, code, x) == pytest.approx(expected(code, x), abs=1e-12), (code, x)


def test_piecewise_normalization(conn):
    conn.execute("""insert into reelscore.metric_definitions
        (slot, code, name, category, source, data_type, raw_scale_min, raw_scale_max,
         normalization_type, normalization_params)
        values (30, 'letterboxd_rating', 'Letterboxd', 'rating', 'letterboxd', 'numeric', 0, 5,
                'piecewise', '{"knots": [[0, 0], [2.5, 0.2], [4, 0.9], [5, 1]]}')""")
    xs, ys = [0, 2.5, 4, 5], [0, 0.2, 0.9, 1]
    for x in [0, 0.5, 2.5, 3.0, 3.99, 4, 4.5, 5]:
        assert norm(conn, "letterboxd_rating", x) == pytest.approx(float(np.interp(x, xs, ys)), abs=1e-12)
    conn.execute("delete from reelscore.metric_definitions where code = 'letterboxd_rating'")


def test_percentile_normalization_from_stored_distribution(conn):
    rng = np.random.default_rng(7)
    raw = np.round(rng.lognormal(3, 1.2, 500), 3)
    conn.execute("""insert into reelscore.metric_definitions
        (slot, code, name, category, source, data_type, raw_scale_min, raw_scale_max,
         normalization_type, normalization_params)
        values (31, 'reddit_posts', 'Reddit posts', 'popularity', 'reddit', 'numeric', 0, null, 'percentile', '{}')""")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="no stored distribution"):
        norm(conn, "reddit_posts", 5)
    with conn.cursor() as cur:
        cur.execute("insert into reelscore.movies (id, title) select g, 'Film ' || g from generate_series(900001, 900500) g")
        mid = cur.execute("select id from reelscore.metric_definitions where code = 'reddit_posts'").fetchone()[0]
        cur.executemany("insert into reelscore.metric_values (movie_id, metric_id, raw_value) values (%s, %s, %s)",
                        [(900001 + i, mid, float(v)) for i, v in enumerate(raw)])
    conn.execute("select reelscore.refresh_distributions(101)")
    knots = np.quantile(raw, np.linspace(0, 1, 101))  # numpy's default is the same linear interpolation
    for x in [raw.min() / 2, raw.min(), float(np.median(raw)), 20.0, float(raw.max()), raw.max() + 1]:
        want = float(np.interp(x, knots, np.linspace(0, 1, 101), left=0.0, right=1.0))
        assert norm(conn, "reddit_posts", float(x)) == pytest.approx(want, abs=1e-9)
    # the CDF at the median is about one half
    assert norm(conn, "reddit_posts", float(np.median(raw))) == pytest.approx(0.5, abs=0.01)
    conn.execute("delete from reelscore.metric_values where metric_id = %s", (mid,))
    conn.execute("delete from reelscore.movies where id between 900001 and 900500")
    conn.execute("delete from reelscore.metric_definitions where code = 'reddit_posts'")


@pytest.mark.parametrize("code,raw,sqlstate,fragment", [
    ("imdb_rating", 10.5, "22003", "above the raw scale maximum 10"),
    ("imdb_rating", -0.1, "22003", "below the raw scale minimum 0"),
    ("imdb_vote_count", -1, "22003", "below the raw scale minimum"),
    ("afi_top_100", 101, "22003", "above the raw scale maximum 100"),
    ("afi_top_100", 0, "22003", "below the raw scale minimum 1"),
    ("oscar_wins", 1.5, "22023", "whole number"),
    ("venice_golden_lion", 2, "22023", "must be 0 or 1"),
    ("metacritic_score", float("nan"), "22023", "NaN"),
    ("tmdb_budget", float("inf"), "22023", "infinite"),
    ("no_such_metric", 1, "22023", "unknown metric code: 'no_such_metric'"),
])
def test_bad_values_get_a_clear_error(conn, code, raw, sqlstate, fragment):
    with pytest.raises(psycopg.Error) as info:
        norm(conn, code, raw)
    assert info.value.diag.sqlstate == sqlstate
    assert fragment in info.value.diag.message_primary
    if code != "no_such_metric":
        assert code in info.value.diag.message_primary


def test_null_gives_null(conn):
    assert norm(conn, "imdb_rating", None) is None


def _seeded_codes():
    return sorted(INVENTORY)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_seeded_metric_is_monotone(conn, data):
    code = data.draw(st.sampled_from(_seeded_codes()))
    kind, p = INVENTORY[code]
    if kind == "linear":
        strat = st.floats(p[0], p[1])
    elif kind == "bool":
        strat = st.sampled_from([0.0, 1.0])
    elif kind in ("steps",):
        strat = st.integers(0, 50).map(float)
    elif kind == "sigmoid":
        hi = {"afi_top_100": 100, "bfi_top_100": 100, "sight_sound_rank": 250}.get(code, 10**7)
        strat = st.integers(1, hi).map(float)
    elif code in ("tmdb_vote_count", "imdb_vote_count", "twitter_mentions"):  # counts are whole numbers
        strat = st.integers(0, 10**12).map(float)
    else:
        strat = st.floats(0, 1e12)
    xs = sorted(data.draw(st.lists(strat, min_size=2, max_size=20)))
    ys = conn.execute("select reelscore.normalize_value(%s, x) from unnest(%s::float8[]) with ordinality u(x, i) order by i",
                      (code, xs)).fetchall()
    ys = [y[0] for y in ys]
    assert all(0.0 <= y <= 1.0 for y in ys)
    pairs = list(zip(ys, ys[1:]))
    if kind == "sigmoid":  # better (smaller) ranks score higher
        assert all(a >= b for a, b in pairs), (code, xs, ys)
    else:
        assert all(a <= b for a, b in pairs), (code, xs, ys)


BAD_DEFINITIONS = [
    ("logarithmic", '{"threshold": -5}', "normalization_params.threshold must be > 0"),
    ("logarithmic", '{}', "normalization_params.threshold is required"),
    ("logarithmic", '{"threshold": "big"}', "normalization_params.threshold must be a number"),
    ("logarithmic", '{"threshold": 10, "curve": 2}', "normalization_params.curve is not a parameter"),
    ("sigmoid", '{"k": 0.1}', "normalization_params.midpoint is required"),
    ("sigmoid", '{"k": -1, "midpoint": 3}', "normalization_params.k must be > 0"),
    ("custom", '{"steps": []}', "normalization_params.steps must be a non-empty array"),
    ("custom", '{"steps": [0, 1.5]}', "normalization_params.steps holds 1.5"),
    ("piecewise", '{"knots": [[0, 0], [0, 1]]}', "knots x values must increase"),
    ("piecewise", '{"knots": [[0, 0]]}', "at least two"),
    ("piecewise", '{"knots": [[0, 0], [1, 2]]}', "outside 0..1"),
    ("boolean", '{"value": 3}', "normalization_params.value must be between 0 and 1"),
    ("linear", '[]', "must be a JSON object"),
]


@pytest.mark.parametrize("ntype,params,fragment", BAD_DEFINITIONS)
def test_bad_definitions_are_rejected_naming_the_field(conn, ntype, params, fragment):
    data_type = "boolean" if ntype == "boolean" else "numeric"
    with pytest.raises(psycopg.Error) as info:
        conn.execute("""insert into reelscore.metric_definitions
            (slot, code, name, category, source, data_type, raw_scale_min, raw_scale_max,
             normalization_type, normalization_params)
            values (32, 'bad_metric', 'Bad', 'rating', 'x', %s, 0, 1, %s, %s::jsonb)""", (data_type, ntype, params))
    assert info.value.diag.sqlstate == "22023"
    assert fragment in info.value.diag.message_primary
    assert conn.execute("select count(*) from reelscore.metric_definitions where code = 'bad_metric'").fetchone()[0] == 0


def test_other_bad_definitions(conn):
    with pytest.raises(psycopg.Error, match="linear normalization needs raw_scale_min and raw_scale_max"):
        conn.execute("update reelscore.metric_definitions set raw_scale_max = null where code = 'imdb_rating'")
    with pytest.raises(psycopg.Error, match="boolean metric needs boolean normalization"):
        conn.execute("update reelscore.metric_definitions set normalization_type = 'linear', normalization_params = '{}' "
                     "where code = 'cannes_palme_dor'")
    with pytest.raises(psycopg.Error, match="code of a metric cannot change"):
        conn.execute("update reelscore.metric_definitions set code = 'imdb_score' where code = 'imdb_rating'")
    with pytest.raises(psycopg.Error, match="2-50 characters"):
        conn.execute("""insert into reelscore.metric_definitions (slot, code, name, category, source, data_type,
            normalization_type, normalization_params) values (32, 'Bad Code;--', 'x', 'rating', 'x', 'numeric',
            'logarithmic', '{"threshold": 5}')""")


def test_definition_change_takes_effect_at_once_and_is_recorded(conn):
    before = conn.execute("select version from reelscore.metric_definitions where code = 'tmdb_popularity'").fetchone()[0]
    assert norm(conn, "tmdb_popularity", 99) == pytest.approx(math.log(100) / math.log(1001))
    conn.execute("select set_config('reelscore.actor', 'alice', false), set_config('reelscore.reason', 'new scale', false)")
    conn.execute("""update reelscore.metric_definitions set normalization_params = '{"threshold": 99}'
                    where code = 'tmdb_popularity'""")
    assert norm(conn, "tmdb_popularity", 99) == pytest.approx(1.0)
    after = conn.execute("select version from reelscore.metric_definitions where code = 'tmdb_popularity'").fetchone()[0]
    assert after == before + 1
    who, why, old, new = conn.execute("""select changed_by, change_reason, old_values->'normalization_params',
        new_values->'normalization_params' from reelscore.metric_definition_history
        where metric_code = 'tmdb_popularity' order by id desc limit 1""").fetchone()
    assert (who, why) == ("alice", "new scale")
    assert old == {"threshold": 1000} and new == {"threshold": 99}
    # a change that does not touch normalization keeps the version
    conn.execute("update reelscore.metric_definitions set description = 'x' where code = 'tmdb_popularity'")
    assert conn.execute("select version from reelscore.metric_definitions where code = 'tmdb_popularity'").fetchone()[0] == after
    conn.execute("""update reelscore.metric_definitions set normalization_params = '{"threshold": 1000}'
                    where code = 'tmdb_popularity'""")


def test_formulas_inline_into_set_based_queries(conn):
    plan = conn.execute("""explain (verbose, costs off)
        select reelscore.normalize_with(p.normalization_type, p.args, g::float8)
        from reelscore.metric_norm_params p, generate_series(1, 3) g""").fetchall()
    text = "\n".join(r[0] for r in plan)
    assert "CASE" in text
    assert "normalize_with" not in text and "norm_linear" not in text and "norm_log" not in text


def test_formula_functions_are_immutable_and_parallel_safe(conn):
    rows = conn.execute("""select proname, provolatile, proparallel, prosecdef from pg_proc
        where pronamespace = 'reelscore'::regnamespace and (proname like 'norm\\_%' or proname = 'normalize_with')""").fetchall()
    assert len(rows) == 8  # norm_linear, _log, _sigmoid, _steps, _boolean, _piecewise, _percentile, normalize_with
    assert all(v == "i" and p == "s" and not sd for _, v, p, sd in rows)
    vol = conn.execute("select provolatile from pg_proc where oid = 'reelscore.normalize_value(text, float8)'::regprocedure").fetchone()[0]
    assert vol == "s"


def test_roles_read_normalizes_admin_edits(role_conn):
    reader = role_conn("read")
    assert reader.execute("select reelscore.normalize_value('imdb_rating', 5)").fetchone()[0] == pytest.approx(0.5)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        reader.execute("update reelscore.metric_definitions set description = 'x' where code = 'imdb_rating'")
    writer = role_conn("write")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        writer.execute("update reelscore.metric_definitions set description = 'x' where code = 'imdb_rating'")
    admin = role_conn("admin")
    admin.execute("update reelscore.metric_definitions set source_reliability = 0.91 where code = 'imdb_rating'")
    assert admin.execute("select changed_by from reelscore.metric_definition_history order by id desc limit 1").fetchone()[0] == "rs_test_admin"
