"""An audit bundle is unpacked without trusting a byte of it: each way a tar can reach
outside its directory, or be something other than files and directories, is refused."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from executor.errors import InputError
from executor.export.archive import add_tree, unpack


def tar_of(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def kind(name: str, type_: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = type_, target
    return info


HOSTILE: dict[str, tuple[Callable[[], list[tuple[tarfile.TarInfo, bytes | None]]], str]] = {
    "absolute": (lambda: [(file("/etc/cron.d/x"), b"x")], "not a relative path"),
    "dot-dot": (lambda: [(file("record/../../x"), b"x")], "not a relative path"),
    "symlink": (
        lambda: [(kind("record/l", tarfile.SYMTYPE, "/etc/passwd"), None)],
        "not a regular",
    ),
    "hardlink": (
        lambda: [(kind("record/h", tarfile.LNKTYPE, "/etc/passwd"), None)],
        "not a regular",
    ),
    "device": (lambda: [(kind("record/d", tarfile.CHRTYPE), None)], "not a regular"),
    "fifo": (lambda: [(kind("record/f", tarfile.FIFOTYPE), None)], "not a regular"),
    "twice": (lambda: [(file("record/a"), b"1"), (file("record/a"), b"2")], "appears twice"),
    "file-then-child": (
        lambda: [(file("record/a"), b"1"), (file("record/a/b"), b"2")],
        "record/a",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_member_is_refused_and_nothing_lands_outside(tmp_path: Path, case: str) -> None:
    members, expected = HOSTILE[case]
    archive = tar_of(tmp_path / "bundle.tar", *members())
    dest = tmp_path / "out"
    with pytest.raises(InputError, match=expected):
        unpack(archive, dest)
    outside = {p for p in tmp_path.rglob("*") if dest not in p.parents and p != dest}
    assert outside == {archive}


def test_a_bundle_is_unpacked_only_into_an_empty_directory(tmp_path: Path) -> None:
    archive = tar_of(tmp_path / "bundle.tar", (file("record/a"), b"1"))
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "mine").write_text("kept")
    with pytest.raises(InputError, match="not empty"):
        unpack(archive, dest)
    assert (dest / "mine").read_text() == "kept"


def test_what_is_not_a_tar_or_is_cut_short_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(InputError, match="not a readable tar"):
        unpack(junk, tmp_path / "a")
    whole = tar_of(tmp_path / "whole.tar", (file("record/a"), b"x" * 10_000))
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole.read_bytes()[:2048])
    with pytest.raises(InputError):
        unpack(cut, tmp_path / "b")


def test_a_tree_round_trips_and_a_link_in_it_is_refused_on_the_way_in(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "w.bin").write_bytes(b"\x00weights")
    (tree / "top.txt").write_text("top\n")
    with tarfile.open(tmp_path / "t.tar", "w") as tar:
        assert add_tree(tar, tree, "record") == len(b"\x00weights") + len("top\n")
    unpack(tmp_path / "t.tar", tmp_path / "back")
    assert (tmp_path / "back" / "record" / "sub" / "w.bin").read_bytes() == b"\x00weights"
    (tree / "link").symlink_to("/etc/passwd")
    with tarfile.open(tmp_path / "u.tar", "w") as tar, pytest.raises(InputError, match="link"):
        add_tree(tar, tree, "record")
