"""Subcommands of the reelscore CLI: one module per command, each with register(subparsers)."""
