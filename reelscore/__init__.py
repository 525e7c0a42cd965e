"""reelscore: unified movie metrics inside PostgreSQL. This package is the thin client:
configuration, schema installation and the `reelscore` command line."""

__version__ = "0.1.0"
