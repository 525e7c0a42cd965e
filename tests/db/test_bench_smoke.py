"""The benchmark harness at 1k scale with --smoke (what CI runs of `make bench`): it builds
its data with reelscore synth, runs every group, and writes results of the promised shape.
Speed is not asserted (that is the benchmark's job); shape and the peers' agreement are."""
import datetime as dt
import json
import re

import numpy as np
import psycopg
import pytest
from psycopg import sql

from bench import core, run
from tests.conftest import url_for_db

KINDS = {"latency", "throughput", "concurrency", "memory"}
STATUSES = {"ok", "not available", "failed"}


@pytest.fixture(scope="module")
def smoke(db_url, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    try:
        rc = run.main(["--scale", "1k", "--smoke", "--database", db_url, "--no-migrate",
                       "--results-dir", str(out / "results"), "--docs", str(out / "benchmarks.md"),
                       "--data-dir", str(out / "data")])
    finally:
        # the ingest group's second database (<database>_load): the whole-catalogue load
        load_db = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"] + "_load"
        with psycopg.connect(url_for_db(db_url, "postgres"), autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(load_db)))
    assert rc == 0
    files = list((out / "results").glob("*.json"))
    assert len(files) == 1
    return out, json.loads(files[0].read_text()), files[0]


def test_result_document_shape(smoke):
    _, doc, path = smoke
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", doc["date"]) and path.name == f"{doc['date']}-{doc['scale']}.json"
    dt.date.fromisoformat(doc["date"])
    assert doc["scale"] == "1k" and doc["movies"] == 1000 and doc["smoke"] is True
    m = doc["machine"]
    assert m["cpu"] and m["cores"] >= 1 and m["ram_gb"] > 0
    v = doc["versions"]
    assert v["postgresql"].startswith("15")
    assert {"vector", "timescaledb", "plpython3u"} <= set(v["extensions"])
    assert v["pandas"] and v["duckdb"] and "pgbench" in (v["pgbench"] or "")
    assert doc["data"]["movies"] == 1000 and doc["data"]["values"] > 1000


def test_every_group_reports_rows_of_the_promised_shape(smoke):
    _, doc, _ = smoke
    rows = doc["rows"]
    assert {r["group"] for r in rows} == set(run.ALL)
    names = {r["name"] for r in rows}
    assert len(names) == len(rows), "row names are unique (baselines refer to them)"
    for r in rows:
        assert r["kind"] in KINDS and r["status"] in STATUSES, r
        if r["status"] != "ok":
            assert r["note"], f"{r['name']}: a row that did not run says why"
            continue
        assert r["runs"] >= 1 and r["median"] >= 0, r
        if r["kind"] != "concurrency":   # pgbench logs fast transactions as 0 µs (lazy clock)
            assert r["median"] > 0, r
        assert r["min"] <= r["median"] <= r["p95"] <= r["max"], r
        if r["kind"] in ("latency", "concurrency"):
            assert r["p95"] <= r["p99"] <= r["max"], r
        if r["baseline"] is not None:
            assert r["baseline"] in names, r
        if r["ratio"] is not None:
            assert r["ratio"] > 0
    failed = [f"{r['name']}: {r['note']}" for r in rows if r["status"] == "failed"]
    assert not failed, "failed rows:\n" + "\n".join(failed)


def test_ratio_is_time_per_unit_of_work_against_the_baseline(smoke):
    _, doc, _ = smoke
    by_name = {r["name"]: r for r in doc["rows"]}
    checked = 0
    for r in doc["rows"]:
        b = by_name.get(r["baseline"]) if r["baseline"] else None
        if r["status"] == "ok" and b is not None and b["status"] == "ok":
            if r["kind"] == "concurrency":
                mine, theirs = 1 / r["tps"], 1 / b["tps"]
            else:
                mine = r["median"] / (r["work"] or 1)
                theirs = b["median"] / (b["work"] or 1)
            assert r["ratio"] == pytest.approx(mine / theirs, rel=1e-9)
            checked += 1
    assert checked >= 5


def test_peers_compute_the_same_numbers(smoke):
    _, doc, _ = smoke
    by_name = {r["name"]: r for r in doc["rows"]}
    numpy_row = by_name["normalize: numpy in the client (COPY binary out, then vectorized)"]
    assert numpy_row["status"] == "ok" and numpy_row["agrees_with_sql"] is True
    assert by_name["normalize: PL/Python row by row"]["agrees_with_sql"] is True
    for name in ("pandas: COPY out, parse, normalize, group (client)",
                 "duckdb: the same rows from Parquet (exported once)"):
        assert by_name[name]["agrees_with_naive_sql"] is True, name


def test_pgbench_rows_have_tps_and_percentiles(smoke):
    _, doc, _ = smoke
    floor = [r for r in doc["rows"] if r["name"].startswith("select 1 (protocol floor) @")]
    assert {r["clients"] for r in floor} == {1, 2}
    for r in floor:
        assert r["status"] == "ok" and r["tps"] > 0 and r["transactions"] == r["runs"] > 0


def test_plans_and_markdown_written(smoke):
    out, doc, path = smoke
    plans = list((path.parent / f"{doc['date']}-{doc['scale']}-plans").glob("*.txt"))
    assert len(plans) >= 5
    for p in plans:
        assert "Execution Time" in p.read_text() or "EXPLAIN failed" in p.read_text()
    referenced = {r["plan"] for r in doc["rows"] if r.get("plan")}
    assert referenced <= {p.name for p in plans}
    md = (out / "benchmarks.md").read_text()
    assert md.startswith("# Benchmarks")
    assert doc["machine"]["cpu"] in md and doc["versions"]["postgresql"] in md
    for group in run.ALL:
        assert f"## {group}" in md
    assert "| benchmark | kind | median | p95 | p99 | runs |" in md


def test_synthetic_data_passes_the_registrys_own_checks(smoke, db_url):
    _, doc, _ = smoke
    with psycopg.connect(db_url) as c:
        movies = c.execute("SELECT count(*) FROM reelscore.movies").fetchone()[0]
        values, bad = c.execute(
            "SELECT count(*), count(*) FILTER (WHERE reelscore.raw_value_problem(d.data_type, d.raw_scale_min, "
            "d.raw_scale_max, v.raw_value) IS NOT NULL) FROM reelscore.metric_values v "
            "JOIN reelscore.metric_definitions d ON d.id = v.metric_id").fetchone()
        metrics = c.execute("SELECT count(DISTINCT metric_id) FROM reelscore.metric_values").fetchone()[0]
    assert movies == 1000
    assert bad == 0
    assert metrics >= 20   # at 1k some of the rarest awards may have no winner
    assert values >= doc["data"]["values"] - 1000   # the ingest group may add a few, never remove


def test_percentile_matches_numpy():
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 100):
        xs = rng.exponential(size=n).tolist()
        for q in (0, 50, 95, 99, 100):
            assert core.percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))
    assert core.percentile([], 50) is None
