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
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import BASE_IMAGE, Rexec, git

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
    digest = rexec("snapshot", "hash", data, "--quiet").stdout.strip()
    spec = tmp_path / "spec.toml"
    spec.write_text(
        textwrap.dedent(f"""\
        version = 1
        name = "audited"
        [image]
        ref = "{BASE_IMAGE}"
        [run]
        command = ["python3", "/code/train.py"]
        seed = 1
        [code]
        path = "{code}"
        mount = "/code"
        [[inputs]]
        name = "data"
        path = "{data}"
        digest = "{digest}"
        mount = "/data"
        [determinism]
        frameworks = []
        """)
    )
    run = rexec.run(spec, keys[0], tmp_path / "runs")
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
    assert checked["verified"] and checked["inputs"] == ["data"] and checked["code"]
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
    assert json.loads(rexec("verify", lean, "--key", keys[1], "--json").stdout)["notIncluded"] == [
        "data"
    ]
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
