"""Ingestion on a real server: the bulk path (COPY -> quarantine -> one merge), the history
trigger, upsert_metric, the adapters, the legacy migration, integrity, roles, interrupted
loads and the real data sets. Expected values are computed here from the inputs."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from reelscore.ingest import demo
from reelscore.ingest.loader import load_file

ROOT = Path(__file__).resolve().parents[2]


def metric_ids(conn) -> dict[str, int]:
    return dict(conn.execute("select code, id from reelscore.metric_definitions").fetchall())


def new_movies(conn, n: int) -> list[int]:
    return [r[0] for r in conn.execute(
        "insert into reelscore.movies (title) select 'ingest test ' || g from generate_series(1, %s) g returning id",
        (n,)).fetchall()]


def values_of(conn, movie_ids) -> dict[tuple[int, str], float]:
    return {(m, c): v for m, c, v in conn.execute(
        """select v.movie_id, d.code, v.raw_value from reelscore.metric_values v
           join reelscore.metric_definitions d on d.id = v.metric_id where v.movie_id = any(%s)""",
        (list(movie_ids),)).fetchall()}


def history_of(conn, movie_ids) -> list[tuple]:
    return conn.execute(
        """select t.movie_id, d.code, t.value, t.normalized_value, t.metadata from reelscore.metric_timeseries t
           join reelscore.metric_definitions d on d.id = t.metric_id where t.movie_id = any(%s)
           order by t.movie_id, d.code, t.time, t.value""", (list(movie_ids),)).fetchall()


def write(tmp_path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def expected_norm(code: str, raw: float) -> float:
    """The registry's formulas for the metrics used here, written out independently."""
    if code == "imdb_rating":
        return min(1.0, max(0.0, raw / 10))
    if code == "imdb_vote_count":
        return min(1.0, math.log(raw + 1) / math.log(10_000_000 + 1))
    if code == "metacritic_score":
        return raw / 100
    raise KeyError(code)


# ---------------------------------------------------------------------------------------
def test_bulk_load_inserts_then_updates_changed_and_leaves_identical(conn, tmp_path):
    ids = new_movies(conn, 4)
    first = {(m, "imdb_rating"): 5.0 + i / 2 for i, m in enumerate(ids)}
    first.update({(m, "imdb_vote_count"): 1000.0 * (i + 1) for i, m in enumerate(ids)})
    f1 = write(tmp_path, "v1.csv", "movie_id,metric_code,raw_value\n" +
               "".join(f"{m},{c},{v}\n" for (m, c), v in first.items()))
    s1 = load_file(conn, f1)
    assert (s1.inserted, s1.updated, s1.unchanged, s1.rejected) == (8, 0, 0, 0)
    assert values_of(conn, ids) == first
    hist1 = history_of(conn, ids)
    assert len(hist1) == 8
    for m, code, value, norm, meta in hist1:
        assert value == first[(m, code)]
        assert norm == pytest.approx(expected_norm(code, value), abs=1e-12)
        assert meta == {"batch_id": s1.batches[0]}

    second = dict(first)
    second[(ids[0], "imdb_rating")] = 9.5          # changed
    second[(ids[1], "imdb_vote_count")] = 123456.0  # changed
    second[(ids[3], "metacritic_score")] = 88.0     # new
    f2 = write(tmp_path, "v2.csv", "".join(f"{m},{c},{v}\n" for (m, c), v in second.items()))
    s2 = load_file(conn, f2)
    assert (s2.inserted, s2.updated, s2.unchanged, s2.rejected) == (1, 2, 6, 0)
    assert values_of(conn, ids) == second
    hist2 = history_of(conn, ids)
    added = [h for h in hist2 if h not in hist1]
    assert len(added) == 3
    prev = {(m, c): h[4].get("previous") for h in added for (m, c) in [(h[0], h[1])]}
    assert prev[(ids[0], "imdb_rating")] == first[(ids[0], "imdb_rating")]
    assert prev[(ids[3], "metacritic_score")] is None
    batches = conn.execute("select inserted, updated, unchanged, rejected, status from reelscore.load_batches "
                           "where id = any(%s) order by id", (s1.batches + s2.batches,)).fetchall()
    assert batches == [(8, 0, 0, 0, "done"), (1, 2, 6, 0, "done")]


def test_every_kind_of_bad_row_is_quarantined_and_the_rest_loads(conn, tmp_path, monkeypatch, db_url, capsys):
    ids = new_movies(conn, 3)
    a, b, c = ids
    lines = [
        "movie_id,metric_code,raw_value",
        f"{a},imdb_rating,7.1",               # 2 good
        f"{a},no_such_metric,1",              # 3 unknown metric
        f"{a},metacritic_score,abc",          # 4 not a number
        f"{b},imdb_rating,10.5",              # 5 out of scale
        f"{b},oscar_wins,1.5",                # 6 count must be whole
        f"{a},imdb_rating,7.3",               # 7 duplicate of line 2
        f"{b},imdb_rating",                   # 8 malformed
        f"{c},imdb_rating,6.0",               # 9 good
        "999999999,imdb_rating,5",            # 10 unknown movie
        f"{c},imdb_vote_count,NaN",           # 11 NaN
    ]
    data = ("\n".join(lines) + "\n").encode() + f"{b},metacritic_score,7\xe9\n".encode("latin-1")  # 12 encoding
    path = write(tmp_path, "bad.csv", data)
    monkeypatch.setenv("REELSCORE_DATABASE_URL", db_url)
    from reelscore.cli import main
    status = main(["load", str(path), "--no-progress"])
    out = capsys.readouterr()
    assert status == 1
    assert "2 inserted" in out.out and "9 rejected" in out.out
    assert values_of(conn, ids) == {(a, "imdb_rating"): 7.1, (c, "imdb_rating"): 6.0}
    batch = conn.execute("select max(id) from reelscore.load_batches where source_name = 'bad.csv'").fetchone()[0]
    rej = {n: (reason, raw) for n, reason, raw in conn.execute(
        "select line_no, reason, raw_text from reelscore.load_rejections where batch_id = %s", (batch,)).fetchall()}
    expect = {3: "unknown metric", 4: "not a number", 5: "above the raw scale maximum", 6: "whole number",
              7: "duplicate of line 2", 8: "malformed line", 10: "unknown movie", 11: "not a number (NaN)",
              12: "invalid encoding"}
    assert sorted(rej) == sorted(expect)
    for n, word in expect.items():
        assert word in rej[n][0], (n, rej[n])
    for n in (3, 4, 5, 6, 7, 8, 10, 11):
        assert rej[n][1] == lines[n - 1], n          # the original text
    assert rej[12][1].endswith("7\\xe9")
    assert "9 rows rejected" in out.err


def test_plain_blocks_give_the_line_parsers_rows(monkeypatch):
    """The loader's block path (plain long lines checked and rewritten a block at a time)
    gives the same staging rows as the general line parser, observation times included; a
    block with one line it cannot vouch for goes line by line."""
    from reelscore.ingest.parsing import STAGING_COLUMNS, CsvRows, Layout, plain_block_rows
    header = ["movie_id", "metric_code", "raw_value", "observed_at"]
    lines = ["1,imdb_rating,7.5,2026-05-21 19:16:25+00", "2,imdb_vote_count,120000,2026-02-28T00:00:00.250000+00",
             "3,metacritic_score,-0.5e-3,2024-02-29 23:59:59-05", "4,no_such_metric,1,2026-01-31 10:00:00+05:30",
             "5,imdb_rating,10.5,2026-12-30 00:00:00+14:00"]
    general = CsvRows(Layout("long", "id", "movie_id", header=header))

    def decoded(rows):   # the value's text may differ (the block path keeps the file's), not the number
        out = [dict(zip(STAGING_COLUMNS, r[:-1].split("\t"))) for r in rows]
        return [dict(r, raw_value=float(r["raw_value"])) for r in out]

    expected = [r for n, line in enumerate(lines, 2) for r in decoded(general.rows(n, line))]
    whole_hours, with_minutes = lines[:3], lines[3:]
    got = decoded(plain_block_rows("\n".join(whole_hours) + "\n", 2, (4,)))
    got += decoded(plain_block_rows("\n".join(with_minutes) + "\n", 5, (4,)))
    assert got == expected
    assert got[0]["observed_at"] == "2026-05-21T19:16:25+00:00" and got[1]["raw_text"] == lines[1]
    assert decoded(plain_block_rows("7,imdb_rating,6\n8,tmdb_budget,1e6\n", 9, (3,))) == \
        decoded(CsvRows(Layout("long", "id", "movie_id", header=header[:3])).rows(9, "7,imdb_rating,6")
                + CsvRows(Layout("long", "id", "movie_id", header=header[:3])).rows(10, "8,tmdb_budget,1e6"))
    # not vouched for: a date off the calendar, a time zone written otherwise, an odd number
    for odd in ("6,imdb_rating,5,2026-02-30 00:00:00+00", "6,imdb_rating,5,2026-02-03 00:00:00-00",
                "6,imdb_rating,5,2026-02-03 00:00:00.5+00", "6,imdb_rating,1e400,2026-02-03 00:00:00+00",
                "6,imdb_rating, 5,2026-02-03 00:00:00+00", "6,imdb_rating,5,2026-02-03 24:00:00+00"):
        assert plain_block_rows(lines[0] + "\n" + odd + "\n", 2, (4,)) is None, odd


def test_plain_file_loads_through_the_block_path_with_its_rejections(conn, tmp_path):
    """A file of plain lines only (the bench's shape) never reaches the line parser, and
    what the database refuses in it is still quarantined with the original line."""
    from reelscore.ingest.parsing import CsvRows
    a, b = new_movies(conn, 2)
    lines = [f"{a},imdb_rating,7.25,2026-03-01 12:00:00+00", f"{a},imdb_vote_count,1500,2026-03-02 12:00:00+02",
             f"{a},no_such_metric,1,2026-03-01 12:00:00+00", f"{b},imdb_rating,10.5,2026-03-01 12:00:00+00",
             f"{b},metacritic_score,70,2026-03-31 23:00:00-01:30", f"{b},metacritic_score,71,2026-03-01 12:00:00+00",
             "999999999,imdb_rating,5,2026-03-01 12:00:00+00"]
    path = write(tmp_path, "plain.csv", "movie_id,metric_code,raw_value,observed_at\n" + "\n".join(lines) + "\n")
    real_rows = CsvRows.rows
    CsvRows.rows = lambda *_: pytest.fail("a plain line went through the line parser")
    try:
        s = load_file(conn, path)
    finally:
        CsvRows.rows = real_rows
    assert (s.inserted, s.rejected) == (3, 4)
    assert values_of(conn, [a, b]) == {(a, "imdb_rating"): 7.25, (a, "imdb_vote_count"): 1500.0,
                                       (b, "metacritic_score"): 70.0}
    times = dict(conn.execute("""select d.code, to_char(v.observed_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI')
                                 from reelscore.metric_values v join reelscore.metric_definitions d on d.id = v.metric_id
                                 where v.movie_id = any(%s)""", ([a, b],)).fetchall())
    assert times == {"imdb_rating": "2026-03-01 12:00", "imdb_vote_count": "2026-03-02 10:00",
                     "metacritic_score": "2026-04-01 00:30"}
    rej = {n: (reason, raw) for n, reason, raw in conn.execute(
        "select line_no, reason, raw_text from reelscore.load_rejections where batch_id = %s", (s.batches[0],))}
    assert {n: raw for n, (_, raw) in rej.items()} == {4: lines[2], 5: lines[3], 7: lines[5], 8: lines[6]}
    assert "unknown metric" in rej[4][0] and "raw scale maximum" in rej[5][0]
    assert "duplicate of line 6" in rej[7][0] and "unknown movie id 999999999" in rej[8][0]


def test_duplicates_are_found_when_the_merge_meets_them(conn, tmp_path):
    """The duplicates pass runs only when the merge fails on a key written twice: for new
    movies (plain insert) and for movies with stored values (the merge); the first line
    wins either way, and a batch without duplicates loads all of its lines."""
    fresh, stored = new_movies(conn, 2)
    conn.execute("select reelscore.upsert_metric(%s, 'imdb_rating', 5)", (stored,))
    for m, expect in ((fresh, (2, 0)), (stored, (1, 1))):
        path = write(tmp_path, f"dup{m}.csv", f"movie_id,metric_code,raw_value\n{m},imdb_rating,7\n"
                                              f"{m},imdb_vote_count,10\n{m},imdb_rating,8\n")
        s = load_file(conn, path)
        assert (s.inserted, s.updated, s.rejected) == (*expect, 1)
        assert values_of(conn, [m]) == {(m, "imdb_rating"): 7.0, (m, "imdb_vote_count"): 10.0}
        reason, raw = conn.execute("select reason, raw_text from reelscore.load_rejections where batch_id = %s",
                                   (s.batches[0],)).fetchone()
        assert reason == f"duplicate of line 2 in this batch (movie {m}, metric imdb_rating)"
        assert raw == f"{m},imdb_rating,8"
        assert len(history_of(conn, [m])) == (2 if m == fresh else 3)


def test_plain_insert_meeting_a_concurrent_writer_falls_back_to_the_merge(conn, db_url, tmp_path):
    """A batch for movies without stored values is inserted without conflict handling; when
    another transaction commits a value for one of them meanwhile, the batch is merged
    instead of failing."""
    import threading
    (m,) = new_movies(conn, 1)
    path = write(tmp_path, "race.csv", f"movie_id,metric_code,raw_value\n{m},imdb_rating,7\n{m},imdb_vote_count,10\n")
    with psycopg.connect(db_url) as other:
        other.execute("select reelscore.upsert_metric(%s, 'imdb_rating', 6)", (m,))   # not committed yet
        out = {}

        def load():
            with psycopg.connect(db_url) as c:
                out["summary"] = load_file(c, path)
        t = threading.Thread(target=load)
        t.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not conn.execute(
                "select 1 from pg_stat_activity where wait_event_type = 'Lock' and query like '%%finish_load%%'"
        ).fetchone():
            time.sleep(0.05)   # the loader's insert waits for the other writer's key
        other.commit()
    t.join(30)
    s = out["summary"]
    assert (s.inserted, s.updated, s.rejected) == (1, 1, 0)
    assert values_of(conn, [m]) == {(m, "imdb_rating"): 7.0, (m, "imdb_vote_count"): 10.0}


def test_wide_csv_with_mapping_and_jsonl(conn, tmp_path):
    ids = new_movies(conn, 2)
    wide = write(tmp_path, "wide.csv", "movie_id,IMDB Rating,IMDB Votes,Notes\n"
                                       f"{ids[0]},7.7,5000,x\n{ids[1]},,70,y\n")
    s = load_file(conn, wide, mapping={"IMDB Rating": "imdb_rating", "IMDB Votes": "imdb_vote_count", "Notes": None})
    assert (s.inserted, s.rejected) == (3, 0)
    jl = write(tmp_path, "v.jsonl", json.dumps({"movie_id": ids[1], "metric_code": "imdb_rating", "raw_value": 6.6,
                                                "observed_at": "2030-01-01T00:00:00Z"}) + "\n")
    s = load_file(conn, jl)
    assert (s.inserted, s.rejected) == (1, 0)
    assert values_of(conn, ids) == {(ids[0], "imdb_rating"): 7.7, (ids[0], "imdb_vote_count"): 5000.0,
                                    (ids[1], "imdb_vote_count"): 70.0, (ids[1], "imdb_rating"): 6.6}


def test_observation_times_decide_what_is_newer(conn, tmp_path):
    (m,) = new_movies(conn, 1)
    f = lambda name, v, t: write(tmp_path, name, f"movie_id,metric_code,raw_value,observed_at\n{m},imdb_rating,{v},{t}\n")
    assert load_file(conn, f("o1.csv", 6.0, "2030-01-02")).inserted == 1
    older = load_file(conn, f("o2.csv", 5.0, "2030-01-01"))       # an older observation never overwrites
    assert (older.updated, older.unchanged) == (0, 1)
    same_later = load_file(conn, f("o3.csv", 6.0, "2030-01-05"))  # same value, observed later: refreshed
    assert same_later.updated == 1
    again = load_file(conn, f("o4.csv", 6.0, "2030-01-05"))
    assert again.unchanged == 1
    row = conn.execute("select raw_value, observed_at::date::text from reelscore.metric_values where movie_id = %s",
                       (m,)).fetchone()
    assert row == (6.0, "2030-01-05")
    times = [r[0] for r in conn.execute("select time::date::text from reelscore.metric_timeseries "
                                        "where movie_id = %s order by time", (m,)).fetchall()]
    assert times == ["2030-01-02", "2030-01-05"]


def test_external_movie_keys(conn, tmp_path):
    (m,) = new_movies(conn, 1)
    conn.execute("update reelscore.movies set tmdb_id = 987654, imdb_id = 'tt9876543' where id = %s", (m,))
    p = write(tmp_path, "keys.csv", "tmdb_id,metric_code,raw_value\n987654,imdb_rating,4.5\n111,imdb_rating,3\n")
    s = load_file(conn, p)
    assert (s.inserted, s.rejected) == (1, 1)
    p = write(tmp_path, "keys2.csv", "imdb_id,metric_code,raw_value\ntt9876543,metacritic_score,55\n")
    assert load_file(conn, p).inserted == 1
    assert values_of(conn, [m]) == {(m, "imdb_rating"): 4.5, (m, "metacritic_score"): 55.0}
    reason = conn.execute("select reason from reelscore.load_rejections where raw_text like '111,%'").fetchone()[0]
    assert "unknown movie tmdb_id '111'" == reason


def test_batches_commit_one_by_one(conn, tmp_path):
    ids = new_movies(conn, 5)
    p = write(tmp_path, "b.csv", "".join(f"{m},imdb_rating,{i}\n" for i, m in enumerate(ids)))
    s = load_file(conn, p, batch_rows=2)
    assert len(s.batches) == 3 and s.inserted == 5
    counts = conn.execute("select inserted from reelscore.load_batches where id = any(%s) order by id",
                          (s.batches,)).fetchall()
    assert [c[0] for c in counts] == [2, 2, 1]


def test_killed_load_leaves_nothing(conn, tmp_path, db_url):
    ids = new_movies(conn, 2000)
    path = tmp_path / "big.csv"
    with open(path, "w") as fh:
        fh.write("movie_id,metric_code,raw_value\n")
        # the same keys over and over: a load that got through would reject duplicates
        fh.writelines(f"{m},imdb_rating,{(m + rep) % 10}\n" for rep in range(60) for m in ids)
    before = conn.execute("select count(*) from reelscore.metric_values").fetchone()[0]
    batches_before = conn.execute("select count(*) from reelscore.load_batches").fetchone()[0]
    env = dict(os.environ, REELSCORE_DATABASE_URL=db_url)
    proc = subprocess.Popen([sys.executable, "-m", "reelscore.cli", "load", str(path), "--no-progress"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dbname = db_url.rsplit("/", 1)[1]
    deadline = time.time() + 60
    started = False
    while time.time() < deadline and proc.poll() is None:
        # killed while streaming the COPY or merging: either way before the batch commits
        started = conn.execute("""select count(*) from pg_stat_activity where datname = %s
                                  and application_name = 'reelscore' and state = 'active'
                                  and (query like 'COPY pg_temp.rs_load_staging%%' or query like '%%finish_load%%')""",
                               (dbname,)).fetchone()[0] > 0
        if started:
            break
        time.sleep(0.05)
    assert started, "the load finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the server notices the dropped connection and rolls the batch back
    deadline = time.time() + 30
    while time.time() < deadline and conn.execute(
            "select count(*) from pg_stat_activity where datname = %s and application_name = 'reelscore'",
            (dbname,)).fetchone()[0]:
        time.sleep(0.1)
    assert conn.execute("select count(*) from reelscore.metric_values").fetchone()[0] == before
    assert conn.execute("select count(*) from reelscore.load_batches").fetchone()[0] == batches_before
    assert conn.execute("select count(*) from reelscore.metric_values where movie_id = any(%s)", (ids,)).fetchone()[0] == 0


# ---------------------------------------------------------------------------------------
def test_upsert_metric_statuses_and_errors(conn):
    (m,) = new_movies(conn, 1)
    up = lambda *a: conn.execute("select reelscore.upsert_metric(%s, %s, %s)", a).fetchone()[0]
    assert up(m, "imdb_rating", 7.0) == "inserted"
    assert up(m, "imdb_rating", 7.0) == "unchanged"
    assert up(m, "imdb_rating", 7.5) == "updated"
    assert values_of(conn, [m]) == {(m, "imdb_rating"): 7.5}
    hist = history_of(conn, [m])
    assert [(h[2], h[4].get("previous")) for h in hist] == [(7.0, None), (7.5, 7.0)]
    for args, state in [((m, "nope", 1.0), "22023"), ((m, "imdb_rating", 11.0), "22003"),
                        ((m, "imdb_rating", float("nan")), "22023"), ((-5, "imdb_rating", 1.0), "23503")]:
        with pytest.raises(psycopg.Error) as exc:
            up(*args)
        assert exc.value.sqlstate == state, args


def test_history_trigger_is_statement_level_and_counts_only_changes(conn):
    ids = new_movies(conn, 50)
    mid = metric_ids(conn)["imdb_rating"]
    trig = dict(conn.execute("""select tgname, (tgtype & 1) = 0 from pg_trigger
                                where tgrelid = 'reelscore.metric_values'::regclass
                                  and tgname like 'metric_values_history%'""").fetchall())
    assert trig == {"metric_values_history_ins": True, "metric_values_history_upd": True}  # FOR EACH STATEMENT
    conn.execute("insert into reelscore.metric_values (movie_id, metric_id, raw_value) "
                 "select unnest(%s::bigint[]), %s, 5", (ids, mid))
    conn.execute("update reelscore.metric_values set raw_value = 6 where movie_id = any(%s) and movie_id %% 2 = 0",
                 (ids,))
    conn.execute("update reelscore.metric_values set source_record = 'x' where movie_id = any(%s)", (ids,))
    n_even = sum(1 for m in ids if m % 2 == 0)
    assert len(history_of(conn, ids)) == 50 + n_even


def test_referential_integrity_without_per_row_foreign_keys(conn):
    (m,) = new_movies(conn, 1)
    mid = metric_ids(conn)["imdb_rating"]
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("insert into reelscore.metric_values (movie_id, metric_id, raw_value) values (-1, %s, 5)", (mid,))
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("insert into reelscore.metric_values (movie_id, metric_id, raw_value) values (%s, 32000, 5)", (m,))
    conn.execute("insert into reelscore.metric_values (movie_id, metric_id, raw_value) values (%s, %s, 5)", (m, mid))
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("update reelscore.metric_values set movie_id = -2 where movie_id = %s", (m,))
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("update reelscore.movies set id = -3 where id = %s", (m,))
    conn.execute("delete from reelscore.movies where id = %s", (m,))     # cascades
    assert conn.execute("select count(*) from reelscore.metric_values where movie_id = %s", (m,)).fetchone()[0] == 0
    with conn.transaction():
        (m2,) = new_movies(conn, 1)
        conn.execute("insert into reelscore.metric_definitions (slot, code, name, category, source, data_type, "
                     "raw_scale_min, raw_scale_max, normalization_type) values "
                     "(31, 'ingest_tmp', 'tmp', 'rating', 'x', 'numeric', 0, 1, 'linear')")
        conn.execute("select reelscore.upsert_metric(%s, 'ingest_tmp', 0.5)", (m2,))
        with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
            conn.execute("delete from reelscore.metric_definitions where code = 'ingest_tmp'")
        raise psycopg.Rollback()


def test_large_statement_locks_the_movies_table_instead_of_each_movie(conn, db_url):
    """A statement referencing at least reelscore.reference_table_lock_movies movies (lowered
    here) checks them under one SHARE lock on movies instead of a row lock each: no movie row is
    locked, a concurrent delete of a referenced movie waits for the commit, and a missing movie
    is still refused. While another session is writing movies, the load does not wait for it:
    it locks the rows as a foreign key would."""
    ids = new_movies(conn, 4)
    mid = metric_ids(conn)["imdb_rating"]
    pid = conn.execute("select pg_backend_pid()").fetchone()[0]

    def movie_locks():
        return conn.execute("""select mode from pg_locks where pid = %s and locktype = 'relation'
                               and relation = 'reelscore.movies'::regclass order by mode""", (pid,)).fetchall()

    def row_locked(other, movie_id):   # FOR UPDATE NOWAIT fails on a row another transaction locked
        try:
            with other.transaction():
                other.execute("select 1 from reelscore.movies where id = %s for update nowait", (movie_id,))
            return False
        except psycopg.errors.LockNotAvailable:
            return True

    insert = ("insert into reelscore.metric_values (movie_id, metric_id, raw_value) "
              "select unnest(%s::bigint[]), %s, 5")
    with psycopg.connect(db_url, autocommit=True) as other:
        with conn.transaction():
            conn.execute("set local reelscore.reference_table_lock_movies = 3")
            conn.execute(insert, (ids[:3], mid))
            assert ("ShareLock",) in movie_locks()
            assert not row_locked(other, ids[0])
            other.execute("set lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute("delete from reelscore.movies where id = %s", (ids[0],))
            other.execute("reset lock_timeout")
            with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
                conn.execute(insert, ([ids[3], -7, -8], mid))
            raise psycopg.Rollback()
        with conn.transaction():                 # below the threshold: the rows
            conn.execute(insert, (ids[:2], mid))
            assert ("ShareLock",) not in movie_locks()
            assert row_locked(other, ids[0])
            raise psycopg.Rollback()
        other.execute("begin")
        other.execute("update reelscore.movies set title = title where id = %s", (ids[3],))
        with conn.transaction():                 # another session writes movies: no wait, row locks
            conn.execute("set local reelscore.reference_table_lock_movies = 3")
            conn.execute(insert, (ids[:3], mid))
            assert ("ShareLock",) not in movie_locks()
            raise psycopg.Rollback()
        other.execute("rollback")


def test_first_load_builds_the_value_index_after_the_rows(conn, db_url, tmp_path):
    """A large batch into an empty metric_values (the threshold lowered here) drops the
    secondary indexes and builds them after its rows: same definitions, a new index, and
    queries through it find the loaded values; the history's indexes too when it is empty. A batch that fails that first attempt (a
    duplicate) gets its indexes back from the savepoint and is merged with them; while
    another session uses the table, the load keeps the indexes instead of waiting."""
    def value_indexes():
        return dict(conn.execute("""select pg_get_indexdef(indexrelid), indexrelid::int from pg_index
                                    where indrelid = 'reelscore.metric_values'::regclass and indisvalid""").fetchall())

    ids = new_movies(conn, 3)
    conn.execute("truncate reelscore.metric_values")
    conn.execute("set reelscore.first_load_index_rebuild_rows = 2")
    before = value_indexes()
    lines = [f"{m},{code},{v}" for m in ids for code, v in (("imdb_rating", 5 + m % 3), ("metacritic_score", 60))]
    s = load_file(conn, write(tmp_path, "first.csv", "movie_id,metric_code,raw_value\n" + "\n".join(lines) + "\n"))
    after = value_indexes()
    assert (s.inserted, s.rejected) == (6, 0)
    assert set(after) == set(before) and len(after) >= 2
    rebuilt = {d for d in after if after[d] != before[d]}
    assert rebuilt and not any(d.startswith("CREATE UNIQUE") for d in rebuilt)   # the primary key stays
    conn.execute("set enable_seqscan = off")
    found = conn.execute("""select count(*) from reelscore.metric_values v join reelscore.metric_definitions d
                            on d.id = v.metric_id where d.code = 'metacritic_score' and v.raw_value = 60""").fetchone()[0]
    conn.execute("reset enable_seqscan")
    assert found == 3
    assert len(history_of(conn, ids)) == 6

    # the history is not empty: its indexes stayed. Empty too, its two indexes are built after the rows.
    def history_indexes():
        return dict(conn.execute("""select pg_get_indexdef(indexrelid), indexrelid::int from pg_index
                                    where indrelid = 'reelscore.metric_timeseries'::regclass""").fetchall())
    conn.execute("truncate reelscore.metric_values")
    conn.execute("truncate reelscore.metric_timeseries")
    before, h_before = value_indexes(), history_indexes()
    s = load_file(conn, write(tmp_path, "first-all.csv", "movie_id,metric_code,raw_value\n" + "\n".join(lines) + "\n"))
    assert (s.inserted, s.rejected) == (6, 0)
    h_after = history_indexes()
    assert set(h_after) == set(h_before) and len(h_after) == 2
    assert all(h_after[d] != h_before[d] for d in h_after)       # both built anew
    assert all(value_indexes()[d] != before[d] for d in before if not d.startswith("CREATE UNIQUE"))
    chunks, chunk_indexes = conn.execute("""select count(distinct c), count(i.indexrelid) from show_chunks('reelscore.metric_timeseries') c
                                            left join pg_index i on i.indrelid = c""").fetchone()
    assert chunks >= 1 and chunk_indexes == 2 * chunks     # every chunk has both, valid
    conn.execute("set enable_seqscan = off")
    assert len(history_of(conn, ids)) == 6
    conn.execute("reset enable_seqscan")

    conn.execute("truncate reelscore.metric_values")
    before = value_indexes()
    s = load_file(conn, write(tmp_path, "first-dup.csv", "movie_id,metric_code,raw_value\n" + "\n".join(lines)
                              + f"\n{ids[0]},imdb_rating,9\n"))
    assert (s.inserted, s.rejected) == (6, 1)
    assert value_indexes() == before
    assert values_of(conn, ids)[(ids[0], "imdb_rating")] == 5 + ids[0] % 3

    conn.execute("truncate reelscore.metric_values")
    before = value_indexes()
    with psycopg.connect(db_url) as reader:   # an open transaction that has read the table
        reader.execute("select count(*) from reelscore.metric_values")
        s = load_file(conn, write(tmp_path, "first-busy.csv", "movie_id,metric_code,raw_value\n" + "\n".join(lines) + "\n"))
    conn.execute("reset reelscore.first_load_index_rebuild_rows")
    assert (s.inserted, s.rejected) == (6, 0)
    assert value_indexes() == before


def test_roles_write_loads_read_cannot(conn, role_conn, tmp_path):
    (m,) = new_movies(conn, 1)
    writer = role_conn("write")
    p = write(tmp_path, "w.csv", f"{m},imdb_rating,3.5\n{m},bogus,1\n")
    s = load_file(writer, p)
    assert (s.inserted, s.rejected) == (1, 1)
    assert writer.execute("select reelscore.upsert_metric(%s, 'metacritic_score', 40)", (m,)).fetchone()[0] == "inserted"
    assert writer.execute("select count(*) from reelscore.ingest_omdb(%s)", (json.dumps(
        {"imdbID": "tt0000042", "Title": "Role Test", "imdbRating": "5.5", "Response": "True"}),)).fetchone()[0] == 1
    reader = role_conn("read")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        reader.execute("select reelscore.upsert_metric(%s, 'imdb_rating', 1)", (m,))
    assert reader.execute("select count(*) from reelscore.metric_values where movie_id = %s", (m,)).fetchone()[0] == 2


# ---------------------------------------------------------------------------------------
TMDB = {"id": 603, "imdb_id": "tt0133093", "title": "The Matrix", "release_date": "1999-03-30",
        "genres": [{"id": 28, "name": "Action"}, {"id": 878, "name": "Science Fiction"}],
        "vote_average": 8.2, "vote_count": 24000, "budget": 63000000, "revenue": 0, "popularity": 77.3}
OMDB = {"Title": "The Matrix", "Year": "1999", "Released": "31 Mar 1999", "Genre": "Action, Sci-Fi",
        "Director": "Lana Wachowski, Lilly Wachowski", "imdbRating": "8.7", "imdbVotes": "2,087,000",
        "imdbID": "tt0133093", "Metascore": "N/A",
        "Ratings": [{"Source": "Internet Movie Database", "Value": "8.7/10"},
                    {"Source": "Rotten Tomatoes", "Value": "83%"}, {"Source": "Metacritic", "Value": "73/100"}],
        "BoxOffice": "$172,076,928", "Response": "True"}


def test_tmdb_and_omdb_adapters(conn):
    parsed = dict(conn.execute("select * from reelscore.tmdb_metrics(%s)", (json.dumps(TMDB),)).fetchall())
    assert parsed == {"tmdb_rating": 8.2, "tmdb_vote_count": 24000.0, "tmdb_budget": 63e6, "tmdb_popularity": 77.3}
    parsed = dict(conn.execute("select * from reelscore.omdb_metrics(%s)", (json.dumps(OMDB),)).fetchall())
    assert parsed == {"imdb_rating": 8.7, "imdb_vote_count": 2087000.0, "rt_tomatometer": 83.0,
                      "metacritic_score": 73.0, "omdb_box_office": 172076928.0}
    rows = conn.execute("select * from reelscore.ingest_tmdb(%s)", (json.dumps(TMDB),)).fetchall()
    assert {r[3] for r in rows} == {"inserted"} and len(rows) == 4
    rows2 = conn.execute("select * from reelscore.ingest_omdb(%s)", (json.dumps(OMDB),)).fetchall()
    assert {r[0] for r in rows2} == {rows[0][0]}     # the same film, found by its IMDb id
    movie = conn.execute("select title, release_date::text, genres, tmdb_id, imdb_id, director from reelscore.movies "
                         "where id = %s", (rows[0][0],)).fetchone()
    assert movie == ("The Matrix", "1999-03-30", ["Action", "Science Fiction"], 603, "tt0133093",
                     "Lana Wachowski, Lilly Wachowski")
    bad = dict(OMDB, imdbID="tt0000077", BoxOffice="$12x", imdbRating="11")
    status = {r[1]: r[3] for r in conn.execute("select * from reelscore.ingest_omdb(%s)", (json.dumps(bad),))}
    assert status["omdb_box_office"].startswith("rejected: not a number")
    assert status["imdb_rating"].startswith("rejected: value 11")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("select * from reelscore.ingest_omdb('{\"Response\": \"False\", \"Error\": \"Movie not found!\"}')")
    assert conn.execute("select reelscore.parse_display_number('$1,234.50'), reelscore.parse_display_number('N/A'), "
                        "reelscore.parse_display_number('8.1/10')").fetchone() == (1234.5, None, 8.1)


def test_legacy_migration(conn):
    (existing,) = new_movies(conn, 1)
    conn.execute("update reelscore.movies set tmdb_id = 424242 where id = %s", (existing,))
    conn.execute("""insert into reelscore.legacy_movies (id, title, release_date, tmdb_id, imdb_id, external_data) values
      (901, 'Legacy One', '2001-01-01', 424242, null,
       '{"tmdb": {"vote_average": 7.0, "vote_count": 50, "popularity": 3.5, "budget": 0},
         "financials": {"budget": 1000000, "revenue": 0, "box_office": "$2,500"}}'),
      (902, 'Legacy Two', '2002-02-02', null, 'tt0902902',
       '{"omdb": {"imdbRating": "6.4", "imdbVotes": "1,234", "BoxOffice": "N/A"}, "financials": {"revenue": "$3,000,000"}}'),
      (903, 'Legacy Bad', null, null, null, '{"omdb": {"imdbRating": "12"}}')""")
    conn.execute("""insert into reelscore.legacy_festival_results (legacy_movie_id, festival, ceremony_year, category, won) values
      (902, 'oscars', 2003, 'Best Picture', false), (902, 'oscars', 2003, 'Best Director', true),
      (902, 'venice', 2002, 'Golden Lion', true), (901, 'cannes', 2001, 'Competition', false)""")
    r = conn.execute("select * from reelscore.migrate_legacy()").fetchone()
    assert r[:2] == (1, 2)                       # matched by tmdb_id, two created
    assert (r[3], r[6]) == (13, 1)
    ids = dict(conn.execute("select id, migrated_movie_id from reelscore.legacy_movies").fetchall())
    assert ids[901] == existing
    got = values_of(conn, ids.values())
    assert got == {
        (existing, "tmdb_rating"): 7.0, (existing, "tmdb_vote_count"): 50.0, (existing, "tmdb_popularity"): 3.5,
        (existing, "tmdb_budget"): 1e6, (existing, "omdb_box_office"): 2500.0, (existing, "cannes_selection"): 1.0,
        (ids[902], "imdb_rating"): 6.4, (ids[902], "imdb_vote_count"): 1234.0, (ids[902], "tmdb_revenue"): 3e6,
        (ids[902], "oscar_nominations"): 2.0, (ids[902], "oscar_wins"): 1.0,
        (ids[902], "venice_golden_lion"): 1.0, (ids[902], "venice_selection"): 1.0,
    }
    again = conn.execute("select * from reelscore.migrate_legacy()").fetchone()
    assert again[:2] == (0, 0) and (again[3], again[4], again[5]) == (0, 0, 13)


# ---------------------------------------------------------------------------------------
def test_demo_data_vega_and_facts(db_url):
    films = json.loads(demo.VEGA_MOVIES.read_text())
    with psycopg.connect(db_url) as c:
        n, inserted, summary = demo.load_vega(c)
        assert n == sum(1 for f in films if f["Title"] is not None)
        assert 0 < inserted <= n                 # a film loaded by an earlier test may already be there
        assert summary.rejected == 0
        # independent expectation: every non-null, non-zero-money field of the file
        expected = sum(1 for f in films if f["Title"] is not None for k in demo.VEGA_METRICS
                       if f.get(k) is not None and not (k in demo.VEGA_ZERO_IS_MISSING and f[k] == 0))
        assert summary.values == expected and summary.inserted >= expected - 10
        rec = next(f for f in films if f["Title"] == "Titanic")
        got = dict(c.execute("""select d.code, v.raw_value from reelscore.metric_values v
                                join reelscore.metric_definitions d on d.id = v.metric_id
                                join reelscore.movies m on m.id = v.movie_id
                                where m.title = 'Titanic' and m.release_year = 1997""").fetchall())
        assert got["imdb_rating"] == rec["IMDB Rating"] and got["bom_worldwide"] == rec["Worldwide Gross"]
        assert got["bom_domestic"] == rec["US Gross"]
        old = c.execute("select release_year from reelscore.movies where title = 'Intolerance'").fetchone()[0]
        assert old == 1916                       # 'Sep 05 2016' in the file
        facts, missing = demo.load_facts(c)
        assert missing == [] and facts.rejected == 0 and facts.inserted > 400
        afi = c.execute("""select v.raw_value from reelscore.metric_values v join reelscore.movies m on m.id = v.movie_id
                           join reelscore.metric_definitions d on d.id = v.metric_id
                           where m.title = 'Ben-Hur' and m.release_year = 1959 and d.code = 'afi_top_100'""").fetchone()
        assert afi == (100.0,)
        again = demo.load_vega(c)
        assert again[1] == 0 and again[2].inserted == 0 and again[2].unchanged == expected


def test_load_adapter_documents_from_the_cli(conn, tmp_path, monkeypatch, db_url, capsys):
    docs = [dict(TMDB, id=700001, imdb_id="tt7000001", title="Adapter One"),
            "not json", {"title": "no id"},
            dict(TMDB, id=700002, imdb_id="tt7000002", title="Adapter Two", vote_average=11.5)]
    path = write(tmp_path, "tmdb.jsonl", "\n".join(d if isinstance(d, str) else json.dumps(d) for d in docs) + "\n")
    monkeypatch.setenv("REELSCORE_DATABASE_URL", db_url)
    from reelscore.cli import main
    assert main(["load", str(path), "--adapter", "tmdb", "--no-progress"]) == 1
    out = capsys.readouterr().out
    # film one: 4 metrics (revenue 0 is missing); film two: 3 (its rating refused)
    assert "7 inserted" in out and "3 rejected" in out
    reasons = [r[0] for r in conn.execute("""select reason from reelscore.load_rejections
        where source_name = 'tmdb.jsonl' order by line_no""").fetchall()]
    assert "invalid JSON" in reasons[0] and "not a TMDb movie-details document" in reasons[1]
    assert reasons[2].startswith("tmdb_rating: value 11.5")
    assert conn.execute("select count(*) from reelscore.movies where tmdb_id in (700001, 700002)").fetchone()[0] == 2
