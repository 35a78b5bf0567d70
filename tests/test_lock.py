"""`rexec lock` without an engine: a fake registry answers digests."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from executor import lock, snapshot, spec
from executor.errors import InfrastructureError, InputError, SpecError

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


class FakeRegistry:
    def __init__(self, tags: dict[str, str]) -> None:
        self.tags = tags
        self.asked: list[str] = []

    def registry_digest(self, ref: str) -> str:
        self.asked.append(ref)
        if ref not in self.tags:
            raise InfrastructureError(f"cannot resolve {ref}")
        return self.tags[ref]


def make_project(tmp_path: Path, *, dockerfile: str, image: str) -> Path:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "Dockerfile").write_text(dockerfile)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("hello\n")
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "job.py").write_text("print(1)\n")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@e.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    path = tmp_path / "spec.toml"
    path.write_text(
        f"""version = 1
name = "t"
{image}
[run]
command = ["true"]
seed = 1

[[inputs]]
name = "d"
path = "data"
mount = "/data"

[code]
path = "code"
"""
    )
    return path


def load_doc(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def test_unlocked_spec_tells_the_user_to_lock(tmp_path: Path) -> None:
    path = make_project(tmp_path, dockerfile="FROM x\n", image='[image]\nref = "reg/x:1"\n')
    with pytest.raises(SpecError) as info:
        spec.load(path)
    text = info.value.render()
    assert "image.ref: 'reg/x:1' is not pinned" in text
    assert "inputs[0].digest: missing: the input is not pinned" in text
    assert "rexec lock" in text and "--allow-unpinned" in text


def test_lock_pins_ref_inputs_and_code(tmp_path: Path) -> None:
    path = make_project(tmp_path, dockerfile="FROM x\n", image='[image]\nref = "reg:5000/x:1"\n')
    fake = FakeRegistry({"reg:5000/x:1": D1})
    locked = lock.lock_document(load_doc(path), base=tmp_path, resolver=fake)
    doc = locked.document
    assert doc["image"]["ref"] == f"reg:5000/x:1@{D1}"
    assert doc["inputs"][0]["digest"] == snapshot.hash_tree(tmp_path / "data").digest
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert doc["code"]["commit"] == head
    assert doc["code"]["tree"] == snapshot.hash_tree(tmp_path / "code").digest
    assert {p.key for p in locked.pins} == {
        "image.ref",
        "inputs[0].digest",
        "code.commit",
        "code.tree",
    }
    # The result is a valid, fully pinned spec.
    out = tmp_path / "out" / "locked.toml"
    lock.rebase_paths(doc, source_dir=tmp_path, target_dir=out.parent)
    out.parent.mkdir()
    out.write_text(lock.dumps(doc, source="spec.toml"))
    parsed = spec.load(out)
    assert parsed.inputs[0].path == (tmp_path / "data").resolve()
    assert parsed.code is not None and parsed.code.path == (tmp_path / "code").resolve()
    assert parsed.image.ref == f"reg:5000/x:1@{D1}"


def test_lock_keeps_an_existing_digest_pin_even_if_the_tag_moved(tmp_path: Path) -> None:
    image = f'[image]\nref = "reg:5000/x:1@{D1}"\n'
    path = make_project(tmp_path, dockerfile="FROM x\n", image=image)
    fake = FakeRegistry({"reg:5000/x:1": D2})
    doc = lock.lock_document(load_doc(path), base=tmp_path, resolver=fake).document
    assert doc["image"]["ref"] == f"reg:5000/x:1@{D1}"
    assert fake.asked == []


def test_lock_pins_the_build_arg_that_names_from(tmp_path: Path) -> None:
    image = (
        "[image.build]\n"
        'dockerfile = "img/Dockerfile"\ncontext = "img"\nallow_unpinned_from = true\n'
        'args = { BASE = "reg:5000/base:bookworm" }\n'
    )
    path = make_project(tmp_path, dockerfile="ARG BASE=local:1\nFROM ${BASE} AS s\n", image=image)
    fake = FakeRegistry({"reg:5000/base:bookworm": D1})
    locked = lock.lock_document(load_doc(path), base=tmp_path, resolver=fake)
    build = locked.document["image"]["build"]
    assert build["args"] == {"BASE": f"reg:5000/base@{D1}"}
    assert "allow_unpinned_from" not in build  # nothing left to allow
    assert (tmp_path / "img" / "Dockerfile").read_text() == "ARG BASE=local:1\nFROM ${BASE} AS s\n"


def test_lock_refuses_a_literal_from_with_its_line(tmp_path: Path) -> None:
    image = '[image.build]\ndockerfile = "img/Dockerfile"\ncontext = "img"\n'
    path = make_project(tmp_path, dockerfile="# base\n\nFROM debian:12\n", image=image)
    with pytest.raises(InputError) as info:
        lock.lock_document(load_doc(path), base=tmp_path, resolver=FakeRegistry({}))
    assert f"{tmp_path / 'img' / 'Dockerfile'}:3:" in info.value.message
    assert info.value.hint is not None and "debian@sha256:" in info.value.hint


def test_not_strict_collects_what_it_could_not_pin(tmp_path: Path) -> None:
    path = make_project(tmp_path, dockerfile="FROM x\n", image='[image]\nref = "reg/x:1"\n')
    locked = lock.lock_document(
        load_doc(path), base=tmp_path, resolver=FakeRegistry({}), strict=False, code=False
    )
    assert locked.document["image"]["ref"] == "reg/x:1"
    assert locked.unresolved == ("cannot resolve reg/x:1",)
    assert "commit" not in locked.document["code"]


def test_code_tree_mismatch_is_refused() -> None:
    from executor.errors import MismatchError

    said: list[str] = []
    tree = "sha256-tree-v1:" + "a" * 64
    lock.check_code_pins(
        commit="c1", tree=tree, actual_commit="c2", actual_tree=tree, say=said.append
    )
    assert said and "unchanged" in said[0]
    with pytest.raises(MismatchError, match=r"code\.tree"):
        lock.check_code_pins(
            commit=None,
            tree=tree,
            actual_commit="c",
            actual_tree="sha256-tree-v1:" + "b" * 64,
            say=said.append,
        )


def test_a_locked_input_can_be_diffed_by_its_digest_later(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """lock keeps the listing it pinned, so `snapshot diff DIR DIGEST` names changed files."""
    from executor.cli import main

    path = make_project(tmp_path, dockerfile="FROM x\n", image='[image]\nref = "reg:5000/x:1"\n')
    doc = lock.lock_document(
        load_doc(path), base=tmp_path, resolver=FakeRegistry({"reg:5000/x:1": D1})
    ).document
    pinned = doc["inputs"][0]["digest"]
    victim = next(p for p in sorted((tmp_path / "data").rglob("*")) if p.is_file())
    victim.write_text("changed after the lock\n")
    capsys.readouterr()
    assert main(["snapshot", "diff", str(tmp_path / "data"), pinned, "-q"]) == 4
    assert f"changed: {victim.relative_to(tmp_path / 'data')}" in capsys.readouterr().out


def test_lock_keeps_the_specs_comments_and_layout(tmp_path: Path) -> None:
    path = make_project(tmp_path, dockerfile="FROM x\n", image='[image]\nref = "reg:5000/x:1"\n')
    text = "# why this spec exists\n" + path.read_text().replace(
        "[image]", "[image]\n# the team's image, pinned by `rexec lock`"
    )
    path.write_text(text)
    data = text.encode()
    doc = lock.editable(data, fallback=tomllib.loads(text))
    locked = lock.lock_document(doc, base=tmp_path, resolver=FakeRegistry({"reg:5000/x:1": D1}))
    out = lock.dumps(locked.document, source="spec.toml")
    assert "# why this spec exists\n" in out
    assert "[image]\n# the team's image, pinned by `rexec lock`\n" in out
    assert f'ref = "reg:5000/x:1@{D1}"' in out
    assert tomllib.loads(out)["inputs"][0]["digest"].startswith("sha256-tree-v1:")
    assert lock.dumps({"a": 1}, source="x").endswith("a = 1\n")  # a built document: plain
