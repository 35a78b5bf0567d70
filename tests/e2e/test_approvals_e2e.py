"""Approvals through the real `rexec`: two approvers and a self-approval, N-of-M gates,
tampering, an approval moved to another run, and one backed by a signed replay verdict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import NO_FRAMEWORKS, Rexec, gen, spec, strict_parse

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]


@pytest.fixture
def setup(rexec: Rexec, tmp_path: Path) -> dict[str, Any]:
    keys = {}
    for who in ("trainer", "alice", "bob", "carol"):
        rexec("keygen", "--out", tmp_path / "keys" / who)
        keys[who] = (tmp_path / "keys" / f"{who}.key", tmp_path / "keys" / f"{who}.pub")
    command = ["python3", "-c", "open('/outputs/w.txt', 'w').write('42')"]
    doc = spec(
        "model", command, run={"purpose": "release candidate 1.4"}, determinism=NO_FRAMEWORKS
    )
    spec_file = gen(tmp_path / "spec.toml", doc)
    runs = tmp_path / "runs"
    first = rexec.run(spec_file, keys["trainer"][0], runs)
    second = rexec.run(spec_file, keys["trainer"][0], runs, "--purpose", "a second try")
    return {"keys": keys, "runs": runs, "first": first, "second": second}


def approve(
    rexec: Rexec, setup: dict[str, Any], run: Path, who: str, *more: str | Path, check: int = 0
) -> Any:
    out = rexec(
        "approve",
        run,
        "--key",
        setup["keys"]["trainer"][1],
        "--signing-key",
        setup["keys"][who][0],
        "--json",
        *more,
        check=check,
    )
    return json.loads(out.stdout) if check == 0 else out


def gate(
    rexec: Rexec,
    setup: dict[str, Any],
    run: Path,
    *approvers: str,
    more: tuple[str, ...] = (),
    check: int = 0,
) -> Any:
    flags: list[str | Path] = []
    for who in approvers:
        flags += ["--require-approval", setup["keys"][who][1]]
    out = rexec(
        "verify", run, "--key", setup["keys"]["trainer"][1], *flags, *more, "--json", check=check
    )
    return json.loads(out.stdout)


def test_n_of_m_approvers_gate_a_run_and_self_approval_needs_consent(
    rexec: Rexec, setup: dict[str, Any]
) -> None:
    run = setup["first"]
    for who in ("alice", "bob", "trainer"):
        doc = approve(rexec, setup, run, who)
        strict_parse(doc["statement"], "vsa")  # only the standard's fields: unknown ones rejected
        assert (
            doc["statement"]["subject"][0]["digest"]["sha256"]
            == json.loads(
                rexec("verify", run, "--key", setup["keys"]["trainer"][1], "--json").stdout
            )["statement_digest"]
        )
    both = gate(rexec, setup, run, "alice", "bob")
    assert both["verified"] and both["approvals"]["required"] == 2
    assert gate(rexec, setup, run, "alice", "carol", more=("--approvals", "1"))["verified"]
    short = gate(rexec, setup, run, "alice", "carol", check=3)
    assert not short["verified"] and any(
        "carol" in r and "no approval" not in r for r in short["approvals"]["notCounted"]
    )
    self_only = gate(rexec, setup, run, "alice", "bob", "trainer", check=3)
    assert any("signed by the run's own signer" in r for r in self_only["approvals"]["notCounted"])
    assert gate(rexec, setup, run, "alice", "bob", "trainer", more=("--allow-self-approval",))[
        "verified"
    ]
    shown = json.loads(rexec("show", run.name, "--json").stdout)
    assert len(shown["approvals"]) == 3 and {a["result"] for a in shown["approvals"]} == {"PASSED"}
    assert shown["run"]["purpose"] == "release candidate 1.4"


def test_a_tampered_approval_and_one_moved_to_another_run_do_not_count(
    rexec: Rexec, setup: dict[str, Any]
) -> None:
    run, other = setup["first"], setup["second"]
    approval = Path(approve(rexec, setup, run, "alice")["approval"])
    approve(rexec, setup, run, "bob")
    (other / "approvals").mkdir()
    for path in approval.parent.glob(approval.stem + "*"):
        shutil.copy(
            path, other / "approvals" / path.name
        )  # alice's approval of `run`, beside `other`
    moved = gate(rexec, setup, other, "alice", check=3)
    assert any("not this record's" in r for r in moved["approvals"]["notCounted"])
    approval.write_bytes(approval.read_bytes().replace(b'"PASSED"', b'"PASSED" '))
    tampered = gate(rexec, setup, run, "alice", "bob", check=3)
    assert any(
        "differs from the payload its bundle signs" in r
        for r in tampered["approvals"]["notCounted"]
    )
    assert (
        rexec("verify", run, "--key", setup["keys"]["trainer"][1]).code == 0
    )  # the run itself is untouched


def test_an_approval_can_require_a_signed_replay_that_reproduced(
    rexec: Rexec, setup: dict[str, Any]
) -> None:
    run, keys = setup["first"], setup["keys"]
    replayed = rexec(
        "replay",
        run,
        "--key",
        keys["trainer"][1],
        "--signing-key",
        keys["trainer"][0],
        "--runs-dir",
        setup["runs"],
        "--json",
    )
    replay_dir = Path(json.loads(replayed.stdout)["replay"]["run_dir"])
    query = f"SELECT verdict FROM runs WHERE replay_of = '{run.name}'"
    indexed = json.loads(rexec("catalog", "query", query, "--json").stdout)
    assert indexed == [{"verdict": "reproduced-bitwise"}]  # the catalog knows what the replay said
    doc = approve(rexec, setup, run, "alice", "--with-replay", replay_dir)
    uris = [a["uri"] for a in doc["statement"]["predicate"]["inputAttestations"]]
    assert uris == [f"{run.name}/statement.json", f"{replay_dir.name}/verdict.json"]
    strict_parse(doc["statement"], "vsa")
    wrong = approve(rexec, setup, setup["second"], "alice", "--with-replay", replay_dir, check=4)
    assert "not this run's" in wrong.stderr
    not_a_replay = approve(rexec, setup, run, "alice", "--with-replay", setup["second"], check=2)
    assert "not a replay record" in not_a_replay.stderr


@pytest.mark.allow_loopback
def test_a_keyless_approver_is_named_by_identity_and_issuer(
    rexec: Rexec, setup: dict[str, Any], tmp_path: Path
) -> None:
    from tests.sigstore_standin import StandIn

    run, keys = setup["first"], setup["keys"]
    with StandIn() as standin:
        root, config = standin.write_configs(tmp_path)
        rexec(
            "approve",
            run,
            "--key",
            keys["trainer"][1],
            "--sign",
            "sigstore",
            "--identity-token",
            standin.token(email="reviewer@example.test"),
            "--trust-config",
            config,
        )
        issuer = standin.issuer

    def gate_on(identity: str, check: int) -> Any:
        return json.loads(
            rexec(
                "verify",
                run,
                "--key",
                keys["trainer"][1],
                "--require-approval",
                identity,
                "--approval-issuer",
                issuer,
                "--trusted-root",
                root,
                "--json",
                check=check,
            ).stdout
        )

    assert gate_on("reviewer@example.test", 0)["approvals"]["approvedBy"] == [
        "reviewer@example.test"
    ]
    assert gate_on("someone-else@example.test", 3)["approvals"]["approvedBy"] == []
    shown = json.loads(rexec("show", run.name, "--json").stdout)
    (approval,) = shown["approvals"]
    assert (
        approval["approver_kind"] == "sigstore" and "reviewer@example.test" in approval["approver"]
    )


def test_hostile_approval_files_are_listed_never_believed_or_fatal(
    rexec: Rexec, setup: dict[str, Any], tmp_path: Path
) -> None:
    import os

    run = setup["first"]
    approve(rexec, setup, run, "alice")
    folder = run / "approvals"
    (folder / "a-dict-subject.json").write_text('{"subject": {"0": 1}, "predicate": []}')
    (folder / "b-not-json.json").write_text("{nope")
    (folder / "c-other.json").write_text(
        '{"subject": [{"digest": {"sha256": "' + "0" * 64 + '"}}]}'
    )
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    os.symlink(secret, folder / "d-link.json")  # never read through
    os.mkfifo(folder / "e-fifo.json")  # never waited on
    report = json.loads(rexec("catalog", "index", setup["runs"], "--json").stdout)
    assert report["failed"] == []
    shown = json.loads(rexec("show", run.name, "--json").stdout)
    results = {a["file"]: a["result"] for a in shown["approvals"]}
    assert results.pop("a-dict-subject.json") == "about another statement"
    assert results.pop("b-not-json.json") == "unreadable"
    assert results.pop("c-other.json") == "about another statement"
    assert results.pop("e-fifo.json") == "unreadable"
    assert list(results.values()) == ["PASSED"]  # alice's; the link is not listed at all
    again = json.loads(rexec("catalog", "index", setup["runs"], "--json").stdout)
    assert again["unchanged"] == 2 and again["updated"] == 0  # nothing new: nothing re-read
    assert gate(rexec, setup, run, "alice")["verified"]  # the junk does not hide a good approval
