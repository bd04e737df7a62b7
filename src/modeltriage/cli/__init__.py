"""The ``modeltriage`` command: argument parsing and printing over the library."""

from modeltriage.cli.main import main

__all__ = ["main"]
