"""Commit-to-browser latency of the real-time path, with N connected SSE clients.

    python -m bench.realtime_latency --clients 50 --rounds 200
    python -m bench.realtime_latency --clients 500 --rounds 100
    python -m bench.realtime_latency --bulk-rows 100000      # also: trigger cost on a bulk statement

What is measured: a writer updates one metric value in a transaction, takes the time, sends
COMMIT; the database announces the change (deferred trigger -> outbox -> NOTIFY), the admin
app (a separate process, the same threaded werkzeug server as `reelscore admin`) relays it
from its one LISTEN connection to every open /events stream, and each client (asyncio
HTTP clients parsing text/event-stream, spread over several processes like browsers would
be) takes the time when the event's data line arrives. Latency = arrival - COMMIT sent,
per client and event (so it includes the commit itself). Rounds are sequential: the next
change is made once every client has the previous one (or after a 10 s timeout, counted
as lost).

Uses its own database (reelscore_bench_realtime on the local cluster, or --database), built
fresh (migrated to head, 1,000 plain movies) unless --reuse.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reelscore.config import database_url

USER, PASSWORD = "bench_rt", "bench-realtime-password"


# ------------------------------------------------------------------------ database
def with_db(url: str, dbname: str) -> str:
    p = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((p.scheme, p.netloc, "/" + dbname, p.query, p.fragment))


def build_database(server_url: str, dbname: str, reuse: bool) -> str:
    url = with_db(server_url, dbname)
    with psycopg.connect(with_db(server_url, "postgres"), autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if exists and reuse:
            return url
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    from alembic import command

    from reelscore.commands.migrate import alembic_config
    command.upgrade(alembic_config(url), "head")
    from werkzeug.security import generate_password_hash
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("INSERT INTO reelscore.movies (id, title) SELECT g, 'Bench film ' || g FROM generate_series(1, 1000) g")
        c.execute("SELECT reelscore.admin_create_user(%s, %s, 'viewer')",
                  (USER, generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")))
    return url


# -------------------------------------------------------------------------- server
def serve(url: str, port: int) -> None:
    """The admin app as `reelscore admin` serves it (werkzeug, threaded)."""
    from werkzeug.serving import make_server

    from admin import create_app
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench-realtime", "DB_POOL_MAX": 8})
    server = make_server("127.0.0.1", port, app, threaded=True)
    server.request_queue_size = 1024
    print(f"serving on {port}", flush=True)
    server.serve_forever()


def start_server(url: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "bench.realtime_latency", "--serve", "--database", url,
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    line = proc.stdout.readline()
    if not line.startswith("serving"):
        proc.kill()
        raise SystemExit("the admin app did not start")
    time.sleep(0.3)
    return proc


def login(port: int) -> str:
    """Log in over HTTP; return the session cookie value."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/login")
    r = c.getresponse()
    page = r.read().decode()
    cookie = r.getheader("Set-Cookie", "").split(";", 1)[0]
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page) or \
        re.search(r'value="([^"]+)"[^>]*name="csrf_token"', page)
    body = urllib.parse.urlencode({"username": USER, "password": PASSWORD, "csrf_token": token.group(1)})
    c.request("POST", "/login", body=body, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                     "Cookie": cookie})
    r = c.getresponse()
    r.read()
    if r.status != 302:
        raise SystemExit(f"login failed: HTTP {r.status}")
    return r.getheader("Set-Cookie").split(";", 1)[0].split("=", 1)[1]


# ------------------------------------------------------------------------- clients
async def _client(port: int, cookie: str, ready: asyncio.Event, counter: list, on_event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.write((f"GET /events HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
                  f"Cookie: reelscore_admin={cookie}\r\n\r\n").encode())
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"/events answered {status!r}")
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
        pass
    first = True
    while True:
        line = await reader.readline()
        if not line:
            return
        if first and line in (b"\n", b"\r\n"):
            first = False
            counter[0] += 1
            if counter[0] == counter[1]:
                ready.set()
            continue
        if line.startswith(b"data: "):
            t = time.time()
            on_event(json.loads(line[6:]), t)


def client_process(port: int, cookie: str, n: int, out: mp.Queue, stop: mp.Event) -> None:
    """n SSE clients in one process; per event, one message with every client's arrival time."""
    async def main() -> None:
        ready = asyncio.Event()
        counter = [0, n]
        got: dict[int, list[float]] = {}

        def on_event(ev: dict, t: float) -> None:
            if ev.get("kind") != "metric_values" or not ev.get("ids"):
                return
            key = ev["ids"][0]
            times = got.setdefault(key, [])
            times.append(t)
            if len(times) == n:
                out.put(("event", key, got.pop(key)))

        tasks = []
        for i in range(n):
            tasks.append(asyncio.create_task(_client(port, cookie, ready, counter, on_event)))
            if i % 25 == 24:
                await asyncio.sleep(0.05)   # do not flood the listen backlog
        await asyncio.wait_for(ready.wait(), 120)
        out.put(("ready", n, None))
        while not stop.is_set():
            await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
    asyncio.run(main())


# ----------------------------------------------------------------------- measuring
def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def measure(url: str, port: int, clients: int, rounds: int, procs: int) -> dict:
    cookie = login(port)
    out: mp.Queue = mp.Queue()
    stop = mp.Event()
    sizes = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    workers = [mp.Process(target=client_process, args=(port, cookie, k, out, stop), daemon=True)
               for k in sizes if k]
    for w in workers:
        w.start()
    ready = 0
    while ready < clients:
        kind, n, _ = out.get(timeout=180)
        if kind == "ready":
            ready += n
    time.sleep(0.5)
    lat: list[float] = []
    commit_ms: list[float] = []
    relay: list[float] = []   # arrival - COMMIT acknowledged (can be < 0: NOTIFY races the ack)
    lost = 0
    with psycopg.connect(url) as c:
        c.execute("SET reelscore.defer_scoring = on")   # the commit path, not the rescoring, is measured
        mid = c.execute("SELECT id FROM reelscore.metric_definitions WHERE code = 'imdb_rating'").fetchone()[0]
        c.commit()
        for r in range(rounds):
            movie = 1 + r % 1000
            c.execute("""INSERT INTO reelscore.metric_values (movie_id, metric_id, raw_value) VALUES (%s, %s, %s)
                         ON CONFLICT (movie_id, metric_id) DO UPDATE SET raw_value = excluded.raw_value""",
                      (movie, mid, (r % 100) / 10.0))
            t0 = time.time()
            c.commit()
            t_ack = time.time()
            commit_ms.append((t_ack - t0) * 1000)
            have = 0
            deadline = time.monotonic() + 10
            while have < clients:
                try:
                    kind, key, times = out.get(timeout=max(0.01, deadline - time.monotonic()))
                except Exception:  # noqa: BLE001 - queue.Empty: the round timed out
                    lost += clients - have
                    break
                if kind == "event" and key == movie:
                    lat.extend(t - t0 for t in times)
                    relay.extend(t - t_ack for t in times)
                    have += len(times)
            time.sleep(0.02)
    stop.set()
    for w in workers:
        w.join(timeout=5)
        if w.is_alive():
            w.terminate()
    ms = [x * 1000 for x in lat]
    return {"clients": clients, "rounds": rounds, "client_processes": len(workers), "deliveries": len(ms),
            "lost": lost, "p50_ms": round(pct(ms, 0.5), 2), "p95_ms": round(pct(ms, 0.95), 2),
            "p99_ms": round(pct(ms, 0.99), 2), "max_ms": round(max(ms), 2), "mean_ms": round(statistics.mean(ms), 2),
            "commit_p50_ms": round(pct(commit_ms, 0.5), 2), "commit_p95_ms": round(pct(commit_ms, 0.95), 2),
            "after_ack_p50_ms": round(pct([x * 1000 for x in relay], 0.5), 2),
            "after_ack_p95_ms": round(pct([x * 1000 for x in relay], 0.95), 2)}


def bulk_cost(url: str, rows: int, repeats: int = 3) -> dict:
    """Time one INSERT ... SELECT of `rows` values with the announcement triggers enabled and
    disabled (everything else equal, alternating, `repeats` times each; the minimum counts),
    and count the events each produced."""
    labels = ("announcement triggers disabled", "announced")
    times: dict[str, list[float]] = {k: [] for k in labels}
    events: dict[str, set[int]] = {k: set() for k in labels}
    own_ms: list[float] = []
    written = 0
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SET reelscore.defer_scoring = on")
        n_metrics = c.execute("""SELECT count(*) FROM (SELECT id FROM reelscore.metric_definitions
                                 WHERE data_type = 'count' OR data_type = 'money' LIMIT 20) d""").fetchone()[0]
        n_movies = -(-rows // n_metrics)
        c.execute("INSERT INTO reelscore.movies (id, title) SELECT g, 'Bulk ' || g FROM generate_series(100001, %s) g "
                  "ON CONFLICT DO NOTHING", (100000 + n_movies,))
        ins = """INSERT INTO reelscore.metric_values (movie_id, metric_id, raw_value)
                 SELECT 100000 + g, d.id, 1 FROM generate_series(1, %s) g,
                        (SELECT id FROM reelscore.metric_definitions WHERE data_type = 'count' OR data_type = 'money'
                         ORDER BY id LIMIT 20) d"""

        def set_triggers(enable: bool) -> None:
            for t in ("realtime_insert", "realtime_update", "realtime_delete"):
                c.execute(sql.SQL("ALTER TABLE reelscore.metric_values {} TRIGGER {}").format(
                    sql.SQL("ENABLE" if enable else "DISABLE"), sql.Identifier(t)))

        c.execute("DELETE FROM reelscore.metric_values WHERE movie_id > 100000")
        c.execute(ins, (n_movies,))          # warm-up (caches, first-use costs), not counted
        try:
            for _ in range(repeats):
                for label in labels:
                    c.execute("DELETE FROM reelscore.metric_values WHERE movie_id > 100000")
                    c.execute("VACUUM reelscore.metric_values")
                    set_triggers(label == "announced")
                    before = c.execute("SELECT coalesce(max(seq), 0) FROM reelscore.event_outbox").fetchone()[0]
                    for fn in ("reelscore.realtime_capture()", "reelscore.realtime_flush()"):
                        c.execute(f"SELECT pg_stat_reset_single_function_counters('{fn}'::regprocedure)")
                    t0 = time.perf_counter()
                    written = c.execute(ins, (n_movies,)).rowcount
                    times[label].append(time.perf_counter() - t0)
                    c.execute("SELECT pg_stat_force_next_flush()")
                    own = c.execute("""SELECT coalesce(sum(total_time), 0) FROM pg_stat_user_functions
                                       WHERE schemaname = 'reelscore'
                                         AND funcname IN ('realtime_capture', 'realtime_flush')""").fetchone()[0]
                    if label == "announced":
                        own_ms.append(own)
                    events[label].add(c.execute("SELECT count(*) FROM reelscore.event_outbox WHERE seq > %s",
                                                (before,)).fetchone()[0])
        finally:
            set_triggers(True)
            c.execute("DELETE FROM reelscore.metric_values WHERE movie_id > 100000")
    return {"rows": written, "announcement_functions_ms": [round(x, 1) for x in own_ms], **{label: {"min_s": round(min(ts), 3), "all_s": [round(x, 3) for x in ts],
                                     "events_per_statement": sorted(events[label])}
                             for label, ts in times.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.realtime_latency", description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, action="append", help="connected SSE clients (repeatable; default 50 and 500)")
    p.add_argument("--rounds", type=int, default=200, help="changes to commit per client count")
    p.add_argument("--procs", type=int, default=4, help="client processes")
    p.add_argument("--database", help="database URL (default: reelscore_bench_realtime on the local cluster)")
    p.add_argument("--reuse", action="store_true", help="reuse the bench database if it exists")
    p.add_argument("--port", type=int, default=8731)
    p.add_argument("--bulk-rows", type=int, default=0, help="also time a bulk INSERT of this many rows")
    p.add_argument("--bulk-only", action="store_true", help="only the bulk timing (no SSE clients)")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.database, args.port)
        return 0
    url = args.database or build_database(database_url(), "reelscore_bench_realtime", args.reuse)
    results = {"machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg()}, "runs": []}
    server = start_server(url, args.port) if not args.bulk_only else None
    try:
        for n in ([] if args.bulk_only else args.clients or [50, 500]):
            r = measure(url, args.port, n, args.rounds, args.procs)
            results["runs"].append(r)
            print(json.dumps(r), flush=True)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
    if args.bulk_rows:
        results["bulk"] = bulk_cost(url, args.bulk_rows)
        print(json.dumps(results["bulk"]), flush=True)
    results["machine"]["load_avg_after"] = os.getloadavg()
    print("| clients | deliveries | lost | p50 ms | p95 ms | p99 ms | max ms | COMMIT itself p50 / p95 ms "
          "| after the COMMIT ack p50 / p95 ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results["runs"]:
        print(f"| {r['clients']} | {r['deliveries']} | {r['lost']} | {r['p50_ms']} | {r['p95_ms']} | "
              f"{r['p99_ms']} | {r['max_ms']} | {r['commit_p50_ms']} / {r['commit_p95_ms']} | "
              f"{r['after_ack_p50_ms']} / {r['after_ack_p95_ms']} |")
    print(json.dumps(results["machine"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
