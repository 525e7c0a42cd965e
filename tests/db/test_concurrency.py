"""Concurrency: value writers, a bulk loader, profile and definition editors and refreshes run
at the same time (REELSCORE_CONCURRENCY_SECONDS, 15 s in `make test`; `make fuzz` sets
minutes). Deadlocks and serialization failures are retried by the caller, as an app would;
nothing else may fail. At the end no update is lost, and the precomputed scores and the coverage
snapshot equal a from-scratch recompute."""
import os
import random
import threading
import time

import psycopg
import pytest

SECONDS = float(os.environ.get("REELSCORE_CONCURRENCY_SECONDS", "15"))
N_MOVIES = 400
CODES = ["imdb_rating", "metacritic_score", "tmdb_popularity", "bom_worldwide", "oscar_wins"]
SCALE = {"imdb_rating": 10, "metacritic_score": 100, "tmdb_popularity": 500, "bom_worldwide": 2e9, "oscar_wins": 5}
RETRYABLE = ("40P01", "40001", "55P03")


class Worker(threading.Thread):
    def __init__(self, url, stop, name, step):
        super().__init__(name=name, daemon=True)
        self.url, self.stop, self.step = url, stop, step
        self.errors: list[str] = []
        self.retries = 0
        self.done = 0

    def run(self):
        rng = random.Random(self.name)
        with psycopg.connect(self.url) as conn:
            conn.execute(f"select set_config('reelscore.actor', '{self.name}', false)")
            conn.commit()
            while not self.stop.is_set():
                try:
                    self.step(conn, rng)
                    conn.commit()
                    self.done += 1
                except psycopg.Error as exc:
                    conn.rollback()
                    if exc.diag.sqlstate in RETRYABLE:
                        self.retries += 1
                        continue
                    self.errors.append(f"{exc.diag.sqlstate}: {exc}")
                    if len(self.errors) > 5:
                        return


@pytest.fixture(scope="module")
def loaded(db_url):
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("insert into reelscore.movies (id, title, genres) select g, 'Film ' || g, '{Drama}' "
                  "from generate_series(1, %s) g", (N_MOVIES,))
        c.execute("""insert into reelscore.metric_values (movie_id, metric_id, raw_value)
            select m, d.id, round((random() * 5)::numeric, 1) from generate_series(1, %s) m
            cross join reelscore.metric_definitions d where d.code = 'imdb_rating'""", (N_MOVIES,))
        c.execute("""select reelscore.save_profile('conc', '{"rating": 0.5, "financial": 0.2, "popularity": 0.3}'::jsonb)""")
        c.execute("select * from reelscore.refresh_scores(null)")
    return db_url


def test_mixed_workload_loses_nothing_and_matches_recompute(loaded):
    url = loaded
    stop = threading.Event()
    last_written: dict[tuple[int, str], float] = {}
    lock = threading.Lock()

    # Each (movie, metric) key has exactly one writing thread, so "the last value that thread
    # committed" is well defined; the threads still contend on movies' features, scores,
    # history and the refreshes.
    def owned_movie(rng, owner):
        return rng.randrange(owner + 1, N_MOVIES + 1, 4)

    def value_writer(conn, rng):
        owner = int(threading.current_thread().name[-1])
        batch = []
        for _ in range(rng.randint(1, 20)):
            code = rng.choice(CODES)
            raw = float(rng.randint(0, 10 * int(min(SCALE[code], 10**6)))) / 10
            raw = min(raw, SCALE[code]) if code != "oscar_wins" else float(rng.randint(0, 5))
            batch.append((owned_movie(rng, owner), code, raw))
        batch = sorted(dict(((m, c), r) for m, c, r in batch).items())
        batch = [(m, c, r) for (m, c), r in batch]  # a consistent lock order keeps writers from deadlocking each other
        for movie, code, raw in batch:
            conn.execute("select reelscore.upsert_metric(%s, %s, %s)", (movie, code, raw))
        conn.commit()
        with lock:  # recorded only after the commit succeeded
            for movie, code, raw in batch:
                last_written[(movie, code)] = raw

    def bulk_writer(conn, rng):
        bid = conn.execute("select reelscore.begin_load('conc', 'csv')").fetchone()[0]
        rows = sorted({(owned_movie(rng, 3), "rt_tomatometer"): None for _ in range(100)})
        with conn.cursor().copy("COPY pg_temp.rs_load_staging (line_no, movie_id, metric_code, raw_value) FROM STDIN") as cp:
            vals = {}
            for i, (movie, code) in enumerate(rows):
                raw = float(rng.randint(0, 100))
                vals[(movie, code)] = raw
                cp.write_row((i + 1, movie, code, raw))
        conn.execute("select * from reelscore.finish_load(%s)", (bid,))
        conn.commit()
        with lock:
            last_written.update(vals)

    def profile_editor(conn, rng):
        w = rng.uniform(0.1, 0.8)
        conn.execute("select reelscore.save_profile('conc', %s::jsonb)",
                     (f'{{"rating": {w}, "financial": {0.9 - w}, "popularity": 0.1}}',))

    def definition_editor(conn, rng):
        conn.execute("update reelscore.metric_definitions set normalization_params = %s::jsonb where code = 'tmdb_popularity'",
                     (f'{{"threshold": {rng.choice([500, 1000, 2000])}}}',))
        time.sleep(0.5)

    def refresher(conn, rng):
        conn.execute("select * from reelscore.refresh_scores(null)")
        conn.execute("select reelscore.refresh_coverage()")

    workers = [Worker(url, stop, f"writer{i}", value_writer) for i in range(3)] + [
        Worker(url, stop, "bulk", bulk_writer), Worker(url, stop, "profiles", profile_editor),
        Worker(url, stop, "definitions", definition_editor), Worker(url, stop, "refresher", refresher)]
    for w in workers:
        w.start()
    time.sleep(SECONDS)
    stop.set()
    for w in workers:
        w.join(120)
    errors = {w.name: w.errors for w in workers if w.errors}
    assert errors == {}
    assert all(w.done > 0 for w in workers), {w.name: w.done for w in workers}

    with psycopg.connect(url, autocommit=True) as c:
        # no lost update: the database holds the last committed value of every (movie, metric)
        got = dict(((m, code), raw) for m, code, raw in c.execute("""select v.movie_id, d.code, v.raw_value
            from reelscore.metric_values v join reelscore.metric_definitions d on d.id = v.metric_id""").fetchall())
        assert {k: got.get(k) for k in last_written} == last_written
        # precomputed scores equal a from-scratch recompute for every active profile
        c.execute("select * from reelscore.refresh_scores(null)")
        diff = c.execute("""select p.name, count(*), max(abs(s.score - x.score)), count(*) filter (where s.score is null), count(*) filter (where x.score is null) from reelscore.movie_scores s
            join reelscore.weight_profiles p on p.id = s.profile_id
            cross join lateral reelscore.profile_weights_args(p.id) a
            cross join lateral reelscore.score_fresh(s.movie_id, a.category_weights, a.metric_weights, a.config) x
            where p.name in ('balanced', 'conc', 'critics_choice')
              and (s.score is distinct from x.score and coalesce(abs(s.score - x.score), 1) > 1e-6)  -- vectors hold float32
            group by p.name""").fetchall()
        assert diff == []
        # coverage equals an independent count
        c.execute("select reelscore.refresh_coverage()")
        cov = dict(c.execute("""select metric_code, movies_with_data from reelscore.metric_coverage_stats
            where snapshot_id = (select max(snapshot_id) from reelscore.metric_coverage_stats)""").fetchall())
        counts = dict(c.execute("""select d.code, count(v.movie_id) from reelscore.metric_definitions d
            left join reelscore.metric_values v on v.metric_id = d.id group by d.code""").fetchall())
        assert {k: cov[k] for k in counts} == counts


def _precomputed_minus_fresh(c, movie_id, profile):
    """|precomputed - fresh| of one movie under one profile (fresh: from its raw values)."""
    return c.execute("""select abs(s.score - x.score) from reelscore.movie_scores s
        cross join lateral reelscore.profile_weights_args(s.profile_id) a
        cross join lateral reelscore.score_fresh(s.movie_id, a.category_weights, a.metric_weights, a.config) x
        where s.profile_id = reelscore.profile_id(%s) and s.movie_id = %s""", (profile, movie_id)).fetchone()[0]


@pytest.mark.parametrize("rebuild_features", [True, False], ids=["feature-rebuild", "profile-rescore"])
def test_refresh_waits_for_a_writer_in_flight_and_keeps_its_change(loaded, rebuild_features):
    """A full refresh that starts while a value change is uncommitted must not build from the
    snapshot without it: it waits for the writer, so the change's features and scores survive.
    (Without the locks the rebuild overwrote the movie's features from the older values, and the
    rescore dropped the partition the writer had scored the movie into.)"""
    url = loaded
    movie = 7
    with psycopg.connect(url) as writer, psycopg.connect(url, autocommit=True) as c:
        if rebuild_features:   # a definition change makes the next refresh rebuild every movie's features
            c.execute("update reelscore.metric_definitions set normalization_params = normalization_params "
                      "|| '{\"threshold\": 777}'::jsonb where code = 'tmdb_popularity'")
        old = c.execute("select raw_value from reelscore.metric_values v join reelscore.metric_definitions d "
                        "on d.id = v.metric_id where v.movie_id = %s and d.code = 'imdb_rating'", (movie,)).fetchone()[0]
        new = 9.9 if old < 5 else 0.1
        writer.execute("select reelscore.upsert_metric(%s, 'imdb_rating', %s)", (movie, new))   # not committed
        done = threading.Event()
        failure: list[BaseException] = []

        def refresh():
            try:
                with psycopg.connect(url, autocommit=True) as r:
                    r.execute("select * from reelscore.refresh_scores(%s)", (None if rebuild_features else "balanced",))
            except BaseException as exc:   # noqa: BLE001 (reported below)
                failure.append(exc)
            finally:
                done.set()

        t = threading.Thread(target=refresh, daemon=True)
        t.start()
        assert not done.wait(1.5), "the refresh did not wait for the uncommitted writer"
        writer.commit()
        assert done.wait(120) and not failure, failure
        t.join()
        assert c.execute("select count(*) from reelscore.movie_features where movie_id = %s and stale",
                         (movie,)).fetchone()[0] == 0
        for profile in ("balanced", "conc"):
            assert _precomputed_minus_fresh(c, movie, profile) < 1e-6, profile
