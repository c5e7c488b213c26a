"""The vocabulary every layer shares: the targets, run statuses and triggers, the clock, the
counts a sync reports, and secret redaction. Imports nothing else of the project."""
