"""`rexec replay`, `rexec rerun` and `rexec diff` end to end: real command, real engine.

The job image is built from a one-line Dockerfile on the base image, so these
tests do not depend on any demo image. Expected verdicts follow from what
each job writes (seeded numbers, the clock, run-id-dependent noise), not from
earlier output of the code under test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from executor.errors import ExitCode
from tests.e2e.conftest import BASE_IMAGE, Project, Rexec, strict_parse

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

TRAIN = """\
import hashlib, json, os
import numpy as np

params = json.load(open(os.environ["REXEC_PARAMS"]))
out = os.environ["REXEC_OUTPUTS"]
total = sum(int(x) for root, _, files in os.walk("/data") for f in files
            for x in open(os.path.join(root, f)).read().split())
rng = np.random.default_rng(int(os.environ["REXEC_SEED"]))
w = rng.standard_normal(8) * params["scale"] + total
# A run-dependent perturbation of size `noise` (0 unless a test asks for it).
h = int(hashlib.sha256(os.environ["REXEC_RUN_ID"].encode()).hexdigest()[:8], 16) / 2**32
w = w + params.get("noise", 0.0) * (0.5 + h)
np.save(os.path.join(out, "w.npy"), w)
with open(os.path.join(out, "metrics.json"), "w") as f:
    json.dump({"total": total, "mean": float(w.mean())}, f)
if params.get("clock"):
    import time
    open(os.path.join(out, "stamp.txt"), "w").write(str(time.time_ns()))
"""


def make_spec(
    project: Project,
    tmp_path: Path,
    *,
    params: dict[str, Any] | None = None,
    command: list[str] | None = None,
    **tables: Any,
) -> Path:
    """The e2e project's spec, with the image built from the base image directly."""
    image_dir = tmp_path / "image"
    image_dir.mkdir(exist_ok=True)
    (image_dir / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\n")
    project.write_code("train.py", TRAIN)
    build = {"dockerfile": f"{image_dir}/Dockerfile", "context": str(image_dir)}
    return project.spec(
        command or ["python3", "/code/train.py"], image={"build": build}, params=params, **tables
    )


def replay(
    rexec: Rexec,
    record: Path,
    keys: tuple[Path, Path],
    runs: Path,
    *more: str | Path,
    check: int | None = 0,
    verb: str = "replay",
):  # type: ignore[no-untyped-def]
    """`rexec replay` (or `rerun`) of a record, trusting and signing with the test keys."""
    return rexec(
        verb,
        record,
        "--key",
        keys[1],
        "--signing-key",
        keys[0],
        "--runs-dir",
        runs,
        "-q",
        *more,
        check=check,
    )


def test_replay_is_bitwise_with_a_signed_verdict(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    original = rexec.run(make_spec(project, tmp_path), keys[0], runs, "-q")
    out = replay(rexec, original, keys, runs, "--json")
    doc = json.loads(out.stdout)
    assert doc["verdict"] == "reproduced-bitwise"
    assert {f["name"]: f["status"] for f in doc["outputs"]} == {
        "metrics.json": "identical",
        "w.npy": "identical",
    }
    new = Path(doc["replay"]["run_dir"])

    verdict = json.loads((new / "verdict.json").read_bytes())
    assert verdict["predicateType"] == "https://in-toto.io/attestation/test-result/v0.1"
    strict_parse(verdict, "test_result")  # only the standard's fields: unknown ones rejected
    (detail,) = [c["annotations"] for c in verdict["predicate"]["configuration"]]
    assert detail["schema"] == "rexec.replay-verdict/v1" and detail["verdict"] == doc["verdict"]
    assert verdict["predicate"]["result"] == "PASSED"
    assert verdict["predicate"]["failedTests"] == []
    assert verdict["subject"][0]["digest"]["sha256"] == doc["original"]["statementSha256"]
    # the verdict is signed over the original statement it judges, and verify shows it
    shown = rexec(
        "verify",
        "--bundle",
        new / "verdict.sigstore.json",
        "--artifact",
        original / "statement.json",
        "--key",
        keys[1],
    )
    assert "replay:    reproduced-bitwise (PASSED)" in shown.stdout
    # the replay record is itself a signed run that names the original; its verdict is checked
    checked = json.loads(rexec("verify", new, "--key", keys[1], "--json").stdout)
    assert checked["replay_verdict"]["verdict"] == "reproduced-bitwise"
    assert checked["replay_verdict"]["about"] == doc["original"]["statementSha256"]
    forged = (new / "verdict.json").read_bytes().replace(b'"PASSED"', b'"FAILED"')
    (new / "verdict.json").write_bytes(forged)
    out = rexec("verify", new, "--key", keys[1], check=ExitCode.SIGNATURE)
    assert "verdict.json: differs from the payload signed" in out.stderr
    (new / "verdict.sigstore.json").unlink()
    out = rexec("verify", new, "--key", keys[1], check=ExitCode.SIGNATURE)
    assert "a replay verdict without its signature" in out.stderr
    lineage = json.loads((new / "statement.json").read_bytes())["predicate"]["buildDefinition"][
        "internalParameters"
    ]["lineage"]
    assert lineage["replayOf"] == original.name
    assert lineage["verification"].startswith("verified by key ")

    diff = json.loads(rexec("diff", original, new, "--json").stdout)
    assert diff["same"]["inputs"] and diff["same"]["outputs"]


def test_nondeterministic_job_is_not_reproduced_and_the_file_is_named(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    original = rexec.run(make_spec(project, tmp_path, params={"clock": True}), keys[0], runs, "-q")
    out = replay(rexec, original, keys, runs, check=ExitCode.NOT_REPRODUCED)
    assert "different: stamp.txt" in out.stderr
    assert "not-reproduced" in out.stdout
    new = next(p for p in runs.iterdir() if p.name != original.name)
    verdict = json.loads((new / "verdict.json").read_bytes())["predicate"]
    assert verdict["result"] == "FAILED"
    assert verdict["failedTests"] == ["output:stamp.txt"]
    assert "output:w.npy" in verdict["passedTests"]


@pytest.mark.parametrize(
    ("noise", "expected", "code"),
    [
        ("1e-12", "reproduced-within-tolerance", 0),
        ("1e-2", "not-reproduced", ExitCode.NOT_REPRODUCED),
    ],
)
def test_tolerance_policy_decides_small_versus_large_differences(
    project: Project,
    rexec: Rexec,
    keys: tuple[Path, Path],
    tmp_path: Path,
    noise: str,
    expected: str,
    code: int,
) -> None:
    runs = tmp_path / "runs"
    tolerance = [
        {"pattern": "*.npy", "rtol": 1e-9, "atol": 0.0},
        {"pattern": "metrics.json", "rtol": 1e-9},
    ]
    spec = make_spec(project, tmp_path, params={"noise": 0.0}, replay={"tolerance": tolerance})
    original = rexec.run(spec, keys[0], runs, "-q", f"--param=noise={noise}")
    doc = json.loads(replay(rexec, original, keys, runs, "--json", check=code).stdout)
    assert doc["verdict"] == expected
    w = next(f for f in doc["outputs"] if f["name"] == "w.npy")
    # the perturbation is noise * (0.5 + h), h in [0, 1): at most 1.5 * noise, and the two
    # runs' perturbations differ by less than that
    assert 0 < w["numeric"]["maxAbsDiff"] < 1.5 * float(noise)
    assert w["tolerance"]["pattern"] == "*.npy"
    # not bitwise: each metric that moved, judged against the runs of the spec with other
    # seeds; the original is the only one (its replay repeats its seed: not counted)
    moved = [m for m in doc["metrics"] if m["file"] == "metrics.json"]
    assert moved and all(m["before"] != m["after"] for m in moved)
    assert all(m["noise"]["verdict"] == "no seed reference" for m in moved)
    assert doc["seedReference"] == {"seeds": [7], "refused": 0}


def test_tampered_or_untrusted_record_is_refused(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    original = rexec.run(make_spec(project, tmp_path), keys[0], runs, "-q")
    no_policy = rexec("replay", original, "--runs-dir", runs, check=ExitCode.BAD_INPUT)
    assert "no trust policy" in no_policy.stderr

    (original / "outputs" / "w.npy").write_bytes(b"tampered")
    out = replay(rexec, original, keys, runs, check=ExitCode.MISMATCH)
    assert "w.npy" in out.stderr and "--no-verify" in out.stderr

    statement = original / "statement.json"
    statement.write_bytes(statement.read_bytes().replace(b'"seed":7', b'"seed":8'))
    out = replay(rexec, original, keys, runs, check=ExitCode.SIGNATURE)
    assert "altered after signing" in out.stderr
    assert [p.name for p in runs.iterdir()] == [original.name]  # nothing ran


def test_missing_snapshot_is_a_clear_error_and_input_points_at_a_copy(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    original = rexec.run(make_spec(project, tmp_path), keys[0], runs, "-q")
    moved = tmp_path / "moved-data"
    shutil.move(project.data, moved)
    out = replay(rexec, original, keys, runs, check=ExitCode.BAD_INPUT)
    assert f"input 'data': {project.data} is not a directory" in out.stderr
    assert "--input data=PATH" in out.stderr

    (moved / "numbers.txt").write_text("1\n2\n4\n")
    wrong = replay(rexec, original, keys, runs, "--input", f"data={moved}", check=ExitCode.MISMATCH)
    assert "changed: numbers.txt" in wrong.stderr

    (moved / "numbers.txt").write_text("1\n2\n3\n")
    ok = replay(rexec, original, keys, runs, "--input", f"data={moved}", "--json")
    assert json.loads(ok.stdout)["verdict"] == "reproduced-bitwise"


def test_rerun_with_a_corrected_input_names_changed_files_and_outputs(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    original = rexec.run(make_spec(project, tmp_path), keys[0], runs, "-q")
    fixed = tmp_path / "data-fixed"
    shutil.copytree(project.data, fixed)
    (fixed / "sub" / "more.txt").write_text("4\n50\n")
    out = replay(rexec, original, keys, runs, "--input", f"data={fixed}", "--json", verb="rerun")
    doc = json.loads(out.stdout)
    assert doc["lineage"]["derivedFrom"] == original.name
    (change,) = doc["lineage"]["changedInputs"]
    assert change["name"] == "data" and change["from"] != change["to"]
    (snap,) = doc["diff"]["inputs"]["snapshots"]["entries"]
    assert snap["files"] == {"added": [], "removed": [], "changed": ["sub/more.txt"]}
    outputs = {f["name"]: f for f in doc["diff"]["outputs"]["files"]}
    assert outputs["metrics.json"]["status"] == "different"
    # total went from 1+2+3+4+5 = 15 to 1+2+3+4+50 = 60
    assert outputs["metrics.json"]["numeric"]["maxAbsDiff"] >= 45
    metrics = {m["key"]: m for m in doc["metrics"] if m["file"] == "metrics.json"}
    assert (metrics["total"]["before"], metrics["total"]["after"]) == (15, 60)
    assert metrics["mean"]["after"] - metrics["mean"]["before"] == pytest.approx(45)
    new = Path(doc["run"]["run_dir"])
    signed = json.loads((new / "statement.json").read_bytes())
    assert signed["predicate"]["buildDefinition"]["internalParameters"]["lineage"][
        "changedInputs"
    ] == [change]
    rexec("verify", new, "--key", keys[1])

    same = replay(
        rexec,
        original,
        keys,
        runs,
        "--input",
        f"data={project.data}",
        check=ExitCode.BAD_INPUT,
        verb="rerun",
    )
    assert "unchanged" in same.stderr


def test_replay_hands_the_job_the_original_params_bytes(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A whole-number float is 20 in canonical JSON; the replayed job must still read 20.0."""
    runs = tmp_path / "runs"
    copy = "import os, shutil; shutil.copy(os.environ['REXEC_PARAMS'], os.environ['REXEC_OUTPUTS'])"
    command = ["python3", "-c", copy]
    spec = make_spec(project, tmp_path, params={"lr": 20.0}, command=command)
    original = rexec.run(spec, keys[0], runs, "-q")
    assert json.loads((original / "outputs" / "params.json").read_text())["lr"] == 20.0
    assert b"20.0" in (original / "outputs" / "params.json").read_bytes()
    doc = json.loads(replay(rexec, original, keys, runs, "--json").stdout)
    assert doc["verdict"] == "reproduced-bitwise"


def test_replay_acts_only_on_verified_record_files(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """An edited host capture would steer --strict-env and diff: verify refuses it first."""
    runs = tmp_path / "runs"
    original = rexec.run(make_spec(project, tmp_path), keys[0], runs, "-q")
    host = original / "host.json"
    host.write_bytes(host.read_bytes().replace(b'"os":', b'"os" :'))
    out = replay(rexec, original, keys, runs, "--strict-env", check=ExitCode.MISMATCH)
    assert "host.json" in out.stderr and "differ from the signed statement" in out.stderr
    verified = rexec("verify", original, "--key", keys[1], check=ExitCode.MISMATCH)
    assert "mismatched: host.json" in verified.stderr
    diff = rexec("diff", original, original, check=ExitCode.MISMATCH)
    assert "host.json: not the file the statement signs" in diff.stderr
    assert [p.name for p in runs.iterdir()] == [original.name]  # nothing ran
