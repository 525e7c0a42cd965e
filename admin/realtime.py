"""Real-time updates and observability for the admin panel.

`/events` relays the database's announcements (NOTIFY channel `reelscore_events`, see
sql/700-realtime.sql) to open pages as Server-Sent Events. Each app process holds ONE
listening connection: a listener thread receives every notification once and fans it out
to bounded per-page queues. A page that reconnects sends `Last-Event-ID` (browsers do it
by themselves) or `?since=SEQ` (the seq the page was rendered at) and first gets the
events it missed, replayed from reelscore.event_outbox, then the live ones, without gaps
or duplicates. A page that cannot keep up (its queue is full) is disconnected; its
browser reconnects and catches up from the outbox the same way.

`/metrics` is the Prometheus endpoint (prometheus_client text format, no login, nothing
secret): function calls and durations from pg_stat_user_functions (needs track_functions),
coverage per metric, rejected rows, outbox state, and this process's SSE relay.

Pages opt in with data attributes handled by static/js/realtime.js; see docs/operations.md."""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from flask import Blueprint, Flask, Response, abort, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from psycopg.rows import tuple_row

log = logging.getLogger(__name__)

CHANNEL = "reelscore_events"
bp = Blueprint("realtime", __name__)

# Defaults, overridable in app.config.
DEFAULTS = {
    "REALTIME_QUEUE_SIZE": 1000,      # events buffered per page before it is dropped
    "REALTIME_HEARTBEAT_S": 15.0,     # comment line sent on an idle stream (detects closed pages)
    "REALTIME_RETRY_MS": 1000,        # browser reconnect delay after a drop
    "REALTIME_REPLAY_MAX": 10000,     # more missed events than this: the page is told to reload
    "REALTIME_POLL_S": 1.0,           # listener wakes this often to notice stop()
}


# --------------------------------------------------------------------------- the hub
class Closed(Exception):
    """The client's stream ended (dropped for falling behind, or the hub stopped)."""


class Client:
    """One open page: a bounded buffer of SSE frames, filled by the listener thread and
    drained by the page's response generator."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self.buf: deque[tuple[int, bool, bytes]] = deque()
        self.cond = threading.Condition()
        self.closed = False
        self.dropped = False

    def offer(self, seq: int, reset: bool, frame: bytes) -> bool:
        with self.cond:
            if self.closed:
                return False
            if len(self.buf) >= self.maxsize:
                self.closed = self.dropped = True
                self.buf.clear()
                self.cond.notify()
                return False
            self.buf.append((seq, reset, frame))
            self.cond.notify()
            return True

    def take(self, timeout: float) -> tuple[int, bool, bytes] | None:
        """The next frame, None after `timeout` seconds without one; Closed when ended."""
        with self.cond:
            if not self.buf and not self.closed:
                self.cond.wait(timeout)
            if self.closed:
                raise Closed
            return self.buf.popleft() if self.buf else None

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()


def frame_for(event: dict[str, Any]) -> bytes:
    """An SSE frame: the seq as the event id (what Last-Event-ID returns), the JSON as data."""
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"id: {int(event['seq'])}\ndata: {data}\n\n".encode()


class Hub:
    """One LISTEN connection per app process, fanning out to every open page."""

    def __init__(self, url: str, queue_size: int = 1000, poll_s: float = 1.0):
        self.url = url
        self.queue_size = queue_size
        self.poll_s = poll_s
        self._clients: set[Client] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.last_seq = 0
        self.error: str | None = None
        # This process's relay metrics (rendered by /metrics).
        self.events_received = Counter("reelscore_sse_events_received", "Announcements received by this process's listener",
                                       registry=None)
        self.frames_queued = Counter("reelscore_sse_events_queued", "Events queued to open pages (one per page)",
                                     registry=None)
        self.replayed = Counter("reelscore_sse_events_replayed", "Events replayed from the outbox to reconnecting pages",
                                registry=None)
        self.connections = Counter("reelscore_sse_connections", "Event streams opened", registry=None)
        self.dropped = Counter("reelscore_sse_clients_dropped", "Pages disconnected because they fell behind",
                               registry=None)
        self.reconnects = Counter("reelscore_sse_listener_reconnects", "Times the listener reconnected to the database",
                                  registry=None)
        self.lag = Histogram("reelscore_event_delivery_seconds",
                             "Time from the change's commit to its arrival at this process's listener",
                             buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10),
                             registry=None)

    # -- lifecycle
    def start(self, wait: float = 5.0) -> bool:
        """Start the listener thread if it is not running; wait until it listens."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="reelscore-listener", daemon=True)
                self._thread.start()
        return self.connected.wait(wait)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            clients = list(self._clients)
            self._clients.clear()
        for c in clients:
            c.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.connected.clear()

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._clients)

    # -- clients
    def register(self) -> tuple[Client, int]:
        """A new client, and the last seq relayed before it was registered: every event
        after that seq reaches the client's buffer."""
        client = Client(self.queue_size)
        with self._lock:
            self._clients.add(client)
            start = self.last_seq
        self.connections.inc()
        return client, start

    def unregister(self, client: Client) -> None:
        with self._lock:
            self._clients.discard(client)
        client.close()

    # -- the listener thread
    def _run(self) -> None:
        backoff = 0.5
        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, application_name="reelscore-admin-listen",
                                     connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._catch_up(conn, initial=first)
                    first = False
                    self.error = None
                    self.connected.set()
                    backoff = 0.5
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=self.poll_s):
                            self._receive(note.payload)
            except psycopg.Error as exc:
                self.connected.clear()
                self.error = type(exc).__name__
                log.warning("realtime listener: %s; reconnecting in %.1fs", exc, backoff)
                self.reconnects.inc()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
        self.connected.clear()

    def _catch_up(self, conn: psycopg.Connection, initial: bool) -> None:
        """After (re)connecting: the first time, start from the newest event; after a lost
        connection, relay what was committed meanwhile (LISTEN is already active, so
        nothing falls between; duplicates are skipped by seq)."""
        if initial and self.last_seq == 0:
            row = conn.execute("SELECT last_seq FROM reelscore.outbox_status()").fetchone()
            with self._lock:
                self.last_seq = int(row[0] or 0) if row else 0
            return
        while True:
            rows = conn.execute("SELECT payload FROM reelscore.events_since(%s, 1000)", (self.last_seq,)).fetchall()
            for (payload,) in rows:
                self._dispatch(payload)
            if len(rows) < 1000 or rows[-1][0].get("kind") == "reset":
                return

    def _receive(self, text: str) -> None:
        try:
            event = json.loads(text)
            seq = int(event["seq"])
        except (ValueError, KeyError, TypeError):
            log.warning("realtime listener: ignored a malformed payload")
            return
        self.events_received.inc()
        at = event.get("at")
        if isinstance(at, (int, float)):
            self.lag.observe(max(0.0, time.time() - at))
        if seq > self.last_seq:
            self._dispatch(event)

    def _dispatch(self, event: dict[str, Any]) -> None:
        seq = int(event["seq"])
        reset = event.get("kind") == "reset"
        frame = frame_for(event)
        with self._lock:
            if seq <= self.last_seq and not reset:
                return
            self.last_seq = max(self.last_seq, seq)
            clients = list(self._clients)
        dropped = []
        for c in clients:
            if c.offer(seq, reset, frame):
                self.frames_queued.inc()
            elif c.dropped:
                dropped.append(c)
        if dropped:
            with self._lock:
                for c in dropped:
                    self._clients.discard(c)
            self.dropped.inc(len(dropped))


def hub(app: Flask | None = None) -> Hub:
    """This app's hub (created on first use, started by the first /events request)."""
    app = app or current_app._get_current_object()
    h = app.extensions.get("reelscore_realtime")
    if h is None:
        for k, v in DEFAULTS.items():
            app.config.setdefault(k, v)
        h = app.extensions["reelscore_realtime"] = Hub(
            app.config["DATABASE_URL"], queue_size=int(app.config["REALTIME_QUEUE_SIZE"]),
            poll_s=float(app.config["REALTIME_POLL_S"]))
    return h


def stop_hub(app: Flask) -> None:
    """Stop this app's listener (tests, shutdown)."""
    h = app.extensions.pop("reelscore_realtime", None)
    if h is not None:
        h.stop()


# ------------------------------------------------------------------------- /events
def _since_from_request() -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.args.get("since")
    if raw is None or raw == "":
        return None
    try:
        seq = int(raw)
    except ValueError:
        abort(400, description=f"invalid Last-Event-ID / since: {raw[:40]!r} (expected an event sequence number)")
    if seq < 0:
        abort(400, description=f"invalid Last-Event-ID / since: {seq} (must be >= 0)")
    return seq


def _replay(since: int, limit: int) -> list[dict[str, Any]]:
    """The events after `since` from the outbox (a single 'reset' event if they are gone)."""
    from admin.db import get_db
    conn = get_db()
    out: list[dict[str, Any]] = []
    last = since
    while True:
        rows = conn.execute("SELECT payload FROM reelscore.events_since(%s, 1000)", (last,)).fetchall()
        payloads = [r["payload"] if isinstance(r, dict) else r[0] for r in rows]
        for p in payloads:
            out.append(p)
            if p.get("kind") == "reset":
                return out
            last = int(p["seq"])
        if len(payloads) < 1000:
            return out
        if len(out) >= limit:
            return [{"seq": last, "kind": "reset", "ids": [], "more": True,
                     "reason": f"more than {limit} events were missed"}]


@bp.get("/events")
def events() -> Response:
    """The SSE stream of announcements for an open page (log in first)."""
    if g.get("user") is None:
        abort(401, description="log in first")
    since = _since_from_request()
    h = hub()
    if not h.start(wait=5.0):
        abort(503, description="the event relay cannot reach the database")
    client, start = h.register()
    try:
        replay = _replay(since, int(current_app.config["REALTIME_REPLAY_MAX"])) if since is not None else []
    except BaseException:
        h.unregister(client)
        raise
    h.replayed.inc(len(replay))
    heartbeat = float(current_app.config["REALTIME_HEARTBEAT_S"])
    retry = int(current_app.config["REALTIME_RETRY_MS"])

    def stream() -> Iterator[bytes]:
        sent = since if since is not None else start
        try:
            # The id line alone moves the browser's Last-Event-ID without firing an event.
            yield f"retry: {retry}\nid: {sent}\n\n".encode()
            for ev in replay:
                yield frame_for(ev)
                if ev.get("kind") != "reset":
                    sent = max(sent, int(ev["seq"]))
            while True:
                try:
                    item = client.take(heartbeat)
                except Closed:
                    return
                if item is None:
                    yield b": keepalive\n\n"
                    continue
                seq, reset, frame = item
                if seq <= sent and not reset:
                    continue  # already replayed from the outbox
                sent = max(sent, seq)
                yield frame
        finally:
            h.unregister(client)

    resp = Response(stream(), mimetype="text/event-stream")
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"   # no proxy buffering (nginx)
    return resp


@bp.app_context_processor
def _realtime_globals() -> dict[str, Any]:
    def realtime_since() -> int:
        """The newest event seq, for <body data-rs-since="...">: the page's stream then
        starts exactly where the rendered data ends."""
        from admin.db import query_one
        try:
            # max(seq) reads one index entry; the pruned horizon covers an empty outbox.
            row = query_one("""SELECT greatest((SELECT max(o.seq) FROM reelscore.event_outbox o),
                                               (SELECT s.pruned_through FROM reelscore.event_outbox_state s))
                                      AS last_seq""")
        except psycopg.Error:
            return 0
        return int(row["last_seq"] or 0) if row else 0
    return {"realtime_since": realtime_since}


# ------------------------------------------------------------------------ /metrics
# Functions counted as normalizations and as score calculations (non-inlined calls only:
# a LANGUAGE sql function the planner inlines into a query is not a call).
NORMALIZE_FUNCTIONS = ("normalize_value", "normalize_with", "norm_linear", "norm_log", "norm_sigmoid",
                       "norm_steps", "norm_boolean", "norm_piecewise", "norm_percentile")
# Every single-movie score goes through one of these (movie_score calls movie_score_detail).
SCORE_CALCULATIONS = ("movie_score_detail", "score_movie_adhoc", "explain_score", "explain_score_adhoc")
# Durations reported per function: the single-movie entry points and the incremental rescoring.
SCORING_FUNCTIONS = SCORE_CALCULATIONS + ("movie_score", "rescore_movies", "rescore_profile_id")


def _database_families(conn: psycopg.Connection) -> list:
    """Metric families read from the database at scrape time."""
    fams: list = []

    def rows(sql: str, params: Any = None) -> list[tuple]:
        cur = conn.cursor(row_factory=tuple_row)
        return cur.execute(sql, params).fetchall()

    setting = rows("SELECT current_setting('track_functions')")[0][0]
    info = GaugeMetricFamily("reelscore_track_functions_info",
                             "track_functions setting of the server (function counters need 'pl' or 'all')",
                             labels=["setting"])
    info.add_metric([setting], 1)
    fams.append(info)

    funcs = rows("""SELECT s.funcname, sum(s.calls)::bigint, sum(s.total_time)::float8, sum(s.self_time)::float8
                    FROM pg_catalog.pg_stat_user_functions s WHERE s.schemaname = 'reelscore'
                    GROUP BY s.funcname ORDER BY s.funcname""")
    calls = CounterMetricFamily("reelscore_function_calls", "Calls of reelscore SQL functions (pg_stat_user_functions)",
                                labels=["function"])
    secs = CounterMetricFamily("reelscore_function_seconds",
                               "Time spent in reelscore SQL functions including callees (pg_stat_user_functions)",
                               labels=["function"])
    norm = CounterMetricFamily("reelscore_normalizations",
                               "Normalization function calls (normalize_value and the norm_* helpers, when not inlined)")
    score = CounterMetricFamily("reelscore_score_calculations",
                                "Single-movie score calculations (movie_score, explain_score and their ad-hoc forms)")
    scoring = SummaryMetricFamily("reelscore_scoring_duration_seconds",
                                  "Duration of score calculations: count and total seconds per function",
                                  labels=["function"])
    refresh = SummaryMetricFamily("reelscore_refresh_duration_seconds",
                                  "Duration of refresh functions (refresh_*): count and total seconds per function",
                                  labels=["function"])
    n_norm = n_score = 0
    for name, c, total_ms, _self_ms in funcs:
        calls.add_metric([name], c)
        secs.add_metric([name], total_ms / 1000.0)
        if name in NORMALIZE_FUNCTIONS:
            n_norm += c
        if name in SCORE_CALCULATIONS:
            n_score += c
        if name in SCORING_FUNCTIONS:
            scoring.add_metric([name], count_value=c, sum_value=total_ms / 1000.0)
        if name.startswith("refresh_"):
            refresh.add_metric([name], count_value=c, sum_value=total_ms / 1000.0)
    norm.add_metric([], n_norm)
    score.add_metric([], n_score)
    fams += [calls, secs, norm, score, scoring, refresh]

    if rows("SELECT to_regclass('reelscore.metric_coverage_stats') IS NOT NULL")[0][0]:
        cov = GaugeMetricFamily("reelscore_metric_coverage_ratio",
                                "Share of movies that have the metric (latest coverage snapshot)",
                                labels=["metric", "category"])
        cnt = GaugeMetricFamily("reelscore_metric_movies_with_data", "Movies that have the metric (latest snapshot)",
                                labels=["metric", "category"])
        for code, category, ratio, with_data in rows("""
                SELECT d.code, d.category, s.coverage_percentage / 100.0, s.movies_with_data
                FROM (SELECT DISTINCT ON (c.metric_id) c.metric_id, c.coverage_percentage, c.movies_with_data
                      FROM reelscore.metric_coverage_stats c
                      ORDER BY c.metric_id, c.last_calculated DESC) s
                JOIN reelscore.metric_definitions d ON d.id = s.metric_id ORDER BY d.slot"""):
            if ratio is not None:
                cov.add_metric([code, category], float(ratio))
            if with_data is not None:
                cnt.add_metric([code, category], float(with_data))
        fams += [cov, cnt]

    rej = CounterMetricFamily("reelscore_rejected_rows", "Rows refused by loads and kept in the quarantine (load_rejections)")
    rej.add_metric([], rows("SELECT count(*) FROM reelscore.load_rejections")[0][0])
    fams.append(rej)

    last_seq, pruned, retained, _oldest = rows("SELECT * FROM reelscore.outbox_status()")[0]
    fams.append(GaugeMetricFamily("reelscore_outbox_last_seq", "Sequence number of the newest announced event",
                                  value=last_seq or 0))
    fams.append(GaugeMetricFamily("reelscore_outbox_retained_events", "Events kept in the outbox for catch-up",
                                  value=retained or 0))
    fams.append(GaugeMetricFamily("reelscore_outbox_pruned_through", "Highest event seq removed by pruning",
                                  value=pruned or 0))
    return fams


def _hub_families(h: Hub | None) -> list:
    clients = GaugeMetricFamily("reelscore_sse_clients", "Open event streams (pages) in this process",
                                value=h.client_count if h else 0)
    up = GaugeMetricFamily("reelscore_sse_listener_up", "1 when this process's listener is connected and listening",
                           value=1 if h and h.connected.is_set() else 0)
    fams = [clients, up]
    if h is not None:
        for m in (h.events_received, h.frames_queued, h.replayed, h.connections, h.dropped, h.reconnects, h.lag):
            fams.extend(m.collect())
    return fams


class _Families:
    def __init__(self, fams: Iterable):
        self.fams = list(fams)

    def collect(self):
        return iter(self.fams)


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    """Prometheus text format; no login (nothing secret: counts, durations, coverage)."""
    from admin.db import get_db
    fams: list = []
    db_up = 1
    try:
        fams += _database_families(get_db())
    except psycopg.Error as exc:  # includes the pool's PoolTimeout
        log.warning("/metrics: database part unavailable: %s", type(exc).__name__)
        db_up = 0
    fams.append(GaugeMetricFamily("reelscore_database_up", "1 when the scrape could read the database", value=db_up))
    fams += _hub_families(current_app.extensions.get("reelscore_realtime"))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(fams))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})
