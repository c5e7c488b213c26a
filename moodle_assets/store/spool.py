"""Batches of rows parked in a temporary file, read back in the order they were added.

A sync that must see every row before it writes any (the users step: deactivation needs the
whole list, and e-mail swaps need the old addresses freed first) keeps its rows here instead of
in memory, so its peak stays flat in the number of rows: only one batch is in memory at a time.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterator
from typing import Any


class Spool:
    """Append lists (`add`), iterate them back (`batches`), as often as needed; `close` deletes
    the file (a `with` block does it too). Values are pickled: tuples of str/int/bool/None and
    datetimes, never objects from an untrusted source (the file is private to this process)."""

    def __init__(self, prefix: str = "moodle-spool-") -> None:
        self.file = tempfile.TemporaryFile(prefix=prefix)  # noqa: SIM115 (closed by close())
        self.count = 0

    def add(self, batch: list[Any]) -> None:
        if not batch:
            return
        self.file.seek(0, os.SEEK_END)
        pickle.dump(batch, self.file, protocol=pickle.HIGHEST_PROTOCOL)
        self.count += 1

    def batches(self) -> Iterator[list[Any]]:
        """Every batch added so far, in order; do not `add` while iterating."""
        self.file.flush()
        self.file.seek(0)
        for _ in range(self.count):
            yield pickle.load(self.file)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
