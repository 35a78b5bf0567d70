"""Where KeylessSigner gets its identity token, and what fails before any network use.

All tests run under tests/signing's no-network guard: resolving a token and
loading a trust config must not open a connection; only signing does.
The tokens are unsigned-by-anyone-trusted JWTs: the client never verifies
them (Fulcio does), it only reads their claims.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sigstore import oidc

from executor.errors import InputError
from executor.signing.sigstore import TOKEN_ENV_VARS, KeylessSigner, shipped_trusted_root
from executor.signing.types import SignOptions

ISSUER = "https://issuer.token-tests.rexec.test"  # not a sigstore-known issuer: identity = sub
_KEY = ec.generate_private_key(ec.SECP256R1())


def _token(sub: str, *, exp_in: int = 300, aud: str = "sigstore") -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": aud, "sub": sub, "iat": now, "exp": now + exp_in}
    return jwt.encode(claims, _KEY, algorithm="ES256")


@pytest.fixture
def trust_config(tmp_path: Path) -> Path:
    """A ClientTrustConfig whose services are unreachable: nothing here may call them."""
    start = {"start": "2020-01-01T00:00:00Z"}

    def service(url: str) -> dict[str, Any]:
        return {"url": url, "majorApiVersion": 1, "validFor": start, "operator": "tests"}

    doc = {
        "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
        "trustedRoot": json.loads(shipped_trusted_root().read_text()),
        "signingConfig": {
            "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
            "caUrls": [service("http://192.0.2.1:9")],
            "oidcUrls": [service("http://192.0.2.1:9/auth")],
            "rekorTlogUrls": [service("http://192.0.2.1:9")],
            "tsaUrls": [],
            "rekorTlogConfig": {"selector": "ANY"},
            "tsaConfig": {"selector": "ANY"},
        },
    }
    path = tmp_path / "trust_config.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TOKEN_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(oidc, "detect_credential", lambda *a, **k: None)


def _from(options: SignOptions, *, tty: bool = False) -> KeylessSigner:
    return KeylessSigner.from_options(options, isatty=lambda: tty)


def test_explicit_token_wins_over_environment(
    trust_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REXEC_IDENTITY_TOKEN", _token("from-env"))
    options = SignOptions(
        method="sigstore", identity_token=_token("explicit"), trust_config=trust_config
    )
    assert _from(options).identity == "explicit"


def test_rexec_env_var_before_sigstore_env_var(
    trust_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", _token("sigstore-env"))
    options = SignOptions(method="sigstore", trust_config=trust_config)
    assert _from(options).identity == "sigstore-env"
    monkeypatch.setenv("REXEC_IDENTITY_TOKEN", _token("rexec-env"))
    assert _from(options).identity == "rexec-env"


def test_environment_before_ambient_credentials(
    trust_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def ambient(*args: Any, **kwargs: Any) -> str:
        calls.append("ambient")
        return _token("ambient")

    monkeypatch.setattr(oidc, "detect_credential", ambient)
    options = SignOptions(method="sigstore", trust_config=trust_config)
    assert _from(options).identity == "ambient"
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", _token("env"))
    calls.clear()
    assert _from(options).identity == "env"
    assert calls == []  # not even asked once a token was found


def test_browser_flow_only_on_a_terminal(
    trust_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logins: list[str] = []

    class FakeIssuer:
        def __init__(self, url: str) -> None:
            logins.append(url)

        def identity_token(self) -> oidc.IdentityToken:
            return oidc.IdentityToken(_token("browser"))

    monkeypatch.setattr(oidc, "Issuer", FakeIssuer)
    options = SignOptions(method="sigstore", trust_config=trust_config)
    assert _from(options, tty=True).identity == "browser"
    assert logins == ["http://192.0.2.1:9/auth"]  # the signing config's OIDC URL

    logins.clear()
    with pytest.raises(InputError) as info:
        _from(options, tty=False)
    assert logins == []
    hint = info.value.hint or ""
    # The three ways to provide a token are all named.
    assert "--identity-token" in hint and "REXEC_IDENTITY_TOKEN" in hint
    assert "ambient" in hint and "browser" in hint


def test_missing_token_fails_before_loading_the_public_good_config() -> None:
    # trust_config=None would mean TUF over the network; the missing token stops us first
    # (the no-network guard would turn any connection into a test failure).
    with pytest.raises(InputError, match="no OIDC identity token"):
        _from(SignOptions(method="sigstore"))


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-a-jwt", "malformed"),
        (_token("old", exp_in=-3600), "malformed"),  # PyJWT rejects the expired exp claim
        (_token("x", aud="someone-else"), "malformed"),
    ],
)
def test_bad_tokens_are_input_errors_naming_the_source(
    trust_config: Path, monkeypatch: pytest.MonkeyPatch, token: str, reason: str
) -> None:
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", token)
    with pytest.raises(InputError) as info:
        _from(SignOptions(method="sigstore", trust_config=trust_config))
    assert "env SIGSTORE_ID_TOKEN" in info.value.message
    assert reason in info.value.message


def test_unreadable_or_invalid_trust_config_is_input_error(tmp_path: Path) -> None:
    options = SignOptions(
        method="sigstore", identity_token=_token("x"), trust_config=tmp_path / "missing.json"
    )
    with pytest.raises(InputError, match=r"missing\.json"):
        _from(options)
    bad = tmp_path / "bad.json"
    bad.write_text('{"mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json"}')
    with pytest.raises(InputError, match=r"bad\.json"):
        _from(SignOptions(method="sigstore", identity_token=_token("x"), trust_config=bad))


def test_statement_without_subjects_fails_before_any_request(trust_config: Path) -> None:
    signer = _from(
        SignOptions(method="sigstore", identity_token=_token("x"), trust_config=trust_config)
    )
    empty = json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [],
            "predicateType": "p",
            "predicate": {},
        }
    ).encode()
    with pytest.raises(InputError, match="no subject"):
        signer.sign_dsse(empty)


def test_keyless_signer_has_no_public_key(trust_config: Path) -> None:
    signer = _from(
        SignOptions(method="sigstore", identity_token=_token("x"), trust_config=trust_config)
    )
    assert signer.public_key_pem is None
