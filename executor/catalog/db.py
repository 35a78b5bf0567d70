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
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from executor import safeio
from executor.canonical import sha256_hex
from executor.catalog.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION, TABLES
from executor.errors import InputError

__all__ = ["SCHEMA_VERSION", "Backend", "Catalog"]


class Backend(Protocol):
    """What a database gives the catalog (:mod:`.sqlite`, :mod:`.postgres`)."""

    dialect: str
    label: str  # where it is, fit to print (no password)
    text_type: str
    text_value: str  # a placeholder typed as the text columns (collation included)
    newest_first: str  # the ledger's order as an index column (where NULLs go differs)

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


CHUNK = 500  # values bound in one IN (…): well inside every backend's limit
# The algorithms of the digests rexec records (files and images; trees), for a bare hex.
ALGOS = ("sha256", "sha256-tree-v1", "blake3-tree-v1")


def like_pattern(value: str) -> str:
    """``value`` as a LIKE pattern matching itself literally (wildcards escaped)."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Catalog:
    """One catalog: :meth:`put` writes a record's rows in one transaction."""

    def __init__(self, backend: Backend, *, create: bool = True) -> None:
        self.backend = backend
        self.label = backend.label
        version = backend.version()
        if version == 0 and not create:  # a reader never creates a catalog
            raise InputError(
                f"{self.label}: no rexec catalog here yet",
                hint="runs are indexed as they finish; `rexec catalog index RUNS_DIR` adds "
                "existing records (or name another --catalog)",
            )
        if version != SCHEMA_VERSION:  # a reader of a current catalog never writes
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
                    backend.rows(statement.format(text=text, newest=backend.newest_first))
            if version != SCHEMA_VERSION:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        backend.rows(statement.format(text=text, newest=backend.newest_first))
                if 0 < version < 5:
                    self._absolute_paths()
                backend.set_version(SCHEMA_VERSION)

    def _absolute_paths(self) -> None:
        """Schema 5 keeps record paths absolute (a relative one meant nothing from another
        directory: the stage cache missed, regenerate refused). An older row's relative
        path becomes absolute from where this rexec runs if the record there is that row's
        (its Statement has the row's sha256); `catalog index DIR` moves the others."""
        for row in self.backend.rows("SELECT statement_sha256, path FROM runs"):
            path = str(row["path"])
            if os.path.isabs(path):
                continue
            there = os.path.abspath(path)
            try:
                payload = safeio.read_capped(os.path.join(there, "statement.json"), cap=64 << 20)
            except (OSError, safeio.UnsafeFile):
                continue
            if sha256_hex(payload) == row["statement_sha256"]:
                self.backend.rows(
                    "UPDATE runs SET path = ? WHERE statement_sha256 = ?",
                    [there, row["statement_sha256"]],
                )

    def close(self) -> None:
        """Close the database."""
        self.backend.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic write: concurrent indexers wait for each other, never interleave."""
        with self.backend.transaction():
            yield

    def put(self, rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Replace one record's rows (``rows["runs"]`` holds exactly one) in one transaction."""
        self.put_many([rows])

    def put_many(self, batch: Sequence[Mapping[str, Sequence[Mapping[str, Any]]]]) -> None:
        """Replace several records' rows in one transaction (an index pass, a benchmark).

        A record is its Statement: rows of the same Statement are replaced, rows of
        another Statement that claims the same run id stay (a conflict, never a silent
        replacement), and rows of another Statement once found at the same path go (the
        file there is this one now).
        """
        runs = [run for rows in batch for run in rows["runs"]]
        grouped: dict[tuple[str, tuple[str, ...]], list[tuple[Any, ...]]] = {}
        for rows in batch:
            for table in TABLES:
                for row in rows.get(table, ()):
                    grouped.setdefault((table, tuple(row)), []).append(tuple(row.values()))
        with self.backend.transaction():
            gone = {run["statement_sha256"] for run in runs}
            found = self._rows_in(
                "SELECT statement_sha256 FROM runs WHERE path IN ({marks})",
                [run["path"] for run in runs],
            )
            gone.update(r["statement_sha256"] for r in found)
            keys = [[sha] for sha in sorted(gone)]
            for table in TABLES:
                self.backend.execute_many(f"DELETE FROM {table} WHERE statement_sha256 = ?", keys)
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
        """The approval files indexed for each record (an approval added later re-indexes it)."""
        found: dict[str, set[str]] = {}
        for r in self.rows("SELECT statement_sha256, file FROM approvals"):
            found.setdefault(r["statement_sha256"], set()).add(r["file"])
        return found

    def known(self) -> dict[str, str]:
        """Every indexed record: statement sha256 → path (the incremental index skips them)."""
        found = self.rows("SELECT statement_sha256, path FROM runs")
        return {r["statement_sha256"]: r["path"] for r in found}

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A query's rows as dicts."""
        return self.backend.rows(sql, args)

    def counts(self) -> dict[str, int]:
        """Rows per table, records never verified, and run ids claimed by several records."""
        found = {t: int(self.rows(f"SELECT count(*) AS n FROM {t}")[0]["n"]) for t in TABLES}
        found["unverified"] = int(
            self.rows("SELECT count(*) AS n FROM runs WHERE verification IS NULL")[0]["n"]
        )
        found["conflicts"] = int(
            self.rows(
                "SELECT count(*) AS n FROM (SELECT run_id FROM runs GROUP BY run_id"
                " HAVING count(*) > 1) AS c"
            )[0]["n"]
        )
        return found

    def read_only_query(self, sql: str) -> list[dict[str, Any]]:
        """``rexec catalog query``: one SELECT, on a connection that cannot write."""
        return self.backend.read_only(sql)

    def run_ids_starting(self, prefix: str) -> list[str]:
        """Run ids that start with ``prefix`` (by their index, without a scan)."""
        clause, args = self.backend.prefix("run_id", prefix)
        found = self.rows(f"SELECT DISTINCT run_id FROM runs WHERE {clause}", args)
        return sorted(r["run_id"] for r in found)

    def statements_starting(self, hexpart: str) -> list[str]:
        """Records whose Statement's sha256 starts with ``hexpart``."""
        clause, args = self.backend.prefix("statement_sha256", hexpart.lower())
        found = self.rows(f"SELECT statement_sha256 FROM runs WHERE {clause}", args)
        return sorted(r["statement_sha256"] for r in found)

    def records_of(self, run_id: str) -> list[dict[str, Any]]:
        """Every record that claims ``run_id``: one, or a conflict of several."""
        return self.rows(
            "SELECT * FROM runs WHERE run_id = ? ORDER BY started NULLS LAST, statement_sha256",
            [run_id],
        )

    def same_computation(self, stage_key: str, *, limit: int) -> list[dict[str, Any]]:
        """The newest succeeded records with this stage key (reuse candidates, to verify)."""
        return self.rows(
            "SELECT run_id, statement_sha256, path FROM runs WHERE stage_key = ?"
            " AND status = 'succeeded' ORDER BY started DESC NULLS LAST, run_id DESC LIMIT ?",
            [stage_key, limit],
        )

    def seeded(self, seed_key: str, *, limit: int) -> list[dict[str, Any]]:
        """The newest succeeded run of one spec for each seed (a noise reference): a replay
        repeats its original's seed, and a seed run twice counts once."""
        rows = self.rows(
            "SELECT run_id, statement_sha256, path, seed FROM runs WHERE seed_key = ?"
            " AND status = 'succeeded' AND kind <> 'replay'"
            " ORDER BY started DESC NULLS LAST, run_id DESC LIMIT ?",
            [seed_key, 4 * limit],
        )
        newest: dict[Any, dict[str, Any]] = {}
        for row in rows:
            newest.setdefault(row["seed"], row)
        return list(newest.values())[:limit]

    def seeded_metrics(self, seed_key: str, *, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The metrics of the newest succeeded runs of one spec with any seed that verified
        when indexed, and how many such runs did not (their values are left out)."""
        runs = self.seeded(seed_key, limit=limit)
        shas = [r["statement_sha256"] for r in runs]
        verified = {
            r["statement_sha256"]
            for r in self._rows_in(
                "SELECT statement_sha256 FROM runs WHERE statement_sha256 IN ({marks})"
                " AND verification LIKE 'verified%'",
                shas,
            )
        }
        rows = self._rows_in(
            "SELECT statement_sha256, file, key, value FROM metrics"
            " WHERE statement_sha256 IN ({marks})",
            sorted(verified),
        )
        return rows, len(runs) - len(verified)

    def claimed_twice(self, run_ids: Sequence[str]) -> list[str]:
        """Those of ``run_ids`` that more than one record claims."""
        found = self._rows_in(
            "SELECT run_id FROM runs WHERE run_id IN ({marks}) GROUP BY run_id HAVING count(*) > 1",
            run_ids,
        )
        return sorted(r["run_id"] for r in found)

    def values_of(self, statements: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each record's params (``params.KEY``: the number, else the JSON text) and
        metrics (``metrics.FILE:KEY``), for a table of runs: two queries for any number."""
        found: dict[str, dict[str, Any]] = {sha: {} for sha in statements}
        mine = "WHERE statement_sha256 IN ({marks})"
        for p in self._rows_in(
            f"SELECT statement_sha256, key, value, num FROM params {mine}", statements
        ):
            value = p["num"] if p["num"] is not None else p["value"]
            found[p["statement_sha256"]][f"params.{p['key']}"] = value
        for m in self._rows_in(
            f"SELECT statement_sha256, file, key, value FROM metrics {mine}", statements
        ):
            found[m["statement_sha256"]][f"metrics.{m['file']}:{m['key']}"] = m["value"]
        return found

    def _rows_in(self, sql: str, values: Sequence[Any]) -> list[dict[str, Any]]:
        """``sql`` (with ``IN ({marks})``) over ``values``, :data:`CHUNK` at a time."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(values), CHUNK):
            chunk = list(values[start : start + CHUNK])
            found += self.rows(sql.format(marks=", ".join("?" for _ in chunk)), chunk)
        return found

    def record(self, statement: str) -> dict[str, Any] | None:
        """The runs row of one record."""
        found = self.rows("SELECT * FROM runs WHERE statement_sha256 = ?", [statement])
        return found[0] if found else None

    def digests_starting(self, ref: str) -> list[str]:
        """Digests that start with ``ref``: ``algo:hex…``, or the hex of any algorithm
        rexec writes. Each a range on the inputs' and outputs' digest indexes (a LIKE over
        both tables scanned them: 0.24 s at 100,000 runs, a full digest too)."""
        algo, sep, hexpart = ref.rpartition(":")
        prefixes = [f"{algo}:{hexpart.lower()}"] if sep else [f"{a}:{ref.lower()}" for a in ALGOS]
        found: set[str] = set()
        for prefix in prefixes:
            upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            for table in ("inputs", "outputs"):
                query = f"SELECT DISTINCT digest FROM {table} WHERE digest >= ? AND digest < ?"
                found.update(r["digest"] for r in self.rows(query, [prefix, upper]))
        return sorted(found)

    def walk(self, digests: Sequence[str], *, direction: str) -> list[str]:
        """The records reachable from ``digests``: upstream (who produced them, from what)
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
                    JOIN inputs i ON i.statement_sha256 = o.statement_sha256
            )
            SELECT DISTINCT o.statement_sha256 FROM art JOIN outputs o ON o.digest = art.digest"""
        else:  # who consumed them, producing what, down to the last model
            walk = f"""
            WITH RECURSIVE art(digest) AS (
                VALUES {seeds}
                UNION
                SELECT o.digest FROM art JOIN inputs i ON i.digest = art.digest
                    JOIN outputs o ON o.statement_sha256 = i.statement_sha256
            )
            SELECT DISTINCT i.statement_sha256 FROM art JOIN inputs i ON i.digest = art.digest"""
        return sorted(r["statement_sha256"] for r in self.rows(walk, list(digests)))

    def graph(self, statements: Sequence[str]) -> dict[str, Any]:
        """These records with their inputs and outputs: the nodes and edges to draw."""
        marks = ", ".join("?" for _ in statements) or "NULL"
        runs = self.rows(
            f"SELECT * FROM runs WHERE statement_sha256 IN ({marks})"
            " ORDER BY started NULLS FIRST, run_id, statement_sha256",
            statements,
        )
        ins = self.rows(
            f"SELECT * FROM inputs WHERE statement_sha256 IN ({marks})"
            " ORDER BY run_id, statement_sha256, name",
            statements,
        )
        outs = self.rows(
            f"SELECT * FROM outputs WHERE statement_sha256 IN ({marks})"
            " ORDER BY run_id, statement_sha256, name",
            statements,
        )
        return {"runs": runs, "inputs": ins, "outputs": outs}

    def readers(self, digest: str) -> list[dict[str, Any]]:
        """The records with an input (a snapshot, not image or code) of ``digest``."""
        return self.rows(
            "SELECT DISTINCT r.* FROM runs r JOIN inputs i ON i.statement_sha256 ="
            " r.statement_sha256 WHERE i.digest = ? AND i.role = 'input'"
            " ORDER BY r.run_id, r.statement_sha256",
            [digest],
        )

    def records(self, statements: Sequence[str]) -> list[dict[str, Any]]:
        """The runs rows of these records."""
        return self._rows_in(
            "SELECT * FROM runs WHERE statement_sha256 IN ({marks})"
            " ORDER BY run_id, statement_sha256",
            statements,
        )

    def inputs_of(self, statements: Sequence[str]) -> list[dict[str, Any]]:
        """The snapshot inputs of these records (not image or code)."""
        return self._rows_in(
            "SELECT * FROM inputs WHERE role = 'input' AND statement_sha256 IN ({marks})"
            " ORDER BY statement_sha256, name",
            statements,
        )

    def outputs_of(self, statements: Sequence[str]) -> list[dict[str, Any]]:
        """The outputs (files and trees) of these records."""
        return self._rows_in(
            "SELECT * FROM outputs WHERE statement_sha256 IN ({marks})"
            " ORDER BY statement_sha256, name",
            statements,
        )

    def successors(self, statements: Sequence[str]) -> list[dict[str, Any]]:
        """Records that claim to supersede these (a regeneration's): claims to verify."""
        return self._rows_in(
            "SELECT s.old_statement, r.* FROM supersedes s JOIN runs r"
            " ON r.statement_sha256 = s.statement_sha256"
            " WHERE s.old_statement IN ({marks}) ORDER BY r.run_id, r.statement_sha256",
            statements,
        )

    def regenerations(self) -> list[dict[str, Any]]:
        """Every regeneration the records claim, newest first, with how many runs it made."""
        return self.rows(
            "SELECT regeneration, count(*) AS runs FROM supersedes"
            " GROUP BY regeneration ORDER BY regeneration DESC"
        )

    def regeneration(self, regeneration: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """One regeneration: the records it made (each with the one it replaced) and the
        digests it corrected."""
        runs = self.rows(
            "SELECT r.*, s.old_run, s.old_statement FROM supersedes s JOIN runs r"
            " ON r.statement_sha256 = s.statement_sha256 WHERE s.regeneration = ?"
            " ORDER BY r.started, r.statement_sha256",
            [regeneration],
        )
        fixes = self.rows(
            "SELECT c.run_id, c.old_digest, c.new_digest FROM corrections c JOIN supersedes s"
            " ON s.statement_sha256 = c.statement_sha256 WHERE s.regeneration = ?"
            " ORDER BY c.run_id",
            [regeneration],
        )
        return runs, fixes
