"""The verification cache: reuse on unchanged stat, re-hash on any change, survive races and crashes."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
import time
from pathlib import Path

import pytest

import executor.snapshot as snapshot_mod
from executor.snapshot import hash_tree
from executor.snapshot.statcache import StatCache, StatKey, cache_dir

MARGIN_NS = 50_000_000  # tests shorten the "racily clean" margin from 1 s to 50 ms


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REXEC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(snapshot_mod, "RACY_MARGIN_NS", MARGIN_NS)
    return tmp_path / "cache"


def settle() -> None:
    """Let file timestamps age past the margin so their digests may be cached."""
    time.sleep(2 * MARGIN_NS / 1e9)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    for i in range(5):
        (d / f"f{i}.txt").write_bytes(b"content %d\n" % i)
    (d / "sub" / "g.txt").write_bytes(b"ggg\n")
    settle()
    return d


def test_cache_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("REXEC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == str(tmp_path / "xdg" / "rexec")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == str(tmp_path / "home" / ".cache" / "rexec")


def test_second_run_uses_cache(data: Path) -> None:
    first = hash_tree(data)
    assert (first.cache_hits, first.cache_used) == (0, True)
    second = hash_tree(data)
    assert second.cache_hits == 6
    assert second.digest == first.digest


def test_rehash_ignores_cache(data: Path) -> None:
    hash_tree(data)
    snap = hash_tree(data, use_cache=False)
    assert (snap.cache_hits, snap.cache_used) == (0, False)


def test_fresh_files_are_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file written within the margin could change again inside one clock tick."""
    monkeypatch.setattr(snapshot_mod, "RACY_MARGIN_NS", 60 * 10**9)
    d = tmp_path / "fresh"
    d.mkdir()
    (d / "x").write_text("x")
    hash_tree(d)
    assert hash_tree(d).cache_hits == 0


def test_hit_really_comes_from_cache(data: Path, _cache: Path) -> None:
    """Plant a wrong digest under the file's true stat key: a hit must return it."""
    hash_tree(data)
    bogus = hashlib.sha256(b"planted").digest()
    db = sqlite3.connect(_cache / "snapshot-cache.sqlite3")
    with db:
        db.execute("UPDATE files SET digest = ? WHERE name = ?", (bogus, b"f0.txt"))
    db.close()
    entries = {e.path: e for e in hash_tree(data).listing.entries}
    assert entries[b"f0.txt"].digest == bogus
    assert hash_tree(data, use_cache=False).listing.entries != tuple(entries.values())


def test_touch_invalidates(data: Path) -> None:
    base = hash_tree(data)
    os.utime(data / "f1.txt", ns=(time.time_ns() - 10**10, time.time_ns() - 10**10))
    settle()
    snap = hash_tree(data)
    assert snap.cache_hits == 5
    assert snap.digest == base.digest


def test_same_size_rewrite_invalidates(data: Path) -> None:
    base = hash_tree(data)
    st = os.stat(data / "f2.txt")
    (data / "f2.txt").write_bytes(b"CONTENT 2\n")  # same size
    os.utime(data / "f2.txt", ns=(st.st_atime_ns, st.st_mtime_ns))  # and same mtime
    settle()
    snap = hash_tree(data)
    assert snap.cache_hits == 5  # ctime still moved, so f2 was read again
    by = {e.path: e for e in snap.listing.entries}
    assert by[b"f2.txt"].digest == hashlib.sha256(b"CONTENT 2\n").digest()
    assert snap.digest != base.digest


def test_rename_invalidates(data: Path) -> None:
    hash_tree(data)
    (data / "f3.txt").rename(data / "renamed.txt")
    settle()
    snap = hash_tree(data)
    assert snap.cache_hits == 5
    by = {e.path: e for e in snap.listing.entries}
    assert by[b"renamed.txt"].digest == hashlib.sha256(b"content 3\n").digest()


def test_chmod_invalidates_but_digest_stays(data: Path) -> None:
    base = hash_tree(data)
    os.chmod(data / "f4.txt", 0o600)
    settle()
    snap = hash_tree(data)
    assert snap.cache_hits == 5
    assert snap.digest == base.digest


def test_algorithms_do_not_share_rows(data: Path) -> None:
    hash_tree(data)
    assert hash_tree(data, algo="blake3").cache_hits == 0


def test_damaged_cache_is_ignored(data: Path, _cache: Path) -> None:
    base = hash_tree(data, use_cache=False)
    _cache.mkdir(parents=True, exist_ok=True)
    (_cache / "snapshot-cache.sqlite3").write_bytes(b"this is not a database" * 100)
    snap = hash_tree(data)
    assert snap.digest == base.digest
    assert snap.cache_used is False


def _hash_in_child(path: str, cache: str, out: multiprocessing.Queue[str]) -> None:
    os.environ["REXEC_CACHE_DIR"] = cache
    setattr(snapshot_mod, "RACY_MARGIN_NS", MARGIN_NS)  # noqa: B010 (a spawned child)
    for _ in range(5):
        snap = hash_tree(Path(path))
    out.put(snap.digest)


def test_two_processes_share_the_cache(tmp_path: Path, _cache: Path) -> None:
    trees = []
    for t in range(2):
        d = tmp_path / f"tree{t}"
        d.mkdir()
        for i in range(300):
            (d / f"{i}.bin").write_bytes(os.urandom(64))
        trees.append(d)
    settle()
    ctx = multiprocessing.get_context("spawn")
    q: multiprocessing.Queue[str] = ctx.Queue()
    procs = [
        ctx.Process(target=_hash_in_child, args=(str(d), str(_cache), q)) for d in (*trees, *trees)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    results = sorted(q.get(timeout=5) for _ in procs)
    expected = sorted(hash_tree(d, use_cache=False).digest for d in (*trees, *trees))
    assert results == expected
    db = sqlite3.connect(_cache / "snapshot-cache.sqlite3")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT count(*) FROM files").fetchone() == (600,)
    db.close()
    assert all(hash_tree(d).cache_hits == 300 for d in trees)


def _crash_mid_write(db_path: str) -> None:
    cache = StatCache(Path(db_path), batch=10)
    key = StatKey(1, 1, 1, 1, 1)
    for i in range(10):  # one committed batch of 10 rows
        cache.put(algo="sha256", dir_path=b"/d", name=b"%d" % i, key=key, digest=b"x" * 32)
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "INSERT INTO files VALUES ('sha256', '/d', ?, 1, 1, 1, 1, 1, ?)",
        [(b"late%d" % i, b"y" * 32) for i in range(5000)],
    )
    os._exit(0)  # die inside the transaction, as a crash or kill -9 would


def test_crash_mid_write_leaves_a_readable_cache(_cache: Path) -> None:
    _cache.mkdir(parents=True)
    db_path = _cache / "snapshot-cache.sqlite3"
    proc = multiprocessing.get_context("spawn").Process(
        target=_crash_mid_write, args=(str(db_path),)
    )
    proc.start()
    proc.join(60)
    cache = StatCache(db_path)
    assert cache.usable
    rows = cache.directory(algo="sha256", dir_path=b"/d")
    assert sorted(rows) == sorted(b"%d" % i for i in range(10))
    cache.close()
