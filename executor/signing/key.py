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
import hashlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from executor.errors import InputError
from executor.paths import config_dir
from executor.signing.bundle import key_dsse_bundle
from executor.signing.dsse import pae
from executor.signing.types import IN_TOTO_PAYLOAD_TYPE, SignOptions

# cryptography is imported where a key is made, read or used: a command that signs and
# verifies nothing starts without it (a fiftieth of a second).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

ENV_KEY = "REXEC_SIGNING_KEY"
ENV_KEY_FILE = "REXEC_SIGNING_KEY_FILE"
ENV_PASSWORD = "REXEC_SIGNING_KEY_PASSWORD"

# The hash cosign/sigstore-go pair with each ECDSA curve (by its name in cryptography).
_CURVE_HASHES = {"secp256r1": "SHA256", "secp384r1": "SHA384", "secp521r1": "SHA512"}


def key_hint(public_key: ec.EllipticCurvePublicKey) -> str:
    """cosign's key hint: base64(sha256(DER SubjectPublicKeyInfo))."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")


def _public_pem(public_key: ec.EllipticCurvePublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def hash_for(public_key: ec.EllipticCurvePublicKey, *, source: str) -> hashes.HashAlgorithm:
    """The hash a key's curve signs with (P-256: SHA-256), as cosign and Sigstore pair them."""
    from cryptography.hazmat.primitives import hashes

    algorithm = _CURVE_HASHES.get(public_key.curve.name)
    if algorithm is None:
        raise InputError(
            f"{source}: ECDSA curve {public_key.curve.name} is not supported",
            hint="use a P-256 key, e.g. one made by `rexec keygen` or `cosign generate-key-pair`",
        )
    found: hashes.HashAlgorithm = getattr(hashes, algorithm)()
    return found


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
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

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


def key_file(options: SignOptions, env: Mapping[str, str]) -> Path | None:
    """The key file ``options`` and the environment name, in rexec's order; None when the
    PEM itself is in ``$REXEC_SIGNING_KEY`` or no key is to be found."""
    if options.key_path is not None:
        return options.key_path
    if env.get(ENV_KEY):
        return None
    if env.get(ENV_KEY_FILE):
        return Path(env[ENV_KEY_FILE])
    if default_key_path().is_file():
        return default_key_path()  # where `rexec keygen` writes by default
    return None


def _read_key_source(options: SignOptions, env: Mapping[str, str]) -> tuple[bytes, str]:
    """The private key PEM and a name for it in messages."""
    path = key_file(options, env)
    if path is None and env.get(ENV_KEY):
        return env[ENV_KEY].encode("utf-8"), f"${ENV_KEY}"
    if path is None:
        raise InputError(
            "signing method 'key' needs a private key, and none was given",
            hint=f"pass --signing-key FILE (or name it in the spec's [signing] key), set "
            f"{ENV_KEY_FILE}=PATH or {ENV_KEY} to the PEM itself, or --sign none to leave the "
            "record unsigned; `rexec keygen` makes a key where rexec finds it by default. "
            "replay and rerun never take a key path from the record they replay",
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
    if options.allow_prompt and sys.stdin is not None and sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"password for {source}: ").encode("utf-8")
    raise InputError(
        f"{source}: the signing key is encrypted and no password was given",
        hint=f"set {ENV_PASSWORD} (rexec cannot prompt here: stdin is not a terminal, or "
        "the key is used by a batch job, which `rexec submit` passes the variable to by name)",
    )


def load_private_key(
    options: SignOptions, *, env: Mapping[str, str] | None = None
) -> ec.EllipticCurvePrivateKey:
    """Load the key named by ``options`` (or the environment), asking for a password
    only when the key is actually encrypted."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

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
    hash_for(key.public_key(), source=source)
    return key


class KeySigner:
    """Signs Statements with a local ECDSA key into key-based Sigstore bundles."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._key = private_key
        self._hash = hash_for(private_key.public_key(), source="signing key")
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
        from cryptography.hazmat.primitives.asymmetric import ec

        signature = self._key.sign(pae(IN_TOTO_PAYLOAD_TYPE, payload), ec.ECDSA(self._hash))
        return key_dsse_bundle(
            payload_type=IN_TOTO_PAYLOAD_TYPE,
            payload=payload,
            signature=signature,
            key_hint=self.hint,
        )
