# Hand-written support module (not generated from a notebook).
"""Time our attention modules against timm's equivalents, and measure their memory.

For every module and every tensor shape of ResNet-50's four stages, the benchmark
times forward + backward of ours and of timm's equivalent on the same input and
prints the ratio ours / timm. The two are timed in alternation (ours, timm, timm,
ours, ...) after a common warm-up, so that a machine shared with other jobs slows
both alike; each time is the median of the repeats, with the interquartile range as
its spread. It also reports the activation memory each module keeps for the backward
pass, relative to the size of its input: a module that rescales ``x`` must keep about
one input-sized tensor, so ~1.0 is the floor.

How timm's modules are configured to match ours (the parity tests in
``tests/test_parity_timm.py`` check that equal weights give equal outputs):

- SE: ``SEModule(c, rd_ratio=1/16, rd_divisor=8)``.
- ECA: ``EcaModule(c)``, the same adaptive kernel size.
- CBAM: ``CbamModule(c, rd_channels=max(c/16, 8), mlp_bias=True)``: timm's channel MLP
  has no biases by default, ours has them (as in SE and the CBAM paper), and no floor on
  its width (the same from 128 channels on); its spatial convolution is followed by
  batch norm, like ours with the default ``batch_norm=True``.
- GE-θ-: ``GatherExcite(c, extent=0, use_mlp=False)``, global average pooling.
- GE-θ+: extent 8, learned gather and MLP excite. In timm 1.0.31 the constructor raises
  ``TypeError`` for ``extra_params=True`` and for ``use_mlp=True`` (it passes ``*dd``
  where ``**dd`` is meant), so the benchmark then builds the layers that constructor
  means to build (timm's ``create_conv2d``, ``BatchNorm2d``, ``ConvMlp``) into a
  working timm ``GatherExcite`` and times timm's own forward. timm's global extent
  with learned gather is not compared: it pads the map-sized depthwise kernel, so it
  is a same-size local filter, not a global gather.
- SK: ``SelectiveKernel(c, c, kernel_size=[3, 5], keep_3x3=True, split_input=False,
  groups=32, rd_channels=...)``: ``keep_3x3`` turns the 5x5 branch into a 3x3 with
  dilation 2, as in ours; ``split_input=False`` because timm's default feeds each
  branch half of the input channels (its own modification), while the paper and ours
  feed every branch all of them; the fuse width is set to ours, ``max(c/16, 32)``
  (timm's default is ``c/16`` rounded to a multiple of 8).
- BAM: timm has no BAM; ours is timed alone and the timm columns stay empty.

Usage::

    python -m attention_lib.benchmark                 # CPU, batch 32
    python -m attention_lib.benchmark --json book/results/benchmark_cpu.json
    python -m attention_lib.benchmark --device cuda --batch 128 --amp --channels-last
    python -m attention_lib.benchmark --modules SE,CBAM --threads 1
    python -m attention_lib.benchmark --profile       # top operators where ours/timm > 0.9
    python -m attention_lib.benchmark --quick         # small shapes, for tests

The machine's load average is printed and stored: on a machine shared with other jobs,
compare the interquartile ranges with the medians before trusting a ratio.

timm is needed only here: ``pip install timm``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from attention_lib.bam import BAM
from attention_lib.cbam import CBAM
from attention_lib.efficient_channel_attention import ECA
from attention_lib.gather_excite import GatherExcite
from attention_lib.primitives import bottleneck_width
from attention_lib.selective_kernel import SelectiveKernel
from attention_lib.squeeze_excitation import SE

__all__ = [
    "Case", "CASES", "RESNET50_STAGES", "QUICK_STAGES", "TARGET", "STRETCH_TARGET", "activation_bytes",
    "time_forward_backward", "time_interleaved", "top_operators", "run", "summarize", "format_table", "main",
]

#: (channels, height = width) at the output of each ResNet-50 stage for a 224×224 input.
RESNET50_STAGES = [(256, 56), (512, 28), (1024, 14), (2048, 7)]
QUICK_STAGES = [(64, 16), (128, 8)]

#: ours / timm must not exceed TARGET; STRETCH_TARGET where a leaner formulation allows it.
TARGET = 1.0
STRETCH_TARGET = 0.9


@dataclass(frozen=True)
class Case:
    """One mechanism: how to build ours and timm's for a channel count.

    ``timm`` is ``None`` where timm has no equivalent (ours is then timed alone).
    ``note`` says, from measurements, why ours may miss :data:`STRETCH_TARGET`; it is
    printed only where that happens.
    """

    name: str
    ours: Callable[[int], nn.Module]
    timm: Callable[[int], nn.Module] | None
    note: str = ""


def _timm_layers():
    try:
        import timm.layers as layers
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("the benchmark compares with timm: pip install timm") from error
    return layers


def _se_cases() -> list[Case]:
    layers = _timm_layers()
    return [Case(
        "SE", lambda c: SE(c, reduction=16), lambda c: layers.SEModule(c, rd_ratio=1 / 16, rd_divisor=8),
        note="on small maps the full-size temporaries ours avoids are a small part of the pass; "
             "the two 1x1 convolutions on the pooled vector (same kernels) and per-operator "
             "overheads remain",
    )]


def _eca_cases() -> list[Case]:
    layers = _timm_layers()
    return [Case(
        "ECA", lambda c: ECA(c), lambda c: layers.EcaModule(c),
        note="on small maps much of both times is the 1-D convolution across channels, whose "
             "oneDNN backward pass is slow for a one-channel signal (about a third of the time "
             "at 2048 channels, 7x7, one thread); the kernel is the same in both",
    )]


def _cbam_cases() -> list[Case]:
    from timm.layers.cbam import CbamModule  # not re-exported by timm.layers; timm is optional


    return [Case(
        "CBAM", lambda c: CBAM(c, reduction=16, batch_norm=True),
        lambda c: CbamModule(c, rd_channels=bottleneck_width(c, 16), mlp_bias=True),
        note="on small maps the remaining time is the reductions over channels and pixels "
             "(mean, amax) and their gradients, which both must compute",
    )]


def timm_gather_excite_theta_plus(channels: int, extent: int, width: int) -> nn.Module:
    """timm's GE-θ+ (learned gather over ``extent``, MLP excite of hidden ``width``).

    Uses timm's constructor where it works. timm 1.0.31's raises ``TypeError`` for
    ``extra_params=True`` or ``use_mlp=True`` (``*dd`` where ``**dd`` is meant); then the
    layers that constructor means to build are built with timm's own factories and put
    into a timm ``GatherExcite``, whose forward is unchanged.
    """
    layers = _timm_layers()
    try:
        return layers.GatherExcite(channels, extent=extent, extra_params=True, use_mlp=True, rd_channels=width)
    except TypeError:
        module = layers.GatherExcite(channels, extent=extent, extra_params=False, use_mlp=False)
        gather = nn.Sequential()
        stages = int(math.log2(extent))
        for i in range(stages):
            gather.add_module(f"conv{i + 1}", layers.create_conv2d(channels, channels, kernel_size=3, stride=2,
                                                                   depthwise=True))
            gather.add_module(f"norm{i + 1}", nn.BatchNorm2d(channels))
            if i != stages - 1:
                gather.add_module(f"act{i + 1}", nn.ReLU(inplace=True))
        module.gather = gather
        module.mlp = layers.ConvMlp(channels, width, act_layer=nn.ReLU)
        return module


def _ge_cases() -> list[Case]:
    layers = _timm_layers()
    return [
        Case("GE-θ-", lambda c: GatherExcite(c, "global"),
             lambda c: layers.GatherExcite(c, extent=0, use_mlp=False),
             note="on small maps the full-size temporaries ours avoids are a small part of the "
                  "pass; pooling, sigmoid and product are one pass each in both"),
        Case("GE-θ+ e=8", lambda c: GatherExcite(c, 8, param_gather=True, param_excite=True),
             lambda c: timm_gather_excite_theta_plus(c, 8, bottleneck_width(c, 16)),
             note="on 7x7 maps the gathered map is 1x1, no interpolation is left, and most of "
                  "both times is the three stride-2 depthwise convolutions and their batch "
                  "norms (identical kernels); ours saves only the product's temporaries"),
    ]


def _sk_cases() -> list[Case]:
    layers = _timm_layers()

    def theirs(c: int) -> nn.Module:
        return layers.SelectiveKernel(c, c, kernel_size=[3, 5], keep_3x3=True, split_input=False, groups=32,
                                      rd_channels=max(c // 16, 32))

    return [Case(
        "SK", lambda c: SelectiveKernel(c, c, num_branches=2, groups=32, reduction=16, min_width=32), theirs,
        note="most of both times (about three quarters) is the two grouped 3x3 convolutions "
             "and their batch norms, identical kernels; ours saves the stacked copy of the "
             "branches and the weighted sum's temporaries",
    )]


def _bam_cases() -> list[Case]:
    return [Case("BAM", lambda c: BAM(c), None, note="timm has no BAM: ours is timed alone")]


#: Builders of the benchmark cases; chapters add theirs here.
CASES: list[Callable[[], list[Case]]] = [_se_cases, _eca_cases, _cbam_cases, _ge_cases, _sk_cases, _bam_cases]


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


def _training_step(module: nn.Module, x: torch.Tensor, amp: bool) -> Callable[[], None]:
    """One forward + backward of ``module`` on ``x``, gradients cleared afterwards."""
    grad = torch.ones_like(x)
    device_type = x.device.type

    def step() -> None:
        with torch.autocast(device_type, enabled=amp):
            out = module(x)
        out.backward(grad)
        module.zero_grad(set_to_none=True)
        x.grad = None

    return step


def _seconds(step: Callable[[], None], device_type: str) -> float:
    if device_type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device_type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_interleaved(modules: dict[str, nn.Module], x: torch.Tensor, warmup: int, repeats: int,
                     amp: bool = False, min_seconds: float = 0.0) -> dict[str, list[float]]:
    """Seconds per forward + backward pass of each module, timed in alternation.

    Every module is warmed up, then each repeat runs every module once, the order
    reversed on every other repeat (A B, B A, A B, ...), so that slow phases of a
    shared machine fall on all modules alike. After ``repeats`` rounds, rounds go on
    until every module has been timed for ``min_seconds`` in total (at most 100 times
    ``repeats`` rounds), so that fast shapes get enough samples for a stable median.
    Returns one list of times per module.
    """
    steps = {label: _training_step(module, x, amp) for label, module in modules.items()}
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {label: [] for label in steps}
    labels = list(steps)
    repeat = 0
    while repeat < repeats or (min(sum(t) for t in times.values()) < min_seconds and repeat < 100 * repeats):
        for label in labels if repeat % 2 == 0 else reversed(labels):
            times[label].append(_seconds(steps[label], x.device.type))
        repeat += 1
    return times


def time_forward_backward(module: nn.Module, x: torch.Tensor, warmup: int, repeats: int,
                          amp: bool = False) -> list[float]:
    """Seconds per forward + backward pass, one entry per repeat."""
    return time_interleaved({"module": module}, x, warmup, repeats, amp)["module"]


def top_operators(module: nn.Module, x: torch.Tensor, count: int = 4, amp: bool = False) -> list[tuple[str, float]]:
    """The ``count`` operators that take most of one forward + backward pass, as
    ``(name, share of the pass's CPU time)``, measured with ``torch.profiler``."""
    step = _training_step(module, x, amp)
    step()  # warm-up
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        step()
    events = profile.key_averages()
    total = sum(event.self_cpu_time_total for event in events) or 1.0
    ranked = sorted(events, key=lambda event: event.self_cpu_time_total, reverse=True)[:count]
    return [(event.key, event.self_cpu_time_total / total) for event in ranked]


def _spread(times: list[float]) -> float:
    if len(times) < 4:
        return max(times) - min(times)
    quartiles = statistics.quantiles(times, n=4)
    return quartiles[2] - quartiles[0]


def _selected_cases(modules: list[str] | None) -> list[Case]:
    cases = [case for builder in CASES for case in builder()]
    if modules is None:
        return cases
    unknown = sorted(set(modules) - {case.name for case in cases})
    if unknown:
        raise ValueError(f"unknown module(s) {unknown}; the benchmark has {[case.name for case in cases]}")
    return [case for case in cases if case.name in modules]


def run(batch: int = 32, stages: list[tuple[int, int]] | None = None, device: str = "cpu",
        warmup: int = 3, repeats: int = 10, amp: bool = False, channels_last: bool = False,
        seed: int = 0, modules: list[str] | None = None, profile: bool = False,
        min_seconds: float = 0.0) -> list[dict]:
    """Run every case (or those named in ``modules``) at every shape; one row (a dict) per
    case and shape. Where timm has no equivalent, its fields and the ratio are ``None``.
    ``min_seconds`` is passed to :func:`time_interleaved`; ``repeats`` records how many
    passes each median is over.

    With ``profile``, rows whose ratio is above :data:`STRETCH_TARGET` also get
    ``ours_top`` and ``timm_top``: :func:`top_operators` of one more pass of each.
    """
    stages = stages or RESNET50_STAGES
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    rows = []
    for case in _selected_cases(modules):
        for channels, size in stages:
            torch.manual_seed(seed)
            x = torch.randn(batch, channels, size, size, device=device).to(memory_format=memory_format)
            x.requires_grad_(True)
            factories = {"ours": case.ours, "timm": case.timm}
            built = {label: factory(channels).to(device).to(memory_format=memory_format).train()
                     for label, factory in factories.items() if factory is not None}
            times = time_interleaved(built, x, warmup, repeats, amp, min_seconds)
            result = {"module": case.name, "channels": channels, "size": size, "batch": batch,
                      "repeats": len(times["ours"])}
            for label in factories:
                if label in built:
                    result[f"{label}_ms"] = statistics.median(times[label]) * 1e3
                    result[f"{label}_spread_ms"] = _spread(times[label]) * 1e3
                    result[f"{label}_memory"] = (activation_bytes(built[label], x)
                                                 / (x.numel() * x.element_size()))
                else:
                    result[f"{label}_ms"] = result[f"{label}_spread_ms"] = result[f"{label}_memory"] = None
            result["ratio"] = result["ours_ms"] / result["timm_ms"] if result["timm_ms"] is not None else None
            if profile and result["ratio"] is not None and result["ratio"] > STRETCH_TARGET:
                for label, module in built.items():
                    result[f"{label}_top"] = top_operators(module, x, amp=amp)
            rows.append(result)
    return rows


def summarize(rows: list[dict]) -> list[str]:
    """One line per module: which targets its ratios meet, and the case's note where the
    stretch target is missed."""
    notes = {case.name: case.note for builder in CASES for case in builder()}
    lines = []
    for name in dict.fromkeys(row["module"] for row in rows):
        mine = [row for row in rows if row["module"] == name]
        ratios = [row["ratio"] for row in mine if row["ratio"] is not None]
        if not ratios:
            lines.append(f"{name}: not compared ({notes.get(name) or 'no timm equivalent'})")
            continue
        worst = max(ratios)
        if worst <= STRETCH_TARGET:
            verdict = f"ours/timm <= {STRETCH_TARGET} at every shape (worst {worst:.2f})"
        elif worst <= TARGET:
            misses = [f"c={row['channels']}" for row in mine if row["ratio"] > STRETCH_TARGET]
            verdict = (f"ours/timm <= {TARGET} at every shape, above {STRETCH_TARGET} at {', '.join(misses)} "
                       f"(worst {worst:.2f})")
        else:
            misses = [f"c={row['channels']} ({row['ratio']:.2f})" for row in mine if row["ratio"] > TARGET]
            verdict = f"ours/timm above {TARGET} at {', '.join(misses)}"
        if worst > STRETCH_TARGET and notes.get(name):
            verdict += f"; why: {notes[name]}"
        lines.append(f"{name}: {verdict}")
    return lines


def _number(value: float | None, width: int) -> str:
    return f"{value:>{width}.2f}" if value is not None else f"{'—':>{width}}"


def format_table(rows: list[dict]) -> str:
    """The benchmark's printed table, followed by one summary line per module."""
    header = (f"{'module':<10} {'c':>5} {'hw':>3} {'ours ms':>9} {'±':>6} {'timm ms':>9} {'±':>6} "
              f"{'ours/timm':>9} {'mem ours':>8} {'mem timm':>8}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['module']:<10} {r['channels']:>5} {r['size']:>3} {_number(r['ours_ms'], 9)} "
            f"{_number(r['ours_spread_ms'], 6)} {_number(r['timm_ms'], 9)} {_number(r['timm_spread_ms'], 6)} "
            f"{_number(r['ratio'], 9)} {_number(r['ours_memory'], 8)} {_number(r['timm_memory'], 8)}"
        )
    counts = sorted({r["repeats"] for r in rows if "repeats" in r})
    passes = "" if not counts else (f" over {counts[0]} passes" if len(counts) == 1
                                    else f" over {counts[0]}-{counts[-1]} passes")
    lines.append(f"times: median of forward+backward{passes} (± interquartile range), ours and timm timed in "
                 "alternation; mem: output + tensors kept for backward, in units of the input tensor's "
                 "size (floor ~1.0)")
    lines.append(f"targets: ours/timm <= {TARGET}, <= {STRETCH_TARGET} where a leaner formulation allows it")
    lines.extend(summarize(rows))
    for r in rows:
        for label in ("ours", "timm"):
            if r.get(f"{label}_top"):
                shares = ", ".join(f"{name} {share:.0%}" for name, share in r[f"{label}_top"])
                lines.append(f"profile {r['module']} c={r['channels']} {label}: {shares}")
    return "\n".join(lines)


def _metadata(args: argparse.Namespace) -> dict:
    try:
        import timm

        timm_version = timm.__version__
    except ImportError:  # pragma: no cover - the benchmark needs timm anyway
        timm_version = None
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "command": "python -m attention_lib.benchmark " + " ".join(args.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": args.device if args.device != "cuda" else torch.cuda.get_device_name(),
        "cpu": cpu, "threads": torch.get_num_threads(), "batch": args.batch, "warmup": args.warmup,
        "repeats": args.repeats, "min_time_s": args.min_time, "amp": args.amp, "channels_last": args.channels_last,
        "torch": torch.__version__, "timm": timm_version, "python": platform.python_version(),
        "load_average_before": args.load_before, "load_average_after": _load_average(),
        "targets": {"ratio": TARGET, "stretch": STRETCH_TARGET},
    }


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (other jobs on the machine), where known."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - not on every platform
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="attention_lib versus timm: time and memory")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10, help="timed passes of each module, at least")
    parser.add_argument("--min-time", type=float, default=1.0,
                        help="go on timing until each module has run this many seconds (default 1)")
    parser.add_argument("--amp", action="store_true", help="autocast (bfloat16 on CPU, float16 on CUDA)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's choice)")
    parser.add_argument("--modules", default=None, help="comma-separated names, e.g. SE,CBAM (default: all)")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the rows and the setup to PATH")
    parser.add_argument("--profile", action="store_true",
                        help=f"profile the shapes where ours/timm > {STRETCH_TARGET} and print the top operators")
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats (for tests)")
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0 or args.min_time < 0:
        parser.error("--batch and --repeats must be >= 1, --warmup and --min-time >= 0")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    modules = [name.strip() for name in args.modules.split(",")] if args.modules else None
    try:
        _selected_cases(modules)
    except ValueError as error:
        parser.error(str(error))
    stages = QUICK_STAGES if args.quick else RESNET50_STAGES
    args.load_before = _load_average()
    min_seconds = 0.0 if args.quick else args.min_time
    rows = run(args.batch, stages, args.device, args.warmup, args.repeats, args.amp, args.channels_last,
               modules=modules, profile=args.profile, min_seconds=min_seconds)
    print(f"device={args.device} batch={args.batch} amp={args.amp} channels_last={args.channels_last} "
          f"threads={torch.get_num_threads()} torch={torch.__version__} "
          f"load average before/after={args.load_before}/{_load_average()}")
    print(format_table(rows))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"meta": _metadata(args), "rows": rows}, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
