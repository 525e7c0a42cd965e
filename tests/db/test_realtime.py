"""Real-time announcements: a committed change writes exactly the expected outbox rows and
one NOTIFY each; bulk statements are one event; catch-up from a sequence loses nothing;
pruning keeps a contiguous suffix and tells clients below the horizon to reload.

Expected payloads are computed here from the rows the test wrote (sets, sorted lists,
counts), never read back from the functions under test."""
from __future__ import annotations

import json
import random
import threading

import psycopg
import pytest

CHANNEL = "reelscore_events"
CAP = 200          # ids per event (documented in sql/700-realtime.sql)
SAMPLE = 6400      # rows a bulk statement's ids are taken from


# ---------------------------------------------------------------------------- helpers
def last_seq(conn) -> int:
    return conn.execute("select coalesce(max(seq), 0) from reelscore.event_outbox").fetchone()[0]


def outbox_after(conn, seq: int) -> list[tuple[int, str, dict]]:
    return conn.execute("select seq, kind, payload from reelscore.event_outbox where seq > %s order by seq",
                        (seq,)).fetchall()


def metric_ids(conn, codes: list[str]) -> list[int]:
    rows = conn.execute("select id from reelscore.metric_definitions where code = any(%s) order by id",
                        (codes,)).fetchall()
    assert len(rows) == len(codes)
    return [r[0] for r in rows]


class Listener:
    """A LISTEN connection; `until_marker()` returns every payload received before a
    marker event that the test sends last, so 'exactly these notifications' is checked
    without waiting for a timeout."""

    def __init__(self, url: str):
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(f"LISTEN {CHANNEL}")

    def until_marker(self, sender) -> list[dict]:
        sender.execute("select reelscore.emit_event('test_marker')")
        got = []
        for n in self.conn.notifies(timeout=20):
            assert n.channel == CHANNEL
            payload = json.loads(n.payload)
            assert len(n.payload.encode()) < 8000
            if payload["kind"] == "test_marker":
                return got
            got.append(payload)
        raise AssertionError(f"marker event never arrived; got {got}")

    def close(self):
        self.conn.close()


@pytest.fixture()
def listener(db_url):
    lst = Listener(db_url)
    yield lst
    lst.close()


@pytest.fixture(scope="module")
def movies(db_url):
    """1..1000 plain movies, created once for the module."""
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("insert into reelscore.movies (id, title) select g, 'Film ' || g from generate_series(1, 1000) g")
    return list(range(1, 1001))


# ---------------------------------------------------------------------- announcements
def test_committed_change_writes_one_outbox_row_and_one_notify(conn, role_conn, listener, movies):
    """A loader (write role) upserts three values in one transaction: exactly one event, with
    the movie ids, the metric ids and the row count; NOTIFY carries the same JSON as the outbox."""
    writer = role_conn("write")
    writer.execute("select set_config('reelscore.actor', 'loader-7', false)")
    imdb, meta = metric_ids(conn, ["imdb_rating", "metacritic_score"])
    start = last_seq(conn)
    with writer.transaction():
        writer.execute("insert into reelscore.metric_values (movie_id, metric_id, raw_value) values "
                       "(11, %s, 7.5), (12, %s, 6.0), (11, %s, 80)", (imdb, imdb, meta))
        writer.execute("update reelscore.metric_values set raw_value = 7.7 where movie_id = 11 and metric_id = %s",
                       (imdb,))
        assert outbox_after(conn, start) == []          # nothing before commit
    rows = outbox_after(conn, start)
    assert len(rows) == 1
    seq, kind, payload = rows[0]
    assert kind == "metric_values"
    assert payload["ids"] == [11, 12]
    assert payload["metric_ids"] == sorted([imdb, meta])
    assert payload["n"] == 4                            # 3 inserted + 1 updated rows
    assert payload["ops"] == ["insert", "update"]
    assert payload["more"] is False
    assert payload["by"] == "loader-7"
    notes = listener.until_marker(conn)
    assert notes == [dict(payload, seq=seq)]
    # events_since returns the same JSON, with its seq
    since = conn.execute("select seq, kind, payload from reelscore.events_since(%s)", (start,)).fetchall()
    assert since[0] == (seq, "metric_values", dict(payload, seq=seq))


def test_rollback_and_no_op_statements_announce_nothing(conn, listener, movies):
    imdb, = metric_ids(conn, ["imdb_rating"])
    start = last_seq(conn)
    with pytest.raises(psycopg.errors.RaiseException), conn.transaction():
        conn.execute("insert into reelscore.metric_values (movie_id, metric_id, raw_value) values (21, %s, 5)",
                     (imdb,))
        conn.execute("do $$ begin raise exception 'abort'; end $$")
    conn.execute("update reelscore.metric_values set raw_value = 1 where false")
    conn.execute("delete from reelscore.metric_values where movie_id = -1")
    assert outbox_after(conn, start) == []
    assert listener.until_marker(conn) == []
    assert conn.execute("select count(*) from reelscore.event_pending").fetchone()[0] == 0


def test_bulk_statement_is_one_event_with_capped_ids(conn, listener, movies):
    """500 movies x 10 metrics in one statement: one event, exact count and metric ids,
    the 200 smallest movie ids, and more=true because 500 movies changed."""
    codes = ["tmdb_rating", "imdb_rating", "metacritic_score", "rt_tomatometer", "rt_audience_score",
             "tmdb_budget", "tmdb_revenue", "omdb_box_office", "bom_domestic", "bom_worldwide"]
    mids = metric_ids(conn, codes)
    film_ids = random.Random(5).sample(range(101, 1001), 500)
    conn.execute("set reelscore.defer_scoring = on")   # the scoring triggers' work is not under test
    start = last_seq(conn)
    conn.execute("""insert into reelscore.metric_values (movie_id, metric_id, raw_value)
                    select f, m, 1 from unnest(%s::bigint[]) f, unnest(%s::smallint[]) m""", (film_ids, mids))
    rows = outbox_after(conn, start)
    assert len(rows) == 1
    payload = rows[0][2]
    assert payload["n"] == 500 * 10
    assert payload["metric_ids"] == sorted(mids)
    assert payload["more"] is True
    assert payload["ids"] == sorted(film_ids)[:CAP]  # 5,000 rows <= SAMPLE: every movie is seen
    notes = listener.until_marker(conn)
    assert [n["seq"] for n in notes] == [rows[0][0]]
    # a bulk delete of the same rows: again one event
    start = last_seq(conn)
    conn.execute("delete from reelscore.metric_values where movie_id = any(%s)", (film_ids,))
    rows = outbox_after(conn, start)
    assert [(r[1], r[2]["ops"], r[2]["n"]) for r in rows] == [("metric_values", ["delete"], 5000)]


def test_bulk_statements_in_one_transaction_are_one_event(conn, movies):
    """A load in four upsert statements of one transaction (8,000 rows): one event with the
    total row count, both operations and the 200 smallest movie ids."""
    mids = metric_ids(conn, ["tmdb_popularity", "twitter_mentions"])
    films = list(range(1, 1001))
    rows_written = len(films) * len(mids) * 4      # 8,000 rows
    conn.execute("set reelscore.defer_scoring = on")   # the scoring triggers' work is not under test
    start = last_seq(conn)
    with conn.transaction():
        for _ in range(4):   # four statements, one transaction: still one event
            conn.execute("""insert into reelscore.metric_values (movie_id, metric_id, raw_value)
                            select f, m, 1 from unnest(%s::bigint[]) f, unnest(%s::smallint[]) m
                            on conflict (movie_id, metric_id) do update set raw_value = excluded.raw_value + 1""",
                         (films, mids))
    rows = outbox_after(conn, start)
    assert len(rows) == 1
    p = rows[0][2]
    assert p["n"] == rows_written and p["more"] is True and p["ops"] == ["insert", "update"]
    assert p["ids"] == films[:CAP]
    conn.execute("delete from reelscore.metric_values where metric_id = any(%s)", (mids,))


def test_one_transaction_touching_several_kinds_is_one_event_per_kind(conn, role_conn, listener, movies):
    admin = role_conn("admin")
    admin.execute("select set_config('reelscore.actor', 'alice', false)")
    imdb, = metric_ids(conn, ["imdb_rating"])
    start = last_seq(conn)
    with admin.transaction():
        admin.execute("update reelscore.metric_definitions set normalized_weight = 0.75 where id = %s", (imdb,))
        admin.execute("insert into reelscore.metric_values (movie_id, metric_id, raw_value) values (31, %s, 6)",
                      (imdb,))
        admin.execute("insert into reelscore.metric_values (movie_id, metric_id, raw_value) values (30, %s, 6)",
                      (imdb,))
    rows = outbox_after(conn, start)
    assert [(r[1], r[2]["ids"], r[2]["by"]) for r in rows] == [
        ("metric_definition", [imdb], "alice"), ("metric_values", [30, 31], "alice")]
    assert [n["seq"] for n in listener.until_marker(conn)] == [r[0] for r in rows]


def test_profile_changes_are_announced(conn, role_conn):
    """weight_profiles and profile_metric_weights (scoring revision) are watched: saving a
    profile announces kind 'profile' with the profile's id."""
    wired = conn.execute("select reelscore.realtime_install_triggers()").fetchone()[0]
    assert set(wired) == {"metric_values", "metric_definitions", "weight_profiles", "profile_metric_weights",
                          "coverage_snapshots"}
    admin = role_conn("admin")
    admin.execute("select set_config('reelscore.actor', 'bob', false)")
    weights = json.dumps({"rating": 0.4, "award": 0.2, "financial": 0.2, "cultural": 0.2, "popularity": 0})
    admin.execute("select reelscore.save_profile('rt_profile', %s::jsonb)", (weights,))
    pid = conn.execute("select id from reelscore.weight_profiles where name = 'rt_profile'").fetchone()[0]
    start = last_seq(conn)
    admin.execute("select reelscore.save_profile('rt_profile', NULL, %s::jsonb)", (json.dumps({"imdb_rating": 2.0}),))
    rows = [r for r in outbox_after(conn, start) if r[1] == "profile"]
    assert len(rows) == 1
    assert rows[0][2]["ids"] == [pid] and rows[0][2]["by"] == "bob"


def test_a_coverage_refresh_is_announced(conn):
    start = last_seq(conn)
    snap = conn.execute("select reelscore.refresh_coverage()").fetchone()[0]
    rows = [r for r in outbox_after(conn, start) if r[1] == "coverage"]
    assert len(rows) == 1 and rows[0][2]["ids"] == [snap] and "insert" in rows[0][2]["ops"]


def test_truncate_and_emit_event(conn):
    start = last_seq(conn)
    conn.execute("select reelscore.emit_event('coverage', array[5, 3, 5, null]::bigint[], 'refresh')")
    conn.execute("select reelscore.emit_event('scores', null)")
    rows = outbox_after(conn, start)
    assert [(r[1], r[2]["ids"], r[2]["ops"], r[2]["more"]) for r in rows] == [
        ("coverage", [3, 5], ["refresh"], False), ("scores", [], ["change"], True)]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid event kind: 'Bad Kind'"):
        conn.execute("select reelscore.emit_event('Bad Kind')")
    start = last_seq(conn)
    conn.execute("truncate reelscore.metric_values")
    rows = outbox_after(conn, start)
    assert [(r[1], r[2]["ops"], r[2]["more"]) for r in rows] == [("metric_values", ["truncate"], True)]


def test_worst_case_payload_stays_under_the_notify_limit(conn, listener):
    """200 ids of 19 digits, a long actor name, all metric ids: under 8000 bytes and valid JSON."""
    big = [9_223_372_036_854_775_000 - i for i in range(300)]
    conn.execute("insert into reelscore.movies (id, title) select f, 'Big ' || f from unnest(%s::bigint[]) f", (big,))
    conn.execute("select set_config('reelscore.actor', repeat('ü', 500), false)")
    start = last_seq(conn)
    conn.execute("""insert into reelscore.metric_values (movie_id, metric_id, raw_value)
                    select f, d.id, 1 from unnest(%s::bigint[]) f, reelscore.metric_definitions d
                    where d.data_type in ('count', 'money')""", (big,))
    conn.execute("select set_config('reelscore.actor', '', false)")
    notes = listener.until_marker(conn)   # asserts every payload < 8000 bytes
    assert len(notes) == 1 and notes[0]["seq"] > start
    assert notes[0]["ids"] == sorted(big)[:CAP] and notes[0]["by"] == "ü" * 64


# ---------------------------------------------------------------------------- catch-up
def test_seq_is_commit_order(db_url, conn, movies):
    """A transaction that changes first but commits last gets the larger seq, so a reader
    that already saw the other one's seq still catches it."""
    imdb, = metric_ids(conn, ["imdb_rating"])
    start = last_seq(conn)
    with psycopg.connect(db_url) as t1, psycopg.connect(db_url) as t2:
        t1.execute("insert into reelscore.metric_values (movie_id, metric_id, raw_value) values (41, %s, 1)", (imdb,))
        t2.execute("insert into reelscore.metric_values (movie_id, metric_id, raw_value) values (42, %s, 1)", (imdb,))
        t2.commit()
        seen = conn.execute("select seq, payload->'ids' from reelscore.events_since(%s)", (start,)).fetchall()
        assert [ids for _, ids in seen] == [[42]]
        t1.commit()
    later = conn.execute("select seq, payload->'ids' from reelscore.events_since(%s)", (seen[-1][0],)).fetchall()
    assert [ids for _, ids in later] == [[41]]


def test_catch_up_under_concurrent_writers_loses_nothing(db_url, conn, movies):
    """Four writers commit 25 transactions each, with overlapping lifetimes; a reader polls
    events_since(last seen) throughout. It ends with every event, each once, in seq order."""
    imdb, = metric_ids(conn, ["imdb_rating"])
    start = last_seq(conn)
    done = threading.Event()
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            rnd = random.Random(w)
            with psycopg.connect(db_url) as c:
                for i in range(25):
                    movie = 500 + w * 100 + i
                    c.execute("insert into reelscore.metric_values (movie_id, metric_id, raw_value) "
                              "values (%s, %s, %s)", (movie, imdb, rnd.random() * 10))
                    c.execute("select pg_sleep(%s)", (rnd.random() * 0.004,))
                    c.commit()
        except BaseException as exc:  # noqa: BLE001 - a thread's failure is asserted in the test
            errors.append(exc)

    seen: list[int] = []
    seen_movies: list[int] = []

    def reader() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as c:
                last = start
                while True:
                    finished = done.is_set()
                    for seq, kind, payload, _ in c.execute("select * from reelscore.events_since(%s, 7)", (last,)):
                        assert kind == "metric_values" and seq > last
                        seen.append(seq)
                        seen_movies.extend(payload["ids"])
                        last = seq
                    if finished and not c.execute("select 1 from reelscore.events_since(%s)", (last,)).fetchone():
                        return
        except BaseException as exc:  # noqa: BLE001 - a thread's failure is asserted in the test
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    rd = threading.Thread(target=reader)
    rd.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    rd.join()
    assert not errors, errors
    committed = [r[0] for r in outbox_after(conn, start)]
    assert len(committed) == 100
    assert seen == committed
    assert sorted(seen_movies) == sorted(500 + w * 100 + i for w in range(4) for i in range(25))


def test_events_since_limits_and_arguments(conn):
    for i in range(5):
        conn.execute("select reelscore.emit_event('paging', array[%s]::bigint[])", (i,))
    rows = conn.execute("select seq, payload->'ids'->>0 from reelscore.outbox_status() s, "
                        "reelscore.events_since(s.last_seq - 5, 3)").fetchall()
    assert [r[1] for r in rows] == ["0", "1", "2"]
    assert rows[1][0] > rows[0][0]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid limit: 0"):
        conn.execute("select * from reelscore.events_since(0, 0)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid event sequence number: NULL"):
        conn.execute("select * from reelscore.events_since(null)")


def test_reader_role_catches_up_and_cannot_forge(role_conn, conn):
    conn.execute("select reelscore.emit_event('role_check')")
    reader = role_conn("read")
    rows = reader.execute("select kind from reelscore.events_since(0, 10000)").fetchall()
    assert ("role_check",) in rows
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        reader.execute("insert into reelscore.event_outbox (kind, payload) values ('forged', '{}')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        reader.execute("select reelscore.emit_event('forged')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        role_conn("write").execute("insert into reelscore.event_pending (kind, op) values ('forged', 'x')")


# ------------------------------------------------------------------------------- prune
def test_prune_keeps_a_contiguous_suffix_and_resets_clients_below_it(conn, role_conn):
    for i in range(6):
        conn.execute("select reelscore.emit_event('prune_test', array[%s]::bigint[])", (i,))
    seqs = [r[0] for r in conn.execute("select seq from reelscore.event_outbox order by seq")]
    # age everything up to the third prune_test event by two days
    ptest = [r[0] for r in conn.execute("select seq from reelscore.event_outbox where kind = 'prune_test' order by seq")]
    cut = ptest[2]
    conn.execute("update reelscore.event_outbox set created_at = created_at - interval '2 days' where seq <= %s",
                 (cut,))
    expected_deleted = sum(1 for s in seqs if s <= cut)
    admin = role_conn("admin")
    assert admin.execute("select reelscore.prune_outbox(interval '1 day')").fetchone()[0] == expected_deleted
    remaining = [r[0] for r in conn.execute("select seq from reelscore.event_outbox order by seq")]
    assert remaining == [s for s in seqs if s > cut]
    status = conn.execute("select last_seq, pruned_through, retained from reelscore.outbox_status()").fetchone()
    assert status == (seqs[-1], cut, len(remaining))
    # a client that saw `cut` continues normally; one below it is told to reload
    cont = conn.execute("select seq from reelscore.events_since(%s)", (cut,)).fetchall()
    assert [r[0] for r in cont] == remaining
    reset = conn.execute("select seq, kind, payload->>'more' from reelscore.events_since(%s)", (cut - 1,)).fetchall()
    assert reset == [(seqs[-1], "reset", "true")]
    beyond = conn.execute("select kind from reelscore.events_since(%s)", (seqs[-1] + 1000,)).fetchall()
    assert beyond == [("reset",)]
    # nothing old enough: nothing deleted, horizon unchanged
    assert conn.execute("select reelscore.prune_outbox(interval '1 day')").fetchone()[0] == 0
    assert conn.execute("select pruned_through from reelscore.outbox_status()").fetchone()[0] == cut
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid retention"):
        conn.execute("select reelscore.prune_outbox(interval '-1 day')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        role_conn("read").execute("select reelscore.prune_outbox()")


# ------------------------------------------------------------- the SSE relay (/events)
ADMIN, PASSWORD = "rt_admin", "correct horse battery"


class LiveApp:
    """The admin app served by a real threaded server (as `reelscore admin` serves it), and a
    logged-in session cookie for raw HTTP clients."""

    def __init__(self, db_url: str, **config):
        from werkzeug.security import generate_password_hash
        from werkzeug.serving import make_server

        from admin import create_app
        with psycopg.connect(db_url, autocommit=True) as c:
            if not c.execute("select 1 from reelscore.admin_list_users() where username = %s", (ADMIN,)).fetchone():
                c.execute("select reelscore.admin_create_user(%s, %s, 'admin')",
                          (ADMIN, generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")))
        self.app = create_app({"DATABASE_URL": db_url, "TESTING": True, "SECRET_KEY": "rt-secret",
                               "DB_POOL_MAX": 4, "REALTIME_HEARTBEAT_S": 0.3, **config})
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        client = self.app.test_client()
        page = client.get("/login")
        import re
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text) or \
            re.search(r'value="([^"]+)"[^>]*name="csrf_token"', page.text)
        r = client.post("/login", data={"username": ADMIN, "password": PASSWORD, "csrf_token": token.group(1)})
        assert r.status_code == 302
        self.cookie = client.get_cookie(self.app.config["SESSION_COOKIE_NAME"]).value

    def stream(self, last_event_id=None, query: str = "", cookie: bool = True) -> SSEStream:
        return SSEStream(self.port, self.cookie if cookie else None, last_event_id, query)

    def close(self):
        from admin.db import close_pool
        from admin.realtime import stop_hub
        stop_hub(self.app)
        self.server.shutdown()
        close_pool(self.app)


class SSEStream:
    """A raw HTTP client of /events that parses the text/event-stream format."""

    def __init__(self, port: int, cookie: str | None, last_event_id=None, query: str = ""):
        import http.client
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        headers = {"Accept": "text/event-stream"}
        if cookie:
            headers["Cookie"] = f"reelscore_admin={cookie}"
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.conn.request("GET", "/events" + query, headers=headers)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def frame(self) -> dict[str, str]:
        fields: dict[str, str] = {}
        while True:
            line = self.resp.readline()
            if not line:
                raise EOFError("stream closed")
            line = line.decode().rstrip("\r\n")
            if line == "":
                if fields:
                    return fields
                continue
            if line.startswith(":"):
                continue  # keepalive comment
            key, _, value = line.partition(":")
            fields[key] = value.removeprefix(" ")

    def event(self) -> tuple[int, dict]:
        """The next event with data: (its id, its JSON)."""
        while True:
            f = self.frame()
            if "data" in f:
                return int(f["id"]), json.loads(f["data"])

    def close(self):
        self.resp.close()   # the response holds the socket too: close both, or the server never notices
        self.conn.close()


@pytest.fixture(scope="module")
def live(db_url, movies):
    app = LiveApp(db_url)
    yield app
    app.close()


def test_events_relays_a_committed_change(live, conn):
    imdb, = metric_ids(conn, ["imdb_rating"])
    s = live.stream()
    assert s.status == 200 and s.resp.getheader("Content-Type").startswith("text/event-stream")
    first = s.frame()
    assert first["retry"] == "1000" and int(first["id"]) == last_seq(conn)
    conn.execute("insert into reelscore.metric_values (movie_id, metric_id, raw_value) values (61, %s, 4) "
                 "on conflict (movie_id, metric_id) do update set raw_value = excluded.raw_value", (imdb,))
    seq, ev = s.event()
    db_seq, _kind, payload = outbox_after(conn, seq - 1)[0]
    assert (seq, ev) == (db_seq, dict(payload, seq=db_seq)) and ev["ids"] == [61]
    s.close()


def test_events_catch_up_with_last_event_id_has_no_gap_and_no_duplicate(live, conn):
    before = last_seq(conn)
    for i in range(3):
        conn.execute("select reelscore.emit_event('catch_up', array[%s]::bigint[])", (i,))
    missed = [r[0] for r in outbox_after(conn, before)]
    s = live.stream(last_event_id=before)
    assert s.frame()["id"] == str(before)
    got = [s.event() for _ in missed]
    assert [seq for seq, _ in got] == missed
    assert [ev["ids"] for _, ev in got] == [[0], [1], [2]]
    conn.execute("select reelscore.emit_event('catch_up', array[3]::bigint[])")
    seq, ev = s.event()
    assert seq == last_seq(conn) and ev["ids"] == [3]
    s.close()
    # ?since= (the seq a page was rendered at) works the same way
    s = live.stream(query=f"?since={missed[0]}")
    assert [s.event()[0] for _ in missed[1:]] == missed[1:]
    s.close()


def test_events_tells_a_client_below_the_pruned_horizon_to_reload(live, conn):
    conn.execute("select reelscore.emit_event('old_news')")
    conn.execute("update reelscore.event_outbox set created_at = created_at - interval '30 days'")
    conn.execute("select reelscore.prune_outbox(interval '1 day')")
    horizon = conn.execute("select pruned_through from reelscore.outbox_status()").fetchone()[0]
    s = live.stream(last_event_id=horizon - 1)
    seq, ev = s.event()
    assert ev["kind"] == "reset" and seq == horizon
    s.close()


def test_events_needs_a_login_and_a_valid_last_event_id(live):
    anon = live.stream(cookie=False)
    assert anon.status == 401
    anon.close()
    bad = live.stream(last_event_id="abc")
    assert bad.status == 400
    bad.close()


def test_events_survive_a_lost_listener_connection(live, conn):
    """The listener's connection is killed; a change committed meanwhile still reaches the
    open page (the listener reconnects and relays from the outbox)."""
    s = live.stream()
    s.frame()
    killed = conn.execute("""select count(pg_terminate_backend(pid)) from pg_stat_activity
                             where application_name = 'reelscore-admin-listen' and datname = current_database()""")
    assert killed.fetchone()[0] == 1
    conn.execute("select reelscore.emit_event('while_down', array[77]::bigint[])")
    seq, ev = s.event()
    assert ev["kind"] == "while_down" and ev["ids"] == [77] and seq == last_seq(conn)
    s.close()


def test_one_listener_fans_out_to_every_open_page(live, conn):
    streams = [live.stream() for _ in range(5)]
    for s in streams:
        s.frame()
    listeners = conn.execute("""select count(*) from pg_stat_activity
                                where application_name = 'reelscore-admin-listen' and datname = current_database()""")
    assert listeners.fetchone()[0] == 1
    conn.execute("select reelscore.emit_event('fan_out', array[1, 2]::bigint[])")
    got = {s.event()[1]["kind"] for s in streams}
    assert got == {"fan_out"}
    for s in streams:
        s.close()


def test_a_slow_client_is_dropped_not_waited_for():
    """Unit level: a full buffer closes the client instead of blocking the listener."""
    from admin.realtime import Client, Closed, Hub
    hub = Hub("postgresql://unused", queue_size=2)
    slow, _ = hub.register()
    fast, _ = hub.register()
    for seq in (1, 2, 3):
        hub._dispatch({"seq": seq, "kind": "x"})
        assert fast.take(0)[0] == seq       # the fast page keeps up
    assert slow.dropped and hub.client_count == 1
    with pytest.raises(Closed):
        slow.take(0)
    assert isinstance(fast, Client) and not fast.dropped
    hub._dispatch({"seq": 3, "kind": "x"})   # an old seq is never relayed twice
    assert fast.take(0) is None
