"""The team catalog backend: a PostgreSQL database (``psycopg`` 3, the only importer).

Many users and cluster jobs write into one live view, so every write transaction
first takes one advisory lock: index passes and per-run hooks queue like SQLite's
``BEGIN IMMEDIATE`` and never interleave a run's delete-and-insert. Text columns
use the C collation so run ids and ISO times sort as they do in SQLite and a
prefix ``LIKE`` can use the primary key. A password in the URL never appears in
what rexec prints (:attr:`label`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from executor.errors import InfrastructureError, InputError

__all__ = ["PostgresBackend", "redacted"]

WRITE_LOCK = 0x72657865  # "rexe": the advisory lock every catalog write takes
QUERY_TIMEOUT = "30s"  # `rexec catalog query` must not hold a shared server forever


def redacted(url: str) -> str:
    """``url`` without its password, fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _native(sql: str) -> str:
    """The portable queries' ``?`` placeholders as psycopg's ``%s``."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresBackend:
    """A catalog in a PostgreSQL database named by a ``postgresql://`` URL."""

    dialect = "postgresql"
    text_type = 'TEXT COLLATE "C"'
    newest_first = "DESC NULLS LAST"  # PostgreSQL puts NULLs first in a DESC index
    text_value = 'CAST(? AS TEXT) COLLATE "C"'  # a bound text that compares as the columns do

    def __init__(self, url: str) -> None:
        self.url = url
        self.label = redacted(url)
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError as exc:
            raise InfrastructureError(
                f"{self.label}: a PostgreSQL catalog needs psycopg, which is not installed",
                hint="pip install 'rexec[postgresql]' (psycopg 3)",
            ) from exc
        self._psycopg = psycopg
        try:
            self.db = psycopg.connect(
                url, autocommit=True, row_factory=dict_row, connect_timeout=10
            )
        except psycopg.Error as exc:
            raise self.failure(exc) from exc

    def failure(self, exc: BaseException) -> InfrastructureError:
        """A database error as rexec's error, naming the server (without a password)."""
        text = str(exc).strip().replace(self.url, self.label)
        return InfrastructureError(
            f"{self.label}: the catalog database failed ({text})",
            hint="check that the server is up and the URL's user may create tables in it",
        )

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A query's rows as dicts."""
        try:
            cursor = self.db.execute(_native(sql), tuple(args))
            return list(cursor.fetchall()) if cursor.description else []
        except self._psycopg.Error as exc:
            raise self.failure(exc) from exc

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement over many rows, pipelined (inside :meth:`transaction`)."""
        with self.db.cursor() as cursor:
            cursor.executemany(_native(sql), rows)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic write, serialised with every other catalog writer by the advisory lock."""
        try:
            with self.db.transaction():
                self.db.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                yield
        except self._psycopg.Error as exc:
            raise self.failure(exc) from exc

    def version(self) -> int:
        """The catalog schema version (table ``catalog_meta``; 0 for an empty database)."""
        found = self.rows("SELECT to_regclass('catalog_meta') AS t")
        if not found or found[0]["t"] is None:
            return 0
        rows = self.rows("SELECT value FROM catalog_meta WHERE key = 'schema'")
        return int(rows[0]["value"]) if rows else 0

    def set_version(self, version: int) -> None:
        """Record the schema version (inside the schema's transaction)."""
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS catalog_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        self.db.execute(
            "INSERT INTO catalog_meta VALUES ('schema', %s)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(int(version)),),
        )

    def optimize(self) -> None:
        """After a bulk write: refresh the planner's statistics (autovacuum lags behind,
        and without them the lineage walk's joins are planned as scans)."""
        self.rows("ANALYZE runs, inputs, outputs, params, metrics")

    def prefix(self, column: str, value: str) -> tuple[str, list[Any]]:
        """``column`` starts with ``value``: a ``LIKE`` with the value's wildcards escaped."""
        escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"{column} LIKE ? ESCAPE '\\'", [escaped + "%"]

    def read_only(self, sql: str) -> list[dict[str, Any]]:
        """One statement on its own read-only session, with a time limit.

        A prepared statement (the extended protocol) refuses a second statement, so
        ``SELECT 1; COMMIT; DROP …`` cannot leave the read-only transaction.
        """
        psycopg = self._psycopg
        from psycopg.rows import dict_row

        options = f"-c default_transaction_read_only=on -c statement_timeout={QUERY_TIMEOUT}"
        try:
            with psycopg.connect(self.url, options=options, row_factory=dict_row) as db:
                cursor = db.execute(sql.encode(), prepare=True)
                rows = list(cursor.fetchall()) if cursor.description else []
                db.rollback()
                return rows
        except psycopg.OperationalError as exc:
            raise self.failure(exc) from exc
        except psycopg.Error as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(
                f"catalog query: {message}", hint="one read-only PostgreSQL SELECT"
            ) from exc

    def close(self) -> None:
        """Close the connection."""
        self.db.close()
