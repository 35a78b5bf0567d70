"""The artifact viewer: a signed output shown as text, a table or an image; nothing a
record does not sign, nothing through a link, nothing whose bytes changed."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest

from executor import catalog, web
from tests.metrics.trainer import PNG, make_key, run


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return run(tmp_path, make_key(tmp_path)[0], 1)


def get(path: str, status: int = 200) -> str:
    client = web.create_app(catalog.default_location(), hosts=["localhost"]).test_client()
    response = client.get(path, headers={"Host": "localhost"})
    assert response.status_code == status
    return str(response.get_data(as_text=True))


def test_outputs_are_shown_by_what_they_are(record: Path) -> None:
    run_page = get(f"/run/{record.name}")
    assert f'href="/run/{record.name}/file/history.csv"' in run_page
    table = get(f"/run/{record.name}/file/history.csv")
    assert '<table class="artifact"><tr><td class="mono">epoch</td>' in table
    text = get(f"/run/{record.name}/file/summary.json")
    assert "&#34;curve&#34;: [\n    3," in text  # pretty-printed, escaped
    image = get(f"/run/{record.name}/file/plots/curve.png")
    assert f'src="data:image/png;base64,{base64.b64encode(PNG).decode()}"' in image
    hostile = get(f"/run/{record.name}/file/notes.txt")
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in hostile and "<script>" not in hostile
    )


def test_what_the_record_does_not_sign_or_no_longer_matches_is_not_shown(
    record: Path, tmp_path: Path
) -> None:
    assert "not an output this record signs" in get(f"/run/{record.name}/file/statement.json", 404)
    assert "not an output this record signs" in get(f"/run/{record.name}/file/../host.json", 404)
    notes = record / "outputs" / "notes.txt"
    notes.chmod(0o644)
    notes.write_text("edited after signing\n")
    page = get(f"/run/{record.name}/file/notes.txt")
    assert "differ from the sha256 the record signs" in page and "edited" not in page


def test_a_link_in_the_record_is_never_followed(record: Path, tmp_path: Path) -> None:
    """The same bytes reached through a link (the file, or a directory on its way) are
    refused: the viewer reads below the record only."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plots = record / "outputs" / "plots"
    shutil.copy(plots / "curve.png", elsewhere / "curve.png")
    plots.chmod(0o755)
    shutil.rmtree(plots)
    os.symlink(elsewhere, plots)
    page = get(f"/run/{record.name}/file/plots/curve.png")
    assert "not shown" in page and "data:image/png" not in page
    history = record / "outputs" / "history.csv"
    shutil.copy(history, elsewhere / "history.csv")
    history.chmod(0o644)
    history.unlink()
    os.symlink(elsewhere / "history.csv", history)
    page = get(f"/run/{record.name}/file/history.csv")
    assert "not shown" in page and "epoch" not in page.split("not shown")[1]
