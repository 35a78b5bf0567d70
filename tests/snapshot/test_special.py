"""Special files: links recorded and contained, devices/FIFOs/sockets refused, unreadable named."""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

import pytest

from executor.errors import ExitCode, SnapshotError
from executor.snapshot import hash_tree


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "dir").mkdir(parents=True)
    (d / "dir" / "file").write_text("inside")
    return d


def test_link_to_directory_inside_is_not_followed(data: Path) -> None:
    (data / "alias").symlink_to("dir")
    entries = {e.path: e for e in hash_tree(data).listing.entries}
    assert entries[b"alias"].type == "l"
    assert b"alias/file" not in entries


def test_dangling_link_inside_is_recorded(data: Path) -> None:
    (data / "later").symlink_to("dir/not-yet")
    entries = {e.path: e for e in hash_tree(data).listing.entries}
    assert entries[b"later"].type == "l"
    assert entries[b"later"].size == len(b"dir/not-yet")


@pytest.mark.parametrize("target", ["../outside", "/etc/passwd", "dir/../../x", "dir/up/.."])
def test_link_pointing_outside_is_an_error(data: Path, target: str) -> None:
    (data / "dir" / "up").symlink_to("..") if target == "dir/up/.." else None
    (data / "escape").symlink_to(target)
    with pytest.raises(SnapshotError) as info:
        hash_tree(data)
    assert "outside the snapshot" in info.value.message
    assert info.value.hint and "--allow-external-links" in info.value.hint
    assert info.value.exit_code == ExitCode.BAD_INPUT


def test_link_chain_escaping_through_another_link(data: Path) -> None:
    """`dir/up -> ..` stays inside, but `via -> dir/up/..` resolves outside."""
    (data / "dir" / "up").symlink_to("..")
    hash_tree(data)  # `up` alone is fine
    (data / "via").symlink_to("dir/up/..")
    with pytest.raises(SnapshotError, match="via"):
        hash_tree(data)


def test_external_link_allowed_is_recorded_as_text(data: Path) -> None:
    (data / "escape").symlink_to("/etc/passwd")
    entries = {e.path: e for e in hash_tree(data, allow_external_links=True).listing.entries}
    assert entries[b"escape"].type == "l"
    assert entries[b"escape"].size == len(b"/etc/passwd")


def test_fifo_is_an_error(data: Path) -> None:
    os.mkfifo(data / "dir" / "pipe")
    with pytest.raises(SnapshotError, match=r"dir/pipe: is a FIFO"):
        hash_tree(data)


def test_socket_is_an_error(data: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    path = data / "sock"
    try:
        s.bind(str(path))
        with pytest.raises(SnapshotError, match="sock: is a socket"):
            hash_tree(data)
    finally:
        s.close()


def test_device_is_an_error(data: Path) -> None:
    try:
        os.mknod(data / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD, which this user lacks")
    with pytest.raises(SnapshotError, match="null: is a device file"):
        hash_tree(data)


def _deny(monkeypatch: pytest.MonkeyPatch, name: str, victim: bytes) -> None:
    """Make one path unreadable even for root, which chmod 000 cannot do."""
    real = getattr(os, name)

    def fake(path: bytes, *args: object) -> object:
        if os.fsencode(path).endswith(victim):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real(path, *args)

    monkeypatch.setattr(os, name, fake)


def test_unreadable_file_is_named(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _deny(monkeypatch, "open", b"dir/file")
    with pytest.raises(SnapshotError) as info:
        hash_tree(data, use_cache=False)
    assert str(data / "dir" / "file") in info.value.message
    assert "Permission denied" in info.value.message


@pytest.mark.parametrize(("call", "use_cache"), [("scandir", False), ("open", True)])
def test_unreadable_directory_is_named(
    data: Path, monkeypatch: pytest.MonkeyPatch, call: str, use_cache: bool
) -> None:
    """Without the cache the walk scans by path; with it, it opens the directory first."""
    _deny(monkeypatch, call, b"/dir")
    with pytest.raises(SnapshotError, match=r"dir: cannot read \(Permission denied\)"):
        hash_tree(data, use_cache=use_cache)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_by_mode(data: Path) -> None:
    os.chmod(data / "dir" / "file", 0)
    with pytest.raises(SnapshotError, match="dir/file"):
        hash_tree(data, use_cache=False)


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(SnapshotError, match="not a directory"):
        hash_tree(tmp_path / "f")
    with pytest.raises(SnapshotError, match="no such directory"):
        hash_tree(tmp_path / "missing")


def test_file_changing_during_hash_is_an_error(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If a file's stat moves between the walk and the read, the result would be a lie."""
    real_fstat = os.fstat

    def growing(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        values = list(st)
        values[stat.ST_SIZE] += 1
        return os.stat_result(values)

    monkeypatch.setattr(os, "fstat", growing)
    with pytest.raises(SnapshotError, match="changed while it was being hashed"):
        hash_tree(data, use_cache=False)
