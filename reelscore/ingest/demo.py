"""The real sample data of `reelscore demo-data`: vega-datasets' movies.json (3,201 films)
mapped to metrics, and the curated awards and canon facts of data/facts/.

Both go through the bulk path (reelscore.begin_load / finish_load), so they are validated,
quarantined and recorded like any other load. Loading twice changes nothing: films are
matched by title and release date, identical values stay unchanged.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import psycopg

from reelscore.config import ROOT
from reelscore.ingest.loader import LoadSummary, load_rows
from reelscore.ingest.parsing import copy_row

VEGA_MOVIES = ROOT / "node_modules" / "vega-datasets" / "data" / "movies.json"
FACTS_DIR = ROOT / "data" / "facts"

# vega field -> metric code. "US Gross" is the domestic (US and Canada) box office.
VEGA_METRICS = {
    "IMDB Rating": "imdb_rating",
    "IMDB Votes": "imdb_vote_count",
    "Rotten Tomatoes Rating": "rt_tomatometer",
    "Production Budget": "tmdb_budget",
    "US Gross": "bom_domestic",
    "Worldwide Gross": "bom_worldwide",
}
# Money fields hold 0 where the figure is unknown (e.g. no US release): missing, not zero.
VEGA_ZERO_IS_MISSING = {"Production Budget", "US Gross", "Worldwide Gross"}


def vega_release_date(text: str | None) -> date | None:
    """'Jun 12 1998' -> 1998-06-12. The data set parsed two-digit years into the future for
    old films ('Dec 31 2046' is a 1946 film): a year past 2011 (the set ends in 2010) is
    moved back a century."""
    if not text:
        return None
    d = datetime.strptime(text, "%b %d %Y").date()
    return d.replace(year=d.year - 100) if d.year > 2011 else d


def read_vega(path: Path = VEGA_MOVIES) -> list[dict]:
    """The films with a title, as dicts with title, release_date, genres, director, record."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run 'npm install' (make npm) first")
    films = []
    for i, rec in enumerate(json.loads(path.read_text(encoding="utf-8"))):
        if rec.get("Title") is None:
            continue
        films.append({
            "index": i,
            "title": str(rec["Title"]).strip(),
            "release_date": vega_release_date(rec.get("Release Date")),
            "genres": [rec["Major Genre"]] if rec.get("Major Genre") else [],
            "director": rec.get("Director"),
            "record": rec,
        })
    return films


def upsert_films(conn: psycopg.Connection, films: list[dict]) -> tuple[dict[tuple, int], int]:
    """Insert the films that are not there yet (same title and release date); returns
    ({(title, release_date): movie id}, number inserted). One transaction."""
    with conn.transaction():
        conn.execute("""CREATE TEMP TABLE rs_demo_films (title text, release_date date, genres text[], director text)
                        ON COMMIT DROP""")
        with conn.cursor().copy("COPY rs_demo_films (title, release_date, genres, director) FROM STDIN") as cp:
            for f in films:
                cp.write_row((f["title"], f["release_date"], f["genres"], f["director"]))
        inserted = conn.execute("""
            INSERT INTO reelscore.movies (title, release_date, genres, director)
            SELECT f.title, f.release_date, f.genres, f.director FROM rs_demo_films f
            WHERE NOT EXISTS (SELECT 1 FROM reelscore.movies m
                              WHERE m.title = f.title AND m.release_date IS NOT DISTINCT FROM f.release_date)""").rowcount
        rows = conn.execute("""
            SELECT DISTINCT ON (f.title, f.release_date) f.title, f.release_date, m.id
            FROM rs_demo_films f JOIN reelscore.movies m
              ON m.title = f.title AND m.release_date IS NOT DISTINCT FROM f.release_date
            ORDER BY f.title, f.release_date, m.id""").fetchall()
    return {(t, d): i for t, d, i in rows}, inserted


def vega_value_rows(films: list[dict], ids: dict[tuple, int]) -> Iterator[str]:
    """Staging rows (long form) for the films' metrics; line_no is the record's index + 1."""
    for f in films:
        movie_id = ids[(f["title"], f["release_date"])]
        rec = f["record"]
        for field, code in VEGA_METRICS.items():
            v = rec.get(field)
            if v is None or (field in VEGA_ZERO_IS_MISSING and v == 0):
                continue
            yield copy_row(f["index"] + 1, movie_id, None, code, repr(float(v)), None,
                           f"vega-datasets movies.json #{f['index']}", f"{f['title']}: {field} = {v}")


def load_vega(conn: psycopg.Connection, path: Path = VEGA_MOVIES) -> tuple[int, int, LoadSummary]:
    """(films in the file, films inserted now, summary of the values load)."""
    films = read_vega(path)
    ids, inserted = upsert_films(conn, films)
    summary = load_rows(conn, vega_value_rows(films, ids), source="vega-datasets/movies.json", fmt="vega")
    return len(films), inserted, summary


def read_facts(facts_dir: Path = FACTS_DIR) -> list[dict]:
    """Every row of every data/facts/*.csv (title, year, metric_code, raw_value, source)."""
    rows = []
    for path in sorted(facts_dir.glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            for n, rec in enumerate(csv.DictReader(fh), 2):
                rec["file"] = path.name
                rec["line"] = n
                rows.append(rec)
    return rows


def load_facts(conn: psycopg.Connection, facts_dir: Path = FACTS_DIR) -> tuple[LoadSummary, list[str]]:
    """Load the curated facts onto the films they name (by title and release year as the
    vega data has them). Returns the summary and the facts whose film is not loaded."""
    facts = read_facts(facts_dir)
    keys = sorted({(f["title"], int(f["year"])) for f in facts})
    found: dict = {}
    if keys:
        rows = conn.execute("""
            SELECT k.title, k.year, min(m.id)
            FROM unnest(%s::text[], %s::int[]) AS k(title, year)
            JOIN reelscore.movies m ON m.title = k.title AND m.release_year = k.year
            GROUP BY k.title, k.year""", ([k[0] for k in keys], [k[1] for k in keys])).fetchall()
        conn.commit()
        found = {(t, y): i for t, y, i in rows}
    missing = sorted({f"{f['title']} ({f['year']})" for f in facts if (f["title"], int(f["year"])) not in found})

    def gen() -> Iterator[str]:
        for f in facts:
            mid = found.get((f["title"], int(f["year"])))
            if mid is None:
                continue
            yield copy_row(f["line"], mid, None, f["metric_code"].strip(), repr(float(f["raw_value"])), None,
                           f"data/facts/{f['file']}: {f['source'].strip()}",
                           f"{f['file']} line {f['line']}: {f['title']} ({f['year']}) {f['metric_code']} = {f['raw_value']}")
    return load_rows(conn, gen(), source="data/facts", fmt="facts"), missing
