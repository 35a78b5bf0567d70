"""Definition tests for sha256-tree-v1 / blake3-tree-v1.

The expected digests are computed here by hand from the written definition
(docs/snapshots.md), independently of executor.snapshot.listing, so a change
to the implementation that drifts from the spec fails.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

from executor.snapshot import DIGEST_RE, hash_tree


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REXEC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def build(root: Path) -> None:
    (root / "b.txt").write_bytes(b"beta\n")
    (root / "a").mkdir()
    (root / "a" / "x.bin").write_bytes(bytes(range(256)))
    (root / "a.b").write_bytes(b"")
    (root / "empty").mkdir()
    (root / "a" / "link").symlink_to("x.bin")


def spec_digest(
    name: str, h: Callable[[bytes], bytes], rows: list[tuple[str, bytes, bytes]]
) -> str:
    """rows: (type, path, content) already in the specified order."""
    data = name.encode() + b"\n"
    for kind, path, content in rows:
        data += b"%s %d %s %s\x00" % (kind.encode(), len(content), h(content).hex().encode(), path)
    return f"{name}:{h(data).hex()}"


# Component-wise order: "a" < "a/link" < "a/x.bin" < "a.b" < "b.txt" < "empty".
EXPECTED_ROWS = [
    ("d", b"a", b""),
    ("l", b"a/link", b"x.bin"),
    ("f", b"a/x.bin", bytes(range(256))),
    ("f", b"a.b", b""),
    ("f", b"b.txt", b"beta\n"),
    ("d", b"empty", b""),
]


def test_sha256_golden(tmp_path: Path) -> None:
    build(tmp_path)
    snap = hash_tree(tmp_path)
    want = spec_digest("sha256-tree-v1", lambda b: hashlib.sha256(b).digest(), EXPECTED_ROWS)
    assert snap.digest == want
    assert DIGEST_RE.match(snap.digest)
    assert (snap.files, snap.bytes) == (3, 256 + 5)


def test_blake3_golden(tmp_path: Path) -> None:
    build(tmp_path)
    snap = hash_tree(tmp_path, algo="blake3")
    want = spec_digest("blake3-tree-v1", lambda b: blake3.blake3(b).digest(), EXPECTED_ROWS)
    assert snap.digest == want
    assert snap.digest.startswith("blake3-tree-v1:")


def test_file_digest_is_plain_sha256(tmp_path: Path) -> None:
    """Users can cross-check any file in a listing with sha256sum."""
    build(tmp_path)
    snap = hash_tree(tmp_path)
    by_path = {e.path: e for e in snap.listing.entries}
    assert by_path[b"b.txt"].digest.hex() == hashlib.sha256(b"beta\n").hexdigest()


def test_empty_tree(tmp_path: Path) -> None:
    snap = hash_tree(tmp_path)
    assert snap.digest == "sha256-tree-v1:" + hashlib.sha256(b"sha256-tree-v1\n").hexdigest()


def test_order_does_not_depend_on_creation_order(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    names = ["z", "a", "m", "a.b", "B"]
    for n in names:
        (one / n).write_text(n)
    for n in reversed(names):
        (two / n).write_text(n)
    assert hash_tree(one).digest == hash_tree(two).digest


def test_empty_directory_counts(tmp_path: Path) -> None:
    build(tmp_path)
    before = hash_tree(tmp_path).digest
    (tmp_path / "another-empty").mkdir()
    assert hash_tree(tmp_path).digest != before


def test_changed_byte_and_rename(tmp_path: Path) -> None:
    build(tmp_path)
    base = hash_tree(tmp_path, use_cache=False).digest
    (tmp_path / "b.txt").write_bytes(b"betb\n")
    changed = hash_tree(tmp_path, use_cache=False).digest
    assert changed != base
    (tmp_path / "b.txt").write_bytes(b"beta\n")
    assert hash_tree(tmp_path, use_cache=False).digest == base
    (tmp_path / "b.txt").rename(tmp_path / "c.txt")
    assert hash_tree(tmp_path, use_cache=False).digest != base


def test_symlink_recorded_not_followed(tmp_path: Path) -> None:
    """Changing the link's target text changes the digest; the target's bytes are not read."""
    build(tmp_path)
    base = hash_tree(tmp_path).digest
    (tmp_path / "a" / "link").unlink()
    (tmp_path / "a" / "link").symlink_to("./x.bin")
    assert hash_tree(tmp_path).digest != base
    # A link and a file with the link text as content differ (type is in the record).
    (tmp_path / "a" / "link").unlink()
    (tmp_path / "a" / "link").write_bytes(b"x.bin")
    assert hash_tree(tmp_path).digest != base


def test_permissions_and_times_do_not_count(tmp_path: Path) -> None:
    build(tmp_path)
    base = hash_tree(tmp_path).digest
    os.chmod(tmp_path / "b.txt", 0o600)
    os.utime(tmp_path / "b.txt", ns=(1, 1))
    assert hash_tree(tmp_path).digest == base


def test_root_path_does_not_count(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    build(tmp_path / "x")
    build(tmp_path / "y")
    assert hash_tree(tmp_path / "x").digest == hash_tree(tmp_path / "y").digest


def test_non_utf8_name_hashed_by_its_bytes(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9"
    with open(raw, "wb") as f:
        f.write(b"latin-1 name")
    snap = hash_tree(tmp_path)
    want = spec_digest(
        "sha256-tree-v1", lambda b: hashlib.sha256(b).digest(), [("f", b"caf\xe9", b"latin-1 name")]
    )
    assert snap.digest == want


def test_large_file_streams_to_plain_sha256(tmp_path: Path) -> None:
    """A multi-block file (> 1 MiB read size) still hashes to its sha256sum."""
    data = os.urandom(3 * (1 << 20) + 17)
    (tmp_path / "big").write_bytes(data)
    snap = hash_tree(tmp_path)
    assert snap.listing.entries[0].digest == hashlib.sha256(data).digest()
    b3 = hash_tree(tmp_path, algo="blake3")
    assert b3.listing.entries[0].digest == blake3.blake3(data).digest()
