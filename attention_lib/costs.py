# Hand-written support module (not generated from a notebook).
"""What a module or a network costs: parameters, FLOPs and time.

FLOPs are counted by PyTorch's own counter (``torch.utils.flop_counter``), which counts
the matrix products and convolutions (one multiply-add = 2 FLOPs) and not the pooling,
gating and element-wise products; by default on the ``meta`` device, which computes
shapes without doing any arithmetic. Times are measured quietly: on one thread, after a
warm-up, the modules of one comparison taking turns, and the median of the repeats
reported with its interquartile range.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from attention_lib.primitives import as_declared

__all__ = ["count_parameters", "count_flops", "model_flops", "one_thread", "time_forward"]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(module: nn.Module, input_shape: tuple[int, ...], device: str | torch.device = "meta") -> int:
    """FLOPs of one forward pass of ``module`` (in eval mode, no gradients) on an input of ``input_shape``.

    On the default ``meta`` device nothing is computed (a copy of ``module`` is moved
    there), so even a whole network at 224 pixels is counted in a fraction of a second.
    Layers count as declared (:func:`attention_lib.primitives.as_declared`): a depthwise
    1x1 convolution counts its multiply-adds even where the speed layer applies it as an
    element-wise product.
    """
    device = torch.device(device)
    was_training = module.training
    counted = copy.deepcopy(module).to(device) if device.type == "meta" else module
    counted.eval()
    with torch.no_grad(), as_declared(), FlopCounterMode(display=False) as counter:
        counted(torch.zeros(input_shape, device=device))
    module.train(was_training)
    return counter.get_total_flops()


def model_flops(model: nn.Module, image_size: int = 224) -> int:
    """FLOPs of a classifier's forward pass on one RGB image of ``image_size`` pixels."""
    return count_flops(model, (1, 3, image_size, image_size))


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run PyTorch on one CPU thread inside the block, then restore the thread count.

    For small tensors (the chapters' digits models) extra threads cost more than they
    save, and on a machine shared with other jobs they wait for each other; one thread
    also makes a CPU run repeatable across machines.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def time_forward(modules: Mapping[str, Callable[[], object]], repeats: int = 20) -> dict[str, tuple[float, float]]:
    """Median and interquartile range, in milliseconds, of each callable's run time.

    The callables take turns (round robin) after one warm-up call each, on one thread,
    so that a burst of load from other programs slows all of them rather than one.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    samples: dict[str, list[float]] = {name: [] for name in modules}
    with one_thread(), torch.no_grad():
        for run in modules.values():
            run()
        for _ in range(repeats):
            for name, run in modules.items():
                start = time.perf_counter()
                run()
                samples[name].append((time.perf_counter() - start) * 1e3)
    result = {}
    for name, values in samples.items():
        quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
        result[name] = (statistics.median(values), quartiles[2] - quartiles[0])
    return result
