# Hand-written support module (not generated from a notebook).
"""Datasets for the mini-ImageNet runs: Imagenette, Tiny-ImageNet and any ImageFolder.

All three go through torchvision's own classes (``Imagenette``, ``ImageFolder``);
Tiny-ImageNet's validation split, whose labels live in ``val_annotations.txt``, gets a
small dataset class of its own. Every loader reports a missing path or an empty
class folder with a message that names the path and the expected layout, and a
corrupt image file is skipped with a logged warning that names it instead of ending a
long run (or silently feeding garbage).

On-disk layouts::

    imagenette:    ROOT/imagenette2-160/{train,val}/n01440764/*.JPEG   (or imagenette2-320, imagenette2)
    tiny-imagenet: ROOT/tiny-imagenet-200/wnids.txt
                   ROOT/tiny-imagenet-200/train/n01443537/images/*.JPEG
                   ROOT/tiny-imagenet-200/val/images/*.JPEG
                   ROOT/tiny-imagenet-200/val/val_annotations.txt      (file, wnid, box)
    folder:        ROOT/train/CLASS/*.jpg and ROOT/val/CLASS/*.jpg       (mini-ImageNet, or anything)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import datasets, transforms
from tqdm.auto import tqdm

from attention_lib.photos import PHOTOS, load_photo

__all__ = [
    "DATASETS", "IMAGENET_MEAN", "IMAGENET_STD", "CorruptImageError", "TinyImageNetVal",
    "SkipCorrupt", "build_datasets", "train_transform", "eval_transform", "find_corrupt_images",
    "make_image_tree", "rgb_loader",
]

log = logging.getLogger(__name__)

DATASETS = ("imagenette", "tiny-imagenet", "folder")
IMAGENETTE_SIZES = {"160px": "imagenette2-160", "320px": "imagenette2-320", "full": "imagenette2"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError)


class CorruptImageError(RuntimeError):
    """Too many consecutive images of a dataset could not be decoded."""


def train_transform(image_size: int) -> Callable:
    """Standard ImageNet-style augmentation: random resized crop and horizontal flip."""
    return transforms.Compose([
        transforms.RandomResizedCrop(image_size, antialias=True),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def eval_transform(image_size: int) -> Callable:
    """Resize to 8/7 of the crop size, then centre crop (the usual 224/256 ratio)."""
    return transforms.Compose([
        transforms.Resize(round(image_size * 8 / 7), antialias=True),
        transforms.CenterCrop(image_size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def rgb_loader(path: str) -> Image.Image:
    """Open an image file as RGB, decoding it completely (so a corrupt file fails here)."""
    with open(path, "rb") as handle:
        image = Image.open(handle)
        return image.convert("RGB")  # convert() forces the full decode inside the with-block


class TinyImageNetVal(Dataset):
    """Tiny-ImageNet's validation split: images in one folder, labels in ``val_annotations.txt``.

    Args:
        root: the ``tiny-imagenet-200`` folder.
        class_to_idx: mapping from WordNet id to label, taken from the training split
            so that both splits agree.
        transform: applied to each PIL image.
    """

    def __init__(self, root: str | Path, class_to_idx: dict[str, int], transform: Callable | None = None) -> None:
        self.root = Path(root)
        self.transform = transform
        self.class_to_idx = class_to_idx
        annotations = self.root / "val" / "val_annotations.txt"
        if not annotations.is_file():
            raise FileNotFoundError(
                f"Tiny-ImageNet validation labels not found: expected {annotations} "
                "(lines 'FILE<TAB>WNID<TAB>x<TAB>y<TAB>w<TAB>h')"
            )
        self.samples: list[tuple[str, int]] = []
        for number, line in enumerate(annotations.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2:
                raise ValueError(f"{annotations}, line {number}: expected 'FILE<TAB>WNID...', got {line!r}")
            name, wnid = fields[0], fields[1]
            if wnid not in class_to_idx:
                raise ValueError(f"{annotations}, line {number}: class {wnid!r} is not among the training classes")
            path = self.root / "val" / "images" / name
            if not path.is_file():
                raise FileNotFoundError(f"{annotations}, line {number}: image {path} does not exist")
            self.samples.append((str(path), class_to_idx[wnid]))
        if not self.samples:
            raise FileNotFoundError(f"{annotations} lists no images")
        self.loader = rgb_loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        image = self.loader(path)
        return (self.transform(image) if self.transform else image), label


def _sample_paths(dataset: Dataset) -> list[str]:
    samples = getattr(dataset, "samples", None) or getattr(dataset, "_samples", None)
    if samples is None:
        raise TypeError(f"{type(dataset).__name__} does not expose its samples")
    return [path for path, _ in samples]


class SkipCorrupt(Dataset):
    """Wrap a dataset so that an image that cannot be decoded is skipped, loudly.

    The bad file is logged (with its path and the decoder's message) and the next
    sample is returned instead; after ``max_consecutive`` bad files in a row the
    dataset gives up with :class:`CorruptImageError`, because then something is
    wrong with the whole copy rather than with one file.
    """

    def __init__(self, dataset: Dataset, max_consecutive: int = 16) -> None:
        self.dataset = dataset
        self.paths = _sample_paths(dataset)
        self.max_consecutive = max_consecutive
        self.skipped: list[str] = []  # files skipped in this process

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        if not -len(self.dataset) <= index < len(self.dataset):
            raise IndexError(f"index {index} is out of range for a dataset of {len(self.dataset)} samples")
        index %= len(self.dataset)
        for offset in range(self.max_consecutive):
            position = (index + offset) % len(self.dataset)
            try:
                return self.dataset[position]
            except _DECODE_ERRORS as error:
                path = self.paths[position]
                if path not in self.skipped:
                    self.skipped.append(path)
                log.warning("skipping corrupt image %s (%s: %s)", path, type(error).__name__, error)
        raise CorruptImageError(
            f"{self.max_consecutive} consecutive images from index {index} could not be decoded; "
            f"last: {self.paths[(index + self.max_consecutive - 1) % len(self.dataset)]}"
        )

    @property
    def classes(self) -> list:
        return self.dataset.classes


def find_corrupt_images(dataset: Dataset, progress: bool = True) -> list[str]:
    """Decode every image of ``dataset`` once and return the paths that fail."""
    bad = []
    for path in tqdm(_sample_paths(dataset), desc="checking images", disable=not progress):
        try:
            rgb_loader(path)
        except _DECODE_ERRORS:
            bad.append(path)
    return bad


def _require_dir(path: Path, what: str, layout: str) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: {path} does not exist or is not a folder. Expected layout: {layout}")


def _image_folder(path: Path, transform: Callable, what: str, layout: str) -> datasets.ImageFolder:
    _require_dir(path, what, layout)
    try:
        return datasets.ImageFolder(str(path), transform=transform, loader=rgb_loader)
    except FileNotFoundError as error:  # e.g. an empty class folder
        raise FileNotFoundError(f"{what} at {path}: {error}") from error


def build_datasets(name: str, root: str | Path, image_size: int = 128, download: bool = False,
                   imagenette_size: str = "160px", skip_corrupt: bool = True) -> tuple[Dataset, Dataset, int]:
    """Build the training and validation datasets; return ``(train, val, num_classes)``.

    Args:
        name: ``"imagenette"``, ``"tiny-imagenet"`` or ``"folder"``.
        root: folder holding the data (see the module docstring for each layout).
        image_size: side of the square crops fed to the network.
        download: Imagenette only: download it into ``root`` if it is missing.
        imagenette_size: ``"160px"``, ``"320px"`` or ``"full"``.
        skip_corrupt: wrap the datasets in :class:`SkipCorrupt`.
    """
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16:
        raise ValueError(f"image_size must be an int >= 16, got {image_size!r}")
    root = Path(root).expanduser()
    train_tf, eval_tf = train_transform(image_size), eval_transform(image_size)

    if name == "imagenette":
        if imagenette_size not in IMAGENETTE_SIZES:
            raise ValueError(f"imagenette_size must be one of {tuple(IMAGENETTE_SIZES)}, got {imagenette_size!r}")
        folder = root / IMAGENETTE_SIZES[imagenette_size]
        layout = f"{folder}/{{train,val}}/<wnid>/*.JPEG"
        if not download:
            _require_dir(folder, "Imagenette", layout + " (or pass download=True)")
        splits = []
        for split, tf in (("train", train_tf), ("val", eval_tf)):
            if not download:
                _require_dir(folder / split, f"Imagenette {split} split", layout)
            try:
                splits.append(datasets.Imagenette(str(root), split=split, size=imagenette_size, download=download,
                                                  transform=tf, loader=rgb_loader))
            except FileNotFoundError as error:
                raise FileNotFoundError(f"Imagenette {split} split at {folder / split}: {error}") from error
            except KeyError as error:
                raise ValueError(f"Imagenette {split} split at {folder / split}: unknown class folder {error}; "
                                 "expected the ten Imagenette WordNet ids") from error
        train, val = splits
        num_classes = len(train.wnids)
    elif name == "tiny-imagenet":
        folder = root / "tiny-imagenet-200"
        layout = f"{folder}/train/<wnid>/images/*.JPEG, {folder}/val/images/*.JPEG and {folder}/val/val_annotations.txt"
        _require_dir(folder, "Tiny-ImageNet", layout)
        train = _image_folder(folder / "train", train_tf, "Tiny-ImageNet train split", layout)
        val = TinyImageNetVal(folder, train.class_to_idx, eval_tf)
        num_classes = len(train.classes)
    else:
        layout = f"{root}/train/<class>/*.jpg and {root}/val/<class>/*.jpg"
        _require_dir(root, "ImageFolder dataset", layout)
        train = _image_folder(root / "train", train_tf, "ImageFolder train split", layout)
        val = _image_folder(root / "val", eval_tf, "ImageFolder val split", layout)
        if val.classes != train.classes:
            raise ValueError(f"the val split's classes {val.classes} differ from the train split's {train.classes}")
        num_classes = len(train.classes)

    if skip_corrupt:
        train, val = SkipCorrupt(train), SkipCorrupt(val)
    return train, val, num_classes


def make_image_tree(root: str | Path, layout: str = "folder", classes: int = 3, per_class: int = 4,
                    size: int = 40, seed: int = 0) -> Path:
    """Write a small dataset in one of the real on-disk layouts, built from real photos.

    Each class is one scikit-image sample photo, and each image a random crop of it;
    used by the tests and by the notebooks' smoke mode, never for results.

    Args:
        root: where to write.
        layout: ``"imagenette"``, ``"tiny-imagenet"`` or ``"folder"``.
    """
    if layout not in DATASETS:
        raise ValueError(f"layout must be one of {DATASETS}, got {layout!r}")
    if not 1 <= classes <= len(PHOTOS):
        raise ValueError(f"classes must be between 1 and {len(PHOTOS)}, got {classes}")
    root = Path(root)
    generator = torch.Generator().manual_seed(seed)
    wnids = sorted(datasets.Imagenette._WNID_TO_CLASS)[:classes] if layout == "imagenette" else \
        [f"n{10000000 + i:08d}" for i in range(classes)]
    photos = [load_photo(PHOTOS[i], size=size * 2) for i in range(classes)]

    def crop(photo: torch.Tensor) -> Image.Image:
        h, w = photo.shape[1:]
        top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
        patch = (photo[:, top:top + size, left:left + size] * 255).byte().permute(1, 2, 0).numpy()
        return Image.fromarray(patch)

    annotations = []
    for split in ("train", "val"):
        for label, wnid in enumerate(wnids):
            for i in range(per_class):
                if layout == "imagenette":
                    path = root / "imagenette2-160" / split / wnid / f"{wnid}_{i}.JPEG"
                elif layout == "tiny-imagenet":
                    base = root / "tiny-imagenet-200"
                    if split == "train":
                        path = base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG"
                    else:
                        path = base / "val" / "images" / f"val_{label * per_class + i}.JPEG"
                        annotations.append(f"{path.name}\t{wnid}\t0\t0\t{size - 1}\t{size - 1}")
                else:
                    path = root / split / f"class_{label}" / f"{i}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                crop(photos[label]).save(path, quality=90)
    if layout == "tiny-imagenet":
        base = root / "tiny-imagenet-200"
        (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
        (base / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    return root
