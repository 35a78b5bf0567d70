"""Replay, in-process: the original rebuilt from its record, its pins checked before
anything runs, and the verdict decided and stated about the original's Statement."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from executor import runner
from executor.compare import OutputComparison, compare_outputs
from executor.errors import InputError, MismatchError
from executor.record import RunStatus, load_record, load_statement, replay_verdict
from executor.replay.plan import Original, plan_replay, plan_rerun, spec_from_record
from executor.replay.verdict import (
    BITWISE,
    NOT_REPRODUCED,
    WITHIN,
    decide,
    verdict_statement,
)
from executor.spec import Tolerance
from tests.fakes import FakeRuntime
from tests.hostile.lab import Lab


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


LOSS = {"metrics.json": b'{"loss": 0.5}'}
NEAR = {"metrics.json": b'{"loss": 0.5000001}'}


def quiet(text: str) -> None:
    """What rexec would say; these tests read values, not words."""


def original(lab: Lab, writes: dict[str, bytes] | None = None) -> Original:
    run = lab.run("train", writes=writes, seed=3)
    return Original(load_record(run.run_dir), "verified by the test")


def test_the_spec_rebuilt_from_a_record_is_the_one_that_ran(lab: Lab) -> None:
    first = original(lab)
    rebuilt = spec_from_record(first.record, paths={}, digests={})
    recorded = first.record.spec
    assert (rebuilt.name, rebuilt.run.seed) == ("train", 3)
    assert [(i.name, i.digest, i.mount) for i in rebuilt.inputs] == [
        (i["name"], i["digest"], i["mount"]) for i in recorded["inputs"]
    ]
    assert rebuilt.source_sha256 == first.record.statement_sha256  # what it replays


def test_a_signed_statement_that_lacks_what_a_run_needs_is_refused_by_name(lab: Lab) -> None:
    first = original(lab)
    statement = dict(first.record.statement)
    predicate = dict(statement["predicate"])
    definition = dict(predicate["buildDefinition"])
    external = dict(definition["externalParameters"])
    external["spec"] = {k: v for k, v in external["spec"].items() if k != "resources"}
    definition["externalParameters"] = external
    predicate["buildDefinition"] = definition
    statement["predicate"] = predicate
    mangled = dataclasses.replace(first.record, statement=statement)
    with pytest.raises(InputError, match="the signed spec cannot be run again") as info:
        spec_from_record(mangled, paths={}, digests={})
    assert info.value.hint and "a record `rexec run` wrote" in info.value.hint


def test_an_input_changed_since_the_run_stops_the_replay_naming_the_file(lab: Lab) -> None:
    first = original(lab)
    (lab.raw / "raw.txt").write_text("edited\n")
    with pytest.raises(MismatchError) as info:
        plan_replay(first, inputs={}, runtime=FakeRuntime(), say=quiet)
    assert "raw.txt" in " ".join([info.value.message, *info.value.details])


def test_a_rerun_needs_a_change_and_names_only_recorded_inputs(lab: Lab) -> None:
    first = original(lab)
    with pytest.raises(InputError, match="at least one --input"):
        plan_rerun(first, changes={}, runtime=FakeRuntime(), say=quiet)
    with pytest.raises(InputError, match="unchanged"):
        plan_rerun(first, changes={"data": lab.raw}, runtime=FakeRuntime(), say=quiet)
    fixed = lab.root / "fixed"
    fixed.mkdir()
    (fixed / "raw.txt").write_text("a\nb\nc\n")
    plan = plan_rerun(first, changes={"data": fixed}, runtime=FakeRuntime(), say=quiet)
    (change,) = plan.changed_inputs
    assert change["from"] == first.record.spec["inputs"][0]["digest"] != change["to"]
    assert plan.lineage["derivedFrom"] == first.record.run_id


def result(lab: Lab, writes: dict[str, bytes], status: str = "succeeded") -> runner.RunResult:
    run = lab.run("train", writes=writes, seed=3)
    return dataclasses.replace(run, status=RunStatus(status, 0 if status == "succeeded" else 1))


def comparison(first: Original, again: runner.RunResult, **rtol: float) -> OutputComparison:
    return compare_outputs(
        original=first.record.outputs,
        original_dir=first.record.outputs_dir,
        replay={s.name: s.sha256 for s in again.subjects},
        replay_dir=again.run_dir / "outputs",
        tolerances=tuple(Tolerance(p, r, 0.0) for p, r in rtol.items()),
    )


def test_the_verdict_is_the_status_then_bitwise_then_within_tolerance(lab: Lab) -> None:
    first = original(lab, LOSS)
    same = result(lab, LOSS)
    near = result(lab, NEAR)
    failed = result(lab, LOSS, "failed")
    status = first.record.status
    assert decide(comparison(first, same), original_status=status, result=same) == BITWISE
    loose = comparison(first, near, **{"metrics.json": 1e-3})
    assert decide(loose, original_status=status, result=near) == WITHIN
    strict = comparison(first, near)
    assert decide(strict, original_status=status, result=near) == NOT_REPRODUCED
    same_bytes = comparison(first, failed)
    assert decide(same_bytes, original_status=status, result=failed) == NOT_REPRODUCED


def test_the_verdict_is_a_test_result_statement_about_the_original(lab: Lab) -> None:
    first = original(lab, LOSS)
    again = result(lab, NEAR)
    plan = plan_replay(first, inputs={}, runtime=FakeRuntime(), say=quiet)
    outputs = comparison(first, again, **{"metrics.json": 1e-3})
    verdict = decide(outputs, original_status=first.record.status, result=again)
    doc = verdict_statement(plan, result=again, verdict=verdict, comparison=outputs)
    loaded = load_statement(json.dumps(doc).encode(), source="verdict")
    assert loaded["subject"][0]["digest"] == {"sha256": first.record.statement_sha256}
    assert loaded["predicate"]["result"] == "WARNED"
    assert loaded["predicate"]["warnedTests"] == ["output:metrics.json"]
    assert loaded["predicate"]["passedTests"] == ["exit-status"]
    (replayed,) = loaded["predicate"]["configuration"]
    assert replayed["digest"] == {"sha256": again.statement_sha256}
    found = replay_verdict(loaded)
    assert found is not None and found["verdict"] == WITHIN
    assert found["about"] == first.record.statement_sha256
