"""The SQL API under concurrency: pgbench with custom scripts at 1, 2, 8 and 32 clients.

PostgreSQL 15's pgbench prints no percentiles, so every run writes per-transaction logs
(-l) and the percentiles come from them. Each API script is compared with a peer at the
same client count: the naive EAV query for movie_score, and `SELECT 1` (the protocol
floor: what a round trip costs on this machine at that concurrency) for the others."""
from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from bench import peers
from bench.core import Bench, Row
from bench.env import PGBIN
from bench.groups import PROFILE, Plan

SCRIPTS = {
    # name: (required function or None, script text, peer name)
    "select 1 (protocol floor)": (None, "SELECT 1;\n", None),
    "normalize_value": ("normalize_value",
                        "\\set r random(0, 100)\nSELECT reelscore.normalize_value('metacritic_score', :r);\n",
                        "select 1 (protocol floor)"),
    "naive EAV movie score": (None, ("\\set id random(1, :nmovies)\n"
                                     + " ".join(peers.naive_score_sql("WHERE v.movie_id = :id").split()) + ";\n"),
                              "movie_score"),
    "movie_score": ("movie_score",
                    f"\\set id random(1, :nmovies)\nSELECT reelscore.movie_score(:id, '{PROFILE}');\n",
                    "naive EAV movie score"),
    "top_movies": ("top_movies", f"SELECT count(*) FROM reelscore.top_movies('{PROFILE}', 100);\n",
                   "select 1 (protocol floor)"),
    "search_movies": ("search_movies",
                      ("SELECT count(*) FROM reelscore.search_movies("
                       f"'{{\"category\": \"rating\", \"min_normalized\": 0.8}}'::jsonb, '{PROFILE}', 50, 0);\n"),
                      "select 1 (protocol floor)"),
    "similar_movies": ("similar_movies",
                       "\\set id random(1, :nmovies)\nSELECT count(*) FROM reelscore.similar_movies(:id, 10);\n",
                       "select 1 (protocol floor)"),
}

_TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")
_FAILED = re.compile(r"number of failed transactions: (\d+)")
_AVG = re.compile(r"latency average = ([0-9.]+) ms")


def run_one(url: str, script: str, clients: int, seconds: int, defines: dict[str, int],
            workdir: Path) -> dict:
    """One pgbench run; returns tps, transactions, failures and per-transaction latencies (s)."""
    u = urlsplit(url)
    script_path = workdir / "script.sql"
    script_path.write_text(script)
    for old in workdir.glob("pgbench_log*"):
        old.unlink()
    cmd = [str(PGBIN / "pgbench"), "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 4)),
           "-T", str(seconds), "-f", str(script_path), "-l", "--log-prefix", str(workdir / "pgbench_log"),
           "-h", u.hostname or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or "postgres"]
    for k, v in defines.items():
        cmd += ["-D", f"{k}={v}"]
    cmd.append(u.path.lstrip("/"))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 4 + 60, check=False)
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or [f"pgbench exit {proc.returncode}"])[-1])
    m = _TPS.search(proc.stdout)
    lat = []
    for log in workdir.glob("pgbench_log*"):
        for line in log.read_text().splitlines():
            f = line.split()
            # client_id transaction_no time script_no time_epoch time_us; time is in microseconds
            if len(f) >= 6 and f[2].isdigit():
                lat.append(int(f[2]) / 1e6)
    failed = _FAILED.search(proc.stdout)
    avg = _AVG.search(proc.stdout)
    return {"tps": float(m.group(1)) if m else None, "transactions": len(lat),
            "failed": int(failed.group(1)) if failed else 0, "latencies": lat,
            "latency_avg_ms": float(avg.group(1)) if avg else None,
            "zero_share": sum(x == 0 for x in lat) / len(lat) if lat else None}


def concurrency(b: Bench, p: Plan) -> None:
    g = "pgbench"
    clients_list = (1, 2) if p.smoke else (1, 2, 8, 32)
    seconds = 1 if p.smoke else (2 if b.n <= 100_000 else 10)
    if not (PGBIN / "pgbench").exists():
        b.unavailable(g, "pgbench", "concurrency", f"{PGBIN / 'pgbench'} not found")
        return
    scripts = SCRIPTS
    if p.smoke:   # the harness check: the floor, one API function and its peer
        scripts = {k: v for k, v in SCRIPTS.items()
                   if k in ("select 1 (protocol floor)", "movie_score", "naive EAV movie score")}
    available = {name: spec for name, spec in scripts.items() if spec[0] is None or b.has_function(spec[0])}
    for name, spec in scripts.items():
        if name not in available:
            b.unavailable(g, f"{name} @ clients {'/'.join(map(str, clients_list))}", "concurrency",
                          f"reelscore.{spec[0]} does not exist yet")
    if "naive EAV movie score" in available and "movie_score" not in available:
        available.pop("naive EAV movie score")   # only there as movie_score's peer
    if not b.has_relation("bench.weights"):
        peers.build_weights(b.conn, PROFILE)
    with tempfile.TemporaryDirectory(prefix="rs-pgbench-") as tmp:
        workdir = Path(tmp)
        for name, (_fn, script, _peer) in list(available.items()) if not p.smoke else []:   # warm-up: 1 s each
            try:
                run_one(b.url, script, 1, 1, {"nmovies": b.n}, workdir)
            except Exception as exc:  # noqa: BLE001 (a failure becomes a row, the run goes on)
                b.failed(g, f"{name} (warm-up)", "concurrency", exc)
                available.pop(name)
        for clients in clients_list:
            for name, (_fn, script, peer) in available.items():
                row_name = f"{name} @ {clients} clients"
                try:
                    res = run_one(b.url, script, clients, seconds, {"nmovies": b.n}, workdir)
                except Exception as exc:  # noqa: BLE001 (a failure becomes a row, the run goes on)
                    b.failed(g, row_name, "concurrency", exc)
                    continue
                note = f"{seconds} s after a 1 s warm-up; pgbench's mean {res['latency_avg_ms']} ms"
                if res["zero_share"] and res["zero_share"] > 0.05:
                    # pgbench 15 reads its clock lazily: busy threads log many fast transactions
                    # as 0 µs, so the log's percentiles understate latency here
                    note += (f"; {res['zero_share']:.0%} of transactions logged as 0 µs: "
                             "percentiles understated, trust TPS and the mean")
                b.add(Row(g, row_name, "concurrency", samples=res["latencies"], warmup=0 if p.smoke else 1,
                          baseline=f"{peer} @ {clients} clients" if peer in available else None,
                          note=note,
                          extra={"clients": clients, "tps": res["tps"], "transactions": res["transactions"],
                                 "failed_transactions": res["failed"], "latency_avg_ms": res["latency_avg_ms"],
                                 "log_zero_share": res["zero_share"]}))
