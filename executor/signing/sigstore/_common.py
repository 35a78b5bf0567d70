"""What sigstore's own errors say, and the trusted root read from a file, for the
modules of this folder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from sigstore.errors import Error as SigstoreError
from sigstore.models import TrustedRoot

from executor.errors import InputError


def sigstore_error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def load_trusted_root(path: Path) -> TrustedRoot:
    """A Sigstore trusted root from a file, or a clear error naming it."""
    try:
        return TrustedRoot.from_file(str(path))
    except OSError as exc:
        raise InputError(
            f"{path}: cannot read the Sigstore trusted root ({exc.strerror})",
            hint="--trusted-root takes a trusted_root.json file",
        ) from exc
    except (SigstoreError, ValueError) as exc:
        raise InputError(
            f"{path}: not a valid Sigstore trusted root: {sigstore_error_text(exc)}",
            hint="expected mediaType application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        ) from exc


def shipped_trusted_root() -> Path:
    """The public-good Sigstore trusted root that ships inside rexec."""
    return Path(str(resources.files("executor.data").joinpath("trusted_root.json")))
