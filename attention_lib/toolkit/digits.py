# Hand-written support module (not generated from a notebook).
"""The chapters' small real-data experiment: attention trained on handwritten digits, in seconds.

ImageNet is out of reach of a notebook on a CPU, but scikit-learn ships a real dataset
small enough to train on in seconds: 1,797 handwritten digits of 8x8 pixels. Each chapter
trains a small network with its mechanism on them, holds out 360 digits the network
never sees, and reads what the attention learned. This module is the part every chapter
shares:

* :func:`load_digits` loads them, optionally enlarged or pasted at random positions on a
  blank canvas (so that spatial attention has something to find), with the fixed
  train/held-out split of a seed;
* :func:`digits_network` is the two-stage residual network of the SE and ECA chapters,
  with any attention module on each residual branch before the addition;
* :func:`digits_experiment` trains several networks on the same data in the same order
  from the same seed, and reports held-out accuracy, parameters and time;
* :func:`box_contrast_table` and :func:`plot_digit_maps` read spatial attention on
  pasted digits: how much more weight lies inside the digit's box than on the blank
  canvas, and the maps over a few held-out digits.

Training uses one CPU thread: for tensors this small more threads cost more than they
save, and on a machine shared with other jobs they wait for each other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn import datasets
from torch import nn

from attention_lib.costs import one_thread
from attention_lib.recorder import attention_modules
from attention_lib.toolkit.display import table

__all__ = ["HELD_OUT", "Digits", "load_digits", "paste", "ResidualBlock", "digits_network", "DigitsRun",
           "DigitsResult", "digits_experiment", "box_contrast", "box_contrast_table", "plot_digit_maps"]

#: Digits held out from training (20 % of the 1,797).
HELD_OUT = 360


@dataclass
class Digits:
    """scikit-learn's digits as tensors, with a fixed split.

    Attributes:
        images: ``(1797, 1, H, W)`` in ``[0, 1]``.
        labels: ``(1797,)`` digit classes.
        train_idx, test_idx: the split (``test_idx`` holds :data:`HELD_OUT` digits).
        boxes: ``(1797, H, W)`` booleans marking where each digit was pasted (``None``
            when there is no canvas).
        glyphs: the original 8x8 digits, ``(1797, 1, 8, 8)``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    train_idx: torch.Tensor
    test_idx: torch.Tensor
    boxes: torch.Tensor | None
    glyphs: torch.Tensor = field(repr=False)

    @property
    def train(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of the training digits."""
        return self.images[self.train_idx], self.labels[self.train_idx]

    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of the held-out digits."""
        return self.images[self.test_idx], self.labels[self.test_idx]


def paste(glyphs: torch.Tensor, size: int, canvas: int, generator: torch.Generator | None = None,
          centred: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize ``glyphs`` ``(n, 1, h, w)`` to ``size`` pixels and paste each on a blank ``canvas``.

    Returns ``(images (n, 1, canvas, canvas), boxes (n, canvas, canvas))``; each digit goes
    to a random position drawn from ``generator``, or to the centre.
    """
    if not 1 <= size <= canvas:
        raise ValueError(f"size must be between 1 and canvas ({canvas}), got {size}")
    resized = F.interpolate(glyphs, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    n = len(glyphs)
    if centred:
        corners = torch.full((n, 2), (canvas - size) // 2)
    else:
        corners = torch.randint(0, canvas - size + 1, (n, 2), generator=generator)
    images = torch.zeros(n, 1, canvas, canvas)
    boxes = torch.zeros(n, canvas, canvas, dtype=torch.bool)
    for index, (top, left) in enumerate(corners.tolist()):
        images[index, :, top:top + size, left:left + size] = resized[index]
        boxes[index, top:top + size, left:left + size] = True
    return images, boxes


def load_digits(seed: int = 0, size: int = 8, canvas: int | None = None) -> Digits:
    """The 1,797 digits, split into 1,437 for training and 360 held out (fixed by ``seed``).

    Args:
        seed: the split (and, with a canvas, the positions).
        size: side of each digit in pixels (upsampled from 8x8 when larger).
        canvas: if given, paste each digit at a random position on a blank canvas of this
            side, so that the network must find it.
    """
    data = datasets.load_digits()
    glyphs = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    labels = torch.tensor(data.target)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)  # first: the split depends on the seed alone
    boxes = None
    if canvas is not None:
        images, boxes = paste(glyphs, size, canvas, generator)
    elif size != 8:
        images = F.interpolate(glyphs, size=(size, size), mode="bilinear", align_corners=False)
    else:
        images = glyphs
    return Digits(images, labels, order[HELD_OUT:], order[:HELD_OUT], boxes, glyphs)


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN, then the attention module, then the identity addition and a ReLU."""

    def __init__(self, channels: int, attention: nn.Module) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
        )
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.attention(self.residual(x)))


def digits_network(make_attention: Callable[[int], nn.Module], width: int = 16) -> nn.Sequential:
    """Stem, a residual block of ``width`` channels, a strided convolution, a block of
    ``2 * width``, global pooling and a linear layer to the ten classes; each block with
    ``make_attention(channels)`` on its residual branch, before the addition."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        ResidualBlock(width, make_attention(width)),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width),
        nn.ReLU(inplace=True),
        ResidualBlock(2 * width, make_attention(2 * width)),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 10),
    )


@dataclass
class DigitsRun:
    """One trained network and what it scored on the held-out digits."""

    name: str
    model: nn.Module
    accuracy: float
    history: list[float]
    seconds: float
    parameters: int
    attention_parameters: int


class DigitsResult(dict):
    """``{name: DigitsRun}`` in training order, with the experiment's settings."""

    def __init__(self, runs: Mapping[str, DigitsRun], epochs: int, seed: int, images: int,
                 optimiser: str = "AdamW") -> None:
        super().__init__(runs)
        self.epochs, self.seed, self.images, self.optimiser = epochs, seed, images, optimiser

    @property
    def label(self) -> str:
        return f"{self.epochs} epoch{'s' * (self.epochs != 1)}, seed {self.seed}"

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"network": run.name, "held-out accuracy": run.accuracy,
                              "attention parameters": run.attention_parameters, "all parameters": run.parameters}
                             for run in self.values()])

    def table(self, caption: str | None = None):
        """The runs as an HTML table: accuracy on the held-out digits and parameters (the training
        times stay in :attr:`DigitsRun.seconds`: a time measured while a book builds is noise)."""
        caption = caption or (f"Trained here on {self.images:,} scikit-learn digits ({self.label}, {self.optimiser}, "
                              f"one CPU thread); accuracy on the {HELD_OUT} held-out digits (chance: 0.100).")
        return table(self.frame(), caption, formats={"held-out accuracy": "{:.3f}"})


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(images).argmax(1) == labels).float().mean().item()


def digits_experiment(models: Mapping[str, Callable[[], nn.Module]], train: tuple[torch.Tensor, torch.Tensor],
                      test: tuple[torch.Tensor, torch.Tensor], epochs: int = 30, seed: int = 0, lr: float = 3e-3,
                      one_cycle: float | None = None, schedule: str = "one-cycle", weight_decay: float = 1e-4,
                      batch_size: int = 64) -> DigitsResult:
    """Train each network of ``models`` on ``train`` and score it on ``test``.

    Every network is built right after ``torch.manual_seed(seed)`` and sees the same
    batches in the same order, so they differ only in what ``models`` builds.

    Args:
        models: name -> a function that builds the network.
        train, test: ``(images, labels)``.
        epochs: passes over ``train``.
        seed: weights and batch order.
        lr: AdamW's learning rate (the peak of the one-cycle schedule).
        one_cycle: the one-cycle schedule's peak learning rate, if not ``lr``.
        schedule: ``"one-cycle"`` (warm up, then anneal to almost zero: the last epoch's
            accuracy is not a lucky or unlucky step of a constant rate) or ``"constant"``.
        weight_decay: AdamW's weight decay.
        batch_size: images per step (a last batch of one image is skipped: batch norm
            cannot train on it).

    Returns:
        :class:`DigitsResult`: per network the model (in eval mode), its held-out
        accuracy after each epoch (``history``) and at the end, its parameters and the
        seconds it took.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if schedule not in ("one-cycle", "constant"):
        raise ValueError(f"schedule must be 'one-cycle' or 'constant', got {schedule!r}")
    peak = one_cycle if one_cycle is not None else lr
    cyclic = schedule == "one-cycle" or one_cycle is not None
    optimiser = f"AdamW, one-cycle schedule peaking at {peak:g}" if cyclic else f"AdamW at {lr:g}"
    (train_x, train_y), (test_x, test_y) = train, test
    steps = -(-len(train_y) // batch_size)
    runs = {}
    with one_thread():
        for name, build in models.items():
            torch.manual_seed(seed)
            model = build()
            optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
            scheduler = (torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=epochs * steps)
                         if cyclic else None)
            generator = torch.Generator().manual_seed(seed)
            history = []
            started = time.perf_counter()
            for _ in range(epochs):
                model.train()
                for batch in torch.randperm(len(train_y), generator=generator).split(batch_size):
                    if len(batch) > 1:
                        loss = F.cross_entropy(model(train_x[batch]), train_y[batch])
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()
                    if scheduler is not None:
                        scheduler.step()
                history.append(_accuracy(model, test_x, test_y))
            seconds = time.perf_counter() - started
            attention = sum(p.numel() for _, module in attention_modules(model) for p in module.parameters())
            runs[name] = DigitsRun(name, model.eval(), history[-1], history, seconds,
                                   sum(p.numel() for p in model.parameters()), attention)
    return DigitsResult(runs, epochs, seed, len(train_y), optimiser)


def box_contrast(maps: torch.Tensor, boxes: torch.Tensor) -> tuple[float, float]:
    """Mean of ``maps`` ``(n, h, w)`` inside and outside the digits' boxes ``(n, H, W)``.

    The boxes (where :func:`load_digits` pasted each digit on its canvas) are resized to
    the maps' resolution by area: a map position counts as inside when more than half of
    the canvas pixels it covers are.
    """
    if maps.dim() != 3 or boxes.dim() != 3 or maps.shape[0] != boxes.shape[0]:
        raise ValueError(f"maps must be (n, h, w) and boxes (n, H, W) for the same n, got {tuple(maps.shape)} "
                         f"and {tuple(boxes.shape)}")
    inside = F.interpolate(boxes[:, None].float(), size=maps.shape[-2:], mode="area")[:, 0] > 0.5
    return maps[inside].mean().item(), maps[~inside].mean().item()


def box_contrast_table(before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor], boxes: torch.Tensor,
                       block: str, quantity: str, caption: str):
    """Table: per block (``before``/``after``: block name -> maps ``(n, h, w)`` at
    initialisation and after training) the mean of ``quantity`` inside the digits' boxes,
    outside them, and their ratio (:func:`box_contrast`)."""
    rows = []
    for name in after:
        for when, maps in (("at initialisation", before), ("trained", after)):
            inside, outside = box_contrast(maps[name], boxes)
            rows.append({block: name, "weights": when, f"mean {quantity} inside the digit's box": inside,
                         f"mean {quantity} outside": outside, "inside / outside": inside / outside})
    return table(pd.DataFrame(rows), caption, formats={f"mean {quantity} inside the digit's box": "{:.3f}",
                                                      f"mean {quantity} outside": "{:.3f}",
                                                      "inside / outside": "{:.2f}"})


def plot_digit_maps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, maps: Mapping[str, torch.Tensor],
                    name: str, colorbar_label: str, title: str, count: int = 8,
                    scale: tuple[float, float] | None = (0.0, 1.0)):
    """A figure: ``count`` held-out digits (top row, with label and ``model``'s prediction)
    and, in one row per entry of ``maps`` (block name -> ``(n, h, w)``), that block's map
    upsampled bilinearly onto the digit. ``scale`` is the colour scale (``None``: one
    scale from the smallest to the largest value shown)."""
    count = min(count, len(images))
    with torch.no_grad():
        predictions = model(images[:count]).argmax(1)
    if scale is None:
        scale = (min(m[:count].min().item() for m in maps.values()), max(m[:count].max().item() for m in maps.values()))
    figure, axes = plt.subplots(1 + len(maps), count, figsize=(13, 1.8 * (1 + len(maps))), layout="constrained",
                                squeeze=False)
    for column in range(count):
        digit = images[column, 0]
        axes[0, column].imshow(digit.numpy(), cmap="gray", vmin=0, vmax=1)
        axes[0, column].set_title(f"label {labels[column].item()}, predicted {predictions[column].item()}", fontsize=8)
        for row, (block, block_maps) in enumerate(maps.items(), start=1):
            upsampled = F.interpolate(block_maps[column][None, None], size=digit.shape, mode="bilinear",
                                      align_corners=False)[0, 0]
            axes[row, column].imshow(digit.numpy(), cmap="gray", vmin=0, vmax=1)
            shown = axes[row, column].imshow(upsampled.numpy(), cmap="viridis", alpha=0.65, vmin=scale[0],
                                             vmax=scale[1])
            axes[row, column].set_title(f"{name}, {block}", fontsize=8)
    for axis in axes.flat:
        axis.axis("off")
    figure.colorbar(shown, ax=axes[1:, :], fraction=0.02, label=colorbar_label)
    figure.suptitle(title, fontsize=10)
    return figure
