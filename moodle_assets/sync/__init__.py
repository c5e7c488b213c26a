"""The sync engine: fetch from Moodle, map, and apply to the store, one target at a time.

Dagster-free on purpose, so it is easy to test and to benchmark; `moodle_assets.orchestration.assets`
wraps it in software-defined assets.
"""
