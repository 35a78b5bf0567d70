"""The catalog's database: schema, writes of one record's rows, and the queries.

A cache of the signed records, never the truth: every row comes from a
``statement.json`` (read through :mod:`executor.record.reader`, which checks
the files beside it against their signed digests) and ``rexec catalog index
--rebuild`` recreates it identically. Two backends run the same portable SQL
(``?`` placeholders, no engine-only functions): a SQLite file in the user's
cache dir (:mod:`.sqlite`, not beside a runs dir that may be on NFS) and a
PostgreSQL database a team shares (:mod:`.postgres`).

Lineage is a bipartite graph, artifact → run → artifact, held in two tables
(``inputs`` and ``outputs``, both keyed by digest) and walked with recursive
CTEs; a run whose output equals its input cannot loop (``UNION``, not
``UNION ALL``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from executor.errors import InputError

__all__ = ["SCHEMA_VERSION", "Backend", "Catalog"]

SCHEMA_VERSION = 3
# {text} is the backend's text type (PostgreSQL: the C collation, to sort as SQLite does).
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id {text} PRIMARY KEY,
    statement_sha256 {text} NOT NULL,
    name {text}, kind {text}, status {text}, exit_code INTEGER,
    started {text}, finished {text}, seed BIGINT,
    image {text}, code_commit {text}, code_tree {text},
    invoker {text}, engine {text}, signed INTEGER,
    verification {text}, replay_of {text}, derived_from {text},
    path {text} NOT NULL, partial {text}, signer_kind {text}, signer {text}, stage_key {text},
    purpose {text}, verdict {text}
);
CREATE INDEX IF NOT EXISTS runs_by_started ON runs (started);
CREATE INDEX IF NOT EXISTS runs_by_stage_key ON runs (stage_key);
CREATE TABLE IF NOT EXISTS inputs (
    run_id {text} NOT NULL, name {text} NOT NULL, digest {text} NOT NULL, role {text} NOT NULL,
    from_run {text}, PRIMARY KEY (run_id, name)
);
CREATE INDEX IF NOT EXISTS inputs_by_digest ON inputs (digest);
CREATE TABLE IF NOT EXISTS outputs (
    run_id {text} NOT NULL, name {text} NOT NULL, digest {text} NOT NULL, role {text} NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE INDEX IF NOT EXISTS outputs_by_digest ON outputs (digest);
CREATE TABLE IF NOT EXISTS params (
    run_id {text} NOT NULL, key {text} NOT NULL, value {text}, num DOUBLE PRECISION,
    overridden INTEGER, PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id {text} NOT NULL, file {text} NOT NULL, key {text} NOT NULL, value DOUBLE PRECISION,
    file_digest {text}, PRIMARY KEY (run_id, file, key)
);
CREATE INDEX IF NOT EXISTS metrics_by_key ON metrics (key, value);
CREATE TABLE IF NOT EXISTS supersedes (
    run_id {text} NOT NULL, old_run {text} NOT NULL, regeneration {text},
    PRIMARY KEY (run_id, old_run)
);
CREATE INDEX IF NOT EXISTS supersedes_by_old ON supersedes (old_run);
CREATE TABLE IF NOT EXISTS approvals (
    run_id {text} NOT NULL, file {text} NOT NULL, approver_kind {text}, approver {text},
    result {text}, verified_at {text}, policy {text}, PRIMARY KEY (run_id, file)
);
CREATE TABLE IF NOT EXISTS corrections (
    run_id {text} NOT NULL, old_digest {text} NOT NULL, new_digest {text} NOT NULL,
    PRIMARY KEY (run_id, old_digest)
);
CREATE INDEX IF NOT EXISTS params_by_key ON params (key, num);
"""
# What an older catalog's tables need to read as this version (additive only: rows stay
# valid); the schema's CREATE … IF NOT EXISTS then adds the new tables and indexes.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE runs ADD COLUMN signer_kind {text}",
        "ALTER TABLE runs ADD COLUMN signer {text}",
    ),
    2: (
        "ALTER TABLE runs ADD COLUMN stage_key {text}",
        "ALTER TABLE runs ADD COLUMN purpose {text}",
        "ALTER TABLE runs ADD COLUMN verdict {text}",
        "ALTER TABLE inputs ADD COLUMN from_run {text}",
    ),
}
TABLES = (
    "runs",
    "inputs",
    "outputs",
    "params",
    "metrics",
    "supersedes",
    "corrections",
    "approvals",
)


class Backend(Protocol):
    """What a database gives the catalog (:mod:`.sqlite`, :mod:`.postgres`)."""

    dialect: str
    label: str  # where it is, fit to print (no password)
    text_type: str
    text_value: str  # a placeholder typed as the text columns (collation included)

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A query's rows as dicts."""

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement over many rows."""

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """One atomic write, serialised with every other writer."""

    def version(self) -> int:
        """The stored schema version, 0 for an empty database."""

    def set_version(self, version: int) -> None:
        """Store the schema version."""

    def optimize(self) -> None:
        """Refresh the query planner's statistics after a bulk write."""

    def prefix(self, column: str, value: str) -> tuple[str, list[Any]]:
        """A clause for ``column`` starting with ``value``, and its arguments."""

    def read_only(self, sql: str) -> list[dict[str, Any]]:
        """One user statement that cannot write."""

    def close(self) -> None:
        """Close the connection."""


def like_pattern(value: str) -> str:
    """``value`` as a LIKE pattern matching itself literally (wildcards escaped)."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Catalog:
    """One catalog: :meth:`put` writes a record's rows in one transaction."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.label = backend.label
        if backend.version() != SCHEMA_VERSION:  # a reader of a current catalog never writes
            self._create_or_migrate()

    def _create_or_migrate(self) -> None:
        """Create the tables, or bring an older catalog's up to date, in one transaction."""
        backend = self.backend
        with backend.transaction():
            version = backend.version()  # again: another process may have done it meanwhile
            if version not in (0, SCHEMA_VERSION, *MIGRATIONS):
                raise InputError(
                    f"{self.label}: catalog schema {version}, this rexec reads {SCHEMA_VERSION}",
                    hint="rebuild it from the records: rexec catalog index --rebuild RUNS_DIR",
                )
            text = backend.text_type
            for old in range(version or SCHEMA_VERSION, SCHEMA_VERSION):
                for statement in MIGRATIONS[old]:
                    backend.rows(statement.format(text=text))
            if version != SCHEMA_VERSION:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        backend.rows(statement.format(text=text))
                backend.set_version(SCHEMA_VERSION)

    def close(self) -> None:
        """Close the database."""
        self.backend.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic write: concurrent indexers wait for each other, never interleave."""
        with self.backend.transaction():
            yield

    def put(self, rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Replace one run's rows (``rows["runs"]`` holds exactly one) in one transaction."""
        self.put_many([rows])

    def put_many(self, batch: Sequence[Mapping[str, Sequence[Mapping[str, Any]]]]) -> None:
        """Replace several runs' rows in one transaction (an index pass, a benchmark)."""
        run_ids = [[run["run_id"]] for rows in batch for run in rows["runs"]]
        grouped: dict[tuple[str, tuple[str, ...]], list[tuple[Any, ...]]] = {}
        for rows in batch:
            for table in TABLES:
                for row in rows.get(table, ()):
                    grouped.setdefault((table, tuple(row)), []).append(tuple(row.values()))
        with self.backend.transaction():
            for table in TABLES:
                self.backend.execute_many(f"DELETE FROM {table} WHERE run_id = ?", run_ids)
            for (table, columns), values in grouped.items():
                marks = ", ".join("?" for _ in columns)
                self.backend.execute_many(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values
                )

    def optimize(self) -> None:
        """After an index pass or a bulk load: let the planner see the new rows."""
        self.backend.optimize()

    def clear(self) -> None:
        """Remove every row (``index --rebuild``)."""
        with self.backend.transaction():
            for table in TABLES:
                self.backend.rows(f"DELETE FROM {table}")

    def approval_files(self) -> dict[str, set[str]]:
        """The approval files indexed for each run (an approval added later re-indexes it)."""
        found: dict[str, set[str]] = {}
        for r in self.rows("SELECT run_id, file FROM approvals"):
            found.setdefault(r["run_id"], set()).add(r["file"])
        return found

    def known(self) -> dict[str, str]:
        """Every indexed run: run id → statement sha256 (the incremental index skips them)."""
        found = self.rows("SELECT run_id, statement_sha256 FROM runs")
        return {r["run_id"]: r["statement_sha256"] for r in found}

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A query's rows as dicts."""
        return self.backend.rows(sql, args)

    def read_only_query(self, sql: str) -> list[dict[str, Any]]:
        """``rexec catalog query``: one SELECT, on a connection that cannot write."""
        return self.backend.read_only(sql)

    def run_ids_starting(self, prefix: str) -> list[str]:
        """Run ids that start with ``prefix`` (by the primary key, without a scan)."""
        clause, args = self.backend.prefix("run_id", prefix)
        return [r["run_id"] for r in self.rows(f"SELECT run_id FROM runs WHERE {clause}", args)]

    def digests_starting(self, ref: str) -> list[str]:
        """Digests that start with ``ref``: ``algo:hex…``, or the hex of any algorithm."""
        pattern = like_pattern(ref) + "%" if ":" in ref else "%:" + like_pattern(ref.lower()) + "%"
        query = (
            "SELECT DISTINCT digest FROM"
            " (SELECT digest FROM outputs UNION SELECT digest FROM inputs) AS d"
            " WHERE digest LIKE ? ESCAPE '\\'"
        )
        return sorted(r["digest"] for r in self.rows(query, [pattern]))

    def walk(self, digests: Sequence[str], *, direction: str) -> list[str]:
        """The runs reachable from ``digests``: upstream (who produced them, from what)
        or downstream (who consumed them, producing what)."""
        if not digests:
            return []
        seeds = ", ".join(f"({self.backend.text_value})" for _ in digests)
        if direction == "upstream":  # who produced them, and from what, back to raw data
            walk = f"""
            WITH RECURSIVE art(digest) AS (
                VALUES {seeds}
                UNION
                SELECT i.digest FROM art JOIN outputs o ON o.digest = art.digest
                    JOIN inputs i ON i.run_id = o.run_id
            )
            SELECT DISTINCT o.run_id FROM art JOIN outputs o ON o.digest = art.digest"""
        else:  # who consumed them, producing what, down to the last model
            walk = f"""
            WITH RECURSIVE art(digest) AS (
                VALUES {seeds}
                UNION
                SELECT o.digest FROM art JOIN inputs i ON i.digest = art.digest
                    JOIN outputs o ON o.run_id = i.run_id
            )
            SELECT DISTINCT i.run_id FROM art JOIN inputs i ON i.digest = art.digest"""
        return sorted(r["run_id"] for r in self.rows(walk, list(digests)))

    def graph(self, run_ids: Sequence[str]) -> dict[str, Any]:
        """These runs with their inputs and outputs: the nodes and edges to draw."""
        marks = ", ".join("?" for _ in run_ids) or "NULL"
        runs = self.rows(
            f"SELECT * FROM runs WHERE run_id IN ({marks}) ORDER BY started NULLS FIRST, run_id",
            run_ids,
        )
        ins = self.rows(
            f"SELECT * FROM inputs WHERE run_id IN ({marks}) ORDER BY run_id, name", run_ids
        )
        outs = self.rows(
            f"SELECT * FROM outputs WHERE run_id IN ({marks}) ORDER BY run_id, name", run_ids
        )
        return {"runs": runs, "inputs": ins, "outputs": outs}
