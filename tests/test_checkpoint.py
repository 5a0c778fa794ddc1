"""Tests of attention_lib.checkpoint, the one owner of the training checkpoint's format.

Every reader goes through it: a resume (attention_lib.train), the comparison, the chapters
(load_model). A damaged file, a checkpoint of another program or an older format, and a
resume with a changed configuration are refused with a message that names the file and
the way out.
"""

import pickle

import pytest
import torch

from attention_lib import checkpoint
from attention_lib.analysis import preprocess
from attention_lib.data import make_image_tree
from attention_lib.photos import load_photo
from attention_lib.provenance import is_result, weights_label
from attention_lib.train import TrainConfig, main, train


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_image_tree(tmp_path_factory.mktemp("data"), "folder", classes=3, per_class=4, size=40)


def tiny(data_root, output_dir, **overrides) -> TrainConfig:
    options = dict(arch="resnet18", attention="se", dataset="folder", data_root=str(data_root), image_size=32,
                   epochs=1, batch_size=4, lr=0.05, num_workers=0, output_dir=str(output_dir), progress=False,
                   device="cpu", channels_last=False, smoke=True)
    return TrainConfig(**{**options, **overrides})


@pytest.fixture(scope="module")
def finished_run(data_root, tmp_path_factory):
    """One finished one-epoch run (its folder)."""
    output = tmp_path_factory.mktemp("run")
    train(tiny(data_root, output, attention="cbam"))
    return output


def test_load_model_rebuilds_the_trained_network(finished_run):
    model = checkpoint.load_model(finished_run)
    saved = checkpoint.load(finished_run)
    assert all(torch.equal(value, saved.model[key]) for key, value in model.state_dict().items())
    assert model.run_info["smoke"] and model.run_info["epochs"] == 1 and not is_result(model)
    assert "SMOKE RUN, not a result" in weights_label(model)
    assert preprocess(load_photo("coffee"), model).shape == (1, 3, 32, 32)
    assert not model.training


def test_a_loaded_checkpoint_knows_its_num_classes_without_guessing(finished_run):
    """num_classes is stored by the writer; the reader no longer guesses it from "the last
    2-D weight" (which an attention module's own 2-D weights could have been)."""
    saved = checkpoint.load(finished_run / checkpoint.FILENAME)
    assert saved.num_classes == 3 and saved.version == checkpoint.VERSION and saved.finished
    model = checkpoint.load_model(finished_run)
    assert model.fc.out_features == 3 and model.run_info["num_classes"] == 3


def test_the_file_holds_plain_values_only(finished_run):
    """Loading never runs code from the file: it is read with weights_only=True."""
    torch.load(finished_run / checkpoint.FILENAME, weights_only=True)


def test_missing_checkpoint_names_the_place(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"checkpoint: no file at .*nowhere; expected the checkpoint\.pt"):
        checkpoint.load_model(tmp_path / "nowhere")


class Payload:
    """Something a weights_only load must refuse to build."""


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "foreign", "pickled object", "old format"])
def test_defect3_a_damaged_checkpoint_is_named_with_the_way_out(damage, finished_run, tmp_path):
    """Garbage, truncated, empty and foreign files used to end in UnpicklingError, EOFError or
    KeyError: 'rng'; now the error names the file and says how to go on."""
    path = tmp_path / checkpoint.FILENAME
    good = (finished_run / checkpoint.FILENAME).read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a checkpoint at all \x00\x01\x02" * 10)
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(2)}, path)
    elif damage == "pickled object":
        path.write_bytes(pickle.dumps(Payload()))
    else:  # a checkpoint of attention_lib's first format: no format entry, no num_classes
        torch.save({"model": {}, "optimizer": {}, "scaler": {}, "rng": {}, "epoch": 1, "history": [],
                    "config": {}}, path)
    with pytest.raises(checkpoint.CheckpointError) as info:
        checkpoint.load(tmp_path)
    message = str(info.value)
    assert str(path) in message and "Delete" in message and "--no-resume" in message


def test_defect3_a_damaged_checkpoint_stops_a_resume_clearly(data_root, tmp_path, capsys):
    (tmp_path / checkpoint.FILENAME).write_bytes(b"\x80garbage")
    with pytest.raises(checkpoint.CheckpointError, match="cannot be read"):
        train(tiny(data_root, tmp_path))
    argv = ["--arch", "resnet18", "--dataset", "folder", "--data-root", str(data_root), "--image-size", "32",
            "--epochs", "1", "--batch-size", "4", "--num-workers", "0", "--output-dir", str(tmp_path),
            "--device", "cpu", "--no-progress"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "--no-resume" in err
    train(tiny(data_root, tmp_path, resume=False))  # the way out the message names
    assert checkpoint.load(tmp_path).epoch == 1


@pytest.mark.parametrize("change,listed", [
    ({"arch": "resnet34"}, "arch: 'resnet18' in the checkpoint, 'resnet34' now"),
    ({"lr": 0.1}, "lr: 0.05 in the checkpoint, 0.1 now"),
    ({"attention": "eca"}, "attention: 'se' in the checkpoint, 'eca' now"),
])
def test_a_resume_with_a_changed_configuration_is_refused(change, listed, data_root, tmp_path):
    train(tiny(data_root, tmp_path))
    steps = []
    with pytest.raises(checkpoint.ResumeError) as info:
        train(tiny(data_root, tmp_path, epochs=2, **change), on_step=lambda e, s: steps.append(s))
    assert listed in str(info.value) and "--allow-config-change" in str(info.value) and steps == []


def test_a_changed_configuration_continues_only_when_allowed(data_root, tmp_path):
    train(tiny(data_root, tmp_path))
    metrics = train(tiny(data_root, tmp_path, epochs=2, lr=0.02, allow_config_change=True))
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2] and metrics["finished"]


def test_where_and_how_a_run_executes_may_change_on_resume(data_root, tmp_path):
    train(tiny(data_root, tmp_path))
    metrics = train(tiny(data_root, tmp_path, epochs=2, num_workers=1, progress=True))
    assert metrics["resumed_from_epoch"] == 1 and len(metrics["epochs"]) == 2


def test_defect4_fewer_epochs_than_done_is_refused(data_root, tmp_path):
    """Rerunning with fewer epochs than already trained used to do nothing, silently."""
    train(tiny(data_root, tmp_path, epochs=2))
    with pytest.raises(checkpoint.ResumeError, match="it has 2 finished epochs, more than epochs=1"):
        train(tiny(data_root, tmp_path, epochs=1))


def test_config_changes_lists_every_difference_but_the_allowed_ones():
    stored = {"arch": "resnet50", "lr": 0.1, "epochs": 20, "num_workers": 4}
    assert checkpoint.config_changes(stored, {**stored, "epochs": 30, "num_workers": 2}) == []
    assert checkpoint.config_changes(stored, {**stored, "lr": 0.2, "seed": 1}) == [
        "lr: 0.1 in the checkpoint, 0.2 now", "seed: '<absent>' in the checkpoint, 1 now"]


def test_random_states_survive_a_round_trip():
    import random

    import numpy

    state = checkpoint.rng_state()
    expected = (torch.rand(3), random.random(), numpy.random.rand())
    checkpoint.set_rng_state(state)
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]
    assert numpy.random.rand() == expected[2]
