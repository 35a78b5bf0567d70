"""The local catalog backend: one SQLite file in the user's cache dir (stdlib ``sqlite3``).

Write transactions are ``BEGIN IMMEDIATE``, so concurrent ``rexec run``s on one host
queue for the write lock instead of failing; WAL lets readers go on meanwhile (and
is why the file must not sit on NFS: every process must share one host's locks).
The file is opened by URI (its path quoted: a ``?`` in a directory name is a name),
only ever a regular file, and created only by a writer. ``catalog query`` runs on a
read-only connection with a time limit, and SIGINT or SIGTERM stops it mid-statement.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from executor.errors import InfrastructureError, InputError, Interrupted

__all__ = ["QUERY_TIMEOUT_S", "SQLiteBackend"]

QUERY_TIMEOUT_S = 30.0  # `rexec catalog query`, as on PostgreSQL
PROGRESS_STEPS = 10_000  # virtual-machine steps between checks of the clock and signals


def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _uri(path: Path, mode: str) -> str:
    return f"file:{quote(str(path.absolute()))}?mode={mode}"


class SQLiteBackend:
    """A catalog file; ``?`` placeholders as the portable queries are written."""

    dialect = "sqlite"
    text_type = "TEXT"
    newest_first = "DESC"  # NULLs sort lowest: last when descending
    text_value = "?"

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        self.label = str(path)
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            mode = None
        except OSError as exc:
            raise self.failure(exc) from exc
        if mode is not None and not stat.S_ISREG(mode):
            raise InputError(
                f"{path}: not a regular file, so not a catalog",
                hint="pass --catalog PATH (or set REXEC_CATALOG) to a SQLite file",
            )
        if mode is None and not create:
            raise InputError(
                f"{path}: no catalog here yet",
                hint="runs are indexed as they finish; `rexec catalog index RUNS_DIR` adds "
                "existing records (or name another --catalog)",
            )
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(
                _uri(path, "rwc" if create else "rw"), uri=True, timeout=30.0, isolation_level=None
            )
            self.db.execute("PRAGMA busy_timeout = 30000")
            self.db.execute("PRAGMA journal_mode = WAL")
        except (OSError, sqlite3.Error) as exc:
            raise self.failure(exc) from exc

    def failure(self, exc: BaseException) -> InfrastructureError:
        """A database error as rexec's error, naming the file."""
        return InfrastructureError(
            f"{self.label}: the catalog database failed ({exc})",
            hint="pass --catalog PATH (or set REXEC_CATALOG) to a writable place with free "
            "space; a damaged file is rebuilt by `rexec catalog index --rebuild RUNS_DIR`",
        )

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A query's rows as dicts."""
        try:
            return _dicts(self.db.execute(sql, tuple(args)))
        except sqlite3.Error as exc:
            raise self.failure(exc) from exc

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement over many rows (inside :meth:`transaction`)."""
        try:
            self.db.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise self.failure(exc) from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic write: concurrent writers wait for each other, never interleave."""
        self._execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            raise
        try:
            self.db.execute("COMMIT")  # a full disk says so here
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            raise self.failure(exc) from exc

    def _execute(self, sql: str) -> Any:
        try:
            return self.db.execute(sql)
        except sqlite3.Error as exc:
            raise self.failure(exc) from exc

    def version(self) -> int:
        """The catalog schema version (``PRAGMA user_version``; 0 for a new file)."""
        return int(self._execute("PRAGMA user_version").fetchone()[0])

    def set_version(self, version: int) -> None:
        """Record the schema version (inside the schema's transaction)."""
        self._execute(f"PRAGMA user_version = {int(version)}")

    def optimize(self) -> None:
        """After a bulk write: refresh the planner's statistics."""
        self._execute("PRAGMA optimize")

    def prefix(self, column: str, value: str) -> tuple[str, list[Any]]:
        """``column`` starts with ``value``, as a range on its index (no scan)."""
        return f"{column} >= ? AND {column} < ?", [value, value + "\U0010ffff"]

    def read_only(self, sql: str) -> list[dict[str, Any]]:
        """One statement on a connection that cannot write (sqlite3 runs one at a time),
        stopped after :data:`QUERY_TIMEOUT_S` or by SIGINT/SIGTERM, even mid-statement."""
        stop: list[str] = []
        deadline = time.monotonic() + QUERY_TIMEOUT_S

        def flag(signum: int, frame: object) -> None:
            stop.append(signal.Signals(signum).name)

        def progress() -> int:  # a non-zero answer makes SQLite abandon the statement
            return int(bool(stop) or time.monotonic() > deadline)

        main = threading.current_thread() is threading.main_thread()
        signals = (signal.SIGINT, signal.SIGTERM) if main else ()
        previous = {s: signal.signal(s, flag) for s in signals}
        db = sqlite3.connect(_uri(self.path, "ro"), uri=True)
        try:
            db.set_progress_handler(progress, PROGRESS_STEPS)
            db.execute("PRAGMA query_only = ON")
            return _dicts(db.execute(sql))
        except sqlite3.Error as exc:
            if stop:
                raise Interrupted(stop[0]) from exc
            if time.monotonic() > deadline:
                raise InputError(
                    f"catalog query: stopped after {QUERY_TIMEOUT_S:g} s",
                    hint="narrow the query (a WHERE on an indexed column, a LIMIT)",
                ) from exc
            raise InputError(f"catalog query: {exc}", hint="one read-only SQLite SELECT") from exc
        finally:
            db.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def close(self) -> None:
        """Close the database."""
        self.db.close()
