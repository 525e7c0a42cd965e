"""`python -m bench.run --scale 1k|10k|100k|1m [--smoke] [--only NAME]`: the benchmark suite.

Builds (once, then reuses) the database `reelscore_bench_<scale>` on the local cluster:
created, migrated to head, filled with `reelscore synth`. Runs every group, then writes
bench/results/<date>-<scale>.json, EXPLAIN (ANALYZE, BUFFERS) outputs in bench/results/<date>-<scale>-plans/
and the table in docs/benchmarks.md. Never part of CI (CI runs the 1k smoke of the harness).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import psycopg

from bench import env, groups, report
from bench.core import Bench
from reelscore.config import ROOT, database_url

ALL = ("normalize", "scoring", "search", "coverage", "timeseries", "ingest", "admin", "pgbench")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=list(env.SCALES), default="100k")
    p.add_argument("--smoke", action="store_true", help="few calls and short pgbench runs: checks the harness")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help=f"run only these groups (repeat or comma-separate): {', '.join(ALL)}")
    p.add_argument("--database", metavar="URL",
                   help="use this database instead of reelscore_bench_<scale> on the local cluster "
                        "(migrated and filled the same way)")
    p.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--docs", type=Path, default=None,
                   help="where to write the markdown table (default docs/benchmarks.md for SCALE=1m, the "
                        "issues' scale, docs/benchmarks-<scale>.md otherwise)")
    p.add_argument("--data-dir", type=Path, default=None, help="cache of exported files (default bench/data/<scale>)")
    p.add_argument("--no-migrate", action="store_true", help="skip alembic upgrade head")
    p.add_argument("--merge", action="store_true",
                   help="with --only: re-run those groups and keep the other groups' rows of today's results "
                        "at this scale (the document says which groups were re-run, and when)")
    p.add_argument("--rebuild", action="store_true",
                   help="drop and recreate reelscore_bench_<scale> (schema and synthetic data) first")
    args = p.parse_args(argv)
    only = [x.strip() for item in args.only for x in item.split(",") if x.strip()]
    unknown = sorted(set(only) - set(ALL))
    if unknown:
        p.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(ALL)}")
    args.only = only or list(ALL)
    if args.docs is None:
        name = "benchmarks.md" if args.scale == "1m" else f"benchmarks-{args.scale}.md"
        args.docs = ROOT / "docs" / name
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.monotonic()
    started = dt.datetime.now(dt.UTC)
    n = env.SCALES[args.scale]

    def log(msg: str) -> None:
        print(msg, flush=True)

    if args.database:
        url = args.database
        if not args.no_migrate:
            env.migrate(url, log)
    else:
        dbname = f"reelscore_bench_{args.scale.replace('-', '_')}"
        url = env.ensure_database(database_url(), dbname, log, rebuild=args.rebuild)
        if not args.no_migrate:
            env.migrate_or_rebuild(database_url(), dbname, log)
    date = started.strftime("%Y-%m-%d")
    results_dir = args.results_dir
    plans_dir = results_dir / f"{date}-{args.scale}-plans"
    if plans_dir.exists():
        for old in plans_dir.glob("*.txt"):
            if not args.merge or any(old.name.startswith(f"{g}-") for g in args.only):
                old.unlink()
    data_dir = args.data_dir or (ROOT / "bench" / "data" / args.scale)

    with psycopg.connect(url, autocommit=True, application_name="reelscore-bench") as conn:
        # Fresh plans: psycopg's automatic prepared statements could otherwise pin a plan.
        conn.prepare_threshold = None
        data = env.ensure_data(conn, n, log=log, min_coverage=env.MIN_COVERAGE.get(args.scale, 0.0))
        b = Bench(conn, url, args.scale, n, args.smoke, plans_dir, data_dir, log)
        plan = groups.Plan(n, args.smoke)
        doc_versions = env.versions(conn)
        log(f"bench: scale {args.scale} ({n:,} movies){' smoke' if args.smoke else ''}; groups {', '.join(args.only)}")
        groups.restore_interrupted(b)
        groups.ensure_scores(b)
        for name in args.only:
            t0 = time.monotonic()
            log(f"bench: {name}")
            try:
                if name == "pgbench":
                    from bench.pgbench import concurrency
                    concurrency(b, plan)
                else:
                    groups.GROUPS[name](b, plan)
            except Exception as exc:   # noqa: BLE001 - noqa: BLE001 - a group that breaks is reported, the others still run
                b.failed(name, f"{name} (group)", "throughput", exc)
            log(f"bench: {name} done in {time.monotonic() - t0:.1f} s")
        b.compute_ratios()
        conn.execute("SELECT 1")

    duration = time.monotonic() - t_start
    notes = static_notes(args.scale)
    doc = {
        "date": date, "started_at": started.isoformat(timespec="seconds"), "duration_s": round(duration, 1),
        "scale": args.scale, "movies": n, "smoke": args.smoke, "database": _redact(url),
        "machine": env.machine(), "versions": doc_versions, "data": data, "groups": args.only,
        "notes": notes, "rows": [r.to_dict() for r in b.rows],
    }
    json_path = results_dir / f"{date}-{args.scale}.json"
    if args.merge and json_path.exists():
        doc = merged(json.loads(json_path.read_text()), doc, args.only)
    report.write_json(json_path, doc)
    try:
        plans_rel = os.path.relpath(plans_dir, args.docs.parent)
    except ValueError:
        plans_rel = str(plans_dir)
    args.docs.parent.mkdir(parents=True, exist_ok=True)
    args.docs.write_text(report.markdown(doc, plans_rel))
    ok = sum(r.status == "ok" for r in b.rows)
    na = sum(r.status == "not available" for r in b.rows)
    bad = sum(r.status == "failed" for r in b.rows)
    log(f"bench: {ok} rows ok, {na} not available, {bad} failed; {duration:.0f} s; "
        f"wrote {json_path} and {args.docs}")
    return 0



def merged(old: dict, new: dict, rerun: list[str]) -> dict:
    """Today's results with the re-run groups' rows replaced (groups kept in suite order)."""
    rows = [r for r in old["rows"] if r["group"] not in rerun] + new["rows"]
    order = {g: i for i, g in enumerate(ALL)}
    rows.sort(key=lambda r: order.get(r["group"], len(order)))
    reruns = old.get("reruns", []) + [{"groups": rerun, "started_at": new["started_at"],
                                       "duration_s": new["duration_s"]}]
    notes = [n for n in old["notes"] if not n.startswith("Re-run:")]
    notes.append("Re-run: " + "; ".join(f"{', '.join(x['groups'])} at {x['started_at']} ({x['duration_s']:.0f} s)"
                                        for x in reruns)
                 + ", after fixes; their rows replace the first run's, the other rows are from the first run.")
    groups = sorted(set(old.get("groups", [])) | set(rerun), key=lambda g: order.get(g, len(order)))
    return {**old, "rows": rows, "reruns": reruns, "notes": notes, "groups": groups}


def static_notes(scale: str) -> list[str]:
    """Caveats printed above the tables (also re-applied by `python -m bench.report`)."""
    notes = [
        ("pgbench 15 writes per-transaction latencies with a lazily read clock: under load many fast "
         "transactions are logged as 0 µs, so the concurrency rows' percentiles understate latency (their "
         "notes say how many); TPS and pgbench's mean latency are exact, and concurrency ratios use 1/TPS."),
        ("Latency rows are timed in the client (psycopg, autocommit, no prepared statements), so they include "
         "a round trip on 127.0.0.1 (the `select 1 (protocol floor)` pgbench rows show its size). Calls and "
         "runs per row are capped by a time budget estimated from the warm-up; the runs column says how many "
         "were counted."),
        ("The cluster runs with jit = on (PostgreSQL's default): large set-based queries pay JIT compilation; "
         "the `jit = off` normalize row shows how much."),
        ("The machine has 2 cores shared with other work (see the load average above): absolute times move "
         "between runs by 2x and more; ratios within one run are the figures to read."),
    ]
    if scale in env.MIN_COVERAGE:
        notes.append(f"Scale {scale}: the SCALE=1m catalogue with every metric filled up to "
                     f"{env.MIN_COVERAGE[scale]:.0%} of the movies (`reelscore synth --min-coverage "
                     f"{env.MIN_COVERAGE[scale]}`: the added values are drawn from the metric's own), about 18.7 "
                     "values per movie: more than the ~17M metric values the issues state at 1M movies. Denser than real data; "
                     "docs/benchmarks.md has the realistic catalogue.")
        return notes
    notes.append("The synthetic catalogue is sparse the way real data is (awards and canon lists are rare, money and "
                 "critics' scores cover a minority): about 5.8 values per movie, so SCALE=1m holds about 5.8M metric "
                 "values, not the ~17M the issues mention (docs/benchmarks-1m-dense.md has the scoring group on a "
                 "catalogue of that size); rates per value carry over, totals scale with the value count.")
    if scale != "1m":
        notes.append(f"Scale {scale}: the issues' figures are for SCALE=1m (1,000,000 movies), in docs/benchmarks.md "
                     "(`make bench SCALE=1m`). Counts that the issues state at 1M (10M normalized values) are scaled "
                     "down proportionally here and each row says so.")
    return notes

def _redact(url: str) -> str:
    from reelscore.db import redact
    return redact(url)


if __name__ == "__main__":
    sys.exit(main())
