"""Signing: turn a Statement into a Sigstore bundle, and decide whether to trust one.

Two signers share one interface (:mod:`executor.signing.types`): a local key
(:mod:`.key`, air-gapped) and keyless Sigstore (:mod:`.sigstore`, imported
only when asked for, because it pulls in the network stack and TUF).
Verification is a :class:`TrustPolicy`: one small object per way of deciding
who is trusted.
"""

from __future__ import annotations

from executor.signing.bundle import parse_bundle
from executor.signing.key import KeySigner, default_key_prefix, generate_keypair, key_file, key_hint
from executor.signing.key_policy import KeyPolicy
from executor.signing.trust_file import NO_POLICY_HINT, AnyOf, default_trust_file, load_trust_file
from executor.signing.types import (
    BUNDLE_V03_MEDIA_TYPE,
    IN_TOTO_PAYLOAD_TYPE,
    Signer,
    SigningMethod,
    SignOptions,
    TrustPolicy,
    Verified,
)

__all__ = [
    "BUNDLE_V03_MEDIA_TYPE",
    "IN_TOTO_PAYLOAD_TYPE",
    "NO_POLICY_HINT",
    "AnyOf",
    "KeyPolicy",
    "KeySigner",
    "SignOptions",
    "Signer",
    "SigningMethod",
    "TrustPolicy",
    "Verified",
    "default_key_prefix",
    "default_trust_file",
    "generate_keypair",
    "key_file",
    "key_hint",
    "load_trust_file",
    "make_signer",
    "parse_bundle",
]


def make_signer(options: SignOptions) -> Signer | None:
    """The signer ``options`` asks for; None when the record is left unsigned."""
    if options.method == "none":
        return None
    if options.method == "key":
        return KeySigner.from_options(options)
    from executor.signing.sigstore import KeylessSigner

    signer: Signer = KeylessSigner.from_options(options)
    return signer
