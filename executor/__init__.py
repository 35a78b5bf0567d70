"""rexec: run ML training so that anyone can later prove what ran and re-run it.

Data flows one way, and only :mod:`executor.pipeline` knows the order::

    run:     spec -> resolve -> preflight -> execute -> collect -> attest -> sign -> store
    verify:  store.read -> signature + policy -> re-hash artifacts -> compare

Each stage takes the previous stage's frozen value and returns its own. External
systems sit behind one small seam each: Docker (:mod:`executor.runtime`), NVML
(:mod:`executor.hardware`), Sigstore (:mod:`executor.signing`). Nothing touches
the network, the GPU or the Docker socket at import time or while parsing a spec.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
