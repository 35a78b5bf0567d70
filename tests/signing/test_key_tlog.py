"""Key-signed bundles that carry transparency-log entries: checked against a trusted root.

`verify --key` used to ignore ``tlogEntries`` entirely, so a bundle with a forged
inclusion proof verified. With ``--trusted-root`` each entry's inclusion proof,
signed checkpoint and signed entry timestamp are verified against the logs the
root names, and the entry must be about this very signature; ``--require-tlog``
refuses a bundle that carries none. The log is the loopback Rekor stand-in.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sigstore.models import TransparencyLogEntry

from executor.canonical import canonical_json
from executor.errors import ExitCode
from executor.signing import KeySigner, SignOptions, generate_keypair
from tests.sigstore_standin import StandIn

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.allow_loopback


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn() as s:
        yield s


@pytest.fixture
def signed(tmp_path: Path) -> dict[str, Any]:
    """A record with one output, key-signed; its bundle carries no log entry yet."""
    private, public = tmp_path / "k.key", tmp_path / "k.pub"
    generate_keypair(private, public, password=None)
    record = tmp_path / "run"
    (record / "outputs").mkdir(parents=True)
    (record / "outputs" / "model.bin").write_bytes(b"weights")
    import hashlib

    statement = canonical_json(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [
                {"name": "model.bin", "digest": {"sha256": hashlib.sha256(b"weights").hexdigest()}}
            ],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {"runDetails": {"metadata": {"invocationId": "r"}, "byproducts": []}},
        }
    )
    signer = KeySigner.from_options(SignOptions(method="key", key_path=private))
    (record / "statement.json").write_bytes(statement)
    (record / "statement.sigstore.json").write_bytes(signer.sign_dsse(statement))
    return {"record": record, "public": public, "private": private}


def log_it(
    standin: StandIn, bundle_path: Path, keys: dict[str, Any], *, payload: bytes | None = None
) -> dict[str, Any]:
    """Submit the bundle's DSSE envelope to the stand-in Rekor (as cosign does with a key)
    and put the entry it answers into the bundle; ``payload``: log the same key's
    signature over another payload instead."""
    bundle = json.loads(bundle_path.read_bytes())
    envelope = dict(bundle["dsseEnvelope"])
    public: Path = keys["public"]
    if payload is not None:
        signer = KeySigner.from_options(SignOptions(method="key", key_path=keys["private"]))
        envelope = json.loads(signer.sign_dsse(payload))["dsseEnvelope"]
    proposed = {
        "kind": "dsse",
        "apiVersion": "0.0.1",
        "spec": {
            "proposedContent": {
                "envelope": json.dumps(envelope),
                "verifiers": [base64.b64encode(public.read_bytes()).decode()],
            }
        },
    }
    answer = standin.rekor.add(proposed)
    entry = json.loads(TransparencyLogEntry._from_v1_response(answer)._inner.to_json())
    bundle["verificationMaterial"]["tlogEntries"] = [entry]
    bundle_path.write_text(json.dumps(bundle))
    return entry


def flip(b64: str) -> str:
    """The same base64 value with its first byte changed."""
    raw = base64.b64decode(b64)
    return base64.b64encode(bytes([raw[0] ^ 1]) + raw[1:]).decode()


def verify(*args: str | Path) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "executor", "verify", *map(str, args), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        timeout=60,
        env={**os.environ},
    )
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_a_logged_key_signature_is_checked_against_the_trusted_root(
    standin: StandIn, signed: dict[str, Any], tmp_path: Path
) -> None:
    root, _ = standin.write_configs(tmp_path)
    log_it(standin, signed["record"] / "statement.sigstore.json", signed)
    code, doc, _ = verify(
        signed["record"], "--key", signed["public"], "--trusted-root", root, "--require-tlog"
    )
    assert code == 0, doc
    assert (
        doc["transparency_log"].startswith("checked against")
        and "log index 0" in doc["transparency_log"]
    )
    code, doc, _ = verify(signed["record"], "--key", signed["public"])
    assert (
        code == 0 and doc["transparency_log"] == "1 in the bundle, not checked (no --trusted-root)"
    )


@pytest.mark.parametrize(
    "forge", ["rootHash", "hashes", "signedEntryTimestamp", "checkpoint", "body"]
)
def test_a_forged_log_entry_fails(
    standin: StandIn, signed: dict[str, Any], tmp_path: Path, forge: str
) -> None:
    root, _ = standin.write_configs(tmp_path)
    bundle_path = signed["record"] / "statement.sigstore.json"
    # a second entry first, so the inclusion proof has a sibling hash to forge
    log_it(standin, bundle_path, signed, payload=b"{}")
    log_it(standin, bundle_path, signed)
    bundle = json.loads(bundle_path.read_bytes())
    entry = bundle["verificationMaterial"]["tlogEntries"][0]
    if forge == "rootHash":
        entry["inclusionProof"]["rootHash"] = flip(entry["inclusionProof"]["rootHash"])
    elif forge == "hashes":
        entry["inclusionProof"]["hashes"][0] = flip(entry["inclusionProof"]["hashes"][0])
    elif forge == "signedEntryTimestamp":
        entry["inclusionPromise"]["signedEntryTimestamp"] = flip(
            entry["inclusionPromise"]["signedEntryTimestamp"]
        )
    elif forge == "checkpoint":
        env = entry["inclusionProof"]["checkpoint"]["envelope"]
        entry["inclusionProof"]["checkpoint"]["envelope"] = env.replace("\n2\n", "\n3\n", 1)
    else:
        body = json.loads(base64.b64decode(entry["canonicalizedBody"]))
        body["spec"]["payloadHash"]["value"] = "0" * 64
        entry["canonicalizedBody"] = base64.b64encode(canonical_json(body)).decode()
    bundle_path.write_text(json.dumps(bundle))
    code, doc, _ = verify(signed["record"], "--key", signed["public"], "--trusted-root", root)
    assert code == ExitCode.SIGNATURE, doc
    assert "tlogEntries[0]" in doc["error"]["message"]


def test_an_entry_copied_from_another_signature_proves_nothing(
    standin: StandIn, signed: dict[str, Any], tmp_path: Path
) -> None:
    root, _ = standin.write_configs(tmp_path)
    log_it(standin, signed["record"] / "statement.sigstore.json", signed, payload=b'{"other": 1}')
    code, doc, _ = verify(signed["record"], "--key", signed["public"], "--trusted-root", root)
    assert code == ExitCode.SIGNATURE
    assert "about another signature, key or content" in doc["error"]["message"]


def test_an_entry_from_a_log_the_root_does_not_name_fails(
    standin: StandIn, signed: dict[str, Any], tmp_path: Path
) -> None:
    log_it(standin, signed["record"] / "statement.sigstore.json", signed)
    with StandIn() as other:
        root, _ = other.write_configs(tmp_path)
        code, doc, _ = verify(signed["record"], "--key", signed["public"], "--trusted-root", root)
    assert code == ExitCode.SIGNATURE, doc


def test_require_tlog_refuses_an_unlogged_bundle_and_needs_a_root(
    standin: StandIn, signed: dict[str, Any], tmp_path: Path
) -> None:
    root, _ = standin.write_configs(tmp_path)
    code, doc, _ = verify(
        signed["record"], "--key", signed["public"], "--trusted-root", root, "--require-tlog"
    )
    assert code == ExitCode.SIGNATURE and "--require-tlog" in doc["error"]["message"]
    code, doc, _ = verify(signed["record"], "--key", signed["public"], "--require-tlog")
    assert (
        code == ExitCode.BAD_INPUT
        and "--require-tlog needs --trusted-root" in doc["error"]["message"]
    )
