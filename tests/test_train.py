"""Tests for attention_lib.train: configuration, metrics, checkpoint/resume, torchrun.

The tests named test_defectN_... guard the defects of the "training you can trust" issue,
each one failing on the code before its fix.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from attention_lib import checkpoint
from attention_lib import train as train_module
from attention_lib.data import build_datasets, make_image_tree
from attention_lib.train import ConfigError, TrainConfig, main, notebook_config, parse_args, train


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
    final_reference = checkpoint.load(tmp_path / "reference").model
    final_resumed = checkpoint.load(tmp_path / "interrupted").model
    assert all(torch.equal(final_reference[k], final_resumed[k]) for k in final_reference)


class KilledBetweenCheckpointAndMetrics(Exception):
    pass


def test_defect1_metrics_are_rewritten_after_a_kill_between_checkpoint_and_metrics(data_root, tmp_path,
                                                                                     monkeypatch):
    """Killed after its final checkpoint but before metrics.json: every rerun used to say
    "resuming" and leave metrics.json at [1] with finished=false. Now the rerun rewrites it
    from the checkpoint, and the run is the same as an uninterrupted one, bit for bit."""
    reference = train(tiny_config(data_root, tmp_path / "reference", epochs=2))
    real_write = train_module._write_metrics

    def die_on_the_last_epoch(path, metrics):
        if metrics["epochs"][-1]["epoch"] == 2:
            raise KilledBetweenCheckpointAndMetrics
        real_write(path, metrics)

    monkeypatch.setattr(train_module, "_write_metrics", die_on_the_last_epoch)
    config = tiny_config(data_root, tmp_path / "killed", epochs=2)
    with pytest.raises(KilledBetweenCheckpointAndMetrics):
        train(config)
    monkeypatch.setattr(train_module, "_write_metrics", real_write)
    stale = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert [e["epoch"] for e in stale["epochs"]] == [1] and stale["finished"] is False
    assert checkpoint.load(tmp_path / "killed").epoch == 2

    calls = []
    resumed = train(config, on_step=lambda e, s: calls.append(s))
    written = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert calls == [] and written["finished"] is True and resumed["finished"] is True
    keys = ("train_loss", "val_loss", "top1", "top5")
    assert [[e[k] for k in keys] for e in written["epochs"]] == [[e[k] for k in keys] for e in reference["epochs"]]
    final_reference = checkpoint.load(tmp_path / "reference").model
    final_killed = checkpoint.load(tmp_path / "killed").model
    assert all(torch.equal(final_reference[k], final_killed[k]) for k in final_reference)


def test_defect1_a_rerun_of_a_finished_run_reports_finished(data_root, tmp_path):
    train(tiny_config(data_root, tmp_path, epochs=1))
    again = train(tiny_config(data_root, tmp_path, epochs=1))
    assert again["finished"] is True
    assert json.loads((tmp_path / "metrics.json").read_text())["finished"] is True


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
    ("lr", -1.0, "lr must be a finite number > 0"),
    ("label_smoothing", 1.0, r"label_smoothing must be a number in \[0, 1\)"),
    ("num_workers", -1, "num_workers must be an int >= 0"),
    ("max_steps_per_epoch", 0, "max_steps_per_epoch must be None or a positive int"),
    ("arch", "resnet19", "arch must be one of resnet18, .*mobilenet_v2, got 'resnet19'"),
    ("attention", "transformer", "attention must be None or one of se, eca, cbam, bam, ge, sk, .*got 'transformer'"),
    ("dataset", "imagenet", "dataset must be one of imagenette, tiny-imagenet, folder, got 'imagenet'"),
    ("image_size", 16, "image_size must be an int >= 32, got 16"),
    ("momentum", 1.5, r"momentum must be a number in \[0, 1\), got 1.5"),
    ("warmup_epochs", 30, r"warmup_epochs must be <= epochs \(20\), got 30"),
    ("device", "gpu7", "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu7'"),
    ("attention_kwargs", {"reduction": 8}, r"attention_kwargs \['reduction'\] were given but attention is None"),
])
def test_defect4_every_bad_parameter_is_refused(field, value, message, tmp_path):
    config = TrainConfig(output_dir=str(tmp_path), **{field: value})
    with pytest.raises(ConfigError, match=message):
        config.validate()


def test_defect4_all_bad_parameters_are_named_at_once_before_any_data_is_built(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(train_module, "build_datasets", lambda *a, **k: built.append(a))
    config = TrainConfig(arch="resnet19", epochs=-3, batch_size=0, attention="eca",
                         attention_kwargs={"reduction": 8}, output_dir=str(tmp_path))
    with pytest.raises(ConfigError) as info:
        train(config)
    message = str(info.value)
    for name in ("arch", "epochs", "batch_size", "attention_kwargs ['reduction']"):
        assert name in message
    assert "accepts: kernel_size, gamma, b" in message and built == []


def test_defect4_smoke_mode_does_not_hide_bad_parameters():
    """Smoke mode overwrote epochs, arch and batch_size before they were checked."""
    with pytest.raises(ConfigError, match="arch must be.*epochs must be a positive int.*batch_size must be"):
        notebook_config(smoke=True, arch="resnet19", epochs=-3, batch_size=0)
    with pytest.raises(ConfigError, match="epoch is not a training parameter"):
        notebook_config(smoke=True, epoch=3)


def test_missing_dataset_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(tiny_config(tmp_path / "missing", tmp_path / "out"))


def test_defect5_command_line_user_errors_are_one_line_and_exit_2(tmp_path, capsys):
    for argv, expected in [
        (["--epochs", "-3", "--batch-size", "0", "--momentum", "1.5"], "epochs must be a positive int"),
        (["--attention", "eca", "--attention-kwargs", '{"reduction": 8}'], "accepts: kernel_size, gamma, b"),
        (["--dataset", "folder", "--data-root", str(tmp_path / "missing"), "--output-dir", str(tmp_path)],
         "does not exist"),
    ]:
        with pytest.raises(SystemExit) as info:
            main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert err.startswith("python -m attention_lib.train: error: ") and expected in err
    for argv in (["--arch", "resnet19"], ["--attention-kwargs", "[1, 2]"], ["--image-size", "big"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and "Traceback" not in err


def test_defect5_help_lists_the_choices(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for choice in ("resnext50_32x4d", "mobilenet_v2", "cbam", "none", "tiny-imagenet", "160px"):
        assert choice in out


def test_command_line_matches_the_config():
    config = parse_args(["--arch", "resnet34", "--attention", "eca", "--epochs", "5", "--no-amp",
                         "--attention-kwargs", '{"kernel_size": 5}', "--max-steps-per-epoch", "3"])
    assert (config.arch, config.attention, config.epochs, config.amp) == ("resnet34", "eca", 5, False)
    assert config.attention_kwargs == {"kernel_size": 5} and config.max_steps_per_epoch == 3
    assert parse_args(["--attention", "none"]).attention is None
    assert parse_args([]) == TrainConfig()


def test_defect2_torchrun_validation_counts_each_image_once(tmp_path, venv_bin):
    """DistributedDataParallel on CPU (two processes, gloo) with 9 validation images: the
    distributed sampler padded them to 10 and counted the repeat; now each image counts once,
    and top-1 equals a single-process evaluation of the same final weights."""
    data = make_image_tree(tmp_path / "data", "folder", classes=3, per_class=3, size=40)
    command = [str(venv_bin / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "attention_lib.train",
               "--arch", "resnet18", "--attention", "eca", "--dataset", "folder", "--data-root", str(data),
               "--image-size", "32", "--epochs", "1", "--batch-size", "3", "--lr", "0.01", "--num-workers", "0",
               "--output-dir", str(tmp_path / "run"), "--no-progress", "--device", "cpu", "--smoke",
               "--no-channels-last"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["finished"] is True
    assert result.stdout.count("epoch 1/1") == 1  # only rank 0 reports
    last = metrics["epochs"][-1]
    assert last["val_images"] == 9
    model = checkpoint.load_model(tmp_path / "run")
    _, val, _ = build_datasets("folder", data, 32)
    images = torch.stack([image for image, _ in val])
    labels = torch.tensor([label for _, label in val])
    with torch.no_grad():
        hits = int((model(images).argmax(1) == labels).sum())
    assert last["top1"] == pytest.approx(hits / 9)


def test_notebook_config_in_smoke_mode_is_tiny_and_marked(capsys):
    config = notebook_config(smoke=True, arch="resnet50", attention="cbam", epochs=20, output_dir="runs/x")
    assert (config.arch, config.dataset, config.epochs, config.max_steps_per_epoch) == ("resnet18", "folder", 2, 2)
    assert config.smoke is True and os.path.isabs(config.output_dir) and os.path.isdir(config.data_root)
    assert "SMOKE RUN - not a result" in capsys.readouterr().out
    real = notebook_config(smoke=False, arch="resnet50", attention="cbam")
    assert (real.arch, real.dataset, real.epochs, real.smoke) == ("resnet50", "imagenette", 20, False)
    assert real.output_dir == "runs/resnet50-cbam"
    with pytest.raises(ConfigError, match="epochs must be a positive int"):
        notebook_config(smoke=False, epochs=0)


def test_defect10_smoke_runs_leave_nothing_behind(tmp_path):
    """Each smoke run left about 87 MB in /tmp/attention-smoke-*; the folder now goes when
    the process ends."""
    code = ("from attention_lib.train import notebook_config, train; "
            "config = notebook_config(smoke=True, attention='se'); train(config); print(config.data_root)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert result.returncode == 0, result.stderr[-2000:]
    scratch = result.stdout.strip().splitlines()[-1]
    assert scratch.startswith(str(tmp_path)) and not os.path.exists(scratch)
    assert list(tmp_path.iterdir()) == []
