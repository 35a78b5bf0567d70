"""Identity-based verification of keyless bundles, offline, against a trusted root file:
"this identity, from this OIDC issuer". sigstore's own error texts are kept, and
rexec's message says which identity the certificate carries and which one the policy
expected."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sigstore.errors import Error as SigstoreError
from sigstore.errors import VerificationError as SigstoreVerificationError
from sigstore.hashes import Hashed
from sigstore.models import Bundle
from sigstore.verify import Verifier
from sigstore_models.common.v1 import HashAlgorithm

from executor.errors import InputError, MismatchError, VerificationError
from executor.safeio import sha256_file
from executor.signing.bundle import parse_bundle
from executor.signing.sigstore._common import (
    load_trusted_root,
    shipped_trusted_root,
    sigstore_error_text,
)
from executor.signing.sigstore.identity import (
    CertIdentity,
    IdentityMatch,
    PolicyMismatch,
    cert_identity,
)
from executor.signing.types import IN_TOTO_PAYLOAD_TYPE, Verified


class KeylessPolicy:
    """Accept a bundle only if a trusted Fulcio certified this identity and issuer."""

    def __init__(
        self,
        *,
        identity: str | None = None,
        identity_regexp: str | None = None,
        issuer: str,
        trusted_root: Path | None = None,
    ) -> None:
        if (identity is None) == (identity_regexp is None):
            raise InputError(
                "keyless verification needs exactly one of --identity or --identity-regexp",
                hint="e.g. --identity you@example.com --issuer https://accounts.google.com",
            )
        if not issuer:
            raise InputError(
                "keyless verification needs --issuer",
                hint="e.g. --issuer https://token.actions.githubusercontent.com",
            )
        pattern: re.Pattern[str] | None = None
        if identity_regexp is not None:
            try:
                pattern = re.compile(identity_regexp)
            except re.error as exc:
                raise InputError(
                    f"--identity-regexp {identity_regexp!r} is not a valid regular expression "
                    f"({exc})",
                    hint="Python 're' syntax; it must match the whole identity",
                ) from exc
        self._identity = identity
        self._pattern = pattern
        self._issuer = issuer
        self._root_path = trusted_root or shipped_trusted_root()
        self._root_label = str(trusted_root) if trusted_root else "public-good root (shipped)"
        self._verifier = Verifier(trusted_root=load_trusted_root(self._root_path))

    def _expected(self) -> str:
        who = (
            f"identity {self._identity!r}"
            if self._pattern is None
            else (f"an identity matching /{self._pattern.pattern}/")
        )
        return f"{who} (issuer {self._issuer})"

    def describe(self) -> str:
        """The policy in words, for messages."""
        return f"keyless: {self._expected()}, trusted root: {self._root_label}"

    def verify_bundle(self, bundle: bytes, *, artifact: Path | None = None) -> Verified:
        """Verify a keyless bundle offline: chain, log entry, identity and issuer."""
        shape = parse_bundle(bundle)
        if not shape.has_certificate:
            raise InputError(
                "the bundle has no signing certificate: it is a key-based bundle",
                hint="verify it with --key PUBLIC_KEY instead of --identity/--issuer",
            )
        try:
            parsed = Bundle.from_json(bundle)
        except (SigstoreError, ValueError) as exc:
            raise InputError(
                f"the Sigstore bundle is malformed: {sigstore_error_text(exc)}",
                hint="the bundle is damaged; re-create it by signing again",
            ) from exc
        found = cert_identity(parsed.signing_certificate)
        policy = IdentityMatch(identity=self._identity, pattern=self._pattern, issuer=self._issuer)
        if shape.dsse is not None:
            payload_type, payload = self._verify(
                lambda: self._verifier.verify_dsse(parsed, policy), found
            )
            if payload_type != IN_TOTO_PAYLOAD_TYPE:
                raise VerificationError(
                    f"the DSSE payload type is {payload_type!r}, expected {IN_TOTO_PAYLOAD_TYPE!r}",
                    hint="rexec verifies in-toto Statements only",
                )
            if artifact is not None:
                _require_subject(payload, artifact)
            return Verified(
                signer=found.text(),
                payload_type=payload_type,
                payload=payload,
                tlog=f"checked against {self._root_label} (sigstore)",
            )
        if artifact is None:
            raise InputError(
                "this bundle signs a file directly (messageSignature): --artifact is required",
                hint="pass the signed file with --artifact FILE",
            )
        hashed = _hash_artifact(artifact)
        self._verify(lambda: self._verifier.verify_artifact(hashed, parsed, policy), found)
        return Verified(
            signer=found.text(),
            payload_type=None,
            payload=None,
            tlog=f"checked against {self._root_label} (sigstore)",
        )

    def _verify(self, check: Callable[[], Any], found: CertIdentity) -> Any:
        try:
            return check()
        except PolicyMismatch as exc:
            raise VerificationError(
                f"signer {found.text()} does not satisfy the policy: expected {self._expected()}",
                details=[sigstore_error_text(exc)],
                hint="check --identity/--identity-regexp and --issuer against the signer above",
            ) from exc
        except SigstoreVerificationError as exc:
            reason = sigstore_error_text(exc)
            raise VerificationError(
                f"keyless signature by {found.text()} does not verify: {reason}",
                details=[f"trusted root: {self._root_label}"],
                hint=_failure_hint(reason),
            ) from exc
        except SigstoreError as exc:
            raise VerificationError(
                f"keyless signature by {found.text()} does not verify: {sigstore_error_text(exc)}",
                details=[f"trusted root: {self._root_label}"],
            ) from exc


def _failure_hint(reason: str) -> str:
    if "certificate chain" in reason:
        return (
            "the signing certificate does not chain to this trusted root; for a private "
            "Sigstore instance pass its --trusted-root FILE"
        )
    if "SCT" in reason or "log entry" in reason or "SET" in reason:
        return "the certificate or log entry was not made by a log in this trusted root"
    return "the bundle or the signed content was changed after signing"


def _hash_artifact(artifact: Path) -> Hashed:
    try:
        digest = sha256_file(artifact, follow_links=True)
    except OSError as exc:
        raise InputError(
            f"{artifact}: cannot read the artifact ({exc.strerror})",
            hint="--artifact names the file the bundle signs",
        ) from exc
    return Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(digest))


def _require_subject(payload: bytes, artifact: Path) -> None:
    """The artifact's sha256 must be one of the (already verified) Statement's subjects."""
    try:
        digest = sha256_file(artifact, follow_links=True)
    except OSError as exc:
        raise InputError(
            f"{artifact}: cannot read the artifact ({exc.strerror})",
            hint="--artifact names a file the Statement lists as a subject",
        ) from exc
    try:
        statement = json.loads(payload)
        subjects = statement["subject"]
        digests = {s.get("digest", {}).get("sha256") for s in subjects if isinstance(s, dict)}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VerificationError(
            "the signed payload is not an in-toto Statement with a subject list"
        ) from exc
    if digest not in digests:
        raise MismatchError(
            f"{artifact}: sha256 {digest} is not a subject of the signed Statement",
            hint="the file changed after signing, or it is not an output of this run",
        )
