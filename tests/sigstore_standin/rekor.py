"""A test Rekor v1: an RFC 6962 Merkle log that answers with proofs and promises.

For each accepted entry the client gets, and later the verifier checks: the
canonicalized entry body (whose Merkle leaf hash the inclusion proof starts
from), an inclusion proof to the current root, a checkpoint (a signed note
over origin, size and root) and a signed entry timestamp (SET: the log's
signature over the RFC 8785 JSON of body, integratedTime, logID, logIndex).
Before accepting an entry it checks the signature inside it, as Rekor does,
so a client cannot log something its certificate did not sign.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from tests.sigstore_standin.fulcio import key_id


class RekorRefusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (RFC 6962 section 2.1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def merkle_root(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) over already-hashed leaves."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def inclusion_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]): the audit path for leaf ``index``, bottom to top."""
    if len(leaves) <= 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_path(index, leaves[:k]), merkle_root(leaves[k:])]
    return [*inclusion_path(index - k, leaves[k:]), merkle_root(leaves[:k])]


def _pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _cert_key(verifier_b64: str) -> ec.EllipticCurvePublicKey:
    """The verifier's key: a PEM certificate (keyless) or a PEM public key (key-signed)."""
    pem = base64.b64decode(verifier_b64)
    try:
        key: object = (
            serialization.load_pem_public_key(pem)
            if b"PUBLIC KEY" in pem
            else x509.load_pem_x509_certificate(pem).public_key()
        )
    except ValueError as exc:
        raise RekorRefusal(400, f"verifier is not a PEM certificate or key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise RekorRefusal(400, "only ECDSA verifiers are supported")
    return key


class StandInRekor:
    """An append-only log with one signing key, safe to call from server threads."""

    ORIGIN_NAME = "rexec-standin-rekor"

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.log_id = key_id(self.key.public_key())
        self.tree_id = int.from_bytes(self.log_id[:7], "big")
        self._leaves: list[bytes] = []
        self._lock = threading.Lock()

    def _sign(self, data: bytes) -> bytes:
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))

    def canonical_body(self, proposed: dict[str, Any]) -> bytes:
        """What Rekor stores for a proposed entry, after checking its signature."""
        kind, version = proposed.get("kind"), proposed.get("apiVersion")
        spec = proposed.get("spec") or {}
        if (kind, version) == ("dsse", "0.0.1"):
            return self._dsse_body(spec)
        if (kind, version) == ("hashedrekord", "0.0.1"):
            return self._hashedrekord_body(spec)
        raise RekorRefusal(400, f"unsupported entry kind {kind}/{version}")

    def _dsse_body(self, spec: dict[str, Any]) -> bytes:
        try:
            content = spec["proposedContent"]
            envelope = json.loads(content["envelope"])
            verifier = content["verifiers"][0]
            payload = base64.b64decode(envelope["payload"])
            signature = base64.b64decode(envelope["signatures"][0]["sig"])
            payload_type = envelope["payloadType"]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise RekorRefusal(400, f"malformed dsse entry: {exc}") from exc
        try:
            _cert_key(verifier).verify(
                signature, _pae(payload_type, payload), ec.ECDSA(hashes.SHA256())
            )
        except InvalidSignature as exc:
            raise RekorRefusal(400, "DSSE signature does not verify with the verifier") from exc
        body: dict[str, Any] = {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(rfc8785.dumps(envelope)).hexdigest(),
                },
                "payloadHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(payload).hexdigest(),
                },
                "signatures": [
                    {"signature": base64.b64encode(signature).decode(), "verifier": verifier}
                ],
            },
        }
        return rfc8785.dumps(body)

    def _hashedrekord_body(self, spec: dict[str, Any]) -> bytes:
        try:
            digest = bytes.fromhex(spec["data"]["hash"]["value"])
            algorithm = spec["data"]["hash"]["algorithm"]
            signature = base64.b64decode(spec["signature"]["content"])
            verifier = spec["signature"]["publicKey"]["content"]
        except (KeyError, TypeError, ValueError) as exc:
            raise RekorRefusal(400, f"malformed hashedrekord entry: {exc}") from exc
        if algorithm != "sha256":
            raise RekorRefusal(400, f"unsupported hash algorithm {algorithm}")
        try:
            _cert_key(verifier).verify(
                signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256()))
            )
        except InvalidSignature as exc:
            raise RekorRefusal(400, "signature does not verify with the verifier") from exc
        return rfc8785.dumps({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": spec})

    def checkpoint(self, size: int, root: bytes) -> str:
        """A signed note in the transparency-dev checkpoint format."""
        origin = f"{self.ORIGIN_NAME} - {self.tree_id}"
        note = f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"
        sig = base64.b64encode(self.log_id[:4] + self._sign(note.encode())).decode()
        return f"{note}\n\u2014 {self.ORIGIN_NAME} {sig}\n"

    def add(self, proposed: dict[str, Any]) -> dict[str, Any]:
        """``POST /api/v1/log/entries``: append, and answer as Rekor v1 does."""
        body = self.canonical_body(proposed)
        body_b64 = base64.b64encode(body).decode()
        integrated = int(time.time())
        with self._lock:
            self._leaves.append(leaf_hash(body))
            index = len(self._leaves) - 1
            leaves = list(self._leaves)
        root = merkle_root(leaves)
        log_id_hex = self.log_id.hex()
        promise = rfc8785.dumps(
            {"body": body_b64, "integratedTime": integrated, "logID": log_id_hex, "logIndex": index}
        )
        entry = {
            "body": body_b64,
            "integratedTime": integrated,
            "logID": log_id_hex,
            "logIndex": index,
            "verification": {
                "inclusionProof": {
                    "logIndex": index,
                    "rootHash": root.hex(),
                    "treeSize": len(leaves),
                    "hashes": [h.hex() for h in inclusion_path(index, leaves)],
                    "checkpoint": self.checkpoint(len(leaves), root),
                },
                "signedEntryTimestamp": base64.b64encode(self._sign(promise)).decode(),
            },
        }
        return {leaf_hash(body).hex(): entry}

    @property
    def size(self) -> int:
        with self._lock:
            return len(self._leaves)
