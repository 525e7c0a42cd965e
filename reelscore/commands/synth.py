"""reelscore synth: load N synthetic movies with realistic metric coverage (for benchmarks)."""
from __future__ import annotations

import sys

from reelscore.config import database_url
from reelscore.db import connect, redact


def register(sub) -> None:
    p = sub.add_parser(
        "synth", help="generate N synthetic movies and their metric values (COPY), deterministic per seed",
        description="Generate synthetic movies with realistic coverage and distributions (heavy-tailed "
                    "votes and money, sparse awards and lists, ratings correlated across sources, a "
                    "release-date spread) and load them with COPY. Movie ids continue after the "
                    "largest existing id; the same --movies and --seed always give the same rows.")
    p.add_argument("--movies", "-n", type=_count, required=True,
                   help="how many movies, e.g. 1000, 100k, 1m")
    p.add_argument("--seed", "-s", type=int, default=42, help="random seed (default 42)")
    p.add_argument("--database", metavar="URL", help="target database (default: REELSCORE_DATABASE_URL "
                                                     "or the local cluster)")
    p.add_argument("--truncate", action="store_true",
                   help="first empty reelscore.movies and metric_values (CASCADE: also rows that "
                        "reference movies, such as feedback)")
    p.add_argument("--min-coverage", type=_share, default=0.0, metavar="SHARE",
                   help="fill every metric up to this share of movies (0..1) with values drawn from "
                        "its own: a dense catalogue for load tests (0.6 gives 18.7M values at 1m); "
                        "default 0, the realistic sparse one")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _count(text: str) -> int:
    """Parse 1000, 10k, 1m, 1_000_000."""
    import argparse
    t = text.strip().lower().replace("_", "")
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    try:
        n = int(float(t[:-1]) * mult) if mult > 1 else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a count: {text!r} (use e.g. 1000, 100k, 1m)") from None
    if n < 1 or n > 50_000_000:
        raise argparse.ArgumentTypeError(f"--movies must be between 1 and 50m, got {text!r}")
    return n


def _share(text: str) -> float:
    """Parse a share between 0 and 1."""
    import argparse
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r} (use e.g. 0.6)") from None
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"--min-coverage must be between 0 and 1, got {text!r}")
    return x


def run(args) -> int:
    from reelscore import synth
    from reelscore.cli import CommandError

    url = args.database or database_url()
    with connect(url, register_vector=False) as conn:
        if conn.execute("SELECT to_regclass('reelscore.metric_values') IS NULL").fetchone()[0]:
            raise CommandError(f"no reelscore schema in {redact(url)}: run 'reelscore migrate' first")
        existing = conn.execute("SELECT count(*) FROM reelscore.movies").fetchone()[0]
        if existing and not args.truncate:
            print(f"synth: {existing} movies already present; new ids continue after them",
                  file=sys.stderr)
        stats = synth.write(conn, args.movies, args.seed, truncate=args.truncate,
                            progress=not args.quiet, min_coverage=args.min_coverage)
        conn.commit()
    missing = [c for c in synth.METRIC_CODES if c not in stats.per_metric]
    print(f"synth: {stats.movies} movies (ids {stats.first_id}..{stats.first_id + stats.movies - 1}), "
          f"{stats.values} metric values, seed {args.seed}, {stats.seconds:.1f} s "
          f"into {redact(url)}")
    print("synth: scores of the new movies are marked stale: run SELECT reelscore.refresh_scores() "
          "(and refresh_coverage()) before reading them", file=sys.stderr)
    if missing:
        print(f"synth: metrics not in the registry, skipped: {', '.join(missing)}", file=sys.stderr)
    return 0
