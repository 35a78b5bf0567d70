"""Verifying key-signed bundles: trust exactly one public key (and, with a trusted root,
the transparency logs it names). Written with ``cryptography``: sigstore-python
refuses bundles without a certificate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from executor.canonical import CHUNK
from executor.errors import InputError, MismatchError, VerificationError
from executor.safeio import sha256_file
from executor.signing.bundle import Bundle, parse_bundle
from executor.signing.dsse import pae
from executor.signing.key import hash_for, key_hint
from executor.signing.types import Verified

if TYPE_CHECKING:  # cryptography itself is imported where a key is read or used
    from cryptography.hazmat.primitives.asymmetric import ec


def load_public_key(pem: bytes, *, source: str) -> ec.EllipticCurvePublicKey:
    """A PEM public key, or a clear error naming ``source``."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InputError(
            f"{source}: not a usable PEM public key ({exc})",
            hint="pass the signer's public key (e.g. signing.pub from `rexec keygen`)",
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InputError(
            f"{source}: a {type(key).__name__}; rexec verifies ECDSA keys only",
            hint="pass the ECDSA public key the record was signed with",
        )
    hash_for(key, source=source)
    return key


def statement_subject_digests(payload: bytes, *, source: str) -> dict[str, str]:
    """``{sha256 hex: subject name}`` of an in-toto Statement payload."""
    try:
        doc: Any = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{source}: the signed payload is not JSON ({exc})") from exc
    subjects = doc.get("subject") if isinstance(doc, dict) else None
    if not isinstance(subjects, list):
        raise InputError(f"{source}: the signed payload has no subject list")
    found: dict[str, str] = {}
    for item in subjects:
        if isinstance(item, dict) and isinstance(item.get("digest"), dict):
            digest = item["digest"].get("sha256")
            if isinstance(digest, str):
                found[digest.lower()] = str(item.get("name", ""))
    return found


def _file_sha256(path: Path) -> bytes:
    try:
        return bytes.fromhex(sha256_file(path, follow_links=True))
    except OSError as exc:
        raise InputError(
            f"{path}: cannot read the artifact ({exc.strerror})",
            hint="check the --artifact path",
        ) from exc


@dataclass(frozen=True)
class KeyPolicy:
    """Trust exactly one public key."""

    public_key_pem: bytes
    source: str = "public key"
    # With a trusted root, log entries a bundle carries are verified; without one they
    # are reported as not checked. ``require_tlog``: a bundle must carry a checked one.
    trusted_root: Path | None = None
    require_tlog: bool = False

    @classmethod
    def from_file(
        cls, path: Path, *, trusted_root: Path | None = None, require_tlog: bool = False
    ) -> KeyPolicy:
        """Trust the public key in ``path``; with ``trusted_root``, also check log entries."""
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise InputError(
                f"{path}: cannot read the public key ({exc.strerror})",
                hint="pass the signer's public key file with --key",
            ) from exc
        if require_tlog and trusted_root is None:
            raise InputError(
                "--require-tlog needs --trusted-root: a log entry is only checked against "
                "the log keys a trusted root names",
                hint="pass --trusted-root trusted_root.json of the Rekor instance you trust",
            )
        return cls(pem, source=str(path), trusted_root=trusted_root, require_tlog=require_tlog)

    @property
    def _key(self) -> ec.EllipticCurvePublicKey:
        return load_public_key(self.public_key_pem, source=self.source)

    @property
    def hint(self) -> str:
        """The key's hint, base64(sha256(DER)), as bundles name it."""
        return key_hint(self._key)

    def describe(self) -> str:
        """The policy in words, for messages."""
        return f"key {self.hint} ({self.source})"

    def verify_bundle(self, bundle: bytes, *, artifact: Path | None = None) -> Verified:
        """Verify a bundle was signed by this key (and its log entries, with a trusted root)."""
        key = self._key
        expected = key_hint(key)
        parsed = parse_bundle(bundle)
        if parsed.has_certificate:
            raise VerificationError(
                "bundle is signed keylessly (it carries a certificate), not by a key",
                hint="verify it with --identity/--identity-regexp and --issuer instead of --key",
            )
        if parsed.key_hint is not None and parsed.key_hint != expected:
            raise VerificationError(
                f"bundle was signed by key {parsed.key_hint}, expected {expected}",
                hint=f"pass the public key whose hint is {parsed.key_hint}, "
                "or the record was not signed by the key you trust",
            )
        if parsed.dsse is not None:
            verified = self._verify_dsse(parsed, key, expected=expected, artifact=artifact)
            signature, digest = parsed.dsse.signature, hashlib.sha256(parsed.dsse.payload).digest()
        else:
            verified = self._verify_message(parsed, key, expected=expected, artifact=artifact)
            assert parsed.message is not None and artifact is not None
            signature, digest = parsed.message.signature, _file_sha256(artifact)
        return dataclasses.replace(verified, tlog=self._log_entries(parsed, signature, digest))

    def _log_entries(self, parsed: Bundle, signature: bytes, digest: bytes) -> str:
        """Verify the bundle's transparency-log entries, or say why they were not."""
        if self.trusted_root is not None:
            from executor.signing.sigstore import verify_key_log_entries

            text = verify_key_log_entries(
                parsed.tlog_entries,
                public_key_pem=self.public_key_pem,
                signature=signature,
                signed_digest=digest,
                dsse=parsed.dsse is not None,
                trusted_root=self.trusted_root,
            )
        elif parsed.tlog_entries:
            text = f"{len(parsed.tlog_entries)} in the bundle, not checked (no --trusted-root)"
        else:
            text = "none in the bundle"
        if self.require_tlog and not text.startswith("checked"):
            raise VerificationError(
                f"--require-tlog: the bundle carries no transparency-log entry ({text})",
                hint="the record was signed without uploading to a transparency log; "
                "drop --require-tlog to accept key signatures that are not logged",
            )
        return text

    def _verify_dsse(
        self,
        parsed: Bundle,
        key: ec.EllipticCurvePublicKey,
        *,
        expected: str,
        artifact: Path | None,
    ) -> Verified:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric import ec

        assert parsed.dsse is not None
        env = parsed.dsse
        try:
            key.verify(
                env.signature,
                pae(env.payload_type, env.payload),
                ec.ECDSA(hash_for(key, source=self.source)),
            )
        except InvalidSignature as exc:
            raise VerificationError(
                f"DSSE signature does not verify with key {expected}",
                hint="the signed statement or its signature was altered, "
                "or it was signed by another key",
            ) from exc
        if artifact is not None:
            digest = _file_sha256(artifact).hex()
            if digest not in statement_subject_digests(env.payload, source="bundle"):
                raise MismatchError(
                    f"{artifact}: sha256 {digest} is not a subject of the signed statement",
                    hint="the artifact differs from the one that was signed",
                )
        return Verified(
            signer=f"key {expected}", payload_type=env.payload_type, payload=env.payload
        )

    def _verify_message(
        self,
        parsed: Bundle,
        key: ec.EllipticCurvePublicKey,
        *,
        expected: str,
        artifact: Path | None,
    ) -> Verified:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

        assert parsed.message is not None
        msg = parsed.message
        if artifact is None:
            raise InputError(
                "a message-signature bundle signs a file directly; the file is needed to verify it",
                hint="pass --artifact FILE",
            )
        algorithm = hash_for(key, source=self.source)
        with open(artifact, "rb") as f:
            hasher = hashes.Hash(algorithm)
            while chunk := f.read(CHUNK):
                hasher.update(chunk)
        digest = hasher.finalize()
        if msg.digest is not None and msg.digest != digest:
            raise MismatchError(
                f"{artifact}: digest {digest.hex()} differs from the bundle's messageDigest "
                f"{msg.digest.hex()}",
                hint="the artifact differs from the one that was signed",
            )
        try:
            key.verify(msg.signature, digest, ec.ECDSA(Prehashed(algorithm)))
        except InvalidSignature as exc:
            raise VerificationError(
                f"signature over {artifact} does not verify with key {expected}",
                hint="the artifact or the signature was altered, or it was signed by another key",
            ) from exc
        return Verified(signer=f"key {expected}", payload_type=None, payload=None)
