"""Batches of rows parked in a temporary file, read back in the order they were added.

A sync that must see every row before it writes any (the users step: deactivation needs the
whole list, and e-mail swaps need the old addresses freed first) keeps its rows here instead of
in memory, so its peak stays flat in the number of rows: only one batch is in memory at a time.
"""

from __future__ import annotations

import marshal
import os
import pickle
import tempfile
from collections.abc import Iterator
from typing import Any


class Spool:
    """Append lists (`add`), iterate them back (`batches`), as often as needed; `close` deletes
    the file (a `with` block does it too). Values are pickled (datetimes allowed), or with
    `plain=True` marshalled: 2-3x faster, for lists of tuples of str/int/float/bool/None and
    frozensets. Never objects from an untrusted source: the file is private to this process."""

    def __init__(self, prefix: str = "moodle-spool-", *, plain: bool = False) -> None:
        self.file = tempfile.TemporaryFile(prefix=prefix)  # noqa: SIM115 (closed by close())
        self.count = 0
        self.plain = plain

    def add(self, batch: list[Any]) -> None:
        if not batch:
            return
        blob = marshal.dumps(batch) if self.plain else pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        self.file.seek(0, os.SEEK_END)
        self.file.write(len(blob).to_bytes(8, "little"))
        self.file.write(blob)
        self.count += 1

    def batches(self) -> Iterator[list[Any]]:
        """Every batch added so far, in order; do not `add` while iterating."""
        self.file.flush()
        self.file.seek(0)
        # Whole blobs, then loads(): marshal.load() on a file reads it in many tiny pieces.
        loads = marshal.loads if self.plain else pickle.loads
        for _ in range(self.count):
            size = int.from_bytes(self.file.read(8), "little")
            yield loads(self.file.read(size))

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
