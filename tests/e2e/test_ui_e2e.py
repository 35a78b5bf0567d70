"""`rexec ui` and `rexec report` in a real headless Chromium (WebDriver) over real runs.

Screenshots of each page are saved under build/screenshots/ (CI keeps them).
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import SHOTS, browser, by_css, navigated, serve
from tests.e2e.conftest import NO_FRAMEWORKS, Rexec, gen, pinned, spec

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]
__all__ = ["browser"]  # a fixture, used by name

EVIL = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"


def stage(
    root: Path, name: str, job: str, params: dict[str, Any], data: Path | None, rexec: Rexec
) -> Path:
    inputs = [pinned(rexec, "data", data, "/data")] if data is not None else []
    doc = spec(
        name, ["python3", "-c", job], inputs=inputs, determinism=NO_FRAMEWORKS, params=params
    )
    return gen(root / f"{name}-{len(list(root.glob('*.toml')))}.toml", doc)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """prepare → train (lr 0.1) and train (lr 0.2), and a hostile run, all signed."""
    root = tmp_path_factory.mktemp("ui")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REXEC_")}
    env["REXEC_CACHE_DIR"] = str(root / "cache")
    rexec = Rexec(env=env, cwd=root)
    rexec("keygen", "--out", root / "keys" / "k")
    key = root / "keys" / "k.key"
    raw = root / "raw"
    raw.mkdir()
    (raw / "rows.txt").write_text("a\nb\n")
    out = root / "runs"
    prepare = rexec.run(
        stage(
            root,
            "prepare",
            "import os, shutil; os.makedirs('/outputs/d'); shutil.copy('/data/rows.txt', '/outputs/d/')",
            {},
            raw,
            rexec,
        ),
        key,
        out,
    )
    train_job = (
        "import json; p = json.load(open(__import__('os').environ['REXEC_PARAMS']));"
        " json.dump({'acc': 1 - p['lr']}, open('/outputs/metrics.json', 'w'))"
    )
    trains = [
        rexec.run(
            stage(root, "train", train_job, {"lr": lr}, prepare / "outputs" / "d", rexec), key, out
        )
        for lr in (0.1, 0.2)
    ]
    # its metric is a series named by the payload: drawn as a chart, whose text must stay text
    hostile_job = f"import json; json.dump({{{EVIL!r}: [1.5, 2.5, 0.5]}}, open('/outputs/' + {EVIL!r}.replace('/', '_') + '.json', 'w'))"
    hostile = rexec.run(stage(root, "hostile", hostile_job, {"note": EVIL}, None, rexec), key, out)
    return {
        "rexec": rexec,
        "root": root,
        "catalog": root / "cache" / "catalog.sqlite",
        "prepare": prepare.name,
        "trains": [t.name for t in trains],
        "hostile": hostile.name,
    }


@pytest.fixture(scope="module")
def ui(runs: dict[str, Any]) -> Iterator[str]:
    proc, url = serve(runs["catalog"])
    try:
        yield url.rstrip("/")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_ledger_lists_and_filters_runs(ui: str, browser: Any, runs: dict[str, Any]) -> None:
    browser.get(ui + "/")
    listed = [a.text for a in by_css(browser, "#runs a.mono")]
    assert set(listed) == {runs["prepare"], *runs["trains"], runs["hostile"]}
    browser.save_screenshot(str(SHOTS / "ledger.png"))
    (box,) = by_css(browser, "input[name=search]")  # a part of the name
    box.send_keys("rai")
    box.submit()
    navigated(browser, "search=rai")
    assert sorted(a.text for a in by_css(browser, "#runs a.mono")) == sorted(runs["trains"])
    # the params and metrics the train runs share are columns, one row per run
    heads = [h.text for h in by_css(browser, "#runs th.num")]
    assert heads == ["acc", "lr"], heads
    cells = [c.text for c in by_css(browser, "#runs td.num")]
    assert sorted(zip(cells[::2], cells[1::2], strict=True)) == [("0.8", "0.2"), ("0.9", "0.1")]
    browser.save_screenshot(str(SHOTS / "ledger-columns.png"))
    browser.get(ui + "/?where=metrics.acc+%3E+0.85")
    assert [a.text for a in by_css(browser, "#runs a.mono")] == [runs["trains"][0]]


def test_a_run_page_shows_what_its_record_holds(
    ui: str, browser: Any, runs: dict[str, Any]
) -> None:
    from executor.record.reader import load_record

    train = runs["trains"][0]
    record = load_record(runs["root"] / "runs" / train)
    browser.get(f"{ui}/run/{train}")
    assert by_css(browser, "h1.run-id")[0].text == train
    outputs = by_css(browser, "table.outputs")[0].text
    for name, digest in record.outputs.items():
        assert name in outputs and f"sha256:{digest}" in outputs
    assert (
        "lr" in by_css(browser, "table.params")[0].text
        and "0.1" in by_css(browser, "table.params")[0].text
    )
    assert "0.9" in by_css(browser, "table.metrics")[0].text
    assert "key" in by_css(browser, "table.signature")[0].text  # the signer's kind and hint
    (producer,) = by_css(browser, "table.inputs a.producer")
    assert producer.text == runs["prepare"]
    browser.save_screenshot(str(SHOTS / "run.png"))
    producer.click()
    navigated(browser, f"/run/{runs['prepare']}")
    assert by_css(browser, "h1.run-id")[0].text == runs["prepare"]


def test_lineage_nodes_open_their_runs(ui: str, browser: Any, runs: dict[str, Any]) -> None:
    browser.get(f"{ui}/lineage/{runs['prepare']}?direction=downstream")
    nodes = by_css(browser, "#graph svg g.node a")
    assert len(nodes) == 3
    browser.save_screenshot(str(SHOTS / "lineage.png"))
    target = next(
        n
        for n in nodes
        if runs["trains"][1] in (n.get_attribute("href") or n.get_attribute("xlink:href") or "")
    )
    browser.execute_script(
        "arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", target
    )
    navigated(browser, f"/run/{runs['trains'][1]}")
    assert by_css(browser, "h1.run-id")[0].text == runs["trains"][1]


def test_compare_shows_the_changed_param(ui: str, browser: Any, runs: dict[str, Any]) -> None:
    a, b = runs["trains"]
    browser.get(f"{ui}/compare?run={a}&run={b}")
    rows = {r.text.split(" ")[0]: r.text for r in by_css(browser, "#compare tr.changed")}
    assert "params.lr" in rows and "0.1" in rows["params.lr"] and "0.2" in rows["params.lr"]
    assert "seed" not in rows  # the same in both: left out by default
    browser.save_screenshot(str(SHOTS / "compare.png"))


def test_runs_ticked_in_the_ledger_are_compared(
    ui: str, browser: Any, runs: dict[str, Any]
) -> None:
    """Comparing meant typing 2 to 5 run ids: tick any number in the ledger instead."""
    browser.get(ui + "/?name=train")
    for box in by_css(browser, "#runs input[name=run]"):
        box.click()
    by_css(browser, "#compare-picked")[0].click()
    navigated(browser, "/compare?")
    shown = [a.text for a in by_css(browser, "#compare th a")]
    assert sorted(shown) == sorted(runs["trains"])
    rows = {r.text.split(" ")[0] for r in by_css(browser, "#compare tr.changed")}
    assert "params.lr" in rows


def test_a_hostile_record_renders_inert(ui: str, browser: Any, runs: dict[str, Any]) -> None:
    browser.get(f"{ui}/run/{runs['hostile']}")
    time.sleep(0.5)
    assert browser.title != "pwned"
    assert "<script>" in by_css(browser, "table.params")[0].text  # shown as text
    assert "<script>" in by_css(browser, "table.outputs")[0].text
    assert "<img" in by_css(browser, "table.metrics")[0].text
    (chart,) = by_css(browser, "figure.chart svg")  # the payload as the chart's title
    assert "<script>" in chart.find_element("css selector", "text.chart-title").text
    assert by_css(browser, "main script") == [] and by_css(browser, "main img") == []
    browser.save_screenshot(str(SHOTS / "hostile.png"))
    with urllib.request.urlopen(f"{ui}/run/{runs['hostile']}") as response:
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    for path in (
        "/static/../pyproject.toml",
        "/static/%2e%2e/%2e%2e/pyproject.toml",
        "/run/..%2f..%2fetc%2fpasswd",
    ):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(ui + path)
        assert info.value.code == 404, path


def test_the_report_opens_offline(browser: Any, runs: dict[str, Any]) -> None:
    report = runs["root"] / "report.html"
    runs["rexec"]("report", runs["trains"][0], "-o", report, "--catalog", runs["catalog"])
    browser.get(report.as_uri())
    sections = [s.get_attribute("id") for s in by_css(browser, "section")]
    assert f"run-{runs['trains'][0]}" in sections and f"run-{runs['prepare']}" in sections
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    browser.save_screenshot(str(SHOTS / "report.png"))


def test_another_address_warns_and_needs_the_token(runs: dict[str, Any], tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("a-long-enough-test-token\n")
    proc, url = serve(runs["catalog"], "--host", "0.0.0.0", "--token-file", str(token))
    try:
        base = url.split("?")[0]
        assert url.endswith("?token=a-long-enough-test-token")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(base)
        assert info.value.code == 401
        request = urllib.request.Request(
            base, headers={"Authorization": "Bearer a-long-enough-test-token"}
        )
        with urllib.request.urlopen(request) as response:
            assert response.status == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "warning: serving on 0.0.0.0" in err and "token" not in err.split("warning")[0]
    assert "a-long-enough-test-token" not in err  # requests are not logged with their query
