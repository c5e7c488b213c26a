"""`moodle-integration`: the command-line interface (`main`)."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
