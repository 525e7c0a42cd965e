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
