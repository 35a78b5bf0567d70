"""The verification cache: reuse a file's digest while its stat says it is unchanged.

Why SQLite (WAL mode, busy timeout) and not a JSON or pickle file:

* two ``rexec`` processes hashing at once must not corrupt the cache or lose
  each other's rows. SQLite serialises writers with a file lock and WAL lets
  readers go on while one process writes; ``busy_timeout`` makes the second
  writer wait instead of failing;
* a crash (or ``kill -9``) mid-write must leave the previous state readable.
  Each batch of rows is one transaction, which SQLite commits atomically;
* a warm check of 100,000 files must cost well under a second, so rows are
  read one directory at a time (one indexed query per directory), which also
  keeps memory bounded by the widest directory rather than the whole tree.

The cache is only an accelerator. If it cannot be opened or is damaged, hashing
goes on without it (the digest is the same, only slower), so a broken cache
never blocks a run. Rows are keyed by ``(algo, directory, name)`` and match only
when ``dev, ino, size, mtime_ns, ctime_ns`` are all equal to the current
``lstat``; anything else is a miss and the row is replaced after re-hashing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from executor.paths import cache_dir

if TYPE_CHECKING:
    import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    algo     TEXT    NOT NULL,
    dir      BLOB    NOT NULL,
    name     BLOB    NOT NULL,
    dev      INTEGER NOT NULL,
    ino      INTEGER NOT NULL,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    digest   BLOB    NOT NULL,
    PRIMARY KEY (algo, dir, name)
) WITHOUT ROWID
"""

# A row is trusted only when the file's timestamps are older than this margin
# at the time it was hashed: file timestamps come from a coarse kernel clock,
# so a write in the same tick as our read could leave mtime unchanged
# ("racily clean" in git's words). Such files are hashed but not cached.
RACY_MARGIN_NS = 1_000_000_000


class StatKey(NamedTuple):
    """The stat fields that must all be unchanged for a cached digest to count."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> StatKey:
        """The stat fields that say a file may have changed since it was hashed."""
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


# One cached row as SQLite returns it: (name, dev, ino, size, mtime_ns, ctime_ns,
# digest). Kept as the plain tuple, not unpacked into objects: a warm walk of
# 100,000 files compares ``row[1:6]`` with the file's lstat fields and nothing more.
CachedRow = tuple[bytes, int, int, int, int, int, bytes]


class StatCache:
    """Per-directory reads and batched, transactional writes of file digests."""

    def __init__(self, path: str | os.PathLike[str], *, batch: int = 20_000) -> None:
        self.path = path
        self._batch = batch
        self._pending: list[tuple[str, bytes, bytes, int, int, int, int, int, bytes]] = []
        self._db: sqlite3.Connection | None = None
        import sqlite3  # here, not at module level: `--rehash` runs never pay for loading it

        self._error: type[Exception] = sqlite3.Error
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA busy_timeout = 30000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute(SCHEMA)
            self._db = db
        except (OSError, sqlite3.Error):
            self._db = None  # no cache: slower, never wrong

    @property
    def usable(self) -> bool:
        """True when the cache database opened (a read-only cache dir is no error)."""
        return self._db is not None

    def directory(self, *, algo: str, dir_path: bytes) -> dict[bytes, CachedRow]:
        """Every cached row of one directory, by name (see ``CachedRow``)."""
        if self._db is None:
            return {}
        try:
            rows = self._db.execute(
                "SELECT name, dev, ino, size, mtime_ns, ctime_ns, digest FROM files "
                "WHERE algo = ? AND dir = ?",
                (algo, dir_path),
            ).fetchall()
        except self._error:
            self._disable()
            return {}
        return {r[0]: r for r in rows}

    def put(self, *, algo: str, dir_path: bytes, name: bytes, key: StatKey, digest: bytes) -> None:
        """Queue one row; rows are written in batches, each one transaction."""
        if self._db is None:
            return
        self._pending.append(
            (algo, dir_path, name, key.dev, key.ino, key.size, key.mtime_ns, key.ctime_ns, digest)
        )
        if len(self._pending) >= self._batch:
            self.flush()

    def flush(self) -> None:
        """Write what was learnt this walk; the cache is best effort."""
        if self._db is None or not self._pending:
            return
        rows, self._pending = self._pending, []
        self._write(rows)

    def _write(
        self, rows: Iterable[tuple[str, bytes, bytes, int, int, int, int, int, bytes]]
    ) -> None:
        assert self._db is not None
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?)", rows)
            self._db.execute("COMMIT")
        except self._error:
            with contextlib.suppress(self._error):
                self._db.execute("ROLLBACK")
            self._disable()

    def _disable(self) -> None:
        if self._db is not None:
            self._db.close()
        self._db = None

    def close(self) -> None:
        """Flush and close the database."""
        self.flush()
        self._disable()


def open_cache() -> StatCache:
    """The stat cache under rexec's cache dir, opened (or a disabled one)."""
    return StatCache(os.path.join(cache_dir(), "snapshot-cache.sqlite3"))
