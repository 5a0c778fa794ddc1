"""Tests for attention_lib.data on small trees generated in each real on-disk layout."""

import logging

import pytest
import torch

from attention_lib.data import (
    CorruptImageError, SkipCorrupt, build_datasets, eval_transform, find_corrupt_images, make_image_tree,
)


@pytest.fixture(scope="module", params=["imagenette", "tiny-imagenet", "folder"])
def tree(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    make_image_tree(root, request.param, classes=3, per_class=4, size=24)
    return request.param, root


def test_each_layout_loads_through_the_real_classes(tree):
    name, root = tree
    train, val, num_classes = build_datasets(name, root, image_size=16)
    assert num_classes == 3
    assert len(train) == 12 and len(val) == 12
    image, label = train[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert sorted({val[i][1] for i in range(len(val))}) == [0, 1, 2]
    if name == "imagenette":
        assert type(train.dataset).__name__ == "Imagenette"
        assert train.dataset.wnids[0] == "n01440764"
    else:
        assert type(train.dataset).__name__ == "ImageFolder"


def test_tiny_imagenet_validation_labels_come_from_the_annotations(tmp_path):
    make_image_tree(tmp_path, "tiny-imagenet", classes=2, per_class=2, size=24)
    train, val, _ = build_datasets("tiny-imagenet", tmp_path, image_size=16)
    lines = (tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt").read_text().split("\n")
    first_wnid = lines[0].split("\t")[1]
    assert val.dataset.samples[0][1] == train.dataset.class_to_idx[first_wnid]


def test_missing_path_names_it_and_the_layout(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=r"nowhere.*Expected layout"):
        build_datasets("folder", missing)
    with pytest.raises(FileNotFoundError, match=r"imagenette2-160.*download=True"):
        build_datasets("imagenette", missing)
    with pytest.raises(FileNotFoundError, match=r"tiny-imagenet-200"):
        build_datasets("tiny-imagenet", missing)


def test_empty_class_folder_is_reported(tmp_path):
    make_image_tree(tmp_path, "folder", classes=2, per_class=2, size=24)
    (tmp_path / "train" / "class_9").mkdir()
    with pytest.raises(FileNotFoundError, match=r"ImageFolder train split at .*class_9"):
        build_datasets("folder", tmp_path)


def test_missing_tiny_imagenet_annotations(tmp_path):
    make_image_tree(tmp_path, "tiny-imagenet", classes=2, per_class=2, size=24)
    (tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"val_annotations.txt"):
        build_datasets("tiny-imagenet", tmp_path)


def test_unknown_class_in_annotations(tmp_path):
    make_image_tree(tmp_path, "tiny-imagenet", classes=2, per_class=2, size=24)
    path = tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    path.write_text(path.read_text().replace("n10000001", "n99999999"))
    with pytest.raises(ValueError, match=r"line 3: class 'n99999999'"):
        build_datasets("tiny-imagenet", tmp_path)


@pytest.mark.parametrize("kwargs,message", [
    ({"name": "imagenet"}, r"dataset must be one of"),
    ({"image_size": 8}, r"image_size must be an int >= 16"),
    ({"imagenette_size": "64px", "name": "imagenette"}, r"imagenette_size must be one of"),
])
def test_bad_parameters(tmp_path, kwargs, message):
    args = {"name": "folder", "root": tmp_path, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_datasets(**args)


def test_corrupt_image_is_skipped_loudly(tmp_path, caplog):
    make_image_tree(tmp_path, "folder", classes=2, per_class=3, size=24)
    bad = tmp_path / "train" / "class_0" / "1.jpg"
    bad.write_bytes(b"this is not a jpeg")
    train, _, _ = build_datasets("folder", tmp_path, image_size=16)
    index = train.paths.index(str(bad))
    with caplog.at_level(logging.WARNING, logger="attention_lib.data"):
        image, label = train[index]
    assert image.shape == (3, 16, 16)
    assert str(bad) in caplog.text and "skipping corrupt image" in caplog.text
    assert train.skipped == [str(bad)]
    # The whole epoch still runs.
    loader = torch.utils.data.DataLoader(train, batch_size=4)
    assert sum(len(labels) for _, labels in loader) == len(train)
    assert find_corrupt_images(train.dataset, progress=False) == [str(bad)]


def test_all_corrupt_gives_up_with_a_clear_error(tmp_path):
    make_image_tree(tmp_path, "folder", classes=1, per_class=2, size=24)
    for path in (tmp_path / "train" / "class_0").iterdir():
        path.write_bytes(b"garbage")
    train, _, _ = build_datasets("folder", tmp_path, image_size=16)
    with pytest.raises(CorruptImageError, match=r"could not be decoded"):
        SkipCorrupt(train.dataset, max_consecutive=2)[0]


def test_eval_transform_is_deterministic(tmp_path):
    make_image_tree(tmp_path, "folder", classes=1, per_class=1, size=24)
    _, val, _ = build_datasets("folder", tmp_path, image_size=16)
    assert torch.equal(val[0][0], val[0][0])
    assert eval_transform(16) is not None


def test_a_wrapped_dataset_can_be_iterated_to_its_end(tmp_path):
    """SkipCorrupt wraps indices past the end to find the next good image; an index past the
    end must still raise IndexError, or `for sample in dataset` never stops."""
    make_image_tree(tmp_path, "folder", classes=2, per_class=2, size=40)
    _, val, _ = build_datasets("folder", tmp_path, image_size=32)
    assert len([label for _, label in val]) == len(val) == 4
    with pytest.raises(IndexError, match="index 4 is out of range for a dataset of 4 samples"):
        val[4]
    assert val[-1][1] == val[3][1]
