"""rexec's start-up hook: determinism for a job that never calls ``seed_everything()``.

Python imports ``sitecustomize`` at start-up from the first ``sys.path`` entry
that has one; rexec puts this folder first on ``PYTHONPATH``. So every Python
process of the job (unless started with ``-S`` or ``-I``) runs this before the
job's own code, and :func:`rexec_runtime.automatic` seeds ``random`` now and
numpy and torch when the job imports them, as ``[determinism]`` asks. Then the
image's own ``sitecustomize`` (Debian ships one) runs, as it would have.

Nothing here may break the job's start: a failure is one line on stderr, and
the run's record then says no determinism report came back.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys


def _chain() -> None:
    """Run the next ``sitecustomize`` on ``sys.path``, the one this file shadows."""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


if os.environ.get("REXEC_SEED") is not None and os.environ.get("REXEC_DETERMINISM_AUTO") != "0":
    try:
        import rexec_runtime

        rexec_runtime.automatic()
    except Exception as exc:  # the job must start even if the hook cannot
        print(f"rexec: determinism hook failed: {exc!r}", file=sys.stderr)
_chain()
