"""Command-line options that several subcommands share, defined once.

Trust policy (``verify``, ``replay``, ``rerun``) and signing (``run``,
``replay``, ``rerun``) must mean exactly the same thing wherever they appear,
so their flags and their interpretation live here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from executor.errors import InputError
from executor.record import PUBLIC_KEY as RECORD_PUBLIC_KEY
from executor.signing import (
    KeyPolicy,
    SigningMethod,
    SignOptions,
    TrustPolicy,
    default_trust_file,
    load_trust_file,
)

DEFAULT_TRUST_FILE_TEXT = "~/.config/rexec/trust.toml"


def add_runtime_option(parser: argparse.ArgumentParser) -> None:
    """``--runtime``: the container engine, over the spec's ``[runtime] engine``."""
    parser.add_argument(
        "--runtime",
        choices=("docker", "podman"),
        help="the container engine (default: the spec's [runtime] engine, else docker); "
        "the record names the engine and its mode (see docs/runtimes.md)",
    )


def seed_value(text: str) -> int:
    """``--seed N``: an integer the job's RNGs and PYTHONHASHSEED accept (0 to 2**32-1)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected 0 to {2**32 - 1}, got {value}")
    return value


def add_trust_options(parser: argparse.ArgumentParser, title: str) -> argparse._ArgumentGroup:
    """Add the trust-policy flags; returns their group so a caller can add related ones."""
    trust = parser.add_argument_group(title)
    trust.add_argument("--key", type=Path, metavar="PUB", help="trust this PEM public key")
    trust.add_argument("--identity", metavar="ID", help="keyless: the exact signer identity")
    trust.add_argument("--identity-regexp", metavar="RE", help="keyless: identity pattern")
    trust.add_argument("--issuer", metavar="URL", help="keyless: the OIDC issuer")
    trust.add_argument(
        "--trusted-root",
        type=Path,
        metavar="FILE",
        help="Sigstore trusted_root.json: keyless, the roots of trust; with --key, the "
        "transparency logs whose entries in the bundle are checked",
    )
    trust.add_argument(
        "--require-tlog",
        action="store_true",
        help="with --key: the bundle must carry a transparency-log entry that verifies "
        "against --trusted-root (keyless bundles always need one)",
    )
    trust.add_argument(
        "--refresh-trust-root",
        action="store_true",
        help="keyless: fetch the current public-good root through TUF (network)",
    )
    trust.add_argument(
        "--trust-policy",
        type=Path,
        metavar="FILE",
        help="trust any signer this TOML file lists ([[signer]] key = PATH, or identity and "
        f"issuer; default for upstream records: {DEFAULT_TRUST_FILE_TEXT})",
    )
    return trust


def _named(args: argparse.Namespace) -> bool:
    """Whether the command line names a trust policy at all."""
    keyless = any((args.identity, args.identity_regexp, args.issuer))
    return args.key is not None or keyless or args.trust_policy is not None


def upstream_policy(args: argparse.Namespace) -> TrustPolicy | None:
    """Whose records may be read as upstream inputs, reused or regenerated: the trust
    options, else the user's trust file when there is one, else None (the caller refuses)."""
    if _named(args):
        return trust_policy(args)
    default = default_trust_file()
    return load_trust_file(default) if default.is_file() else None


def trust_policy(args: argparse.Namespace) -> TrustPolicy:
    """Exactly one policy from the trust options, or a clear InputError."""
    keyless = any((args.identity, args.identity_regexp, args.issuer))
    if sum((args.key is not None, keyless, args.trust_policy is not None)) > 1:
        raise InputError(
            "two trust policies given: use one of --key, --identity/--identity-regexp/--issuer "
            "and --trust-policy",
            hint="name exactly one: the signer's public key, its keyless identity and issuer, "
            "or a trust file that lists several signers",
        )
    if args.trust_policy is not None:
        return load_trust_file(args.trust_policy)
    if args.key is not None:
        if args.refresh_trust_root:
            raise InputError(
                "--refresh-trust-root applies to keyless verification only",
                hint="with --key, name the transparency logs to trust with --trusted-root FILE",
            )
        return KeyPolicy.from_file(
            args.key, trusted_root=args.trusted_root, require_tlog=args.require_tlog
        )
    if keyless:
        if not args.issuer or not (args.identity or args.identity_regexp):
            raise InputError(
                "keyless verification needs --issuer and one of --identity/--identity-regexp",
                hint="e.g. --identity ci@example.com --issuer https://accounts.google.com",
            )
        from executor.signing import sigstore as keyless_signing

        root: Path | None = args.trusted_root
        if args.refresh_trust_root:
            if root is not None:
                raise InputError(
                    "--trusted-root and --refresh-trust-root exclude each other",
                    hint="pin a root file, or fetch the current one, not both",
                )
            root = keyless_signing.refresh_trust_root()
        policy: TrustPolicy = keyless_signing.KeylessPolicy(
            identity=args.identity,
            identity_regexp=args.identity_regexp,
            issuer=args.issuer,
            trusted_root=root,
        )
        return policy
    hint = "pass --key PUB (the signer's public key) or --identity ID --issuer URL"
    target = Path(args.target) if getattr(args, "target", None) else None
    if target is not None and (target / RECORD_PUBLIC_KEY).is_file():
        hint = (
            f"{target / RECORD_PUBLIC_KEY} is not trusted automatically: a record cannot "
            "vouch for itself. Pass --key with the public key you obtained from the signer "
            "(compare its hint out of band)"
        )
    raise InputError("no trust policy given", hint=hint)


def add_signing_options(parser: argparse.ArgumentParser, *, default: str | None) -> None:
    parser.add_argument(
        "--sign",
        choices=("key", "sigstore", "none"),
        default=default,
        help="signing method" + (f" (default: {default})" if default else ""),
    )
    parser.add_argument(
        "--signing-key",
        type=Path,
        metavar="FILE",
        help="PEM private key for --sign key (else $REXEC_SIGNING_KEY with the PEM itself, "
        "$REXEC_SIGNING_KEY_FILE, or the key `rexec keygen` made in ~/.config/rexec; "
        "password from $REXEC_SIGNING_KEY_PASSWORD or a prompt)",
    )
    parser.add_argument(
        "--identity-token",
        metavar="JWT",
        help="OIDC token for --sign sigstore (else $REXEC_IDENTITY_TOKEN / $SIGSTORE_ID_TOKEN, "
        "ambient CI credentials, or a browser on a terminal)",
    )
    parser.add_argument(
        "--trust-config",
        type=Path,
        metavar="FILE",
        help="Sigstore ClientTrustConfig JSON for a private Fulcio/Rekor",
    )


def sign_options(
    args: argparse.Namespace, *, method: SigningMethod | None = None, key: Path | None = None
) -> SignOptions:
    """The signing the user asked for; ``method``/``key`` are the spec's defaults."""
    chosen: SigningMethod = args.sign or method or "key"
    return SignOptions(
        method=chosen,
        key_path=args.signing_key or key,
        identity_token=args.identity_token,
        trust_config=args.trust_config,
    )
