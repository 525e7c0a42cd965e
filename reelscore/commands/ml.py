"""reelscore ml: load MovieLens 100k, then learn weights, taste clusters and
collaborative-filtering factors from the feedback, and replay an A/B experiment; every
result is written back as rows (ml_models, weight_profiles, user_clusters, ...)."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("ml", help="MovieLens data and offline learning: weights, clusters, factors, A/B replay")
    msub = p.add_subparsers(dest="ml_command", metavar="STEP")
    load = msub.add_parser("load-movielens", help="fetch MovieLens 100k (recbole wheel, cached in data/cache) and load it")
    load.set_defaults(func=run)
    for name, text in (("weights", "learn category and metric weights (NNLS), publish profile ml_learned"),
                       ("clusters", "k-means taste clusters (k 4..6 by silhouette) with a profile each"),
                       ("factors", "biased ALS factors with 5-fold CV, HNSW-indexed vectors, recommend() timing"),
                       ("abtest", "replay held-out ratings as an A/B experiment ml_learned vs balanced"),
                       ("all", "load-movielens (if needed), weights, clusters, factors, abtest")):
        s = msub.add_parser(name, help=text)
        s.add_argument("--seed", type=int, default=42, help="seed of every split and model (default 42)")
        if name in ("factors", "all"):
            s.add_argument("--no-cv", action="store_true", help="skip the 5-fold cross-validation")
        s.add_argument("--json", action="store_true", help="print the full report as JSON")
        s.set_defaults(func=run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _print(title: str, report: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps({title: report}, indent=2, default=str))
        return
    print(f"== {title}")
    for k, v in report.items():
        if isinstance(v, dict | list):
            v = json.dumps(v, default=str)
            v = v if len(v) < 400 else v[:400] + " ..."
        print(f"  {k}: {v}")


def run(args) -> int:
    from ml import runs
    from reelscore.cli import CommandError
    from reelscore.datasets import movielens
    from reelscore.db import connect, set_actor

    step = args.ml_command
    as_json = getattr(args, "json", False)
    seed = getattr(args, "seed", 42)
    with connect() as conn:
        has = conn.execute("SELECT to_regclass('reelscore.ml_models') IS NOT NULL").fetchone()[0]
        if not has:
            raise CommandError("the schema is not installed: run 'reelscore migrate'")
        set_actor(conn, "reelscore ml", f"ml {step}")
        conn.commit()
        try:
            if step == "load-movielens" or (step == "all" and conn.execute(
                    "SELECT count(*) FROM reelscore.users WHERE movielens_id IS NOT NULL").fetchone()[0] == 0):
                try:
                    report = movielens.load(conn)
                except RuntimeError as exc:
                    raise CommandError(str(exc)) from exc
                _print("load-movielens", report, as_json)
            if step in ("weights", "all"):
                _print("weights", runs.run_weights(conn, seed=seed), as_json)
            if step in ("clusters", "all"):
                _print("clusters", runs.run_clusters(conn, seed=seed), as_json)
            if step in ("factors", "all"):
                _print("factors", runs.run_factors(conn, seed=seed, cv=not args.no_cv), as_json)
            if step in ("abtest", "all"):
                _print("abtest", runs.run_abtest(conn, seed=seed), as_json)
        except runs.MLError as exc:
            raise CommandError(str(exc)) from exc
    return 0
