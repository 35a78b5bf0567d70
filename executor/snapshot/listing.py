"""Tree digests (``sha256-tree-v1``, ``blake3-tree-v1``) and the listings they are made from.

A *listing* is the sorted list of every entry under a snapshot root. The root
digest is a hash over the listing's exact bytes, so a listing is enough both to
recompute the digest and to say, file by file, what differs from another one.
The precise definition (also in ``docs/snapshots.md``) is:

* entries: every regular file, symbolic link and directory below the root
  (not the root itself). Each has ``type`` (``f``, ``l``, ``d``), ``path`` (the
  relative path as raw bytes, components joined by ``/``), ``content`` (file:
  its bytes; link: its target string as bytes, never followed; directory:
  empty), ``size = len(content)`` and ``digest = H(content)``;
* order: by path *components*, each compared as bytes; this is the order of a
  depth-first walk that visits each directory's names sorted bytewise, and it
  puts ``a`` before ``a/x`` before ``a.b``;
* record of one entry: ``type SP size SP hex(digest) SP path NUL`` with
  ``size`` in ASCII decimal and ``hex`` in lowercase;
* root: ``H(name LF record1 record2 …)`` where ``name`` is ``sha256-tree-v1`` or
  ``blake3-tree-v1`` and ``H`` is SHA-256 or BLAKE3 (32-byte output).

Permissions, owners and timestamps are not part of the digest: two copies of
the same data made by different users at different times pin the same.
"""

from __future__ import annotations

import json
import re
from binascii import hexlify
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import repeat
from json.encoder import encode_basestring_ascii
from typing import IO, Any, NamedTuple

import blake3

from executor.errors import InputError

ALGOS: dict[str, str] = {"sha256": "sha256-tree-v1", "blake3": "blake3-tree-v1"}
DIGEST_RE = re.compile(r"^(?P<name>(?P<algo>sha256|blake3)-tree-v1):(?P<hex>[0-9a-f]{64})$")
LISTING_SCHEMA = "rexec.listing/v1"
TYPES = ("f", "l", "d")
_TYPE_WORDS = {"f": "file", "l": "symlink", "d": "directory"}


def new_hasher(algo: str) -> Any:
    """A fresh hasher, on one thread (BLAKE3 on all cores: :mod:`executor.snapshot.mapped`)."""
    return hasher_factory(algo)()


def hasher_factory(algo: str) -> Callable[..., Any]:
    """The hasher constructor (``f(data)``), looked up once for a loop over many files.

    ``hashlib`` is imported here, not at module level: loading OpenSSL is a
    noticeable share of the start-up of a ``--algo blake3`` run.
    """
    if algo == "sha256":
        import hashlib

        return hashlib.sha256
    if algo == "blake3":
        return blake3.blake3  # max_threads defaults to 1
    raise InputError(
        f"unknown snapshot algorithm {algo!r}",
        hint="use --algo sha256 (the default) or --algo blake3",
    )


def hash_bytes(algo: str, data: bytes) -> bytes:
    """The digest of ``data`` under ``algo`` (a link's target, an empty dir)."""
    h = new_hasher(algo)
    h.update(data)
    digest: bytes = h.digest()
    return digest


class Entry(NamedTuple):
    """One listing entry. A tuple, not a dataclass: a million of them must fit in RAM."""

    path: bytes
    type: str
    size: int
    digest: bytes

    def record(self) -> bytes:
        """The entry's bytes as the tree digest hashes them."""
        return b"%s %d %s %s\x00" % (
            self.type.encode(),
            self.size,
            self.digest.hex().encode(),
            self.path,
        )

    def display(self) -> str:
        """The path for humans; undecodable bytes shown as ``\\xNN`` escapes."""
        text = self.path.decode("utf-8", "backslashreplace")
        return text + "/" if self.type == "d" else text


_TYPE_BYTES = {t: t.encode() for t in TYPES}


def records(entries: Iterable[Entry]) -> bytes:
    """The concatenated :meth:`Entry.record` bytes of ``entries``, built in one pass."""
    tb = _TYPE_BYTES
    return b"".join([b"%s %d %s %s\x00" % (tb[e[1]], e[2], hexlify(e[3]), e[0]) for e in entries])


_new_tuple = tuple.__new__


def make_entries(
    paths: Iterable[bytes], types: Iterable[str], sizes: Iterable[int], digests: Iterable[bytes]
) -> list[Entry]:
    """``[Entry(p, t, s, d) ...]`` for parallel sequences, without a Python call per entry.

    A NamedTuple's constructor is a Python function; ``tuple.__new__`` mapped
    over zipped fields builds the same tuples in C, which matters at 10^5-10^6 entries.
    """
    return list(
        map(_new_tuple, repeat(Entry), zip(paths, types, sizes, digests, strict=False))
    )  # repeat() never ends


def sort_key(path: bytes) -> list[bytes]:
    """Component-wise order (see the module docstring)."""
    return path.split(b"/")


class RootHasher:
    """Feeds records into the root hash as entries arrive, in order."""

    def __init__(self, algo: str) -> None:
        self.algo = algo
        self._h = new_hasher(algo)
        self._h.update(ALGOS[algo].encode() + b"\n")

    def add(self, entry: Entry) -> None:
        """Add one entry, in walk order, to the root digest."""
        self._h.update(entry.record())

    def add_many(self, entries: Iterable[Entry]) -> None:
        """Same as :meth:`add` for each entry, in one hash update (the many-files hot path)."""
        self._h.update(records(entries))

    def hexdigest(self) -> str:
        """The tree digest as hex."""
        return f"{ALGOS[self.algo]}:{self._h.digest().hex()}"


def root_digest(algo: str, entries: Iterable[Entry]) -> str:
    """The root digest of entries given in listing order."""
    root = RootHasher(algo)
    for e in entries:
        root.add(e)
    return root.hexdigest()


def parse_digest(text: str, *, where: str = "digest") -> tuple[str, str]:
    """``"sha256-tree-v1:<hex>"`` → ``("sha256", hex)``, or an error that teaches the form."""
    m = DIGEST_RE.match(text.strip())
    if m is None:
        raise InputError(
            f"{where}: {text!r} is not a tree digest",
            hint="expected sha256-tree-v1:<64 hex> or blake3-tree-v1:<64 hex>, "
            "as printed by `rexec snapshot hash PATH`",
        )
    return m["algo"], m["hex"]


class Listing(NamedTuple):
    """Every entry of a snapshot, in digest order, with the root digest they give."""

    algo: str
    digest: str
    entries: tuple[Entry, ...]

    def totals(self) -> tuple[int, int]:
        """(regular files, their bytes)."""
        files = [e.size for e in self.entries if e.type == "f"]
        return len(files), sum(files)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict; paths that are not UTF-8 are kept as ``{"base64": …}``."""
        return {
            "schema": LISTING_SCHEMA,
            "algo": self.algo,
            "digest": self.digest,
            "entries": [_entry_json(e) for e in self.entries],
        }

    def write_json(self, out: IO[str]) -> None:
        """Stream the same document as :meth:`to_json` without building it in memory."""
        head = {"algo": self.algo, "digest": self.digest, "schema": LISTING_SCHEMA}
        out.write(json.dumps(head, sort_keys=True)[:-1] + ', "entries": [')
        sep = "\n"
        for start in range(0, len(self.entries), 4096):
            out.write(sep + ",\n".join(_entry_lines(self.entries[start : start + 4096])))
            sep = ",\n"
        out.write("\n]}\n")

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes, *, where: str = "listing") -> Listing:
        """Parse and check a listing: its entries must hash to the digest it claims."""
        try:
            doc = json.loads(data) if isinstance(data, str | bytes) else data
            if doc.get("schema") != LISTING_SCHEMA:
                raise ValueError(f"schema is {doc.get('schema')!r}, expected {LISTING_SCHEMA!r}")
            algo, _ = parse_digest(str(doc["digest"]), where=f"{where}: digest")
            entries = tuple(_entry_from_json(item) for item in doc["entries"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(
                f"{where}: not a rexec listing ({exc})",
                hint="listings are written by `rexec snapshot hash` and by `rexec run` "
                "as inputs/<name>.listing.json",
            ) from exc
        computed = root_digest(algo, entries)
        if computed != doc["digest"]:
            raise InputError(
                f"{where}: entries hash to {computed}, but the listing claims {doc['digest']}",
                hint="the listing was edited or damaged; hash the data again to get a fresh one",
            )
        return cls(algo=algo, digest=str(doc["digest"]), entries=entries)


def _entry_json(e: Entry) -> list[Any]:
    try:
        path: Any = e.path.decode("utf-8")
    except UnicodeDecodeError:
        import base64  # here, not at the top: only such rare paths need it (start-up time)

        path = {"base64": base64.b64encode(e.path).decode()}
    return [e.type, e.size, e.digest.hex(), path]


def _entry_lines(entries: tuple[Entry, ...]) -> list[str]:
    """``json.dumps(_entry_json(e))`` for each entry, byte for byte, at a fraction of the cost.

    ``json.dumps`` escapes strings with ``encode_basestring_ascii``; calling it
    directly skips the encoder's per-call set-up. A block holding a path that is
    not UTF-8 (rare) takes the general route.
    """
    enc = encode_basestring_ascii
    try:
        return [f'["{e[1]}", {e[2]}, "{e[3].hex()}", {enc(e[0].decode("utf-8"))}]' for e in entries]
    except UnicodeDecodeError:
        return [json.dumps(_entry_json(e)) for e in entries]


def _entry_from_json(item: Any) -> Entry:
    kind, size, hexdigest, path = item
    if kind not in TYPES or not isinstance(size, int) or size < 0:
        raise ValueError(f"bad entry {item!r}")
    if isinstance(path, dict):
        import base64  # here, not at the top: only paths that are not UTF-8 need it

        raw = base64.b64decode(path["base64"])
    else:
        raw = path.encode("utf-8")
    return Entry(raw, kind, size, bytes.fromhex(hexdigest))


class ListingDiff(NamedTuple):
    """Which paths were added, removed or changed between two listings."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    @property
    def same(self) -> bool:
        """True when the two listings name the same files with the same digests."""
        return not (self.added or self.removed or self.changed)

    def lines(self) -> list[str]:
        """``changed: a/b.csv`` style lines, the form MismatchError details use."""
        return (
            [f"changed: {p}" for p in self.changed]
            + [f"added: {p}" for p in self.added]
            + [f"removed: {p}" for p in self.removed]
        )

    def to_json(self) -> dict[str, list[str]]:
        """The JSON form: added, removed and changed paths."""
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
        }


def diff_listings(old: Listing, new: Listing) -> ListingDiff:
    """Compare two listings made with the same algorithm, path by path."""
    if old.algo != new.algo:
        raise InputError(
            f"cannot compare a {ALGOS[old.algo]} listing with a {ALGOS[new.algo]} one",
            hint=f"hash the data with --algo {old.algo} to compare it with the old listing",
        )
    before = {e.path: e for e in old.entries}
    after = {e.path: e for e in new.entries}
    show: Callable[[Entry], str] = Entry.display
    added = [show(after[p]) for p in _ordered(after.keys() - before.keys())]
    removed = [show(before[p]) for p in _ordered(before.keys() - after.keys())]
    changed = []
    for p in _ordered(before.keys() & after.keys()):
        a, b = before[p], after[p]
        if a != b:
            note = f" ({_TYPE_WORDS[a.type]} → {_TYPE_WORDS[b.type]})" if a.type != b.type else ""
            changed.append(show(b) + note)
    return ListingDiff(added=tuple(added), removed=tuple(removed), changed=tuple(changed))


def _ordered(paths: Iterable[bytes]) -> Iterator[bytes]:
    return iter(sorted(paths, key=sort_key))
