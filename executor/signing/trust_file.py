"""Several trusted signers as one policy, and the user's trust file that names them.

Whatever reads another run's record (a ``from`` input, stage reuse, a regeneration,
``verify --chain``) verifies it first, under the caller's trust policy: the
``--key``/``--identity`` flags, else the signers listed in ``~/.config/rexec/trust.toml``
(or the file ``--trust-policy`` names)::

    # Whose records rexec may read as upstream inputs, reuse and regenerate.
    [[signer]]
    key = "signing.pub"            # a PEM public key; relative to this file

    [[signer]]
    identity = "https://github.com/acme/train/.github/workflows/train.yml@refs/heads/main"
    issuer = "https://token.actions.githubusercontent.com"

A keyless signer may give ``identity_regexp`` instead of ``identity`` and its own
``trusted_root``. The file holds names of trust anchors, never secrets.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from executor import safeio
from executor.errors import InputError, RexecError, VerificationError
from executor.paths import config_dir
from executor.signing.key_policy import KeyPolicy
from executor.signing.types import TrustPolicy, Verified

__all__ = ["NO_POLICY_HINT", "AnyOf", "default_trust_file", "load_trust_file"]

FILE_CAP = 1 << 20
NO_POLICY_HINT = (
    "name whom you trust to have made the upstream records: --key PUB, or --identity ID "
    "--issuer URL, or list signers in ~/.config/rexec/trust.toml "
    '([[signer]] key = "signing.pub"); see docs/security.md'
)
KEYLESS_KEYS = {"identity", "identity_regexp", "issuer", "trusted_root"}


@dataclass(frozen=True)
class AnyOf:
    """Trust a bundle that any one of ``policies`` accepts (the first that does says who)."""

    policies: tuple[TrustPolicy, ...]
    source: str = "trust policy"

    def verify_bundle(self, bundle: bytes, *, artifact: Path | None = None) -> Verified:
        """The first policy that accepts the bundle; a VerificationError listing each refusal."""
        refusals = []
        for policy in self.policies:
            try:
                return policy.verify_bundle(bundle, artifact=artifact)
            except VerificationError as exc:
                refusals.append(f"{policy.describe()}: {exc.message}")
        raise VerificationError(
            f"signed by none of the {len(self.policies)} signer(s) {self.source} trusts",
            details=refusals,
            hint="add the signer to the trust file, or name it with --key / --identity --issuer",
        )

    def describe(self) -> str:
        """The policy in words."""
        return f"any of {self.source}: " + "; ".join(p.describe() for p in self.policies)


def default_trust_file() -> Path:
    """``~/.config/rexec/trust.toml`` (or under ``$XDG_CONFIG_HOME``)."""
    return Path(config_dir()) / "trust.toml"


def load_trust_file(path: Path) -> AnyOf:
    """The signers ``path`` lists, as one policy; a clear error naming the entry otherwise."""
    try:
        text = safeio.read_capped(path, cap=FILE_CAP).decode("utf-8")
        doc = tomllib.loads(text)
    except FileNotFoundError:
        raise InputError(f"{path}: no such trust file") from None
    except (OSError, safeio.UnsafeFile, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(
            f"{path}: not a readable TOML trust file ({exc})", hint="see docs/security.md"
        ) from exc
    unknown = sorted(set(doc) - {"signer"})
    entries = doc.get("signer")
    if unknown or not isinstance(entries, list) or not entries:
        raise InputError(
            f"{path}: expected one or more [[signer]] tables"
            + (f" (unknown keys: {', '.join(unknown)})" if unknown else ""),
            hint='[[signer]] key = "signing.pub", or identity = "…" and issuer = "…"',
        )
    policies = tuple(_signer(path, i, e) for i, e in enumerate(entries))
    return AnyOf(policies, source=str(path))


def _signer(path: Path, index: int, entry: object) -> TrustPolicy:
    where = f"{path}: signer[{index}]"
    if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
        raise InputError(f"{where}: expected a table of strings")
    unknown = sorted(set(entry) - KEYLESS_KEYS - {"key"})
    if unknown:
        raise InputError(
            f"{where}: unknown key(s) {', '.join(unknown)}",
            hint="a signer is key = PATH, or identity (or identity_regexp) with issuer",
        )
    root = _relative(path, entry["trusted_root"]) if "trusted_root" in entry else None
    try:
        if "key" in entry:
            if set(entry) - {"key", "trusted_root"}:
                raise InputError(f"{where}: a key signer takes key (and trusted_root) only")
            return KeyPolicy.from_file(_relative(path, entry["key"]), trusted_root=root)
        from executor.signing.sigstore import KeylessPolicy

        return KeylessPolicy(
            identity=entry.get("identity"),
            identity_regexp=entry.get("identity_regexp"),
            issuer=entry.get("issuer", ""),
            trusted_root=root,
        )
    except RexecError as exc:
        raise InputError(f"{where}: {exc.message}", hint=exc.hint) from exc


def _relative(path: Path, value: str) -> Path:
    found = Path(value).expanduser()
    return found if found.is_absolute() else path.parent / found
