"""Signing: turn a Statement into a Sigstore bundle, and decide whether to trust one.

Two signers share one interface (:mod:`executor.signing.types`): a local key
(:mod:`.key`, air-gapped) and keyless Sigstore (:mod:`.sigstore`, imported
only when asked for, because it pulls in the network stack and TUF).
Verification is a :class:`TrustPolicy`: one small object per way of deciding
who is trusted.
"""

from __future__ import annotations

from executor.signing.key import KeySigner, generate_keypair, key_file, key_hint
from executor.signing.key_policy import KeyPolicy
from executor.signing.types import (
    BUNDLE_V03_MEDIA_TYPE,
    IN_TOTO_PAYLOAD_TYPE,
    Signer,
    SignOptions,
    TrustPolicy,
    Verified,
)

__all__ = [
    "BUNDLE_V03_MEDIA_TYPE",
    "IN_TOTO_PAYLOAD_TYPE",
    "KeyPolicy",
    "KeySigner",
    "SignOptions",
    "Signer",
    "TrustPolicy",
    "Verified",
    "generate_keypair",
    "key_file",
    "key_hint",
    "make_signer",
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
