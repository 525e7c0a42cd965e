"""Streaming parsers for the bulk path: CSV and JSON lines, long or wide, into rows of the
staging table (pg_temp.rs_load_staging, made by reelscore.begin_load) as COPY text lines.

Nothing here touches the database and nothing holds more than one line: the file is read
line by line in binary, each line decoded on its own, so one badly encoded line is
quarantined while the rest loads, and memory stays flat however large the file is.

What the client checks (syntax): encoding, the shape of a line, numbers, timestamps, movie
ids. What the database checks (meaning, set-based in reelscore.finish_load): unknown
metric or movie, a value outside the metric's raw scale, duplicates in a batch. Rows the
client refuses still go to the staging table, with `problem` set, so every rejection lands
in the quarantine the same way.
"""
from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import islice
from typing import BinaryIO

# Column order of the COPY into pg_temp.rs_load_staging.
# The fields of a plain long line come first, in its order (see plain_block_rows).
STAGING_COLUMNS = ("line_no", "movie_id", "metric_code", "raw_value", "observed_at", "raw_text",
                   "movie_key", "source_record", "problem")
MOVIE_KEYS = ("id", "tmdb_id", "imdb_id", "movielens_id")
# Header names that name the movie column, and the movie key each implies.
MOVIE_COLUMNS = {"movie_id": "id", "id": "id", "tmdb_id": "tmdb_id", "imdb_id": "imdb_id",
                 "movielens_id": "movielens_id"}
LONG_FIELDS = ("movie_id", "metric_code", "raw_value", "observed_at", "source_record")
RAW_TEXT_LIMIT = 2000

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)  # ASCII: no other digits
_NONFINITE = {"nan": "NaN", "+nan": "NaN", "-nan": "NaN", "inf": "Infinity", "+inf": "Infinity",
              "infinity": "Infinity", "+infinity": "Infinity", "-inf": "-Infinity", "-infinity": "-Infinity"}
_INTEGER = re.compile(r"[-+]?\d{1,19}", re.ASCII)
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_BIGINT_MAX = 2 ** 63 - 1


class ParseError(ValueError):
    """The input cannot be loaded at all (a header problem, an unknown option): one message."""


def copy_text(value: str | None) -> str:
    """A text field in COPY text format (\\N for NULL, backslash escapes)."""
    return "\\N" if value is None else value.translate(_COPY_ESCAPES)


def copy_row(line_no: int, movie_id: int | None = None, movie_key: str | None = None,
             metric_code: str | None = None, raw_value: str | None = None, observed_at: str | None = None,
             source_record: str | None = None, raw_text: str | None = None, problem: str | None = None) -> str:
    """One staging row as a COPY text line. raw_value and observed_at are already in a form
    PostgreSQL parses (see parse_number / parse_timestamp)."""
    if raw_text is not None and len(raw_text) > RAW_TEXT_LIMIT:
        raw_text = raw_text[:RAW_TEXT_LIMIT] + "..."
    return "\t".join((
        str(line_no),
        "\\N" if movie_id is None else str(movie_id),
        copy_text(metric_code),
        "\\N" if raw_value is None else raw_value,
        "\\N" if observed_at is None else observed_at,
        copy_text(raw_text),
        copy_text(movie_key),
        copy_text(source_record),
        copy_text(problem),
    )) + "\n"


def parse_number(text: str) -> tuple[str | None, str | None]:
    """(value for COPY, problem). Plain decimal notation only ('1_000', '1,5', '$3' are not
    numbers here; adapters convert such strings); NaN and infinities pass through so that
    the database rejects them with its own reason. An empty field is a missing value."""
    s = text.strip()
    if not s:
        return None, "missing value"
    if _NUMBER.fullmatch(s):
        v = float(s)
        if v in (float("inf"), float("-inf")):
            return None, f"number out of range for double precision: {s[:40]!r}"
        return repr(v), None
    word = _NONFINITE.get(s.lower())
    if word:
        return word, None
    return None, f"not a number: {s[:40]!r}"


def parse_json_number(value) -> tuple[str | None, str | None]:
    """The same for a JSON value: numbers as they are, numeric strings parsed, else a problem."""
    if isinstance(value, bool):
        return ("1.0" if value else "0.0"), None
    if isinstance(value, (int, float)):
        v = float(value)
        if math.isnan(v):
            return "NaN", None
        if v in (float("inf"), float("-inf")):
            return None, f"number out of range for double precision: {str(value)[:40]!r}"
        return repr(v), None
    if value is None:
        return None, "missing value"
    if isinstance(value, str):
        return parse_number(value)
    return None, f"not a number: {json.dumps(value)[:40]}"


class TimestampParser:
    """ISO 8601 dates and timestamps; a time without a zone is UTC. Remembers the last text,
    since files repeat one observation time on many lines."""

    def __init__(self) -> None:
        self._last: tuple[str, str | None, str | None] = ("", None, None)

    def __call__(self, text: str | None) -> tuple[str | None, str | None]:
        if text is None:
            return None, None
        s = text.strip()
        if not s:
            return None, None
        if s == self._last[0]:
            return self._last[1], self._last[2]
        try:
            dt = datetime.fromisoformat(s)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            out: tuple[str | None, str | None] = (dt.isoformat(), None)
        except ValueError:
            out = (None, f"not an ISO 8601 timestamp: {s[:40]!r}")
        self._last = (s, out[0], out[1])
        return out


def parse_movie_ref(text, movie_key: str) -> tuple[int | None, str | None, str | None]:
    """(movie_id, movie_key value, problem) for the chosen key."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None, None, "missing movie id"
    if isinstance(text, (bool, float)):
        return None, None, f"movie {movie_key} must be an integer, got {text!r}"
    s = str(text).strip()
    if movie_key == "imdb_id":
        return None, s, None
    if not _INTEGER.fullmatch(s) or abs(int(s)) > _BIGINT_MAX:
        return None, None, f"movie {movie_key} must be an integer, got {s[:40]!r}"
    if movie_key == "id":
        return int(s), None, None
    return None, str(int(s)), None


def iter_lines(stream: BinaryIO) -> Iterator[tuple[int, str | None, bytes]]:
    """(line number, decoded text without the line end or None if not UTF-8, raw bytes).
    A UTF-8 byte order mark on the first line is dropped."""
    for line_no, raw in enumerate(stream, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield line_no, None, raw
            continue
        if line_no == 1 and text.startswith("\ufeff"):
            text = text[1:]
        yield line_no, text.rstrip("\r\n"), raw


def encoding_problem(raw: bytes) -> tuple[str, str]:
    """(reason, printable original text) for a line that is not UTF-8."""
    try:
        raw.decode("utf-8")
        where = ""
    except UnicodeDecodeError as exc:
        where = f" (byte 0x{raw[exc.start]:02x} at position {exc.start})"
    return f"invalid encoding: not UTF-8{where}", raw.decode("utf-8", "backslashreplace").rstrip("\r\n")


def split_csv(text: str) -> list[str] | None:
    """Fields of one CSV line; None when its quoting is broken."""
    if '"' not in text:
        return text.split(",")
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error:
        return None
    return rows[0] if len(rows) == 1 else None


@dataclass
class Layout:
    """How a file maps onto (movie, metric, value) rows.

    long: one value per line, columns movie_id (or tmdb_id/imdb_id/movielens_id),
    metric_code, raw_value, optional observed_at and source_record.
    wide: one movie per line, one column per metric; `columns` maps a column name to a
    metric code (None: ignore the column)."""
    kind: str                        # 'long' | 'wide'
    movie_key: str = "id"
    id_column: str = "movie_id"
    columns: dict[str, str | None] = field(default_factory=dict)
    observed_at_column: str | None = None
    source_column: str | None = None
    header: list[str] | None = None  # CSV: the header row (None: positional long format)


def plan_wide(header: list[str], known_codes: Iterable[str], mapping: dict[str, str | None] | None = None,
              id_column: str | None = None, movie_key: str | None = None, ignore_unmapped: bool = False,
              observed_at_column: str | None = None, source_column: str | None = None) -> Layout:
    """The layout of a wide file from its header: a column maps to the metric code given in
    `mapping`, else to itself when it is a metric code. Any other column is an error, so a
    typo in a header is not silently dropped (unless ignore_unmapped)."""
    mapping = dict(mapping or {})
    known = set(known_codes)
    if id_column is None:
        id_column = next((h for h in header if h.strip().lower() in MOVIE_COLUMNS), None)
        if id_column is None:
            raise ParseError(f"no movie id column in the header (one of {', '.join(MOVIE_COLUMNS)}); "
                             "name it with --id-column")
    if id_column not in header:
        raise ParseError(f"id column {id_column!r} is not in the header")
    if movie_key is None:
        movie_key = MOVIE_COLUMNS.get(id_column.strip().lower(), "id")
    unknown_targets = sorted({c for c in mapping.values() if c is not None and c not in known})
    if unknown_targets:
        raise ParseError(f"the column mapping names unknown metric codes: {', '.join(unknown_targets)}")
    missing = sorted(c for c in mapping if c not in header)
    if missing:
        raise ParseError(f"the column mapping names columns that are not in the header: {', '.join(missing)}")
    columns: dict[str, str | None] = {}
    unmapped = []
    for h in header:
        if h in (id_column, observed_at_column, source_column):
            continue
        if h in mapping:
            columns[h] = mapping[h]
        elif h.strip() in known:
            columns[h] = h.strip()
        else:
            unmapped.append(h)
            columns[h] = None
    if unmapped and not ignore_unmapped:
        raise ParseError(f"columns without a metric: {', '.join(repr(u) for u in unmapped)}; map them with "
                         "--map 'COLUMN=metric_code' (or 'COLUMN=' to ignore), or pass --ignore-unmapped")
    targets = [c for c in columns.values() if c]
    dup = sorted({c for c in targets if targets.count(c) > 1})
    if dup:
        raise ParseError(f"two columns map to the same metric: {', '.join(dup)}")
    if not targets:
        raise ParseError("no column of the file maps to a metric")
    return Layout("wide", movie_key, id_column, columns, observed_at_column, source_column, header)


def plan_long_header(header: list[str]) -> Layout:
    """The layout of a long CSV whose first line is a header."""
    names = [h.strip().lower() for h in header]
    id_col = next((n for n in names if n in MOVIE_COLUMNS), None)
    if id_col is None or "metric_code" not in names or "raw_value" not in names:
        raise ParseError("a long file's header needs a movie column (movie_id, tmdb_id, imdb_id or movielens_id), "
                         "metric_code and raw_value")
    extra = [n for n in names if n not in MOVIE_COLUMNS and n not in LONG_FIELDS]
    if extra:
        raise ParseError(f"unknown columns in a long file: {', '.join(extra)}")
    return Layout("long", MOVIE_COLUMNS[id_col], id_col, header=names,
                  observed_at_column="observed_at" if "observed_at" in names else None,
                  source_column="source_record" if "source_record" in names else None)


def looks_like_header(fields: list[str]) -> bool:
    return bool(fields) and fields[0].strip().lower() in MOVIE_COLUMNS


class CsvRows:
    """CSV lines -> staging rows. `layout` is fixed by the caller from the header (or None
    for a headerless long file: movie_id,metric_code,raw_value[,observed_at[,source_record]])."""

    def __init__(self, layout: Layout, default_observed_at: str | None = None) -> None:
        self.layout = layout
        self.ts = TimestampParser()
        self.default_observed_at = default_observed_at
        if layout.header is not None:
            self.index = {h: i for i, h in enumerate(layout.header)}
            self.width = len(layout.header)
            # a long line may leave out trailing optional columns (observed_at, source_record)
            self.required = 1 + max(self.index.get(c, 0) for c in (layout.id_column, "metric_code", "raw_value"))
        else:
            self.index = {name: i for i, name in enumerate(LONG_FIELDS)}
            self.width = None

    def rows(self, line_no: int, text: str) -> list[str]:
        if "\x00" in text:
            return [copy_row(line_no, raw_text=text.replace("\x00", "\\0"), problem="malformed line: NUL byte")]
        fields = split_csv(text)
        if fields is None:
            return [copy_row(line_no, raw_text=text, problem="malformed line: broken CSV quoting")]
        lay = self.layout
        if self.width is not None and len(fields) != self.width and not (
                lay.kind == "long" and self.required <= len(fields) < self.width):
            return [copy_row(line_no, raw_text=text,
                             problem=f"malformed line: {len(fields)} fields, the header has {self.width}")]
        if self.width is None and not 3 <= len(fields) <= 5:
            return [copy_row(line_no, raw_text=text,
                             problem=f"malformed line: {len(fields)} fields, expected 3 to 5 "
                                     "(movie_id,metric_code,raw_value[,observed_at[,source_record]])")]
        obs_i = self.index.get(lay.observed_at_column or "observed_at") if lay.kind == "long" else (
            self.index.get(lay.observed_at_column) if lay.observed_at_column else None)
        src_i = self.index.get(lay.source_column or "source_record") if lay.kind == "long" else (
            self.index.get(lay.source_column) if lay.source_column else None)
        observed, problem = self.ts(fields[obs_i] if obs_i is not None and obs_i < len(fields) else None)
        if observed is None and problem is None:
            observed = self.default_observed_at
        source = fields[src_i].strip() or None if src_i is not None and src_i < len(fields) else None
        movie_id, movie_key, mproblem = parse_movie_ref(fields[self.index[lay.id_column]], lay.movie_key)
        if lay.kind == "long":
            code = fields[self.index["metric_code"]].strip()
            value, vproblem = parse_number(fields[self.index["raw_value"]])
            return [copy_row(line_no, movie_id, movie_key, code, value, observed, source, text,
                             mproblem or problem or vproblem)]
        out = []
        for col, code in lay.columns.items():
            if code is None:
                continue
            cell = fields[self.index[col]]
            if not cell.strip():
                continue          # an empty cell in a wide file: the movie lacks the metric
            value, vproblem = parse_number(cell)
            bad = mproblem or problem or (f"{vproblem} (column {col!r})" if vproblem else None)
            out.append(copy_row(line_no, movie_id, movie_key, code, value, observed, source,
                                text if bad else None, bad))
        return out


_NEEDS_CARE = re.compile(r'[\\\t\r"\x00]')   # escapes, quotes, NUL: the general path

# The block path: a block of lines is checked by one regex pass and turned into COPY lines
# by plain string replacement (both at C speed), when every line of the block is plain:
# movie id, metric code, a plain decimal, and optionally a time written as COPY writes a
# timestamptz (+00 in UTC, or another offset). The time is rewritten as TimestampParser
# writes it (datetime.isoformat()), so both paths give the same rows; a block with any other
# line goes line by line.
_FAST_BLOCK_LINES = 1024
_B_FLAGS = re.MULTILINE | re.ASCII   # ^ and $ at each line; \d is 0-9 only
_B_CODE = r"[A-Za-z0-9_.-]+"
# at most 20 + 20 digits and a two-digit exponent: always finite, never a denormal
_B_NUMBER = r"-?\d{1,20}(?:\.\d{1,20})?(?:[eE][-+]?\d{1,2})?"
_B_DATE = r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"   # days 29-31 checked by _dates_exist
_B_TIME = r"(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{6})?"
_B_OFFSET_HOURS = r"(?:\+(?:0\d|1[0-4])|-(?:0[1-9]|1[0-4]))"    # -00 would print as +00:00
_B_HEAD = rf"^\d{{1,18}},{_B_CODE},{_B_NUMBER}"
# (line pattern, what ends each line's COPY fields: the missing observed_at, or the minutes
# that isoformat() adds to an offset written in whole hours)
_BLOCK_FORMS = {
    3: ((re.compile(_B_HEAD + "$", _B_FLAGS), "\t\\N"),),
    4: ((re.compile(rf"{_B_HEAD},{_B_DATE}[ T]{_B_TIME}{_B_OFFSET_HOURS}$", _B_FLAGS), ":00"),
        (re.compile(rf"{_B_HEAD},{_B_DATE}[ T]{_B_TIME}{_B_OFFSET_HOURS}:[0-5]\d$", _B_FLAGS), "")),
}
_LATE_DAYS = re.compile(r",(\d{4}-\d\d-(?:29|30|31))[ T]", re.ASCII)


def _dates_exist(text: str) -> bool:
    """Whether every date of a block that the regex could not check (the 29th to the 31st)
    is on the calendar (2026-02-30 is not)."""
    for day in set(_LATE_DAYS.findall(text)):
        try:
            date.fromisoformat(day)
        except ValueError:
            return False
    return True


def plain_block_rows(text: str, first_line_no: int, widths: Iterable[int]) -> list[str] | None:
    """COPY lines for a block of decoded lines (each ending with a line end) when every line
    is plain in one of the forms of _BLOCK_FORMS; None when any is not. A plain line's
    fields are the first staging columns in order (STAGING_COLUMNS): commas become tabs, the
    space of the time a 'T'."""
    n_lines = text.count("\n")
    for width in widths:
        for pattern, line_end in _BLOCK_FORMS.get(width, ()):
            if len(pattern.findall(text)) != n_lines or (width == 4 and not _dates_exist(text)):
                continue
            fields = text.replace(",", "\t").replace(" ", "T").replace("\n", line_end + "\n").split("\n")
            lines = text.split("\n")
            return [f"{no}\t{f}\t{line}\t\\N\t\\N\t\\N\n"
                    for no, f, line in zip(range(first_line_no, first_line_no + n_lines), fields, lines)]
    return None


def fast_long_csv(stream: BinaryIO, layout: Layout, parser: CsvRows, first_line_no: int = 0,
                  blocks: bool = False) -> Iterator[str]:
    """The hot path of the bulk loader: long CSV lines `movie,metric,value[,observed_at]`
    with plain ASCII fields and a numeric movie id become COPY lines without the general
    parser's per-field work. Lines are taken a block at a time: a block of plain lines goes
    through plain_block_rows (one regex pass); any other block line by line, where a line
    that is not that simple goes through `parser.rows`, which gives the same rows (the unit
    tests compare both). Blocks keep memory flat (1,024 lines at a time). blocks: a plain
    block comes as one string of COPY lines (the loader's COPY takes it as it is)."""
    widths = (parser.width,) if parser.width else (3, 4)
    lines = iter(stream)
    line_no = first_line_no
    while True:
        raws = list(islice(lines, _FAST_BLOCK_LINES))
        if not raws:
            return
        rows = None
        try:
            text = b"".join(raws).decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None:
            rows = plain_block_rows(text if text.endswith("\n") else text + "\n", line_no + 1, widths)
        if rows is not None and blocks:
            yield "".join(rows)
        elif rows is not None:
            yield from rows
        else:
            yield from _fast_lines(raws, line_no, layout, parser)
        line_no += len(raws)


def _fast_lines(raws: list[bytes], line_no: int, layout: Layout, parser: CsvRows) -> Iterator[str]:
    """Line by line: a simple line straight to a COPY line, any other through `parser.rows`.
    The observation time goes through the general parser's TimestampParser (it caches
    repeated times); a time it refuses sends the line to the general path, which names the
    problem."""
    id_i = parser.index[layout.id_column]
    code_i, val_i = parser.index["metric_code"], parser.index["raw_value"]
    obs_i = parser.index.get("observed_at")
    # a headerless file may carry the observation time or not, line by line
    widths = (parser.width,) if parser.width else (3, 4)
    by_id = layout.movie_key == "id"
    ts = parser.ts
    for raw in raws:
        line_no += 1
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            reason, printable = encoding_problem(raw)
            yield copy_row(line_no, raw_text=printable, problem=reason)
            continue
        f = text.split(",")
        if len(f) in widths and text.isascii() and not _NEEDS_CARE.search(text):
            mid, val = f[id_i], f[val_i]
            if by_id and mid.isdigit() and len(mid) < 19 and "_" not in val:
                try:
                    v = float(val)
                except ValueError:
                    v = None
                observed, problem = ts(f[obs_i]) if len(f) > 3 else (None, None)
                if (v is not None and not math.isnan(v) and abs(v) < 1e300 and (v == 0 or abs(v) > 1e-300)
                        and problem is None):
                    obs = observed or "\\N"
                    yield f"{line_no}\t{mid}\t{f[code_i].strip()}\t{val.strip()}\t{obs}\t{text}\t\\N\t\\N\t\\N\n"
                    continue
        if text.strip():
            yield from parser.rows(line_no, text)


class JsonRows:
    """JSON lines -> staging rows. Long objects carry metric_code and raw_value; wide objects
    carry one key per metric (mapped like a wide CSV's columns)."""

    def __init__(self, layout: Layout, default_observed_at: str | None = None) -> None:
        self.layout = layout
        self.ts = TimestampParser()
        self.default_observed_at = default_observed_at

    def rows(self, line_no: int, text: str) -> list[str]:
        if "\x00" in text:
            return [copy_row(line_no, raw_text=text.replace("\x00", "\\0"), problem="malformed line: NUL byte")]
        try:
            obj = json.loads(text)
        except ValueError as exc:
            return [copy_row(line_no, raw_text=text, problem=f"malformed line: invalid JSON ({exc.msg})")]
        if not isinstance(obj, dict):
            return [copy_row(line_no, raw_text=text, problem="malformed line: not a JSON object")]
        lay = self.layout
        id_col = lay.id_column
        if id_col not in obj:
            id_col = next((k for k in obj if k in MOVIE_COLUMNS), id_col)
        movie_key = MOVIE_COLUMNS.get(id_col, lay.movie_key)
        movie_id, key_value, mproblem = parse_movie_ref(obj.get(id_col), movie_key)
        if movie_key != lay.movie_key and not mproblem:
            mproblem = f"this file identifies movies by {lay.movie_key}, the line by {movie_key}"
        obs_raw = obj.get(lay.observed_at_column or "observed_at")
        observed, problem = self.ts(obs_raw if isinstance(obs_raw, str) else None)
        if obs_raw is not None and not isinstance(obs_raw, str):
            problem = f"not an ISO 8601 timestamp: {json.dumps(obs_raw)[:40]}"
        if observed is None and problem is None:
            observed = self.default_observed_at
        src = obj.get(lay.source_column or "source_record")
        source = None if src is None else str(src)
        if lay.kind == "long":
            code = obj.get("metric_code")
            if code is not None and not isinstance(code, str):
                code = json.dumps(code)
            if "raw_value" not in obj:
                return [copy_row(line_no, movie_id, key_value, code, None, observed, source, text,
                                 mproblem or problem or "malformed line: no raw_value")]
            value, vproblem = parse_json_number(obj["raw_value"])
            return [copy_row(line_no, movie_id, key_value, code, value, observed, source, text,
                             mproblem or problem or vproblem)]
        out = []
        for key, raw in obj.items():
            if key in (id_col, lay.observed_at_column, lay.source_column, "observed_at", "source_record"):
                continue
            code = lay.columns.get(key, key if key not in lay.columns else None)
            if code is None or raw is None:
                continue
            value, vproblem = parse_json_number(raw)
            bad = mproblem or problem or (f"{vproblem} (key {key!r})" if vproblem else None)
            out.append(copy_row(line_no, movie_id, key_value, code, value, observed, source,
                                text if bad else None, bad))
        return out
