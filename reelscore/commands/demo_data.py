"""reelscore demo-data: load the real sample data (vega-datasets' films and their metrics,
the curated awards and canon facts of data/facts/, MovieLens 100k when its loader exists)."""
from __future__ import annotations

import importlib
import sys


def register(sub) -> None:
    p = sub.add_parser("demo-data", help="load the real sample data: vega films, curated facts, MovieLens 100k")
    p.add_argument("--skip-movielens", action="store_true", help="do not load MovieLens 100k")
    p.set_defaults(func=run)


def run(args) -> int:
    from reelscore.cli import CommandError
    from reelscore.db import connect, set_actor
    from reelscore.ingest import demo

    if not demo.VEGA_MOVIES.is_file():
        raise CommandError(f"{demo.VEGA_MOVIES} not found: run 'make npm' (npm install) first")
    status = 0
    with connect() as conn:
        has = conn.execute("SELECT to_regprocedure('reelscore.finish_load(bigint,text,boolean)') IS NOT NULL").fetchone()[0]
        conn.commit()
        if not has:
            raise CommandError("the schema is not installed: run 'reelscore migrate' first")
        set_actor(conn, "demo-data", "reelscore demo-data")
        conn.commit()
        n, inserted, values = demo.load_vega(conn)
        print(f"vega films: {n:,} in movies.json, {inserted:,} new")
        print(f"  values  {values.line()}")
        facts, missing = demo.load_facts(conn)
        print(f"curated facts: {facts.line()}")
        if missing:
            print(f"  {len(missing)} facts name films that are not loaded: {', '.join(missing[:10])}", file=sys.stderr)
        for s in (values, facts):
            if s.rejected:
                status = 1
                print(f"  {s.rejected} rows of {s.source} were rejected: "
                      f"SELECT * FROM reelscore.load_rejections WHERE batch_id IN "
                      f"({', '.join(map(str, s.batches))})", file=sys.stderr)
        if not args.skip_movielens:
            try:
                movielens = importlib.import_module("reelscore.datasets.movielens")
            except ModuleNotFoundError:
                movielens = None
            if movielens is None or not hasattr(movielens, "load"):
                print("MovieLens 100k: loader not available (reelscore.datasets.movielens), skipped")
            else:
                report = movielens.load(conn)
                conn.commit()
                linked = report.get("films_linked", "?")
                matched = report.get("films_with_metrics", "?")
                print(f"MovieLens 100k: {report.get('users', '?')} users, {report.get('films', '?')} films "
                      f"({matched} of the {linked} linked films have metric data, i.e. matched a vega film by "
                      f"title and year; {report.get('films_matched_now', 0)} matched now), "
                      f"{report.get('ratings', '?')} ratings as feedback")
    return status
