"""The real keyless signing path, offline: sigstore's client against a loopback stand-in.

``KeylessSigner`` drives the unmodified ``sigstore`` 4.x client through a
custom trust config at a Fulcio + Rekor stand-in on 127.0.0.1
(tests/sigstore_standin); ``KeylessPolicy`` and the ``rexec verify`` command
then verify with the stand-in's trusted root. Expected values are derived
independently: the DSSE signature is re-checked over a hand-built PAE with
``cryptography``, the payload is compared to the bytes written to disk.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from executor.canonical import canonical_json
from executor.errors import InfrastructureError, InputError, MismatchError, VerificationError
from executor.signing.sigstore import KeylessPolicy, KeylessSigner
from executor.signing.types import IN_TOTO_PAYLOAD_TYPE, SignOptions
from tests.sigstore_standin import StandIn
from tests.sigstore_standin.rekor import RekorRefusal

pytestmark = pytest.mark.allow_loopback

EMAIL = "alice@example.com"
REXEC = Path(sys.executable).with_name("rexec")


@dataclass(frozen=True)
class Instance:
    standin: StandIn
    root: Path
    config: Path


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[Instance]:
    with StandIn() as standin:
        root, config = standin.write_configs(tmp_path)
        yield Instance(standin, root, config)


def _statement(outputs: dict[str, bytes]) -> bytes:
    return canonical_json(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [
                {"name": name, "digest": {"sha256": hashlib.sha256(data).hexdigest()}}
                for name, data in sorted(outputs.items())
            ],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {
                "runDetails": {"metadata": {"invocationId": "20250101T000000Z-demo-abc123"}}
            },
        }
    )


def _signer(inst: Instance, token: str | None = None) -> KeylessSigner:
    options = SignOptions(
        method="sigstore",
        identity_token=token or inst.standin.token(email=EMAIL),
        trust_config=inst.config,
    )
    return KeylessSigner.from_options(options, isatty=lambda: False)


def _policy(inst: Instance, **kwargs: str) -> KeylessPolicy:
    args = {"identity": EMAIL, "issuer": inst.standin.issuer, **kwargs}
    return KeylessPolicy(trusted_root=inst.root, **args)


OUTPUTS = {"model.bin": b"\x00weights\x01" * 64, "eval/metrics.json": b'{"acc": 0.9}\n'}


@pytest.fixture
def record(tmp_path: Path, instance: Instance) -> Path:
    """A run record laid out as docs/design.md says, keyless-signed through the stand-in."""
    root = tmp_path / "runs" / "20250101T000000Z-demo-abc123"
    for name, data in OUTPUTS.items():
        path = root / "outputs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "statement.json").write_bytes(_statement(OUTPUTS))
    payload = (root / "statement.json").read_bytes()
    (root / "statement.sigstore.json").write_bytes(_signer(instance).sign_dsse(payload))
    return root


def test_bundle_carries_exactly_the_statement_bytes(record: Path) -> None:
    doc = json.loads((record / "statement.sigstore.json").read_bytes())
    assert doc["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    env = doc["dsseEnvelope"]
    assert env["payloadType"] == IN_TOTO_PAYLOAD_TYPE
    assert base64.b64decode(env["payload"]) == (record / "statement.json").read_bytes()
    (entry,) = doc["verificationMaterial"]["tlogEntries"]
    assert entry["kindVersion"] == {"kind": "dsse", "version": "0.0.1"}


def test_dsse_signature_checks_by_hand(record: Path) -> None:
    """Independent of sigstore: ECDSA over PAE(type, payload) with the certificate's key."""
    doc = json.loads((record / "statement.sigstore.json").read_bytes())
    cert = x509.load_der_x509_certificate(
        base64.b64decode(doc["verificationMaterial"]["certificate"]["rawBytes"])
    )
    payload = (record / "statement.json").read_bytes()
    ptype = IN_TOTO_PAYLOAD_TYPE.encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(payload), payload)
    sig = base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"])
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(sig, pae, ec.ECDSA(hashes.SHA256()))  # raises if wrong
    assert cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.RFC822Name) == [EMAIL]


def test_signed_record_verifies_with_the_standin_root(record: Path, instance: Instance) -> None:
    verified = _policy(instance).verify_bundle(
        (record / "statement.sigstore.json").read_bytes(),
        artifact=record / "outputs" / "model.bin",
    )
    assert verified.signer == f"{EMAIL} (issuer {instance.standin.issuer})"
    assert verified.payload == (record / "statement.json").read_bytes()
    assert verified.payload_type == IN_TOTO_PAYLOAD_TYPE


def test_regexp_identity_verifies(record: Path, instance: Instance) -> None:
    policy = KeylessPolicy(
        identity_regexp=r"[a-z]+@example\.com",
        issuer=instance.standin.issuer,
        trusted_root=instance.root,
    )
    assert policy.verify_bundle(
        (record / "statement.sigstore.json").read_bytes()
    ).signer.startswith(EMAIL)


def test_wrong_identity_fails_naming_both(record: Path, instance: Instance) -> None:
    with pytest.raises(VerificationError) as info:
        _policy(instance, identity="mallory@example.com").verify_bundle(
            (record / "statement.sigstore.json").read_bytes()
        )
    assert EMAIL in info.value.message and "mallory@example.com" in info.value.message


def test_wrong_issuer_fails_naming_both(record: Path, instance: Instance) -> None:
    with pytest.raises(VerificationError) as info:
        _policy(instance, issuer="https://accounts.google.com").verify_bundle(
            (record / "statement.sigstore.json").read_bytes()
        )
    assert instance.standin.issuer in info.value.render()
    assert "https://accounts.google.com" in info.value.render()


def test_production_root_rejects_a_standin_signature(record: Path, instance: Instance) -> None:
    policy = KeylessPolicy(
        identity=EMAIL, issuer=instance.standin.issuer
    )  # shipped public-good root
    with pytest.raises(VerificationError) as info:
        policy.verify_bundle((record / "statement.sigstore.json").read_bytes())
    assert "trusted root" in info.value.render()


def test_tampered_payload_fails(record: Path, instance: Instance) -> None:
    doc = json.loads((record / "statement.sigstore.json").read_bytes())
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    doc["dsseEnvelope"]["payload"] = base64.b64encode(canonical_json(statement)).decode()
    with pytest.raises(VerificationError, match="does not verify"):
        _policy(instance).verify_bundle(json.dumps(doc).encode())


def test_artifact_that_is_not_a_subject_is_a_mismatch(
    record: Path, instance: Instance, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger.bin"
    stranger.write_bytes(b"not an output")
    with pytest.raises(MismatchError, match="not a subject"):
        _policy(instance).verify_bundle(
            (record / "statement.sigstore.json").read_bytes(), artifact=stranger
        )


def test_log_grows_and_every_inclusion_proof_holds(instance: Instance) -> None:
    """Several entries: proofs for different tree sizes and leaf positions all verify."""
    signer = _signer(instance)
    bundles = [signer.sign_dsse(_statement({f"out{i}": bytes([i])})) for i in range(5)]
    assert instance.standin.rekor.size == 5
    sizes = []
    for raw in bundles:
        _policy(instance).verify_bundle(raw)
        proof = json.loads(raw)["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
        sizes.append(int(proof["treeSize"]))
    assert sizes == [1, 2, 3, 4, 5]


def test_token_from_another_issuer_key_is_refused_by_fulcio(instance: Instance) -> None:
    forged = instance.standin.token(key=ec.generate_private_key(ec.SECP256R1()))
    signer = _signer(instance, token=forged)
    with pytest.raises(InfrastructureError) as info:
        signer.sign_dsse(_statement(OUTPUTS))
    assert instance.standin.fulcio_url in info.value.message


def test_sct_from_an_untrusted_ct_log_is_caught_while_signing(
    instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client checks the embedded SCT against the trust config's ctlogs."""
    monkeypatch.setattr(instance.standin.fulcio, "ct_key", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(InfrastructureError, match="does not verify against the trust config"):
        _signer(instance).sign_dsse(_statement(OUTPUTS))


def test_rekor_refusal_is_infrastructure_error_naming_rekor(
    instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(proposed: object) -> bytes:
        raise RekorRefusal(400, "entry refused by test")

    monkeypatch.setattr(instance.standin.rekor, "canonical_body", refuse)
    with pytest.raises(InfrastructureError) as info:
        _signer(instance).sign_dsse(_statement(OUTPUTS))
    assert instance.standin.rekor_url in info.value.message
    assert "entry refused by test" in info.value.message


def test_token_that_expires_during_the_run_is_resolved_again(
    instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signer is made before the job runs; a CI token may expire before signing."""
    monkeypatch.setenv("REXEC_IDENTITY_TOKEN", instance.standin.token(email=EMAIL, lifetime_s=2))
    options = SignOptions(method="sigstore", trust_config=instance.config)
    signer = KeylessSigner.from_options(options, isatty=lambda: False)
    time.sleep(2.5)  # the first token is now expired
    with pytest.raises(InputError, match="env REXEC_IDENTITY_TOKEN"):
        signer.sign_dsse(_statement(OUTPUTS))  # same expired token still in the env
    monkeypatch.setenv("REXEC_IDENTITY_TOKEN", instance.standin.token(email="bob@example.com"))
    bundle = signer.sign_dsse(_statement(OUTPUTS))
    verified = _policy(instance, identity="bob@example.com").verify_bundle(bundle)
    assert verified.signer.startswith("bob@example.com")


def test_unreachable_service_is_infrastructure_error_naming_the_url(tmp_path: Path) -> None:
    with StandIn() as standin:
        _, config = standin.write_configs(tmp_path)
        token = standin.token()
        url = standin.fulcio_url
    # The servers are gone now: the port refuses connections.
    signer = KeylessSigner.from_options(
        SignOptions(method="sigstore", identity_token=token, trust_config=config),
        isatty=lambda: False,
    )
    with pytest.raises(InfrastructureError) as info:
        signer.sign_dsse(_statement(OUTPUTS))
    assert url.removeprefix("http://") in info.value.message


def _rexec(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REXEC), "verify", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_rexec_verify_command_accepts_and_rejects(record: Path, instance: Instance) -> None:
    issuer, root = instance.standin.issuer, instance.root
    ok = _rexec(record, "--identity", EMAIL, "--issuer", issuer, "--trusted-root", root)
    assert ok.returncode == 0, ok.stderr
    assert EMAIL in ok.stdout
    single = _rexec(
        "--bundle", record / "statement.sigstore.json", "--artifact", record / "outputs" / "model.bin",
        "--identity", EMAIL, "--issuer", issuer, "--trusted-root", root,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    wrong = _rexec(
        record, "--identity", "mallory@example.com", "--issuer", issuer, "--trusted-root", root
    )
    assert wrong.returncode == 3
    assert "mallory@example.com" in wrong.stderr and EMAIL in wrong.stderr
    public_good = _rexec(record, "--identity", EMAIL, "--issuer", issuer)
    assert public_good.returncode == 3, public_good.stderr
