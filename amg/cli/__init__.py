"""`amg` command line (amg.cli.commands) and the sample media it can put in a DATAROOT (amg.cli.samples)."""

from amg.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
