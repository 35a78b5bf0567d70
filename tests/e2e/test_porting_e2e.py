"""An ordinary argparse trainer run by rexec with no wrapper (specs/porting.toml, docs/porting.md)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from executor.errors import ExitCode
from tests.e2e.conftest import REPO, Rexec, build_definition, gen, statement

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

PORTING = REPO / "specs" / "porting.toml"


def variant(
    tmp_path: Path,
    *,
    drop: tuple[str, ...] = (),
    run: dict[str, Any] | None = None,
    command: list[str] | None = None,
) -> Path:
    """specs/porting.toml elsewhere, its relative paths made absolute, with one change:
    words dropped from its command, another command, or more ``[run]`` keys."""
    doc = tomllib.loads(PORTING.read_text())
    doc["image"]["build"].update(
        dockerfile=f"{REPO}/images/demo/Dockerfile", context=f"{REPO}/images/demo"
    )
    doc["inputs"][0]["path"] = f"{REPO}/specs/demo/data"
    doc["code"]["path"] = f"{REPO}/specs/porting"
    if drop:
        assert all(word in doc["run"]["command"] for word in drop)
        doc["run"]["command"] = [w for w in doc["run"]["command"] if w not in drop]
    if command is not None:
        doc["run"]["command"] = command
    doc["run"].update(run or {})
    return gen(tmp_path / "porting.toml", doc)


def test_the_trainer_runs_unchanged_bitwise_twice_and_on_replay(
    rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    first = rexec.run(PORTING, keys[0], runs, "--allow-dirty", "--param", "lr=0.25", "--seed", "3")
    second = rexec.run(PORTING, keys[0], runs, "--allow-dirty", "--param", "lr=0.25", "--seed", "3")
    names = sorted(p.name for p in (first / "outputs").iterdir())
    assert names == ["metrics.json", "weights.npy"]  # it saved where {outputs} pointed it
    for name in names:
        assert (first / "outputs" / name).read_bytes() == (second / "outputs" / name).read_bytes()
    internal = build_definition(first)["internalParameters"]
    assert internal["argv"] == [
        "python3", "/code/trainer.py", "--seed", "3", "--data", "/data", "--save-dir",
        "/outputs", "--batch-size", "32", "--epochs", "30", "--lr", "0.25",
    ]  # fmt: skip
    assert internal["determinism"] == {"report": "automatic", "requested": ["numpy"]}
    view = build_definition(first)["externalParameters"]["spec"]
    assert view["command"][3] == "{seed}" and view["paramsAs"] == "flags"
    assert view["seedOverride"] == {"default": 1, "value": 3}
    assert view["paramOverrides"] == [{"key": "lr", "default": 0.5, "value": 0.25}]

    out = rexec(
        "replay", first, "--key", keys[1], "--signing-key", keys[0], "--runs-dir", runs, "--json"
    )
    assert json.loads(out.stdout)["verdict"] == "reproduced-bitwise"

    fixed = tmp_path / "blobs-fixed"
    fixed.mkdir()
    rows = (REPO / "specs" / "demo" / "data" / "train.csv").read_text().splitlines(keepends=True)
    (fixed / "train.csv").write_text("".join(rows[:-20]))  # a data fix: 20 bad rows dropped
    (fixed / "test.csv").write_text((REPO / "specs" / "demo" / "data" / "test.csv").read_text())
    rerun = rexec(
        "rerun", first, "--input", f"blobs={fixed}", "--key", keys[1],
        "--signing-key", keys[0], "--runs-dir", runs, "-q",
    ).stdout  # fmt: skip
    assert "metrics.json accuracy:" in rerun and "metrics.json epochs: 30 (same)" in rerun

    default = rexec.run(PORTING, keys[0], runs, "--allow-dirty")
    diff = rexec("diff", first, default).stdout  # exit 0: compared, whatever differs
    assert "param lr: 0.25 → 0.5" in diff
    assert 'argv[3]: "3" → "1"' in diff
    assert "A overrode seed (--seed): default 1 → 3" in diff
    assert "max abs diff" in diff and " at element " in diff  # the worst weight is named


def test_writing_next_to_itself_gets_a_hint_and_scratch_workdir_runs_it(
    rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    plain = variant(tmp_path, drop=("--save-dir", "{outputs}"))
    failed = rexec(
        "run",
        plain,
        "--signing-key",
        keys[0],
        "--runs-dir",
        runs,
        "--allow-dirty",
        check=ExitCode.JOB_FAILED,
    )
    assert "the job wrote to a read-only path (/code/weights.npy)" in failed.stderr
    assert "scratch_workdir = true" in failed.stderr and '"{outputs}"' in failed.stderr

    scratch = variant(tmp_path, drop=("--save-dir", "{outputs}"), run={"scratch_workdir": True})
    out = rexec(
        "run", scratch, "--signing-key", keys[0], "--runs-dir", runs, "--allow-dirty", "--json"
    )
    run_dir = Path(json.loads(out.stdout)["run_dir"])
    assert "wrote 2 file(s) into its scratch workdir /code, which is discarded" in out.stderr
    assert "'metrics.json', 'weights.npy'" in out.stderr
    internal = build_definition(run_dir)["internalParameters"]
    assert internal["scratchWorkdir"] == {
        "kind": "copy-of-code",
        "mount": "/code",
        "filesWritten": 2,
    }
    assert internal["optIns"]["scratchWorkdir"] is True
    assert not (run_dir / ".scratch-workdir").exists()
    assert (REPO / "specs" / "porting").joinpath("weights.npy").exists() is False
    rexec("verify", run_dir, "--key", keys[1])


def test_a_job_that_never_reports_is_warned_about_and_recorded(
    rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    spec = variant(tmp_path, command=["sh", "-c", "echo trained > $REXEC_OUTPUTS/model.txt"])
    out = rexec(
        "run",
        spec,
        "--signing-key",
        keys[0],
        "--runs-dir",
        tmp_path / "runs",
        "--allow-dirty",
        "--json",
    )
    assert "the job never reported its determinism settings" in out.stderr
    run_dir = Path(json.loads(out.stdout)["run_dir"])
    internal = build_definition(run_dir)["internalParameters"]
    assert internal["determinism"] == {"report": "absent", "requested": ["numpy"]}


def test_seeds_runs_each_seed_and_prints_the_spread(
    rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    out = rexec(
        "run", PORTING, "--signing-key", keys[0], "--runs-dir", tmp_path / "runs",
        "--allow-dirty", "--seeds", "3", "--json", "-q",
    )  # fmt: skip
    doc = json.loads(out.stdout)
    assert doc["seeds"] == [1, 2, 3] and len(doc["runs"]) == 3
    seeds = [
        build_definition(Path(r["run_dir"]))["internalParameters"]["argv"][3] for r in doc["runs"]
    ]
    assert seeds == ["1", "2", "3"]
    (acc,) = [s for s in doc["spread"] if s["key"] == "accuracy"]
    values = [
        json.loads((Path(r["run_dir"]) / "outputs" / "metrics.json").read_text())["accuracy"]
        for r in doc["runs"]
    ]
    assert acc["values"] == values and acc["min"] == min(values)
    human = rexec(
        "run", PORTING, "--signing-key", keys[0], "--runs-dir", tmp_path / "runs",
        "--allow-dirty", "--seeds", "4,5", "-q",
    ).stdout  # fmt: skip
    assert "metrics over 2 seeds (4, 5)" in human and "metrics.json accuracy: mean" in human
    assert statement(Path(doc["runs"][0]["run_dir"]))["subject"]
