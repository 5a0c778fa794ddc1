# Hand-written support module (not generated from a notebook).
"""What a trained network's attention does: predictions, ablation, per-class weights.

* :func:`preprocess` and :func:`predict_top_k` turn photos into a model's top-k classes
  (with the preprocessing its weights expect, ``model.pretrained_cfg``);
  :func:`photo_batch` does it for scikit-image's photos.
* :func:`ablate_attention` switches every attention module off inside a ``with`` block,
  so that the drop in accuracy measures how much the network relies on it.
* :func:`class_attention` averages the attention weights per class: the SE paper's test
  of whether a layer's weights depend on the class.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torchvision.models import ResNet50_Weights
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from attention_lib.mechanisms import ablation_of
from attention_lib.photos import load_photo
from attention_lib.recorder import AttentionRecorder, attention_modules

__all__ = ["imagenet_categories", "preprocess", "predict_top_k", "photo_batch", "ablate_attention",
           "class_attention", "pick_layers", "resize_sizes"]


def imagenet_categories() -> list[str]:
    """ImageNet-1k's 1000 class names, in index order (torchvision's metadata; offline)."""
    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def resize_sizes(cfg: dict[str, Any]) -> tuple[int, int]:
    """(crop, resize): the centre crop's side and the shorter side to resize to first."""
    size = cfg["input_size"][-1]
    return size, round(size / cfg["crop_pct"])


def preprocess(images: torch.Tensor, model_or_cfg: nn.Module | dict[str, Any]) -> torch.Tensor:
    """Photos ``(n, 3, H, W)`` or ``(3, H, W)`` in ``[0, 1]`` -> the normalised crops a model expects.

    Resize the shorter side to ``input size / crop_pct``, centre-crop ``input size``,
    normalise with the weights' mean and std (``model.pretrained_cfg``).
    """
    cfg = model_or_cfg if isinstance(model_or_cfg, dict) else getattr(model_or_cfg, "pretrained_cfg", None)
    if cfg is None:
        raise ValueError("the model has no pretrained_cfg: load it with attention_lib.weights.load_trained "
                         "or attention_lib.checkpoint.load_model")
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (n, 3, H, W) or (3, H, W) in [0, 1], got shape {tuple(images.shape)}")
    crop, resize = resize_sizes(cfg)
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
    combine them; a module with an ``equal_branches(x)`` method, such as Split-Attention,
    computes that itself). Nothing else is retrained: the rest of the network keeps the weights
    it learned *with* attention, so the drop in accuracy measures how much the network
    relies on it. Yields the names of the modules switched off.
    """
    modules = attention_modules(model)
    if not modules:
        raise ValueError("the model contains no attention_lib attention module")

    def identity(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return inputs[0]

    def equal_branches(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if callable(getattr(module, "equal_branches", None)):  # e.g. Split-Attention: the module knows how
            return module.equal_branches(inputs[0])
        branches = [branch(inputs[0]) for branch in module.branches]
        return torch.stack(branches).mean(dim=0)

    hooks = {"identity": identity, "equal branches": equal_branches}
    handles = [module.register_forward_hook(hooks[ablation_of(module)]) for _, module in modules]
    try:
        yield [name for name, _ in modules]
    finally:
        for handle in handles:
            handle.remove()


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
        :meth:`~attention_lib.recorder.AttentionMap.channel_weights` (``(classes, channels)``;
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


def pick_layers(per_layer: dict[str, Any], count: int = 4) -> dict[str, Any]:
    """``count`` entries of a name -> value dict, evenly spaced from first to last (network order)."""
    names = list(per_layer)
    if len(names) <= count:
        return dict(per_layer)
    chosen = sorted({round(i * (len(names) - 1) / (count - 1)) for i in range(count)})
    return {names[i]: per_layer[names[i]] for i in chosen}


def photo_batch(model: nn.Module, names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-image photos ``names`` as ``(model input, the same crops in [0, 1])``."""
    cfg = model.pretrained_cfg
    plain = {**cfg, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # resize and crop only
    crops = torch.cat([preprocess(load_photo(name), plain) for name in names])
    return TF.normalize(crops, list(cfg["mean"]), list(cfg["std"])), crops

