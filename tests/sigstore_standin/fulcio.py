"""A test Fulcio: checks the OIDC token and the proof of possession, issues a leaf.

What the real ``sigstore`` client checks, and therefore what this stand-in
must get right:

- the response is ``signedCertificateEmbeddedSct.chain.certificates``, leaf first;
- the leaf carries exactly one embedded SCT whose signature verifies, as an
  RFC 6962 *precertificate* entry, under a key in the trusted root's ``ctlogs``
  (the signed data covers the TBSCertificate without the SCT extension and the
  sha256 of the issuing CA's SubjectPublicKeyInfo);
- at verification: the chain builds to a root in ``certificateAuthorities``
  under cryptography's web-PKI client profile (critical SAN with an empty
  subject, AKI/SKI, a CA with critical BasicConstraints and keyCertSign), key
  usage digitalSignature, EKU codeSigning, and the OIDC issuer in extension
  1.3.6.1.4.1.57264.1.1 (raw bytes) and .1.8 (DER UTF8String).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import struct
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

OIDC_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OIDC_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
SCT_LIST_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
LEAF_LIFETIME = dt.timedelta(minutes=10)


class FulcioRefusal(Exception):
    """The request is refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def spki_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(key: ec.EllipticCurvePublicKey) -> bytes:
    """RFC 6962 key id: sha256 of the DER SubjectPublicKeyInfo."""
    return hashlib.sha256(spki_der(key)).digest()


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der_utf8string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return b"\x0c" + _der_length(len(raw)) + raw


def der_octet_string(raw: bytes) -> bytes:
    return b"\x04" + _der_length(len(raw)) + raw


def _u24(n: int) -> bytes:
    return struct.pack("!I", n)[1:]


@dataclass(frozen=True)
class Identity:
    """Who the token says the caller is: ``san`` goes into the certificate."""

    san: x509.GeneralName
    issuer: str


class StandInFulcio:
    """A certificate authority plus a CT log key, both generated per instance."""

    def __init__(self, *, oidc_issuer: str, oidc_key: ec.EllipticCurvePublicKey) -> None:
        self.oidc_issuer = oidc_issuer
        self._oidc_key = oidc_key
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self.valid_from = now - dt.timedelta(days=1)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ct_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rexec-standin"),
                x509.NameAttribute(NameOID.COMMON_NAME, "rexec-standin-fulcio"),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key())
        self.root = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.valid_from)
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )

    # ------------------------------------------------------------------ requests

    def identity_from_token(self, authorization: str | None) -> Identity:
        """Verify the bearer token (signature, issuer, audience, expiry) as Fulcio does."""
        if not authorization or not authorization.startswith("Bearer "):
            raise FulcioRefusal(401, "missing bearer token")
        try:
            claims: dict[str, Any] = jwt.decode(
                authorization.removeprefix("Bearer "),
                self._oidc_key,
                algorithms=["ES256"],
                audience="sigstore",
                issuer=self.oidc_issuer,
                options={"require": ["iss", "aud", "sub", "iat", "exp"]},
            )
        except jwt.PyJWTError as exc:
            raise FulcioRefusal(401, f"invalid identity token: {exc}") from exc
        email = claims.get("email")
        if email is not None:
            if claims.get("email_verified") is not True:
                raise FulcioRefusal(400, "email is not verified")
            return Identity(san=x509.RFC822Name(str(email)), issuer=self.oidc_issuer)
        return Identity(
            san=x509.UniformResourceIdentifier(str(claims["sub"])), issuer=self.oidc_issuer
        )

    def sign_request(self, body: dict[str, Any], authorization: str | None) -> dict[str, Any]:
        """``POST /api/v2/signingCert``: a leaf with an embedded SCT, plus the chain."""
        identity = self.identity_from_token(authorization)
        try:
            pem = base64.b64decode(body["certificateSigningRequest"])
            csr = x509.load_pem_x509_csr(pem)
        except (KeyError, TypeError, ValueError) as exc:
            raise FulcioRefusal(400, f"bad certificateSigningRequest: {exc}") from exc
        if not csr.is_signature_valid:
            raise FulcioRefusal(400, "proof of possession failed: CSR signature is invalid")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise FulcioRefusal(400, "only ECDSA keys are supported")
        leaf = self._issue(public_key, identity)
        chain = [leaf, self.root]
        pems = [c.public_bytes(serialization.Encoding.PEM).decode() for c in chain]
        return {"signedCertificateEmbeddedSct": {"chain": {"certificates": pems}}}

    # ------------------------------------------------------------------ issuance

    def _leaf_builder(
        self, public_key: ec.EllipticCurvePublicKey, identity: Identity, serial: int
    ) -> x509.CertificateBuilder:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.root.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(now - dt.timedelta(seconds=30))
            .not_valid_after(now + LEAF_LIFETIME)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName([identity.san]), critical=True)
            .add_extension(
                x509.UnrecognizedExtension(OIDC_ISSUER_V1, identity.issuer.encode()),
                critical=False,
            )
            .add_extension(
                x509.UnrecognizedExtension(OIDC_ISSUER_V2, der_utf8string(identity.issuer)),
                critical=False,
            )
        )

    def _issue(self, public_key: ec.EllipticCurvePublicKey, identity: Identity) -> x509.Certificate:
        serial = x509.random_serial_number()
        # The precertificate's TBS is the final TBS minus the SCT list extension,
        # which goes last; build it once without, to have the bytes the SCT signs.
        builder = self._leaf_builder(public_key, identity, serial)
        tbs = builder.sign(self.ca_key, hashes.SHA256()).tbs_certificate_bytes
        sct_list = self._sct_list(tbs)
        leaf = builder.add_extension(
            x509.UnrecognizedExtension(SCT_LIST_OID, der_octet_string(sct_list)), critical=False
        ).sign(self.ca_key, hashes.SHA256())
        if leaf.tbs_precertificate_bytes != tbs:  # the client recomputes exactly this
            raise AssertionError("precertificate TBS does not match the SCT's signed data")
        return leaf

    def _sct_list(self, tbs: bytes) -> bytes:
        """One RFC 6962 v1 SCT over the precertificate entry, in a TLS SCT list."""
        timestamp_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        issuer_key_hash = key_id(self.ca_key.public_key())
        signed = (
            struct.pack("!BBQH", 0, 0, timestamp_ms, 1)  # v1, certificate_timestamp, precert
            + issuer_key_hash
            + _u24(len(tbs))
            + tbs
            + struct.pack("!H", 0)  # no extensions
        )
        signature = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        sct = (
            struct.pack("!B", 0)
            + key_id(self.ct_key.public_key())
            + struct.pack("!QH", timestamp_ms, 0)
            + struct.pack("!BBH", 4, 3, len(signature))  # sha256, ecdsa
            + signature
        )
        entry = struct.pack("!H", len(sct)) + sct
        return struct.pack("!H", len(entry)) + entry
