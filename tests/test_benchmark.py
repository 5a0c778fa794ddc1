"""Tests for attention_lib.benchmark (time and memory against timm)."""

import json

import pytest
import torch
from torch import nn

from attention_lib import benchmark

pytest.importorskip("timm")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny shapes: one thread avoids thread wake-ups dominating, and is fast on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Double(nn.Module):
    def forward(self, x):
        return x * 2


class SiLU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class Recorder(nn.Module):
    """Appends its name to a shared log at every forward pass."""

    def __init__(self, name, log):
        super().__init__()
        self.name, self.log = name, log

    def forward(self, x):
        self.log.append(self.name)
        return x * 2


def test_activation_bytes_counts_output_and_saved_tensors():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    size = x.numel() * x.element_size()
    assert benchmark.activation_bytes(Double(), x) == size  # only the output
    assert benchmark.activation_bytes(SiLU(), x) == 2 * size  # sigmoid(x) is saved, plus the output


def test_time_forward_backward_returns_one_time_per_repeat():
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    times = benchmark.time_forward_backward(nn.Conv2d(8, 8, 1), x, warmup=1, repeats=4)
    assert len(times) == 4 and all(t > 0 for t in times)


def test_time_interleaved_alternates_the_order():
    log = []
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    times = benchmark.time_interleaved({"a": Recorder("a", log), "b": Recorder("b", log)}, x, warmup=1, repeats=4)
    assert {name: len(t) for name, t in times.items()} == {"a": 4, "b": 4}
    # warm-up a b, then a b | b a | a b | b a: load spikes fall on both alike.
    assert "".join(log) == "ab" + "abbaabba"


def test_time_interleaved_goes_on_until_the_minimum_time():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    times = benchmark.time_interleaved({"a": Double(), "b": SiLU()}, x, warmup=0, repeats=2, min_seconds=0.02)
    assert len(times["a"]) == len(times["b"]) > 2  # tiny modules: many more passes than 2
    assert min(sum(t) for t in times.values()) >= 0.02 or len(times["a"]) == 200


def test_quick_run_covers_every_case_and_shape():
    rows = benchmark.run(batch=2, stages=benchmark.QUICK_STAGES, warmup=1, repeats=2)
    cases = [case for builder in benchmark.CASES for case in builder()]
    names = {case.name for case in cases}
    assert {"SE", "ECA", "CBAM", "GE-θ-", "GE-θ+ e=8", "SK", "BAM"} <= names
    assert {r["module"] for r in rows} == names
    assert len(rows) == len(names) * len(benchmark.QUICK_STAGES)
    without_timm = {case.name for case in cases if case.timm is None}
    assert without_timm == {"BAM"}  # timm has no BAM
    for row in rows:
        assert row["ours_ms"] > 0 and row["ours_memory"] >= 1.0 and row["repeats"] == 2
        if row["module"] in without_timm:
            assert row["timm_ms"] is None and row["ratio"] is None
            continue
        assert row["ratio"] == pytest.approx(row["ours_ms"] / row["timm_ms"])
        assert row["timm_memory"] >= 1.0
        # Ours never keeps more for the backward pass than timm's, beyond small tensors.
        assert row["ours_memory"] <= row["timm_memory"] + 0.05, row
    sk = [row for row in rows if row["module"] == "SK"]
    assert all(row["ours_memory"] < row["timm_memory"] - 1 for row in sk)  # no stacked copy of the branches
    table = benchmark.format_table(rows)
    assert "ours/timm" in table and "SE" in table
    assert "BAM: not compared" in table


def test_top_operators_measures_where_the_time_goes():
    x = torch.randn(4, 8, 16, 16, requires_grad=True)
    top = benchmark.top_operators(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()), x, count=3)
    assert len(top) == 3 and all(0 <= share <= 1 for _, share in top)
    assert [share for _, share in top] == sorted((share for _, share in top), reverse=True)
    assert any("convolution" in name for name, _ in top)


def test_profile_rows_are_printed():
    rows = benchmark.run(batch=2, stages=[(64, 8)], warmup=0, repeats=1, modules=["SE"], profile=True)
    row = rows[0]
    if row["ratio"] > benchmark.STRETCH_TARGET:
        assert row["ours_top"] and row["timm_top"]
        assert "profile SE c=64 ours:" in benchmark.format_table(rows)
    else:
        assert "ours_top" not in row
    row = dict(row, ratio=2.0, ours_top=[("aten::mul", 0.5)], timm_top=[("aten::add", 0.25)])
    table = benchmark.format_table([row])
    assert "profile SE c=64 ours: aten::mul 50%" in table and "profile SE c=64 timm: aten::add 25%" in table


def _row(module, channels, ratio):
    return {"module": module, "channels": channels, "ratio": ratio}


def test_summary_says_which_targets_are_met_and_why_not():
    rows = [
        _row("SE", 256, 0.6), _row("SE", 2048, 0.8),
        _row("SK", 256, 0.95), _row("SK", 2048, 0.85),
        _row("CBAM", 256, 1.1), _row("CBAM", 2048, 0.7),
        _row("BAM", 256, None),
    ]
    lines = dict(line.split(": ", 1) for line in benchmark.summarize(rows))
    assert lines["SE"].startswith("ours/timm <= 0.9 at every shape")
    assert "above 0.9 at c=256" in lines["SK"] and "why:" in lines["SK"]
    assert "above 1.0 at c=256 (1.10)" in lines["CBAM"]
    assert lines["BAM"].startswith("not compared")


def test_cli_quick_writes_json(tmp_path, capsys):
    path = tmp_path / "out" / "bench.json"
    assert benchmark.main(["--quick", "--batch", "2", "--repeats", "2", "--warmup", "0",
                           "--modules", "SE,BAM", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ours/timm" in out and f"wrote {path}" in out
    data = json.loads(path.read_text())
    assert data["meta"]["batch"] == 2 and data["meta"]["timm"] and data["meta"]["torch"] == torch.__version__
    assert "load_average_before" in data["meta"] and data["meta"]["threads"] == torch.get_num_threads()
    assert "--json" in data["meta"]["command"]
    assert [(r["module"], r["channels"]) for r in data["rows"]] == [
        ("SE", 64), ("SE", 128), ("BAM", 64), ("BAM", 128)]
    assert data["rows"][2]["ratio"] is None


def test_cli_rejects_bad_numbers_and_unknown_modules(capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["--batch", "0"])
    with pytest.raises(SystemExit):
        benchmark.main(["--threads", "0"])
    with pytest.raises(SystemExit):
        benchmark.main(["--min-time", "-1"])
    with pytest.raises(SystemExit):
        benchmark.main(["--modules", "SE,Nope"])
    assert "unknown module" in capsys.readouterr().err
