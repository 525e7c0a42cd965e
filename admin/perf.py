"""Server time of every admin page, measured in-process with Flask's test client (the time
from request to finished response: SQL, templates, no network, no browser rendering).

    python -m admin.perf [--url URL] [--calls 50] [--warm 5]

The benchmark harness can call `measure(url)` and report its rows; each row holds the route,
what it shows, p50/p95/max in milliseconds and the target (200 ms for pages, the seed's
dashboard target; 300 ms for the slider preview). A viewer `perf_viewer` is created in the
database through reelscore.admin_create_user when it does not exist."""
from __future__ import annotations

import argparse
import secrets
import statistics
import time
from typing import Any

import psycopg

PAGE_TARGET_MS = 200.0
PREVIEW_TARGET_MS = 300.0
USER = "perf_viewer"


def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[int(q * 100) - 1]


def _routes(conn: psycopg.Connection) -> list[tuple[str, str, float]]:
    """(path, label, target ms). Movies picked by id so every run asks the same."""
    mid = conn.execute("SELECT min(movie_id) FROM reelscore.metric_values").fetchone()[0] or 1
    rich = conn.execute("SELECT movie_id FROM reelscore.metric_values GROUP BY movie_id "
                        "ORDER BY count(*) DESC, movie_id LIMIT 1").fetchone()
    rich_id = rich[0] if rich else mid
    word = conn.execute("SELECT split_part(title, ' ', 1) FROM reelscore.movies WHERE id = %s",
                        (rich_id,)).fetchone()
    q = (word[0] if word and len(word[0]) >= 3 else "the")[:20]
    sliders = "cat_rating=0.5&cat_award=0.1&cat_financial=0.2&cat_cultural=0.1&cat_popularity=0.1"
    P, S = PAGE_TARGET_MS, PREVIEW_TARGET_MS
    return [
        ("/metrics/", "metric definitions list", P),
        ("/metrics/?category=rating", "list filtered by category", P),
        ("/metrics/imdb_vote_count", "definition page", P),
        ("/metrics/imdb_vote_count/curve", "transformation curve points", P),
        ("/metrics/imdb_vote_count/normalize?raw=12345", "normalization tester", P),
        ("/profiles/", "profile cards", P),
        ("/profiles/balanced", "profile page (top movies, effective weights, history)", P),
        (f"/profiles/balanced/preview?{sliders}", "slider preview (ad-hoc top 20)", S),
        (f"/profiles/balanced/preview?{sliders}&has_metrics=1&en_imdb_rating=on&m_imdb_rating=2",
         "slider preview with a metric weight", S),
        ("/profiles/compare?a=critics_choice&b=crowd_pleaser", "profile comparison", P),
        ("/coverage/", "coverage dashboard", P),
        ("/coverage/gaps?scope=category&name=award", "gap analysis", P),
        (f"/playground/?q={q}", "movie search", P),
        (f"/playground/movie/{rich_id}", "movie breakdown under every profile", P),
        (f"/playground/movie/{rich_id}/score?profile=balanced&{sliders}", "live score from sliders", S),
    ]


def measure(url: str, calls: int = 50, warm: int = 5) -> list[dict[str, Any]]:
    """Time every route `calls` times after `warm` untimed calls; rows best kept as-is."""
    from werkzeug.security import generate_password_hash

    from admin import create_app
    from admin.db import close_pool
    password = secrets.token_urlsafe(16)
    with psycopg.connect(url, autocommit=True) as conn:
        h = generate_password_hash(password, method="pbkdf2:sha256:1000")
        if conn.execute("SELECT reelscore.admin_user_role(%s)", (USER,)).fetchone()[0] is None:
            conn.execute("SELECT reelscore.admin_create_user(%s, %s, 'viewer')", (USER, h))
        else:
            conn.execute("SELECT reelscore.admin_set_password(%s, %s)", (USER, h))
        routes = _routes(conn)
    app = create_app({"DATABASE_URL": url, "WTF_CSRF_ENABLED": False, "SECRET_KEY": secrets.token_hex(16)})
    rows = []
    try:
        client = app.test_client()
        r = client.post("/login", data={"username": USER, "password": password})
        if r.status_code != 302:
            raise RuntimeError(f"login as {USER} failed with {r.status_code}")
        for path, label, target in routes:
            times, status = [], None
            for i in range(warm + calls):
                t0 = time.perf_counter()
                resp = client.get(path)
                _ = resp.data
                dt = (time.perf_counter() - t0) * 1000
                status = resp.status_code
                if i >= warm:
                    times.append(dt)
            p95 = _quantile(times, 0.95)
            rows.append({"route": path, "label": label, "status": status, "calls": calls,
                         "p50_ms": statistics.median(times), "p95_ms": p95, "max_ms": max(times),
                         "target_ms": target, "ok": status == 200 and p95 <= target, "times_ms": times})
    finally:
        close_pool(app)
    return rows


def main(argv: list[str] | None = None) -> int:
    from reelscore.config import database_url
    ap = argparse.ArgumentParser(prog="python -m admin.perf", description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=None, help="database URL (default: REELSCORE_DATABASE_URL or the local cluster)")
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--warm", type=int, default=5)
    args = ap.parse_args(argv)
    url = args.url or database_url()
    with psycopg.connect(url) as c:
        n = c.execute("SELECT count(*) FROM reelscore.movies").fetchone()[0]
    print(f"admin server time at {n:,} movies, {args.calls} calls per route")
    print(f"{'route':<72} {'status':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'target':>7}")
    rows = measure(url, args.calls, args.warm)
    for r in rows:
        print(f"{r['route'][:72]:<72} {r['status']:>6} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {r['max_ms']:8.1f} "
              f"{r['target_ms']:7.0f} {'ok' if r['ok'] else 'OVER'}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
