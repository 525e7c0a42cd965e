"""MovieLens 100k: fetch at set-up time, read, and load into reelscore.

The data set ships inside the `recbole==1.2.1` wheel (`recbole/dataset_example/ml-100k/`).
Its licence forbids redistribution, so it is downloaded into `data/cache/` (gitignored)
with `pip download --no-deps` and read straight from the wheel (a zip); recbole itself is
never installed.

`load(conn)` is idempotent and writes, in one transaction:
- the 943 users with their demographics (`users.movielens_id`, username `movielens_<id>`);
- the 1,682 films: matched to films already in `reelscore.movies` (the vega films) by
  normalized title and release year (exact year first, then +-1 year when unambiguous),
  setting `movies.movielens_id` and adding the MovieLens genres; unmatched films are
  inserted as new movies (release date = 1 January of the MovieLens year, the only
  date the wheel carries);
- the 100,000 ratings as `metric_feedback` rows (`user_rating`, `created_at` from the
  Unix timestamp); a rating already present (same user, film and time) is not repeated.
"""
from __future__ import annotations

import re
import subprocess
import sys
import unicodedata
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from reelscore.config import ROOT

CACHE_DIR = ROOT / "data" / "cache"
WHEEL_NAME = "recbole-1.2.1-py3-none-any.whl"
MEMBER = "recbole/dataset_example/ml-100k/ml-100k.{}"
GENRES = ("Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
          "Thriller", "War", "Western")
_ARTICLES = {"the", "a", "an", "il", "la", "le", "les", "l'", "das", "der", "die", "el", "lo"}


@dataclass
class MovieLens:
    """The three files of MovieLens 100k, parsed."""
    users: list[dict] = field(default_factory=list)     # movielens_id, age, gender, occupation, zip_code
    items: list[dict] = field(default_factory=list)     # movielens_id, title, year, genres
    ratings: list[tuple[int, int, float, int]] = field(default_factory=list)  # user, item, rating, unix ts


def fetch(cache_dir: Path = CACHE_DIR) -> Path:
    """Path of the recbole wheel in the cache, downloading it (about 2 MB) when absent."""
    wheel = cache_dir / WHEEL_NAME
    if wheel.exists():
        return wheel
    cache_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                           "recbole==1.2.1", "-d", str(cache_dir)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0 or not wheel.exists():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"could not download MovieLens 100k (recbole==1.2.1 wheel): {last}")
    return wheel


def _fix_text(text: str) -> str:
    """Undo the double UTF-8 encoding some titles carry ('MisÃ©rables' -> 'Misérables')."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _rows(zf: zipfile.ZipFile, kind: str) -> list[list[str]]:
    lines = zf.read(MEMBER.format(kind)).decode("utf-8").splitlines()
    return [line.split("\t") for line in lines[1:] if line.strip()]


def read(wheel: Path | None = None) -> MovieLens:
    """Parse users, items and ratings from the wheel (fetching it when needed)."""
    wheel = wheel or fetch()
    data = MovieLens()
    with zipfile.ZipFile(wheel) as zf:
        for uid, age, gender, occupation, zip_code in _rows(zf, "user"):
            data.users.append({"movielens_id": int(uid), "age": int(age), "gender": gender,
                               "occupation": occupation, "zip_code": zip_code})
        for row in _rows(zf, "item"):
            iid, title = int(row[0]), _fix_text(row[1])
            year = int(row[2]) if len(row) > 2 and row[2].isdigit() else None
            if year is None:  # one entry keeps its year inside the title: "... (1995)"
                m = re.search(r"\((\d{4})\)\s*$", title)
                if m:
                    year, title = int(m.group(1)), title[:m.start()].strip()
            genres = [g for g in (row[3].split() if len(row) > 3 else []) if g in GENRES]
            data.items.append({"movielens_id": iid, "title": title, "year": year, "genres": genres})
        for uid, iid, rating, ts in _rows(zf, "inter"):
            data.ratings.append((int(uid), int(iid), float(rating), int(float(ts))))
    return data


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def normalize_title(title: str) -> str:
    """Comparable form of a title: no accents, case, punctuation or leading/trailing article,
    '&' read as 'and'. 'Usual Suspects, The' and 'The Usual Suspects' agree."""
    t = _strip_accents(str(title)).lower().replace("&", " and ")
    m = re.match(r"^(.*),\s*(the|a|an|il|la|le|les|l'|das|der|die|el|lo)$", t.strip())
    if m:
        t = m.group(1)
    t = re.sub(r"[^a-z0-9]+", " ", t).strip()
    words = t.split()
    if len(words) > 1 and words[0] in _ARTICLES:
        words = words[1:]
    return " ".join(words)


def title_variants(title: str) -> list[str]:
    """The normalized title and its parenthesized alternative ('Seven (Se7en)' -> both)."""
    out = []
    main = re.sub(r"\s*\([^)]*\)", "", title).strip()
    for cand in [main, *re.findall(r"\(([^)]*)\)", title), title]:
        n = normalize_title(cand)
        if n and n not in out:
            out.append(n)
    return out


def display_title(title: str) -> str:
    """'Usual Suspects, The (X)' -> 'The Usual Suspects (X)': the article back in front."""
    m = re.match(r"^(.*?),\s*(The|A|An)(\s*\(.*\))?$", title)
    if m:
        return f"{m.group(2)} {m.group(1)}{m.group(3) or ''}"
    return title


def match_movies(items: list[dict], movies: list[tuple[int, str, int | None]]) -> dict[int, int]:
    """MovieLens id -> reelscore movie id, by normalized title and year (exact year first,
    then +-1 year when exactly one candidate). Each movie is matched at most once."""
    index: dict[tuple[str, int | None], list[int]] = {}
    for mid, title, year in movies:
        index.setdefault((normalize_title(title), year), []).append(mid)
    taken: set[int] = set()
    out: dict[int, int] = {}
    for pass_years in ((0,), (-1, 1)):
        for item in items:
            if item["movielens_id"] in out or item["year"] is None:
                continue
            cands: list[int] = []
            for name in title_variants(item["title"]):
                for dy in pass_years:
                    cands += [m for m in index.get((name, item["year"] + dy), []) if m not in taken]
            cands = sorted(set(cands))
            if len(cands) == 1:
                out[item["movielens_id"]] = cands[0]
                taken.add(cands[0])
    return out


def load(conn, data: MovieLens | None = None) -> dict:
    """Load users, films and ratings (see the module docstring); returns counts.
    Runs in one transaction on `conn` (committed at the end)."""
    data = data or read()
    report: dict = {}
    with conn.transaction(), conn.cursor() as cur:
        # Users
        user_ids: dict[int, int] = {}
        for u in data.users:
            cur.execute(
                """INSERT INTO reelscore.users (username, age, gender, occupation, zip_code, movielens_id)
                   VALUES (%s, %s, %s, %s, %s, %s)
                   ON CONFLICT (movielens_id) DO UPDATE
                     SET age = EXCLUDED.age, gender = EXCLUDED.gender,
                         occupation = EXCLUDED.occupation, zip_code = EXCLUDED.zip_code
                   RETURNING id""",
                (f"movielens_{u['movielens_id']}", u["age"], u["gender"], u["occupation"],
                 u["zip_code"], u["movielens_id"]))
            user_ids[u["movielens_id"]] = cur.fetchone()[0]
        report["users"] = len(user_ids)

        # Films: already linked, then matched to existing films, then new rows
        cur.execute("SELECT movielens_id, id FROM reelscore.movies WHERE movielens_id IS NOT NULL")
        movie_ids: dict[int, int] = dict(cur.fetchall())
        pending = [i for i in data.items if i["movielens_id"] not in movie_ids]
        cur.execute("SELECT id, title, release_year FROM reelscore.movies WHERE movielens_id IS NULL")
        matched = match_movies(pending, cur.fetchall())
        for ml_id, mid in matched.items():
            item = next(i for i in pending if i["movielens_id"] == ml_id)
            cur.execute(
                """UPDATE reelscore.movies
                      SET movielens_id = %s,
                          genres = ARRAY(SELECT DISTINCT g FROM unnest(genres || %s::text[]) g ORDER BY g),
                          updated_at = now()
                    WHERE id = %s""", (ml_id, item["genres"], mid))
            movie_ids[ml_id] = mid
        inserted = 0
        for item in pending:
            if item["movielens_id"] in movie_ids:
                continue
            cur.execute(
                """INSERT INTO reelscore.movies (title, release_date, genres, movielens_id)
                   VALUES (%s, make_date(%s, 1, 1), %s, %s) RETURNING id""",
                (display_title(item["title"])[:500], item["year"], item["genres"], item["movielens_id"]))
            movie_ids[item["movielens_id"]] = cur.fetchone()[0]
            inserted += 1
        report["films"] = len(data.items)
        report["films_matched_now"] = len(matched)
        report["films_inserted_now"] = inserted
        cur.execute("""SELECT count(*) FILTER (WHERE EXISTS (SELECT 1 FROM reelscore.metric_values v
                                                              WHERE v.movie_id = m.id)),
                              count(*)
                         FROM reelscore.movies m WHERE m.movielens_id IS NOT NULL""")
        report["films_with_metrics"], report["films_linked"] = cur.fetchone()

        # Ratings, through a temporary table
        cur.execute("""CREATE TEMP TABLE ml_ratings_in (user_id bigint, movie_id bigint,
                         rating double precision, created_at timestamptz) ON COMMIT DROP""")
        with cur.copy("COPY ml_ratings_in FROM STDIN") as cp:
            for uid, iid, rating, ts in data.ratings:
                if uid in user_ids and iid in movie_ids:
                    cp.write_row((user_ids[uid], movie_ids[iid], rating,
                                  datetime.fromtimestamp(ts, tz=UTC)))
        cur.execute("""INSERT INTO reelscore.metric_feedback (user_id, movie_id, user_rating, created_at)
                       SELECT r.user_id, r.movie_id, r.rating, r.created_at FROM ml_ratings_in r
                        WHERE NOT EXISTS (SELECT 1 FROM reelscore.metric_feedback f
                                           WHERE f.user_id = r.user_id AND f.movie_id = r.movie_id
                                             AND f.created_at = r.created_at)""")
        report["ratings_inserted_now"] = cur.rowcount
        cur.execute("""SELECT count(*) FROM reelscore.metric_feedback f
                         JOIN reelscore.users u ON u.id = f.user_id
                        WHERE u.movielens_id IS NOT NULL AND f.user_rating IS NOT NULL""")
        report["ratings"] = cur.fetchone()[0]
    return report
