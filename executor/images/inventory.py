"""The job image's package inventory: read inside the image, once per image id, cached.

The inventory is read *inside* the job's image, because that, not the host, is
what the job imports (Python, pip, dpkg, torch and CUDA versions). An image id
names immutable content, so the cache can never be stale.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from executor.canonical import canonical_json
from executor.errors import InputError
from executor.paths import cache_dir
from executor.progress import Say
from executor.runtime import NOBODY, ContainerRuntime
from executor.safeio import write_atomic

INVENTORY_SCHEMA = "rexec.inventory/v1"


# The Python half runs with whatever interpreter the image has. It must not use
# single quotes (it sits inside sh '…'), must not write (read-only root), and
# must survive a missing or broken torch: a version we cannot read is null.
_INVENTORY_PY = r"""
import json, os, platform, subprocess, sys
from importlib import metadata
out = {"schema": "rexec.inventory/v1", "python": {"version": platform.python_version(),
       "implementation": platform.python_implementation(), "executable": sys.executable}}
pkgs = {}
for d in metadata.distributions():
    name = d.metadata["Name"]
    if name:
        pkgs[name] = d.version
out["pip"] = [{"name": k, "version": pkgs[k]} for k in sorted(pkgs, key=str.lower)]
try:
    rows = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${Architecture}\n"],
                          capture_output=True, text=True, check=True).stdout.splitlines()
    out["dpkg"] = [dict(zip(("name", "version", "arch"), r.split("\t"))) for r in sorted(rows) if r]
except (OSError, subprocess.CalledProcessError):
    out["dpkg"] = None
keys = ("CUDA_VERSION", "CUDNN_VERSION", "NCCL_VERSION", "NV_CUDNN_VERSION")
out["env"] = {k: os.environ[k] for k in keys if os.environ.get(k)}
fw = {}
if "torch" in pkgs:
    try:
        import torch
        fw["torch"] = torch.__version__
        fw["cuda_runtime"] = torch.version.cuda
        try:
            fw["cudnn"] = torch.backends.cudnn.version()
        except Exception:
            fw["cudnn"] = None
        try:
            v = torch.cuda.nccl.version()
            fw["nccl"] = ".".join(map(str, v)) if isinstance(v, tuple) else v
        except Exception:
            fw["nccl"] = None
    except Exception as exc:
        fw["torch_error"] = repr(exc)
out["frameworks"] = fw
sys.stdout.write(json.dumps(out) + "\n")
"""


INVENTORY_SCRIPT = (
    "set -u\n"
    "for py in python3 python; do\n"
    '  if command -v "$py" >/dev/null 2>&1; then\n'
    f"    exec \"$py\" -B -c '{_INVENTORY_PY}'\n"
    "  fi\n"
    "done\n"
    "# No Python: Debian package names and versions never contain quotes or backslashes.\n"
    'printf \'{"schema":"rexec.inventory/v1","python":null,"pip":[],"frameworks":{},"dpkg":\'\n'
    "if command -v dpkg-query >/dev/null 2>&1; then\n"
    "  printf '['\n"
    "  dpkg-query -W -f "
    '\'{"name":"${Package}","version":"${Version}","arch":"${Architecture}"}\\n\''
    " | sort | sed '$!s/$/,/' | tr -d '\\n'\n"
    "  printf ']}\\n'\n"
    "else\n"
    "  printf 'null}\\n'\n"
    "fi\n"
)


def parse_inventory(stdout: str) -> dict[str, Any]:
    """The one JSON object :data:`INVENTORY_SCRIPT` printed (its last non-empty line).

    Earlier lines are tolerated because an image's ``sitecustomize`` or an
    import may print; the inventory is always written last.
    """
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    try:
        value = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"the image's package inventory is not JSON ({exc}); last line: {lines[-1][:200]!r}",
            hint="the image must provide /bin/sh; check the image runs `sh -c true`",
        ) from exc
    if not isinstance(value, dict) or value.get("schema") != INVENTORY_SCHEMA:
        raise InputError(
            "the image's package inventory has no rexec.inventory/v1 object on its last line",
            details=lines[-3:],
            hint="the image must provide /bin/sh; check the image runs `sh -c true`",
        )
    return value


_DIGEST = re.compile(r"^(sha256):([0-9a-f]{64})$")


def inventory_cache_path(image_digest: str) -> Path:
    """Where the inventory of ``sha256:<hex>`` is cached (content-addressed, never stale)."""
    m = _DIGEST.match(image_digest)
    if not m:
        raise InputError(
            f"image digest {image_digest!r}: expected sha256:<64 lowercase hex>",
            hint="pin images by digest (`rexec lock` writes it)",
        )
    return Path(cache_dir(), "inventory", f"{m.group(1)}-{m.group(2)}.json")


def image_inventory(
    image_id: str, *, run_ref: str, runtime: ContainerRuntime, say: Say
) -> dict[str, Any]:
    """The job's view of its image (Python, pip, dpkg, torch/CUDA versions).

    Read once per image id, in a hardened helper container, and cached: an
    image id names immutable content, so the cache can never be stale.
    """
    cache = inventory_cache_path(image_id)
    if cache.is_file():
        cached: dict[str, Any] = json.loads(cache.read_bytes())
        return cached
    say("reading the image's package inventory (once per image)")
    stdout = runtime.run_capture(run_ref, ["sh", "-c", INVENTORY_SCRIPT], user=NOBODY)
    inventory = {"imageId": image_id, **parse_inventory(stdout)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(cache, canonical_json(inventory), durable=False)  # a cache: read again if lost
    return inventory
