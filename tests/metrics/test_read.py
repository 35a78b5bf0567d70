"""Series from what trainers already write: stdout, JSON, JSON Lines, CSV, TensorBoard."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
from tensorboardX import SummaryWriter
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.proto.tensor_pb2 import TensorProto

from executor.metrics import Source, from_events, from_json, from_log, parse_sources
from executor.metrics.read import MAX_LINE, from_csv, from_jsonl

# The lines an unmodified word-language-model trainer prints (pytorch/examples).
LSTM_LOG = b"""\
| epoch   1 |   200/ 2983 batches | lr 20.00 | ms/batch 18.21 | loss  7.63 | ppl  2063.12
-----------------------------------------------------------------------------------------
| end of epoch   1 | time: 58.91s | valid loss  6.83 | valid ppl   921.50
-----------------------------------------------------------------------------------------
| epoch   2 |   200/ 2983 batches | lr 20.00 | ms/batch 18.20 | loss  6.91 | ppl  1002.41
| end of epoch   2 | time: 58.77s | valid loss  6.80 | valid ppl   897.30
"""


def source(**entry: object) -> Source:
    errors: list[str] = []
    found = parse_sources([entry], "metrics", lambda key, msg: errors.append(f"{key}: {msg}"))
    assert errors == [] and len(found) == 1
    return found[0]


def test_a_pattern_reads_named_groups_from_the_log_as_series_by_step() -> None:
    rule = source(
        stdout=r"end of epoch\s+(?P<step>\d+) .*valid ppl\s+(?P<val_ppl>[0-9.]+)", summary="min"
    )
    (series,) = from_log(LSTM_LOG.splitlines(), rule)
    assert (series.source, series.name) == ("stdout", "val_ppl")
    assert series.steps == (1.0, 2.0) and series.values == (921.5, 897.3)
    assert series.value == 897.3  # declared: the least


def test_a_name_and_value_pair_reads_many_metrics_with_one_pattern() -> None:
    rule = source(stdout=r"^step=(?P<step>\d+) (?P<name>\w+)=(?P<value>\S+)")
    lines = [
        b"step=1 loss=0.5",
        b"step=1 acc=0.1",
        b"step=2 loss=0.25",
        b"noise",
        b"step=3 loss=nan",
    ]
    found = {s.name: s for s in from_log(lines, rule)}
    assert found["loss"].values == (0.5, 0.25) and found["loss"].steps == (1.0, 2.0)
    assert found["acc"].values == (0.1,)


def test_without_a_step_group_the_step_is_the_match_count_and_long_lines_are_skipped() -> None:
    rule = source(stdout=r"loss (?P<loss>[0-9.]+)")
    lines = [b"loss 3", b"x" * MAX_LINE + b" loss 9", b"loss 1"]
    (series,) = from_log(lines, rule)
    assert series.steps == (0.0, 1.0) and series.values == (3.0, 1.0)


def test_a_hostile_pattern_gives_up_within_its_budget() -> None:
    """The classic catastrophic pattern over one line of 4,000 characters would backtrack
    for longer than the universe's age: it stops at the budget and gives nothing."""
    rule = source(stdout=r"^(?P<loss>(a+)+)+$")
    started = time.perf_counter()
    assert from_log([b"1"] * 100 + [b"a" * 4000 + b"!"], rule, budget=0.3) == []
    assert time.perf_counter() - started < 1.0


def test_json_numbers_are_metrics_and_lists_are_series_not_a_metric_per_index() -> None:
    doc = {
        "acc": 0.9,
        "history": {"loss": [3.0, 2.0, 1.5]},
        "log": [{"step": 10, "val": 0.5}, {"step": 20, "val": 0.4}],
        "weights": [[0.1, 0.2], [0.3, 0.4]],
        "tag": "x",
        "ok": True,
    }
    found = {s.name: s for s in from_json(json.dumps(doc).encode(), "m.json")}
    assert set(found) == {"acc", "history.loss", "log.val"}
    assert found["acc"].values == (0.9,) and not found["acc"].is_curve
    assert found["history.loss"].steps == (0.0, 1.0, 2.0)
    assert found["log.val"].steps == (10.0, 20.0) and found["log.val"].value == 0.4


def test_json_lines_and_csv_give_a_series_per_column_by_their_step_column() -> None:
    lines = b'{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.0, "acc": 0.5}\nnot json\n'
    found = {s.name: s for s in from_jsonl(lines, "h.jsonl")}
    assert found["loss"].steps == (1.0, 2.0) and found["acc"].steps == (2.0,)
    table = b"epoch,train_loss,note\n1,0.9,a\n2,0.7,b\n"
    rule = source(file="h.csv", step="epoch", summary={"train_loss": "min"})
    (series,) = from_csv(table, rule.label, rule)
    assert series.name == "train_loss" and series.steps == (1.0, 2.0) and series.value == 0.7


def test_tensorboard_scalars_written_by_tensorboardx_old_and_new_style(tmp_path: Path) -> None:
    """Both forms trainers write: simple_value (PyTorch's and tensorboardX's add_scalar) and
    a scalar tensor (tf.summary.scalar: float_val, or tensor_content of a double)."""
    writer = SummaryWriter(str(tmp_path))
    for step in range(1, 4):
        writer.add_scalar("train/loss", 1.0 / step, step)
        as_float = TensorProto(dtype=1, float_val=[900.0 + step])  # DT_FLOAT
        as_bytes = TensorProto(dtype=2, tensor_content=struct.pack("<d", 0.25 * step))
        values = [Summary.Value(tag="val/ppl", tensor=as_float)]
        values.append(Summary.Value(tag="val/acc", tensor=as_bytes))
        writer.file_writer.add_summary(Summary(value=values), step)
    writer.add_text("note", "not a scalar", 1)
    writer.close()
    (events,) = tmp_path.glob("events.out.tfevents.*")
    found = {s.name: s for s in from_events(events.read_bytes(), "tb")}
    assert set(found) == {"train/loss", "val/ppl", "val/acc"}
    assert found["train/loss"].steps == (1.0, 2.0, 3.0)
    assert found["train/loss"].values == pytest.approx((1.0, 0.5, 1 / 3))
    assert found["val/ppl"].values == (901.0, 902.0, 903.0)
    assert found["val/acc"].values == (0.25, 0.5, 0.75)


def test_a_truncated_or_garbled_event_file_gives_what_it_can_and_never_raises(
    tmp_path: Path,
) -> None:
    writer = SummaryWriter(str(tmp_path))
    for step in range(5):
        writer.add_scalar("loss", float(step), step)
    writer.close()
    data = next(tmp_path.glob("events.*")).read_bytes()
    (cut,) = from_events(data[:-7], "tb")  # the writer killed mid-record
    assert cut.values == (0.0, 1.0, 2.0, 3.0)
    for garbage in (b"\xff" * 64, data[:12] + b"\xff" * 40, (2**63).to_bytes(8, "little") * 3):
        assert isinstance(from_events(garbage, "tb"), list)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"stdout": "(?P<loss>", "summary": "last"}, "not a regular expression"),
        ({"stdout": r"loss \d+"}, "name the numbers it reads"),
        ({"stdout": r"(?P<name>\w+)"}, "go together"),
        ({"file": "../x.csv"}, "under the outputs directory"),
        ({"file": "weights.npy"}, "tensorboard = DIR"),
        ({"file": "a.csv", "tensorboard": "tb"}, "set exactly one of"),
        ({"file": "a.csv", "summary": "mean"}, "expected one of"),
        ({"tensorboard": "tb", "step": "epoch"}, "a `file` entry's key"),
        ({"file": "a.csv", "colour": 1}, "metrics[0].colour: unknown key"),
    ],
)
def test_a_bad_declaration_names_its_key_and_what_to_write(
    entry: dict[str, object], expected: str
) -> None:
    errors: list[str] = []
    parse_sources([entry], "metrics", lambda key, msg: errors.append(f"{key}: {msg}"))
    assert any(expected in e and e.startswith("metrics[0]") for e in errors), errors


def test_a_recorded_declaration_reads_back_and_a_hostile_one_reads_as_none() -> None:
    rule = source(tensorboard="tb", summary={"loss": "min"})
    assert Source.from_json(rule.to_json()) == rule
    assert Source.from_json({"stdout": "(?P<a>x)", "evil": 1}) is None
    assert Source.from_json("not a table") is None
