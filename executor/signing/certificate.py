"""Who a Fulcio signing certificate names: its identities (SANs) and OIDC issuer.

Read without the ``sigstore`` package, so the catalog can note who a bundle
claims signed it (a claim until ``rexec verify`` proves it) at no import cost.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat import asn1

__all__ = ["CertIdentity", "cert_identity"]

_SIGSTORE_OTHERNAME = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")
_OIDC_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")  # raw UTF-8 bytes
_OIDC_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")  # DER UTF8String


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
