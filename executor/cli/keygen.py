"""``rexec keygen``: create the local key pair that air-gapped runs are signed with."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from executor.cli._json import print_json
from executor.errors import ExitCode, InputError
from executor.signing import default_key_prefix, generate_keypair


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec keygen`` to the parser."""
    p = sub.add_parser(
        "keygen",
        help="create a local ECDSA P-256 signing key pair",
        description=(
            "Create PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub. Sign runs with "
            '`[signing] method = "key"`; give PREFIX.pub to whoever verifies them '
            "(`rexec verify RUN --key PREFIX.pub`). Existing files are never overwritten. "
            "The key is encrypted when a password is given: from --password-env, or typed "
            "at the prompt when stdin is a terminal (empty = unencrypted)."
        ),
    )
    p.add_argument(
        "--out",
        metavar="PREFIX",
        help=f"path prefix of the two files (default {default_key_prefix()}, where "
        "`rexec run` looks for a key when none is named)",
    )
    p.add_argument(
        "--password-env",
        metavar="VAR",
        help="encrypt the private key with the password in environment variable VAR",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(handler=handle)


def _password(args: argparse.Namespace) -> bytes | None:
    if args.password_env:
        value = os.environ.get(args.password_env)
        if not value:
            raise InputError(
                f"--password-env {args.password_env}: the variable is unset or empty",
                hint=f"export {args.password_env}=... first, or leave out --password-env",
            )
        return value.encode("utf-8")
    if not sys.stdin.isatty():
        return None
    import getpass

    first = getpass.getpass("password for the new key (empty: unencrypted): ")
    if not first:
        return None
    if getpass.getpass("repeat the password: ") != first:
        raise InputError("the two passwords differ", hint="run `rexec keygen` again")
    return first.encode("utf-8")


def handle(args: argparse.Namespace) -> int:
    """Write a new key pair, never over an existing file, and print its hint."""
    prefix = Path(os.path.expanduser(args.out)) if args.out else default_key_prefix()
    private_path = prefix.with_name(prefix.name + ".key")
    public_path = prefix.with_name(prefix.name + ".pub")
    password = _password(args)
    hint = generate_keypair(private_path, public_path, password=password)
    if args.json:
        print_json(
            {
                "private_key": str(private_path),
                "public_key": str(public_path),
                "encrypted": bool(password),
                "hint": hint,
            }
        )
        return int(ExitCode.OK)
    print(f"private key: {private_path}{' (encrypted)' if password else ''}")
    print(f"public key:  {public_path}")
    print(f"key hint:    {hint}")
    return int(ExitCode.OK)
