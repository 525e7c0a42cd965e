"""The measuring machinery: result rows, warm-up then counted runs, percentiles, plans.

Every row names its baseline (a row of the same run), so each speed figure stands beside
a peer measured minutes apart on the same (shared, noisy) machine. Ratios are computed on
time per unit of work: `ratio = (median / work) / (baseline median / baseline work)`, so
rows that did different amounts of work (a row-by-row loader on a tenth of the rows) still
compare; below 1 is faster than the baseline. pgbench rows compare time per transaction
(1 / TPS) at the same client count.
"""
from __future__ import annotations

import math
import re
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg


def percentile(samples: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method), q in 0..100."""
    if not samples:
        return None
    s = sorted(samples)
    pos = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class Row:
    """One benchmark row. kind: latency (many calls), throughput (whole runs), concurrency
    (pgbench), memory (peak RSS)."""
    group: str
    name: str
    kind: str
    status: str = "ok"                 # ok | not available | failed
    note: str = ""
    samples: list[float] = field(default_factory=list)   # seconds per call/run (MB for memory)
    warmup: int = 0
    work: float | None = None          # items per run (rows, values, movies)
    unit: str = "s"
    baseline: str | None = None        # name of the row this is compared with
    plan: str | None = None            # file name of the saved EXPLAIN (ANALYZE, BUFFERS)
    extra: dict[str, Any] = field(default_factory=dict)
    ratio: float | None = None

    @property
    def median(self) -> float | None:
        return percentile(self.samples, 50)

    def per_item(self) -> float | None:
        if self.kind == "concurrency":   # time per transaction at this client count: 1 / TPS
            tps = self.extra.get("tps")
            return 1.0 / tps if tps else None
        m = self.median
        if m is None:
            return None
        return m / self.work if self.work else m

    def to_dict(self) -> dict[str, Any]:
        d = {"group": self.group, "name": self.name, "kind": self.kind, "status": self.status,
             "note": self.note, "runs": len(self.samples), "warmup": self.warmup, "unit": self.unit,
             "median": self.median, "p95": percentile(self.samples, 95),
             "p99": percentile(self.samples, 99) if self.kind in ("latency", "concurrency") else None,
             "min": min(self.samples) if self.samples else None,
             "max": max(self.samples) if self.samples else None,
             "work": self.work, "baseline": self.baseline, "ratio": self.ratio, "plan": self.plan}
        if self.kind == "throughput" and self.work and self.median:
            d["rate_per_s"] = self.work / self.median
        d.update(self.extra)
        return d


class Bench:
    """Context shared by every benchmark group: the connection, the scale, the rows."""

    def __init__(self, conn: psycopg.Connection, url: str, scale: str, n_movies: int, smoke: bool,
                 plans_dir: Path, data_dir: Path, log: Callable[[str], None] = print):
        self.conn = conn
        self.url = url
        self.scale = scale
        self.n = n_movies
        self.smoke = smoke
        self.plans_dir = plans_dir
        self.data_dir = data_dir
        self.rows: list[Row] = []
        self.log = log
        # time budget per row (seconds): counted calls/runs stop growing past it
        self.budget_latency = 0.3 if smoke else 2.0
        self.budget_throughput = 0.3 if smoke else 4.0
        self.min_calls = 2
        self.min_runs = 1 if smoke else 2

    # --- what exists ---------------------------------------------------------------
    def has_function(self, name: str) -> bool:
        return bool(self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'reelscore' AND p.proname = %s)", (name,)).fetchone()[0])

    def has_relation(self, name: str) -> bool:
        return self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]

    def scalar(self, sql: str, params: Sequence | None = None) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    # --- rows ------------------------------------------------------------------------
    def add(self, row: Row) -> Row:
        self.rows.append(row)
        m = row.median
        shown = "-" if m is None else (f"{m * 1000:.3f} ms" if row.unit == "s" else f"{m:.1f} {row.unit}")
        self.log(f"  {row.group:11s} {row.name:55s} {row.status:13s} median {shown} "
                 f"({len(row.samples)} runs){' - ' + row.note if row.status != 'ok' and row.note else ''}")
        return row

    def unavailable(self, group: str, name: str, kind: str, why: str) -> Row:
        return self.add(Row(group, name, kind, status="not available", note=why))

    def failed(self, group: str, name: str, kind: str, exc: BaseException) -> Row:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not isinstance(exc, psycopg.Error):
            msg = f"{type(exc).__name__}: {msg} [{traceback.extract_tb(exc.__traceback__)[-1].lineno}]"
        self._recover()
        return self.add(Row(group, name, kind, status="failed", note=msg[:300]))

    def _recover(self) -> None:
        if self.conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            self.conn.rollback()

    # --- measuring -------------------------------------------------------------------
    def _count(self, est: float, wanted: int, minimum: int, budget: float | None) -> int:
        """How many counted calls/runs: `wanted`, cut so they fit the time budget (estimated
        from the warm-up), never below `minimum`."""
        if budget is None or est <= 0:
            return wanted
        return int(max(minimum, min(wanted, budget / est)))

    def latency(self, group: str, name: str, call: Callable[[int], Any], calls: int, warmup: int,
                baseline: str | None = None, note: str = "", plan_sql: tuple[str, Sequence] | None = None,
                min_calls: int | None = None, budget: float | None = None, **extra) -> Row:
        """Timed calls of call(i) after `warmup` untimed ones (at least one, to estimate the
        cost): p50/p95/p99 per call; at most `calls`, fewer when they would overrun the budget."""
        budget = self.budget_latency if budget is None else budget
        min_calls = self.min_calls if min_calls is None else min_calls
        try:
            est = 0.0
            w = max(warmup, 1 if budget else 0)
            for i in range(w):
                t0 = time.perf_counter()
                call(i)
                est = time.perf_counter() - t0
            n = self._count(est, calls, min_calls, budget)
            samples = []
            for i in range(n):
                t0 = time.perf_counter()
                call(w + i)
                samples.append(time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - a broken function is a failed row, not a failed run
            return self.failed(group, name, "latency", exc)
        row = Row(group, name, "latency", samples=samples, warmup=max(warmup, 1 if budget else 0),
                  baseline=baseline, note=note, extra=extra)
        if plan_sql:
            row.plan = self.explain(f"{group}-{name}", *plan_sql)
        return self.add(row)

    def throughput(self, group: str, name: str, run: Callable[[int], Any], runs: int, warmup: int,
                   work: float, baseline: str | None = None, note: str = "",
                   plan_sql: tuple[str, Sequence] | None = None, min_runs: int | None = None,
                   budget: float | None = None, **extra) -> Row:
        """Whole runs: `warmup` untimed (at least one), then at most `runs` timed ones, fewer
        when they would overrun the budget; work = items per run."""
        budget = self.budget_throughput if budget is None else budget
        min_runs = self.min_runs if min_runs is None else min_runs
        try:
            est = 0.0
            w = max(warmup, 1 if budget else 0)
            for i in range(w):
                t0 = time.perf_counter()
                run(i)
                est = time.perf_counter() - t0
            n = self._count(est, runs, min_runs, budget)
            samples = []
            for i in range(n):
                t0 = time.perf_counter()
                run(w + i)
                samples.append(time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - a broken function is a failed row, not a failed run
            return self.failed(group, name, "throughput", exc)
        row = Row(group, name, "throughput", samples=samples, warmup=max(warmup, 1 if budget else 0), work=work,
                  baseline=baseline, note=note, extra=extra)
        if plan_sql:
            row.plan = self.explain(f"{group}-{name}", *plan_sql)
        return self.add(row)

    def explain(self, label: str, sql: str, params: Sequence | None = None) -> str | None:
        """Save EXPLAIN (ANALYZE, BUFFERS) of a query; returns the file name. The statement
        runs inside a transaction that is rolled back, so refreshes leave nothing behind."""
        fname = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") + ".txt"
        try:
            with self.conn.transaction(force_rollback=True):
                rows = self.conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, VERBOSE) {sql}", params).fetchall()
        except Exception as exc:  # noqa: BLE001 (a failure becomes a row, the run goes on)
            self._recover()
            text = f"EXPLAIN failed: {exc}\n"
        else:
            text = "\n".join(r[0] for r in rows) + "\n"
        self.plans_dir.mkdir(parents=True, exist_ok=True)
        (self.plans_dir / fname).write_text(f"-- {label}\n-- {sql.strip()}\n-- params: {params}\n\n{text}")
        return fname

    # --- after all groups --------------------------------------------------------------
    def compute_ratios(self) -> None:
        by_name = {r.name: r for r in self.rows}
        for r in self.rows:
            b = by_name.get(r.baseline) if r.baseline else None
            if r.status == "ok" and b is not None and b.status == "ok":
                a, c = r.per_item(), b.per_item()
                if a is not None and c:
                    r.ratio = a / c
