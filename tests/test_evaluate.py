"""Tests of attention_lib.evaluate: Imagenette's classes among ImageNet's, its validation split
through torchvision's class, top-1 counting, and the command line.

Imagenette's loading code runs on a small tree generated in its real on-disk layout.
"""

import json

import pytest
from torchvision import datasets

from attention_lib import evaluate as E
from attention_lib.analysis import imagenet_categories
from fakes import ConstantClassifier


def test_imagenette_wnids_map_to_the_same_imagenet_classes():
    categories = imagenet_categories()
    assert len(categories) == 1000
    assert set(E.IMAGENETTE_TO_IMAGENET) == set(datasets.Imagenette._WNID_TO_CLASS)
    for wnid, index in E.IMAGENETTE_TO_IMAGENET.items():
        assert categories[index] in datasets.Imagenette._WNID_TO_CLASS[wnid], (wnid, index, categories[index])

def test_imagenette_val_loads_the_real_layout(imagenette_tree, random_seresnet50):
    dataset = E.imagenette_val(imagenette_tree, random_seresnet50, download=False)
    assert len(dataset) == 12 and dataset.wnids == sorted(E.IMAGENETTE_TO_IMAGENET)[:3]
    image, label = dataset[5]
    assert image.shape == (3, 224, 224) and label == 1
    subset = E.imagenette_val(imagenette_tree, random_seresnet50, download=False, per_class=2)
    assert len(subset) == 6 and sorted(label for _, label in subset) == [0, 0, 1, 1, 2, 2]
    with pytest.raises(FileNotFoundError, match=r"no folder .*missing/imagenette2-160/val"):
        E.imagenette_val(imagenette_tree / "missing", random_seresnet50, download=False)
    with pytest.raises(ValueError, match="per_class must be None or a positive int, got 0"):
        E.imagenette_val(imagenette_tree, random_seresnet50, download=False, per_class=0)
    with pytest.raises(ValueError, match=r"size must be one of \('160px', '320px', 'full'\)"):
        E.imagenette_val(imagenette_tree, random_seresnet50, download=False, size="64px")

@pytest.mark.parametrize("index,expected", [(0, 1 / 3), (217, 1 / 3), (482, 1 / 3), (701, 0.0)])
def test_imagenette_top1_counts_imagenet_classes(imagenette_tree, index, expected):
    """A model that always answers one ImageNet class is right on exactly that class's images."""
    result = E.evaluate_imagenette(ConstantClassifier(index), imagenette_tree, download=False, num_workers=0,
                                   progress=False)
    assert result.images == 12 and result.top1 == pytest.approx(expected)
    assert result.class_names == ["tench", "English springer", "cassette player"]
    assert result.per_class == {} and result.counts.tolist() == [4, 4, 4]
    # Among the ten Imagenette classes, an answer outside the three present ones is wrong too.
    assert result.top1_among_10 == pytest.approx(expected)

def test_imagenette_evaluation_records_attention(imagenette_tree, random_seresnet50):
    result = E.evaluate_imagenette(random_seresnet50, imagenette_tree, download=False, per_class=2,
                                   batch_size=3, num_workers=0, progress=False)
    assert result.images == 6 and 0.0 <= result.top1 <= 1.0
    assert len(result.per_class) == 16 and result.per_class["layer4.2.bn3.attention"].shape == (3, 2048)

def test_command_line_writes_the_measurement(imagenette_tree, tmp_path, capsys):
    output = tmp_path / "top1.json"
    argv = ["seresnet50", "--weights", "random", "--data-root", str(imagenette_tree), "--no-download",
            "--per-class", "1", "--num-workers", "0", "--output", str(output)]
    assert E.main(argv) == 0
    record = json.loads(output.read_text())
    assert record["images"] == 3 and record["result"] is False and "RANDOM WEIGHTS" in record["weights"]
    assert record["command"][-len(argv):] == argv and record["date"] and record["hardware"]["cpu_count"] >= 1
    assert "first 1 images per class" in record["dataset"]
    assert "top-1" in capsys.readouterr().out


def test_command_line_user_errors_are_one_line(tmp_path, capsys):
    for argv, expected in [(["cbamresnet50"], "no published weights are mapped for 'cbamresnet50'"),
                           (["seresnet50", "--weights", "random", "--data-root", str(tmp_path), "--no-download"],
                            "no folder")]:
        with pytest.raises(SystemExit) as info:
            E.main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.count("\n") == 1 and expected in err and "Traceback" not in err
