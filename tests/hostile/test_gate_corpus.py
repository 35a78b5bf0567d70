"""The deployment gate, attacked: approvals counted twice, a failed run passed as a success,
and a chain of signed records built on a forged, missing or substituted upstream.

`rexec verify` runs as a subprocess (a deployment gate is a process and its exit code);
the records are genuine ones from :class:`tests.hostile.lab.Lab`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from executor import approvals
from executor.record.reader import load_record
from executor.signing import KeyPolicy, KeySigner, SignOptions, generate_keypair
from tests.hostile.lab import Lab, rexec


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


def approve(lab: Lab, run_dir: Path, key: Path) -> None:
    record = load_record(run_dir)
    doc = approvals.vsa_statement(
        record, policy_uri=approvals.DEFAULT_POLICY, policy_digest=None, replay=None
    )
    approvals.write_approval(
        record, doc, KeySigner.from_options(SignOptions(method="key", key_path=key))
    )


def reviewer(lab: Lab, name: str) -> tuple[Path, Path]:
    private, public = lab.root / f"{name}.key", lab.root / f"{name}.pub"
    generate_keypair(private, public, password=None)
    return private, public


# --- approvals: one signer is one approval -------------------------------------------


def test_one_approver_named_twice_counts_once(lab: Lab) -> None:
    run = lab.run("train").run_dir
    key, pub = reviewer(lab, "alice")
    approve(lab, run, key)
    out = rexec(
        "verify", run, "--key", lab.pub, "--require-approval", pub, "--require-approval", pub,
        "--json",
    )  # fmt: skip
    doc = json.loads(out.stdout)
    assert out.returncode == 3 and doc["approvals"]["approvedBy"] == [str(pub)]
    assert "named more than once" in json.dumps(doc["approvals"]["notCounted"])


def test_one_key_under_two_names_counts_once(lab: Lab) -> None:
    run = lab.run("train").run_dir
    key, pub = reviewer(lab, "alice")
    alias = lab.root / "same-key-other-name.pub"
    shutil.copy(pub, alias)
    approve(lab, run, key)
    approve(lab, run, key)  # and two approval files by her
    out = rexec(
        "verify", run, "--key", lab.pub, "--require-approval", pub, "--require-approval", alias,
        "--json",
    )  # fmt: skip
    doc = json.loads(out.stdout)
    assert out.returncode == 3 and len(doc["approvals"]["approvedBy"]) == 1
    assert "one signer is one approval" in json.dumps(doc["approvals"]["notCounted"])


def test_two_distinct_approvers_count_twice(lab: Lab) -> None:
    run = lab.run("train").run_dir
    alice, bob = reviewer(lab, "alice"), reviewer(lab, "bob")
    approve(lab, run, alice[0])
    approve(lab, run, bob[0])
    out = rexec(
        "verify", run, "--key", lab.pub, "--require-approval", alice[1],
        "--require-approval", bob[1], "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout
    assert json.loads(out.stdout)["approvals"]["approvedBy"] == [str(alice[1]), str(bob[1])]


def test_an_approval_of_another_statement_copied_beside_the_record_does_not_count(
    lab: Lab,
) -> None:
    run, other = lab.run("train").run_dir, lab.run("train", seed=2).run_dir
    key, pub = reviewer(lab, "alice")
    approve(lab, other, key)
    shutil.copytree(other / "approvals", run / "approvals")
    out = rexec("verify", run, "--key", lab.pub, "--require-approval", pub, "--json")
    assert out.returncode == 3 and "not this record's" in out.stdout


def test_the_bundle_form_takes_approvals_from_a_folder_named(lab: Lab) -> None:
    result = lab.run("train", writes={"model.bin": b"weights"})
    key, pub = reviewer(lab, "alice")
    approve(lab, result.run_dir, key)
    bundle, model = (
        result.run_dir / "statement.sigstore.json",
        result.run_dir / "outputs" / "model.bin",
    )
    none = rexec(
        "verify",
        "--bundle",
        bundle,
        "--artifact",
        model,
        "--key",
        lab.pub,
        "--require-approval",
        pub,
    )
    assert none.returncode == 2 and "--approvals-dir" in none.stderr
    ok = rexec(
        "verify", "--bundle", bundle, "--artifact", model, "--key", lab.pub,
        "--require-approval", pub, "--approvals-dir", result.run_dir / "approvals",
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr


# --- status: a failed run is no success ----------------------------------------------


def test_a_failed_run_is_refused_by_the_gate_unless_accepted(lab: Lab) -> None:
    failed = lab.run("train", exit_code=2).run_dir
    out = rexec("verify", failed, "--key", lab.pub)
    assert out.returncode == 5 and "did not succeed" in out.stderr and "VERIFIED" not in out.stdout
    assert "status:    failed (exit 2)" in out.stdout
    assert rexec("verify", failed, "--key", lab.pub, "--allow-failed").returncode == 0


def test_the_bundle_form_shows_the_status_and_applies_the_same_gate(lab: Lab) -> None:
    failed = lab.run("train", exit_code=2, writes={"model.bin": b"w"}).run_dir
    out = rexec(
        "verify", "--bundle", failed / "statement.sigstore.json", "--artifact",
        failed / "outputs" / "model.bin", "--key", lab.pub,
    )  # fmt: skip
    assert out.returncode == 5 and "status:    failed (exit 2)" in out.stdout


# --- the chain, raw data to model ------------------------------------------------------


def chain(lab: Lab) -> tuple[Path, Path, Path]:
    prepare = lab.run("prepare", writes={"dataset/rows.txt": b"rows"})
    train = lab.run(
        "train", inputs={"data": f"run:{prepare.run_id}:dataset"}, writes={"model/w.bin": b"w"}
    )
    evaluate = lab.run(
        "evaluate", inputs={"model": f"run:{train.run_id}:model"}, writes={"eval.json": b"{}"}
    )
    return prepare.run_dir, train.run_dir, evaluate.run_dir


def test_the_chain_verifies_every_link_back_to_the_raw_data(lab: Lab) -> None:
    prepare, train, evaluate = chain(lab)
    out = rexec("verify", evaluate, "--key", lab.pub, "--chain", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    links = json.loads(out.stdout)["chain"]
    assert [link["runId"] for link in links] == [evaluate.name, train.name, prepare.name]
    (raw,) = links[2]["inputs"]
    assert raw["from"] is None  # the raw snapshot: where the chain ends
    assert links[0]["inputs"][0]["from"]["runId"] == train.name
    text = rexec("verify", evaluate, "--key", lab.pub, "--chain").stdout
    assert "raw input" in text and f"chain:     {prepare.name}" in text


def test_a_missing_upstream_record_breaks_the_chain_naming_the_link(lab: Lab) -> None:
    prepare, _, evaluate = chain(lab)
    shutil.rmtree(prepare)
    out = rexec("verify", evaluate, "--key", lab.pub, "--chain")
    assert out.returncode == 3 and "chain broken at" in out.stderr and "input 'data'" in out.stderr


def test_an_upstream_signed_by_another_key_breaks_the_chain(lab: Lab) -> None:
    prepare, _, evaluate = chain(lab)
    lab.resign(prepare, key=lab.evil_key)  # the same Statement, signed by someone else
    out = rexec("verify", evaluate, "--key", lab.pub, "--chain")
    assert out.returncode == 3 and "does not verify" in out.stderr and prepare.name in out.stderr


def test_an_upstream_whose_data_was_swapped_breaks_the_chain(lab: Lab) -> None:
    prepare, _, evaluate = chain(lab)
    (prepare / "outputs" / "dataset" / "rows.txt").write_bytes(b"POISON")
    out = rexec("verify", evaluate, "--key", lab.pub, "--chain")
    assert out.returncode == 3 and "does not verify" in out.stderr


def test_an_upstream_replaced_by_another_genuine_record_breaks_the_chain(lab: Lab) -> None:
    """A validly signed record of another run put where the upstream was: its Statement
    is not the one the downstream record signs."""
    prepare, _, evaluate = chain(lab)
    other = lab.run("prepare", writes={"dataset/rows.txt": b"other rows"}, seed=9).run_dir
    shutil.rmtree(prepare)
    shutil.copytree(other, prepare)
    out = rexec("verify", evaluate, "--key", lab.pub, "--chain")
    assert out.returncode == 3 and "no record of run" in out.stderr


def test_a_downstream_that_read_bytes_its_upstream_does_not_sign_breaks_the_chain(
    lab: Lab,
) -> None:
    """A record (signed with the team's key, say by a buggy or stolen signer) whose input
    digest is not a tree its named upstream signs."""
    _, train, _ = chain(lab)

    def swap(doc: dict[str, object]) -> None:
        deps = doc["predicate"]["buildDefinition"]["resolvedDependencies"]  # type: ignore[index]
        for dep in deps:
            if dep["name"] == "input:data":
                dep["digest"] = {"sha256-tree-v1": "ab" * 32}
        for item in doc["predicate"]["buildDefinition"]["externalParameters"]["spec"]["inputs"]:  # type: ignore[index]
            item["digest"] = "sha256-tree-v1:" + "ab" * 32

    lab.resign(train, key=lab.key, edit=swap)
    out = rexec("verify", train, "--key", lab.pub, "--chain")
    assert out.returncode == 4 and "does not sign" in out.stderr


def test_upstream_signers_may_differ_from_the_final_one(lab: Lab) -> None:
    """Data engineering signs prepare, the trainers sign train: --upstream-key says so."""
    data_key, data_pub = reviewer(lab, "data-eng")
    prepare = lab.run("prepare", writes={"dataset/rows.txt": b"rows"}, key=data_key)
    lab.policy = KeyPolicy.from_file(data_pub)  # the trainers verified the data team's record
    train = lab.run("train", inputs={"data": f"run:{prepare.run_id}:dataset"}).run_dir
    same = rexec("verify", train, "--key", lab.pub, "--chain")
    assert same.returncode == 3  # the final policy does not cover the data team's key
    out = rexec("verify", train, "--key", lab.pub, "--chain", "--upstream-key", data_pub)
    assert out.returncode == 0, out.stderr


def test_the_chain_finds_a_moved_upstream_in_a_runs_dir_named(lab: Lab, tmp_path: Path) -> None:
    prepare, _, evaluate = chain(lab)
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.move(str(prepare), archive / prepare.name)
    assert rexec("verify", evaluate, "--key", lab.pub, "--chain").returncode == 3
    out = rexec("verify", evaluate, "--key", lab.pub, "--chain", "--runs-dir", archive)
    assert out.returncode == 0, out.stderr


def test_chain_refuses_a_form_without_a_record_directory(lab: Lab) -> None:
    result = lab.run("train", writes={"model.bin": b"w"})
    out = rexec(
        "verify", "--bundle", result.run_dir / "statement.sigstore.json", "--artifact",
        result.run_dir / "outputs" / "model.bin", "--key", lab.pub, "--chain",
    )  # fmt: skip
    assert out.returncode == 2 and "--chain walks a record" in out.stderr
