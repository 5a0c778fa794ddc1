"""Tests for attention_lib.compare: one training run per attention, results collected."""

import json

import pytest

from attention_lib import compare
from attention_lib.data import make_image_tree
from attention_lib.train import ConfigError


def test_smoke_comparison_trains_once_per_attention(tmp_path, capsys):
    results = tmp_path / "results"
    collected = compare.run_comparison(["none", "eca"], tmp_path / "runs", {"arch": "resnet18", "seed": 1},
                                       smoke=True, results_dir=results)
    assert set(collected) == {"none", "eca"}
    for name, metrics in collected.items():
        assert metrics["smoke"] is True and metrics["finished"] is True
        assert metrics["config"]["attention"] == (None if name == "none" else name)
        assert (tmp_path / "runs" / f"resnet18-{name}" / "checkpoint.pt").exists()
    assert not results.exists()  # smoke runs are never results
    assert "smoke run - not a result" in capsys.readouterr().out


def test_real_runs_are_collected_into_results(tmp_path):
    """The non-smoke path, exercised on a generated tree (the numbers mean nothing)."""
    data = make_image_tree(tmp_path / "data", "folder", classes=2, per_class=4, size=40)
    parameters = {"arch": "resnet18", "dataset": "folder", "data_root": str(data), "image_size": 32,
                  "epochs": 1, "batch_size": 4, "num_workers": 0, "channels_last": False}
    compare.run_comparison(["se"], tmp_path / "runs", parameters, smoke=False, results_dir=tmp_path / "results")
    copied = json.loads((tmp_path / "results" / "resnet18-se.json").read_text())
    assert copied["smoke"] is False and copied["config"]["dataset"] == "folder"
    assert copied["command"] and copied["hardware"] and copied["started"]


def test_unknown_attention_or_parameter_is_refused_before_any_run(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown attention 'transformer'; choose from none, se"):
        compare.run_comparison(["transformer"], tmp_path, {}, smoke=True)
    with pytest.raises(ConfigError, match="epochs must be a positive int"):
        compare.run_comparison(["none", "se"], tmp_path, {"epochs": 0}, smoke=True)
    assert list(tmp_path.iterdir()) == []


def test_command_line_refuses_bad_input_in_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        compare.main(["--smoke", "--epochs", "0"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "epochs must be a positive int" in err
