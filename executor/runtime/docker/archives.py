"""Image archives in and out of a Docker-API engine: ``docker load`` and ``docker save``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker.errors

from executor.errors import InfrastructureError

__all__ = ["load", "save"]


def load(client: Any, archive: Path) -> None:
    """Load a tar archive (docker-archive or OCI layout) into the engine."""
    try:
        with open(archive, "rb") as fh:
            for chunk in client.api.load_image(fh, quiet=True):
                if isinstance(chunk, dict) and chunk.get("error"):
                    raise InfrastructureError(
                        f"the engine refused to load {archive}: {chunk['error'].strip()}"
                    )
    except docker.errors.APIError as exc:
        raise InfrastructureError(
            f"the engine refused to load {archive}: {exc.explanation or exc}"
        ) from exc


def save(client: Any, image_id: str, target: Path) -> None:
    """Stream the image (by id) as a docker-archive tar into the new file ``target``."""
    try:
        with open(target, "xb") as fh:
            for chunk in client.api.get_image(image_id):
                fh.write(chunk)
    except docker.errors.APIError as exc:
        raise InfrastructureError(
            f"the engine could not save image {image_id}: {exc.explanation or exc}"
        ) from exc
