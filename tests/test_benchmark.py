"""Tests for attention_lib.benchmark (time and memory against timm)."""

import pytest
import torch
from torch import nn

from attention_lib import benchmark


class Double(nn.Module):
    def forward(self, x):
        return x * 2


class SiLU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


def test_activation_bytes_counts_output_and_saved_tensors():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    size = x.numel() * x.element_size()
    assert benchmark.activation_bytes(Double(), x) == size  # only the output
    assert benchmark.activation_bytes(SiLU(), x) == 2 * size  # sigmoid(x) is saved, plus the output


def test_time_forward_backward_returns_one_time_per_repeat():
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    times = benchmark.time_forward_backward(nn.Conv2d(8, 8, 1), x, warmup=1, repeats=4)
    assert len(times) == 4 and all(t > 0 for t in times)


def test_quick_run_covers_every_case_and_shape(capsys):
    rows = benchmark.run(batch=2, stages=benchmark.QUICK_STAGES, warmup=1, repeats=2)
    names = {case.name for builder in benchmark.CASES for case in builder()}
    assert {r["module"] for r in rows} == names
    assert len(rows) == len(names) * len(benchmark.QUICK_STAGES)
    for row in rows:
        assert row["ratio"] == pytest.approx(row["ours_ms"] / row["timm_ms"])
        assert row["ours_memory"] >= 1.0 and row["timm_memory"] >= 1.0
    table = benchmark.format_table(rows)
    assert "ours/timm" in table and "SE" in table


def test_cli_quick(capsys):
    assert benchmark.main(["--quick", "--batch", "2", "--repeats", "2", "--warmup", "0"]) == 0
    assert "ours/timm" in capsys.readouterr().out


def test_cli_rejects_bad_numbers():
    with pytest.raises(SystemExit):
        benchmark.main(["--batch", "0"])
