"""The signer identity a Fulcio certificate carries, and the policy that matches it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat import asn1
from sigstore.errors import VerificationError as SigstoreVerificationError

_SIGSTORE_OTHERNAME = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")


@dataclass(frozen=True)
class CertIdentity:
    """What a Fulcio certificate says about who signed."""

    sans: tuple[str, ...]
    issuer: str | None

    def text(self) -> str:
        """The identity and issuer in words, for messages."""
        who = ", ".join(self.sans) if self.sans else "(no identity)"
        return f"{who} (issuer {self.issuer or 'unknown'})"


def cert_identity(cert: x509.Certificate) -> CertIdentity:
    """SANs (email, URI, Sigstore othername) and the OIDC issuer of a signing certificate."""
    sans: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans += san.get_values_for_type(x509.RFC822Name)
        sans += san.get_values_for_type(x509.UniformResourceIdentifier)
        sans += [
            on.value.decode("utf-8", "replace")
            for on in san.get_values_for_type(x509.OtherName)
            if on.type_id == _SIGSTORE_OTHERNAME
        ]
    except x509.ExtensionNotFound:
        pass
    return CertIdentity(sans=tuple(sans), issuer=_cert_issuer(cert))


def _cert_issuer(cert: x509.Certificate) -> str | None:
    for ext in cert.extensions:
        if not isinstance(ext.value, x509.UnrecognizedExtension):
            continue
        if ext.oid == _OIDC_ISSUER_V2:
            try:
                return str(asn1.decode_der(str, ext.value.value))
            except ValueError:
                continue
    for ext in cert.extensions:
        if ext.oid == _OIDC_ISSUER_V1 and isinstance(ext.value, x509.UnrecognizedExtension):
            return ext.value.value.decode("utf-8", "replace")
    return None


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


_OIDC_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")  # raw UTF-8 bytes


_OIDC_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")  # DER UTF8String
