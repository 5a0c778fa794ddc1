# Hand-written support module (not generated from a notebook).
"""What trained attention does: load a trained model, read its attention, ablate it, evaluate it.

The chapters' "trained attention" sections are built from these pieces:

* :func:`load_trained` gives our model with published ImageNet weights
  (:mod:`attention_lib.pretrained`), or ``None`` with a sentence saying why when the
  weights cannot be downloaded (offline, as in CI), so that a section shows nothing
  rather than something misleading. ``weights="random"`` maps a *randomly initialised*
  published architecture instead: it exercises every line of a section offline (the
  tests use it), and every label then says "random weights, not a result".
* :func:`load_checkpoint_model` gives the model of a run of ``attention_lib.train``
  (for the mechanisms with no published weights: train one, then look at it).
* :func:`preprocess`, :func:`predict_top_k` and :func:`ablate_attention` compare
  a model's top-5 predictions on real photos with and without its attention.
* :func:`evaluate_imagenette` measures top-1 on Imagenette's validation split (its ten
  classes are ImageNet classes, :data:`IMAGENETTE_TO_IMAGENET`) and averages the
  attention weights per class (:func:`class_attention`): the SE paper's test of whether
  a layer's excitation depends on the class.

Command line (writes the measurement, with command, hardware and date, to JSON)::

    python -m attention_lib.trained seresnet50 --data-root data --output book/results/pretrained_top1.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attention_lib.models import AttentionRecorder, attention_modules, create_model, is_attention_module

__all__ = [
    "WEIGHT_MODES", "IMAGENETTE_TO_IMAGENET", "load_trained", "load_checkpoint_model", "weights_label",
    "is_result", "imagenet_categories", "preprocess", "predict_top_k", "ablate_attention", "class_attention",
    "ImagenetteResult", "imagenette_val", "evaluate_imagenette", "imagenette_report", "pick_layers",
    "photo_batch", "show_attention", "top5_markdown", "main",
]

#: ``load_trained(weights=...)``: download the published weights when possible, skip, or
#: map a randomly initialised published model (code-path tests only: never a result).
WEIGHT_MODES = ("auto", "off", "random")

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


# ----------------------------------------------------------------------------- loading

_DOWNLOAD_LOGGERS = ("huggingface_hub", "timm", "torch.hub", "torchvision")


@contextlib.contextmanager
def _output_to_stdout() -> Iterator[None]:
    """Send what downloads print (progress bars, warnings, the libraries' log messages) to
    stdout while the block runs. In a book build, anything on stderr is a Sphinx warning,
    and huggingface_hub logs through a handler that holds on to the original stderr."""
    import logging
    import warnings

    def show_on_stdout(message, category, filename, lineno, file=None, line=None) -> None:
        sys.stdout.write(warnings.formatwarning(message, category, filename, lineno, line))

    saved = []
    for name in _DOWNLOAD_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate))
        logger.handlers = [logging.StreamHandler(sys.stdout)]
        logger.propagate = False
    try:
        with contextlib.redirect_stderr(sys.stdout), warnings.catch_warnings():
            warnings.showwarning = show_on_stdout
            yield
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers, logger.propagate = handlers, propagate


def load_trained(name: str, weights: str = "auto") -> nn.Module | None:
    """Our model carrying the published ImageNet weights of ``name``, or ``None`` (said why).

    Args:
        name: a key of :data:`attention_lib.pretrained.PRETRAINED` (``"seresnet50"``).
        weights: ``"auto"`` downloads the weights (cached after the first time) and
            returns ``None`` with a printed explanation when that fails; ``"off"``
            returns ``None``; ``"random"`` returns the mapped model of a randomly
            initialised published network (nothing is downloaded; for tests of the code
            path: its outputs mean nothing).

    Returns:
        The model in eval mode, with ``model.pretrained_cfg`` (the preprocessing the
        weights expect, and ``"random": True`` for random weights), or ``None``.
    """
    from attention_lib import pretrained

    if weights not in WEIGHT_MODES:
        raise ValueError(f"weights must be one of {WEIGHT_MODES}, got {weights!r}")
    if weights == "off":
        print(f"weights='off': the trained {name} is not loaded, and this section shows nothing.")
        return None
    if weights == "random":
        model = pretrained.build_model(name)
        pretrained.load_published_state_dict(model, name, pretrained.published_model(name).state_dict())
        model.pretrained_cfg = {**pretrained.data_config(name), "random": True}
        print(f"RANDOM WEIGHTS: {name}'s architecture, randomly initialised and mapped onto ours. This runs "
              "the code of this section; its numbers and pictures mean nothing: not a result.")
        return model.eval()
    try:
        with _output_to_stdout():  # download progress and messages: see _output_to_stdout
            model = pretrained.pretrained_model(name)
    except (RuntimeError, ImportError) as error:
        print(f"The published ImageNet weights of {name} are not available here, so this section shows "
              f"nothing (it runs wherever they can be downloaded: Colab, the online book).\nReason: {error}")
        return None
    model.pretrained_cfg["random"] = False
    print(f"Loaded {weights_label(model)}.")
    return model


def load_checkpoint_model(path: str | Path) -> nn.Module:
    """The model of an ``attention_lib.train`` run, from its ``checkpoint.pt``, in eval mode.

    ``model.run_info`` holds the run's configuration, finished epochs and last
    validation top-1; ``model.pretrained_cfg`` the preprocessing it was evaluated with.

    Raises:
        FileNotFoundError: ``path`` (a checkpoint file or the run's folder) has no checkpoint.
        ValueError: the file is not a checkpoint of ``attention_lib.train``.
    """
    from attention_lib.data import IMAGENET_MEAN, IMAGENET_STD

    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no file at {path}; expected the checkpoint.pt that "
                                "python -m attention_lib.train writes into its output_dir")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or not {"model", "config", "history"} <= set(state):
        raise ValueError(f"checkpoint: {path} is not a checkpoint of attention_lib.train "
                         "(expected the keys 'model', 'config' and 'history')")
    config = state["config"]
    classifier = [value for key, value in state["model"].items() if key.endswith("weight") and value.dim() == 2]
    model = create_model(config["arch"], config["attention"], num_classes=classifier[-1].shape[0],
                         image_size=config["image_size"], **config["attention_kwargs"])
    model.load_state_dict(state["model"])
    history = state["history"]
    model.run_info = {"config": config, "epochs": len(history), "smoke": bool(config.get("smoke")),
                      "top1": history[-1]["top1"] if history else None, "path": str(path)}
    size = config["image_size"]
    model.pretrained_cfg = {"name": f"{config['arch']}-{config['attention']} ({path})", "source": "checkpoint",
                            "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "input_size": (3, size, size),
                            "crop_pct": 7 / 8, "interpolation": "bilinear", "random": False,
                            "smoke": bool(config.get("smoke"))}
    return model.eval()


def weights_label(model: nn.Module) -> str:
    """Where a model's weights come from, for titles and printed results."""
    cfg = getattr(model, "pretrained_cfg", None)
    if cfg is None:
        return "untrained model (random initialisation): not a result"
    if cfg.get("random"):
        return f"{cfg['name']} architecture with RANDOM WEIGHTS (code-path test): not a result"
    if cfg.get("source") == "checkpoint":
        info = model.run_info
        smoke = " - SMOKE RUN, not a result" if info["smoke"] else ""
        return (f"{cfg['name']}, trained by attention_lib.train on {info['config']['dataset']} "
                f"for {info['epochs']} epoch(s){smoke}")
    return f"{cfg['name']} ({cfg['source']}, ImageNet-1k weights)"


def is_result(model: nn.Module) -> bool:
    """Whether a model's outputs may be shown as findings (real trained weights, no smoke run)."""
    cfg = getattr(model, "pretrained_cfg", None)
    return bool(cfg) and not cfg.get("random") and not cfg.get("smoke")


# ----------------------------------------------------------------------------- predictions

def imagenet_categories() -> list[str]:
    """ImageNet-1k's 1000 class names, in index order (torchvision's metadata; offline)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def _resize_size(cfg: dict[str, Any]) -> tuple[int, int]:
    size = cfg["input_size"][-1]
    return size, round(size / cfg["crop_pct"])


def preprocess(images: torch.Tensor, model_or_cfg: nn.Module | dict[str, Any]) -> torch.Tensor:
    """Photos ``(n, 3, H, W)`` or ``(3, H, W)`` in ``[0, 1]`` -> the normalised crops a model expects.

    Resize the shorter side to ``input size / crop_pct``, centre-crop ``input size``,
    normalise with the weights' mean and std (``model.pretrained_cfg``).
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    cfg = model_or_cfg if isinstance(model_or_cfg, dict) else getattr(model_or_cfg, "pretrained_cfg", None)
    if cfg is None:
        raise ValueError("the model has no pretrained_cfg: load it with load_trained or load_checkpoint_model")
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (n, 3, H, W) or (3, H, W) in [0, 1], got shape {tuple(images.shape)}")
    crop, resize = _resize_size(cfg)
    mode = InterpolationMode(cfg.get("interpolation", "bilinear"))
    images = TF.resize(images, resize, interpolation=mode, antialias=True)
    images = TF.center_crop(images, [crop, crop]).clamp(0, 1)
    return TF.normalize(images, list(cfg["mean"]), list(cfg["std"]))


def predict_top_k(model: nn.Module, batch: torch.Tensor, k: int = 5,
                  categories: Sequence[str] | None = None) -> list[list[tuple[str, float]]]:
    """The ``k`` most probable classes of each image of a preprocessed ``batch``, with probabilities."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    with torch.no_grad():
        probabilities = model(batch).float().softmax(dim=1)
    names = list(categories) if categories is not None else (
        imagenet_categories() if probabilities.shape[1] == 1000 else [str(i) for i in range(probabilities.shape[1])])
    if len(names) != probabilities.shape[1]:
        raise ValueError(f"categories has {len(names)} names but the model predicts {probabilities.shape[1]} classes")
    values, indices = probabilities.topk(min(k, probabilities.shape[1]), dim=1)
    return [[(names[i], float(p)) for p, i in zip(row_p, row_i)] for row_p, row_i in zip(values, indices)]


@contextlib.contextmanager
def ablate_attention(model: nn.Module) -> Iterator[list[str]]:
    """Switch every attention module of ``model`` off inside a ``with`` block.

    "Off" means the module passes its input through unchanged (SE, ECA, CBAM, BAM and
    Gather-Excite: a gate of 1 everywhere, or for BAM a map of 0 in ``x + x * M``), and
    a Selective Kernel unit gives its branches equal weights ``1/m`` (it must still
    combine them). Nothing else is retrained: the rest of the network keeps the weights
    it learned *with* attention, so the drop in accuracy measures how much the network
    relies on it. Yields the names of the modules switched off.
    """
    modules = attention_modules(model)
    if not modules:
        raise ValueError("the model contains no attention_lib attention module")

    def identity(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return inputs[0]

    def equal_branches(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        branches = [branch(inputs[0]) for branch in module.branches]
        return torch.stack(branches).mean(dim=0)

    handles = []
    for _, module in modules:
        is_sk = type(module).__name__ == "SelectiveKernel"  # also the chapter's own class
        handles.append(module.register_forward_hook(equal_branches if is_sk else identity))
    try:
        yield [name for name, _ in modules]
    finally:
        for handle in handles:
            handle.remove()


# ----------------------------------------------------------------------------- per-class statistics

def class_attention(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], num_classes: int,
                    on_logits: Callable[[torch.Tensor, torch.Tensor], None] | None = None
                    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Mean channel weights of every attention map, per class.

    Args:
        model: a model with this library's attention modules, in eval mode.
        batches: ``(images, labels)`` pairs, labels in ``[0, num_classes)``.
        num_classes: number of classes.
        on_logits: called with ``(logits, labels)`` of every batch (e.g. to count hits).

    Returns:
        ``(per_class, counts)``: map name -> ``(num_classes, ...)`` mean of
        :meth:`~attention_lib.models.AttentionMap.channel_weights` (``(classes, channels)``;
        ``(classes, branches, channels)`` for SK), and images per class. Spatial-only maps
        (CBAM's spatial step) have no channel weights and are left out.
    """
    sums: dict[str, torch.Tensor] = {}
    counts = torch.zeros(num_classes, dtype=torch.long)
    with torch.no_grad(), AttentionRecorder(model) as recorder:
        for images, labels in batches:
            logits = model(images)
            if on_logits is not None:
                on_logits(logits, labels)
            if labels.min() < 0 or labels.max() >= num_classes:
                raise ValueError(f"labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")
            counts += torch.bincount(labels.cpu(), minlength=num_classes)
            for name, item in recorder.named.items():
                if item.kind == "spatial":
                    continue
                weights = item.channel_weights().float()
                total = sums.setdefault(name, weights.new_zeros(num_classes, *weights.shape[1:]))
                total.index_add_(0, labels, weights)
    if counts.sum() == 0:
        raise ValueError("batches gave no images")
    per_class = {name: total.cpu() / counts.clamp(min=1).view(-1, *[1] * (total.dim() - 1))
                 for name, total in sums.items()}
    return per_class, counts


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
    from torch.utils.data import Subset
    from torchvision import datasets, transforms

    from attention_lib.data import IMAGENETTE_SIZES, _rgb_loader

    cfg = model_or_cfg if isinstance(model_or_cfg, dict) else model_or_cfg.pretrained_cfg
    if size not in IMAGENETTE_SIZES:
        raise ValueError(f"size must be one of {tuple(IMAGENETTE_SIZES)}, got {size!r}")
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1):
        raise ValueError(f"per_class must be None or a positive int, got {per_class!r}")
    folder = Path(root).expanduser() / IMAGENETTE_SIZES[size] / "val"
    if not download and not folder.is_dir():
        raise FileNotFoundError(f"Imagenette val split: no folder {folder}; expected {folder}/<wnid>/*.JPEG "
                                "(or pass download=True)")
    crop, resize = _resize_size(cfg)
    transform = transforms.Compose([
        transforms.Resize(resize, interpolation=transforms.InterpolationMode(cfg.get("interpolation", "bilinear")),
                          antialias=True),
        transforms.CenterCrop(crop), transforms.ToTensor(), transforms.Normalize(cfg["mean"], cfg["std"]),
    ])
    with _output_to_stdout():  # download progress: see load_trained
        dataset = datasets.Imagenette(str(Path(root).expanduser()), split="val", size=size, download=download,
                                      transform=transform, loader=_rgb_loader)
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
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

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


# ----------------------------------------------------------------------------- chapter helpers

def imagenette_report(model: nn.Module, root: str | Path = "data", download: bool = True,
                      per_class: int | None = None, progress: bool = True) -> ImagenetteResult | None:
    """:func:`evaluate_imagenette`, printing the top-1 with its provenance, or ``None`` (said
    why) when Imagenette is neither on disk nor downloadable."""
    try:
        result = evaluate_imagenette(model, root, download=download, per_class=per_class, progress=progress)
    except (OSError, RuntimeError) as error:  # no folder, or the download failed
        print(f"Imagenette's validation split is not available here, so the per-class statistics are "
              f"skipped.\nReason: {type(error).__name__}: {error}")
        return None
    subset = f"the first {per_class} images of each class" if per_class else "all images"
    print(f"{weights_label(model)}\ntop-1 on Imagenette's validation split ({subset}, {result.images} images): "
          f"{result.top1:.1%} among ImageNet's 1000 classes (chance: 0.1%), {result.top1_among_10:.1%} among "
          "Imagenette's 10")
    return result


def pick_layers(per_layer: dict[str, Any], count: int = 4) -> dict[str, Any]:
    """``count`` entries of a name -> value dict, evenly spaced from first to last (network order)."""
    names = list(per_layer)
    if len(names) <= count:
        return dict(per_layer)
    chosen = sorted({round(i * (len(names) - 1) / (count - 1)) for i in range(count)})
    return {names[i]: per_layer[names[i]] for i in chosen}


def photo_batch(model: nn.Module, names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-image photos ``names`` as ``(model input, the same crops in [0, 1])``."""
    from attention_lib.figures import load_photo

    from torchvision.transforms import functional as TF

    cfg = model.pretrained_cfg
    plain = {**cfg, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # resize and crop only
    crops = torch.cat([preprocess(load_photo(name), plain) for name in names])
    return TF.normalize(crops, list(cfg["mean"]), list(cfg["std"])), crops


def show_attention(model: nn.Module, photo: str = "chelsea", layers: Sequence[str] | None = None,
                   count: int = 4, kinds: Sequence[str] | None = None):
    """Record a model's attention on one real photo and draw it with :func:`~attention_lib.figures.plot_attention`.

    Args:
        model: from :func:`load_trained` or :func:`load_checkpoint_model`.
        photo: a scikit-image photo (:data:`attention_lib.figures.PHOTOS`).
        layers: names of the maps to draw (default: ``count`` maps spread over the depth).
        kinds: draw only maps of these kinds (e.g. ``("spatial",)`` for CBAM's spatial step).

    Returns:
        The figure, or ``None`` for the model of a smoke run (it is not drawn: not a result).
    """
    from attention_lib.figures import plot_attention

    batch, crops = photo_batch(model, [photo])
    with torch.no_grad(), AttentionRecorder(model) as recorder:
        model(batch.to(next(model.parameters()).device))
    recorded = {name: item for name, item in recorder.named.items() if kinds is None or item.kind in kinds}
    if not recorded:
        raise ValueError(f"the model records no attention map of the kinds {kinds}")
    maps = {name: recorded[name] for name in layers} if layers else pick_layers(recorded, count)
    if (getattr(model, "pretrained_cfg", None) or {}).get("smoke"):
        shapes = ", ".join(f"{name}: {tuple(item.tensor.shape)}" for name, item in maps.items())
        print(f"Smoke run: attention recorded ({shapes}) but not drawn - its weights are not a result.")
        return None
    return plot_attention(maps, image=crops[0], title=f"{photo}: {weights_label(model)}")


def top5_markdown(model: nn.Module, photos: Sequence[str] = ("chelsea", "coffee", "rocket", "astronaut")) -> str:
    """A Markdown table of the top-5 ImageNet classes of real photos, with the attention
    working and switched off (:func:`ablate_attention`)."""
    batch, _ = photo_batch(model, photos)
    batch = batch.to(next(model.parameters()).device)
    before = predict_top_k(model, batch)
    with ablate_attention(model):
        after = predict_top_k(model, batch)

    def cell(row: list[tuple[str, float]]) -> str:
        return "<br>".join(f"{name} ({p:.1%})" for name, p in row)

    lines = [f"Top-5 of {weights_label(model)}", "",
             "| photo | attention on | attention switched off |", "|---|---|---|"]
    lines += [f"| {photo} | {cell(b)} | {cell(a)} |" for photo, b, a in zip(photos, before, after)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    """``python -m attention_lib.trained NAME``: measure a published model on Imagenette val."""
    from attention_lib.pretrained import PRETRAINED
    from attention_lib.train import _commit

    parser = argparse.ArgumentParser(description="Top-1 of a published model, mapped onto attention_lib's "
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
    model = load_trained(args.name, weights=args.weights)
    if model is None:
        return 1
    result = evaluate_imagenette(model, args.data_root, download=args.download, size=args.size,
                                 per_class=args.per_class, batch_size=args.batch_size, num_workers=args.num_workers)
    record = {
        "model": model.pretrained_cfg["name"], "weights": weights_label(model), "result": is_result(model),
        "dataset": f"Imagenette {args.size} validation split" + (
            f", first {args.per_class} images per class" if args.per_class else ""),
        "images": result.images, "top1": result.top1, "top1_among_10": result.top1_among_10,
        "command": [sys.executable, "-m", "attention_lib.trained", *(argv if argv is not None else sys.argv[1:])],
        "hardware": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                     "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "torch": torch.__version__, "commit": _commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    print(f"{record['weights']}: top-1 {result.top1:.4f} (1000-way), {result.top1_among_10:.4f} (10-way) "
          f"on {result.images} images of the {record['dataset']}")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
