"""The public SQL API is deliberate: the committed snapshot (signatures, volatility, security,
grants) and the generated docs must match the database. After a deliberate change, run
`make docs` and commit the regenerated files."""
from pathlib import Path

import pytest

from reelscore import docgen

ROOT = Path(__file__).resolve().parents[2]

# DESIGN.md's fixed public functions: name -> the types of the first arguments it must accept
# (argument names are the implementer's, DESIGN.md says).
CONTRACT = {
    "normalize_value": "metric_code text, raw double precision",
    "movie_score": "movie_id bigint, profile text",
    "explain_score": "movie_id bigint, profile text",
    "search_movies": "filters jsonb, profile text, lim integer, off integer",
    "similar_movies": "movie_id bigint, k integer",
    "refresh_scores": "profile text",
    "refresh_coverage": "",
    "trending": "metric_code text, since interval, k integer",
    "recommend": "user_id bigint, k integer",
    "parse_query": "",
}


def test_snapshot_matches_the_database(conn):
    committed = (ROOT / "tests" / "db" / "api_snapshot.txt").read_text().splitlines()
    assert docgen.snapshot_lines(conn) == committed, "API changed: run 'make docs' and commit the snapshot"


def test_generated_docs_are_current(conn):
    assert (ROOT / "docs" / "sql-api.md").read_text() == docgen.sql_api_markdown(conn)
    assert (ROOT / "docs" / "metrics.md").read_text() == docgen.metrics_markdown(conn)


@pytest.mark.parametrize("name,args", sorted(CONTRACT.items()))
def test_design_contract_functions_exist(conn, name, args):
    rows = conn.execute("""select array_to_string(p.proargtypes::regtype[]::text[], ', '), obj_description(p.oid, 'pg_proc')
        from pg_proc p where p.pronamespace = 'reelscore'::regnamespace and p.proname = %s""", (name,)).fetchall()
    assert rows, f"reelscore.{name} is missing"
    want = ", ".join(a.split(" ", 1)[1] for a in args.split(", ")) if args else ""
    assert any(types.startswith(want) for types, _ in rows), (name, rows)
    assert all(comment for _, comment in rows), f"reelscore.{name} has no COMMENT"
