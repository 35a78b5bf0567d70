"""Audit bundles: export a run, then verify and replay it bitwise on a second Docker engine
(its own data root and socket, started here) that has neither the image nor the data."""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import BASE_IMAGE, NO_FRAMEWORKS, Rexec, gen, git, pinned, spec

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

BRIDGE = "rexec-eng2"
TRAIN = "import hashlib; rows = open('/data/rows.txt').read(); open('/outputs/model.txt', 'w').write(hashlib.sha256(rows.encode()).hexdigest())\n"


@pytest.fixture(scope="module")
def second_engine() -> Iterator[str]:
    """A second dockerd with its own data root, exec root, socket and bridge."""
    import docker

    root = Path(tempfile.mkdtemp(prefix="rexec-eng2-"))
    subprocess.run(
        ["ip", "link", "add", BRIDGE, "type", "bridge"], check=False, capture_output=True
    )
    subprocess.run(
        ["ip", "addr", "add", "172.31.250.1/24", "dev", BRIDGE], check=False, capture_output=True
    )
    subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)
    socket = f"unix://{root}/docker.sock"
    log = open(root / "dockerd.log", "wb")  # noqa: SIM115 (closed at teardown)
    proc = subprocess.Popen(
        [
            "dockerd",
            f"--data-root={root}/data",
            f"--exec-root={root}/exec",
            f"--pidfile={root}/dockerd.pid",
            f"--host={socket}",
            f"--bridge={BRIDGE}",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                docker.DockerClient(base_url=socket).ping()
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError((root / "dockerd.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        yield socket
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        subprocess.run(["ip", "link", "delete", BRIDGE], check=False, capture_output=True)
        subprocess.run(["umount", "-R", str(root)], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def exported(rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path) -> dict[str, Any]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.txt").write_text("a\nb\nc\n")
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(TRAIN)
    git(code, "init", "-q")
    git(code, "add", "-A")
    git(code, "commit", "-qm", "train")
    doc = spec(
        "audited",
        ["python3", "/code/train.py"],
        inputs=[pinned(rexec, "data", data, "/data")],
        code={"path": str(code), "mount": "/code"},
        determinism=NO_FRAMEWORKS,
    )
    run = rexec.run(gen(tmp_path / "spec.toml", doc), keys[0], tmp_path / "runs")
    bundle = tmp_path / "run.tar"
    doc = json.loads(rexec("export", run, "-o", bundle, "--key", keys[1], "--json").stdout)
    return {"run": run, "bundle": bundle, "doc": doc, "data": data, "code": code}


def on(rexec: Rexec, socket: str) -> Rexec:
    return Rexec(env={**rexec.env, "DOCKER_HOST": socket}, cwd=rexec.cwd)


def test_an_exported_run_verifies_and_replays_bitwise_on_an_engine_with_none_of_it(
    rexec: Rexec,
    keys: tuple[Path, Path],
    exported: dict[str, Any],
    second_engine: str,
    tmp_path: Path,
) -> None:
    import docker

    doc = exported["doc"]
    assert {"record", "image", "input:data", "code"} <= set(doc["sizes"])
    other = docker.DockerClient(base_url=second_engine)
    with pytest.raises(docker.errors.ImageNotFound):
        other.images.get(doc["image"]["imageId"])  # the second engine lacks the image
    shutil.rmtree(exported["data"])  # and the data and the code are gone from this machine
    shutil.rmtree(exported["code"])
    there = on(rexec, second_engine)
    checked = json.loads(there("verify", exported["bundle"], "--key", keys[1], "--json").stdout)
    found = checked["auditBundle"]
    assert checked["verified"] and found["inputs"] == ["data"] and found["code"]
    out = there(
        "replay",
        exported["bundle"],
        "--key",
        keys[1],
        "--signing-key",
        keys[0],
        "--runs-dir",
        tmp_path / "runs2",
        "--unpack-to",
        tmp_path / "unpacked",
        "--json",
    )
    verdict = json.loads(out.stdout)
    assert verdict["verdict"] == "reproduced-bitwise", out.stderr
    assert other.images.get(doc["image"]["imageId"]).id == doc["image"]["imageId"]  # loaded there


def test_without_inputs_names_what_is_missing_and_a_changed_input_fails(
    rexec: Rexec, keys: tuple[Path, Path], exported: dict[str, Any], tmp_path: Path
) -> None:
    lean = tmp_path / "lean.tar"
    doc = json.loads(
        rexec(
            "export", exported["run"], "-o", lean, "--key", keys[1], "--without-inputs", "--json"
        ).stdout
    )
    assert doc["withoutInputs"] == ["data"] and "input:data" not in doc["sizes"]
    checked = json.loads(rexec("verify", lean, "--key", keys[1], "--json").stdout)
    assert checked["auditBundle"]["notIncluded"] == ["data"]
    refused = rexec("replay", lean, "--key", keys[1], "--unpack-to", tmp_path / "u", check=2)
    assert (
        "exported without input(s) data" in refused.stderr and "--input data=PATH" in refused.stderr
    )
    forged = tmp_path / "forged.tar"
    with tarfile.open(exported["bundle"]) as src, tarfile.open(forged, "w") as dst:
        for member in src:
            body = src.extractfile(member) if member.isreg() else None
            if member.name == "inputs/data/rows.txt":
                data = b"x\ny\nz\n"
                member.size = len(data)
                body = io.BytesIO(data)
            dst.addfile(member, body)
    assert rexec("verify", forged, "--key", keys[1], check=4).code == 4
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("record/../../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    out = rexec("verify", evil, "--key", keys[1], check=2)
    assert "not a relative path inside it" in out.stderr and not (tmp_path / "escape.txt").exists()


def _rewrite(src: Path, dst: Path, change: dict[str, bytes]) -> None:
    """A copy of the tar ``src`` with some members' bodies replaced."""
    with tarfile.open(src) as old, tarfile.open(dst, "w") as new:
        for member in old:
            body = old.extractfile(member) if member.isreg() else None
            if member.name in change:
                data = change[member.name]
                member.size = len(data)
                body = io.BytesIO(data)
            new.addfile(member, body)


def test_the_tar_is_gated_like_a_record_approvals_and_status(
    rexec: Rexec, keys: tuple[Path, Path], exported: dict[str, Any], tmp_path: Path
) -> None:
    """verify run.tar took --require-approval and ignored it: exit 0, VERIFIED, no approval."""
    rexec("keygen", "--out", tmp_path / "lead")
    lead = tmp_path / "lead.pub"
    out = rexec("verify", exported["bundle"], "--key", keys[1], "--require-approval", lead, check=3)
    assert "0 of the 1 required approval(s)" in out.stderr
    rexec(
        "approve", exported["run"], "--key", keys[1], "--signing-key", tmp_path / "lead.key",
    )  # fmt: skip
    approved = tmp_path / "approved.tar"
    rexec("export", exported["run"], "-o", approved, "--key", keys[1])
    ok = rexec("verify", approved, "--key", keys[1], "--require-approval", lead, "--json")
    assert json.loads(ok.stdout)["approvals"]["approvedBy"] == [str(lead)]
    shown = rexec("verify", approved, "--key", keys[1]).stdout
    assert "status:    succeeded (exit 0)" in shown  # the status is always shown


def test_replay_of_a_tar_runs_the_image_the_signed_record_names_not_the_index(
    rexec: Rexec, keys: tuple[Path, Path], exported: dict[str, Any], tmp_path: Path
) -> None:
    """The tar's index is an unsigned hint: one naming another image (present in the
    engine) used to make replay run that image and sign reproduced-bitwise."""
    import docker

    client = docker.from_env()  # another image the engine has: the base, relabelled
    dockerfile = f"FROM {BASE_IMAGE}\nLABEL dev.rexec.test=forged-replay\n".encode()
    other = client.images.build(fileobj=io.BytesIO(dockerfile), rm=True)[0].id
    with tarfile.open(exported["bundle"]) as tar:
        index = json.loads(tar.extractfile("rexec-export.json").read())  # type: ignore[union-attr]
    assert index["image"]["imageId"] != other
    index["image"]["imageId"] = other
    lying = tmp_path / "lying.tar"
    _rewrite(exported["bundle"], lying, {"rexec-export.json": json.dumps(index).encode()})
    out = rexec(
        "replay", lying, "--key", keys[1], "--signing-key", keys[0], "--runs-dir",
        tmp_path / "runs2", "--unpack-to", tmp_path / "u", "--json",
    )  # fmt: skip
    doc = json.loads(out.stdout)
    replayed = json.loads((Path(doc["replay"]["run_dir"]) / "statement.json").read_bytes())
    (image,) = [
        d for d in replayed["predicate"]["buildDefinition"]["resolvedDependencies"]
        if d["name"] == "image"
    ]  # fmt: skip
    assert "sha256:" + image["digest"]["sha256"] == exported["doc"]["image"]["imageId"] != other


def test_an_image_archive_that_would_retag_the_engine_is_refused(
    rexec: Rexec, keys: tuple[Path, Path], exported: dict[str, Any], tmp_path: Path
) -> None:
    with tarfile.open(exported["bundle"]) as tar:
        image = tar.extractfile("image/image.tar").read()  # type: ignore[union-attr]
    inner = tmp_path / "image.tar"
    inner.write_bytes(image)
    retag = tmp_path / "retag.tar"
    with tarfile.open(inner) as old:
        manifest = json.loads(old.extractfile("manifest.json").read())  # type: ignore[union-attr]
    manifest[0]["RepoTags"] = ["rexec/base:bookworm"]  # would re-point a tag rexec builds on
    _rewrite(inner, retag, {"manifest.json": json.dumps(manifest).encode()})
    evil = tmp_path / "evil.tar"
    _rewrite(exported["bundle"], evil, {"image/image.tar": retag.read_bytes()})
    out = rexec("verify", evil, "--key", keys[1], check=4)
    assert "re-point those tags" in out.stderr
    replay = rexec(
        "replay", evil, "--key", keys[1], "--runs-dir", tmp_path / "r", "--unpack-to",
        tmp_path / "u", check=4,
    )  # fmt: skip
    assert "re-point those tags" in replay.stderr


def test_export_packs_the_recorded_code_not_the_code_as_it_is_now(
    rexec: Rexec, keys: tuple[Path, Path], exported: dict[str, Any], tmp_path: Path
) -> None:
    code = exported["code"]
    (code / "train.py").write_text("print('changed after the run')\n")
    git(code, "commit", "-qam", "later work")  # the working tree moved on
    later = tmp_path / "later.tar"
    rexec("export", exported["run"], "-o", later, "--key", keys[1])
    rexec("verify", later, "--key", keys[1])  # was exit 4: the tar held today's code
    with tarfile.open(later) as tar:
        packed = tar.extractfile("code/train.py").read().decode()  # type: ignore[union-attr]
    assert packed == TRAIN
    (code / "train.py").write_text("uncommitted\n")
    git(code, "reset", "-q", "--hard", "HEAD")
    shutil.rmtree(code / ".git")  # the commit is gone too: nothing holds the recorded tree
    gone = tmp_path / "gone.tar"
    out = rexec("export", exported["run"], "-o", gone, "--key", keys[1], check=4)
    assert "holds the code tree the record pins" in out.stderr and not gone.exists()
