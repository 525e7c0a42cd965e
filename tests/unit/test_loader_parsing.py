"""The loader's parsers, without a database: numbers, timestamps, COPY escaping, layouts,
bad lines, and flat memory on a growing file."""
import io
import json
import math
import tracemalloc

import pytest

from reelscore.ingest.loader import detect_format, file_rows
from reelscore.ingest.parsing import (
    STAGING_COLUMNS,
    ParseError,
    TimestampParser,
    copy_row,
    parse_json_number,
    parse_number,
    plan_wide,
)

CODES = ["imdb_rating", "imdb_vote_count", "rt_tomatometer", "tmdb_budget"]


def decode_copy_line(line: str) -> dict:
    """Independent reader of PostgreSQL's COPY text format (one line) into a dict."""
    assert line.endswith("\n")
    out = []
    for field in line[:-1].split("\t"):
        if field == "\\N":
            out.append(None)
            continue
        s, i = [], 0
        while i < len(field):
            c = field[i]
            if c == "\\":
                nxt = field[i + 1]
                s.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}[nxt])
                i += 2
            else:
                s.append(c)
                i += 1
        out.append("".join(s))
    assert len(out) == len(STAGING_COLUMNS)
    return dict(zip(STAGING_COLUMNS, out))


def rows_of(data: bytes, fmt: str = "csv", **kw) -> list[dict]:
    _, it = file_rows(io.BytesIO(data), fmt, known_codes=CODES, **kw)
    return [decode_copy_line(r) for r in it]


@pytest.mark.parametrize("text,expected", [
    ("7.5", 7.5), (" 8 ", 8.0), ("-0.25", -0.25), (".5", 0.5), ("1e6", 1e6), ("2.5E-3", 2.5e-3), ("+3", 3.0),
])
def test_numbers_parse_to_the_same_double(text, expected):
    value, problem = parse_number(text)
    assert problem is None and float(value) == expected


@pytest.mark.parametrize("text,word", [
    ("abc", "not a number"), ("1_000", "not a number"), ("1,5", "not a number"), ("$3", "not a number"),
    ("", "missing value"), ("   ", "missing value"), ("1e400", "out of range"), ("٣", "not a number"),
])
def test_bad_numbers_are_problems(text, word):
    value, problem = parse_number(text)
    assert value is None and word in problem


def test_nonfinite_words_pass_for_the_database_to_refuse():
    assert parse_number("NaN") == ("NaN", None)
    assert parse_number("-inf") == ("-Infinity", None)
    assert parse_json_number(float("nan")) == ("NaN", None)
    assert parse_json_number(True) == ("1.0", None)
    assert parse_json_number([1])[1].startswith("not a number")


def test_timestamps_are_iso_and_utc_by_default():
    ts = TimestampParser()
    assert ts("2024-03-01") == ("2024-03-01T00:00:00+00:00", None)
    assert ts("2024-03-01T12:30:00Z") == ("2024-03-01T12:30:00+00:00", None)
    assert ts("2024-03-01T12:30:00+02:00") == ("2024-03-01T12:30:00+02:00", None)
    assert ts("") == (None, None)
    value, problem = ts("yesterday")
    assert value is None and "ISO 8601" in problem


def test_copy_row_escapes_text_fields():
    nasty = "a\tb\nc\\d\re"
    line = copy_row(7, 42, None, "imdb_rating", "7.5", None, nasty, nasty, None)
    assert line.count("\n") == 1 and line.count("\t") == len(STAGING_COLUMNS) - 1
    row = decode_copy_line(line)
    assert row["source_record"] == nasty and row["raw_text"] == nasty
    assert row["line_no"] == "7" and row["movie_id"] == "42" and row["problem"] is None


def test_long_csv_with_header_and_optional_columns():
    data = (b"movie_id,metric_code,raw_value,observed_at\n"
            b"1,imdb_rating,7.5,2024-01-02\n"
            b"2,imdb_vote_count,1200\n")
    rows = rows_of(data)
    assert [(r["line_no"], r["movie_id"], r["metric_code"], float(r["raw_value"])) for r in rows] == \
        [("2", "1", "imdb_rating", 7.5), ("3", "2", "imdb_vote_count", 1200.0)]
    assert rows[0]["observed_at"] == "2024-01-02T00:00:00+00:00" and rows[1]["observed_at"] is None
    assert rows[0]["raw_text"] == "1,imdb_rating,7.5,2024-01-02"
    assert all(r["problem"] is None for r in rows)


def test_headerless_long_csv_and_external_keys():
    rows = rows_of(b"5,imdb_rating,6\n")
    assert rows[0]["movie_id"] == "5" and rows[0]["line_no"] == "1"
    rows = rows_of(b"imdb_id,metric_code,raw_value\ntt0133093,imdb_rating,8.7\n")
    assert rows[0]["movie_id"] is None and rows[0]["movie_key"] == "tt0133093"


def test_bad_lines_become_problem_rows_with_their_text():
    data = (b"movie_id,metric_code,raw_value\n"
            b"1,imdb_rating,abc\n"          # not a number
            b"2,imdb_rating\n"              # too few fields
            b'"3,imdb_rating,5\n'           # broken quoting
            b"x,imdb_rating,5\n"            # movie id not an integer
            b"4,imdb_rating,5\xff\n"        # not UTF-8
            b"\n"                           # blank: skipped
            b"5,imdb_rating,6\n")
    rows = rows_of(data)
    by_line = {r["line_no"]: r for r in rows}
    assert set(by_line) == {"2", "3", "4", "5", "6", "8"}
    assert "not a number" in by_line["2"]["problem"] and by_line["2"]["raw_text"] == "1,imdb_rating,abc"
    assert "malformed line" in by_line["3"]["problem"]
    assert "quoting" in by_line["4"]["problem"]
    assert "integer" in by_line["5"]["problem"]
    assert "invalid encoding" in by_line["6"]["problem"] and "\\xff" in by_line["6"]["raw_text"]
    assert by_line["8"]["problem"] is None


def test_wide_csv_maps_columns_and_skips_empty_cells():
    data = (b"movie_id,IMDB Rating,imdb_vote_count,Notes\n"
            b"1,7.5,1000,x\n"
            b"2,,250,y\n"
            b"3,bad,,z\n")
    rows = rows_of(data, mapping={"IMDB Rating": "imdb_rating", "Notes": None})
    got = [(r["movie_id"], r["metric_code"], r["raw_value"] and float(r["raw_value"]), r["problem"]) for r in rows]
    assert got[:3] == [("1", "imdb_rating", 7.5, None), ("1", "imdb_vote_count", 1000.0, None),
                       ("2", "imdb_vote_count", 250.0, None)]
    assert got[3][1] == "imdb_rating" and "not a number" in got[3][3] and "IMDB Rating" in got[3][3]
    assert rows[3]["raw_text"] == "3,bad,,z"     # a refused cell keeps its whole line
    assert rows[0]["raw_text"] is None           # good cells send no text


def test_wide_csv_refuses_unmapped_or_unknown_columns():
    with pytest.raises(ParseError, match="columns without a metric"):
        plan_wide(["movie_id", "IMDB Rating"], CODES)
    with pytest.raises(ParseError, match="unknown metric codes"):
        plan_wide(["movie_id", "x"], CODES, {"x": "no_such_metric"})
    with pytest.raises(ParseError, match="same metric"):
        plan_wide(["movie_id", "a", "imdb_rating"], CODES, {"a": "imdb_rating"})
    lay = plan_wide(["tmdb_id", "IMDB Rating", "junk"], CODES, {"IMDB Rating": "imdb_rating"}, ignore_unmapped=True)
    assert lay.movie_key == "tmdb_id" and lay.columns == {"IMDB Rating": "imdb_rating", "junk": None}


def test_jsonl_long_and_wide():
    data = b"\n".join([
        json.dumps({"movie_id": 1, "metric_code": "imdb_rating", "raw_value": 7.5}).encode(),
        json.dumps({"movie_id": 2, "metric_code": "imdb_rating", "raw_value": "8.1"}).encode(),
        b"{not json",
        json.dumps([1, 2]).encode(),
    ]) + b"\n"
    rows = rows_of(data, "jsonl")
    assert [float(r["raw_value"]) for r in rows[:2]] == [7.5, 8.1]
    assert "invalid JSON" in rows[2]["problem"] and rows[2]["raw_text"] == "{not json"
    assert "not a JSON object" in rows[3]["problem"]
    wide = json.dumps({"movie_id": 3, "imdb_rating": 6.5, "rt_tomatometer": None, "votes": 10}).encode() + b"\n"
    rows = rows_of(wide, "jsonl", mapping={"votes": "imdb_vote_count"})
    assert sorted((r["metric_code"], float(r["raw_value"])) for r in rows) == [("imdb_rating", 6.5),
                                                                             ("imdb_vote_count", 10.0)]


def test_byte_order_mark_and_format_detection():
    rows = rows_of(b"\xef\xbb\xbfmovie_id,metric_code,raw_value\n1,imdb_rating,5\n")
    assert len(rows) == 1 and rows[0]["problem"] is None
    assert detect_format("x.csv") == "csv" and detect_format("x.ndjson") == "jsonl"
    with pytest.raises(ParseError):
        detect_format("x.parquet")
    with pytest.raises(ParseError):
        rows_of(b"\xff\xfe\x00m\n", "csv")


def _peak_bytes(path) -> int:
    with open(path, "rb") as fh:
        tracemalloc.start()
        _, it = file_rows(fh, "csv", known_codes=CODES)
        n = sum(1 for _ in it)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return n, peak


def test_memory_stays_flat_as_the_file_grows(tmp_path):
    def write(path, n):
        with open(path, "w") as fh:
            fh.write("movie_id,metric_code,raw_value\n")
            fh.writelines(f"{i},imdb_rating,{(i % 100) / 10}\n" for i in range(n))
    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    write(small, 2_000)
    write(big, 60_000)
    n_small, peak_small = _peak_bytes(small)
    n_big, peak_big = _peak_bytes(big)
    assert (n_small, n_big) == (2_000, 60_000)
    # 30x the lines; a reader that kept lines would grow about 30x. Allow noise, not growth.
    assert peak_big < 2 * peak_small + 64 * 1024, (peak_small, peak_big)
    assert math.isfinite(peak_big)


def test_fast_path_gives_the_same_rows_as_the_general_parser():
    from reelscore.ingest.parsing import CsvRows, Layout
    lines = ["1,imdb_rating,7.5", "2, imdb_rating ,8", "007,tmdb_budget,1e6", "3,imdb_rating,nan",
             "4,imdb_rating,1e400", "5,imdb_rating,abc", "6,imdb_rating,1_0", "x,imdb_rating,1",
             '7,"imdb_rating",2', "8,imdb_rating", "9,rt_tomatometer,-0.0", "10,a\\b,1", "11,imdb_rating,1e-320",
             "12,imdb_rating,5,extra", "13,imdb_rating,.5"]
    data = ("movie_id,metric_code,raw_value\n" + "\n".join(lines) + "\n").encode() + b"14,imdb_rating,\xff\n"
    fast = rows_of(data)
    general_parser = CsvRows(Layout("long", "id", "movie_id", header=["movie_id", "metric_code", "raw_value"]))
    general = []
    for n, line in enumerate(lines, 2):
        general += [decode_copy_line(r) for r in general_parser.rows(n, line)]
    assert len(fast) == len(general) + 1 and "invalid encoding" in fast[-1]["problem"]
    for a, b in zip(fast, general):
        assert (a["line_no"], a["metric_code"], a["problem"], a["raw_text"]) == \
            (b["line_no"], b["metric_code"], b["problem"], b["raw_text"])
        assert (a["movie_id"] and int(a["movie_id"])) == (b["movie_id"] and int(b["movie_id"]))
        assert (a["raw_value"] is None) == (b["raw_value"] is None)
        if a["raw_value"] is not None and a["raw_value"] not in ("NaN", "Infinity", "-Infinity"):
            assert float(a["raw_value"]) == float(b["raw_value"])


@pytest.mark.parametrize("header", [["movie_id", "metric_code", "raw_value", "observed_at"], None])
def test_fast_path_with_observation_times_gives_the_same_rows_as_the_general_parser(header):
    """The four-column long file (movie, metric, value, observed_at: what `COPY ... TO csv`
    of metric_values gives) takes the fast path; bad or odd times fall to the general one."""
    from reelscore.ingest.parsing import CsvRows, Layout
    lines = ["1,imdb_rating,7.5,2026-05-21 19:16:25+00", "2,imdb_rating,8,2026-05-21 19:16:25+00",
             "3,imdb_rating,6,2026-05-21T19:16:25.5", "4,imdb_rating,6,2026-05-21", "5,imdb_rating,6,",
             "6,imdb_rating,6,yesterday", "7,imdb_rating,6,2026-13-01 00:00:00+00", "8,imdb_rating,nan,2026-05-21",
             "9,imdb_rating,6, 2026-05-21 10:00:00+02:00 ", "10,imdb_rating,6", "11,imdb_rating,6,2026-05-21,src"]
    head = ",".join(header) + "\n" if header else ""
    data = (head + "\n".join(lines) + "\n").encode()
    taken = []
    real_rows = CsvRows.rows

    def spy(self, n, text):
        taken.append(n)
        return real_rows(self, n, text)

    CsvRows.rows = spy
    try:
        fast = rows_of(data)
    finally:
        CsvRows.rows = real_rows
    general_parser = CsvRows(Layout("long", "id", "movie_id", header=header))
    general = []
    first = 2 if header else 1
    for n, line in enumerate(lines, first):
        general += [decode_copy_line(r) for r in general_parser.rows(n, line)]
    assert len(fast) == len(general)
    for a, b in zip(fast, general):
        assert {k: v for k, v in a.items() if k != "raw_value"} == {k: v for k, v in b.items() if k != "raw_value"}
        assert (a["raw_value"] is None) == (b["raw_value"] is None)
        if a["raw_value"] is not None and a["raw_value"] != "NaN":
            assert float(a["raw_value"]) == float(b["raw_value"])
    # the plain lines did not go through the general parser (but the first line of a file
    # without a header, read before the layout is known); the odd ones did
    plain = {first + i for i in ((0, 1, 2, 3, 4, 8) if header else (1, 2, 3, 4, 8))}
    assert plain.isdisjoint(taken), taken
    assert {first + 5, first + 6, first + 7} <= set(taken)
