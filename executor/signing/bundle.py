"""Sigstore bundles as plain JSON: parse v0.1-v0.3, write v0.3.

The ``sigstore`` package's bundle model refuses key-based bundles (no
certificate), and only ``executor/signing/sigstore.py`` may import it, so the
key-based path reads and writes the bundle JSON itself. Parsing is strict
about what verification relies on (one DSSE signature, base64 fields, a known
media type) and ignores what it does not use (transparency log entries,
timestamps), which a key-based, air-gapped verifier cannot check anyway.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from executor.canonical import canonical_json
from executor.errors import InputError
from executor.signing.types import BUNDLE_V03_MEDIA_TYPE

# Every media type a Sigstore client has written for bundle versions 0.1-0.3.
MEDIA_TYPE_VERSIONS: dict[str, str] = {
    "application/vnd.dev.sigstore.bundle+json;version=0.1": "0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2": "0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3": "0.3",
    BUNDLE_V03_MEDIA_TYPE: "0.3",
}


@dataclass(frozen=True)
class DsseEnvelope:
    """A bundle's DSSE envelope: what was signed and the one signature."""

    payload_type: str
    payload: bytes
    signature: bytes


@dataclass(frozen=True)
class MessageSignature:
    """A bundle's signature over a file's digest."""

    digest_algorithm: str | None  # e.g. "SHA2_256"; None when the bundle omits it
    digest: bytes | None
    signature: bytes


@dataclass(frozen=True)
class Bundle:
    """The parts of a bundle a verifier needs; exactly one of dsse/message is set."""

    media_type: str
    version: str
    key_hint: str | None  # verificationMaterial.publicKey.hint
    has_certificate: bool  # keyless: certificate or x509CertificateChain
    dsse: DsseEnvelope | None
    message: MessageSignature | None
    # verificationMaterial.tlogEntries as JSON objects: checked only against a trusted root
    tlog_entries: tuple[dict[str, Any], ...] = ()
    certificate: bytes | None = None  # the signing (leaf) certificate, DER, as found

    def claimed_signer(self) -> tuple[str, str | None]:
        """Who this bundle *says* signed, unverified: ``("key", hint)`` or
        ``("sigstore", "identity (issuer …)")``; proof is ``rexec verify``'s job."""
        if self.certificate is None:
            return "key", self.key_hint
        from cryptography import x509

        from executor.signing.certificate import cert_identity

        try:
            return "sigstore", cert_identity(
                x509.load_der_x509_certificate(self.certificate)
            ).text()
        except ValueError:
            return "sigstore", None


def _b64(value: Any, *, where: str, source: str) -> bytes:
    if not isinstance(value, str):
        raise InputError(
            f"{source}: {where} is missing or not a string",
            hint="the bundle is damaged or not a Sigstore bundle; re-create it by signing again",
        )
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(
            f"{source}: {where} is not valid base64 ({exc})",
            hint="the bundle is damaged; re-create it by signing again",
        ) from exc


def _obj(value: Any, *, where: str, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(
            f"{source}: {where} is missing or not a JSON object",
            hint="the bundle is damaged or not a Sigstore bundle",
        )
    return value


def parse_bundle(data: bytes, *, source: str = "bundle") -> Bundle:
    """Read Sigstore bundle JSON; ``source`` names the file in error messages."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"{source}: not JSON ({exc})",
            hint="pass the .sigstore.json bundle file, not the signed artifact",
        ) from exc
    doc = _obj(doc, where="the document", source=source)
    media_type = doc.get("mediaType")
    version = MEDIA_TYPE_VERSIONS.get(media_type) if isinstance(media_type, str) else None
    if version is None or not isinstance(media_type, str):
        raise InputError(
            f"{source}: mediaType {media_type!r} is not a Sigstore bundle v0.1-v0.3",
            hint=f"expected one of: {', '.join(sorted(MEDIA_TYPE_VERSIONS))}",
        )
    material = _obj(doc.get("verificationMaterial"), where="verificationMaterial", source=source)
    hint: str | None = None
    public_key = material.get("publicKey")
    if isinstance(public_key, dict) and isinstance(public_key.get("hint"), str):
        hint = public_key["hint"] or None
    has_certificate = "certificate" in material or "x509CertificateChain" in material
    leaf = material.get("certificate")
    chain = material.get("x509CertificateChain")
    if (
        isinstance(chain, dict)
        and isinstance(chain.get("certificates"), list)
        and chain["certificates"]
    ):
        leaf = chain["certificates"][0]
    certificate = None
    if isinstance(leaf, dict) and "rawBytes" in leaf:
        certificate = _b64(leaf["rawBytes"], where="the signing certificate", source=source)
    entries = material.get("tlogEntries") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InputError(f"{source}: verificationMaterial.tlogEntries is not a list of entries")

    dsse: DsseEnvelope | None = None
    message: MessageSignature | None = None
    if "dsseEnvelope" in doc:
        env = _obj(doc["dsseEnvelope"], where="dsseEnvelope", source=source)
        payload_type = env.get("payloadType")
        if not isinstance(payload_type, str) or not payload_type:
            raise InputError(
                f"{source}: dsseEnvelope.payloadType is missing",
                hint="the bundle is damaged; re-create it by signing again",
            )
        signatures = env.get("signatures")
        if not isinstance(signatures, list) or len(signatures) != 1:
            count = len(signatures) if isinstance(signatures, list) else 0
            raise InputError(
                f"{source}: dsseEnvelope.signatures has {count} entries, expected exactly 1",
                hint="Sigstore bundles carry exactly one DSSE signature",
            )
        sig = _obj(signatures[0], where="dsseEnvelope.signatures[0]", source=source)
        dsse = DsseEnvelope(
            payload_type=payload_type,
            payload=_b64(env.get("payload"), where="dsseEnvelope.payload", source=source),
            signature=_b64(sig.get("sig"), where="dsseEnvelope.signatures[0].sig", source=source),
        )
    elif "messageSignature" in doc:
        msg = _obj(doc["messageSignature"], where="messageSignature", source=source)
        algorithm: str | None = None
        digest: bytes | None = None
        if "messageDigest" in msg:
            md = _obj(msg["messageDigest"], where="messageSignature.messageDigest", source=source)
            algorithm = md.get("algorithm") if isinstance(md.get("algorithm"), str) else None
            digest = _b64(
                md.get("digest"), where="messageSignature.messageDigest.digest", source=source
            )
        message = MessageSignature(
            digest_algorithm=algorithm,
            digest=digest,
            signature=_b64(msg.get("signature"), where="messageSignature.signature", source=source),
        )
    else:
        raise InputError(
            f"{source}: has neither dsseEnvelope nor messageSignature",
            hint="the bundle is damaged or not a Sigstore bundle",
        )
    return Bundle(
        media_type=media_type,
        version=version,
        key_hint=hint,
        has_certificate=has_certificate,
        dsse=dsse,
        message=message,
        tlog_entries=tuple(entries),
        certificate=certificate,
    )


def key_dsse_bundle(*, payload_type: str, payload: bytes, signature: bytes, key_hint: str) -> bytes:
    """A v0.3 DSSE bundle for a key-based (air-gapped) signature.

    Same shape cosign writes for ``attest-blob --key --new-bundle-format
    --tlog-upload=false``: the key is named only by its hint and there is no
    transparency log entry. Canonical JSON, so signing the same payload with
    the same signature always gives the same bytes.
    """
    doc = {
        "mediaType": BUNDLE_V03_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": payload_type,
            "signatures": [{"sig": base64.b64encode(signature).decode("ascii"), "keyid": ""}],
        },
    }
    return canonical_json(doc)
