"""Pipeline ledgers in the catalog: one row each with its stages, a claim until its
signature is checked under the caller's policy; a file that is not a ledger is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from executor import catalog
from executor.pipelines.ledger import write_ledger
from executor.signing import KeyPolicy, SignOptions
from executor.signing.key import KeySigner, generate_keypair


def ledger(tmp_path: Path, name: str) -> tuple[Path, Path]:
    generate_keypair(tmp_path / f"{name}.pem", tmp_path / f"{name}.pub", password=None)
    signer = KeySigner.from_options(SignOptions(method="key", key_path=tmp_path / f"{name}.pem"))
    stages = [
        {"stage": "prepare", "decision": "reused", "runId": "r1", "statementSha256": "a" * 64},
        {"stage": "train", "decision": "ran", "runId": "r2", "statementSha256": "b" * 64},
    ]
    path = write_ledger(
        tmp_path / "runs", f"20261207T000000Z-{name}", kind="pipeline", stages=stages,
        about={"pipeline": {"name": name, "file": "p.toml", "sha256": "c" * 64}},
        started=datetime.now(UTC), signer=signer,
    )  # fmt: skip
    return path, tmp_path / f"{name}.pub"


def test_ledgers_are_found_and_checked_under_the_policy(tmp_path: Path) -> None:
    _, key = ledger(tmp_path, "lm")
    forged, _ = ledger(tmp_path, "other")
    statement = forged / "statement.json"
    statement.write_bytes(statement.read_bytes().replace(b'"ran"', b'"reused"'))
    (tmp_path / "runs" / "pipelines" / "junk").mkdir()
    (tmp_path / "runs" / "pipelines" / "junk" / "statement.json").write_text('{"a": 1}')
    cat = catalog.open_catalog(tmp_path / "c.sqlite")
    try:
        found = catalog.find_ledgers([tmp_path / "runs"])
        failed = catalog.index_ledgers(cat, found, KeyPolicy.from_file(key))
        rows = {r["name"]: r for r in catalog.pipeline_runs(cat, limit=10)}
    finally:
        cat.close()
    assert len(found) == 3 and len(failed) == 1 and "not a pipeline ledger" in failed[0]
    assert rows["lm"]["verification"].startswith("verified by key")
    assert [(s["stage"], s["decision"]) for s in rows["lm"]["stages"]] == [
        ("prepare", "reused"), ("train", "ran"),
    ]  # fmt: skip
    assert rows["other"]["verification"].startswith("failed")  # edited, or another key
