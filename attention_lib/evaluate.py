# Hand-written support module (not generated from a notebook).
"""A check that published weights landed in the right places: top-1 on Imagenette.

Imagenette's ten classes are ImageNet classes (:data:`IMAGENETTE_TO_IMAGENET`), so an
ImageNet-1k classifier can be scored on its validation split without retraining:
:func:`evaluate_imagenette` measures top-1 among all 1000 classes and among the ten, and
averages the attention weights per class in the same pass. A correctly mapped published
model scores far above chance (0.1 %); a broken mapping does not.

Command line (writes the measurement, with command, hardware and date, to JSON)::

    python -m attention_lib.evaluate seresnet50 --data-root data --output book/results/pretrained_seresnet50_imagenette.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms
from tqdm.auto import tqdm

from attention_lib import provenance
from attention_lib.analysis import resize_sizes, class_attention
from attention_lib.data import IMAGENETTE_SIZES, rgb_loader
from attention_lib.recorder import is_attention_module
from attention_lib.weights import PRETRAINED, load_trained, output_to_stdout

__all__ = ["IMAGENETTE_TO_IMAGENET", "ImagenetteResult", "imagenette_val", "evaluate_imagenette", "main"]

#: Imagenette's ten WordNet ids and their indices among ImageNet-1k's 1000 classes.
IMAGENETTE_TO_IMAGENET = {
    "n01440764": 0,  # tench
    "n02102040": 217,  # English springer
    "n02979186": 482,  # cassette player
    "n03000684": 491,  # chain saw
    "n03028079": 497,  # church
    "n03394916": 566,  # French horn
    "n03417042": 569,  # garbage truck
    "n03425413": 571,  # gas pump
    "n03445777": 574,  # golf ball
    "n03888257": 701,  # parachute
}


@dataclass
class ImagenetteResult:
    """What :func:`evaluate_imagenette` measured.

    Attributes:
        images: how many validation images were evaluated.
        top1: fraction whose 1000-way ImageNet prediction is the right class.
        top1_among_10: fraction right when only Imagenette's ten classes compete.
        class_names: Imagenette's classes, in label order.
        per_class: map name -> mean channel weights per class (:func:`class_attention`).
        counts: images per class.
    """

    images: int
    top1: float
    top1_among_10: float
    class_names: list[str]
    per_class: dict[str, torch.Tensor] = field(repr=False)
    counts: torch.Tensor = field(repr=False)


def imagenette_val(root: str | Path, model_or_cfg: nn.Module | dict[str, Any], download: bool = True,
                   size: str = "160px", per_class: int | None = None):
    """Imagenette's validation split through torchvision's ``Imagenette``, preprocessed for the model.

    Args:
        root: folder holding (or receiving) ``imagenette2-160`` etc.
        model_or_cfg: the model (its ``pretrained_cfg``) or that dict.
        download: download into ``root`` when missing (about 100 MB for 160px).
        size: ``"160px"``, ``"320px"`` or ``"full"``.
        per_class: keep only the first ``per_class`` images of each class (``None``: all).

    Raises:
        FileNotFoundError: ``root`` lacks the split and ``download`` is False.
    """
    cfg = model_or_cfg if isinstance(model_or_cfg, dict) else model_or_cfg.pretrained_cfg
    if size not in IMAGENETTE_SIZES:
        raise ValueError(f"size must be one of {tuple(IMAGENETTE_SIZES)}, got {size!r}")
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1):
        raise ValueError(f"per_class must be None or a positive int, got {per_class!r}")
    folder = Path(root).expanduser() / IMAGENETTE_SIZES[size] / "val"
    if not download and not folder.is_dir():
        raise FileNotFoundError(f"Imagenette val split: no folder {folder}; expected {folder}/<wnid>/*.JPEG "
                                "(or pass download=True)")
    crop, resize = resize_sizes(cfg)
    transform = transforms.Compose([
        transforms.Resize(resize, interpolation=transforms.InterpolationMode(cfg.get("interpolation", "bilinear")),
                          antialias=True),
        transforms.CenterCrop(crop), transforms.ToTensor(), transforms.Normalize(cfg["mean"], cfg["std"]),
    ])
    with output_to_stdout():  # download progress (stderr is a warning in a book build)
        dataset = datasets.Imagenette(str(Path(root).expanduser()), split="val", size=size, download=download,
                                      transform=transform, loader=rgb_loader)
    if per_class is None:
        return dataset
    labels = [label for _, label in dataset._samples]  # torchvision keeps (path, label) pairs; tested
    keep, seen = [], {}
    for index, label in enumerate(labels):
        if seen.get(label, 0) < per_class:
            keep.append(index)
            seen[label] = seen.get(label, 0) + 1
    subset = Subset(dataset, keep)
    subset.wnids, subset.classes = dataset.wnids, dataset.classes
    return subset


def evaluate_imagenette(model: nn.Module, root: str | Path = "data", download: bool = True, size: str = "160px",
                        per_class: int | None = None, batch_size: int = 50, num_workers: int = 2,
                        progress: bool = True, device: str = "auto") -> ImagenetteResult:
    """Top-1 of an ImageNet-1k classifier on Imagenette's validation split, and its
    attention weights averaged per class, in one pass.

    A prediction counts as right when the model's arg-max over all 1000 ImageNet classes is
    the image's class (:data:`IMAGENETTE_TO_IMAGENET`). A correctly mapped published model
    scores far above chance (1/1000) here; a broken mapping does not.

    Args:
        model: an ImageNet-1k classifier with ``pretrained_cfg`` (:func:`load_trained`).
        root, download, size, per_class: as in :func:`imagenette_val`.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...; the model moves there.
    """
    dataset = imagenette_val(root, model, download=download, size=size, per_class=per_class)
    wnids = dataset.wnids
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    to_imagenet = torch.tensor([IMAGENETTE_TO_IMAGENET[w] for w in wnids], device=device)
    ten = sorted(IMAGENETTE_TO_IMAGENET)  # all ten classes compete, even if a folder holds fewer
    ten_imagenet = torch.tensor([IMAGENETTE_TO_IMAGENET[w] for w in ten], device=device)
    to_ten = torch.tensor([ten.index(w) for w in wnids], device=device)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda")
    hits = torch.zeros(2, dtype=torch.long)

    def count(logits: torch.Tensor, labels: torch.Tensor) -> None:
        hits[0] += int((logits.argmax(dim=1) == to_imagenet[labels]).sum())
        hits[1] += int((logits[:, ten_imagenet].argmax(dim=1) == to_ten[labels]).sum())

    batches = ((images.to(device), labels.to(device))
               for images, labels in tqdm(loader, desc="Imagenette val", disable=not progress, leave=False))
    model.eval().to(device)
    if any(is_attention_module(m) for m in model.modules()):
        per_class_weights, counts = class_attention(model, batches, len(wnids), on_logits=count)
    else:
        per_class_weights, counts = {}, torch.zeros(len(wnids), dtype=torch.long)
        with torch.no_grad():
            for images, labels in batches:
                count(model(images), labels)
                counts += torch.bincount(labels.cpu(), minlength=len(wnids))
    total = int(counts.sum())
    names = [classes[0] for classes in dataset.classes]
    return ImagenetteResult(total, float(hits[0]) / total, float(hits[1]) / total, names, per_class_weights, counts)


def main(argv: list[str] | None = None) -> int:
    """``python -m attention_lib.evaluate NAME``: measure a published model on Imagenette val."""
    parser = argparse.ArgumentParser(prog="python -m attention_lib.evaluate",
                                     description="Top-1 of a published model, mapped onto attention_lib's "
                                                 "modules, on Imagenette's validation split.")
    parser.add_argument("name", help=f"one of {', '.join(PRETRAINED)} (optionally with .tag)")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--size", default="160px", choices=("160px", "320px", "full"))
    parser.add_argument("--no-download", dest="download", action="store_false")
    parser.add_argument("--per-class", type=int, default=None, help="images per class (default: all)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--weights", default="auto", choices=("auto", "random"),
                        help="'random': test the pipeline with random weights (not a result)")
    parser.add_argument("--output", default=None, help="write the measurement to this JSON file")
    args = parser.parse_args(argv)
    try:
        model = load_trained(args.name, weights=args.weights)
        if model is None:
            return 1
        result = evaluate_imagenette(model, args.data_root, download=args.download, size=args.size,
                                     per_class=args.per_class, batch_size=args.batch_size,
                                     num_workers=args.num_workers)
    except (FileNotFoundError, ValueError) as error:  # a user's mistake: one line, exit code 2
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(error).split())}\n")
    command = [sys.executable, "-m", "attention_lib.evaluate", *(argv if argv is not None else sys.argv[1:])]
    record = {
        "model": model.pretrained_cfg["name"], "weights": provenance.weights_label(model),
        "result": provenance.is_result(model),
        "dataset": f"Imagenette {args.size} validation split" + (
            f", first {args.per_class} images per class" if args.per_class else ""),
        "images": result.images, "top1": result.top1, "top1_among_10": result.top1_among_10,
        **provenance.record(command, "cuda" if torch.cuda.is_available() else "cpu"),
    }
    print(f"{record['weights']}: top-1 {result.top1:.4f} (1000-way), {result.top1_among_10:.4f} (10-way) "
          f"on {result.images} images of the {record['dataset']}")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
