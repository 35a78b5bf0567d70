"""``rexec verify`` and ``rexec keygen`` driven through the real command.

Each way a record can be damaged must give its own message and exit code, and
``--json`` must say the same thing field by field.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from executor.signing import generate_keypair

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "sigstore"


def rexec(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "executor", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def verdict(*args: str | Path) -> tuple[int, dict[str, Any]]:
    proc = rexec("verify", *args, "--json")
    return proc.returncode, json.loads(proc.stdout)


def test_intact_record_verifies(make_record: Callable[..., Any]) -> None:
    rec = make_record()
    proc = rexec("verify", rec.root, "--key", rec.public_key)
    assert proc.returncode == 0, proc.stderr
    assert "2 verified" in proc.stdout
    assert "20250101T000000Z-demo-abc123" in proc.stdout
    assert "status:    succeeded (exit 0)" in proc.stdout

    code, doc = verdict(rec.root, "--key", rec.public_key)
    assert code == 0
    assert doc["verified"] is True
    assert doc["error"] is None
    assert doc["run_id"] == "20250101T000000Z-demo-abc123"
    assert doc["status"] == "succeeded"
    assert doc["statement_digest"] == hashlib.sha256(rec.statement).hexdigest()
    assert doc["artifacts"] == {"checked": 2, "mismatched": [], "missing": [], "extra": []}
    der_hint = (rec.root / "statement.sigstore.json").read_text()
    assert json.loads(der_hint)["verificationMaterial"]["publicKey"]["hint"] in doc["signer"]


def test_a_failed_run_is_refused_by_default_and_verifies_when_accepted(
    make_record: Callable[..., Any],
) -> None:
    rec = make_record(status="failed", exit_code=3)
    refused = rexec("verify", rec.root, "--key", rec.public_key)
    assert refused.returncode == 5, refused.stderr  # the deployment default
    assert "status:    failed (exit 3)" in refused.stdout and "VERIFIED" not in refused.stdout
    assert "did not succeed" in refused.stderr and "--allow-failed" in refused.stderr
    code, doc = verdict(rec.root, "--key", rec.public_key)
    assert (code, doc["verified"], doc["status"], doc["error"]["code"]) == (5, False, "failed", 5)
    assert doc["signer"] is not None  # what was proved before the gate is kept
    proc = rexec("verify", rec.root, "--key", rec.public_key, "--allow-failed")
    assert proc.returncode == 0, proc.stderr
    assert "status:    failed (exit 3)" in proc.stdout and "did not succeed" in proc.stdout
    code, doc = verdict(rec.root, "--key", rec.public_key, "--allow-failed")
    assert (code, doc["verified"], doc["status"], doc["exit_code"]) == (0, True, "failed", 3)


def test_tampered_output_byte(make_record: Callable[..., Any]) -> None:
    rec = make_record()
    model = rec.root / "outputs" / "model.bin"
    data = bytearray(model.read_bytes())
    data[7] ^= 0x01
    model.write_bytes(bytes(data))
    proc = rexec("verify", rec.root, "--key", rec.public_key)
    assert proc.returncode == 4
    assert "mismatched: model.bin: sha256 " + hashlib.sha256(bytes(data)).hexdigest() in proc.stderr
    code, doc = verdict(rec.root, "--key", rec.public_key)
    assert code == 4 and doc["verified"] is False
    assert doc["artifacts"]["mismatched"] == ["model.bin"]
    assert doc["artifacts"]["missing"] == [] and doc["artifacts"]["extra"] == []
    assert doc["error"]["code"] == 4 and doc["error"]["type"] == "MismatchError"
    assert doc["signer"] is not None and doc["run_id"] is not None  # proved before the failure


def test_missing_and_extra_outputs_listed_together(make_record: Callable[..., Any]) -> None:
    rec = make_record()
    (rec.root / "outputs" / "eval" / "metrics.json").unlink()
    (rec.root / "outputs" / "smuggled.bin").write_bytes(b"x")
    proc = rexec("verify", rec.root, "--key", rec.public_key)
    assert proc.returncode == 4
    assert "missing: eval/metrics.json" in proc.stderr
    assert "extra: smuggled.bin" in proc.stderr
    code, doc = verdict(rec.root, "--key", rec.public_key)
    assert code == 4
    assert doc["artifacts"] == {
        "checked": 2,
        "mismatched": [],
        "missing": ["eval/metrics.json"],
        "extra": ["smuggled.bin"],
    }


def test_tampered_statement_json(make_record: Callable[..., Any]) -> None:
    rec = make_record()
    path = rec.root / "statement.json"
    path.write_bytes(path.read_bytes().replace(b"succeeded", b"succeedee"))
    proc = rexec("verify", rec.root, "--key", rec.public_key)
    assert proc.returncode == 3
    assert "statement.json was altered after signing" in proc.stderr
    code, doc = verdict(rec.root, "--key", rec.public_key)
    assert code == 3 and doc["error"]["type"] == "VerificationError"
    assert "altered after signing" in doc["error"]["message"]


def test_tampered_bundle_signature(make_record: Callable[..., Any]) -> None:
    rec = make_record()
    path = rec.root / "statement.sigstore.json"
    doc = json.loads(path.read_bytes())
    sig = bytearray(base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[-1] ^= 0xFF
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    path.write_text(json.dumps(doc))
    proc = rexec("verify", rec.root, "--key", rec.public_key)
    assert proc.returncode == 3
    assert "DSSE signature does not verify" in proc.stderr
    code, out = verdict(rec.root, "--key", rec.public_key)
    assert code == 3 and out["signer"] is None and out["run_id"] is None


def test_wrong_key_names_both_hints(make_record: Callable[..., Any], tmp_path: Path) -> None:
    rec = make_record()
    hint = generate_keypair(tmp_path / "x.key", tmp_path / "x.pub", password=None)
    proc = rexec("verify", rec.root, "--key", tmp_path / "x.pub")
    assert proc.returncode == 3
    assert f"expected {hint}" in proc.stderr and "bundle was signed by key" in proc.stderr


def test_bad_input_exits_2(make_record: Callable[..., Any], tmp_path: Path) -> None:
    rec = make_record()
    # no policy: the record's own key is not trusted, and the hint says why
    proc = rexec("verify", rec.root)
    assert proc.returncode == 2
    assert "no trust policy" in proc.stderr and "cannot vouch for itself" in proc.stderr
    # two policies
    proc = rexec("verify", rec.root, "--key", rec.public_key, "--identity", "a@b", "--issuer", "u")
    assert proc.returncode == 2 and "two trust policies" in proc.stderr
    # missing dir
    proc = rexec("verify", tmp_path / "nope", "--key", rec.public_key)
    assert proc.returncode == 2 and "no such run record" in proc.stderr
    # record without a bundle
    (rec.root / "statement.sigstore.json").unlink()
    code, doc = verdict(rec.root, "--key", rec.public_key)
    assert code == 2 and doc["error"]["type"] == "InputError"
    assert "no statement.sigstore.json" in doc["error"]["message"]


def test_bundle_plus_artifacts_dir(make_record: Callable[..., Any], tmp_path: Path) -> None:
    rec = make_record()
    bundle = tmp_path / "b.sigstore.json"
    bundle.write_bytes((rec.root / "statement.sigstore.json").read_bytes())
    proc = rexec("verify", bundle, "--key", rec.public_key)
    assert proc.returncode == 2 and "--artifacts" in proc.stderr
    proc = rexec("verify", bundle, "--key", rec.public_key, "--artifacts", rec.root / "outputs")
    assert proc.returncode == 0, proc.stderr


def test_general_form_with_conformance_bundle(make_record: Callable[..., Any]) -> None:
    happy = FIXTURES / "managed-key-happy-path"
    proc = rexec(
        "verify", "--bundle", happy / "bundle.sigstore.json", "--artifact", FIXTURES / "a.txt",
        "--key", happy / "key.pub",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # DSSE form: the artifact's digest must be a subject
    rec = make_record()
    args = ["--bundle", rec.root / "statement.sigstore.json", "--key", rec.public_key]
    assert rexec("verify", *args, "--artifact", rec.root / "outputs" / "model.bin").returncode == 0
    proc = rexec("verify", *args, "--artifact", FIXTURES / "a.txt")
    assert proc.returncode == 4 and "not a subject" in proc.stderr


def test_keygen_command(tmp_path: Path) -> None:
    prefix = tmp_path / "cfg" / "signing"
    proc = rexec("keygen", "--out", prefix, "--password-env", "PW", env={"PW": "s3cret"})
    assert proc.returncode == 0, proc.stderr
    key, pub = prefix.with_suffix(".key"), prefix.with_suffix(".pub")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"ENCRYPTED" in key.read_bytes()
    assert str(key) in proc.stdout and str(pub) in proc.stdout and "key hint:" in proc.stdout
    again = rexec("keygen", "--out", prefix)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    unset = rexec("keygen", "--out", tmp_path / "other", "--password-env", "NOPE_UNSET_VAR")
    assert unset.returncode == 2 and "NOPE_UNSET_VAR" in unset.stderr
