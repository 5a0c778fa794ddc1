# Hand-written support module (not generated from a notebook).
"""Time our attention modules against timm's equivalents, and measure their memory.

For every module and every tensor shape of ResNet-50's four stages, the benchmark
times forward + backward of ours and of timm's equivalent on the same input (warm-up,
then several repeats; median and interquartile spread), and prints the ratio
ours / timm. It also reports the activation memory each module keeps for the
backward pass, relative to the size of its input: a module that rescales ``x`` must
keep about one input-sized tensor, so ~1.0 is the floor.

Usage::

    python -m attention_lib.benchmark                 # CPU, batch 32
    python -m attention_lib.benchmark --device cuda --batch 128 --amp --channels-last
    python -m attention_lib.benchmark --quick         # small shapes, for tests

timm is needed only here: ``pip install timm``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Case", "CASES", "RESNET50_STAGES", "activation_bytes", "time_forward_backward", "run", "main"]

#: (channels, height = width) at the output of each ResNet-50 stage for a 224×224 input.
RESNET50_STAGES = [(256, 56), (512, 28), (1024, 14), (2048, 7)]
QUICK_STAGES = [(64, 16), (128, 8)]


@dataclass(frozen=True)
class Case:
    """One mechanism: how to build ours and timm's for a channel count."""

    name: str
    ours: Callable[[int], nn.Module]
    timm: Callable[[int], nn.Module]


def _timm_layers():
    try:
        import timm.layers as layers
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("the benchmark compares with timm: pip install timm") from error
    return layers


def _se_cases() -> list[Case]:
    from attention_lib.squeeze_excitation import SE

    layers = _timm_layers()
    return [Case("SE", lambda c: SE(c, reduction=16),
                 lambda c: layers.SEModule(c, rd_ratio=1 / 16, rd_divisor=8))]


#: Builders of the benchmark cases; chapters add theirs here.
CASES: list[Callable[[], list[Case]]] = [_se_cases]


def activation_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """Bytes that ``module(x)`` adds to a training step: its output plus every tensor
    autograd keeps for the backward pass.

    The input itself is not counted (the caller owns it), and each storage is counted
    once even if several tensors view it. A module that rescales ``x`` must at least
    produce its output, so the floor is one input-sized tensor.
    """
    seen: set[int] = set()
    total = 0
    input_storage = x.untyped_storage().data_ptr()

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in seen and pointer != input_storage:
            seen.add(pointer)
            total += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = module(x)
    pack(out)
    return total


def time_forward_backward(module: nn.Module, x: torch.Tensor, warmup: int, repeats: int,
                          amp: bool = False) -> list[float]:
    """Seconds per forward + backward pass, one entry per repeat."""
    grad = torch.ones_like(x)
    device_type = x.device.type

    def step() -> None:
        with torch.autocast(device_type, enabled=amp):
            out = module(x)
        out.backward(grad)
        module.zero_grad(set_to_none=True)
        x.grad = None

    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        if device_type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device_type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def _spread(times: list[float]) -> float:
    if len(times) < 4:
        return max(times) - min(times)
    quartiles = statistics.quantiles(times, n=4)
    return quartiles[2] - quartiles[0]


def run(batch: int = 32, stages: list[tuple[int, int]] | None = None, device: str = "cpu",
        warmup: int = 3, repeats: int = 10, amp: bool = False, channels_last: bool = False,
        seed: int = 0) -> list[dict]:
    """Run every case at every shape and return one row (a dict) per case and shape."""
    stages = stages or RESNET50_STAGES
    rows = []
    for builder in CASES:
        for case in builder():
            for channels, size in stages:
                torch.manual_seed(seed)
                memory_format = torch.channels_last if channels_last else torch.contiguous_format
                x = torch.randn(batch, channels, size, size, device=device).to(memory_format=memory_format)
                x.requires_grad_(True)
                result = {"module": case.name, "channels": channels, "size": size, "batch": batch}
                for label, factory in (("ours", case.ours), ("timm", case.timm)):
                    module = factory(channels).to(device).to(memory_format=memory_format).train()
                    times = time_forward_backward(module, x, warmup, repeats, amp)
                    result[f"{label}_ms"] = statistics.median(times) * 1e3
                    result[f"{label}_spread_ms"] = _spread(times) * 1e3
                    result[f"{label}_memory"] = activation_bytes(module, x) / (x.numel() * x.element_size())
                result["ratio"] = result["ours_ms"] / result["timm_ms"]
                rows.append(result)
    return rows


def format_table(rows: list[dict]) -> str:
    """The benchmark's printed table."""
    header = (f"{'module':<14} {'c':>5} {'hw':>3} {'ours ms':>9} {'±':>6} {'timm ms':>9} {'±':>6} "
              f"{'ours/timm':>9} {'mem ours':>8} {'mem timm':>8}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['module']:<14} {r['channels']:>5} {r['size']:>3} {r['ours_ms']:>9.2f} {r['ours_spread_ms']:>6.2f} "
            f"{r['timm_ms']:>9.2f} {r['timm_spread_ms']:>6.2f} {r['ratio']:>9.2f} "
            f"{r['ours_memory']:>8.2f} {r['timm_memory']:>8.2f}"
        )
    lines.append("times: median of forward+backward (± interquartile range); mem: output + tensors "
                 "kept for backward, in units of the input tensor's size (floor ~1.0)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="attention_lib versus timm: time and memory")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--amp", action="store_true", help="autocast (bfloat16 on CPU, float16 on CUDA)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats (for tests)")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--batch and --repeats must be >= 1 and --warmup >= 0")
    stages = QUICK_STAGES if args.quick else RESNET50_STAGES
    rows = run(args.batch, stages, args.device, args.warmup, args.repeats, args.amp, args.channels_last)
    print(f"device={args.device} batch={args.batch} amp={args.amp} channels_last={args.channels_last} "
          f"threads={torch.get_num_threads()} torch={torch.__version__}")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
