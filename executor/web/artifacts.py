"""One output of a run, shown in the page: text, JSON, CSV or an image, size-capped.

Only a file the record signs as an output is shown, read below the record's outputs
directory without following a link, and only when its bytes still have the signed
sha256. Text is escaped by the templates; an image is inlined as a ``data:`` URI (the
one source the page's policy allows), recognised by its first bytes, never by its name;
SVG is shown as text (it can carry script).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import itertools
import json
from pathlib import Path
from typing import Any

from executor import safeio
from executor.errors import InputError, RexecError
from executor.record import load_record

CAP = 16 << 20  # bytes read to check and show one file
TEXT_SHOWN = 256 << 10  # characters of text shown
ROWS_SHOWN = 200  # rows of a CSV
IMAGES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}


def view(record_path: str, name: str) -> dict[str, Any]:
    """What the page shows of output ``name`` of the record at ``record_path``."""
    try:
        record = load_record(Path(record_path))
    except (RexecError, OSError) as exc:
        raise InputError(f"the record of this run cannot be read here ({exc})") from exc
    signed = record.outputs.get(name)
    if signed is None:
        raise InputError(f"{name!r} is not an output this record signs")
    doc: dict[str, Any] = {"name": name, "sha256": signed, "kind": "none"}
    try:
        data = safeio.read_under(record.outputs_dir, name, cap=CAP)
    except (OSError, safeio.UnsafeFile) as exc:
        return doc | {"problem": f"not shown: {exc}"}
    doc["size"] = len(data)
    if hashlib.sha256(data).hexdigest() != signed:
        return doc | {"problem": "not shown: its bytes differ from the sha256 the record signs"}
    return doc | _shown(name, data)


def _shown(name: str, data: bytes) -> dict[str, Any]:
    mime = next((m for magic, m in IMAGES.items() if data.startswith(magic)), None)
    if mime is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    if mime is not None:
        return {"kind": "image", "uri": f"data:{mime};base64,{base64.b64encode(data).decode()}"}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {"kind": "binary"}
    lower = name.lower()
    if lower.endswith(".json"):
        with contextlib.suppress(ValueError, RecursionError):
            text = json.dumps(json.loads(text), indent=2, sort_keys=True)
    elif lower.endswith((".csv", ".tsv")):
        dialect = "excel-tab" if lower.endswith(".tsv") else "excel"
        try:
            rows = list(itertools.islice(csv.reader(io.StringIO(text), dialect), ROWS_SHOWN + 1))
        except csv.Error:
            rows = []
        if rows:
            return {"kind": "table", "rows": rows[:ROWS_SHOWN], "more": len(rows) > ROWS_SHOWN}
    return {"kind": "text", "text": text[:TEXT_SHOWN], "more": len(text) > TEXT_SHOWN}
