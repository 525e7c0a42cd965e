"""reelscore refresh: run the periodic refreshes once, or every N seconds (the CLI path
when pg_cron is not in this database). The work is SQL: refresh_coverage(),
refresh_rollups(), and refresh_scores() when the scoring part is installed."""
from __future__ import annotations

import time

from reelscore.db import connect


def register(sub) -> None:
    p = sub.add_parser("refresh", help="refresh coverage, scores and rollups (once, or --every N seconds)")
    p.add_argument("--coverage", action="store_true", help="take a coverage snapshot (refresh_coverage)")
    p.add_argument("--scores", action="store_true", help="refresh stored scores (refresh_scores), if installed")
    p.add_argument("--rollups", action="store_true", help="refresh the time-series rollups' recent window")
    p.add_argument("--every", type=float, metavar="N", help="repeat every N seconds until interrupted")
    p.add_argument("--count", type=int, metavar="K", help="with --every: stop after K rounds")
    p.set_defaults(func=run)


def _round(conn, args) -> list[str]:
    from reelscore.cli import CommandError

    out = []
    if args.coverage:
        t = time.perf_counter()
        sid = conn.execute("select reelscore.refresh_coverage()").fetchone()[0]
        ms = (time.perf_counter() - t) * 1000
        out.append(f"coverage snapshot {sid} in {ms:.0f} ms" if sid is not None
                   else "coverage: another refresh is running, skipped")
    if args.scores:
        has = conn.execute("select to_regprocedure('reelscore.refresh_scores(text)') is not null").fetchone()[0]
        if not has:
            if not (args.coverage or args.rollups):
                raise CommandError("reelscore.refresh_scores(text) is not installed in this database")
            out.append("scores: refresh_scores is not installed, skipped")
        else:
            t = time.perf_counter()
            steps = conn.execute("select profile_name, action, movies from reelscore.refresh_scores(null)").fetchall()
            done = ", ".join(f"{p or '-'} {a} {m}" for p, a, m in steps) or "nothing due"
            out.append(f"scores: {done} in {(time.perf_counter() - t) * 1000:.0f} ms")
    if args.rollups:
        t = time.perf_counter()
        row = conn.execute("select hourly_rows, daily_rows, window_from from reelscore.refresh_rollups()").fetchone()
        ms = (time.perf_counter() - t) * 1000
        out.append(f"rollups: {row[0]} hourly and {row[1]} daily rows from {row[2]:%Y-%m-%d} in {ms:.0f} ms"
                   if row else "rollups: another refresh is running, skipped")
    return out


def run(args) -> int:
    from reelscore.cli import CommandError

    if not (args.coverage or args.scores or args.rollups):
        args.coverage = args.scores = args.rollups = True
    if args.every is not None and args.every < 1:
        raise CommandError(f"--every must be at least 1 second, got {args.every}")
    if args.count is not None and args.count < 1:
        raise CommandError(f"--count must be at least 1, got {args.count}")
    with connect(autocommit=True, app="reelscore refresh") as conn:
        has = conn.execute("select to_regprocedure('reelscore.refresh_coverage()') is not null").fetchone()[0]
        if not has:
            raise CommandError("the schema is not installed: run 'reelscore migrate' first")
        rounds = 0
        while True:
            started = time.monotonic()
            stamp = time.strftime("%H:%M:%S")
            for line in _round(conn, args):
                print(f"{stamp} {line}" if args.every else line, flush=True)
            rounds += 1
            if args.every is None or (args.count is not None and rounds >= args.count):
                return 0
            time.sleep(max(0.0, args.every - (time.monotonic() - started)))
