"""Documents in the shapes the data arrives in (TMDb movie details, OMDb), one JSON object
per line, loaded through the SQL adapters reelscore.ingest_tmdb / ingest_omdb. One
transaction per file, recorded as a batch in load_batches; a document the adapter refuses,
a line that is not JSON and a value its metric refuses land in the quarantine."""
from __future__ import annotations

import json
import os
import time

import psycopg

from reelscore.ingest.loader import LoadSummary

ADAPTERS = {"tmdb": "reelscore.ingest_tmdb", "omdb": "reelscore.ingest_omdb"}


def load_documents(conn: psycopg.Connection, path: str, kind: str, *, observed_at: str | None = None,
                   source: str | None = None) -> LoadSummary:
    if kind not in ADAPTERS:
        raise ValueError(f"unknown adapter {kind!r}: {', '.join(ADAPTERS)}")
    source = source or os.path.basename(path)
    summary = LoadSummary(source)
    t0 = time.perf_counter()
    counts = {"inserted": 0, "updated": 0, "unchanged": 0, "rejected": 0}
    with conn.transaction():
        batch = conn.execute("SELECT reelscore.begin_load(%s, %s)", (source, kind)).fetchone()[0]

        def reject(line_no: int, text: str, reason: str) -> None:
            counts["rejected"] += 1
            conn.execute("""INSERT INTO reelscore.load_rejections (batch_id, source_name, line_no, raw_text, reason)
                            VALUES (%s, %s, %s, %s, %s)""", (batch, source, line_no, text[:2000], reason))

        with open(path, "rb") as fh:
            for line_no, raw in enumerate(fh, 1):
                try:
                    text = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    reject(line_no, raw.decode("utf-8", "backslashreplace"), "invalid encoding: not UTF-8")
                    continue
                if not text.strip():
                    continue
                try:
                    doc = json.loads(text)
                except ValueError as exc:
                    reject(line_no, text, f"malformed line: invalid JSON ({exc.msg})")
                    continue
                try:
                    with conn.transaction():
                        rows = conn.execute(f"SELECT metric_code, status FROM {ADAPTERS[kind]}(%s, %s)",
                                            (json.dumps(doc), observed_at)).fetchall()
                except psycopg.Error as exc:
                    reject(line_no, text, (exc.diag.message_primary or str(exc)).strip())
                    continue
                for code, status in rows:
                    if status.startswith("rejected"):
                        reject(line_no, text, f"{code}: {status.removeprefix('rejected: ')}")
                    else:
                        counts[status] += 1
        conn.execute("""UPDATE reelscore.load_batches SET status = 'done', finished_at = clock_timestamp(),
                          inserted = %s, updated = %s, unchanged = %s, rejected = %s WHERE id = %s""",
                     (counts["inserted"], counts["updated"], counts["unchanged"], counts["rejected"], batch))
    summary.add(batch, counts["inserted"], counts["updated"], counts["unchanged"], counts["rejected"])
    summary.seconds = time.perf_counter() - t0
    return summary
