"""Key pairs, KeySigner and KeyPolicy, including bundles written by other clients."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from executor.errors import InputError, MismatchError, VerificationError
from executor.signing import (
    BUNDLE_V03_MEDIA_TYPE,
    KeyPolicy,
    KeySigner,
    SignOptions,
    generate_keypair,
    make_signer,
)
from executor.signing.key import (
    ENV_KEY,
    ENV_KEY_FILE,
    ENV_PASSWORD,
    default_key_path,
    load_private_key,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sigstore"
A_TXT = FIXTURES / "a.txt"
HAPPY = FIXTURES / "managed-key-happy-path"
WRONG = FIXTURES / "managed-key-wrong-key_fail"
STATEMENT = b'{"_type":"https://in-toto.io/Statement/v1","subject":[]}'


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, Path]:
    priv, pub = tmp_path / "k" / "signing.key", tmp_path / "k" / "signing.pub"
    generate_keypair(priv, pub, password=None)
    return priv, pub


def _signer(priv: Path) -> KeySigner:
    return KeySigner.from_options(SignOptions(method="key", key_path=priv))


def test_keygen_writes_private_key_0600_and_refuses_to_overwrite(tmp_path: Path) -> None:
    priv, pub = tmp_path / "s.key", tmp_path / "s.pub"
    generate_keypair(priv, pub, password=None)
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert priv.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    before = priv.read_bytes()
    with pytest.raises(InputError, match="already exists") as info:
        generate_keypair(priv, tmp_path / "other.pub", password=None)
    assert info.value.hint
    assert priv.read_bytes() == before
    assert not (tmp_path / "other.pub").exists()
    with pytest.raises(InputError, match="already exists"):  # an existing public key too
        generate_keypair(tmp_path / "new.key", pub, password=None)
    assert not (tmp_path / "new.key").exists()


def test_key_hint_is_cosigns_spki_fingerprint(keypair: tuple[Path, Path]) -> None:
    """Recompute the hint with openssl, independently of the code under test."""
    priv, pub = keypair
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed, and it is the independent reference here")
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", str(pub), "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    expected = base64.b64encode(hashlib.sha256(der).digest()).decode()
    assert _signer(priv).hint == expected
    assert KeyPolicy.from_file(pub).hint == expected


def test_encrypted_key_needs_the_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    priv, pub = tmp_path / "e.key", tmp_path / "e.pub"
    generate_keypair(priv, pub, password=b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in priv.read_bytes()
    options = SignOptions(method="key", key_path=priv)
    monkeypatch.delenv(ENV_PASSWORD, raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO())  # not a TTY: no prompt
    with pytest.raises(InputError, match="encrypted and no password") as info:
        load_private_key(options)
    assert ENV_PASSWORD in (info.value.hint or "")
    monkeypatch.setenv(ENV_PASSWORD, "wrong")
    with pytest.raises(InputError, match="wrong password"):
        load_private_key(options)
    monkeypatch.setenv(ENV_PASSWORD, "correct horse")
    signer = KeySigner.from_options(options)
    KeyPolicy.from_file(pub).verify_bundle(signer.sign_dsse(STATEMENT))
    # an explicit password wins over the environment
    monkeypatch.setenv(ENV_PASSWORD, "wrong")
    load_private_key(SignOptions(method="key", key_path=priv, key_password=b"correct horse"))


def test_key_from_environment(keypair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    priv, pub = keypair
    monkeypatch.delenv(ENV_KEY_FILE, raising=False)
    monkeypatch.setenv(ENV_KEY, priv.read_text())
    signer = make_signer(SignOptions(method="key"))
    assert signer is not None
    KeyPolicy.from_file(pub).verify_bundle(signer.sign_dsse(STATEMENT))
    monkeypatch.delenv(ENV_KEY)
    monkeypatch.setenv(ENV_KEY_FILE, str(priv))
    assert make_signer(SignOptions(method="key")) is not None
    monkeypatch.delenv(ENV_KEY_FILE)
    with pytest.raises(InputError, match="needs a private key"):
        make_signer(SignOptions(method="key"))
    assert make_signer(SignOptions(method="none")) is None


def test_public_key_is_not_a_signing_key(keypair: tuple[Path, Path]) -> None:
    _, pub = keypair
    with pytest.raises(InputError, match="not a PEM private key"):
        load_private_key(SignOptions(method="key", key_path=pub))


def test_bundle_shape_and_signature_checked_independently(keypair: tuple[Path, Path]) -> None:
    priv, pub = keypair
    signer = _signer(priv)
    doc = json.loads(signer.sign_dsse(STATEMENT))
    assert doc["mediaType"] == BUNDLE_V03_MEDIA_TYPE
    assert doc["verificationMaterial"] == {
        "publicKey": {"hint": signer.hint},
        "tlogEntries": [],
    }
    env = doc["dsseEnvelope"]
    assert env["payloadType"] == "application/vnd.in-toto+json"
    assert base64.b64decode(env["payload"]) == STATEMENT
    assert len(env["signatures"]) == 1
    # PAE spelled out by hand, verified with cryptography directly (not KeyPolicy).
    pae = b"DSSEv1 28 application/vnd.in-toto+json %d " % len(STATEMENT) + STATEMENT
    public = serialization.load_pem_public_key(pub.read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(base64.b64decode(env["signatures"][0]["sig"]), pae, ec.ECDSA(hashes.SHA256()))
    assert signer.public_key_pem == pub.read_bytes()


def test_roundtrip_and_wrong_key(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    priv, pub = keypair
    bundle = _signer(priv).sign_dsse(STATEMENT)
    verified = KeyPolicy.from_file(pub).verify_bundle(bundle)
    assert verified.payload == STATEMENT
    assert verified.payload_type == "application/vnd.in-toto+json"
    assert verified.signer == f"key {_signer(priv).hint}"

    other_priv, other_pub = tmp_path / "o.key", tmp_path / "o.pub"
    other_hint = generate_keypair(other_priv, other_pub, password=None)
    with pytest.raises(VerificationError) as info:
        KeyPolicy.from_file(other_pub).verify_bundle(bundle)
    assert info.value.message == (
        f"bundle was signed by key {_signer(priv).hint}, expected {other_hint}"
    )

    # Without the hint, the signature itself must still reject the wrong key.
    doc = json.loads(bundle)
    del doc["verificationMaterial"]["publicKey"]
    with pytest.raises(VerificationError, match="DSSE signature does not verify"):
        KeyPolicy.from_file(other_pub).verify_bundle(json.dumps(doc).encode())


def test_dsse_artifact_must_be_a_subject(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    priv, pub = keypair
    artifact = tmp_path / "model.bin"
    artifact.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    statement = json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "model.bin", "digest": {"sha256": digest}}],
        }
    ).encode()
    bundle = _signer(priv).sign_dsse(statement)
    KeyPolicy.from_file(pub).verify_bundle(bundle, artifact=artifact)
    artifact.write_bytes(b"weightz")
    with pytest.raises(MismatchError, match="not a subject"):
        KeyPolicy.from_file(pub).verify_bundle(bundle, artifact=artifact)


def test_conformance_managed_key_happy_path() -> None:
    verified = KeyPolicy.from_file(HAPPY / "key.pub").verify_bundle(
        (HAPPY / "bundle.sigstore.json").read_bytes(), artifact=A_TXT
    )
    assert verified.payload is None and verified.payload_type is None
    # the hint the conformance bundle itself carries
    assert verified.signer == "key TLMsSDfG3ajPsWge+z/vX5T/zluXnmvbkTkwLIV68Tk="


def test_conformance_happy_path_rejects_another_artifact(tmp_path: Path) -> None:
    other = tmp_path / "a.txt"
    other.write_bytes(A_TXT.read_bytes() + b"x")
    with pytest.raises(MismatchError, match="messageDigest"):
        KeyPolicy.from_file(HAPPY / "key.pub").verify_bundle(
            (HAPPY / "bundle.sigstore.json").read_bytes(), artifact=other
        )
    # strip the (unsigned) digest: then the signature itself must fail
    doc = json.loads((HAPPY / "bundle.sigstore.json").read_bytes())
    del doc["messageSignature"]["messageDigest"]
    with pytest.raises(VerificationError, match="does not verify"):
        KeyPolicy.from_file(HAPPY / "key.pub").verify_bundle(
            json.dumps(doc).encode(), artifact=other
        )


def test_conformance_managed_key_wrong_key_fails() -> None:
    # The conformance suite's "wrong key" is not even a valid EC point; it must be refused.
    with pytest.raises((InputError, VerificationError)):
        KeyPolicy.from_file(WRONG / "key.pub").verify_bundle(
            (WRONG / "bundle.sigstore.json").read_bytes(), artifact=A_TXT
        )


def test_message_bundle_needs_the_artifact() -> None:
    with pytest.raises(InputError, match="needed to verify"):
        KeyPolicy.from_file(HAPPY / "key.pub").verify_bundle(
            (HAPPY / "bundle.sigstore.json").read_bytes()
        )


def test_keyless_bundle_is_refused_by_a_key_policy() -> None:
    bundle = (FIXTURES / "bundle_v3_github.whl.sigstore").read_bytes()
    with pytest.raises(VerificationError, match="keylessly"):
        KeyPolicy.from_file(HAPPY / "key.pub").verify_bundle(
            bundle, artifact=FIXTURES / "bundle_v3_github.whl"
        )


def test_keygen_default_location_is_where_run_looks(tmp_path: Path) -> None:
    """`rexec keygen` with no --out writes where a key-signed run finds it unnamed."""
    with pytest.raises(InputError, match="needs a private key, and none was given"):
        load_private_key(SignOptions(method="key"), env={})
    subprocess.run(
        [sys.executable, "-m", "executor", "keygen"],
        check=True,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    key = tmp_path / "config" / "rexec" / "signing.key"
    assert default_key_path() == key and key.is_file()
    loaded = load_private_key(SignOptions(method="key"), env={})
    public = loaded.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert public == key.with_suffix(".pub").read_bytes()
