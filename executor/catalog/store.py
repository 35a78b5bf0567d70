"""The catalog's SQLite database: schema, writes of one record's rows, and the queries.

A cache of the signed records, never the truth: every row comes from a
``statement.json`` (read through :mod:`executor.record.reader`, which checks
the files beside it against their signed digests) and ``rexec catalog index
--rebuild`` recreates it identically. It lives in the user's cache dir, not
beside a runs dir that may be on NFS, where SQLite's locking is unreliable.

Lineage is a bipartite graph, artifact → run → artifact, held in two tables
(``inputs`` and ``outputs``, both keyed by digest) and walked with recursive
CTEs; a run whose output equals its input cannot loop (``UNION``, not
``UNION ALL``).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from executor.errors import InfrastructureError, InputError

__all__ = ["SCHEMA_VERSION", "Catalog"]

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    statement_sha256 TEXT NOT NULL,
    name TEXT, kind TEXT, status TEXT, exit_code INTEGER,
    started TEXT, finished TEXT, seed INTEGER,
    image TEXT, code_commit TEXT, code_tree TEXT,
    invoker TEXT, engine TEXT, signed INTEGER,
    verification TEXT, replay_of TEXT, derived_from TEXT,
    path TEXT NOT NULL, partial TEXT
);
CREATE TABLE IF NOT EXISTS inputs (
    run_id TEXT NOT NULL, name TEXT NOT NULL, digest TEXT NOT NULL, role TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE INDEX IF NOT EXISTS inputs_by_digest ON inputs (digest);
CREATE TABLE IF NOT EXISTS outputs (
    run_id TEXT NOT NULL, name TEXT NOT NULL, digest TEXT NOT NULL, role TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE INDEX IF NOT EXISTS outputs_by_digest ON outputs (digest);
CREATE TABLE IF NOT EXISTS params (
    run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT, num REAL, overridden INTEGER,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, file TEXT NOT NULL, key TEXT NOT NULL, value REAL,
    file_digest TEXT, PRIMARY KEY (run_id, file, key)
);
"""
TABLES = ("runs", "inputs", "outputs", "params", "metrics")


class Catalog:
    """One SQLite catalog file: :meth:`put` writes a record's rows in one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            self.db.execute("PRAGMA busy_timeout = 30000")
            self.db.execute("PRAGMA journal_mode = WAL")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise InputError(
                    f"{path}: catalog schema {version}, this rexec reads {SCHEMA_VERSION}",
                    hint="rebuild it from the records: rexec catalog index --rebuild RUNS_DIR",
                )
            self.db.executescript(SCHEMA)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            raise InfrastructureError(
                f"{path}: cannot open the catalog ({exc})",
                hint="pass --catalog PATH (or set REXEC_CATALOG) to a writable place",
            ) from exc

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: concurrent indexers wait for each other, never interleave."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def put(self, rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Replace one run's rows (``rows["runs"]`` holds exactly one) in one transaction."""
        self.put_many([rows])

    def put_many(self, batch: Sequence[Mapping[str, Sequence[Mapping[str, Any]]]]) -> None:
        """Replace several runs' rows in one transaction (an index pass, a benchmark)."""
        with self.transaction() as db:
            for rows in batch:
                (run,) = rows["runs"]
                for table in TABLES:
                    db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run["run_id"],))
                for table in TABLES:
                    for row in rows.get(table, ()):
                        columns = ", ".join(row)
                        marks = ", ".join("?" for _ in row)
                        db.execute(
                            f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(row.values())
                        )

    def clear(self) -> None:
        """Remove every row (``index --rebuild``)."""
        with self.transaction() as db:
            for table in TABLES:
                db.execute(f"DELETE FROM {table}")

    def known(self) -> dict[str, str]:
        """Every indexed run: run id → statement sha256 (the incremental index skips them)."""
        return dict(self.db.execute("SELECT run_id, statement_sha256 FROM runs").fetchall())

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A query's rows as dicts."""
        cursor = self.db.execute(sql, tuple(args))
        names = [d[0] for d in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def read_only_query(self, sql: str) -> list[dict[str, Any]]:
        """``rexec catalog query``: any SELECT, on a connection that cannot write."""
        uri = f"file:{self.path}?mode=ro"
        db = sqlite3.connect(uri, uri=True)
        try:
            db.execute("PRAGMA query_only = ON")
            cursor = db.execute(sql)
            names = [d[0] for d in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        except sqlite3.Error as exc:
            raise InputError(f"catalog query: {exc}", hint="a read-only SQLite SELECT") from exc
        finally:
            db.close()

    def walk(self, digests: Sequence[str], *, direction: str) -> list[str]:
        """The runs reachable from ``digests``: upstream (who produced them, from what)
        or downstream (who consumed them, producing what)."""
        if direction == "upstream":  # who produced them, and from what, back to raw data
            walk = """
            WITH RECURSIVE art(digest) AS (
                SELECT value FROM json_each(?)
                UNION
                SELECT i.digest FROM art JOIN outputs o ON o.digest = art.digest
                    JOIN inputs i ON i.run_id = o.run_id
            )
            SELECT DISTINCT o.run_id FROM art JOIN outputs o ON o.digest = art.digest"""
        else:  # who consumed them, producing what, down to the last model
            walk = """
            WITH RECURSIVE art(digest) AS (
                SELECT value FROM json_each(?)
                UNION
                SELECT o.digest FROM art JOIN inputs i ON i.digest = art.digest
                    JOIN outputs o ON o.run_id = i.run_id
            )
            SELECT DISTINCT i.run_id FROM art JOIN inputs i ON i.digest = art.digest"""
        return [r["run_id"] for r in self.rows(walk, [json.dumps(list(digests))])]

    def graph(self, run_ids: Sequence[str]) -> dict[str, Any]:
        """These runs with their inputs and outputs: the nodes and edges to draw."""
        marks = ", ".join("?" for _ in run_ids) or "NULL"
        runs = self.rows(f"SELECT * FROM runs WHERE run_id IN ({marks}) ORDER BY started", run_ids)
        ins = self.rows(f"SELECT * FROM inputs WHERE run_id IN ({marks})", run_ids)
        outs = self.rows(f"SELECT * FROM outputs WHERE run_id IN ({marks})", run_ids)
        return {"runs": runs, "inputs": ins, "outputs": outs}
