"""Metrics from three unmodified kinds of trainer, end to end: one that prints them (a word
language model), one that writes TensorBoard event files (a character transformer, through
tensorboardX), one that dumps JSON (a scikit-learn-style script). Each runs with `--seeds 3`
and is rerun on corrected data; the rerun judges each metric change against the seeds'
spread. Then the web view shows them in a real Chromium: the ledger, a run's curves over its
seed band, an overlay of several runs, a metric against a param (screenshots kept)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import SHOTS, browser, by_css, navigated, serve
from tests.e2e.conftest import BASE_IMAGE, NO_FRAMEWORKS, REPO, Rexec, gen, pinned, spec

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]
__all__ = ["browser"]  # a fixture, used by name

TRAINERS = REPO / "tests" / "e2e" / "trainers"
# Each trainer, the metrics declaration it needs (none: its JSON is read as it is), and the
# metric the test follows through the seeds and the rerun.
KINDS: dict[str, tuple[str, list[dict[str, Any]], str]] = {
    "word-lm": (
        "word_lm.py",
        [
            {
                "stdout": r"end of epoch\s+(?P<step>\d+) .*valid ppl\s+(?P<val_ppl>[0-9.]+)",
                "summary": "min",
            },
            {"stdout": r"^\| epoch .*\| ppl\s+(?P<train_ppl>[0-9.]+)"},  # by batch line
        ],
        "stdout:val_ppl",
    ),
    "char-transformer": (
        "char_transformer.py",
        [{"tensorboard": "tb", "summaries": {"val/loss": "min"}}],
        "tb:val/loss",
    ),
    "sklearn": ("sklearn_script.py", [], "scores.json:accuracy"),
}
# The first line of the corpus shifts each trainer's metric: the corrected data moves the
# word model's perplexity a little (within its seeds' spread) and the others' a lot.
CORRECTIONS = {"word-lm": "-4", "char-transformer": "900", "sklearn": "900"}


def tensorboard_image(root: Path) -> dict[str, Any]:
    """The base image plus tensorboardX and protobuf as pip installed them here (the pinned
    test dependencies): the files of each distribution, copied into the build context."""
    context = root / "tb-image"
    site = context / "site"
    for name in ("tensorboardX", "protobuf", "packaging"):
        dist = importlib.metadata.distribution(name)
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if source.is_file() and ".." not in file.parts:
                (site / file).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, site / file)
    (context / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY site /usr/local/lib/python3.11/dist-packages/\n"
    )
    return {"build": {"dockerfile": str(context / "Dockerfile"), "context": str(context),
                      "args": {"BASE_IMAGE": BASE_IMAGE}}}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each kind with three seeds, and each first seed rerun on its corrected corpus."""
    root = tmp_path_factory.mktemp("metrics")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REXEC_")}
    env["REXEC_CACHE_DIR"] = str(root / "cache")
    rexec = Rexec(env=env, cwd=root)
    rexec("keygen", "--out", root / "keys" / "k")
    key, pub = root / "keys" / "k.key", root / "keys" / "k.pub"
    data = root / "data"
    data.mkdir()
    (data / "corpus.txt").write_text("0\nthe cat sat on the mat\n")
    entry = pinned(rexec, "data", data, "/data")
    found: dict[str, Any] = {"rexec": rexec, "root": root, "pub": pub}
    for kind, (script, declared, metric) in KINDS.items():
        doc = spec(
            kind,
            ["python3", f"/code/{script}"],
            inputs=[entry],
            determinism=NO_FRAMEWORKS,
            code={"path": str(TRAINERS), "mount": "/code"},
            **({"image": tensorboard_image(root)} if kind == "char-transformer" else {}),
            # its event files' names and bytes hold the time and host: volatile by nature
            **(
                {"outputs": {"volatile": ["events.out.tfevents.*"]}}
                if kind == "char-transformer"
                else {}
            ),
            **({"metrics": declared} if declared else {}),
            **({"params": {"lr": 20.0}} if kind == "word-lm" else {}),
        )
        if kind == "word-lm":
            doc["run"]["params_as"] = "flags"  # `--lr 20` appended, as the trainer takes it
        path = gen(root / f"{kind}.toml", doc)
        started = time.perf_counter()
        seeds = rexec(
            "run", path, "--seeds", "3", "--signing-key", key, "--runs-dir", root / "runs",
            "--allow-dirty", "--json", "-q",
        )  # fmt: skip
        seeded = json.loads(seeds.stdout)
        fixed = root / f"fixed-{kind}"
        fixed.mkdir()
        (fixed / "corpus.txt").write_text(f"{CORRECTIONS[kind]}\nthe cat sat on the mat\n")
        first = Path(seeded["runs"][0]["run_dir"])
        rerun = rexec(
            "rerun", first, "--input", f"data={fixed}", "--key", pub, "--signing-key", key,
            "--runs-dir", root / "runs", "--json", "-q",
        )  # fmt: skip
        other_lr = [
            rexec.run(path, key, root / "runs", "--allow-dirty", "-q", "--param", f"lr={lr}")
            for lr in ((10.0, 40.0) if kind == "word-lm" else ())
        ]
        found[kind] = {
            "spec": path,
            "otherLr": other_lr,
            "metric": metric,
            "seeds": seeded,
            "rerun": json.loads(rerun.stdout),
            "text": rexec("show", first).stdout,
            "seconds": time.perf_counter() - started,
        }
    # verified under the key, so compare and the web view count the seeds as a reference
    rexec("catalog", "index", root / "runs", "--rebuild", "--key", pub, "--verify")
    return found


def spread_of(kind: dict[str, Any]) -> dict[str, Any]:
    file, key = kind["metric"].split(":", 1)
    (found,) = [s for s in kind["seeds"]["spread"] if (s["file"], s["key"]) == (file, key)]
    return dict(found)


@pytest.mark.parametrize("kind", list(KINDS))
def test_seeds_give_each_trainer_a_spread_of_its_metric(trained: dict[str, Any], kind: str) -> None:
    spread = spread_of(trained[kind])
    assert len(spread["values"]) == 3 and len(set(spread["values"])) == 3  # seeds differ
    assert spread["stdev"] == pytest.approx(statistics.stdev(spread["values"]))


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_rerun_on_corrected_data_judges_the_change_against_the_seeds(
    trained: dict[str, Any], kind: str
) -> None:
    done = trained[kind]
    file, key = done["metric"].split(":", 1)
    (change,) = [m for m in done["rerun"]["metrics"] if (m["file"], m["key"]) == (file, key)]
    spread = spread_of(done)
    assert change["before"] == spread["values"][0]  # the first seed's run was rerun
    assert change["after"] != change["before"]
    noise = change["noise"]
    assert sorted(done["rerun"]["seedReference"]["seeds"]) == [1, 2, 3]
    assert noise["stdev"] == pytest.approx(spread["stdev"])
    assert noise["sds"] == pytest.approx(abs(change["after"] - change["before"]) / spread["stdev"])
    expected = "within noise" if noise["sds"] <= 2 else "beyond noise"
    assert noise["verdict"] == expected
    # the corrections were chosen so: a small shift for the word model, large ones else
    assert expected == ("within noise" if kind == "word-lm" else "beyond noise")


def test_series_are_series_and_show_prints_a_curves_numbers(trained: dict[str, Any]) -> None:
    """The word model's perplexity has 6 points (epochs), the transformer's train loss 300
    (steps), the fold scores 5: each one series, never a metric per index."""
    word = trained["word-lm"]["text"]
    assert "stdout val_ppl = " in word and "(min of 6 points, steps 1→6" in word
    assert "train_ppl" in word and "of 12 points, steps 0→11" in word
    char = trained["char-transformer"]["text"]
    assert "tb train/loss = " in char and "of 300 points, steps 1→300" in char
    assert "tb val/loss = " in char and "(min of 6 points, steps 50→300" in char
    sk = trained["sklearn"]["text"]
    assert "scores.json cv.fold_accuracy = " in sk and "of 5 points" in sk
    assert "[0]" not in sk


def test_a_trainer_writing_tensorboard_replays_bitwise_its_event_file_volatile(
    trained: dict[str, Any],
) -> None:
    """Its event file's name and bytes carry the time and host: replay said
    `not-reproduced` (exit 7) of a bit-identical run. Declared volatile, it is reported."""
    rexec, root = trained["rexec"], trained["root"]
    first = Path(trained["char-transformer"]["seeds"]["runs"][0]["run_dir"])
    out = rexec(
        "replay", first, "--key", trained["pub"], "--signing-key", root / "keys" / "k.key",
        "--runs-dir", root / "replays", "--json", "-q",
    )  # fmt: skip
    doc = json.loads(out.stdout)
    assert doc["verdict"] == "reproduced-bitwise"
    status = {f["name"]: f["status"] for f in doc["outputs"]}
    volatile = [n for n, s in status.items() if s == "volatile"]
    assert volatile and all("events.out.tfevents." in n for n in volatile)
    assert {s for n, s in status.items() if n not in volatile} == {"identical"}
    verdict = json.loads((Path(doc["replay"]["run_dir"]) / "verdict.json").read_bytes())
    assert {f"output:{n}" for n in volatile} <= set(verdict["predicate"]["warnedTests"])


@pytest.fixture(scope="module")
def ui(trained: dict[str, Any]) -> Any:
    proc, url = serve(trained["root"] / "cache" / "catalog.sqlite")
    try:
        yield url.rstrip("/")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_web_view_draws_curves_bands_overlays_and_scatters(
    trained: dict[str, Any], ui: str, browser: Any
) -> None:
    word = trained["word-lm"]
    runs = [Path(r["run_dir"]).name for r in word["seeds"]["runs"]]
    browser.get(f"{ui}/?name=word-lm")
    heads = [h.text for h in by_css(browser, "#runs th.num")]
    assert "val_ppl" in heads and "train_ppl" in heads
    browser.save_screenshot(str(SHOTS / "metrics-ledger.png"))
    browser.get(f"{ui}/run/{runs[0]}")
    charts = by_css(browser, "figure.chart svg")
    assert len(charts) == 2 and len(by_css(browser, "figure.chart polygon.band")) == 2
    browser.execute_script("arguments[0].scrollIntoView()", by_css(browser, "table.metrics")[0])
    browser.save_screenshot(str(SHOTS / "metrics-run-seed-band.png"))
    browser.get(f"{ui}/compare?" + "&".join(f"run={r}" for r in runs))
    assert len(by_css(browser, "figure.chart polyline.curve")) == 3 * 2  # 3 runs x 2 metrics
    verdicts = [n.text for n in by_css(browser, "#compare .noise")]
    assert verdicts and all(v.endswith(("within noise", "beyond noise")) for v in verdicts)
    browser.execute_script("arguments[0].scrollIntoView()", by_css(browser, "#compare")[0])
    browser.save_screenshot(str(SHOTS / "metrics-overlay.png"))
    char = [Path(r["run_dir"]).name for r in trained["char-transformer"]["seeds"]["runs"]]
    browser.get(f"{ui}/run/{char[0]}")
    assert len(by_css(browser, "figure.chart svg")) == 2  # train/loss and val/loss
    browser.execute_script("arguments[0].scrollIntoView()", by_css(browser, "table.metrics")[0])
    browser.save_screenshot(str(SHOTS / "metrics-tensorboard-curves.png"))
    browser.get(f"{ui}/plots?name=word-lm&metric=metrics.stdout:val_ppl")
    # 3 seeds and the rerun at lr 20, one run each at lr 10 and 40: a dot and a line per run
    named = [*runs, *(p.name for p in word["otherLr"]), word["rerun"]["run"]["run_id"]]
    assert len(by_css(browser, "figure.scatter circle.dot")) == len(named) == 6
    assert len(by_css(browser, "figure.parallel polyline.run")) == 6
    browser.save_screenshot(str(SHOTS / "metrics-scatter-parallel.png"))
    by_css(browser, "figure.scatter a")[0].click()
    navigated(browser, "/run/")
    assert by_css(browser, "h1.run-id")[0].text in named
