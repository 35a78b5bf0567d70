"""Where rexec keeps its own files: the cache (snapshot stat cache, listings, image
inventories, build reuse) and the configuration (the default signing key).

Strings, not Paths: ``rexec snapshot hash`` runs without importing pathlib, whose
imports are a tenth of its start-up.
"""

from __future__ import annotations

import os


def cache_dir() -> str:
    """``$REXEC_CACHE_DIR``, else ``$XDG_CACHE_HOME/rexec``, else ``~/.cache/rexec``.

    A string, not a Path: ``rexec snapshot hash`` runs without importing
    pathlib, whose imports are a tenth of its start-up.
    """
    explicit = os.environ.get("REXEC_CACHE_DIR")
    if explicit:
        return explicit
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return os.path.join(xdg, "rexec")
    return os.path.join(os.path.expanduser("~"), ".cache", "rexec")


def config_dir() -> str:
    """``$XDG_CONFIG_HOME/rexec``, else ``~/.config/rexec``."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "rexec")
