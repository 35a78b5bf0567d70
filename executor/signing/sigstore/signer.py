"""Keyless signing: a Fulcio certificate for an OIDC identity, the DSSE envelope over the
exact Statement bytes logged in Rekor, the result a Sigstore bundle v0.3."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import requests
from sigstore import oidc
from sigstore._internal.fulcio.client import FulcioClientError
from sigstore._internal.rekor import RekorClientError
from sigstore.dsse import Statement
from sigstore.errors import Error as SigstoreError
from sigstore.errors import VerificationError as SigstoreVerificationError
from sigstore.models import ClientTrustConfig
from sigstore.sign import SigningContext

from executor.errors import InfrastructureError, InputError
from executor.signing.bundle import parse_bundle
from executor.signing.sigstore._common import sigstore_error_text
from executor.signing.sigstore.tokens import (
    TOKEN_HELP,
    ambient_token,
    browser_token,
    parse_token,
    stdin_is_terminal,
    token_from_options_or_env,
)
from executor.signing.types import SignOptions


def _load_trust_config(path: Path | None) -> ClientTrustConfig:
    """The named ClientTrustConfig, or the public-good one (TUF, network)."""
    if path is None:
        try:
            return ClientTrustConfig.production()
        except (SigstoreError, requests.RequestException, OSError) as exc:
            raise InfrastructureError(
                "could not fetch the Sigstore public-good signing config from "
                f"https://tuf-repo-cdn.sigstore.dev: {sigstore_error_text(exc)}",
                hint="check network access, or pass --trust-config FILE for a private instance",
            ) from exc
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(
            f"{path}: cannot read the Sigstore trust config ({exc.strerror})",
            hint="--trust-config takes a ClientTrustConfig JSON file",
        ) from exc
    try:
        config = ClientTrustConfig.from_json(text)
        # Both properties validate their part; fail here, not halfway through signing.
        _ = config.trusted_root
        _ = config.signing_config
    except (SigstoreError, ValueError) as exc:
        raise InputError(
            f"{path}: not a valid Sigstore ClientTrustConfig: {sigstore_error_text(exc)}",
            hint=(
                "expected mediaType application/vnd.dev.sigstore.clienttrustconfig.v0.1+json "
                "with trustedRoot and signingConfig (caUrls, rekorTlogUrls)"
            ),
        ) from exc
    return config


def _failed_url(exc: BaseException) -> str | None:
    request = getattr(exc, "request", None)
    url = getattr(request, "url", None)
    if isinstance(url, str):
        return url
    cause = exc.__cause__ or exc.__context__
    return _failed_url(cause) if cause is not None else None


def _statement(payload: bytes) -> Statement:
    """sigstore's Statement keeps ``payload`` verbatim; it only validates the shape."""
    try:
        subjects = json.loads(payload).get("subject")
    except (ValueError, AttributeError):
        subjects = None
    if subjects == []:
        raise InputError(
            "the Statement has no subject, and Sigstore signs only Statements with at least one",
            hint="a run with no output files has nothing to attest keylessly; sign it with a key",
        )
    try:
        return Statement(payload)
    except SigstoreError as exc:
        first = sigstore_error_text(exc).splitlines()
        raise InputError(
            f"the payload is not an in-toto Statement v1 that Sigstore accepts: {first[0]}",
            details=first[1:3],
            hint="keyless signing takes the canonical JSON of an in-toto Statement v1",
        ) from exc


class KeylessSigner:
    """Signs Statements with a short-lived Fulcio certificate for an OIDC identity."""

    def __init__(
        self,
        *,
        context: SigningContext,
        token: oidc.IdentityToken,
        fulcio_url: str,
        rekor_url: str,
        refresh: Callable[[], oidc.IdentityToken] | None = None,
    ) -> None:
        self._context = context
        self._token = token
        self._fulcio_url = fulcio_url
        self._rekor_url = rekor_url
        self._refresh = refresh

    @classmethod
    def from_options(
        cls,
        options: SignOptions,
        *,
        isatty: Callable[[], bool] | None = None,
    ) -> KeylessSigner:
        """Resolve the token and trust config; nothing is fetched before it is needed.

        A token given explicitly or through the environment is parsed before
        the trust config is loaded, so a missing or expired token fails fast
        without touching the network. The pipeline calls this before the job
        runs; if the token has expired by the time the Statement is signed
        (OIDC tokens live minutes, training runs hours), ``sign_dsse`` resolves
        a fresh one the same way (a CI system mints a new one on request).
        """
        terminal = isatty or stdin_is_terminal
        token = token_from_options_or_env(options) or ambient_token()
        if token is None and not terminal():
            raise InputError("no OIDC identity token for keyless signing", hint=TOKEN_HELP)
        identity = parse_token(token) if token is not None else None
        config = _load_trust_config(options.trust_config)
        if identity is None:
            identity = parse_token(browser_token(config))

        def refresh() -> oidc.IdentityToken:
            again = token_from_options_or_env(options) or ambient_token()
            if again is None and terminal():
                again = browser_token(config)
            if again is None:
                raise InputError(
                    "the OIDC identity token expired before the run could be signed",
                    hint=TOKEN_HELP,
                )
            return parse_token(again)

        signing_config = config.signing_config
        try:
            context = SigningContext.from_trust_config(config)
            fulcio_url = signing_config.get_fulcio().url
            rekor_url = str(getattr(signing_config.get_tlogs()[0], "url", "?"))
        except (SigstoreError, ValueError) as exc:
            where = str(options.trust_config) if options.trust_config else "public-good config"
            raise InputError(
                f"{where}: cannot build a Sigstore signing context: {sigstore_error_text(exc)}",
                hint="the signing config needs one Fulcio CA URL and one Rekor log URL",
            ) from exc
        return cls(
            context=context,
            token=identity,
            fulcio_url=fulcio_url,
            rekor_url=rekor_url,
            refresh=refresh,
        )

    @property
    def public_key_pem(self) -> bytes | None:
        """Keyless signers have no long-lived key: the certificate is in the bundle."""
        return None

    @property
    def identity(self) -> str:
        """The identity the certificate will carry (from the token's claims)."""
        return self._token.identity

    def sign_dsse(self, payload: bytes) -> bytes:
        """Sign ``payload`` (in-toto Statement bytes) exactly as given; bundle v0.3 JSON."""
        statement = _statement(payload)
        if not self._token.in_validity_period():
            if self._refresh is None:
                raise InputError("the OIDC identity token has expired", hint=TOKEN_HELP)
            self._token = self._refresh()
        try:
            with self._context.signer(self._token, cache=True) as signer:
                bundle = signer.sign_dsse(statement)
        except FulcioClientError as exc:
            raise InfrastructureError(
                f"Fulcio at {self._fulcio_url} refused the certificate request: "
                f"{sigstore_error_text(exc)}",
                hint="check that the identity token is valid for this Fulcio instance",
            ) from exc
        except RekorClientError as exc:
            raise InfrastructureError(
                f"Rekor at {self._rekor_url} refused the log entry: {sigstore_error_text(exc)}"
            ) from exc
        except requests.RequestException as exc:
            url = _failed_url(exc) or f"{self._fulcio_url} / {self._rekor_url}"
            raise InfrastructureError(
                f"cannot reach the Sigstore service at {url}: {sigstore_error_text(exc)}",
                hint="check network access or the URLs in --trust-config",
            ) from exc
        except SigstoreVerificationError as exc:
            raise InfrastructureError(
                f"the certificate from Fulcio at {self._fulcio_url} does not verify against "
                f"the trust config: {sigstore_error_text(exc)}",
                hint="the trust config's trustedRoot (ctlogs, CAs) must belong to this instance",
            ) from exc
        except (SigstoreError, oidc.ExpiredIdentity) as exc:
            raise InfrastructureError(
                f"keyless signing failed: {sigstore_error_text(exc)}", hint=TOKEN_HELP
            ) from exc
        out = bundle.to_json().encode("utf-8")
        signed = parse_bundle(out, source="the new bundle").dsse
        if signed is None or signed.payload != payload:
            # sigstore must sign the bytes rexec wrote to statement.json, nothing else.
            raise InfrastructureError("sigstore returned a bundle whose payload is not the input")
        return out
