"""The fast paths of hash_tree: process pool, large-file streaming and mapping, bulk listing code.

Small test trees normally never reach these paths, so each test shrinks the
thresholds (FORK_AFTER, BATCH_FILES, BIG, READ_BLOCK, MAP_WINDOW) to force them, and
checks the result against digests computed here by hand from the definition
in docs/snapshots.md (hashlib / blake3 only), never against rexec's output.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import mmap
import os
import signal
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

import executor.snapshot as snap_mod
import executor.snapshot.mapped as mapped_mod
from executor.errors import ExitCode, RexecError, SnapshotError
from executor.snapshot import hash_tree
from executor.snapshot.listing import Entry, Listing, RootHasher, records

MIB = 1 << 20


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REXEC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def pooled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send every batch of three files to the process pool."""
    monkeypatch.setattr(snap_mod, "FORK_AFTER", 0)
    monkeypatch.setattr(snap_mod, "BATCH_FILES", 3)


def by_hand(root: Path, h: Callable[[bytes], bytes], name: str) -> str:
    """The tree digest from the written definition: component order, one record per entry."""
    rows: list[tuple[list[bytes], bytes]] = []
    for dirpath, dirs, files in os.walk(os.fsencode(root)):
        for n in dirs + files:
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, os.fsencode(root))
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                kind, content = b"l", os.readlink(full)
            elif stat.S_ISDIR(st.st_mode):
                kind, content = b"d", b""
            else:
                kind, content = b"f", Path(os.fsdecode(full)).read_bytes()
            rec = b"%s %d %s %s\x00" % (kind, len(content), h(content).hex().encode(), rel)
            rows.append((rel.split(b"/"), rec))
    data = name.encode() + b"\n" + b"".join(r for _, r in sorted(rows))
    return f"{name}:{h(data).hex()}"


def sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def b3(b: bytes) -> bytes:
    return blake3.blake3(b).digest()


def build(root: Path) -> None:
    for d in range(3):
        sub = root / f"d{d}" / "deeper"
        sub.mkdir(parents=True)
        for i in range(7):
            (root / f"d{d}" / f"f{i}").write_bytes(b"file %d/%d\n" % (d, i) * (i + 1))
        (sub / "x").write_bytes(b"")
    (root / "d1" / "link").symlink_to("f0")
    (root / "empty").mkdir()
    (root / "a.b").write_bytes(os.urandom(MIB + 5))  # more than one read buffer


@pytest.mark.parametrize(("algo", "h"), [("sha256", sha), ("blake3", b3)])
def test_pool_matches_definition(tmp_path: Path, pooled: None, algo: str, h: Callable) -> None:
    build(tmp_path)
    want = by_hand(tmp_path, h, f"{algo}-tree-v1")
    assert hash_tree(tmp_path, algo=algo, use_cache=False).digest == want
    assert hash_tree(tmp_path, algo=algo).digest == want  # cache on: walk lstat keys


def test_pool_fills_the_cache(
    tmp_path: Path, pooled: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snap_mod, "RACY_MARGIN_NS", 0)
    build(tmp_path)
    first = hash_tree(tmp_path)
    second = hash_tree(tmp_path)
    assert (first.cache_hits, second.cache_hits) == (0, second.files)
    assert second.files == 3 * 8 + 1
    assert second.digest == first.digest == by_hand(tmp_path, sha, "sha256-tree-v1")


def test_pool_error_names_the_file(
    tmp_path: Path, pooled: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error raised in a worker process reaches the caller whole: message, hint, exit code."""
    build(tmp_path)
    real = os.open

    def deny(path: bytes, *args: object, **kw: object) -> int:
        if os.fsencode(path).endswith(b"d2/f5"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real(path, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", deny)  # the forked workers inherit it
    with pytest.raises(SnapshotError) as info:
        hash_tree(tmp_path, use_cache=False)
    assert info.value.message == f"{tmp_path}/d2/f5: cannot read (Permission denied)"
    assert info.value.hint and "chmod" in info.value.hint
    assert info.value.exit_code == ExitCode.BAD_INPUT


def test_pool_detects_a_file_changing(
    tmp_path: Path, pooled: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(tmp_path)
    real = os.fstat

    def grown(fd: int) -> os.stat_result:
        values = list(real(fd))
        values[stat.ST_SIZE] += 1
        return os.stat_result(values)

    monkeypatch.setattr(os, "fstat", grown)
    with pytest.raises(SnapshotError, match="changed while it was being hashed"):
        hash_tree(tmp_path, use_cache=False)


NEVER_DENSE = 1 << 40  # FINE_FAULTS_PER_MIB that no window reaches: the helper maps to the end
ALWAYS_DENSE = 0  # any page fault counts as dense: the helper reads ahead after one window


@pytest.mark.parametrize("way", ["pool", "mapped", "mapped-then-read"])
@pytest.mark.parametrize(("algo", "h"), [("sha256", sha), ("blake3", b3)])
def test_large_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, algo: str, h: Callable, way: str
) -> None:
    """Large files read ahead (SHA-256 on helper threads, either in a pool worker), in
    blocks that are not a multiple of the page size, or mapped by the BLAKE3 helper a
    window at a time, whole or then read ahead: the same digests."""
    monkeypatch.setattr(snap_mod, "BIG", 2 * MIB)
    monkeypatch.setattr(snap_mod, "READ_BLOCK", MIB // 3)
    monkeypatch.setattr(snap_mod, "MAP_WINDOW", MIB)
    if way == "pool":
        monkeypatch.setattr(snap_mod, "FORK_AFTER", 0)
    dense = ALWAYS_DENSE if way == "mapped-then-read" else NEVER_DENSE
    monkeypatch.setattr(mapped_mod, "FINE_FAULTS_PER_MIB", dense)
    blobs = {f"big{i}": os.urandom(2 * MIB + 4096 * i + 7) for i in range(3)}
    blobs["small"] = b"small"
    for name, blob in blobs.items():
        (tmp_path / name).write_bytes(blob)
    snap = hash_tree(tmp_path, algo=algo, use_cache=False)
    got = {e.path.decode(): e.digest for e in snap.listing.entries}
    assert got == {name: h(blob) for name, blob in blobs.items()}
    assert snap.digest == by_hand(tmp_path, h, f"{algo}-tree-v1")


def test_large_file_changing_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snap_mod, "BIG", 2 * MIB)
    (tmp_path / "big").write_bytes(os.urandom(3 * MIB))
    real = os.fstat
    calls = []

    def moving(fd: int) -> os.stat_result:
        """The first look is true; every later one sees the file a byte longer."""
        calls.append(fd)
        values = list(real(fd))
        values[stat.ST_SIZE] += len(calls) > 1
        return os.stat_result(values)

    monkeypatch.setattr(os, "fstat", moving)
    for algo in ("sha256", "blake3"):
        calls.clear()
        with pytest.raises(SnapshotError, match="big: changed while it was being hashed"):
            hash_tree(tmp_path, algo=algo, use_cache=False)


@pytest.mark.parametrize("algo", ["sha256", "blake3"])
def test_large_file_truncated_while_read_ahead_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, algo: str
) -> None:
    """The read-ahead thread sees end of file before the size its stat gave: named, not
    hashed. BLAKE3 reads ahead in its helper process, after mapping the first MiB; the
    file never really shrinks, so only the read path reaching 2 MiB can raise."""
    if algo == "blake3":
        monkeypatch.setattr(snap_mod, "MAP_WINDOW", MIB)
        monkeypatch.setattr(mapped_mod, "FINE_FAULTS_PER_MIB", ALWAYS_DENSE)
    monkeypatch.setattr(snap_mod, "BIG", 2 * MIB)
    monkeypatch.setattr(snap_mod, "READ_BLOCK", MIB)
    (tmp_path / "big").write_bytes(os.urandom(3 * MIB))
    real = os.preadv
    reads = []

    def truncated(fd: int, buffers: list[memoryview], offset: int) -> int:
        reads.append(offset)
        return 0 if offset >= 2 * MIB else real(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", truncated)
    with pytest.raises(SnapshotError, match="big: changed while it was being hashed"):
        hash_tree(tmp_path, algo=algo, use_cache=False)
    if algo == "sha256":  # read in this process: its reads are visible here
        assert max(reads) >= 2 * MIB


@pytest.mark.parametrize("algo", ["sha256", "blake3"])
def test_large_file_read_error_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, algo: str
) -> None:
    """An I/O error on the read-ahead thread reaches the caller as an error naming the file.
    BLAKE3 reads ahead in its helper process, after mapping the first MiB: the errno
    crosses the pipe."""
    if algo == "blake3":
        monkeypatch.setattr(snap_mod, "MAP_WINDOW", MIB)
        monkeypatch.setattr(mapped_mod, "FINE_FAULTS_PER_MIB", ALWAYS_DENSE)
    monkeypatch.setattr(snap_mod, "BIG", 2 * MIB)
    monkeypatch.setattr(snap_mod, "READ_BLOCK", MIB)
    (tmp_path / "big").write_bytes(os.urandom(3 * MIB))
    real = os.preadv

    def failing(fd: int, buffers: list[memoryview], offset: int) -> int:
        if offset >= MIB:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", failing)
    with pytest.raises(SnapshotError, match="big: cannot read \\(Input/output error\\)"):
        hash_tree(tmp_path, algo=algo, use_cache=False)
    assert not [t for t in threading.enumerate() if t.name == "rexec-read"]  # joined, not blocked


def children() -> set[int]:
    """This process's living child processes (from /proc; a zombie is not reaped yet)."""
    kids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        kids.update(int(p) for p in (task / "children").read_text().split())
    return kids


def test_blake3_helper_serves_every_large_file_and_is_reaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One helper process for all large files of a tree, gone when hash_tree returns."""
    monkeypatch.setattr(snap_mod, "BIG", 2 * MIB)
    blobs = {f"big{i}": os.urandom(2 * MIB + i) for i in range(3)}
    for name, blob in blobs.items():
        (tmp_path / name).write_bytes(blob)
    forks = []
    real_fork = os.fork

    def counting_fork() -> int:
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", counting_fork)
    before = children()
    snap = hash_tree(tmp_path, algo="blake3", use_cache=False)
    assert {e.path.decode(): e.digest for e in snap.listing.entries} == {
        n: b3(b) for n, b in blobs.items()
    }
    assert len(forks) == 1
    assert children() == before


@pytest.mark.parametrize("when", ["while-mapped", "between-windows"])
def test_blake3_file_truncated_under_its_mapping_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """Truncated while mapped, the helper dies of a real SIGBUS; truncated before the
    next window, mmap finds it short. Either way the file is named as changed, and
    rexec goes on (this test process survives)."""
    monkeypatch.setattr(snap_mod, "BIG", 2 * MIB)
    monkeypatch.setattr(snap_mod, "MAP_WINDOW", MIB)
    monkeypatch.setattr(mapped_mod, "FINE_FAULTS_PER_MIB", NEVER_DENSE)
    big = tmp_path / "big"
    big.write_bytes(os.urandom(3 * MIB))
    real_mmap = mmap.mmap
    maps = []

    def truncating(fd: int, length: int, **kw: object) -> mmap.mmap:
        """Runs in the helper (forked after this patch): shortens the file at the chosen moment."""
        maps.append(length)
        if when == "between-windows" and len(maps) == 2:
            os.truncate(big, MIB)
        view = real_mmap(fd, length, **kw)  # type: ignore[arg-type]
        if when == "while-mapped":
            os.truncate(big, 0)
        return view

    monkeypatch.setattr(mmap, "mmap", truncating)
    with pytest.raises(SnapshotError, match="big: changed while it was being hashed"):
        hash_tree(tmp_path, algo="blake3", use_cache=False)
    assert maps == []  # every mapping was made in the helper, none here


def test_blake3_helper_errors_name_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper's own open fails: the errno comes back and the message names the file."""
    monkeypatch.setattr(snap_mod, "BIG", 2 * MIB)
    (tmp_path / "big").write_bytes(os.urandom(3 * MIB))
    real = os.open
    opened: list[bytes] = []

    def second_denied(path: bytes, *args: object, **kw: object) -> int:
        opened.append(os.fsencode(path))
        if opened.count(os.fsencode(path)) == 2 and os.fsencode(path).endswith(b"/big"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real(path, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", second_denied)  # the parent opens once, then the helper
    with pytest.raises(SnapshotError) as info:
        hash_tree(tmp_path, algo="blake3", use_cache=False)
    assert info.value.message == f"{tmp_path}/big: cannot read (Permission denied)"


def test_blake3_helper_that_dies_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snap_mod, "BIG", 2 * MIB)
    (tmp_path / "big").write_bytes(os.urandom(3 * MIB))

    def crash(*_a: object, **_kw: object) -> bytes:
        raise RuntimeError("a bug in the helper")

    monkeypatch.setattr(mapped_mod, "_hash", crash)
    with pytest.raises(RexecError, match="big: the BLAKE3 hashing helper process ended") as info:
        hash_tree(tmp_path, algo="blake3", use_cache=False)
    assert "exit status 1" in info.value.message
    assert info.value.exit_code == ExitCode.INTERNAL


def test_records_equal_entry_records() -> None:
    entries = [
        Entry(b"a", "d", 0, sha(b"")),
        Entry(b"a/\xff name", "f", 12, sha(b"x")),
        Entry(b"l", "l", 3, sha(b"abc")),
    ]
    assert records(entries) == b"".join(e.record() for e in entries)
    one, many = RootHasher("sha256"), RootHasher("sha256")
    for e in entries:
        one.add(e)
    many.add_many(entries)
    assert one.hexdigest() == many.hexdigest()


@pytest.mark.parametrize(
    "paths", [[b"plain", b"caf\xc3\xa9", b'q"uote\\', b"tab\tnl\n"], [b"ok", b"bad\xff"]]
)
def test_streamed_json_is_json_dumps(paths: list[bytes]) -> None:
    """The fast listing writer gives exactly the bytes json.dumps gives (non-ASCII escaped)."""
    entries = tuple(Entry(p, "f", len(p), sha(p)) for p in paths)
    listing = Listing(algo="sha256", digest="sha256-tree-v1:" + "0" * 64, entries=entries)
    out = io.StringIO()
    listing.write_json(out)
    lines = out.getvalue().splitlines()[1:-1]
    want = [json.dumps(row) for row in listing.to_json()["entries"]]
    assert [line.rstrip(",") for line in lines] == want


def test_blake3_helper_killed_while_idle_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between two files, the helper is reported by the next file's request."""
    monkeypatch.setattr(snap_mod, "BIG", 2 * MIB)
    for name in ("big1", "big2"):
        (tmp_path / name).write_bytes(os.urandom(3 * MIB))
    real = mapped_mod.MappedHasher.digest

    def kill_after_first(self: mapped_mod.MappedHasher, path: bytes, *a: object) -> bytes:
        digest = real(self, path, *a)  # type: ignore[arg-type]
        if path.endswith(b"big1"):
            os.kill(self._pid, signal.SIGTERM)
            os.waitid(os.P_PID, self._pid, os.WEXITED | os.WNOWAIT)  # dead, not yet reaped
        return digest

    monkeypatch.setattr(mapped_mod.MappedHasher, "digest", kill_after_first)
    with pytest.raises(
        RexecError, match=r"big2: the BLAKE3 hashing helper process ended \(signal SIGTERM\)"
    ):
        hash_tree(tmp_path, algo="blake3", use_cache=False)


def test_blake3_without_a_helper_hashes_on_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where no process can be forked (a process limit), large BLAKE3 files are still
    hashed, on helper threads that read them ahead, with the same digests."""
    monkeypatch.setattr(snap_mod, "BIG", 2 * MIB)
    blobs = {f"big{i}": os.urandom(2 * MIB + i) for i in range(2)}
    for name, blob in blobs.items():
        (tmp_path / name).write_bytes(blob)
    forks = []

    def refused() -> int:
        forks.append(1)
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", refused)
    fds_before = len(os.listdir("/proc/self/fd"))
    snap = hash_tree(tmp_path, algo="blake3", use_cache=False)
    assert {e.path.decode(): e.digest for e in snap.listing.entries} == {
        n: b3(b) for n, b in blobs.items()
    }
    assert forks == [1]  # tried once, then threads for every later file
    assert len(os.listdir("/proc/self/fd")) == fds_before  # the helper's pipes were closed
