"""Keyless Sigstore signing and identity-based verification (the face of ``sigstore/``).

This folder is the only place that imports ``sigstore`` (4.x), so the rest of
rexec never pays its import cost or its network behaviour unless keyless
signing or verification is actually asked for: ``tokens`` (where an identity
token comes from), ``signer``, ``policy`` and ``identity`` (verification),
``tlog`` (log entries of key-signed bundles).

Signing: a short-lived certificate for an OIDC identity comes from Fulcio, the
DSSE envelope over the exact Statement bytes rexec wrote goes into Rekor, and
the result is a Sigstore bundle v0.3. Where the identity token comes from is
decided here, in a fixed order (explicit, environment, ambient CI credential,
browser only on a terminal), so a headless run never hangs on a prompt.

Verification never touches the network: it checks against a trusted root file
(the public-good root shipped in ``executor/data/trusted_root.json`` unless
the caller pins another), and the policy is "this identity, from this OIDC
issuer". sigstore's own error texts are kept, but rexec's message says which
identity the certificate carries and which one the policy expected.
"""

from __future__ import annotations

from pathlib import Path

import requests
from sigstore.errors import Error as SigstoreError

from executor.errors import InfrastructureError
from executor.signing.sigstore._common import shipped_trusted_root, sigstore_error_text
from executor.signing.sigstore.policy import KeylessPolicy
from executor.signing.sigstore.signer import KeylessSigner
from executor.signing.sigstore.tlog import verify_key_log_entries
from executor.signing.sigstore.tokens import TOKEN_ENV_VARS

__all__ = [
    "TOKEN_ENV_VARS",
    "KeylessPolicy",
    "KeylessSigner",
    "refresh_trust_root",
    "shipped_trusted_root",
    "verify_key_log_entries",
]


def refresh_trust_root() -> Path:
    """Fetch the current public-good trusted root through TUF (network, explicit only)."""
    from sigstore._internal.tuf import DEFAULT_TUF_URL, TrustUpdater

    try:
        return Path(TrustUpdater(DEFAULT_TUF_URL, offline=False).get_trusted_root_path())
    except (SigstoreError, requests.RequestException, OSError) as exc:
        raise InfrastructureError(
            f"could not refresh the Sigstore trusted root from {DEFAULT_TUF_URL}: "
            f"{sigstore_error_text(exc)}",
            hint="check network access, or pin a root with --trusted-root FILE",
        ) from exc
