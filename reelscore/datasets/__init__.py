"""Loaders of real sample data sets (fetched at set-up time, never committed)."""
