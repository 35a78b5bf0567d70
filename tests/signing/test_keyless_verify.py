"""KeylessPolicy against real production Sigstore bundles made by other clients, offline.

The bundles come from sigstore-python's and sigstore-conformance's test assets
(see tests/fixtures/sigstore/README.md). Every test here runs with sockets
forbidden, which proves that verification needs no network: the shipped
public-good trusted root is all it uses.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from executor.errors import InputError, VerificationError
from executor.signing.sigstore import KeylessPolicy, shipped_trusted_root

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sigstore"
WHL = FIXTURES / "bundle_v3_github.whl"
WHL_BUNDLE = FIXTURES / "bundle_v3_github.whl.sigstore"
WHL_IDENTITY = (
    "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2"
)
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
MISMATCH_BUNDLE = FIXTURES / "signature-mismatch_fail" / "bundle.sigstore.json"
MISMATCH_IDENTITY = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)


class _SocketForbidden(AssertionError):
    pass


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise _SocketForbidden(f"network use in an offline test: {args!r}")


@pytest.fixture(autouse=True)
def _no_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any attempt to create a socket or resolve a name during these tests."""
    monkeypatch.setattr(socket, "socket", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setattr(socket, "getaddrinfo", _refuse)
    yield


def test_socket_guard_is_active() -> None:
    with pytest.raises(_SocketForbidden):
        socket.create_connection(("127.0.0.1", 9))
    with pytest.raises(_SocketForbidden):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def test_shipped_root_is_the_public_good_root() -> None:
    import hashlib

    digest = hashlib.sha256(shipped_trusted_root().read_bytes()).hexdigest()
    # The README names the production root by its sha256 (prefix and suffix).
    assert digest.startswith("6494e21e") and digest.endswith("0b66")


def test_production_bundle_verifies_with_its_identity() -> None:
    policy = KeylessPolicy(identity=WHL_IDENTITY, issuer=GITHUB_ISSUER)
    verified = policy.verify_bundle(WHL_BUNDLE.read_bytes(), artifact=WHL)
    assert verified.signer == f"{WHL_IDENTITY} (issuer {GITHUB_ISSUER})"
    assert verified.payload is None and verified.payload_type is None


def test_production_bundle_fails_with_another_identity() -> None:
    other = WHL_IDENTITY.replace("v0.1.2", "v9.9.9")
    policy = KeylessPolicy(identity=other, issuer=GITHUB_ISSUER)
    with pytest.raises(VerificationError) as info:
        policy.verify_bundle(WHL_BUNDLE.read_bytes(), artifact=WHL)
    text = info.value.render()
    assert WHL_IDENTITY in text and other in text  # found vs expected, both named


def test_production_bundle_fails_with_another_issuer() -> None:
    policy = KeylessPolicy(identity=WHL_IDENTITY, issuer="https://accounts.google.com")
    with pytest.raises(VerificationError) as info:
        policy.verify_bundle(WHL_BUNDLE.read_bytes(), artifact=WHL)
    assert "https://accounts.google.com" in info.value.render()
    assert GITHUB_ISSUER in info.value.render()


def test_production_bundle_regexp_that_matches() -> None:
    policy = KeylessPolicy(
        identity_regexp=r"https://github\.com/trailofbits/rfc8785\.py/.*@refs/tags/v.*",
        issuer=GITHUB_ISSUER,
    )
    assert policy.verify_bundle(WHL_BUNDLE.read_bytes(), artifact=WHL).signer.startswith(
        WHL_IDENTITY
    )


@pytest.mark.parametrize(
    "pattern",
    [
        r"https://github\.com/sigstore/.*",  # another owner
        r"trailofbits",  # a substring match is not enough: the whole identity must match
    ],
)
def test_production_bundle_regexp_that_does_not_match(pattern: str) -> None:
    policy = KeylessPolicy(identity_regexp=pattern, issuer=GITHUB_ISSUER)
    with pytest.raises(VerificationError, match="does not satisfy the policy"):
        policy.verify_bundle(WHL_BUNDLE.read_bytes(), artifact=WHL)


def test_production_bundle_fails_for_another_artifact(tmp_path: Path) -> None:
    other = tmp_path / "other.whl"
    other.write_bytes(WHL.read_bytes() + b"\0")
    policy = KeylessPolicy(identity=WHL_IDENTITY, issuer=GITHUB_ISSUER)
    with pytest.raises(VerificationError):
        policy.verify_bundle(WHL_BUNDLE.read_bytes(), artifact=other)


def test_message_signature_bundle_needs_the_artifact() -> None:
    policy = KeylessPolicy(identity=WHL_IDENTITY, issuer=GITHUB_ISSUER)
    with pytest.raises(InputError, match="--artifact"):
        policy.verify_bundle(WHL_BUNDLE.read_bytes())


def test_signature_mismatch_bundle_fails() -> None:
    policy = KeylessPolicy(identity=MISMATCH_IDENTITY, issuer=GITHUB_ISSUER)
    with pytest.raises(VerificationError) as info:
        policy.verify_bundle(MISMATCH_BUNDLE.read_bytes(), artifact=FIXTURES / "a.txt")
    # The identity holds; it is the signature that fails, and the message says so.
    assert "does not verify" in info.value.message
    assert MISMATCH_IDENTITY in info.value.message


def _leaf_certificate(doc: dict[str, Any]) -> dict[str, str]:
    material = doc["verificationMaterial"]
    if "certificate" in material:
        return dict(material["certificate"])
    return dict(material["x509CertificateChain"]["certificates"][0])


def _in_layout(doc: dict[str, Any], version: str) -> bytes:
    """The same bundle in the v0.1, v0.2 or v0.3 container layout.

    Nothing signed changes (signature, certificate and log entry are the same
    bytes); v0.3 carries the leaf as ``certificate``, older versions as a
    one-element ``x509CertificateChain``, each with its own media type.
    """
    out = json.loads(json.dumps(doc))
    material = out["verificationMaterial"]
    cert = _leaf_certificate(doc)
    material.pop("certificate", None)
    material.pop("x509CertificateChain", None)
    if version == "0.3":
        out["mediaType"] = "application/vnd.dev.sigstore.bundle.v0.3+json"
        material["certificate"] = cert
    else:
        out["mediaType"] = f"application/vnd.dev.sigstore.bundle+json;version={version}"
        material["x509CertificateChain"] = {"certificates": [cert]}
    return json.dumps(out).encode()


def test_fixture_bundle_versions_are_what_the_tests_assume() -> None:
    # The production bundle is a v0.2 file and the mismatch bundle a v0.1 file,
    # whatever their names say; the layout tests below cover v0.3 by rewriting.
    assert json.loads(WHL_BUNDLE.read_bytes())["mediaType"].endswith("version=0.2")
    assert json.loads(MISMATCH_BUNDLE.read_bytes())["mediaType"].endswith("version=0.1")


@pytest.mark.parametrize("version", ["0.1", "0.2", "0.3"])
def test_every_bundle_layout_verifies(version: str) -> None:
    raw = _in_layout(json.loads(WHL_BUNDLE.read_bytes()), version)
    policy = KeylessPolicy(identity=WHL_IDENTITY, issuer=GITHUB_ISSUER)
    assert policy.verify_bundle(raw, artifact=WHL).signer.startswith(WHL_IDENTITY)


@pytest.mark.parametrize("version", ["0.1", "0.2", "0.3"])
def test_signature_mismatch_fails_in_every_layout(version: str) -> None:
    raw = _in_layout(json.loads(MISMATCH_BUNDLE.read_bytes()), version)
    policy = KeylessPolicy(identity=MISMATCH_IDENTITY, issuer=GITHUB_ISSUER)
    with pytest.raises(VerificationError):
        policy.verify_bundle(raw, artifact=FIXTURES / "a.txt")


def test_tampered_certificate_is_rejected() -> None:
    doc = json.loads(_in_layout(json.loads(WHL_BUNDLE.read_bytes()), "0.3"))
    der = bytearray(base64.b64decode(doc["verificationMaterial"]["certificate"]["rawBytes"]))
    der[-10] ^= 0x01  # inside the CA's signature over the certificate
    doc["verificationMaterial"]["certificate"]["rawBytes"] = base64.b64encode(der).decode()
    policy = KeylessPolicy(identity=WHL_IDENTITY, issuer=GITHUB_ISSUER)
    with pytest.raises((VerificationError, InputError)):
        policy.verify_bundle(json.dumps(doc).encode(), artifact=WHL)


def test_malformed_bundle_is_input_error() -> None:
    policy = KeylessPolicy(identity=WHL_IDENTITY, issuer=GITHUB_ISSUER)
    with pytest.raises(InputError):
        policy.verify_bundle(b"{not json", artifact=WHL)


def test_key_based_bundle_points_to_key_verification() -> None:
    key_bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": "abc"}, "tlogEntries": []},
        "messageSignature": {"signature": base64.b64encode(b"sig").decode()},
    }
    policy = KeylessPolicy(identity=WHL_IDENTITY, issuer=GITHUB_ISSUER)
    with pytest.raises(InputError) as info:
        policy.verify_bundle(json.dumps(key_bundle).encode(), artifact=WHL)
    assert "--key" in (info.value.hint or "")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"issuer": GITHUB_ISSUER},  # neither identity form
        {"identity": "a", "identity_regexp": "a", "issuer": GITHUB_ISSUER},  # both
        {"identity_regexp": "(unclosed", "issuer": GITHUB_ISSUER},
        {"identity": "a", "issuer": ""},
    ],
)
def test_bad_policy_arguments_are_input_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        KeylessPolicy(**kwargs)


def test_unreadable_trusted_root_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="trusted root"):
        KeylessPolicy(identity="a", issuer="b", trusted_root=tmp_path / "missing.json")
    bad = tmp_path / "root.json"
    bad.write_text('{"mediaType": "nope"}')
    with pytest.raises(InputError, match="trusted root"):
        KeylessPolicy(identity="a", issuer="b", trusted_root=bad)


def test_describe_names_identity_issuer_and_root() -> None:
    text = KeylessPolicy(identity=WHL_IDENTITY, issuer=GITHUB_ISSUER).describe()
    assert WHL_IDENTITY in text and GITHUB_ISSUER in text and "public-good" in text
