"""Listings: JSON round trip, tamper detection, diffs, the store, and verify_tree's report."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.errors import InputError, MismatchError, SnapshotError
from executor.snapshot import (
    Listing,
    diff_listings,
    hash_tree,
    load_listing,
    store_listing,
    verify_tree,
)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "a").mkdir(parents=True)
    (d / "a" / "b.csv").write_text("1,2\n")
    (d / "keep.txt").write_text("same")
    (d / "gone.txt").write_text("bye")
    return d


def test_json_round_trip_with_undecodable_name(data: Path) -> None:
    with open(os.fsencode(data) + b"/\xff\xfe", "wb") as f:
        f.write(b"x")
    listing = hash_tree(data).listing
    text = json.dumps(listing.to_json())
    again = Listing.from_json(text)
    assert again == listing
    assert {"base64": "//4="} in [e[3] for e in json.loads(text)["entries"]]


def test_streamed_json_equals_dict_form(data: Path, tmp_path: Path) -> None:
    listing = hash_tree(data).listing
    with open(tmp_path / "l.json", "w") as out:
        listing.write_json(out)
    assert json.loads((tmp_path / "l.json").read_text()) == listing.to_json()


def test_tampered_listing_is_rejected(data: Path) -> None:
    doc = hash_tree(data).listing.to_json()
    doc["entries"][0][3] = "renamed"
    with pytest.raises(InputError, match="entries hash to"):
        Listing.from_json(doc)


def test_diff_names_files(data: Path) -> None:
    old = hash_tree(data).listing
    (data / "a" / "b.csv").write_text("1,3\n")
    (data / "gone.txt").unlink()
    (data / "new").mkdir()
    (data / "new" / "n.txt").write_text("n")
    diff = diff_listings(old, hash_tree(data).listing)
    assert diff.lines() == [
        "changed: a/b.csv",
        "added: new/",
        "added: new/n.txt",
        "removed: gone.txt",
    ]


def test_diff_reports_type_change(data: Path) -> None:
    old = hash_tree(data).listing
    (data / "keep.txt").unlink()
    (data / "keep.txt").symlink_to("a/b.csv")
    assert diff_listings(old, hash_tree(data).listing).changed == ("keep.txt (file → symlink)",)


def test_diff_refuses_mixed_algorithms(data: Path) -> None:
    with pytest.raises(InputError, match="cannot compare") as info:
        diff_listings(hash_tree(data).listing, hash_tree(data, algo="blake3").listing)
    assert info.value.hint and "--algo sha256" in info.value.hint


def test_store_and_load(data: Path) -> None:
    listing = hash_tree(data).listing
    path = Path(store_listing(listing))
    assert path.name == listing.digest.split(":")[1] + ".json"
    assert path.is_relative_to(os.environ["REXEC_CACHE_DIR"])
    assert load_listing(listing.digest) == listing
    assert load_listing("sha256-tree-v1:" + "0" * 64) is None


def test_a_kept_listing_is_not_rewritten_and_a_damaged_one_heals(data: Path) -> None:
    listing = hash_tree(data).listing
    path = Path(store_listing(listing))
    first = path.stat().st_mtime_ns
    os.utime(path, ns=(first - 10**9, first - 10**9))
    store_listing(listing)
    assert path.stat().st_mtime_ns == first - 10**9  # kept, not written again
    path.write_text(path.read_text().replace('"f"', '"d"', 1))  # damaged in the cache
    assert load_listing(listing.digest) is None
    assert not path.exists()
    store_listing(listing)
    assert load_listing(listing.digest) == listing


def test_verify_ok_and_mismatch_names_files(data: Path) -> None:
    pinned = hash_tree(data)
    assert verify_tree(data, pinned.digest).digest == pinned.digest
    (data / "a" / "b.csv").write_text("changed")
    with pytest.raises(MismatchError) as info:
        verify_tree(data, pinned.digest, reference=pinned.listing)
    assert info.value.details == ("changed: a/b.csv",)


def test_verify_uses_the_store(data: Path) -> None:
    pinned = hash_tree(data)
    store_listing(pinned.listing)
    (data / "keep.txt").unlink()
    with pytest.raises(MismatchError) as info:
        verify_tree(data, pinned.digest)
    assert info.value.details == ("removed: keep.txt",)


def test_verify_without_listing_says_root_differs(data: Path) -> None:
    pinned = hash_tree(data)
    (data / "keep.txt").write_text("other")
    with pytest.raises(MismatchError, match="the root differs") as info:
        verify_tree(data, pinned.digest)
    assert info.value.hint and "snapshot diff" in info.value.hint


def test_verify_picks_algorithm_from_digest(data: Path) -> None:
    pinned = hash_tree(data, algo="blake3")
    assert verify_tree(data, pinned.digest).algo == "blake3"
    with pytest.raises(InputError, match="not a tree digest"):
        verify_tree(data, "sha256:" + "0" * 64)


# --- property: any one change of a byte, a name or a type changes the root ---------------

NAMES = st.text(alphabet="abc.-_", min_size=1, max_size=4).filter(lambda n: n not in (".", ".."))
TREES = st.dictionaries(NAMES, st.binary(min_size=1, max_size=20), min_size=1, max_size=6)
MUTATION = st.sampled_from(["byte", "name", "file-to-link", "file-to-dir"])


def _build(root: Path, files: dict[str, bytes]) -> None:
    root.mkdir()
    (root / "sub").mkdir()
    for i, (name, content) in enumerate(sorted(files.items())):
        ((root / "sub") if i % 2 else root).joinpath(name).write_bytes(content)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    files=TREES, which=st.integers(min_value=0), offset=st.integers(min_value=0), mutation=MUTATION
)
def test_any_single_change_changes_the_root(
    files: dict[str, bytes], which: int, offset: int, mutation: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "t"
        _build(root, files)
        before = hash_tree(root, use_cache=False).digest
        victims = sorted(p for p in root.rglob("*") if p.is_file())
        victim = victims[which % len(victims)]
        content = victim.read_bytes()
        if mutation == "byte":
            i = offset % len(content)
            victim.write_bytes(content[:i] + bytes([content[i] ^ 1]) + content[i + 1 :])
        elif mutation == "name":
            victim.rename(victim.with_name(victim.name + "x"))
        elif mutation == "file-to-link":
            victim.unlink()
            victim.symlink_to(content.hex() or "x")
        else:
            victim.unlink()
            victim.mkdir()
        assert hash_tree(root, use_cache=False).digest != before
        shutil.rmtree(root)


def test_trees_from_known_file_digests_equal_hashing_the_trees(tmp_path: Path) -> None:
    import hashlib

    from executor.snapshot import trees_of

    root = tmp_path / "outputs"
    (root / "model" / "shards").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "model" / "w.bin").write_bytes(b"w" * 1000)
    (root / "model" / "shards" / "0").write_bytes(b"0")
    (root / "model.json").write_text("{}")  # sorts between model and model/… by component
    (root / "metrics.json").write_text('{"acc": 1}')
    digests = {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }
    trees = trees_of(root, digests)
    assert trees[""] == hash_tree(root, use_cache=False).digest
    assert trees["model/"] == hash_tree(root / "model", use_cache=False).digest
    assert trees["empty/"] == hash_tree(root / "empty", use_cache=False).digest
    assert set(trees) == {"", "model/", "empty/"}
    with pytest.raises(SnapshotError, match="no known digest"):
        trees_of(root, {k: v for k, v in digests.items() if k != "metrics.json"})
