"""Property-based fuzzing of every text entry point: thousands of generated cases per run in
`make test`; `make fuzz` raises the count (REELSCORE_FUZZ_EXAMPLES, 100k by default there).
Properties: no server error, every rejection is a documented SQLSTATE with a message, nothing
is partially written."""
import math
import os

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("REELSCORE_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

HOSTILE = ["'", "''", "\"", ";", "--", "/*", "*/", "'; DROP TABLE reelscore.movies; --",
           "1' OR '1'='1", "pg_sleep(5)", "'); SELECT pg_sleep(5); --", "\\", "%s", "%(x)s", "$1", ":name",
           "x" * 10000, "ümlaut", "😀", "\u202e", "\t\n"]
codes = st.one_of(st.sampled_from(["imdb_rating", "oscar_wins", "afi_top_100", "venice_golden_lion",
                                   "bom_worldwide", "tmdb_trending_rank", "1001_movies"]),
                  st.sampled_from(HOSTILE), st.text(max_size=80).filter(lambda s: "\x00" not in s))
raws = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**12).map(float),
                 st.none())


@pytest.mark.fuzz
@FUZZ
@given(code=codes, raw=raws)
def test_normalize_value_never_fails_unexpectedly(conn, code, raw):
    try:
        got = conn.execute("select reelscore.normalize_value(%s, %s)", (code, raw)).fetchone()[0]
    except psycopg.Error as exc:
        assert exc.diag.sqlstate in {"22023", "22003", "55000"}, (code, raw, exc.diag.sqlstate, str(exc))
        assert exc.diag.message_primary
        return
    if raw is None:
        assert got is None
    else:
        assert got is not None and 0.0 <= got <= 1.0 and not math.isnan(got)


def test_nul_bytes_and_bad_encoding_are_refused_before_sql(conn):
    with pytest.raises(psycopg.DataError):
        conn.execute("select reelscore.normalize_value(%s, 1)", ("imdb\x00rating",))
    with pytest.raises(psycopg.Error) as info:
        conn.execute(b"select reelscore.normalize_value('\xff\xfe', 1)")
    assert info.value.diag.sqlstate == "22021"  # character_not_in_repertoire: invalid UTF-8
    assert conn.execute("select count(*) from reelscore.metric_definitions").fetchone()[0] == 29


BULK_CASES = int(os.environ.get("REELSCORE_FUZZ_BULK", str(EXAMPLES * 10)))


@pytest.mark.fuzz
def test_normalize_value_bulk_fuzz(conn):
    """Many random cases per round trip: a PL/pgSQL loop in pg_temp calls normalize_value for each
    case and tallies the outcome, so `make fuzz` reaches 100k+ cases in seconds."""
    import random
    import string
    rng = random.Random(os.environ.get("REELSCORE_FUZZ_SEED", "reelscore"))
    real = [r[0] for r in conn.execute("select code from reelscore.metric_definitions").fetchall()]
    conn.execute("""create or replace function pg_temp.fuzz_normalize(p_codes text[], p_raws float8[])
        returns table (outcome text, n bigint, min_v float8, max_v float8) language plpgsql as $$
        declare i int; v float8; st text; tally jsonb := '{}'; lo float8; hi float8;
        begin
          for i in 1 .. cardinality(p_codes) loop
            begin
              v := reelscore.normalize_value(p_codes[i], p_raws[i]);
              st := case when v is null then 'null' when v = 'NaN'::float8 or v < 0 or v > 1 then 'OUT_OF_RANGE' else 'ok' end;
              if st = 'ok' then lo := least(lo, v); hi := greatest(hi, v); end if;
            exception when others then
              st := sqlstate;
            end;
            tally := jsonb_set(tally, array[st], to_jsonb(coalesce((tally ->> st)::bigint, 0) + 1));
          end loop;
          return query select key, value::text::bigint, lo, hi from jsonb_each(tally);
        end $$""")
    totals: dict[str, int] = {}
    done = 0
    while done < BULK_CASES:
        size = min(5000, BULK_CASES - done)
        codes, raws = [], []
        for _ in range(size):
            r = rng.random()
            codes.append(rng.choice(real) if r < 0.7 else rng.choice(HOSTILE) if r < 0.85 else
                         "".join(rng.choice(string.printable[:-5]) for _ in range(rng.randint(0, 60))))
            r = rng.random()
            raws.append(None if r < 0.02 else float("nan") if r < 0.04 else rng.choice([float("inf"), float("-inf")])
                        if r < 0.06 else float(rng.randint(-5, 400)) if r < 0.5 else rng.uniform(-1e3, 1e12)
                        if r < 0.8 else 10 ** rng.uniform(-300, 300))
        for outcome, n, lo, hi in conn.execute("select * from pg_temp.fuzz_normalize(%s, %s)", (codes, raws)).fetchall():
            totals[outcome] = totals.get(outcome, 0) + n
            if outcome == "ok":
                assert 0.0 <= lo <= hi <= 1.0
        done += size
    print(f"normalize_value bulk fuzz: {done} cases: {totals}")
    assert sum(totals.values()) == BULK_CASES
    assert set(totals) <= {"ok", "null", "22023", "22003"}, totals
    assert totals.get("ok", 0) > BULK_CASES // 10


words = st.sampled_from(["critically", "acclaimed", "sci-fi", "hidden", "gems", "from", "the", "90s", "since",
                         "2005", "popular", "comedies", "oscar", "winners", "with", "low", "imdb", "ratings",
                         "bombed", "at", "box", "office", "horror", "before", "1970", "not", "and", "or"])
queries = st.one_of(st.lists(words, max_size=12).map(" ".join),
                    st.text(max_size=200).filter(lambda s: "\x00" not in s),
                    st.sampled_from(HOSTILE))


@pytest.mark.fuzz
@settings(max_examples=max(100, EXAMPLES // 5), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=queries)
def test_parse_query_output_is_always_a_valid_search(conn, text):
    """Whatever the text, parse_query answers, and search_movies accepts what it answers."""
    try:
        parsed = conn.execute("select reelscore.parse_query(%s)", (text,)).fetchone()[0]
    except psycopg.Error as exc:  # the documented length limit is the only refusal
        assert exc.diag.sqlstate == "22023" and len(text) > 1000 and "at most" in exc.diag.message_primary
        return
    assert isinstance(parsed, dict) and "unparsed" in parsed
    try:
        conn.execute("select count(*) from reelscore.search_movies(%s::jsonb, 'balanced', 5)", (psycopg.types.json.Jsonb(parsed),)).fetchone()
    except psycopg.Error as exc:
        # an empty catalogue has no precomputed scores yet: the only acceptable refusal
        assert exc.diag.sqlstate == "55000", (text, parsed, str(exc))
