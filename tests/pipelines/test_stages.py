"""Pipelines, in-process: a stage's key, the signed stage cache that reuses only a
verified run of the same computation, the signed ledger, and the regeneration report."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from executor import catalog, pipelines, spec
from executor.pipelines.ledger import PREDICATE_TYPE, write_ledger
from executor.pipelines.reuse import find_reusable, key_of, spec_key_of_record
from executor.record import load_record, load_statement
from executor.signing import KeySigner, SignOptions
from tests.fakes import FakeRuntime
from tests.hostile.lab import Lab


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


def quiet(text: str) -> None:
    """What rexec would say; these tests read values, not words."""


def stage_spec(lab: Lab, name: str = "train", *, seed: int = 1) -> spec.RunSpec:
    text = lab.spec_text(name, {"data": str(lab.raw)}, seed=seed)
    return spec.loads(text.encode(), source=lab.root / f"{name}.toml")


def test_the_same_computation_has_one_key_and_a_change_another(lab: Lab) -> None:
    runtime = FakeRuntime()
    same = [key_of(stage_spec(lab), runtime=runtime, say=quiet)[0] for _ in range(2)]
    assert same[0] == same[1]
    assert key_of(stage_spec(lab, seed=2), runtime=runtime, say=quiet)[0] != same[0]
    (lab.raw / "raw.txt").write_text("corrected\n")
    assert key_of(stage_spec(lab), runtime=runtime, say=quiet)[0] != same[0]


def test_a_run_is_reused_only_when_its_record_verifies_and_signs_that_key(lab: Lab) -> None:
    run = lab.run("train")
    key = spec_key_of_record(load_record(run.run_dir))
    assert key == key_of(stage_spec(lab), runtime=FakeRuntime(), say=quiet)[0]
    cat = catalog.open_catalog()
    try:
        assert find_reusable(cat, key, policy=None, say=quiet).found is None  # no trust, no reuse
        found = find_reusable(cat, key, policy=lab.policy, say=quiet)
        assert found.found is not None and found.found.record.run_id == run.run_id
        lab.resign(run.run_dir, key=lab.evil_key)  # the same bytes, another signer
        refused = find_reusable(cat, key, policy=lab.policy, say=quiet)
        assert refused.found is None and run.run_id in refused.refused[0]
    finally:
        cat.close()


def test_the_ledger_is_a_signed_statement_naming_each_stages_statement(lab: Lab) -> None:
    runs = [lab.run(name) for name in ("extract", "train")]
    stages = [
        {"stage": r.run_id.split("-")[1], "statementSha256": r.statement_sha256} for r in runs
    ]
    signer = KeySigner.from_options(SignOptions(method="key", key_path=lab.key))
    started = datetime.now(UTC)
    where = write_ledger(
        lab.runs, "p-1", kind="pipeline", stages=stages, about={}, started=started, signer=signer
    )
    payload = (where / "statement.json").read_bytes()
    doc = load_statement(payload, source="ledger")
    assert doc["predicateType"] == PREDICATE_TYPE and doc["predicate"]["kind"] == "pipeline"
    assert [s["digest"]["sha256"] for s in doc["subject"]] == [r.statement_sha256 for r in runs]
    signed = lab.policy.verify_bundle((where / "statement.sigstore.json").read_bytes())
    assert signed.payload == payload
    assert not list((lab.runs / "pipelines").glob(".*"))  # no staging left behind


def test_the_regeneration_report_shows_every_stage_and_escapes_what_records_hold() -> None:
    evil = "<script>alert(1)</script>"
    doc = {
        "id": "20261201T000000Z-regenerate-abc",
        "trigger": {"from": "sha256:" + "a" * 64, "to": "sha256:" + "b" * 64, "path": evil},
        "summary": {"regenerated": 1, "pruned": 1},
        "ledger": "runs/pipelines/x",
        "stages": [
            {
                "stage": "train",
                "decision": "regenerated",
                "reason": "re-ran on the corrected inputs",
                "oldRun": "old-1",
                "runId": "new-1",
                "changedInputs": [{"name": evil, "from": "sha256:1", "to": "sha256:2"}],
                "outputs": [{"name": "w.txt", "same": False, "before": "x", "after": "y"}],
                "metrics": [{"file": "m.json", "key": "acc", "before": 0.5, "after": 0.75}],
            },
            {
                "stage": "evaluate",
                "decision": "pruned",
                "reason": "its inputs did not change",
                "oldRun": "old-2",
                "runId": None,
                "changedInputs": [],
                "outputs": [],
                "metrics": [],
            },
        ],
    }
    page = pipelines.regeneration_html(doc)
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "default-src 'none'" in page and "http://" not in page
    assert re.search(r"regenerated.*pruned", page, re.S)
    assert "+0.25" in page  # the metric's delta
    assert "old-1" in page and "new-1" in page
