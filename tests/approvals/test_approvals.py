"""Approvals, in-process: what an approval says, and every reason one is not counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executor import approvals
from executor.errors import MismatchError, VerificationError
from executor.record import load_record, load_statement
from executor.signing import KeyPolicy, KeySigner, SignOptions, generate_keypair
from tests.hostile.lab import Lab


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


def key(lab: Lab, name: str) -> tuple[KeySigner, KeyPolicy]:
    private, public = lab.root / f"{name}.key", lab.root / f"{name}.pub"
    HINTS[name] = generate_keypair(private, public, password=None)
    signer = KeySigner.from_options(SignOptions(method="key", key_path=private))
    return signer, KeyPolicy.from_file(public)


HINTS: dict[str, str] = {}


def approve(lab: Lab, run_dir: Path, signer: KeySigner) -> Path:
    record = load_record(run_dir)
    doc = approvals.vsa_statement(
        record, policy_uri=approvals.DEFAULT_POLICY, policy_digest=None, replay=None
    )
    return approvals.write_approval(record, doc, signer)


def test_an_approval_is_a_passed_vsa_about_exactly_the_records_statement(lab: Lab) -> None:
    run = lab.run("model")
    record = load_record(run.run_dir)
    doc = approvals.vsa_statement(
        record,
        policy_uri="file:policy.rego",
        policy_digest="ab" * 32,
        replay={"uri": "r/verdict.json", "sha256": "cd" * 32},
    )
    loaded = load_statement(json.dumps(doc).encode(), source="vsa")  # the strict reader
    assert loaded["subject"] == [
        {"name": f"{run.run_id}/statement.json", "digest": {"sha256": run.statement_sha256}}
    ]
    predicate = loaded["predicate"]
    assert loaded["predicateType"] == approvals.VSA_TYPE
    assert predicate["verificationResult"] == "PASSED"
    assert predicate["policy"] == {"uri": "file:policy.rego", "digest": {"sha256": "ab" * 32}}
    assert [i["digest"]["sha256"] for i in predicate["inputAttestations"]] == [
        run.statement_sha256,
        "cd" * 32,
    ]


def test_a_written_approval_verifies_to_its_signer_and_nothing_else_passes(lab: Lab) -> None:
    run = lab.run("model")
    alice, alice_policy = key(lab, "alice")
    _, bob_policy = key(lab, "bob")
    path = approve(lab, run.run_dir, alice)
    assert approvals.list_approvals(run.run_dir) == [path]
    signer = approvals.verify_approval(path, alice_policy, run.statement_sha256)
    assert HINTS["alice"] in signer and HINTS["bob"] not in signer
    with pytest.raises(VerificationError):  # someone else's key
        approvals.verify_approval(path, bob_policy, run.statement_sha256)
    with pytest.raises(MismatchError, match="not this record's"):
        approvals.verify_approval(path, alice_policy, "0" * 64)
    path.write_bytes(path.read_bytes().replace(b'"PASSED"', b'"FAILED"'))
    with pytest.raises(VerificationError, match="differs from the payload its bundle signs"):
        approvals.verify_approval(path, alice_policy, run.statement_sha256)


def test_a_signed_approval_that_is_no_passed_vsa_is_refused(lab: Lab) -> None:
    run = lab.run("model")
    alice, policy = key(lab, "alice")
    record = load_record(run.run_dir)
    good = approvals.vsa_statement(
        record, policy_uri=approvals.DEFAULT_POLICY, policy_digest=None, replay=None
    )
    failed = {**good, "predicate": {**good["predicate"], "verificationResult": "FAILED"}}
    other = {**good, "predicateType": "https://example.com/not-a-vsa"}
    for doc, why in ((failed, "not PASSED"), (other, "not a verification summary")):
        path = approvals.write_approval(record, doc, alice)
        with pytest.raises(VerificationError, match=why):
            approvals.verify_approval(path, policy, run.statement_sha256)


def test_one_signer_counts_once_however_often_it_is_named_or_approves(lab: Lab) -> None:
    run = lab.run("model")
    alice, alice_policy = key(lab, "alice")
    bob, bob_policy = key(lab, "bob")
    files = [approve(lab, run.run_dir, alice), approve(lab, run.run_dir, alice)]
    twice = approvals.check_approvals(
        files,
        run.statement_sha256,
        [("lead", alice_policy), ("security", alice_policy)],
        run_signer=None,
        allow_self=False,
    )
    assert twice.approvers == ["lead"] and twice.rejected[0].startswith("security: ")
    files.append(approve(lab, run.run_dir, bob))
    both = approvals.check_approvals(
        files,
        run.statement_sha256,
        [("lead", alice_policy), ("security", bob_policy)],
        run_signer=None,
        allow_self=False,
    )
    assert both.approvers == ["lead", "security"] and both.rejected == []


def test_the_runs_own_signer_does_not_approve_it_unless_allowed(lab: Lab) -> None:
    run = lab.run("model")
    team = KeySigner.from_options(SignOptions(method="key", key_path=lab.key))
    path = approve(lab, run.run_dir, team)
    signer = approvals.verify_approval(path, lab.policy, run.statement_sha256)
    refused = approvals.check_approvals(
        [path], run.statement_sha256, [("lead", lab.policy)], run_signer=signer, allow_self=False
    )
    assert refused.approvers == [] and "the run's own signer" in refused.rejected[0]
    allowed = approvals.check_approvals(
        [path], run.statement_sha256, [("lead", lab.policy)], run_signer=signer, allow_self=True
    )
    assert allowed.approvers == ["lead"]
