"""Tests for attention_lib.compare: the papermill driver over the training notebook."""

import json

import pytest

from attention_lib import compare
from attention_lib.data import make_image_tree


def test_smoke_comparison_runs_the_notebook_per_attention(tmp_path, capsys):
    results = tmp_path / "results"
    collected = compare.run_comparison(["none", "eca"], tmp_path / "runs", {"arch": "resnet18", "seed": 1},
                                       smoke=True, results_dir=results)
    assert set(collected) == {"none", "eca"}
    for name, metrics in collected.items():
        assert metrics["smoke"] is True and metrics["finished"] is True
        assert metrics["config"]["attention"] == (None if name == "none" else name)
        assert (tmp_path / "runs" / f"resnet18-{name}" / "training.ipynb").exists()
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


def test_unknown_attention():
    with pytest.raises(ValueError, match=r"unknown attention \['transformer'\]"):
        compare.run_comparison(["transformer"], None, {}, smoke=True)
