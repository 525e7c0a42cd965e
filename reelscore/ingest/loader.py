"""The bulk loader: stream a file (or any iterable of rows) through COPY into the staging
table and merge it with one call of reelscore.finish_load, one transaction per batch.

    with connect() as conn:
        summary = load_file(conn, "values.csv")

A batch is the whole input unless batch_rows is given; a load killed halfway leaves the
database as before the batch (nothing is committed before finish_load returns).
"""
from __future__ import annotations

import io
import json
import os
import select
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from reelscore.ingest.parsing import (
    MOVIE_COLUMNS,
    STAGING_COLUMNS,
    CsvRows,
    JsonRows,
    Layout,
    ParseError,
    copy_row,
    encoding_problem,
    iter_lines,
    looks_like_header,
    plan_long_header,
    plan_wide,
    split_csv,
)

COPY_SQL = f"COPY pg_temp.rs_load_staging ({', '.join(STAGING_COLUMNS)}) FROM STDIN"
CHUNK_BYTES = 1 << 20   # send COPY data in 1 MB pieces


@dataclass
class LoadSummary:
    """What a load did, summed over its batches."""
    source: str
    batches: list[int] = field(default_factory=list)
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    seconds: float = 0.0

    @property
    def values(self) -> int:
        return self.inserted + self.updated + self.unchanged + self.rejected

    def add(self, batch_id: int, ins: int, upd: int, unch: int, rej: int) -> None:
        self.batches.append(batch_id)
        self.inserted += ins
        self.updated += upd
        self.unchanged += unch
        self.rejected += rej

    def line(self) -> str:
        rate = self.values / self.seconds if self.seconds > 0 else 0.0
        b = (f"batch {self.batches[0]}" if len(self.batches) == 1
             else f"batches {self.batches[0]}-{self.batches[-1]}" if self.batches else "no batch")
        return (f"{self.source}: {self.inserted:,} inserted, {self.updated:,} updated, {self.unchanged:,} unchanged, "
                f"{self.rejected:,} rejected ({b}; {self.values:,} values in {self.seconds:.1f} s, "
                f"{rate:,.0f} values/s)")


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    """'csv' or 'jsonl' from --format or the file name."""
    if fmt:
        if fmt not in ("csv", "jsonl"):
            raise ParseError(f"unknown format {fmt!r}: csv or jsonl")
        return fmt
    name = str(path).lower()
    for suffix in (".gz", ".bz2", ".xz"):
        if name.endswith(suffix):
            raise ParseError(f"compressed input ({suffix}) is not read directly: decompress into a pipe, "
                             "e.g. 'zcat f.csv.gz | reelscore load - --format csv'")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".csv", ".txt")) or name == "-":
        return "csv"
    raise ParseError(f"cannot tell the format of {path}: pass --format csv or --format jsonl")


class _Counter:
    """Wraps a binary stream, counting bytes read (for the progress bar)."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.bytes = 0

    def __iter__(self):
        for raw in self.stream:
            self.bytes += len(raw)
            yield raw


def file_rows(stream, fmt: str, *, layout: str = "auto", known_codes: Iterable[str] = (),
              mapping: dict[str, str | None] | None = None, id_column: str | None = None,
              movie_key: str | None = None, ignore_unmapped: bool = False,
              default_observed_at: str | None = None, blocks: bool = False) -> tuple[Layout, Iterator[str]]:
    """(layout, iterator of COPY lines) for a binary stream. The first line decides the
    layout (a header for CSV, the first object for JSON lines) and is consumed here.
    blocks: an item may hold several COPY lines (a block of plain lines in one string),
    which spares the COPY writer a step per line."""
    lines = iter_lines(stream)
    first = next(lines, None)
    if first is None:
        return Layout("long", movie_key or "id"), iter(())
    line_no, text, _raw = first
    if text is None:
        raise ParseError("the first line is not UTF-8: is this file in another encoding? "
                         "Convert it, e.g. iconv -f latin1 -t utf-8")
    pending: list[tuple[int, str | None, bytes]] = []
    if fmt == "csv":
        fields = split_csv(text) or []
        names = [f.strip().lower() for f in fields]
        if looks_like_header(fields) or (id_column and id_column in fields):
            is_long = "metric_code" in names and "raw_value" in names
            if layout == "long" or (layout == "auto" and is_long):
                lay = plan_long_header(fields)
                if movie_key and movie_key != lay.movie_key:
                    raise ParseError(f"the header's movie column says {lay.movie_key}, --movie-key says {movie_key}")
            else:
                lay = plan_wide(fields, known_codes, mapping, id_column, movie_key, ignore_unmapped)
        else:
            if layout == "wide":
                raise ParseError("a wide file needs a header row naming its columns")
            lay = Layout("long", movie_key or "id", "movie_id", header=None)
            pending.append(first)
        parser = CsvRows(lay, default_observed_at)
    else:
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        keys = list(obj) if isinstance(obj, dict) else []
        id_col = id_column or next((k for k in keys if k in MOVIE_COLUMNS), "movie_id")
        key = movie_key or MOVIE_COLUMNS.get(id_col, "id")
        is_long = "metric_code" in keys or (obj is None and layout != "wide")
        if layout == "long" or (layout == "auto" and is_long):
            lay = Layout("long", key, id_col)
        else:
            cols = dict(mapping or {})
            known = set(known_codes)
            unknown = sorted(c for c in cols.values() if c is not None and c not in known)
            if unknown:
                raise ParseError(f"the key mapping names unknown metric codes: {', '.join(unknown)}")
            lay = Layout("wide", key, id_col, cols)
        parser = JsonRows(lay, default_observed_at)
        pending.append(first)

    if (fmt == "csv" and lay.kind == "long" and lay.movie_key == "id" and default_observed_at is None
            and (lay.header is None or lay.header in (["movie_id", "metric_code", "raw_value"],
                                                      ["movie_id", "metric_code", "raw_value", "observed_at"]))):
        # the plain long layout: the fast path (general parser for any line it does not take)
        from reelscore.ingest.parsing import fast_long_csv
        fast = fast_long_csv(stream, lay, parser, first_line_no=line_no, blocks=blocks)

        def gen_fast() -> Iterator[str]:
            for n, t, r in pending:
                if t.strip():
                    yield from parser.rows(n, t)
            yield from fast
        return lay, gen_fast()

    def gen() -> Iterator[str]:
        for src in (pending, lines):
            for n, t, r in src:
                if t is None:
                    reason, printable = encoding_problem(r)
                    yield copy_row(n, raw_text=printable, problem=reason)
                elif t.strip():
                    yield from parser.rows(n, t)
    return lay, gen()


def _copy_batch(conn: psycopg.Connection, source: str, fmt: str, rows: Iterator[str], limit: int,
                movie_key: str, on_chunk: Callable[[], None] | None) -> tuple[tuple, str | None]:
    """One batch in the current transaction: begin_load, COPY up to `limit` rows (0: all),
    finish_load. An item of `rows` may hold several COPY lines. Returns (counts, the lines
    of the last item beyond the limit, or None when the input is exhausted; '' when the
    batch ended exactly at an item's end)."""
    batch_id = conn.execute("SELECT reelscore.begin_load(%s, %s)", (source, fmt)).fetchone()[0]
    sent = 0
    rest = None
    buf = io.StringIO()
    size = 0
    with conn.cursor().copy(COPY_SQL) as copy:
        for item in rows:
            n = item.count("\n")   # COPY text escapes line ends inside fields: one per row
            if limit and sent + n >= limit:
                item, rest = _split_lines(item, limit - sent)
                n = limit - sent
            buf.write(item)
            size += len(item)
            sent += n
            if size >= CHUNK_BYTES:
                copy.write(buf.getvalue())
                _wait_sent(conn)
                buf = io.StringIO()
                size = 0
                if on_chunk:
                    on_chunk()
            if rest is not None:
                break
        if size:
            copy.write(buf.getvalue())
    counts = conn.execute("SELECT * FROM reelscore.finish_load(%s, %s)", (batch_id, movie_key)).fetchone()
    if on_chunk:
        on_chunk()
    return counts, rest


def _wait_sent(conn: psycopg.Connection) -> None:
    """Wait until libpq has handed the COPY data written so far to the socket. psycopg does not
    wait for that on Linux, and libpq then keeps what the server has not taken yet in a buffer
    that grows: when the file is parsed faster than the server stores it, the loader's memory
    would grow with the file (5.8M values: 75 -> 105 MB)."""
    pgconn = conn.pgconn
    while pgconn.flush() == 1:
        select.select([], [pgconn.socket], [])


def _split_lines(text: str, n: int) -> tuple[str, str]:
    """The first n lines of text, and the rest."""
    end = 0
    for _ in range(n):
        end = text.index("\n", end) + 1
    return text[:end], text[end:]


def load_rows(conn: psycopg.Connection, rows: Iterable[str], *, source: str, fmt: str = "rows",
              movie_key: str = "id", batch_rows: int = 0, on_chunk: Callable[[], None] | None = None,
              session_settings: bool = True) -> LoadSummary:
    """Load staging rows (COPY lines from parsing.copy_row) in batches of batch_rows (0: one
    batch). Each batch commits on its own; an exception rolls the current batch back."""
    summary = LoadSummary(source)
    t0 = time.perf_counter()
    if session_settings:
        _tune_session(conn)
    it = iter(rows)
    while True:
        with conn.transaction():
            counts, rest = _copy_batch(conn, source, fmt, it, batch_rows, movie_key, on_chunk)
        summary.add(*counts)
        if rest is None:
            break
        if not rest:
            # a batch that ended exactly at an item's end leaves an empty last batch: peek
            try:
                rest = next(it)
            except StopIteration:
                break
        it = _chain_one(rest, it)
    summary.seconds = time.perf_counter() - t0
    return summary


def _chain_one(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _tune_session(conn: psycopg.Connection) -> None:
    """Settings for a bulk merge in this session: memory for the sorts and hashes of
    finish_load, UTC for timestamps without a zone. synchronous_commit stays on: a batch
    reported done must survive a crash (tests/db/test_crash.py), and one commit wait per
    batch costs nothing next to the merge."""
    conn.execute("SELECT set_config('work_mem', '256MB', false), set_config('timezone', 'UTC', false)")
    if not conn.autocommit:
        conn.commit()


def known_metric_codes(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute("SELECT code FROM reelscore.metric_definitions").fetchall()
    if not conn.autocommit:
        conn.commit()
    return [r[0] for r in rows]


def load_file(conn: psycopg.Connection, path: str | Path, *, fmt: str | None = None, layout: str = "auto",
              mapping: dict[str, str | None] | None = None, id_column: str | None = None,
              movie_key: str | None = None, ignore_unmapped: bool = False, batch_rows: int = 0,
              observed_at: str | None = None, source: str | None = None, progress: bool = False,
              stream=None) -> LoadSummary:
    """Load a CSV or JSON-lines file of raw values (long or wide, see docs/ingestion.md),
    streaming it; returns the summary. `stream` (a binary file object) replaces opening path."""
    fmt = detect_format(path, fmt)
    source = source or os.path.basename(str(path)) or "stdin"
    codes = known_metric_codes(conn)
    default_obs = None
    if observed_at:
        from reelscore.ingest.parsing import TimestampParser
        default_obs, problem = TimestampParser()(observed_at)
        if problem:
            raise ParseError(f"--observed-at: {problem}")
    own = stream is None
    f = open(path, "rb") if own else stream  # noqa: SIM115 (closed below; stream is the caller's)
    try:
        total = os.fstat(f.fileno()).st_size if own else None
        counted = _Counter(f)
        lay, rows = file_rows(counted, fmt, layout=layout, known_codes=codes, mapping=mapping,
                              id_column=id_column, movie_key=movie_key, ignore_unmapped=ignore_unmapped,
                              default_observed_at=default_obs, blocks=True)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=total, unit="B", unit_scale=True, desc=source, leave=False, mininterval=0.5)
        last = [0]

        def tick() -> None:
            if bar is not None:
                bar.update(counted.bytes - last[0])
                last[0] = counted.bytes
        try:
            summary = load_rows(conn, rows, source=source, fmt=fmt, movie_key=lay.movie_key,
                                batch_rows=batch_rows, on_chunk=tick)
        finally:
            if bar is not None:
                bar.close()
        return summary
    finally:
        if own:
            f.close()


def rejections(conn: psycopg.Connection, batch_ids: list[int], limit: int = 10) -> list[tuple]:
    """The first quarantined rows of these batches: (line_no, reason, raw_text)."""
    rows = conn.execute("""SELECT line_no, reason, raw_text FROM reelscore.load_rejections
                           WHERE batch_id = ANY(%s) ORDER BY batch_id, line_no NULLS LAST, id LIMIT %s""",
                        (batch_ids, limit)).fetchall()
    if not conn.autocommit:
        conn.commit()
    return rows
