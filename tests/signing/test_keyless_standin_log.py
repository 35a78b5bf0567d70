"""The stand-in's own crypto, checked against values computed here from the RFCs.

If the stand-in were wrong in a way the sigstore client happened to accept,
the end-to-end tests would prove little; these pin its Merkle tree (RFC 6962
section 2.1) and checkpoint format (a signed note) independently.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.sigstore_standin.fulcio import der_utf8string
from tests.sigstore_standin.rekor import StandInRekor, inclusion_path, leaf_hash, merkle_root


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


LEAVES = [_h(b"\x00" + bytes([i])) for i in range(5)]  # leaf hashes of 1-byte entries


def test_leaf_hash_has_the_zero_prefix() -> None:
    assert leaf_hash(b"x") == _h(b"\x00x")


def test_root_of_three_and_five_leaves() -> None:
    h01 = _h(b"\x01" + LEAVES[0] + LEAVES[1])
    assert merkle_root(LEAVES[:3]) == _h(b"\x01" + h01 + LEAVES[2])
    h23 = _h(b"\x01" + LEAVES[2] + LEAVES[3])
    h0123 = _h(b"\x01" + h01 + h23)
    assert merkle_root(LEAVES) == _h(b"\x01" + h0123 + LEAVES[4])


def test_audit_paths_match_rfc6962_examples() -> None:
    h01 = _h(b"\x01" + LEAVES[0] + LEAVES[1])
    h23 = _h(b"\x01" + LEAVES[2] + LEAVES[3])
    assert inclusion_path(0, LEAVES[:3]) == [LEAVES[1], LEAVES[2]]
    assert inclusion_path(2, LEAVES[:3]) == [h01]
    assert inclusion_path(3, LEAVES) == [LEAVES[2], h01, LEAVES[4]]
    assert inclusion_path(4, LEAVES) == [_h(b"\x01" + h01 + h23)]
    assert inclusion_path(0, LEAVES[:1]) == []


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13])
def test_every_audit_path_leads_to_the_root(size: int) -> None:
    """The verification algorithm of RFC 9162 section 2.1.3.2, written out here."""
    leaves = [_h(bytes([i])) for i in range(size)]
    for index in range(size):
        fn, sn, r = index, size - 1, leaves[index]
        for p in inclusion_path(index, leaves):
            assert sn != 0
            if fn & 1 or fn == sn:
                r = _h(b"\x01" + p + r)
                while not fn & 1 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
            else:
                r = _h(b"\x01" + r + p)
            fn, sn = fn >> 1, sn >> 1
        assert sn == 0 and r == merkle_root(leaves), (size, index)


def test_checkpoint_is_a_signed_note_by_the_log_key() -> None:
    rekor = StandInRekor()
    root = _h(b"root")
    text = rekor.checkpoint(7, root)
    note, sig_block = text.split("\n\n")
    origin, size, root_b64 = note.split("\n")
    assert origin.startswith("rexec-standin-rekor - ") and size == "7"
    assert base64.b64decode(root_b64) == root
    assert sig_block.startswith("\u2014 rexec-standin-rekor ") and sig_block.endswith("\n")
    raw = base64.b64decode(sig_block.split(" ")[2])
    spki = rekor.key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    spki_hash = hashlib.sha256(spki).digest()
    assert raw[:4] == spki_hash[:4]
    rekor.key.public_key().verify(raw[4:], (note + "\n").encode(), ec.ECDSA(hashes.SHA256()))


def test_der_utf8string() -> None:
    assert der_utf8string("ab") == b"\x0c\x02ab"
    long = "x" * 200
    assert der_utf8string(long) == b"\x0c\x81\xc8" + long.encode()
