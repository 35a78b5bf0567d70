"""`rexec diff --json` field by field, on two records written the way the pipeline writes them.

The records are assembled here from executor.record.manifest.build_statement, real
snapshot listings (hash_tree of two data directories) and hand-written
outputs, so each expected value is known from what the test put in.
"""

from __future__ import annotations

import hashlib
import io
import json
from contextlib import redirect_stdout
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from executor import snapshot
from executor.canonical import canonical_json
from executor.cli import main
from executor.errors import ExitCode
from executor.record.manifest import Byproduct, RunStatus, Subject, build_statement, dumps

IMAGE_A = "a" * 64
IMAGE_B = "b" * 64


def spec_view(
    *, seed: int, params: dict[str, Any], overrides: list[dict[str, Any]], digest: str, cpus: float
) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "t",
        "command": ["python3", "/code/train.py"],
        "workdir": "/code",
        "env": {},
        "secrets": [],
        "seed": seed,
        "timeoutSeconds": 60.0,
        "params": params,
        "paramOverrides": overrides,
        "inputs": [{"name": "data", "digest": digest, "mount": "/data"}],
        "outputs": {"mount": "/outputs"},
        "resources": {"cpus": cpus, "memoryBytes": None, "gpus": None, "pids": 512},
        "determinism": {"frameworks": ["numpy"], "strict": True},
        "signing": {"method": "key"},
        "security": {"allowNetwork": False, "allowRoot": False, "allowWritableRoot": False},
        "code": {"mount": "/code"},
        "replay": {"tolerance": [{"pattern": "metrics.json", "rtol": 0.01, "atol": 0.0}]},
    }


def make_record(
    root: Path,
    run_id: str,
    *,
    data: Path,
    image: str,
    commit: str,
    seed: int,
    params: dict[str, Any],
    overrides: list[dict[str, Any]],
    outputs: dict[str, bytes],
    host: dict[str, Any],
    cpus: float = 1.0,
) -> Path:
    record = root / run_id
    (record / "outputs").mkdir(parents=True)
    (record / "inputs").mkdir()
    snap = snapshot.hash_tree(data, use_cache=False)
    files = {
        "inputs/data.listing.json": canonical_json(snap.listing.to_json()),
        "host.json": canonical_json(host),
    }
    for name, content in files.items():
        (record / name).write_bytes(content)
    for name, content in outputs.items():
        (record / "outputs" / name).write_bytes(content)
    now = datetime(2025, 1, 1, tzinfo=UTC)
    statement = build_statement(
        subjects=[Subject(n, hashlib.sha256(c).hexdigest()) for n, c in outputs.items()],
        external={
            "spec": spec_view(
                seed=seed, params=params, overrides=overrides, digest=snap.digest, cpus=cpus
            )
        },
        internal={"gpuUuids": []},
        dependencies=[
            {
                "name": "image",
                "uri": f"docker-image-id:sha256:{image}",
                "digest": {"sha256": image},
            },
            {
                "name": "code",
                "digest": {"gitCommit": commit, "sha256-tree-v1": "c" * 64},
                "annotations": {"mount": "/code", "dirty": False},
            },
            {"name": "input:data", "digest": {"sha256-tree-v1": snap.digest.split(":")[1]}},
        ],
        builder_id="rexec://test",
        builder_dependencies=[],
        run_id=run_id,
        started_on=now,
        finished_on=now,
        status=RunStatus("succeeded", 0),
        byproducts=[Byproduct(n, c, "application/json") for n, c in files.items()],
        rexec_version="0",
    )
    (record / "statement.json").write_bytes(dumps(statement))
    return record


def host(kernel: str, driver: str) -> dict[str, Any]:
    return {
        "schema": "rexec.host/v1",
        "gpu": {"available": True, "driver_version": driver, "count": 0, "devices": {}},
        "os": {"kernel": kernel},
    }


def run_diff(*args: str | Path) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["diff", *map(str, args)])
    return code, out.getvalue()


@pytest.fixture
def two_records(tmp_path: Path) -> tuple[Path, Path]:
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    for d in (d1, d2):
        (d / "sub").mkdir(parents=True)
        (d / "keep.txt").write_text("same\n")
        (d / "sub" / "x.csv").write_text("1,2\n")
    (d1 / "old.txt").write_text("bye\n")
    (d2 / "sub" / "x.csv").write_text("1,3\n")  # corrected
    (d2 / "new.txt").write_text("hi\n")
    a = make_record(
        tmp_path / "runs",
        "A-run",
        data=d1,
        image=IMAGE_A,
        commit="1" * 40,
        seed=7,
        params={"lr": 0.1, "opt": {"name": "sgd"}},
        overrides=[],
        outputs={
            "model.bin": b"weights",
            "same.txt": b"s",
            "metrics.json": json.dumps({"loss": 0.5}).encode(),
            "gone.txt": b"g",
        },
        host=host("6.1", "550.1"),
    )
    b = make_record(
        tmp_path / "runs",
        "B-run",
        data=d2,
        image=IMAGE_B,
        commit="2" * 40,
        seed=8,
        params={"lr": 0.2, "opt": {"name": "sgd"}},
        overrides=[{"key": "lr", "default": 0.1, "value": 0.2}],
        outputs={
            "model.bin": b"weights2",
            "same.txt": b"s",
            "metrics.json": json.dumps({"loss": 0.501}).encode(),
            "new.txt": b"n",
        },
        host=host("6.2", "535.1"),
        cpus=2.0,
    )
    return a, b


def test_diff_json_field_by_field(two_records: tuple[Path, Path]) -> None:
    a, b = two_records
    code, text = run_diff(a, b, "--json")
    assert code == 0
    doc = json.loads(text)
    assert doc["schema"] == "rexec.diff/v1"
    assert doc["a"]["runId"] == "A-run" and doc["b"]["runId"] == "B-run"
    assert (
        doc["a"]["statementSha256"]
        == hashlib.sha256((a / "statement.json").read_bytes()).hexdigest()
    )
    assert doc["same"] == {"inputs": False, "environment": False, "outputs": False, "status": True}

    inputs = doc["inputs"]
    assert inputs["image"] == {
        "same": False,
        "a": {"uri": f"docker-image-id:sha256:{IMAGE_A}", "digest": f"sha256:{IMAGE_A}"},
        "b": {"uri": f"docker-image-id:sha256:{IMAGE_B}", "digest": f"sha256:{IMAGE_B}"},
    }
    assert (
        inputs["code"]["a"]["gitCommit"] == "1" * 40
        and inputs["code"]["b"]["gitCommit"] == "2" * 40
    )
    assert inputs["seed"] == {"same": False, "a": 7, "b": 8, "overrides": {"a": None, "b": None}}
    assert inputs["command"]["same"] is True
    (snap,) = inputs["snapshots"]["entries"]
    assert snap["name"] == "data" and snap["status"] == "changed"
    assert snap["files"] == {"added": ["new.txt"], "removed": ["old.txt"], "changed": ["sub/x.csv"]}
    assert inputs["params"]["changed"] == [{"key": "lr", "a": 0.1, "b": 0.2}]
    assert inputs["params"]["overrides"] == {
        "a": [],
        "b": [{"key": "lr", "default": 0.1, "value": 0.2}],
    }
    assert inputs["other"]["changed"] == [{"key": "resources.cpus", "a": 1.0, "b": 2.0}]

    env = doc["environment"]
    assert {d["path"]: d["impact"] for d in env["differences"]} == {
        "gpu.driver_version": "breaks-bitwise",
        "os.kernel": "provenance-only",
    }

    files = {f["name"]: f for f in doc["outputs"]["files"]}
    assert {n: f["status"] for n, f in files.items()} == {
        "model.bin": "different",
        "same.txt": "identical",
        "metrics.json": "within-tolerance",  # |0.501-0.5| = 0.001 <= 0.01 * 0.5
        "gone.txt": "missing",
        "new.txt": "extra",
    }
    assert files["metrics.json"]["numeric"]["maxAbsDiff"] == abs(0.501 - 0.5)
    assert files["metrics.json"]["tolerance"] == {
        "pattern": "metrics.json",
        "rtol": 0.01,
        "atol": 0.0,
    }
    assert files["gone.txt"]["replay"] is None
    assert files["new.txt"]["original"] is None
    assert doc["outputs"]["counts"] == {
        "identical": 1,
        "volatile": 0,  # none declared
        "within-tolerance": 1,
        "different": 1,
        "missing": 1,
        "extra": 1,
    }


def test_diff_of_a_record_with_itself_is_all_same(two_records: tuple[Path, Path]) -> None:
    a, _ = two_records
    code, text = run_diff(a, a, "--json")
    doc = json.loads(text)
    assert code == 0
    assert doc["same"] == {"inputs": True, "environment": True, "outputs": True, "status": True}
    assert {f["status"] for f in doc["outputs"]["files"]} == {"identical"}


def test_human_output_names_the_changed_files(two_records: tuple[Path, Path]) -> None:
    a, b = two_records
    code, text = run_diff(a, b)
    assert code == 0
    assert "changed: sub/x.csv" in text
    assert "param lr: 0.1 → 0.2" in text
    assert "\x1b[" not in text  # not a terminal: no colour codes
    for line in (
        "different        model.bin",
        "missing          gone.txt",
        "extra            new.txt",
    ):
        assert line in text


def test_diff_of_something_that_is_not_a_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["diff", str(tmp_path), str(tmp_path)])
    assert code == ExitCode.BAD_INPUT
    assert "not a run record" in capsys.readouterr().err


def test_a_volatile_output_is_reported_and_never_fails_the_comparison(tmp_path: Path) -> None:
    """A TensorBoard event file's name and bytes carry the time and host: it made a
    bit-identical model replay `not-reproduced`. Declared volatile, it is reported so."""
    from executor.compare import VOLATILE, compare_outputs

    a, b = tmp_path / "a", tmp_path / "b"
    (a / "tb").mkdir(parents=True)
    (b / "tb").mkdir(parents=True)
    original = {"model.pt": "1" * 64, "tb/events.out.tfevents.1733.host-a.1.0": "2" * 64}
    replay = {"model.pt": "1" * 64, "tb/events.out.tfevents.1799.host-b.7.0": "3" * 64}
    plain = compare_outputs(original=original, original_dir=a, replay=replay, replay_dir=b)
    assert not plain.bitwise and plain.named("missing") and plain.named("extra")
    declared = compare_outputs(
        original=original, original_dir=a, replay=replay, replay_dir=b,
        volatile=["events.out.tfevents.*"],
    )  # fmt: skip
    assert declared.bitwise and declared.named("identical") == ["model.pt"]
    assert sorted(declared.named(VOLATILE)) == sorted([*original, *replay][1::2])
    changed = {"model.pt": "9" * 64, **{k: v for k, v in replay.items() if k != "model.pt"}}
    worse = compare_outputs(
        original=original, original_dir=a, replay=changed, replay_dir=b,
        volatile=["events.out.tfevents.*"],
    )  # fmt: skip
    assert not worse.bitwise and worse.named("different") == ["model.pt"]  # only what it names
