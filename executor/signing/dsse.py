"""DSSE pre-authentication encoding (PAE).

A DSSE signature never covers the payload alone: it covers the payload bound
to its type, so a signature over one kind of document can never be replayed
as another. Both signing and verification go through :func:`pae`, so the two
cannot drift apart.
"""

from __future__ import annotations

from executor.signing.types import IN_TOTO_PAYLOAD_TYPE

__all__ = ["IN_TOTO_PAYLOAD_TYPE", "pae"]


def pae(payload_type: str, payload: bytes) -> bytes:
    """``"DSSEv1" SP len(type) SP type SP len(payload) SP payload``.

    Lengths are byte lengths in ASCII decimal, as the DSSE v1 protocol says;
    the type is UTF-8 encoded before it is measured.
    """
    type_bytes = payload_type.encode("utf-8")
    return b" ".join(
        [
            b"DSSEv1",
            str(len(type_bytes)).encode("ascii"),
            type_bytes,
            str(len(payload)).encode("ascii"),
            payload,
        ]
    )
