"""Where a keyless signer's identity token comes from, in a fixed order: explicit,
environment, ambient CI credential, then a browser only on a terminal, so a
headless run never hangs on a prompt.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import requests
from sigstore import oidc
from sigstore.errors import Error as SigstoreError
from sigstore.models import ClientTrustConfig

from executor.errors import InfrastructureError, InputError
from executor.signing.sigstore._common import sigstore_error_text
from executor.signing.types import SignOptions

# Checked in this order; the first non-empty one wins.
TOKEN_ENV_VARS = ("REXEC_IDENTITY_TOKEN", "SIGSTORE_ID_TOKEN")


TOKEN_HELP = (
    "give an OIDC identity token in one of three ways: --identity-token TOKEN "
    "(or env REXEC_IDENTITY_TOKEN / SIGSTORE_ID_TOKEN); run in a CI system with "
    "ambient OIDC credentials (e.g. GitHub Actions with 'permissions: id-token: write'); "
    "or run from a terminal to log in through the browser"
)


@dataclass(frozen=True)
class Token:
    """A resolved identity token and where it came from (for error messages)."""

    raw: str
    source: str


def token_from_options_or_env(options: SignOptions) -> Token | None:
    """A token given on the command line or in the environment, if any."""
    if options.identity_token:
        return Token(options.identity_token, "--identity-token")
    for name in TOKEN_ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return Token(value, f"env {name}")
    return None


def ambient_token() -> Token | None:
    """A token from the CI's ambient credentials (GitHub Actions, GCP, ...), if any."""
    try:
        raw = oidc.detect_credential()
    except SigstoreError as exc:
        raise InfrastructureError(
            f"ambient OIDC credential detection failed: {sigstore_error_text(exc)}",
            hint=TOKEN_HELP,
        ) from exc
    return Token(raw, "ambient CI credential") if raw else None


def browser_token(config: ClientTrustConfig) -> Token:
    """A token through the browser flow; only ever asked for on a terminal."""
    try:
        issuer = oidc.Issuer(config.signing_config.get_oidc_url())
        return Token(str(issuer.identity_token()), "browser login")
    except (SigstoreError, oidc.IssuerError, requests.RequestException) as exc:
        raise InfrastructureError(
            f"interactive OIDC login failed: {sigstore_error_text(exc)}", hint=TOKEN_HELP
        ) from exc


def parse_token(token: Token) -> oidc.IdentityToken:
    """Parse a token, or a clear error saying which source gave a bad one."""
    try:
        return oidc.IdentityToken(token.raw)
    except SigstoreError as exc:
        cause = exc.__cause__
        detail = f" ({cause})" if cause is not None else ""
        raise InputError(
            f"identity token from {token.source}: {exc}{detail}",
            hint=(
                "the token must be an unexpired OIDC JWT with audience 'sigstore' and "
                "iss, sub, iat, exp claims; " + TOKEN_HELP
            ),
        ) from exc


def stdin_is_terminal() -> bool:
    """True when a person could answer a prompt (tests replace stdin)."""
    return sys.stdin is not None and sys.stdin.isatty()
