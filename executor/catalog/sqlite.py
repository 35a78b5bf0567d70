"""The local catalog backend: one SQLite file in the user's cache dir (stdlib ``sqlite3``).

Write transactions are ``BEGIN IMMEDIATE``, so concurrent ``rexec run``s on one host
queue for the write lock instead of failing; WAL lets readers go on meanwhile (and
is why the file must not sit on NFS: every process must share one host's locks).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from executor.errors import InfrastructureError, InputError

__all__ = ["SQLiteBackend"]


def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class SQLiteBackend:
    """A catalog file; ``?`` placeholders as the portable queries are written."""

    dialect = "sqlite"
    text_type = "TEXT"
    text_value = "?"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = str(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            self.db.execute("PRAGMA busy_timeout = 30000")
            self.db.execute("PRAGMA journal_mode = WAL")
        except (OSError, sqlite3.Error) as exc:
            raise self.failure(exc) from exc

    def failure(self, exc: BaseException) -> InfrastructureError:
        """A database error as rexec's error, naming the file."""
        return InfrastructureError(
            f"{self.label}: the catalog database failed ({exc})",
            hint="pass --catalog PATH (or set REXEC_CATALOG) to a writable place",
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
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self.failure(exc) from exc
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def version(self) -> int:
        """The catalog schema version (``PRAGMA user_version``; 0 for a new file)."""
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def set_version(self, version: int) -> None:
        """Record the schema version (inside the schema's transaction)."""
        self.db.execute(f"PRAGMA user_version = {int(version)}")

    def optimize(self) -> None:
        """After a bulk write: refresh the planner's statistics."""
        self.db.execute("PRAGMA optimize")

    def prefix(self, column: str, value: str) -> tuple[str, list[Any]]:
        """``column`` starts with ``value``, as a range on its index (no scan)."""
        return f"{column} >= ? AND {column} < ?", [value, value + "\U0010ffff"]

    def read_only(self, sql: str) -> list[dict[str, Any]]:
        """One statement on a connection that cannot write (sqlite3 runs one at a time)."""
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            db.execute("PRAGMA query_only = ON")
            return _dicts(db.execute(sql))
        except sqlite3.Error as exc:
            raise InputError(f"catalog query: {exc}", hint="one read-only SQLite SELECT") from exc
        finally:
            db.close()

    def close(self) -> None:
        """Close the database."""
        self.db.close()
