"""Tags, notes and the archive mark: a team's own bookkeeping about runs, in the catalog.

Annotations are not facts about a run: nobody signed them, no record holds them, and
`catalog index --rebuild` keeps them (they are not rebuilt from records, so they are not
cleared with what is). Everything that shows one marks it as an unsigned annotation and
names who wrote it. Archiving hides a run from the default views; its record is never
touched.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from executor.catalog.db import Catalog
from executor.errors import InputError

TAG, NOTE, ARCHIVED = "tag", "note", "archived"
MAX_TAG = 64
MAX_NOTE = 4000


@dataclass
class Annotations:
    """What a run's annotations say, each with who wrote it and when."""

    tags: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    archived: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form ``show`` and ``runs --json`` print (marked as unsigned)."""
        return {
            "unsigned": True,
            "tags": self.tags,
            "notes": self.notes,
            "archived": self.archived,
        }


def annotate(
    cat: Catalog, statement: str, run_id: str, kind: str, value: str, *, remove: bool = False
) -> None:
    """Add (or remove) one tag, note or the archive mark of a record."""
    _check(kind, value)
    with cat.backend.transaction():
        cat.rows(
            "DELETE FROM annotations WHERE statement_sha256 = ? AND kind = ? AND value = ?",
            [statement, kind, value],
        )
        if not remove:
            cat.rows(
                "INSERT INTO annotations (statement_sha256, run_id, kind, value, author, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [statement, run_id, kind, value, _author(), _now()],
            )


def annotations_of(cat: Catalog, statements: Sequence[str]) -> dict[str, Annotations]:
    """Each record's annotations (every record named gets one, maybe empty)."""
    found = {sha: Annotations() for sha in statements}
    for start in range(0, len(statements), 500):
        chunk = list(statements[start : start + 500])
        marks = ", ".join("?" for _ in chunk)
        for row in cat.rows(
            "SELECT statement_sha256, kind, value, author, at FROM annotations"
            f" WHERE statement_sha256 IN ({marks}) ORDER BY at, value",
            chunk,
        ):
            mine = found[row["statement_sha256"]]
            entry = {"value": row["value"], "author": row["author"], "at": row["at"]}
            if row["kind"] == TAG:
                mine.tags.append(entry)
            elif row["kind"] == NOTE:
                mine.notes.append(entry)
            elif row["kind"] == ARCHIVED:
                mine.archived = entry
    return found


def _check(kind: str, value: str) -> None:
    if kind == TAG and not (0 < len(value) <= MAX_TAG and value.isprintable() and " " not in value):
        raise InputError(
            f"tag {value!r}: expected 1 to {MAX_TAG} printable characters without spaces",
            hint="for example: rexec tag RUN baseline",
        )
    if kind == NOTE and not (0 < len(value) <= MAX_NOTE):
        raise InputError(f"a note holds 1 to {MAX_NOTE} characters, got {len(value)}")


def _author() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
