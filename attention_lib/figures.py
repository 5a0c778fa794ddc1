# Hand-written support module (not generated from a notebook).
"""The chapters' figures: oriented-filter feature maps of real photos, and attention plots.

The photos come from :mod:`attention_lib.photos` (scikit-image's samples, drawn offline).
matplotlib belongs to the ``notebooks`` extra: only the chapters (and the toolkit they call) import this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from attention_lib.photos import PHOTOS, load_photo
from attention_lib.validation import check_int

__all__ = ["PHOTOS", "load_photo", "oriented_filters", "filter_responses", "show_maps", "plot_attention",
           "plot_class_attention", "class_spread", "plot_spread_by_depth", "plot_learning_curves"]


def oriented_filters(orientations: int = 4, size: int = 9, wavelength: float = 4.0) -> torch.Tensor:
    """A bank of Gabor filters (cosine phase), one per orientation, as ``(C, 1, k, k)``.

    They stand in for the first layer of a CNN: each responds to edges and stripes
    of one orientation, which gives every channel a clear meaning in the figures.
    """
    check_int(orientations, "orientations")
    check_int(size, "size", minimum=3)
    half = size // 2
    coords = torch.arange(-half, half + 1, dtype=torch.float32)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    sigma = 0.56 * wavelength
    kernels = []
    for i in range(orientations):
        theta = math.pi * i / orientations
        along = x * math.cos(theta) + y * math.sin(theta)
        envelope = torch.exp(-(x**2 + y**2) / (2 * sigma**2))
        kernel = envelope * torch.cos(2 * math.pi * along / wavelength)
        kernels.append(kernel - kernel.mean())  # zero mean: flat regions give no response
    bank = torch.stack(kernels)[:, None]
    return bank / bank.abs().sum(dim=(1, 2, 3), keepdim=True)


def filter_responses(image: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Rectified responses of ``filters`` to the grey-level ``image``: ``(C, H, W)``."""
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must be (1 or 3, H, W), got shape {tuple(image.shape)}")
    grey = image.mean(dim=0, keepdim=True)[None]
    half = filters.shape[-1] // 2
    # Reflect padding: zero padding would make the photo's border look like an edge.
    grey = F.pad(grey, (half, half, half, half), mode="reflect")
    responses = F.conv2d(grey, filters)[0]
    return responses.abs()


def show_maps(maps: torch.Tensor, titles: list[str] | None = None, ncols: int | None = None,
              cmap: str = "magma", size: float = 2.4, suptitle: str | None = None):
    """Plot a stack of 2-D maps ``(C, H, W)`` side by side; return the figure."""
    maps = maps.detach().float().cpu()
    count = maps.shape[0]
    ncols = ncols or count
    nrows = math.ceil(count / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index < count:
            ax.imshow(maps[index], cmap=cmap)
            if titles is not None:
                ax.set_title(titles[index], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def _as_list(maps) -> list:
    if isinstance(maps, Mapping):
        return list(maps.values())
    return list(maps)


def plot_attention(maps, image: torch.Tensor | None = None, index: int = 0, ncols: int | None = None,
                   size: float = 2.8, title: str | None = None, cmap: str = "magma"):
    """Draw attention maps recorded by :class:`~attention_lib.recorder.AttentionRecorder`.

    One panel per :class:`~attention_lib.recorder.AttentionMap`, for image ``index`` of the
    batch, drawn the way its kind reads best:

    * spatial, channel-spatial and position maps (CBAM's spatial step, BAM, local
      Gather-Excite, Non-local): upsampled to the photo and laid over it (channel-spatial
      maps are averaged over channels first, position maps over their query positions);
    * channel weights (SE, ECA, CBAM's channel step, global Gather-Excite): one bar per
      channel, in channel order, on a 0-1 scale;
    * branch weights (Selective Kernel): one line per branch across the channels, sorted
      by the weight of the last branch.

    Args:
        maps: ``recorder.named`` (a dict) or a list of attention maps.
        image: the ``(3, H, W)`` photo in ``[0, 1]`` the batch came from (optional; used
            under spatial maps).
        index: which image of the batch to draw.
        ncols: panels per row (default: all in one row, at most 4).
        size: inches per panel.
        title: the figure's title: say where the weights came from.
        cmap: colour map of the spatial maps.

    Returns:
        The matplotlib figure.
    """
    items = _as_list(maps)
    if not items:
        raise ValueError("maps is empty: record a forward pass with AttentionRecorder first")
    if image is not None and (image.dim() != 3 or image.shape[0] != 3):
        raise ValueError(f"image must be a (3, H, W) tensor, got shape {tuple(image.shape)}")
    batch = items[0].size("batch")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < batch:
        raise ValueError(f"index must be an int in [0, {batch}), got {index!r}")
    ncols = ncols or min(len(items), 4)
    nrows = math.ceil(len(items) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols * 1.15, size * nrows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(items):]:
        ax.axis("off")
    for ax, item in zip(axes.flat, items):
        label = item.name.replace(".attention", "")
        if item.kind in ("spatial", "channel-spatial", "position"):
            heat = item.spatial_map()[index].detach().float().cpu()
            ax.axis("off")
            if image is not None:
                heat = F.interpolate(heat[None, None], size=image.shape[1:], mode="bilinear",
                                     align_corners=False)[0, 0]
                ax.imshow(image.permute(1, 2, 0).cpu().numpy())
                shown = ax.imshow(heat.numpy(), cmap=cmap, alpha=0.55)
            else:
                shown = ax.imshow(heat.numpy(), cmap=cmap)
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
            what = {"channel-spatial": "mean over channels", "position": "mean over query positions"}.get(
                item.kind, "one weight per pixel")
            ax.set_title(f"{label}\n{item.module}: {what}", fontsize=8)
        elif item.kind == "channel":
            weights = item.channel_weights()[index].detach().float().cpu()
            ax.bar(range(len(weights)), weights.numpy(), width=1.0, color="tab:blue")
            ax.set_ylim(0, 1)
            ax.set_xlim(-0.5, len(weights) - 0.5)
            ax.set_xlabel("channel", fontsize=8)
            ax.set_title(f"{label}\n{item.module}: mean {weights.mean():.2f}, std {weights.std():.2f}", fontsize=8)
        else:  # branch
            weights = item.channel_weights()[index].detach().float().cpu()  # (branch, channel)
            order = weights[-1].argsort()
            for b in range(weights.shape[0]):
                ax.plot(weights[b, order].numpy(), label=f"branch {b + 1}", linewidth=1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("channel (sorted)", fontsize=8)
            ax.legend(fontsize=7, loc="center left")
            ax.set_title(f"{label}\n{item.module}: last branch mean {weights[-1].mean():.2f}", fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_class_attention(per_class: Mapping[str, torch.Tensor], class_names: Sequence[str],
                         title: str | None = None, size: float = 3.2):
    """Heat maps of mean channel weights per class, one panel per layer.

    Each panel's rows are classes and columns channels; its title gives the *spread*
    (the across-class standard deviation of each channel's mean weight, averaged over
    channels): near zero when a layer weights channels the same for every class.

    Args:
        per_class: layer name -> ``(classes, channels)`` tensor, e.g. from
            :func:`attention_lib.analysis.class_attention`.
        class_names: one name per row.
        title: the figure's title: say where the weights came from.
    """
    if not per_class:
        raise ValueError("per_class is empty")
    for name, table in per_class.items():
        if table.dim() != 2 or table.shape[0] != len(class_names):
            raise ValueError(f"per_class[{name!r}] must be (classes={len(class_names)}, channels), "
                             f"got shape {tuple(table.shape)}")
    fig, axes = plt.subplots(1, len(per_class), figsize=(size * len(per_class) * 1.2, size), squeeze=False,
                             layout="constrained")
    shown = None
    for ax, (name, table) in zip(axes.flat, per_class.items()):
        table = table.detach().float().cpu()
        shown = ax.imshow(table.numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
        ax.set_xlabel("channel", fontsize=8)
        ax.set_title(f"{name.replace('.attention', '')}\nspread across classes {class_spread(table):.3f}",
                     fontsize=8)
        ax.tick_params(labelsize=7)
    fig.colorbar(shown, ax=axes, fraction=0.02)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def class_spread(per_class: torch.Tensor) -> float:
    """Mean over channels of the across-class standard deviation of ``(classes, channels)``
    weights: 0 when every class gets the same channel weights."""
    if per_class.dim() != 2 or per_class.shape[0] < 2:
        raise ValueError(f"per_class must be (classes >= 2, channels), got shape {tuple(per_class.shape)}")
    return float(per_class.float().std(dim=0).mean())


def plot_spread_by_depth(per_class: Mapping[str, torch.Tensor], title: str | None = None):
    """Line plot of :func:`class_spread` for every attention module, in network order.

    The SE paper's question: do a layer's channel weights depend on the class? A spread near
    zero says no (class-agnostic), a larger one says yes (class-specific).
    """
    if not per_class:
        raise ValueError("per_class is empty")
    names = list(per_class)
    spreads = [class_spread(table) for table in per_class.values()]
    fig, ax = plt.subplots(figsize=(8, 3), layout="constrained")
    ax.plot(range(len(spreads)), spreads, marker="o")
    ax.set_xticks(range(len(names)), [n.replace(".attention", "").replace(".bn3", "").replace(".bn2", "")
                                      for n in names], rotation=90, fontsize=7)
    ax.set_ylabel("spread across classes")
    ax.set_xlabel("attention module (input side to output side)")
    ax.set_ylim(bottom=0)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_learning_curves(metrics: Mapping, title: str | None = None):
    """Loss (training and validation) and validation top-1/top-5 after every epoch of a run.

    Args:
        metrics: the contents of a run's ``metrics.json`` (:func:`attention_lib.train.train`).
        title: the figure's title (default: the run's backbone, attention, data, hardware and date).
    """
    epochs = metrics["epochs"]
    if not epochs:
        raise ValueError("metrics has no finished epoch to plot")
    numbers = [e["epoch"] for e in epochs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
    left.plot(numbers, [e["train_loss"] for e in epochs], marker="o", label="training")
    left.plot(numbers, [e["val_loss"] for e in epochs], marker="o", label="validation")
    left.set_xlabel("epoch")
    left.set_ylabel("cross-entropy")
    left.legend()
    right.plot(numbers, [e["top1"] for e in epochs], marker="o", label="top-1")
    right.plot(numbers, [e["top5"] for e in epochs], marker="o", label="top-5")
    right.set_xlabel("epoch")
    right.set_ylabel("validation accuracy")
    right.set_ylim(0, 1)
    right.legend()
    if title is None:
        config = metrics["config"]
        hardware = metrics["hardware"].get("gpu", metrics["hardware"]["cpu"])
        smoke = " - SMOKE RUN, not a result" if metrics.get("smoke") else ""
        title = (f"{config['arch']} + {config['attention'] or 'no attention'} on {config['dataset']} "
                 f"({hardware}, {metrics['started'][:10]}){smoke}")
    fig.suptitle(title, fontsize=10)
    return fig
