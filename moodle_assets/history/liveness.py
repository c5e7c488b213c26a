"""Liveness locks: is the process responsible for a RUNNING sync row still alive?

While a process is responsible for a sync run row (the `sync` command from the moment it
claims, a run worker from the moment it takes the row), it holds a lock that the operating
system or the database releases when the process dies:

- **PostgreSQL**: a session advisory lock `pg_try_advisory_lock(LOCK_NAMESPACE, <run id>)` on a
  dedicated connection the process keeps open (autocommit, never idle in a transaction). It
  works across hosts and containers: the server drops the lock when the session ends, i.e. at
  once when the process dies (the kernel closes its socket), or after TCP keepalive
  (about 60 s, set on the session) when the whole host vanished. Others see it in `pg_locks`,
  without touching it.
- **SQLite**: an exclusive `flock` on `<database file>.locks/run-<id>.lock`. One host only:
  a lock taken on another host is never trusted (the row's `worker_host` says where it was
  taken), and such rows fall back to the heartbeat timeout.

**Why one lock per run row, not per target.** The question the lock answers is "is this row's
worker alive?", and a per-row lock answers it without ever being in a new owner's way. A
worker stopped with SIGSTOP (or a paused VM) still holds its locks: with a per-target lock the
next sync could not take the target until that process died, so it would need a second path
("the heartbeat timed out, go ahead without the lock") and the lock would then no longer mean
"owner". With a per-row lock a stopped worker's row is closed by the heartbeat timeout like
any other, the new owner claims a new row (new lock), and the old worker's writes are stopped
by fencing (`SyncHistory.fence`): the run row, not the lock, decides who may commit.

A process holds each lock at most once (`hold` is idempotent per process), and a lock is
first taken, then recorded on the row (`worker_lock`), and the row is closed before the lock
is released: so a RUNNING row that names a lock whose lock is free has lost its process.

Each backend checks itself when it takes its first lock: a lock that another session or file
descriptor cannot see (a transaction-pooling proxy in front of PostgreSQL, a filesystem whose
`flock` is a no-op) is not used at all, and the rows are judged by heartbeat only.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# The first key of our two-key advisory locks: CRC-32 of a fixed name, kept within int4.
LOCK_NAMESPACE = zlib.crc32(b"moodle-integration/sync-run") & 0x7FFFFFFF
# How long taking a lock may retry: only a prober's momentary look can be in the way.
HOLD_RETRY_S = 1.0
# Server-side TCP keepalive of the PostgreSQL lock session: a vanished host's lock is dropped
# after about idle + interval * count seconds.
PG_KEEPALIVE = {"tcp_keepalives_idle": 30, "tcp_keepalives_interval": 10, "tcp_keepalives_count": 3}


def this_host() -> str:
    return socket.gethostname()[:255]


class Liveness:
    """No liveness locks (e.g. an in-memory SQLite database): every row is judged by heartbeat."""

    kind = "none"

    def hold(self, run_id: int, session: Session | None = None) -> str | None:
        """Take the lock of `run_id` for this process (idempotent). Returns the lock's description,
        or None when no lock can be held (the row is then judged by heartbeat only)."""
        return None

    def held_here(self, run_id: int) -> bool:
        return False

    def release(self, run_id: int) -> None:
        """Let the lock of `run_id` go (nothing if this process does not hold it)."""

    def release_all(self) -> None:
        for run_id in list(self.held_ids()):
            self.release(run_id)

    def held_ids(self) -> list[int]:
        return []

    def probe(self, rows: list[tuple[int, str | None]], session: Session | None = None) -> dict[int, bool | None]:
        """For each (run id, host that took it): True when some live process holds its lock
        (this one included), False when the lock is free, None when this process cannot tell."""
        return {run_id: None for run_id, _host in rows}

    def tidy(self, run_id: int) -> None:
        """Clean up after a row whose lock was found free (closed as worker lost)."""

    def check(self) -> bool:
        """Make sure the locks this process holds are still held (re-taking them if the
        database session carrying them was lost); False when some could not be kept."""
        return True


class PostgresLiveness(Liveness):
    kind = "postgresql"

    def __init__(self, engine: Engine):
        self.engine = engine
        self._conn: Any = None
        self._backend_pid: int | None = None
        self._held: dict[int, str] = {}
        self._mutex = threading.RLock()
        self._usable: bool | None = None  # None: not checked yet

    # -- the dedicated session --
    def _connect(self) -> Any:
        dialect = self.engine.dialect
        cargs, cparams = dialect.create_connect_args(self.engine.url)
        cparams = dict(cparams)
        cparams.setdefault("application_name", f"moodle-integration liveness [{os.getpid()}]")
        cparams.setdefault("connect_timeout", 10)
        # client-side keepalive too: a dead server is noticed by the next check
        cparams.setdefault("keepalives", 1)
        cparams.setdefault("keepalives_idle", 30)
        cparams.setdefault("keepalives_interval", 10)
        cparams.setdefault("keepalives_count", 3)
        conn = dialect.loaded_dbapi.connect(*cargs, **cparams)
        conn.autocommit = True  # never idle in a transaction; the lock is session-level
        settings = {**PG_KEEPALIVE, "idle_session_timeout": 0, "statement_timeout": 0}
        with conn.cursor() as cursor:
            for name, value in settings.items():
                try:
                    cursor.execute(f"SET {name} = {int(value)}")
                except dialect.loaded_dbapi.Error:  # e.g. idle_session_timeout before PostgreSQL 14
                    pass
            cursor.execute("SELECT pg_backend_pid()")
            self._backend_pid = int(cursor.fetchone()[0])
        return conn

    def _session(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
        self._conn = None

    def _try_lock(self, run_id: int) -> bool:
        deadline = time.monotonic() + HOLD_RETRY_S
        while True:
            with self._session().cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_NAMESPACE, run_id))
                if cursor.fetchone()[0]:
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def _unlock(self, run_id: int) -> None:
        if self._conn is None or self._conn.closed:
            return
        try:
            with self._conn.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, run_id))
        except Exception:  # the session is gone, and the lock with it
            self._drop()

    def _describe(self, run_id: int) -> str:
        return f"pg_advisory_lock({LOCK_NAMESPACE}, {run_id}) held by backend pid {self._backend_pid}"

    # -- the interface --
    def hold(self, run_id: int, session: Session | None = None) -> str | None:
        with self._mutex:
            if run_id in self._held:
                return self._held[run_id]
            if self._usable is False:
                return None
            try:
                if not self._try_lock(run_id):
                    log.warning("liveness lock of sync run #%s is held by another session", run_id)
                    return None
            except Exception as exc:
                log.warning("cannot take the liveness lock of sync run #%s: %s", run_id, exc)
                self._drop()
                return None
            if self._usable is None:
                # Seen from another session? (A transaction-pooling proxy would hide it.)
                seen = self.probe([(run_id, None)], session).get(run_id)
                self._usable = bool(seen)
                if not self._usable:
                    log.warning(
                        "liveness locks are not visible across database sessions (a transaction-pooling proxy?): "
                        "crashed syncs are detected by the heartbeat timeout only"
                    )
                    self._unlock(run_id)
                    return None
            description = self._describe(run_id)
            self._held[run_id] = description
            return description

    def held_here(self, run_id: int) -> bool:
        with self._mutex:
            return run_id in self._held

    def held_ids(self) -> list[int]:
        with self._mutex:
            return list(self._held)

    def release(self, run_id: int) -> None:
        with self._mutex:
            if self._held.pop(run_id, None) is None:
                return
            self._unlock(run_id)
            if not self._held:
                self._drop()

    def probe(self, rows: list[tuple[int, str | None]], session: Session | None = None) -> dict[int, bool | None]:
        ids = [run_id for run_id, _host in rows]
        if not ids:
            return {}
        query = text(
            "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2"
            " AND classid::bigint = :namespace AND objid::bigint IN :ids"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).bindparams(bindparam("ids", expanding=True))
        params = {"namespace": LOCK_NAMESPACE, "ids": ids}
        if session is not None:
            held = {int(v) for v in session.execute(query, params).scalars()}
        else:
            with self.engine.connect() as connection:
                held = {int(v) for v in connection.execute(query, params).scalars()}
        return {run_id: run_id in held for run_id in ids}

    def check(self) -> bool:
        with self._mutex:
            if not self._held:
                return True
            try:
                with self._session().cursor() as cursor:
                    cursor.execute("SELECT 1")
                return True
            except Exception as exc:
                log.warning("the liveness session was lost (%s): taking the locks again", exc)
                self._drop()
            kept = True
            for run_id in list(self._held):
                try:
                    if self._try_lock(run_id):
                        self._held[run_id] = self._describe(run_id)
                        continue
                except Exception:
                    self._drop()
                kept = False
            return kept


class FileLiveness(Liveness):
    kind = "file"

    def __init__(self, database: Path):
        self.directory = database.with_name(database.name + ".locks")
        self._held: dict[int, tuple[int, str]] = {}
        self._mutex = threading.RLock()
        self._usable: bool | None = None

    def path(self, run_id: int) -> Path:
        return self.directory / f"run-{run_id}.lock"

    def hold(self, run_id: int, session: Session | None = None) -> str | None:
        with self._mutex:
            if run_id in self._held:
                return self._held[run_id][1]
            if self._usable is False:
                return None
            path = self.path(run_id)
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                log.warning("cannot create the liveness lock %s: %s", path, exc)
                return None
            deadline = time.monotonic() + HOLD_RETRY_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        os.close(fd)
                        log.warning("liveness lock %s is held by another process", path)
                        return None
                    time.sleep(0.05)
                except OSError as exc:
                    os.close(fd)
                    log.warning("cannot lock %s: %s", path, exc)
                    return None
            try:  # for whoever looks: which process holds it
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} on host {this_host()}\n".encode())
            except OSError:
                pass
            if self._usable is None:
                self._usable = self._probe_one(run_id) is True
                if not self._usable:
                    log.warning(
                        "file locks under %s are not exclusive on this filesystem: crashed syncs are detected by "
                        "the heartbeat timeout only",
                        self.directory,
                    )
                    os.close(fd)
                    return None
            description = f"flock {path} on host {this_host()}"
            self._held[run_id] = (fd, description)
            return description

    def held_here(self, run_id: int) -> bool:
        with self._mutex:
            return run_id in self._held

    def held_ids(self) -> list[int]:
        with self._mutex:
            return list(self._held)

    def release(self, run_id: int) -> None:
        with self._mutex:
            entry = self._held.pop(run_id, None)
            if entry is None:
                return
            try:
                os.unlink(self.path(run_id))  # while still held: nobody can take a stale file for live
            except OSError:
                pass
            os.close(entry[0])

    def _probe_one(self, run_id: int) -> bool | None:
        try:
            fd = os.open(self.path(run_id), os.O_RDONLY)
        except FileNotFoundError:
            return False  # released (and removed) by its holder
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError as exc:
            return None if exc.errno != errno.EWOULDBLOCK else True
        finally:
            os.close(fd)  # closing drops our shared lock, if we got it
        return False

    def probe(self, rows: list[tuple[int, str | None]], session: Session | None = None) -> dict[int, bool | None]:
        here = this_host()
        # A file lock says nothing about a process on another host.
        return {run_id: (self._probe_one(run_id) if host in (None, here) else None) for run_id, host in rows}

    def tidy(self, run_id: int) -> None:
        path = self.path(run_id)
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(path)
        except OSError:
            pass
        finally:
            os.close(fd)


_registry: dict[tuple[int, str], Liveness] = {}
_registry_lock = threading.Lock()


def liveness_for(engine: Engine) -> Liveness:
    """This process's liveness locks on `engine`'s database (one object per database and process)."""
    url = engine.url.render_as_string(hide_password=False)
    key = (os.getpid(), url)
    with _registry_lock:
        found = _registry.get(key)
        if found is None:
            found = _registry[key] = _build(engine)
        return found


def _build(engine: Engine) -> Liveness:
    backend = engine.dialect.name
    if backend == "postgresql":
        return PostgresLiveness(engine)
    if backend == "sqlite":
        database = make_url(engine.url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            return FileLiveness(Path(database).expanduser().resolve())
    return Liveness()
