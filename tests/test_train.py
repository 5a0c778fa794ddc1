"""Tests for attention_lib.train: configuration, metrics, checkpoint/resume, torchrun."""

import json
import os
import subprocess
import sys

import pytest
import torch

from attention_lib.data import make_image_tree
from attention_lib.train import TrainConfig, notebook_config, parse_args, should_train, train


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_image_tree(root, "folder", classes=3, per_class=6, size=40)
    return root


def tiny_config(data_root, output_dir, **overrides):
    options = dict(arch="resnet18", attention="se", dataset="folder", data_root=str(data_root), image_size=32,
                   epochs=3, batch_size=4, lr=0.05, num_workers=0, output_dir=str(output_dir), progress=False,
                   device="cpu", channels_last=False, smoke=True)
    options.update(overrides)
    return TrainConfig(**options)


class Interrupt(Exception):
    pass


def test_metrics_file_is_complete(data_root, tmp_path):
    metrics = train(tiny_config(data_root, tmp_path, epochs=2))
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["finished"] is True and written["smoke"] is True
    assert [e["epoch"] for e in written["epochs"]] == [1, 2]
    for key in ("train_loss", "val_loss", "top1", "top5", "images_per_second", "peak_memory_mb", "epoch_seconds"):
        assert key in written["epochs"][-1]
    assert 0.0 <= written["epochs"][-1]["top1"] <= written["epochs"][-1]["top5"] <= 1.0
    assert written["hardware"]["device"] == "cpu" and written["torch"] == torch.__version__
    assert written["config"]["attention"] == "se" and written["command"]
    assert metrics["epochs"] == written["epochs"]
    assert (tmp_path / "checkpoint.pt").exists()


def test_interrupted_run_resumes_to_the_same_result(data_root, tmp_path):
    """Killed in the middle of epoch 2, restarted: same final metrics as an uninterrupted run."""
    reference = train(tiny_config(data_root, tmp_path / "reference"))

    def interrupt(epoch, step):
        if epoch == 1 and step == 1:
            raise Interrupt

    config = tiny_config(data_root, tmp_path / "interrupted")
    with pytest.raises(Interrupt):
        train(config, on_step=interrupt)
    saved = json.loads((tmp_path / "interrupted" / "metrics.json").read_text())
    assert [e["epoch"] for e in saved["epochs"]] == [1]  # the finished epoch is kept
    resumed = train(config)
    assert resumed["resumed_from_epoch"] == 1
    keys = ("train_loss", "val_loss", "top1", "top5")
    assert [[e[k] for k in keys] for e in resumed["epochs"]] == [[e[k] for k in keys] for e in reference["epochs"]]
    final_reference = torch.load(tmp_path / "reference" / "checkpoint.pt", weights_only=False)["model"]
    final_resumed = torch.load(tmp_path / "interrupted" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(final_reference[k], final_resumed[k]) for k in final_reference)


def test_finished_run_is_not_trained_again(data_root, tmp_path):
    train(tiny_config(data_root, tmp_path, epochs=1))
    calls = []
    again = train(tiny_config(data_root, tmp_path, epochs=1), on_step=lambda e, s: calls.append(s))
    assert calls == [] and len(again["epochs"]) == 1


def test_max_steps_per_epoch(data_root, tmp_path):
    steps = []
    train(tiny_config(data_root, tmp_path, epochs=1, max_steps_per_epoch=2), on_step=lambda e, s: steps.append(s))
    assert steps == [0, 1]


@pytest.mark.parametrize("field,value,message", [
    ("epochs", 0, "epochs must be a positive int"),
    ("batch_size", 2.5, "batch_size must be a positive int"),
    ("lr", -1.0, "lr must be a finite number >= 0"),
    ("label_smoothing", 1.0, "label_smoothing must be < 1"),
    ("num_workers", -1, "num_workers must be an int >= 0"),
    ("max_steps_per_epoch", 0, "max_steps_per_epoch must be None or a positive int"),
])
def test_bad_configuration(field, value, message, tmp_path):
    config = TrainConfig(output_dir=str(tmp_path), **{field: value})
    with pytest.raises(ValueError, match=message):
        config.validate()


def test_missing_dataset_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(tiny_config(tmp_path / "missing", tmp_path / "out"))


def test_command_line_matches_the_config():
    config = parse_args(["--arch", "resnet34", "--attention", "eca", "--epochs", "5", "--no-amp",
                         "--attention-kwargs", '{"kernel_size": 5}', "--max-steps-per-epoch", "3"])
    assert (config.arch, config.attention, config.epochs, config.amp) == ("resnet34", "eca", 5, False)
    assert config.attention_kwargs == {"kernel_size": 5} and config.max_steps_per_epoch == 3
    assert parse_args(["--attention", "none"]).attention is None
    assert parse_args([]) == TrainConfig()


def test_torchrun_two_processes_with_gloo(data_root, tmp_path, venv_bin):
    """DistributedDataParallel on CPU: two processes, the gloo backend, a distributed sampler."""
    command = [str(venv_bin / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "attention_lib.train",
               "--arch", "resnet18", "--attention", "eca", "--dataset", "folder", "--data-root", str(data_root),
               "--image-size", "32", "--epochs", "1", "--batch-size", "3", "--num-workers", "0",
               "--output-dir", str(tmp_path), "--no-progress", "--device", "cpu", "--smoke"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["finished"] is True
    assert result.stdout.count("epoch 1/1") == 1  # only rank 0 reports


def test_notebook_config_in_smoke_mode_is_tiny_and_marked(capsys):
    config = notebook_config(smoke=True, arch="resnet50", attention="cbam", epochs=20, output_dir="runs/x")
    assert (config.arch, config.dataset, config.epochs, config.max_steps_per_epoch) == ("resnet18", "folder", 2, 2)
    assert config.smoke is True and os.path.isabs(config.output_dir) and os.path.isdir(config.data_root)
    assert "SMOKE RUN - not a result" in capsys.readouterr().out
    real = notebook_config(smoke=False, arch="resnet50", attention="cbam")
    assert (real.arch, real.dataset, real.epochs, real.smoke) == ("resnet50", "imagenette", 20, False)
    assert real.output_dir == "runs/resnet50-cbam"
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        notebook_config(smoke=False, epochs=0)


def test_should_train(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert should_train(TrainConfig(), run_training=None) is False
    assert "No GPU here" in capsys.readouterr().out
    assert should_train(TrainConfig(smoke=True)) is True
    assert should_train(TrainConfig(), run_training=True) is True
    assert should_train(TrainConfig(smoke=True), run_training=False) is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert should_train(TrainConfig()) is True
