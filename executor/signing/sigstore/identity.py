"""The signer identity a Fulcio certificate carries, and the policy that matches it."""

from __future__ import annotations

import re

from cryptography import x509
from sigstore.errors import VerificationError as SigstoreVerificationError

from executor.signing.certificate import CertIdentity, cert_identity

__all__ = ["CertIdentity", "IdentityMatch", "PolicyMismatch", "cert_identity"]


class PolicyMismatch(SigstoreVerificationError):
    """The certificate is valid but names someone the policy does not accept."""


class IdentityMatch:
    """sigstore VerificationPolicy: issuer equals, and a SAN equals or fully matches.

    sigstore 4.x has an exact-identity policy only; the regular expression
    form (cosign's ``--certificate-identity-regexp``) is this small class.
    Matching is ``re.fullmatch`` so ``.*`` has to be written out: a pattern
    never accepts an identity merely because it contains a match.
    """

    def __init__(self, *, identity: str | None, pattern: re.Pattern[str] | None, issuer: str):
        self._identity = identity
        self._pattern = pattern
        self._issuer = issuer

    def verify(self, cert: x509.Certificate) -> None:
        """Raise unless the certificate's identity and issuer match the policy."""
        found = cert_identity(cert)
        if found.issuer != self._issuer:
            raise PolicyMismatch(
                f"certificate issuer is {found.issuer!r}, expected {self._issuer!r}"
            )
        if self._pattern is not None:
            ok = any(self._pattern.fullmatch(s) for s in found.sans)
        else:
            ok = self._identity in found.sans
        if not ok:
            raise PolicyMismatch(f"certificate identity {list(found.sans)} does not match")
