"""A test-only Sigstore instance (Fulcio + Rekor v1) served on 127.0.0.1.

It lets the real ``sigstore`` client sign end to end with no network: an
OIDC issuer key mints identity tokens (PyJWT), Fulcio checks them and issues
short-lived certificates with an embedded SCT, Rekor logs the entry in an RFC
6962 Merkle tree. ``trusted_root()`` and ``client_trust_config()`` describe
this instance in the formats sigstore reads (``--trusted-root`` and
``--trust-config``). No timestamp authority: the signing config lists none,
which sigstore 4.x allows, and Rekor v1's SET is the signed time.

Use it as a context manager; every key is generated fresh per instance.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from tests.sigstore_standin.fulcio import FulcioRefusal, StandInFulcio, key_id, spki_der
from tests.sigstore_standin.rekor import RekorRefusal, StandInRekor

__all__ = ["DEFAULT_ISSUER", "StandIn"]

DEFAULT_ISSUER = "https://oidc.standin.rexec.test"

Route = Callable[[dict[str, Any], dict[str, str]], tuple[int, dict[str, Any]]]


class _Server:
    """One ThreadingHTTPServer on an ephemeral loopback port, POST routes only."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.requests.append(self.path)
                route = routes.get(self.path.split("?")[0])
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._answer(400, {"code": 400, "message": "body is not JSON"})
                    return
                if route is None:
                    self._answer(404, {"code": 404, "message": f"no route {self.path}"})
                    return
                status, doc = route(body, dict(self.headers))
                self._answer(status, doc)

            def _answer(self, status: int, doc: dict[str, Any]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest output clean

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class StandIn:
    """Fulcio and Rekor on loopback, plus the configs and tokens to use them."""

    def __init__(self, *, issuer: str = DEFAULT_ISSUER) -> None:
        self.issuer = issuer
        self._oidc_key = ec.generate_private_key(ec.SECP256R1())
        self.fulcio = StandInFulcio(oidc_issuer=issuer, oidc_key=self._oidc_key.public_key())
        self.rekor = StandInRekor()
        self._fulcio_server = _Server({"/api/v2/signingCert": self._signing_cert})
        self._rekor_server = _Server({"/api/v1/log/entries": self._log_entries})

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> StandIn:
        self._fulcio_server.start()
        self._rekor_server.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._fulcio_server.stop()
        self._rekor_server.stop()

    @property
    def fulcio_url(self) -> str:
        return self._fulcio_server.url

    @property
    def rekor_url(self) -> str:
        return self._rekor_server.url

    @property
    def requests(self) -> list[str]:
        """Paths requested so far, Fulcio's then Rekor's."""
        return [*self._fulcio_server.requests, *self._rekor_server.requests]

    # ---------------------------------------------------------------- routes

    def _signing_cert(
        self, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        try:
            return 201, self.fulcio.sign_request(body, headers.get("Authorization"))
        except FulcioRefusal as exc:
            return exc.status, {"code": exc.status, "message": str(exc)}

    def _log_entries(
        self, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        try:
            return 201, self.rekor.add(body)
        except RekorRefusal as exc:
            return exc.status, {"code": exc.status, "message": str(exc)}

    # ---------------------------------------------------------------- tokens

    def token(
        self,
        *,
        email: str | None = "alice@example.com",
        subject: str = "alice",
        lifetime_s: int = 300,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> str:
        """An OIDC identity token from this instance's issuer (ES256, audience sigstore)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": "sigstore",
            "sub": subject,
            "iat": now - 1,
            "nbf": now - 1,
            "exp": now + lifetime_s,
        }
        if email is not None:
            claims |= {"email": email, "email_verified": True}
        return jwt.encode(claims, key or self._oidc_key, algorithm="ES256")

    # ---------------------------------------------------------------- configs

    def trusted_root(self) -> dict[str, Any]:
        """This instance's roots of trust, as a Sigstore TrustedRoot v0.1 document."""
        start = {"start": _iso(self.fulcio.valid_from)}

        def log(url: str, key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": _b64(spki_der(key)),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": start,
                },
                "logId": {"keyId": _b64(key_id(key))},
            }

        from cryptography.hazmat.primitives.serialization import Encoding

        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(self.rekor_url, self.rekor.key.public_key())],
            "certificateAuthorities": [
                {
                    "subject": {
                        "organization": "rexec-standin",
                        "commonName": "rexec-standin-fulcio",
                    },
                    "uri": self.fulcio_url,
                    "certChain": {
                        "certificates": [
                            {"rawBytes": _b64(self.fulcio.root.public_bytes(Encoding.DER))}
                        ]
                    },
                    "validFor": start,
                }
            ],
            "ctlogs": [log("http://ctfe.standin.rexec.test", self.fulcio.ct_key.public_key())],
            "timestampAuthorities": [],
        }

    def signing_config(self) -> dict[str, Any]:
        """Where to sign: this Fulcio and this Rekor (v1), no timestamp authority."""
        start = {"start": _iso(self.fulcio.valid_from)}

        def service(url: str) -> dict[str, Any]:
            return {
                "url": url,
                "majorApiVersion": 1,
                "validFor": start,
                "operator": "rexec-standin",
            }

        return {
            "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
            "caUrls": [service(self.fulcio_url)],
            "oidcUrls": [],
            "rekorTlogUrls": [service(self.rekor_url)],
            "tsaUrls": [],
            "rekorTlogConfig": {"selector": "ANY"},
            "tsaConfig": {"selector": "ANY"},
        }

    def client_trust_config(self) -> dict[str, Any]:
        return {
            "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
            "trustedRoot": self.trusted_root(),
            "signingConfig": self.signing_config(),
        }

    def write_configs(self, directory: Path) -> tuple[Path, Path]:
        """Write ``trusted_root.json`` and ``trust_config.json``; return their paths."""
        root = directory / "trusted_root.json"
        config = directory / "trust_config.json"
        root.write_text(json.dumps(self.trusted_root(), indent=2))
        config.write_text(json.dumps(self.client_trust_config(), indent=2))
        return root, config
