# Hand-written support module (not generated from a notebook).
"""The chapters' cost tables: parameters, FLOPs and (on the reader's machine) time per module.

:func:`cost_table` builds each module at each feature-map shape, counts its parameters
and its FLOPs per image (PyTorch's counter on the ``meta`` device: no arithmetic is
done), and, when asked, times its forward pass quietly (one thread, the modules taking
turns, median and interquartile range). The book is built without timing: times measured
while a book builds are noise, so the rendered page shows the counts, and the times
come from the committed benchmark (chapter 07). A reader who runs a chapter gets the
timings of their own machine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from attention_lib.costs import count_flops, time_forward
from attention_lib.toolkit.display import table

__all__ = ["RESNET50_STAGES", "cost_table", "cost_frame"]

#: (channels, height = width) at the output of each ResNet-50 stage for a 224x224 input.
RESNET50_STAGES: tuple[tuple[int, int], ...] = ((256, 56), (512, 28), (1024, 14), (2048, 7))

Builder = Callable[[int, int], nn.Module]


def cost_frame(builders: Mapping[str, Builder], shapes: Sequence[tuple[int, int]] = RESNET50_STAGES,
               time: bool = False, batch: int = 8, repeats: int = 20) -> pd.DataFrame:
    """One row per (shape, module): channels, size, parameters, FLOPs per image, and optionally ms.

    Args:
        builders: label -> ``(channels, size) -> module`` (the module is built once per shape).
        shapes: ``(channels, size)`` pairs; the input is ``(batch, channels, size, size)``.
        time: also time the forward pass (eval mode, no gradients) at ``batch`` images.
        batch: images per timed forward pass.
        repeats: timed passes per module (median and interquartile range are reported).
    """
    rows = []
    for channels, size in shapes:
        modules = {label: build(channels, size).eval() for label, build in builders.items()}
        timings = {}
        if time:
            x = torch.randn(batch, channels, size, size)
            timings = time_forward({label: (lambda m=module: m(x)) for label, module in modules.items()}, repeats)
        for label, module in modules.items():
            row = {"module": label, "c": channels, "h = w": size,
                   "parameters": sum(p.numel() for p in module.parameters()),
                   "FLOPs per image": count_flops(module, (1, channels, size, size))}
            if time:
                row[f"ms (batch {batch}, median)"], row["ms IQR"] = timings[label]
            rows.append(row)
    return pd.DataFrame(rows)


def cost_table(builders: Mapping[str, Builder], shapes: Sequence[tuple[int, int]] = RESNET50_STAGES,
               time: bool = False, batch: int = 8, repeats: int = 20, caption: str | None = None):
    """:func:`cost_frame` as an HTML table with its caption (what was counted, and how)."""
    frame = cost_frame(builders, shapes, time=time, batch=batch, repeats=repeats)
    if caption is None:
        caption = ("Counted on the modules: parameters, and FLOPs of one forward pass per image (PyTorch's FLOP "
                   "counter: convolutions and matrix products, two FLOPs per multiply-add).")
        if time:
            caption += f" Times: this machine, one thread, batch {batch}, median of {repeats} forward passes."
    return table(frame, caption, formats={"ms IQR": "{:.2f}"} | ({f"ms (batch {batch}, median)": "{:.2f}"}
                                                                 if time else {}))
