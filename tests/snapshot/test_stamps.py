"""Stamps: a tree the submit host hashed, checked on a node by lstat alone; anything
written since (content, a touch, a file added, removed or swapped for a link) is seen."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from executor import snapshot, spec
from executor.errors import InputError, MismatchError
from executor.runner import preflight
from executor.snapshot import Vouched, stamps


def tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "b.bin").write_bytes(b"\x00\x01" * 100)
    (root / os.fsdecode(b"caf\xe9")).write_text("not UTF-8 named\n")
    os.symlink("a.txt", root / "link")
    return root


def vouched(root: Path) -> Vouched:
    snap = snapshot.hash_tree(root, use_cache=False)
    taken = stamps.take(root)
    assert taken.entries == len(snap.listing.entries) + 1  # every entry, and the root
    return Vouched(snap.listing, taken.stamps)


def test_stamps_name_paths_below_the_root_however_it_is_reached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = stamps.take(tree(tmp_path / "d"))
    assert taken.stamps.startswith(stamps.PREFIX) and stamps.take(tmp_path / "d") == taken
    monkeypatch.chdir(tmp_path / "d" / "sub")
    assert stamps.take("..") == taken  # a relative path, and one that starts with a dot
    with pytest.raises(InputError, match="not a directory"):
        stamps.take(tmp_path / "d" / "link")  # a link is never followed, even at the root


def _rewrite_same_size(root: Path) -> None:
    before = os.stat(root / "a.txt")
    (root / "a.txt").write_text("ALPHA\n")
    os.utime(root / "a.txt", ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime set back


def _swap_for_a_link(root: Path) -> None:
    (root / "sub" / "b.bin").unlink()
    os.symlink("/etc/passwd", root / "sub" / "b.bin")


@pytest.mark.parametrize(
    "change",
    [
        _rewrite_same_size,  # the ctime no one can set back gives it away
        lambda r: (r / "new.txt").write_text("x"),
        lambda r: (r / "a.txt").unlink(),
        _swap_for_a_link,
        lambda r: (r / "link").unlink() or os.symlink("sub", r / "link"),
        lambda r: os.utime(r / "sub" / "b.bin"),  # touched: hashed again, found the same
    ],
)
def test_any_write_since_is_seen(tmp_path: Path, change: Callable[[Path], object]) -> None:
    root = tree(tmp_path / "d")
    taken = stamps.take(root)
    change(root)
    assert stamps.take(root) != taken


def test_unchanged_inputs_are_checked_by_lstat_and_never_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tree(tmp_path / "d")
    vouch = vouched(root)
    monkeypatch.setattr(snapshot, "verify_tree", lambda *a, **k: pytest.fail("hashed"))
    found = snapshot.check_vouched(root, vouch.listing.digest, vouch)
    assert found is not None and found.check == "stat"
    assert (found.digest, found.files) == (vouch.listing.digest, 3)  # regular files
    other = "sha256-tree-v1:" + "1" * 64  # stamps vouch for one digest only
    assert snapshot.check_vouched(root, other, vouch) is None


def test_a_touched_input_is_hashed_again_and_a_changed_one_refused(tmp_path: Path) -> None:
    root = tree(tmp_path / "d")
    vouch = vouched(root)
    run_spec = spec.loads(
        f"""version = 1
name = "t"
[image]
ref = "r@sha256:{"a" * 64}"
[run]
command = ["true"]
seed = 1
[[inputs]]
name = "data"
path = "d"
digest = "{vouch.listing.digest}"
mount = "/data"
""".encode(),
        source=tmp_path / "spec.toml",
    )
    said: list[str] = []

    def check() -> snapshot.Snapshot:
        found, _ = preflight.check_pins(
            run_spec, allow_dirty=False, say=said.append, vouched={"data": vouch}
        )
        return found["data"]

    assert check().check == "stat"
    os.utime(root / "a.txt")  # touched: the bytes are the same
    touched = check()
    assert (touched.check, touched.digest) == ("hash", vouch.listing.digest)
    assert "input data: changed since it was submitted (lstat); hashing it" in said
    (root / "a.txt").write_text("changed\n")
    with pytest.raises(MismatchError) as refused:
        check()
    assert any("a.txt" in line for line in refused.value.details)  # named from the listing
