"""Reading files a job or a record controls: no links followed, no FIFO waited on, capped."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from executor import outputs, safeio


def test_walk_lists_each_directory_sorted_before_entering_it_and_never_follows_links(
    tmp_path: Path,
) -> None:
    for rel in ("b/2", "a/1", "c", "a/0"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    (tmp_path / "a" / "link").symlink_to("/etc")
    rels = [e.rel.decode() for e in safeio.walk(tmp_path)]
    assert rels == ["a", "b", "c", "a/0", "a/1", "a/link", "b/2"]
    kinds = {e.rel: stat.S_ISLNK(e.st.st_mode) for e in safeio.walk(tmp_path)}
    assert kinds[b"a/link"] is True


def test_walk_and_rmtree_cope_with_nesting_deeper_than_the_recursion_limit(
    tmp_path: Path,
) -> None:
    deep = tmp_path / "t"
    path = os.fsencode(deep)
    os.mkdir(path)
    for _ in range(1500):
        path = os.path.join(path, b"d")
        os.mkdir(path)
    assert sum(1 for _ in safeio.walk(deep)) == 1500
    safeio.rmtree(deep)
    assert not deep.exists()


def test_rmtree_beyond_path_max_and_through_unreadable_directories(tmp_path: Path) -> None:
    deep = tmp_path / "t"
    deep.mkdir()
    fd = os.open(deep, os.O_RDONLY)
    try:  # build a tree whose full path is longer than PATH_MAX, by descriptors
        for _ in range(40):
            os.mkdir("x" * 200, dir_fd=fd)
            new = os.open("x" * 200, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
    finally:
        os.close(fd)
    locked = tmp_path / "t2" / "locked"
    locked.mkdir(parents=True)
    (locked / "f").write_text("x")
    locked.chmod(0)
    safeio.rmtree(deep)
    safeio.rmtree(tmp_path / "t2")
    assert not deep.exists() and not (tmp_path / "t2").exists()


def test_read_capped_refuses_links_fifos_devices_and_large_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    (tmp_path / "link").symlink_to(secret)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "big").write_bytes(b"x" * 101)
    with pytest.raises(safeio.UnsafeFile, match="symbolic link"):
        safeio.read_capped(tmp_path / "link")
    with pytest.raises(safeio.UnsafeFile, match="FIFO"):
        safeio.read_capped(tmp_path / "fifo")  # returns at once: nothing waits on a writer
    with pytest.raises(safeio.UnsafeFile, match="device"):
        safeio.read_capped("/dev/zero")
    with pytest.raises(safeio.UnsafeFile, match="101 bytes"):
        safeio.read_capped(tmp_path / "big", cap=100)
    assert safeio.read_capped(tmp_path / "big", cap=101) == b"x" * 101
    with pytest.raises(safeio.UnsafeFile, match="symbolic link"):
        safeio.sha256_file(tmp_path / "link")


def test_read_capped_does_not_block_on_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    done = threading.Event()

    def read() -> None:
        with pytest.raises(safeio.UnsafeFile):
            safeio.read_capped(tmp_path / "fifo")
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(5), "read_capped waited on a FIFO with no writer"


def test_outputs_policy_keeps_regular_files_and_records_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    (out / "sub").mkdir(parents=True)
    (out / "model.bin").write_bytes(b"m")
    (out / "sub" / "run.sh").write_bytes(b"#!/bin/sh\n")
    (out / "sub" / "run.sh").chmod(0o700)
    (out / "secret").write_bytes(b"s")
    (out / "secret").chmod(0)
    (out / "link").symlink_to("/etc/shadow")
    os.mkfifo(out / "fifo")
    (out / "back\\slash").write_bytes(b"b")
    os.close(os.open(os.path.join(os.fsencode(out), b"bad\xffname"), os.O_CREAT | os.O_WRONLY))
    bad_dir = os.path.join(os.fsencode(out), b"dir\x01")
    os.mkdir(bad_dir)
    os.close(os.open(os.path.join(bad_dir, b"inside"), os.O_CREAT | os.O_WRONLY))

    subjects, excluded = outputs.settle(out)

    assert [name for name, _ in subjects] == ["model.bin", "secret", "sub/run.sh"]
    assert {(e.name, e.kind) for e in excluded} == {
        ("link", "a symbolic link"),
        ("fifo", "a FIFO"),
        ("back\\\\slash", "a regular file"),
        ("bad\\\\xffname", "a regular file"),
        ("dir\\x01", "a directory"),
    }
    left = sorted(e.rel for e in safeio.walk(out))
    assert left == [b"model.bin", b"secret", b"sub", b"sub/run.sh"]
    assert stat.S_IMODE((out / "secret").stat().st_mode) == 0o644
    assert stat.S_IMODE((out / "sub" / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "sub").stat().st_mode) == 0o755
