"""Crashes: SIGKILL every process of a PostgreSQL server in the middle of a bulk load, a
score refresh and a profile edit; after restart every committed batch is there, nothing
half-done is, and a rerun of the load finishes the job.

These tests run a throwaway cluster of their own (scripts/cluster.sh with REELSCORE_PGRUN and
another port), so killing it disturbs no other test."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ROOT, migrate

pytestmark = pytest.mark.crash


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix="rs_crash_")) / "pg"
        self.port = _free_port()
        self.env = dict(os.environ, REELSCORE_PGRUN=str(self.run_dir), REELSCORE_PGPORT=str(self.port))
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/reelscore"

    def cluster(self, action: str) -> None:
        subprocess.run(["bash", str(ROOT / "scripts" / "cluster.sh"), action], env=self.env, check=True,
                       capture_output=True, text=True)

    def kill(self) -> None:
        """SIGKILL the postmaster and all its children at once: a power cut, as far as PG knows."""
        pid = int((self.run_dir / "data" / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        for p in [pid, *map(int, children)]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.time() + 20
        while time.time() < deadline:
            alive = [p for p in [pid, *map(int, children)] if os.path.exists(f"/proc/{p}")
                     and "zombie" not in open(f"/proc/{p}/status").read().lower()]
            if not alive:
                return
            time.sleep(0.1)
        raise AssertionError("server processes survived SIGKILL")


@pytest.fixture(scope="module")
def crash_cluster():
    c = Cluster()
    c.cluster("start")
    migrate(c.url)
    yield c
    subprocess.run(["bash", str(ROOT / "scripts" / "cluster.sh"), "stop"], env=c.env, capture_output=True)
    shutil.rmtree(c.run_dir.parent, ignore_errors=True)


def _wait_for(predicate, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _query(url: str, q: str, args=()):
    with psycopg.connect(url, autocommit=True) as c:
        cur = c.execute(q, args)
        return cur.fetchall() if cur.description else []


def test_kill_during_bulk_load_keeps_committed_batches_and_rerun_finishes(crash_cluster, tmp_path):
    url = crash_cluster.url
    n_movies, batch = 8_000, 4_000
    _query(url, "insert into reelscore.movies (id, title) select g, 'Crash film ' || g from generate_series(1, %s) g",
           (n_movies,))
    path = tmp_path / "values.csv"
    with path.open("w") as f:  # 4 metrics x 8k movies = 32k values, 8 batches of 4k
        f.write("movie_id,metric_code,raw_value\n")
        for code, scale in (("imdb_rating", 10), ("metacritic_score", 100), ("rt_tomatometer", 100), ("tmdb_rating", 10)):
            for m in range(1, n_movies + 1):
                f.write(f"{m},{code},{(m * 7919) % (scale * 10) / 10}\n")
    total = 4 * n_movies
    cmd = [sys.executable, "-m", "reelscore.cli", "load", str(path), "--batch-rows", str(batch), "--no-progress"]
    # Scoring catches up at the next refresh (reelscore.defer_scoring): this test is about which
    # batches survive, not about how fast incremental rescoring is.
    env = dict(os.environ, REELSCORE_DATABASE_URL=url, PGOPTIONS="-c reelscore.defer_scoring=on")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _query(url, "select count(*) from reelscore.load_batches where status = 'done'")[0][0] >= 2,
              what="two committed batches")
    crash_cluster.kill()
    proc.wait(timeout=60)
    assert proc.returncode != 0  # the loader saw its server die
    crash_cluster.cluster("start")

    done = _query(url, "select id, inserted from reelscore.load_batches where status = 'done' order by id")
    assert len(done) >= 2
    present = _query(url, "select batch_id, count(*) from reelscore.metric_values group by batch_id order by 1")
    # every committed batch is there in full, nothing from a batch that did not commit
    assert dict(present) == {bid: ins for bid, ins in done}
    assert sum(ins for _, ins in done) < total
    # the history got exactly the committed values too
    hist = _query(url, "select count(*) from reelscore.metric_timeseries")[0][0]
    assert hist == sum(ins for _, ins in done)

    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert _query(url, "select count(*) from reelscore.metric_values")[0][0] == total
    want = sum(ins for _, ins in done)
    summary = _query(url, "select sum(inserted), sum(unchanged) from reelscore.load_batches where status = 'done' "
                          "and id > %s", (done[-1][0],))[0]
    assert summary == (total - want, want)


def test_kill_during_profile_edit_leaves_profile_and_history_as_before(crash_cluster):
    url = crash_cluster.url
    before = _query(url, """select p.current_version, p.rating_weight, (select count(*) from reelscore.weight_profile_history)
                            from reelscore.weight_profiles p where p.name = 'balanced'""")[0]
    _query(url, """select reelscore.save_profile('crash_test', '{"rating": 0.5, "award": 0.5}'::jsonb)""")
    saved = _query(url, "select current_version from reelscore.weight_profiles where name = 'crash_test'")[0][0]
    hist_before = _query(url, "select count(*) from reelscore.weight_profile_history")[0][0]
    editor = psycopg.connect(url)
    editor.execute("""select reelscore.save_profile('crash_test', '{"rating": 0.9, "award": 0.1}'::jsonb)""")
    # the edit is written but not committed when the server dies
    crash_cluster.kill()
    with pytest.raises(psycopg.OperationalError):
        editor.commit()
    crash_cluster.cluster("start")
    after = _query(url, """select current_version, rating_weight from reelscore.weight_profiles where name = 'crash_test'""")[0]
    assert after == (saved, 0.5)
    assert _query(url, "select count(*) from reelscore.weight_profile_history")[0][0] == hist_before
    assert _query(url, """select p.current_version, p.rating_weight, (select count(*) from reelscore.weight_profile_history)
                          from reelscore.weight_profiles p where p.name = 'balanced'""")[0][:2] == before[:2]


def test_kill_during_refresh_then_refresh_again_matches_fresh_scores(crash_cluster):
    url = crash_cluster.url
    _query(url, "select reelscore.refresh_scores(null)")
    killer_ready = threading.Event()

    def long_refresh():
        try:
            with psycopg.connect(url, autocommit=True) as c:
                killer_ready.set()
                for _ in range(50):
                    c.execute("select reelscore.refresh_features()")
                    c.execute("select reelscore.refresh_scores(null)")
        except psycopg.Error:
            pass

    t = threading.Thread(target=long_refresh)
    t.start()
    killer_ready.wait(10)
    _wait_for(lambda: any("refresh" in (q or "") for (q,) in _query(
        url, "select query from pg_stat_activity where state = 'active' and pid <> pg_backend_pid()")),
        timeout=30, what="a running refresh")
    crash_cluster.kill()
    t.join(60)
    crash_cluster.cluster("start")
    # precomputed scores are unlogged: the crash emptied them and the state saying they exist,
    # together; until the next refresh the readers compute fresh and every profile is due
    assert _query(url, "select count(*) from reelscore.movie_scores")[0][0] == 0
    assert _query(url, "select count(*) from reelscore.profile_score_state")[0][0] == 0
    assert all(due for (due,) in _query(url, "select needs_full_rescore from reelscore.score_staleness "
                                             "where active"))
    fresh_top = _query(url, "select movie_id, score from reelscore.top_movies('balanced', 20)")
    assert len(fresh_top) == 20
    movie_id = fresh_top[0][0]
    assert _query(url, "select source from reelscore.movie_score_detail(%s, 'balanced')", (movie_id,))[0][0] == "fresh"
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="no precomputed scores"):
        _query(url, "select * from reelscore.search_movies('{}', 'balanced', 5)")
    _query(url, "select reelscore.refresh_scores(null)")
    assert _query(url, "select movie_id, score from reelscore.top_movies('balanced', 20)") == fresh_top
    assert [r[0] for r in _query(url, "select movie_id from reelscore.search_movies('{}', 'balanced', 5)")] == \
        [m for m, _ in fresh_top[:5]]
    assert _query(url, "select source from reelscore.movie_score_detail(%s, 'balanced')", (movie_id,))[0][0] == \
        "precomputed"
    # precomputed scores equal scores computed fresh from raw values, for a sample of movies
    rows = _query(url, """select s.movie_id, s.score, x.score
        from reelscore.movie_scores s join reelscore.weight_profiles p on p.id = s.profile_id
        cross join lateral reelscore.profile_weights_args(p.id) a
        cross join lateral reelscore.score_fresh(s.movie_id, a.category_weights, a.metric_weights, a.config) x
        where p.name = 'balanced' order by s.movie_id limit 300""")
    assert len(rows) == 300
    for movie_id, stored, fresh in rows:
        assert stored == pytest.approx(fresh, abs=1e-6), movie_id  # pgvector stores float32
