"""Keyless Sigstore signing and identity-based verification.

This is the only module that imports ``sigstore`` (4.x), so the rest of rexec
never pays its import cost or its network behaviour unless keyless signing or
verification is actually asked for.

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

import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat import asn1
from sigstore import oidc
from sigstore._internal.fulcio.client import FulcioClientError
from sigstore._internal.rekor import RekorClientError
from sigstore.dsse import Statement
from sigstore.errors import Error as SigstoreError
from sigstore.errors import VerificationError as SigstoreVerificationError
from sigstore.hashes import Hashed
from sigstore.models import Bundle, ClientTrustConfig, TrustedRoot
from sigstore.sign import SigningContext
from sigstore.verify import Verifier
from sigstore_models.common.v1 import HashAlgorithm

from executor.errors import InfrastructureError, InputError, MismatchError, VerificationError
from executor.safeio import sha256_file
from executor.signing.bundle import parse_bundle
from executor.signing.types import IN_TOTO_PAYLOAD_TYPE, SignOptions, Verified

__all__ = [
    "TOKEN_ENV_VARS",
    "KeylessPolicy",
    "KeylessSigner",
    "refresh_trust_root",
    "shipped_trusted_root",
]

# Checked in this order; the first non-empty one wins.
TOKEN_ENV_VARS = ("REXEC_IDENTITY_TOKEN", "SIGSTORE_ID_TOKEN")

_OIDC_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")  # raw UTF-8 bytes
_OIDC_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")  # DER UTF8String
_SIGSTORE_OTHERNAME = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")

_TOKEN_HELP = (
    "give an OIDC identity token in one of three ways: --identity-token TOKEN "
    "(or env REXEC_IDENTITY_TOKEN / SIGSTORE_ID_TOKEN); run in a CI system with "
    "ambient OIDC credentials (e.g. GitHub Actions with 'permissions: id-token: write'); "
    "or run from a terminal to log in through the browser"
)


def shipped_trusted_root() -> Path:
    """The public-good Sigstore trusted root that ships inside rexec."""
    return Path(str(resources.files("executor.data").joinpath("trusted_root.json")))


# --------------------------------------------------------------------------- signing


def _sigstore_error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


@dataclass(frozen=True)
class _Token:
    """A resolved identity token and where it came from (for error messages)."""

    raw: str
    source: str


def _token_from_options_or_env(options: SignOptions) -> _Token | None:
    if options.identity_token:
        return _Token(options.identity_token, "--identity-token")
    for name in TOKEN_ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return _Token(value, f"env {name}")
    return None


def _ambient_token() -> _Token | None:
    try:
        raw = oidc.detect_credential()
    except SigstoreError as exc:
        raise InfrastructureError(
            f"ambient OIDC credential detection failed: {_sigstore_error_text(exc)}",
            hint=_TOKEN_HELP,
        ) from exc
    return _Token(raw, "ambient CI credential") if raw else None


def _load_trust_config(path: Path | None) -> ClientTrustConfig:
    """The named ClientTrustConfig, or the public-good one (TUF, network)."""
    if path is None:
        try:
            return ClientTrustConfig.production()
        except (SigstoreError, requests.RequestException, OSError) as exc:
            raise InfrastructureError(
                "could not fetch the Sigstore public-good signing config from "
                f"https://tuf-repo-cdn.sigstore.dev: {_sigstore_error_text(exc)}",
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
            f"{path}: not a valid Sigstore ClientTrustConfig: {_sigstore_error_text(exc)}",
            hint=(
                "expected mediaType application/vnd.dev.sigstore.clienttrustconfig.v0.1+json "
                "with trustedRoot and signingConfig (caUrls, rekorTlogUrls)"
            ),
        ) from exc
    return config


def _browser_token(config: ClientTrustConfig) -> _Token:
    try:
        issuer = oidc.Issuer(config.signing_config.get_oidc_url())
        return _Token(str(issuer.identity_token()), "browser login")
    except (SigstoreError, oidc.IssuerError, requests.RequestException) as exc:
        raise InfrastructureError(
            f"interactive OIDC login failed: {_sigstore_error_text(exc)}", hint=_TOKEN_HELP
        ) from exc


def _parse_token(token: _Token) -> oidc.IdentityToken:
    try:
        return oidc.IdentityToken(token.raw)
    except SigstoreError as exc:
        cause = exc.__cause__
        detail = f" ({cause})" if cause is not None else ""
        raise InputError(
            f"identity token from {token.source}: {exc}{detail}",
            hint=(
                "the token must be an unexpired OIDC JWT with audience 'sigstore' and "
                "iss, sub, iat, exp claims; " + _TOKEN_HELP
            ),
        ) from exc


def _stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


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
        first = _sigstore_error_text(exc).splitlines()
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
        terminal = isatty or _stdin_is_terminal
        token = _token_from_options_or_env(options) or _ambient_token()
        if token is None and not terminal():
            raise InputError("no OIDC identity token for keyless signing", hint=_TOKEN_HELP)
        identity = _parse_token(token) if token is not None else None
        config = _load_trust_config(options.trust_config)
        if identity is None:
            identity = _parse_token(_browser_token(config))

        def refresh() -> oidc.IdentityToken:
            again = _token_from_options_or_env(options) or _ambient_token()
            if again is None and terminal():
                again = _browser_token(config)
            if again is None:
                raise InputError(
                    "the OIDC identity token expired before the run could be signed",
                    hint=_TOKEN_HELP,
                )
            return _parse_token(again)

        signing_config = config.signing_config
        try:
            context = SigningContext.from_trust_config(config)
            fulcio_url = signing_config.get_fulcio().url
            rekor_url = str(getattr(signing_config.get_tlogs()[0], "url", "?"))
        except (SigstoreError, ValueError) as exc:
            where = str(options.trust_config) if options.trust_config else "public-good config"
            raise InputError(
                f"{where}: cannot build a Sigstore signing context: {_sigstore_error_text(exc)}",
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
                raise InputError("the OIDC identity token has expired", hint=_TOKEN_HELP)
            self._token = self._refresh()
        try:
            with self._context.signer(self._token, cache=True) as signer:
                bundle = signer.sign_dsse(statement)
        except FulcioClientError as exc:
            raise InfrastructureError(
                f"Fulcio at {self._fulcio_url} refused the certificate request: "
                f"{_sigstore_error_text(exc)}",
                hint="check that the identity token is valid for this Fulcio instance",
            ) from exc
        except RekorClientError as exc:
            raise InfrastructureError(
                f"Rekor at {self._rekor_url} refused the log entry: {_sigstore_error_text(exc)}"
            ) from exc
        except requests.RequestException as exc:
            url = _failed_url(exc) or f"{self._fulcio_url} / {self._rekor_url}"
            raise InfrastructureError(
                f"cannot reach the Sigstore service at {url}: {_sigstore_error_text(exc)}",
                hint="check network access or the URLs in --trust-config",
            ) from exc
        except SigstoreVerificationError as exc:
            raise InfrastructureError(
                f"the certificate from Fulcio at {self._fulcio_url} does not verify against "
                f"the trust config: {_sigstore_error_text(exc)}",
                hint="the trust config's trustedRoot (ctlogs, CAs) must belong to this instance",
            ) from exc
        except (SigstoreError, oidc.ExpiredIdentity) as exc:
            raise InfrastructureError(
                f"keyless signing failed: {_sigstore_error_text(exc)}", hint=_TOKEN_HELP
            ) from exc
        out = bundle.to_json().encode("utf-8")
        signed = parse_bundle(out, source="the new bundle").dsse
        if signed is None or signed.payload != payload:
            # sigstore must sign the bytes rexec wrote to statement.json, nothing else.
            raise InfrastructureError("sigstore returned a bundle whose payload is not the input")
        return out


# ---------------------------------------------------------------------- verification


@dataclass(frozen=True)
class CertIdentity:
    """What a Fulcio certificate says about who signed."""

    sans: tuple[str, ...]
    issuer: str | None

    def text(self) -> str:
        who = ", ".join(self.sans) if self.sans else "(no identity)"
        return f"{who} (issuer {self.issuer or 'unknown'})"


def cert_identity(cert: x509.Certificate) -> CertIdentity:
    """SANs (email, URI, Sigstore othername) and the OIDC issuer of a signing certificate."""
    sans: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans += san.get_values_for_type(x509.RFC822Name)
        sans += san.get_values_for_type(x509.UniformResourceIdentifier)
        sans += [
            on.value.decode("utf-8", "replace")
            for on in san.get_values_for_type(x509.OtherName)
            if on.type_id == _SIGSTORE_OTHERNAME
        ]
    except x509.ExtensionNotFound:
        pass
    return CertIdentity(sans=tuple(sans), issuer=_cert_issuer(cert))


def _cert_issuer(cert: x509.Certificate) -> str | None:
    for ext in cert.extensions:
        if not isinstance(ext.value, x509.UnrecognizedExtension):
            continue
        if ext.oid == _OIDC_ISSUER_V2:
            try:
                return str(asn1.decode_der(str, ext.value.value))
            except ValueError:
                continue
    for ext in cert.extensions:
        if ext.oid == _OIDC_ISSUER_V1 and isinstance(ext.value, x509.UnrecognizedExtension):
            return ext.value.value.decode("utf-8", "replace")
    return None


class _PolicyMismatch(SigstoreVerificationError):
    """The certificate is valid but names someone the policy does not accept."""


class _IdentityMatch:
    """sigstore VerificationPolicy: issuer equals, and a SAN equals or fully matches.

    sigstore 4.x has an exact-identity policy only; the regular expression
    form (cosign's ``--certificate-identity-regexp``) is this small class.
    Matching is ``re.fullmatch`` so ``.*`` has to be written out: a pattern
    never accepts an identity merely because it contains a match.
    """

    def __init__(self, *, identity: str | None, pattern: re.Pattern[str] | None, issuer: str):
        self._identity = identity
        self._pattern = pattern
        self._issuer = issuer

    def verify(self, cert: x509.Certificate) -> None:
        found = cert_identity(cert)
        if found.issuer != self._issuer:
            raise _PolicyMismatch(
                f"certificate issuer is {found.issuer!r}, expected {self._issuer!r}"
            )
        if self._pattern is not None:
            ok = any(self._pattern.fullmatch(s) for s in found.sans)
        else:
            ok = self._identity in found.sans
        if not ok:
            raise _PolicyMismatch(f"certificate identity {list(found.sans)} does not match")


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
        self._verifier = Verifier(trusted_root=self._load_root(self._root_path))

    @staticmethod
    def _load_root(path: Path) -> TrustedRoot:
        try:
            return TrustedRoot.from_file(str(path))
        except OSError as exc:
            raise InputError(
                f"{path}: cannot read the Sigstore trusted root ({exc.strerror})",
                hint="--trusted-root takes a trusted_root.json file",
            ) from exc
        except (SigstoreError, ValueError) as exc:
            raise InputError(
                f"{path}: not a valid Sigstore trusted root: {_sigstore_error_text(exc)}",
                hint="expected mediaType application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            ) from exc

    def _expected(self) -> str:
        who = (
            f"identity {self._identity!r}"
            if self._pattern is None
            else (f"an identity matching /{self._pattern.pattern}/")
        )
        return f"{who} (issuer {self._issuer})"

    def describe(self) -> str:
        return f"keyless: {self._expected()}, trusted root: {self._root_label}"

    def verify_bundle(self, bundle: bytes, *, artifact: Path | None = None) -> Verified:
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
                f"the Sigstore bundle is malformed: {_sigstore_error_text(exc)}",
                hint="the bundle is damaged; re-create it by signing again",
            ) from exc
        found = cert_identity(parsed.signing_certificate)
        policy = _IdentityMatch(identity=self._identity, pattern=self._pattern, issuer=self._issuer)
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
        except _PolicyMismatch as exc:
            raise VerificationError(
                f"signer {found.text()} does not satisfy the policy: expected {self._expected()}",
                details=[_sigstore_error_text(exc)],
                hint="check --identity/--identity-regexp and --issuer against the signer above",
            ) from exc
        except SigstoreVerificationError as exc:
            reason = _sigstore_error_text(exc)
            raise VerificationError(
                f"keyless signature by {found.text()} does not verify: {reason}",
                details=[f"trusted root: {self._root_label}"],
                hint=_failure_hint(reason),
            ) from exc
        except SigstoreError as exc:
            raise VerificationError(
                f"keyless signature by {found.text()} does not verify: {_sigstore_error_text(exc)}",
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


def refresh_trust_root() -> Path:
    """Fetch the current public-good trusted root through TUF (network, explicit only)."""
    from sigstore._internal.tuf import DEFAULT_TUF_URL, TrustUpdater

    try:
        return Path(TrustUpdater(DEFAULT_TUF_URL, offline=False).get_trusted_root_path())
    except (SigstoreError, requests.RequestException, OSError) as exc:
        raise InfrastructureError(
            f"could not refresh the Sigstore trusted root from {DEFAULT_TUF_URL}: "
            f"{_sigstore_error_text(exc)}",
            hint="check network access, or pin a root with --trusted-root FILE",
        ) from exc


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
    root = KeylessPolicy._load_root(trusted_root)
    keyring = root.rekor_keyring(KeyringPurpose.VERIFY)
    indexes = []
    for number, raw in enumerate(entries):
        where = f"tlogEntries[{number}]"
        try:
            entry = TransparencyLogEntry(EntryModel.from_json(json.dumps(raw)))
            entry._verify(keyring)
        except (SigstoreError, ValueError, KeyError, TypeError) as exc:
            raise VerificationError(
                f"{where}: the transparency-log entry does not verify: {_sigstore_error_text(exc)}",
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
