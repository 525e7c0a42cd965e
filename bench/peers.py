"""Peers computed outside reelscore's SQL API, on the same rows: numpy, pandas and DuckDB
implementations of the registry's normalization and of the score semantics (DESIGN.md:
category score = weighted mean of a movie's present metrics in it; movie score =
category-weighted mean over the categories it has data in), a row-by-row PL/Python
normalizer, and the naive EAV SQL. They exist to be measured against; their results are
cross-checked against each other so a fast wrong peer cannot pass unnoticed."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

# --- normalization, vectorized (the formulas of sql/100-registry.sql) -------------------


def np_normalize_one(typ: str, args: list[float], x: np.ndarray) -> np.ndarray:
    if not args:
        return np.full(x.shape, np.nan)
    a = np.asarray(args, dtype=np.float64)
    if typ == "linear":
        return np.clip((x - a[0]) / (a[1] - a[0]), 0.0, 1.0)
    if typ == "logarithmic":
        return np.clip(np.log(np.maximum(x, 0) + 1) / np.log(a[0] + 1), 0.0, 1.0)
    if typ == "sigmoid":
        return 1.0 / (1.0 + np.exp(np.minimum(a[0] * (x - a[1]), 700.0)))
    if typ == "custom":
        k = np.clip(np.floor(x), 0, a.size - 1).astype(np.int64)
        return a[k]
    if typ == "boolean":
        return np.where(x != 0, a[0], 0.0)
    if typ == "piecewise":
        h = a.size // 2
        return np.interp(x, a[:h], a[h:])
    if typ == "percentile":
        y = np.interp(x, a, np.linspace(0, 1, a.size))
        return np.where(x < a[0], 0.0, np.where(x >= a[-1], 1.0, y))
    raise ValueError(f"unknown normalization type {typ!r}")


def np_normalize(params: dict[int, tuple[str, list[float]]], metric_ids: np.ndarray,
                 raws: np.ndarray) -> np.ndarray:
    """Normalize raw values given each value's metric id (one pass per metric, after a sort)."""
    out = np.empty(raws.shape)
    order = np.argsort(metric_ids, kind="stable")
    ids_sorted = metric_ids[order]
    bounds = np.flatnonzero(np.diff(ids_sorted)) + 1
    for seg in np.split(np.arange(ids_sorted.size), bounds):
        if seg.size == 0:
            continue
        mid = int(ids_sorted[seg[0]])
        typ, args = params.get(mid, ("linear", []))
        sel = order[seg]
        out[sel] = np_normalize_one(typ, args, raws[sel])
    return out


def norm_params(conn: psycopg.Connection) -> dict[int, tuple[str, list[float]]]:
    return {int(r[0]): (r[1], list(r[2] or [])) for r in conn.execute(
        "SELECT metric_id, normalization_type, args FROM reelscore.metric_norm_params").fetchall()}


def copy_binary_int2_float8(conn: psycopg.Connection, query: str) -> tuple[np.ndarray, np.ndarray]:
    """COPY (query returning smallint, float8 NOT NULL) TO STDOUT in binary, parsed by numpy
    without building a Python object per row."""
    buf = io.BytesIO()
    with conn.cursor().copy(f"COPY ({query}) TO STDOUT (FORMAT binary)") as cp:
        for chunk in cp:
            buf.write(chunk)
    raw = buf.getbuffer()
    body = raw[19:len(raw) - 2]            # 19-byte header (no extension area), 2-byte trailer
    dt = np.dtype([("nf", ">i2"), ("l1", ">i4"), ("m", ">i2"), ("l2", ">i4"), ("v", ">f8")])
    rec = np.frombuffer(body, dtype=dt)
    return rec["m"].astype(np.int64), rec["v"].astype(np.float64)


# --- the row-by-row PL/Python normalizer ----------------------------------------------
PY_NORMALIZE = r"""
CREATE OR REPLACE FUNCTION bench.py_normalize(p_type text, p_args float8[], p_raw float8)
RETURNS float8
LANGUAGE plpython3u IMMUTABLE PARALLEL SAFE SECURITY INVOKER
AS $$
import math
if p_raw is None or not p_args:
    return None
a = p_args
if p_type == 'linear':
    return min(1.0, max(0.0, (p_raw - a[0]) / (a[1] - a[0])))
if p_type == 'logarithmic':
    return min(1.0, max(0.0, math.log(max(p_raw, 0) + 1) / math.log(a[0] + 1)))
if p_type == 'sigmoid':
    return 1.0 / (1.0 + math.exp(min(a[0] * (p_raw - a[1]), 700.0)))
if p_type == 'custom':
    return a[min(max(int(math.floor(p_raw)), 0), len(a) - 1)]
if p_type == 'boolean':
    return a[0] if p_raw != 0 else 0.0
if p_type == 'piecewise':
    h = len(a) // 2
    xs, ys = a[:h], a[h:]
    if p_raw < xs[0]:
        return ys[0]
    for i in range(1, h):
        if p_raw < xs[i]:
            return ys[i - 1] + (p_raw - xs[i - 1]) * (ys[i] - ys[i - 1]) / (xs[i] - xs[i - 1])
    return ys[-1]
if p_type == 'percentile':
    if p_raw < a[0]:
        return 0.0
    if p_raw >= a[-1]:
        return 1.0
    for i in range(1, len(a)):
        if p_raw < a[i]:
            return ((i - 1) + (p_raw - a[i - 1]) / (a[i] - a[i - 1])) / (len(a) - 1)
return None
$$;
"""


# --- scoring peers ----------------------------------------------------------------------
CATEGORIES = ("rating", "award", "financial", "cultural", "popularity")


def build_weights(conn: psycopg.Connection, profile: str = "balanced") -> str:
    """bench.weights: per active metric its normalization, weight within its category and
    the category's weight, from the profile when the profiles table exists (else the seed's
    default weights 0.25/0.25/0.25/0.25/0). Returns where the weights came from."""
    conn.execute("DROP TABLE IF EXISTS bench.weights")
    has_profiles = conn.execute("SELECT to_regclass('reelscore.weight_profiles') IS NOT NULL").fetchone()[0]
    found = has_profiles and conn.execute(
        "SELECT 1 FROM reelscore.weight_profiles WHERE name = %s", (profile,)).fetchone()
    if found:
        conn.execute(sql.SQL("""
          CREATE TABLE bench.weights AS
          SELECT p.metric_id, p.category, p.normalization_type, p.args,
                 CASE WHEN pmw.id IS NULL THEN d.normalized_weight WHEN pmw.enabled THEN pmw.weight
                      ELSE 0 END AS weight,
                 CASE p.category WHEN 'rating' THEN wp.rating_weight WHEN 'award' THEN wp.award_weight
                      WHEN 'financial' THEN wp.financial_weight WHEN 'cultural' THEN wp.cultural_weight
                      WHEN 'popularity' THEN wp.popularity_weight END AS cat_weight
          FROM reelscore.metric_norm_params p
          JOIN reelscore.metric_definitions d ON d.id = p.metric_id
          CROSS JOIN (SELECT * FROM reelscore.weight_profiles WHERE name = {profile}) wp
          LEFT JOIN reelscore.profile_metric_weights pmw ON pmw.profile_id = wp.id AND pmw.metric_code = d.code
          WHERE p.active AND cardinality(p.args) > 0""").format(profile=sql.Literal(profile)))
        source = f"profile {profile!r}"
    else:
        conn.execute("""
          CREATE TABLE bench.weights AS
          SELECT p.metric_id, p.category, p.normalization_type, p.args, d.normalized_weight AS weight,
                 CASE p.category WHEN 'popularity' THEN 0.0 ELSE 0.25 END::float8 AS cat_weight
          FROM reelscore.metric_norm_params p JOIN reelscore.metric_definitions d ON d.id = p.metric_id
          WHERE p.active AND cardinality(p.args) > 0""")
        source = "seed default category weights (no weight_profiles table)"
    conn.execute("ALTER TABLE bench.weights ADD PRIMARY KEY (metric_id)")
    conn.execute("ANALYZE bench.weights")
    return source


def naive_score_sql(where: str = "", tail: str = "") -> str:
    """The naive EAV query: GROUP BY over raw values, normalizing per row."""
    return f"""
      SELECT c.movie_id, sum(c.cw * c.s) / sum(c.cw) AS score
      FROM (SELECT v.movie_id, w.category, max(w.cat_weight) AS cw,
                   sum(w.weight * reelscore.normalize_with(w.normalization_type, w.args, v.raw_value))
                     / nullif(sum(w.weight), 0) AS s
            FROM reelscore.metric_values v JOIN bench.weights w ON w.metric_id = v.metric_id
            {where}
            GROUP BY v.movie_id, w.category) c
      WHERE c.cw > 0 AND c.s IS NOT NULL
      GROUP BY c.movie_id {tail}"""


def weights_frame(conn: psycopg.Connection):
    import pandas as pd
    rows = conn.execute("SELECT metric_id, category, normalization_type, args, weight, cat_weight "
                        "FROM bench.weights").fetchall()
    return pd.DataFrame(rows, columns=["metric_id", "category", "normalization_type", "args", "weight",
                                       "cat_weight"])


def pandas_scores(conn: psycopg.Connection, weights) -> object:
    """Client-side pipeline: COPY the long table out as CSV, parse, normalize, group twice."""
    import pandas as pd
    buf = io.BytesIO()
    with conn.cursor().copy("COPY (SELECT movie_id, metric_id, raw_value FROM reelscore.metric_values) "
                            "TO STDOUT (FORMAT csv)") as cp:
        for chunk in cp:
            buf.write(chunk)
    buf.seek(0)
    df = pd.read_csv(buf, header=None, names=["movie_id", "metric_id", "raw_value"],
                     dtype={"movie_id": "int64", "metric_id": "int16", "raw_value": "float64"})
    df = df.merge(weights, on="metric_id", how="inner")
    params = {int(r.metric_id): (r.normalization_type, list(r.args)) for r in weights.itertuples()}
    df["n"] = np_normalize(params, df["metric_id"].to_numpy(np.int64), df["raw_value"].to_numpy())
    df["wn"] = df["weight"] * df["n"]
    g = df.groupby(["movie_id", "category"], sort=False).agg(wn=("wn", "sum"), w=("weight", "sum"),
                                                              cw=("cat_weight", "max"))
    g = g[(g["w"] > 0) & (g["cw"] > 0)]
    g["s"] = g["wn"] / g["w"]
    g["cws"] = g["cw"] * g["s"]
    m = g.groupby(level=0).agg(cws=("cws", "sum"), cw=("cw", "sum"))
    return (m["cws"] / m["cw"]).rename("score")


def export_parquet(conn: psycopg.Connection, data_dir: Path) -> Path:
    """metric_values as Parquet (written once per catalogue) for DuckDB."""
    import duckdb
    data_dir.mkdir(parents=True, exist_ok=True)
    csv = data_dir / "metric_values.csv"
    pq = data_dir / "metric_values.parquet"
    with open(csv, "wb") as f, conn.cursor().copy(
            "COPY (SELECT movie_id, metric_id, raw_value FROM reelscore.metric_values) TO STDOUT (FORMAT csv)") as cp:
        f.writelines(cp)
    con = duckdb.connect()
    con.execute(f"COPY (SELECT * FROM read_csv('{csv}', header=false, "
                f"columns={{'movie_id': 'BIGINT', 'metric_id': 'SMALLINT', 'raw_value': 'DOUBLE'}})) "
                f"TO '{pq}' (FORMAT parquet)")
    con.close()
    csv.unlink()
    return pq


DUCK_NORMALIZE = """CASE w.normalization_type
  WHEN 'linear' THEN least(1.0, greatest(0.0, (v.raw_value - w.args[1]) / (w.args[2] - w.args[1])))
  WHEN 'logarithmic' THEN least(1.0, greatest(0.0, ln(greatest(v.raw_value, 0) + 1) / ln(w.args[1] + 1)))
  WHEN 'sigmoid' THEN 1.0 / (1.0 + exp(least(w.args[1] * (v.raw_value - w.args[2]), 700.0)))
  WHEN 'custom' THEN w.args[least(greatest(floor(v.raw_value), 0)::bigint, len(w.args) - 1) + 1]
  WHEN 'boolean' THEN CASE WHEN v.raw_value <> 0 THEN w.args[1] ELSE 0.0 END
END"""


def duckdb_scores(pq: Path, weights) -> object:
    """DuckDB over the Parquet copy of the same rows (piecewise and percentile metrics are
    not expressed here; the seed's registry has none)."""
    import duckdb
    con = duckdb.connect()
    con.register("weights", weights)
    df = con.execute(f"""
      SELECT movie_id, sum(cw * s) / sum(cw) AS score
      FROM (SELECT v.movie_id, w.category, max(w.cat_weight) AS cw,
                   sum(w.weight * ({DUCK_NORMALIZE})) / nullif(sum(w.weight), 0) AS s
            FROM read_parquet('{pq}') v JOIN weights w ON w.metric_id = v.metric_id
            GROUP BY v.movie_id, w.category)
      WHERE cw > 0 AND s IS NOT NULL
      GROUP BY movie_id""").df()
    con.close()
    return df.set_index("movie_id")["score"]


# --- wide peers: one column per metric, normalized once (as movie_features holds them) ----
def wide_normalized(conn: psycopg.Connection, weights) -> dict:
    """The same rows as a dense movies x metrics matrix of normalized values (NaN where a
    movie has no value), built once and not timed: the layout the issue's fastest peers
    (numpy, DuckDB over a wide table) start from. Only the metrics of bench.weights."""
    buf = io.BytesIO()
    with conn.cursor().copy("COPY (SELECT v.movie_id, v.metric_id, v.raw_value FROM reelscore.metric_values v "
                            "JOIN bench.weights w ON w.metric_id = v.metric_id) TO STDOUT (FORMAT binary)") as cp:
        for chunk in cp:
            buf.write(chunk)
    raw = buf.getbuffer()
    dt = np.dtype([("nf", ">i2"), ("l0", ">i4"), ("movie", ">i8"), ("l1", ">i4"), ("m", ">i2"),
                   ("l2", ">i4"), ("v", ">f8")])
    rec = np.frombuffer(raw[19:len(raw) - 2], dtype=dt)
    movie_ids, row = np.unique(rec["movie"].astype(np.int64), return_inverse=True)
    metric_ids = [int(m) for m in weights["metric_id"]]
    col = {m: j for j, m in enumerate(metric_ids)}
    params = {int(r.metric_id): (r.normalization_type, list(r.args)) for r in weights.itertuples()}
    mids = rec["m"].astype(np.int64)
    x = np.full((movie_ids.size, len(metric_ids)), np.nan)
    x[row, np.array([col[m] for m in mids])] = np_normalize(params, mids, rec["v"].astype(np.float64))
    present = ~np.isnan(x)
    # also as movie_features holds them: values with 0 where missing, presence as 0/1
    return {"movie_ids": movie_ids, "x": x, "x0": np.where(present, x, 0.0), "p": present.astype(np.float64),
            "metric_ids": metric_ids,
            "weight": weights["weight"].to_numpy(np.float64), "category": list(weights["category"]),
            "cat_weight": weights["cat_weight"].to_numpy(np.float64)}


def numpy_wide_scores(wide: dict) -> object:
    """The score over the wide matrix: per category the weighted mean of the present metrics,
    then the category-weighted mean over the categories a movie has (the naive query's
    semantics), as two matrix products (movies x metrics by metrics x categories) over the
    zero-filled values and the presence matrix (movie_features' nvec and pvec)."""
    import pandas as pd
    x = wide["x"]
    cats = [c for c in CATEGORIES if c in wide["category"]]
    w = np.zeros((x.shape[1], len(cats)))
    cw = np.zeros(len(cats))
    for k, c in enumerate(wide["category"]):
        w[k, cats.index(c)] = wide["weight"][k]
        cw[cats.index(c)] = wide["cat_weight"][k]
    wsum = wide["p"] @ w
    wx = wide["x0"] @ w
    has = (wsum > 0) & (cw > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(has, wx / np.where(has, wsum, 1.0), 0.0)
    den = has @ cw
    keep = den > 0
    return pd.Series((s @ cw)[keep] / den[keep], index=wide["movie_ids"][keep], name="score")


def duckdb_wide_scores(con, wide: dict) -> object:
    """The same score in DuckDB over a wide table (one column per metric, normalized), which
    `con` holds as table wide (see duckdb_wide_table): per category the weighted sum and the
    weight present, then the category-weighted mean."""
    sums, num, den = [], [], []
    for cat in CATEGORIES:
        j = [k for k, c in enumerate(wide["category"]) if c == cat]
        if not j or float(wide["cat_weight"][j[0]]) <= 0:
            continue
        cw = float(wide["cat_weight"][j[0]])
        sums.append(" + ".join(f"{float(wide['weight'][k])!r} * coalesce(m{k}, 0)" for k in j) + f" AS wx_{cat}")
        sums.append(" + ".join(f"CASE WHEN m{k} IS NULL THEN 0 ELSE {float(wide['weight'][k])!r} END" for k in j)
                    + f" AS ws_{cat}")
        num.append(f"CASE WHEN ws_{cat} > 0 THEN {cw!r} * wx_{cat} / ws_{cat} ELSE 0 END")
        den.append(f"CASE WHEN ws_{cat} > 0 THEN {cw!r} ELSE 0 END")
    df = con.execute(f"SELECT movie_id, score FROM (SELECT movie_id, ({' + '.join(num)}) / nullif({' + '.join(den)}, 0) "
                     f"AS score FROM (SELECT movie_id, {', '.join(sums)} FROM wide)) WHERE score IS NOT NULL").df()
    return df.set_index("movie_id")["score"]


def duckdb_wide_table(wide: dict):
    """A DuckDB connection holding the wide matrix as table wide (movie_id, m0, m1, ...)."""
    import duckdb
    import pandas as pd
    frame = pd.DataFrame(wide["x"], columns=[f"m{k}" for k in range(wide["x"].shape[1])])
    frame.insert(0, "movie_id", wide["movie_ids"])
    con = duckdb.connect()
    con.register("wide_frame", frame)
    con.execute("CREATE TABLE wide AS SELECT * FROM wide_frame")
    con.unregister("wide_frame")
    return con
