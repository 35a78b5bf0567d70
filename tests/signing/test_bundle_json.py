"""Bundle JSON parsing: accepted media types and clear errors for damaged bundles."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from executor.errors import InputError
from executor.signing.bundle import parse_bundle


def _dsse(media_type: str, **overrides: Any) -> bytes:
    doc: dict[str, Any] = {
        "mediaType": media_type,
        "verificationMaterial": {"publicKey": {"hint": "h"}},
        "dsseEnvelope": {
            "payload": base64.b64encode(b"{}").decode(),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": base64.b64encode(b"sig").decode()}],
        },
    }
    doc.update(overrides)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("media_type", "version"),
    [
        ("application/vnd.dev.sigstore.bundle+json;version=0.1", "0.1"),
        ("application/vnd.dev.sigstore.bundle+json;version=0.2", "0.2"),
        ("application/vnd.dev.sigstore.bundle+json;version=0.3", "0.3"),
        ("application/vnd.dev.sigstore.bundle.v0.3+json", "0.3"),
    ],
)
def test_known_media_types(media_type: str, version: str) -> None:
    parsed = parse_bundle(_dsse(media_type))
    assert parsed.version == version
    assert parsed.dsse is not None and parsed.dsse.payload == b"{}"
    assert parsed.dsse.signature == b"sig"
    assert parsed.key_hint == "h"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (_dsse("application/vnd.dev.sigstore.bundle.v0.4+json"), "mediaType"),
        (
            _dsse("application/vnd.dev.sigstore.bundle.v0.3+json", verificationMaterial=None),
            "verificationMaterial",
        ),
        (
            _dsse(
                "application/vnd.dev.sigstore.bundle.v0.3+json",
                dsseEnvelope={"payload": "!!", "payloadType": "t", "signatures": [{"sig": ""}]},
            ),
            "not valid base64",
        ),
        (
            _dsse(
                "application/vnd.dev.sigstore.bundle.v0.3+json",
                dsseEnvelope={"payload": "", "payloadType": "t", "signatures": []},
            ),
            "expected exactly 1",
        ),
        (
            json.dumps(
                {
                    "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                    "verificationMaterial": {},
                }
            ).encode(),
            "neither dsseEnvelope nor messageSignature",
        ),
    ],
)
def test_damaged_bundles_are_input_errors(data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_bundle(data, source="b.json")
    assert info.value.message.startswith("b.json")
