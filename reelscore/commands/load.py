"""reelscore load FILE: bulk-load raw metric values from CSV or JSON lines (long or wide)."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "load", help="bulk-load raw metric values from a CSV or JSON-lines file (see docs/ingestion.md)",
        description="Stream FILE into a staging table with COPY, quarantine bad rows, merge the rest into "
                    "metric_values in one statement. Long files: movie_id,metric_code,raw_value[,observed_at"
                    "[,source_record]]. Wide files: a movie column and one column per metric (mapped with --map "
                    "or --mapping). Exits 1 if any row was rejected.")
    p.add_argument("file", help="the input file, or - for standard input")
    p.add_argument("--format", choices=("csv", "jsonl"), help="input format (default: from the file name)")
    p.add_argument("--adapter", choices=("tmdb", "omdb"),
                   help="the file holds TMDb movie-details or OMDb documents, one JSON object per line: "
                        "movies are found or created, their metrics upserted (reelscore.ingest_tmdb/ingest_omdb)")
    p.add_argument("--layout", choices=("auto", "long", "wide"), default="auto",
                   help="one value per line (long) or one movie per line (wide); default: from the header")
    p.add_argument("--map", action="append", default=[], metavar="COLUMN=METRIC",
                   help="wide files: map a column to a metric code ('COLUMN=' ignores it); repeatable")
    p.add_argument("--mapping", metavar="FILE.json",
                   help='wide files: {"columns": {"IMDB Rating": "imdb_rating", ...}, "id_column": ..., '
                        '"movie_key": ...}')
    p.add_argument("--id-column", help="wide files: the column holding the movie id")
    p.add_argument("--movie-key", choices=("id", "tmdb_id", "imdb_id", "movielens_id"),
                   help="what the movie column holds (default: from its header name, else reelscore movie id)")
    p.add_argument("--ignore-unmapped", action="store_true", help="wide files: skip columns that map to no metric")
    p.add_argument("--observed-at", help="observation time for rows without one (ISO 8601; default: now)")
    p.add_argument("--batch-rows", type=int, default=0,
                   help="commit every N values as its own batch (default 0: the whole file is one batch)")
    p.add_argument("--source", help="name recorded in load_batches (default: the file name)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--show", type=int, default=10, help="how many rejected rows to print (default 10)")
    p.set_defaults(func=run)


def parse_mapping(args) -> tuple[dict[str, str | None], str | None, str | None]:
    from reelscore.cli import CommandError

    mapping: dict[str, str | None] = {}
    id_column = args.id_column
    movie_key = args.movie_key
    if args.mapping:
        try:
            doc = json.loads(Path(args.mapping).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CommandError(f"--mapping {args.mapping}: {exc}")
        if not isinstance(doc, dict) or not isinstance(doc.get("columns", {}), dict):
            raise CommandError(f"--mapping {args.mapping}: expected {{\"columns\": {{\"COLUMN\": \"metric_code\"}}}}")
        mapping.update({k: (v or None) for k, v in doc.get("columns", {}).items()})
        id_column = id_column or doc.get("id_column")
        movie_key = movie_key or doc.get("movie_key")
    for item in args.map:
        if "=" not in item:
            raise CommandError(f"--map {item!r}: expected COLUMN=metric_code")
        col, code = item.split("=", 1)
        mapping[col] = code.strip() or None
    return mapping, id_column, movie_key


def run(args) -> int:
    from reelscore.cli import CommandError
    from reelscore.db import connect, set_actor
    from reelscore.ingest.loader import load_file, rejections
    from reelscore.ingest.parsing import ParseError

    if args.batch_rows < 0:
        raise CommandError("--batch-rows must be 0 (one batch) or positive")
    mapping, id_column, movie_key = parse_mapping(args)
    stdin = args.file == "-"
    if not stdin and not Path(args.file).is_file():
        raise CommandError(f"no such file: {args.file}")
    with connect() as conn:
        set_actor(conn, None, f"reelscore load {args.file}")
        conn.commit()
        if args.adapter:
            if stdin:
                raise CommandError("--adapter reads a file, not standard input")
            from reelscore.ingest.adapters import load_documents
            summary = load_documents(conn, args.file, args.adapter, observed_at=args.observed_at, source=args.source)
        try:
            summary = summary if args.adapter else load_file(conn, args.file, fmt=args.format or ("csv" if stdin else None), layout=args.layout,
                                mapping=mapping, id_column=id_column, movie_key=movie_key,
                                ignore_unmapped=args.ignore_unmapped, batch_rows=args.batch_rows,
                                observed_at=args.observed_at, source=args.source or ("stdin" if stdin else None),
                                progress=not args.no_progress and sys.stderr.isatty(),
                                stream=sys.stdin.buffer if stdin else None)
        except ParseError as exc:
            raise CommandError(str(exc))
        print(f"loaded {summary.line()}")
        if summary.rejected:
            shown = rejections(conn, summary.batches, args.show)
            for line_no, reason, raw in shown:
                where = f"line {line_no}" if line_no is not None else "row"
                print(f"  rejected {where}: {reason}  [{(raw or '')[:120]}]", file=sys.stderr)
            ids = ", ".join(str(b) for b in summary.batches)
            print(f"{summary.rejected:,} rows rejected; all of them: "
                  f"SELECT * FROM reelscore.load_rejections WHERE batch_id IN ({ids})", file=sys.stderr)
            return 1
    return 0
