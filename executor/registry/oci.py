"""An OCI Distribution client for artifacts: blobs, manifests, referrers (stdlib HTTP only).

Enough of the distribution spec to push a run's outputs as an artifact and find
what is attached to it: blob upload (POST then PUT), manifests by tag or digest,
the OCI 1.1 referrers API, and the tag-schema fallback (``sha256-<hex>``) for
registries without it. Every blob and manifest fetched is checked against its
digest before use, and read with a size cap. Plain HTTP only for loopback
registries (the local test one); anything else is HTTPS. Registries that demand
a login are refused with a clear error (token auth is not built yet).
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from executor.errors import InfrastructureError, InputError, MismatchError

__all__ = [
    "EMPTY",
    "INDEX",
    "MANIFEST",
    "Reference",
    "Registry",
    "descriptor",
    "parse_reference",
]

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"
MANIFEST_CAP = 4 << 20
BLOB_CAP = 8 << 30  # a blob read into memory (a bundle, a published file)
STREAM_CAP = 1 << 40  # a blob streamed to disk (a model layer) may announce at most this
CHUNK = 1 << 20
_REF = re.compile(
    r"^(?P<host>[A-Za-z0-9.-]+(?::\d+)?)/(?P<repo>[a-z0-9]+(?:[._/-][a-z0-9]+)*)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


@dataclass(frozen=True)
class Reference:
    """``host[:port]/repo[:tag][@sha256:…]``."""

    host: str
    repo: str
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        return (
            f"{self.host}/{self.repo}"
            + (f":{self.tag}" if self.tag else "")
            + (f"@{self.digest}" if self.digest else "")
        )


def parse_reference(text: str) -> Reference:
    """A registry reference, or an InputError saying the expected form."""
    match = _REF.match(text)
    if match is None or not (match["tag"] or match["digest"]):
        raise InputError(
            f"{text!r}: not a registry reference",
            hint="REGISTRY/REPO:TAG to publish, REGISTRY/REPO@sha256:<64 hex> to verify",
        )
    return Reference(match["host"], match["repo"], match["tag"], match["digest"])


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    """The OCI descriptor of ``data``."""
    return {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
        **extra,
    }


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name == "localhost"


class Registry:
    """One registry host; each call is one HTTP exchange (no keep-alive to manage)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.scheme = "http" if _loopback(host) else "https"

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        cap: int = MANIFEST_CAP,
    ) -> tuple[int, dict[str, str], bytes]:
        target = urlsplit(path) if path.startswith("http") else None
        host = target.netloc if target else self.host
        path = (target.path + (f"?{target.query}" if target.query else "")) if target else path
        conn = self._connection(host)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            data = response.read(cap + 1)
            if len(data) > cap:
                raise InputError(f"{self.host}{path}: the registry's answer is over {cap} bytes")
            found = {k.lower(): v for k, v in response.getheaders()}
            if response.status == 401:
                raise InfrastructureError(
                    f"{self.host}: the registry asks for a login",
                    hint="rexec speaks to registries without authentication only (a local or "
                    "internal one); push with your registry's tooling meanwhile",
                )
            return response.status, found, data
        except OSError as exc:
            raise InfrastructureError(
                f"{self.scheme}://{self.host}: cannot reach the registry ({exc})",
                hint="is it running? (bash scripts/setup starts the local one on 127.0.0.1:5000)",
            ) from exc
        finally:
            conn.close()

    def has_blob(self, repo: str, digest: str) -> bool:
        """Whether the registry holds the blob already."""
        return self._request("HEAD", f"/v2/{repo}/blobs/{digest}")[0] == 200

    def push_blob(self, repo: str, data: bytes, digest: str) -> None:
        """Upload ``data`` (whose digest is ``digest``) unless the registry has it."""
        if self.has_blob(repo, digest):
            return
        status, headers, body = self._request(
            "POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"}
        )
        if status != 202 or "location" not in headers:
            raise InfrastructureError(
                f"{self.host}/{repo}: blob upload refused ({status}: {body[:200]!r})"
            )
        location = headers["location"]
        joiner = "&" if "?" in location else "?"
        status, _, body = self._request(
            "PUT",
            f"{location}{joiner}digest={digest}",
            body=data,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
        )
        if status != 201:
            raise InfrastructureError(
                f"{self.host}/{repo}: blob {digest} refused ({status}: {body[:200]!r})"
            )

    def push_manifest(
        self, repo: str, reference: str, data: bytes, media_type: str
    ) -> dict[str, str]:
        """PUT a manifest or index by tag or digest; returns the response headers."""
        status, headers, body = self._request(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            body=data,
            headers={"Content-Type": media_type},
        )
        if status != 201:
            raise InfrastructureError(
                f"{self.host}/{repo}: manifest {reference} refused ({status}: {body[:300]!r})"
            )
        return headers

    def manifest(self, repo: str, reference: str) -> bytes | None:
        """A manifest or index by tag or digest (None if absent); by digest, checked."""
        status, _, data = self._request(
            "GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": f"{MANIFEST}, {INDEX}"}
        )
        if status == 404:
            return None
        if status != 200:
            raise InfrastructureError(f"{self.host}/{repo}: manifest {reference}: HTTP {status}")
        if (
            reference.startswith("sha256:")
            and "sha256:" + hashlib.sha256(data).hexdigest() != reference
        ):
            raise MismatchError(f"{self.host}/{repo}@{reference}: the registry served other bytes")
        return data

    def blob(self, repo: str, digest: str, *, cap: int = BLOB_CAP) -> bytes:
        """A blob, checked against its digest."""
        status, headers, data = self._request("GET", f"/v2/{repo}/blobs/{digest}", cap=cap)
        if status in (301, 302, 307) and "location" in headers:
            status, _, data = self._request("GET", headers["location"], cap=cap)
        if status != 200:
            raise InfrastructureError(f"{self.host}/{repo}: blob {digest}: HTTP {status}")
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise MismatchError(f"{self.host}/{repo}: blob {digest} has other bytes")
        return data

    def blob_to(self, repo: str, digest: str, *, size: int, dest: Path) -> None:
        """Stream a blob of the announced ``size`` into a new file ``dest``, hashing as it
        comes: never more than ``size`` bytes are read, nothing is held in memory, and a
        blob of other bytes or another length is refused (``dest`` then removed)."""
        if not 0 <= size <= STREAM_CAP:
            raise MismatchError(f"{self.host}/{repo}: blob {digest} announces {size} bytes")
        path = f"/v2/{repo}/blobs/{digest}"
        for _ in range(3):  # a registry may redirect a blob to its storage
            target = urlsplit(path) if path.startswith("http") else None
            host = target.netloc if target else self.host
            where = (target.path + (f"?{target.query}" if target.query else "")) if target else path
            conn = self._connection(host)
            try:
                conn.request("GET", where)
                response = conn.getresponse()
                if response.status in (301, 302, 307) and response.getheader("location"):
                    path = str(response.getheader("location"))
                    continue
                if response.status != 200:
                    raise InfrastructureError(
                        f"{self.host}/{repo}: blob {digest}: HTTP {response.status}"
                    )
                self._stream(response, digest, size=size, dest=dest)
                return
            except OSError as exc:
                raise InfrastructureError(
                    f"{self.scheme}://{self.host}: cannot reach the registry ({exc})"
                ) from exc
            finally:
                conn.close()
        raise InfrastructureError(f"{self.host}/{repo}: blob {digest}: too many redirects")

    def _stream(self, response: Any, digest: str, *, size: int, dest: Path) -> None:
        hasher, got = hashlib.sha256(), 0
        fd = os.open(
            dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644
        )
        try:
            with os.fdopen(fd, "wb") as handle:
                while chunk := response.read(min(CHUNK, size + 1 - got)):
                    got += len(chunk)
                    if got > size:
                        raise MismatchError(
                            f"{self.host}: blob {digest} is longer than the {size} bytes announced"
                        )
                    hasher.update(chunk)
                    handle.write(chunk)
            if got != size or "sha256:" + hasher.hexdigest() != digest:
                raise MismatchError(f"{self.host}: blob {digest} has other bytes")
        except BaseException:
            dest.unlink(missing_ok=True)
            raise

    def _connection(self, host: str) -> http.client.HTTPConnection:
        kind = http.client.HTTPConnection if self.scheme == "http" else http.client.HTTPSConnection
        return kind(host, timeout=60)

    def referrers(self, repo: str, digest: str) -> tuple[list[dict[str, Any]], str]:
        """What is attached to ``digest``: the referrers API, else the tag-schema index."""
        status, _, data = self._request(
            "GET", f"/v2/{repo}/referrers/{digest}", headers={"Accept": INDEX}
        )
        how = "referrers API"
        if status != 200:
            data = self.manifest(repo, digest.replace(":", "-")) or b'{"manifests": []}'
            how = "tag schema"
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise MismatchError(f"{self.host}/{repo}: the referrers index is not JSON") from exc
        found = doc.get("manifests") if isinstance(doc, dict) else None
        return ([m for m in found if isinstance(m, dict)] if isinstance(found, list) else []), how
