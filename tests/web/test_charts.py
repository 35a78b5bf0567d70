"""Charts in the web view: a run's curves over its seeds' band, several runs overlaid, a
metric against each param and parallel coordinates; SVG drawn here, every text escaped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from executor import catalog, web
from executor.web import charts
from tests.metrics.trainer import SPEC, make_key, run


@pytest.fixture
def seeded(tmp_path: Path) -> list[Path]:
    """Three seeds of one spec, and one run with another learning rate."""
    key, _ = make_key(tmp_path)
    paths = [run(tmp_path, key, seed, SPEC + "[params]\nlr = 0.1\n") for seed in (1, 2, 3)]
    return [*paths, run(tmp_path, key, 4, SPEC + "[params]\nlr = 0.3\n")]


def client() -> object:
    location = catalog.default_location()
    return web.create_app(location, hosts=["localhost"]).test_client()


def get(path: str) -> str:
    response = client().get(path, headers={"Host": "localhost"})  # type: ignore[attr-defined]
    assert response.status_code == 200, response.status_code
    assert "script-src" not in response.headers["Content-Security-Policy"]
    return str(response.get_data(as_text=True))


def test_a_run_page_draws_each_curve_over_the_band_of_its_other_seeds(seeded: list[Path]) -> None:
    page = get(f"/run/{seeded[0].name}")
    # val_ppl (stdout), train_loss (history.csv) and curve (summary.json), each over a band
    assert page.count('<svg class="chart"') == 3 == page.count('class="band"')
    assert "2 other seeds: their range" in page  # seed 4 has another lr: not the same spec
    assert re.search(r'<polyline class="curve" points="[0-9., ]+"', page)
    assert "921.5" in page and "min" in page  # the run value, as the spec sums it up


def test_compare_overlays_the_runs_curves_one_line_each(seeded: list[Path]) -> None:
    query = "&".join(f"run={p.name}" for p in seeded[:3])
    page = get(f"/compare?{query}")
    assert page.count('<polyline class="curve"') == 3 * len(re.findall('<svg class="chart"', page))


def test_the_runs_of_a_name_plot_a_metric_by_param_and_in_parallel(seeded: list[Path]) -> None:
    page = get("/plots?name=lm&metric=metrics.stdout:val_ppl")
    assert page.count('<circle class="dot"') == 4  # one per run, lr on x
    assert page.count('<polyline class="run"') == 4
    assert f'href="/run/{seeded[3].name}"' in page


def test_hostile_names_in_a_chart_are_text() -> None:
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    svg = charts.curves(
        evil,
        [charts.Line(evil, [0, 1], [1.0, 2.0])],
        band=([0, 1], [0.5, 1], [1.5, 3]),
        band_label=evil,
    )
    svg += charts.scatter(evil, evil, evil, [charts.Point(evil, 1, 2, f"/run/{evil}")])
    svg += charts.parallel(evil, [evil, evil], [(evil, [1.0, 2.0], evil)])
    assert "<script" not in svg and "<img" not in svg
    assert svg.count("&lt;script&gt;") >= 8


def test_a_hundred_thousand_steps_draw_as_at_most_twelve_hundred_points_with_every_peak() -> None:
    """How long it takes is measured by scripts/bench catalog, not asserted here."""
    steps = list(range(100_000))
    values = [1.0] * 100_000
    values[77_777] = 50.0  # one spike: a plain subsample would lose it
    svg = charts.curves("loss", [charts.Line("run", steps, values)])
    (points,) = re.findall(r'<polyline class="curve" points="([^"]+)"', svg)
    assert len(points.split()) <= 2 * charts.BUCKETS
    top = min(float(p.split(",")[1]) for p in points.split())  # SVG y grows downwards
    assert top < charts.TOP + 15  # the spike reaches the top of the plot
