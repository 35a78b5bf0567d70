"""PAE bytes against examples worked out by hand from the DSSE v1 protocol."""

from __future__ import annotations

from executor.signing.dsse import pae


def test_pae_matches_the_dsse_spec_example() -> None:
    # The DSSE protocol document's own example, written out character by character.
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    # "é" is two bytes in UTF-8 and "€" is three: the lengths are byte counts.
    assert pae("t/é", "€".encode()) == b"DSSEv1 4 t/\xc3\xa9 3 \xe2\x82\xac"


def test_pae_in_toto_empty_payload() -> None:
    # len("application/vnd.in-toto+json") == 28, counted by hand.
    assert pae("application/vnd.in-toto+json", b"") == b"DSSEv1 28 application/vnd.in-toto+json 0 "
