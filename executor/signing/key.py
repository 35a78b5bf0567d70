"""Key-based signing and verification (ECDSA P-256, SHA-256) for air-gapped hosts.

Keyless Sigstore needs an OIDC identity and the network; many training
clusters have neither. A local key pair gives the same DSSE bundle format,
with the key named by cosign's hint (base64 of the sha256 of the DER
SubjectPublicKeyInfo) instead of a certificate, and ``tlogEntries: []``.
The verifier is written with ``cryptography`` because sigstore-python refuses
bundles without a certificate.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from executor.canonical import CHUNK
from executor.errors import InputError, MismatchError, VerificationError
from executor.paths import config_dir
from executor.safeio import sha256_file
from executor.signing.bundle import Bundle, key_dsse_bundle, parse_bundle
from executor.signing.dsse import pae
from executor.signing.types import IN_TOTO_PAYLOAD_TYPE, SignOptions, Verified

ENV_KEY = "REXEC_SIGNING_KEY"
ENV_KEY_FILE = "REXEC_SIGNING_KEY_FILE"
ENV_PASSWORD = "REXEC_SIGNING_KEY_PASSWORD"

# The hash cosign/sigstore-go pair with each ECDSA curve.
_CURVE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


def key_hint(public_key: ec.EllipticCurvePublicKey) -> str:
    """cosign's key hint: base64(sha256(DER SubjectPublicKeyInfo))."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")


def _public_pem(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _hash_for(public_key: ec.EllipticCurvePublicKey, *, source: str) -> hashes.HashAlgorithm:
    algorithm = _CURVE_HASHES.get(public_key.curve.name)
    if algorithm is None:
        raise InputError(
            f"{source}: ECDSA curve {public_key.curve.name} is not supported",
            hint="use a P-256 key, e.g. one made by `rexec keygen` or `cosign generate-key-pair`",
        )
    return algorithm()


def _write_new(path: Path, data: bytes, *, mode: int) -> None:
    """Create ``path`` with ``mode`` from the first byte: never readable by others, never
    overwriting (O_EXCL also refuses a symlink planted at the path)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; make it exact
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def generate_keypair(private_path: Path, public_path: Path, *, password: bytes | None) -> str:
    """Write a new P-256 key pair (PKCS#8 PEM, 0600; SPKI PEM, 0644); return its hint.

    Refuses to replace an existing file: overwriting a signing key silently
    would orphan every record signed with it.
    """
    for path in (private_path, public_path):
        if os.path.lexists(path):
            raise InputError(
                f"{path}: already exists; refusing to overwrite a key",
                hint="choose another --out prefix, or move the old key away to retire it",
            )
    private_key = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    for parent in {private_path.parent, public_path.parent}:
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        _write_new(private_path, private_pem, mode=0o600)
    except FileExistsError as exc:
        raise InputError(
            f"{private_path}: already exists; refusing to overwrite a key",
            hint="choose another --out prefix",
        ) from exc
    try:
        _write_new(public_path, _public_pem(private_key.public_key()), mode=0o644)
    except OSError:
        with contextlib.suppress(OSError):
            private_path.unlink()
        raise
    return key_hint(private_key.public_key())


def default_key_prefix() -> Path:
    """Where `rexec keygen` writes and `rexec run` looks when no key is named."""
    return Path(config_dir()) / "signing"


def default_key_path() -> Path:
    """The default private key file, beside its public key."""
    return default_key_prefix().with_suffix(".key")


def _read_key_source(options: SignOptions, env: Mapping[str, str]) -> tuple[bytes, str]:
    """The private key PEM and a name for it in messages."""
    path = options.key_path
    if path is None and env.get(ENV_KEY):
        return env[ENV_KEY].encode("utf-8"), f"${ENV_KEY}"
    if path is None and env.get(ENV_KEY_FILE):
        path = Path(env[ENV_KEY_FILE])
    if path is None and default_key_path().is_file():
        path = default_key_path()  # where `rexec keygen` writes by default
    if path is None:
        raise InputError(
            "signing method 'key' needs a private key, and none was given",
            hint=f"pass the key file, or set {ENV_KEY_FILE}=PATH or {ENV_KEY} to the PEM itself; "
            "create one with `rexec keygen`",
        )
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise InputError(
            f"{path}: cannot read the signing key ({exc.strerror})",
            hint="check the path; create a key with `rexec keygen`",
        ) from exc


def _password(options: SignOptions, env: Mapping[str, str], *, source: str) -> bytes:
    if options.key_password is not None:
        return options.key_password
    if ENV_PASSWORD in env:
        return env[ENV_PASSWORD].encode("utf-8")
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"password for {source}: ").encode("utf-8")
    raise InputError(
        f"{source}: the signing key is encrypted and no password was given",
        hint=f"set {ENV_PASSWORD} (stdin is not a terminal, so rexec cannot prompt)",
    )


def load_private_key(
    options: SignOptions, *, env: Mapping[str, str] | None = None
) -> ec.EllipticCurvePrivateKey:
    """Load the key named by ``options`` (or the environment), asking for a password
    only when the key is actually encrypted."""
    environ = os.environ if env is None else env
    pem, source = _read_key_source(options, environ)
    try:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except TypeError:  # encrypted: now, and only now, find the password
            password = _password(options, environ, source=source)
            try:
                key = serialization.load_pem_private_key(pem, password=password)
            except ValueError as exc:
                raise InputError(
                    f"{source}: wrong password for the signing key (or the key is damaged)",
                    hint=f"check {ENV_PASSWORD}",
                ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InputError(
            f"{source}: not a PEM private key ({exc})",
            hint="pass the private key (signing.key), not the public one; see `rexec keygen`",
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InputError(
            f"{source}: a {type(key).__name__} key; rexec signs with ECDSA keys only",
            hint="create a P-256 key with `rexec keygen`",
        )
    _hash_for(key.public_key(), source=source)
    return key


class KeySigner:
    """Signs Statements with a local ECDSA key into key-based Sigstore bundles."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._key = private_key
        self._hash = _hash_for(private_key.public_key(), source="signing key")
        self.hint = key_hint(private_key.public_key())

    @classmethod
    def from_options(cls, options: SignOptions) -> KeySigner:
        """A signer for ``options``: the key from a file or the environment, decrypted."""
        return cls(load_private_key(options))

    @property
    def public_key_pem(self) -> bytes | None:
        """The PEM public key to keep beside the record (never trusted by verify)."""
        return _public_pem(self._key.public_key())

    def sign_dsse(self, payload: bytes) -> bytes:
        """Sign ``payload`` as in-toto DSSE and return a Sigstore bundle v0.3."""
        signature = self._key.sign(pae(IN_TOTO_PAYLOAD_TYPE, payload), ec.ECDSA(self._hash))
        return key_dsse_bundle(
            payload_type=IN_TOTO_PAYLOAD_TYPE,
            payload=payload,
            signature=signature,
            key_hint=self.hint,
        )


def load_public_key(pem: bytes, *, source: str) -> ec.EllipticCurvePublicKey:
    """A PEM public key, or a clear error naming ``source``."""
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
    _hash_for(key, source=source)
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
        assert parsed.dsse is not None
        env = parsed.dsse
        try:
            key.verify(
                env.signature,
                pae(env.payload_type, env.payload),
                ec.ECDSA(_hash_for(key, source=self.source)),
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
        assert parsed.message is not None
        msg = parsed.message
        if artifact is None:
            raise InputError(
                "a message-signature bundle signs a file directly; the file is needed to verify it",
                hint="pass --artifact FILE",
            )
        algorithm = _hash_for(key, source=self.source)
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
