"""The shared signing interface: what a signer produces and a policy accepts.

Key-based signing (``key.py``) and keyless Sigstore signing (``sigstore.py``)
are built against these types independently, so the rest of rexec (the run
pipeline, ``rexec verify``) depends only on this module and never on how a
signature was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUNDLE_V03_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"

SigningMethod = Literal["key", "sigstore", "none"]


@dataclass(frozen=True)
class SignOptions:
    """How to sign a run record; every secret may also come from the environment.

    key: ``key_path`` is a PEM private key file; if None, env ``REXEC_SIGNING_KEY``
    holds the PEM itself, else ``REXEC_SIGNING_KEY_FILE`` names a path.
    ``key_password`` else env ``REXEC_SIGNING_KEY_PASSWORD``, else an interactive
    prompt (only if stdin is a TTY), else a clear InputError.
    sigstore: ``identity_token`` else env ``REXEC_IDENTITY_TOKEN`` /
    ``SIGSTORE_ID_TOKEN``, else ambient detection, else a browser flow on a TTY.
    ``trust_config`` is a ClientTrustConfig JSON (private Fulcio/Rekor); None
    means the public-good production instance (network).
    """

    method: SigningMethod
    key_path: Path | None = None
    key_password: bytes | None = None
    identity_token: str | None = None
    trust_config: Path | None = None
    # False where nobody can answer a prompt (a batch job): a password must come from
    # the environment, and `rexec submit` checks that before it queues anything.
    allow_prompt: bool = True


@dataclass(frozen=True)
class Verified:
    """What a successful verification proved, for display and further checks."""

    signer: str  # human text: "key <hint>" or "<identity> (issuer <url>)"
    payload_type: str | None  # DSSE bundles: payloadType; message-signature bundles: None
    payload: bytes | None  # DSSE bundles: the exact signed payload bytes; else None
    # What was proved about transparency-log entries: "checked: ...", "not checked: ...".
    tlog: str = "none in the bundle"


class Signer(Protocol):
    """Turns a Statement into a Sigstore bundle."""

    def sign_dsse(self, payload: bytes) -> bytes:
        """Sign ``payload`` as in-toto DSSE; return Sigstore bundle v0.3 JSON bytes."""
        ...

    @property
    def public_key_pem(self) -> bytes | None:
        """PEM SubjectPublicKeyInfo for key signers; None for keyless."""
        ...


class TrustPolicy(Protocol):
    """Decides whether a bundle was signed by someone we trust.

    DSSE bundle: verify the signature over PAE(payloadType, payload); if
    ``artifact`` is given, its sha256 must be one of the Statement's subjects.
    messageSignature bundle: ``artifact`` is required; verify the signature over
    the artifact. Accepts bundle media types v0.1, v0.2, v0.3. Raises
    VerificationError for signature/identity/policy failures and InputError for
    unreadable or malformed bundles.
    """

    def verify_bundle(self, bundle: bytes, *, artifact: Path | None = None) -> Verified:
        """Check ``bundle`` under this policy; raise VerificationError when it does not hold."""

    def describe(self) -> str:
        """The policy in words, for messages and verdicts."""
