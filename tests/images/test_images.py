"""Image resolution at the runtime seam: FROM pinning, build reuse, archive checks."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from executor import images
from executor.canonical import canonical_json
from executor.errors import InputError, MismatchError
from executor.images.archive import check_archive
from executor.spec import ArchiveSpec, BuildSpec, ImageSpec
from tests.fakes import FakeImageEngine

DIGEST = "sha256:" + "cd" * 32


def build_spec(tmp_path: Path, dockerfile: str, **kw: object) -> BuildSpec:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    return BuildSpec(ctx / "Dockerfile", ctx, **kw)  # type: ignore[arg-type]


def resolve(spec: ImageSpec, runtime: FakeImageEngine, **kw: bool) -> images.ResolvedImage:
    return images.resolve_image(spec, runtime=runtime, spec_name="t", log=lambda _: None, **kw)  # type: ignore[arg-type]


def test_unpinned_from_is_refused_with_its_line(tmp_path: Path) -> None:
    build = build_spec(tmp_path, "# x\nARG B=base:1\nFROM ${B}\n")
    runtime = FakeImageEngine()
    with pytest.raises(InputError) as info:
        resolve(ImageSpec(build=build), runtime)
    assert f"{build.dockerfile}:3: FROM ${{B}}" in info.value.details[0]
    assert runtime.builds == 0


def test_allowed_unpinned_from_records_the_local_id(tmp_path: Path) -> None:
    build = build_spec(tmp_path, "FROM base:1\n", allow_unpinned_from=True)
    runtime = FakeImageEngine()
    runtime.add("base:1", "sha256:" + "0" * 64)
    resolved = resolve(ImageSpec(build=build), runtime)
    assert resolved.build is not None
    assert resolved.build["bases"] == [
        {"line": 1, "ref": "base:1", "imageId": "sha256:" + "0" * 64, "pinned": False}
    ]


def test_second_build_from_same_inputs_reuses_the_image(tmp_path: Path) -> None:
    build = build_spec(tmp_path, f"FROM r@{DIGEST}\n", args={"A": "1"})
    runtime = FakeImageEngine()
    first = resolve(ImageSpec(build=build), runtime)
    second = resolve(ImageSpec(build=build), runtime)
    assert runtime.builds == 1
    assert second.image_id == first.image_id
    assert first.build is not None and second.build is not None
    assert (first.build["reused"], second.build["reused"]) == (False, True)
    assert {k: v for k, v in first.build.items() if k != "reused"} == {
        k: v for k, v in second.build.items() if k != "reused"
    }
    # The key is the digest of exactly the documented inputs, computed here by hand.
    by_hand = {
        "dockerfileSha256": hashlib.sha256(f"FROM r@{DIGEST}\n".encode()).hexdigest(),
        "contextDigest": first.build["contextDigest"],
        "bases": [DIGEST],
        "args": {"A": "1"},
        "target": None,
    }
    assert (
        first.build["buildKey"] == "sha256:" + hashlib.sha256(canonical_json(by_hand)).hexdigest()
    )


def test_changed_input_or_vanished_image_rebuilds(tmp_path: Path) -> None:
    build = build_spec(tmp_path, f"FROM r@{DIGEST}\n")
    runtime = FakeImageEngine()
    first = resolve(ImageSpec(build=build), runtime)
    changed = BuildSpec(build.dockerfile, build.context, {"A": "2"})
    resolve(ImageSpec(build=changed), runtime)
    assert runtime.builds == 2
    del runtime.images[first.image_id]
    third = resolve(ImageSpec(build=build), runtime)
    assert runtime.builds == 3
    assert third.build is not None and third.build["reused"] is False


def make_archive(path: Path, *, tamper_layer: bool = False) -> str:
    """A docker-archive tar made by hand: one layer, a config naming its diff id."""
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w") as layer:
        data = b"hello\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        layer.addfile(info, io.BytesIO(data))
    layer_bytes = layer_buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    image_id = "sha256:" + hashlib.sha256(config).hexdigest()
    if tamper_layer:
        layer_bytes = layer_bytes.replace(b"hello", b"HELLO")
    manifest = json.dumps(
        [{"Config": "config.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}]
    ).encode()
    with tarfile.open(path, "w") as tar:
        for name, blob in (
            ("manifest.json", manifest),
            ("config.json", config),
            ("l/layer.tar", layer_bytes),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return image_id


def test_archive_with_the_pinned_id_is_accepted(tmp_path: Path) -> None:
    image_id = make_archive(tmp_path / "a.tar")
    checked = check_archive(tmp_path / "a.tar", image_id=image_id)
    assert checked.layers == 1
    assert checked.sha256 == hashlib.sha256((tmp_path / "a.tar").read_bytes()).hexdigest()


def test_archive_with_another_id_is_refused_before_load(tmp_path: Path) -> None:
    image_id = make_archive(tmp_path / "a.tar")
    runtime = FakeImageEngine()
    wrong = "sha256:" + "9" * 64
    with pytest.raises(MismatchError) as info:
        resolve(ImageSpec(archive=ArchiveSpec(tmp_path / "a.tar", wrong)), runtime)
    assert image_id in info.value.details[0]
    assert runtime.loaded == []


def test_archive_with_a_tampered_layer_is_refused(tmp_path: Path) -> None:
    image_id = make_archive(tmp_path / "a.tar", tamper_layer=True)
    with pytest.raises(MismatchError, match="layer 0"):
        check_archive(tmp_path / "a.tar", image_id=image_id)
