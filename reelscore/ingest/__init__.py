"""Ingestion: the bulk loader (streaming CSV / JSON lines -> COPY -> reelscore.finish_load),
the real data sets of `reelscore demo-data` (vega movies, curated facts), see docs/ingestion.md."""
from reelscore.ingest.loader import LoadSummary, load_file, load_rows, rejections
from reelscore.ingest.parsing import ParseError, copy_row

__all__ = ["LoadSummary", "ParseError", "copy_row", "load_file", "load_rows", "rejections"]
