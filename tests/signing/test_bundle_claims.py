"""Who a bundle says signed it: the catalog's claim, before `rexec verify` proves it."""

from __future__ import annotations

from pathlib import Path

from executor.signing.bundle import parse_bundle
from executor.signing.key import key_hint
from executor.signing.key_policy import load_public_key

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sigstore"


def test_a_keyless_bundle_claims_its_certificate_identity_and_issuer() -> None:
    bundle = parse_bundle((FIXTURES / "bundle_v3_github.whl.sigstore").read_bytes())
    kind, who = bundle.claimed_signer()
    # identity and issuer as tests/fixtures/sigstore/README.md documents them
    assert kind == "sigstore" and who == (
        "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2"
        " (issuer https://token.actions.githubusercontent.com)"
    )


def test_a_key_bundle_claims_its_key_hint() -> None:
    happy = FIXTURES / "managed-key-happy-path"
    bundle = parse_bundle((happy / "bundle.sigstore.json").read_bytes())
    public = load_public_key((happy / "key.pub").read_bytes(), source="key.pub")
    assert bundle.claimed_signer() == ("key", key_hint(public))
