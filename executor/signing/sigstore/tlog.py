"""Transparency-log entries of key-signed bundles, checked against a trusted root."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sigstore.errors import Error as SigstoreError

from executor.errors import VerificationError
from executor.signing.sigstore._common import load_trusted_root, sigstore_error_text


def verify_key_log_entries(
    entries: tuple[dict[str, Any], ...],
    *,
    public_key_pem: bytes,
    signature: bytes,
    signed_digest: bytes,
    dsse: bool,
    trusted_root: Path,
) -> str:
    """Check the transparency-log entries of a key-signed bundle, as Sigstore clients do
    for keyless ones: each entry's inclusion proof and signed checkpoint, and its signed
    entry timestamp, against the logs of ``trusted_root``; and the entry must be about
    this very signature (same key, same signature, same payload or artifact digest).

    ``signed_digest`` is the sha256 of the DSSE payload (``dsse``) or of the artifact.
    sigstore-python cannot verify key-based bundles (it wants a certificate), so the
    bundle is not handed to it whole; its log-entry checks are used one entry at a time.
    """
    from sigstore._internal.trust import KeyringPurpose
    from sigstore.models import TransparencyLogEntry
    from sigstore_models.rekor.v1 import TransparencyLogEntry as EntryModel

    if not entries:
        return "none in the bundle"
    root = load_trusted_root(trusted_root)
    keyring = root.rekor_keyring(KeyringPurpose.VERIFY)
    indexes = []
    for number, raw in enumerate(entries):
        where = f"tlogEntries[{number}]"
        try:
            entry = TransparencyLogEntry(EntryModel.from_json(json.dumps(raw)))
            entry._verify(keyring)
        except (SigstoreError, ValueError, KeyError, TypeError) as exc:
            raise VerificationError(
                f"{where}: the transparency-log entry does not verify: {sigstore_error_text(exc)}",
                hint="its inclusion proof, checkpoint or signed timestamp was forged or "
                "belongs to another log than the trusted root names",
            ) from exc
        _check_entry_body(
            entry._inner.canonicalized_body,
            where=where,
            public_key_pem=public_key_pem,
            signature=signature,
            signed_digest=signed_digest,
            dsse=dsse,
        )
        indexes.append(str(entry._inner.log_index))
    return f"checked against {trusted_root}: log index {', '.join(indexes)}"


def _check_entry_body(
    body: bytes,
    *,
    where: str,
    public_key_pem: bytes,
    signature: bytes,
    signed_digest: bytes,
    dsse: bool,
) -> None:
    """The log entry must record this signature, by this key, over this content."""
    import base64

    from cryptography.hazmat.primitives import serialization

    def der(pem_b64: str) -> bytes:
        return serialization.load_pem_public_key(base64.b64decode(pem_b64)).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    ours = der(base64.b64encode(public_key_pem).decode())
    try:
        doc = json.loads(body)
        spec = doc["spec"]
        if dsse:
            ok_kind = (doc["kind"], doc["apiVersion"]) == ("dsse", "0.0.1")
            digest = spec["payloadHash"]["value"]
            pairs = [(s["signature"], s["verifier"]) for s in spec["signatures"]]
        else:
            ok_kind = (doc["kind"], doc["apiVersion"]) == ("hashedrekord", "0.0.1")
            digest = spec["data"]["hash"]["value"]
            pairs = [(spec["signature"]["content"], spec["signature"]["publicKey"]["content"])]
        matches = any(
            base64.b64decode(sig) == signature and der(verifier) == ours for sig, verifier in pairs
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise VerificationError(
            f"{where}: the log entry's body is not one rexec can read ({exc})"
        ) from exc
    if not ok_kind or digest != signed_digest.hex() or not matches:
        raise VerificationError(
            f"{where}: the log entry is about another signature, key or content than this bundle",
            hint="a valid entry copied from another bundle proves nothing about this one",
        )
