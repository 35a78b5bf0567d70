"""Shared fixtures for tests/signing: no test here may open a network socket.

Verification must work air-gapped, and signing tests must never reach a real
Sigstore instance by accident, so every connect is refused unless a test is
marked ``allow_loopback`` (stand-in servers on 127.0.0.1 only).
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from executor.canonical import canonical_json
from executor.signing import KeySigner, SignOptions, generate_keypair

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class NetworkForbidden(AssertionError):
    """A test in tests/signing tried to open a socket."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "allow_loopback: lets a tests/signing test connect to 127.0.0.1/::1 (stand-in servers)",
    )


def _host(address: Any) -> str | None:
    if isinstance(address, tuple) and address:
        return str(address[0])
    return None  # AF_UNIX paths and the like


@pytest.fixture(autouse=True)
def no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    loopback_ok = request.node.get_closest_marker("allow_loopback") is not None
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_create = socket.create_connection

    def allowed(address: Any) -> bool:
        return loopback_ok and _host(address) in LOOPBACK

    def connect(self: socket.socket, address: Any) -> None:
        if not allowed(address):
            raise NetworkForbidden(f"tests/signing may not connect to {address!r}")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not allowed(address):
            raise NetworkForbidden(f"tests/signing may not connect to {address!r}")
        return real_connect_ex(self, address)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        if not allowed(address):
            raise NetworkForbidden(f"tests/signing may not connect to {address!r}")
        return real_create(address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    yield


class Record:
    """A hand-built, key-signed run record in a temporary directory."""

    def __init__(self, root: Path, *, private_key: Path, public_key: Path, statement: bytes):
        self.root = root
        self.private_key = private_key
        self.public_key = public_key
        self.statement = statement


DEFAULT_OUTPUTS = {"model.bin": b"\x00weights\x01" * 50, "eval/metrics.json": b'{"acc": 0.9}\n'}


@pytest.fixture
def make_record(tmp_path: Path) -> Callable[..., Record]:
    """Build ``runs/<id>/`` the way docs/design.md lays it out, signed with a fresh key."""
    keys = tmp_path / "keys"
    private_key, public_key = keys / "signing.key", keys / "signing.pub"
    generate_keypair(private_key, public_key, password=None)
    signer = KeySigner.from_options(SignOptions(method="key", key_path=private_key))
    counter = iter(range(1000))

    def build(
        outputs: dict[str, bytes] | None = None,
        *,
        status: str = "succeeded",
        exit_code: int = 0,
        run_id: str = "20250101T000000Z-demo-abc123",
    ) -> Record:
        files = DEFAULT_OUTPUTS if outputs is None else outputs
        root = tmp_path / "runs" / f"{run_id}-{next(counter)}"
        for name, data in files.items():
            path = root / "outputs" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (root / "outputs").mkdir(parents=True, exist_ok=True)
        statement = {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [
                {"name": name, "digest": {"sha256": hashlib.sha256(data).hexdigest()}}
                for name, data in sorted(files.items())
            ],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {
                "runDetails": {
                    "metadata": {"invocationId": run_id},
                    # Where rexec's pipeline records how the job ended (executor/manifest.py).
                    "byproducts": [
                        {
                            "name": "exit-status",
                            "annotations": {"status": status, "exitCode": exit_code},
                        }
                    ],
                }
            },
        }
        payload = canonical_json(statement)
        (root / "statement.json").write_bytes(payload)
        (root / "statement.sigstore.json").write_bytes(signer.sign_dsse(payload))
        (root / "signing-key.pub").write_bytes(public_key.read_bytes())
        return Record(root, private_key=private_key, public_key=public_key, statement=payload)

    return build
