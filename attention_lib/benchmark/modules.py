# Hand-written support module (not generated from a notebook).
"""Module benchmark: each attention module against timm's equivalent (or plain PyTorch's).

For every case and every tensor shape of ResNet-50's four stages, in both memory formats
(contiguous and channels-last), the benchmark times two things: a training pass (forward
and backward, train mode) and an inference pass (forward in eval mode under
``torch.no_grad()``). Ours and the reference are timed in alternation after a common
warm-up, so that a machine shared with other jobs slows both alike; the ratio
``ours / reference`` is taken round by round and reported as the median of those ratios
with their interquartile range (IQR). Memory is the peak number of bytes PyTorch holds at
once during the pass, above what existed before it (parameters, their ``.grad`` buffers,
the input and the incoming gradient are allocated beforehand and not counted), in units of
the input's size: every temporary of the forward and the backward pass counts. A module
that rescales ``x`` must write its output, and in training also ``x``'s gradient, so the
floors are 1.0 (inference) and 2.0 (training). The training rows also give the bytes kept
for the backward pass (output plus saved tensors, floor ~1.0).

How the references are configured (``tests/test_parity_timm.py`` checks that equal weights
give equal outputs for the timm ones):

- SE: timm ``SEModule(c, rd_ratio=1/16, rd_divisor=8)``.
- SE-Var-1, SE-Var-2: timm has none; plain PyTorch ``x * sigmoid(f(x.mean((2, 3))))`` with
  ``f`` the identity or a depthwise 1x1 ``nn.Conv2d``.
- SE-Var-3: timm ``EffectiveSEModule(c, gate_layer="sigmoid")`` (eSE with a plain sigmoid).
- ECA: timm ``EcaModule(c)``, the same adaptive kernel size.
- CBAM: timm ``CbamModule(c, rd_channels=max(c/16, 8), mlp_bias=True)``: timm's channel MLP
  has no biases by default, ours has them (as in SE and the CBAM paper); its spatial
  convolution is followed by batch norm, like ours with the default ``batch_norm=True``.
- BAM: timm has none; plain PyTorch with the same layers, ``x + x * sigmoid(M_c + M_s)``.
- GE-θ- global / e=8: timm ``GatherExcite(c, extent=0 or 8, use_mlp=False)``.
- GE-θ e=8 and GE-θ+ e=8: learned gather (and MLP excite). In timm 1.0.31 the constructor
  raises ``TypeError`` for ``extra_params=True`` and for ``use_mlp=True`` (it passes
  ``*dd`` where ``**dd`` is meant), so the layers that constructor means to build (timm's
  ``create_conv2d``, ``BatchNorm2d``, ``ConvMlp``) are put into a working timm
  ``GatherExcite`` and timm's own forward is timed.
- SK: timm ``SelectiveKernel(c, c, kernel_size=[3, 5], keep_3x3=True, split_input=False,
  groups=32, rd_channels=max(c/16, 32))``: the 5x5 branch as a 3x3 with dilation 2, every
  branch fed all input channels, and our fuse width.
- Non-local: timm ``NonLocalAttn(c, rd_channels=c/2, use_scale=True)`` against ours with the
  same width and timm's scale ``1/sqrt(c)`` (ours defaults to ``1/sqrt(c/2)``, the official
  code's): the same function with renamed weights.
- Global Context: timm ``GlobalContext(c, fuse_add=True, fuse_scale=False,
  rd_channels=max(c/16, 8))``, the paper's add fusion and width (timm's defaults are scale
  fusion and c/8).
- Coordinate Attention: timm ``CoordAttn(c, rd_channels=max(c/32, 8))`` against ours
  without the gates' biases (timm has none; the authors' code has them).
- Split-Attention: timm ``SplitAttn(c, c, radix=2, groups=1, rd_ratio=1/4, rd_divisor=8)``.
- SimAM and Triplet Attention: timm has neither; the references are the authors'
  computations written in plain PyTorch (:class:`PlainSimAM`, :class:`PlainTriplet`).

Adding a mechanism is one entry in :data:`CASES`: ``Case(name, ours, reference,
reference_name)``, where ``ours`` and ``reference`` build a module from a channel count
(``reference=None`` times ours alone). For example::

    Case("GC", lambda c: GlobalContext(c), _timm_global_context, "timm")
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from attention_lib.bam import BAM
from attention_lib.benchmark.common import interleaved_times, layout_of, median_iqr, peak_bytes, ratio_stats
from attention_lib.cbam import CBAM
from attention_lib.coordinate_attention import CoordinateAttention
from attention_lib.efficient_channel_attention import ECA, SEVar1, SEVar2, SEVar3
from attention_lib.gather_excite import GatherExcite
from attention_lib.global_context import GlobalContext
from attention_lib.non_local import NonLocal
from attention_lib.primitives import bottleneck_width
from attention_lib.selective_kernel import SelectiveKernel
from attention_lib.simam import SimAM
from attention_lib.split_attention import SplitAttention
from attention_lib.squeeze_excitation import SE
from attention_lib.triplet_attention import TripletAttention

__all__ = ["Case", "CASES", "RESNET50_STAGES", "QUICK_STAGES", "FORMATS", "MODES", "TARGET",
           "activation_bytes", "pass_peak", "top_operators", "run", "summarize", "format_table",
           "timm_gather_excite_learned", "timm_gather_excite_theta_plus", "PlainGate", "PlainBAM"]

#: (channels, height = width) at the output of each ResNet-50 stage for a 224×224 input.
RESNET50_STAGES = [(256, 56), (512, 28), (1024, 14), (2048, 7)]
QUICK_STAGES = [(64, 16), (128, 8)]
FORMATS = ("contiguous", "channels_last")
#: "train": forward + backward in train mode; "eval": forward in eval mode without gradients.
MODES = ("train", "eval")
#: ours / reference (median of the ratios, see ratio_stats) must not exceed TARGET.
TARGET = 1.0


@dataclass(frozen=True)
class Case:
    """One module to benchmark: how to build ours and the reference for ``c`` channels.

    ``reference`` is ``None`` where there is nothing to compare with (ours is timed alone);
    ``reference_name`` says whose it is ("timm" or "PyTorch").
    """

    name: str
    ours: Callable[[int], nn.Module]
    reference: Callable[[int], nn.Module] | None
    reference_name: str = "timm"


def _timm_layers():
    try:
        import timm.layers as layers
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("the benchmark compares with timm: pip install timm") from error
    return layers


def _timm(name: str, **kwargs) -> Callable[[int], nn.Module]:
    """A builder of timm's layer ``name`` (from ``timm.layers``) for ``c`` channels."""
    return lambda c: getattr(_timm_layers(), name)(c, **kwargs)


def _timm_cbam(c: int) -> nn.Module:
    from timm.layers.cbam import CbamModule  # not re-exported by timm.layers

    return CbamModule(c, rd_channels=bottleneck_width(c, 16), mlp_bias=True)


def _timm_sk(c: int) -> nn.Module:
    return _timm_layers().SelectiveKernel(c, c, kernel_size=[3, 5], keep_3x3=True, split_input=False, groups=32,
                                          rd_channels=max(c // 16, 32))


def timm_gather_excite_learned(channels: int, extent: int, width: int | None) -> nn.Module:
    """timm's GE-θ (``width=None``) or GE-θ+ (MLP excite of hidden ``width``), learned
    gather over ``extent``.

    Uses timm's constructor where it works. timm 1.0.31's raises ``TypeError`` for
    ``extra_params=True`` or ``use_mlp=True`` (``*dd`` where ``**dd`` is meant); then the
    layers that constructor means to build are built with timm's own factories and put
    into a timm ``GatherExcite``, whose forward is unchanged.
    """
    layers = _timm_layers()
    try:
        return layers.GatherExcite(channels, extent=extent, extra_params=True, use_mlp=width is not None,
                                   rd_channels=width)
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
        if width is not None:
            module.mlp = layers.ConvMlp(channels, width, act_layer=nn.ReLU)
        return module


def timm_gather_excite_theta_plus(channels: int, extent: int, width: int) -> nn.Module:
    """timm's GE-θ+: :func:`timm_gather_excite_learned` with an MLP excite of hidden ``width``."""
    return timm_gather_excite_learned(channels, extent, width)


class PlainGate(nn.Module):
    """``x * sigmoid(f(mean(x)))`` in plain PyTorch: the reference for SE-Var-1 (``f``
    the identity) and SE-Var-2 (``f`` a depthwise 1x1 convolution)."""

    def __init__(self, excite: nn.Module | None = None) -> None:
        super().__init__()
        self.excite = excite if excite is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.excite(x.mean(dim=(2, 3), keepdim=True)))


class PlainBAM(nn.Module):
    """BAM written in plain PyTorch with the layers of one of ours:
    ``x + x * sigmoid(M_c + M_s)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bam = BAM(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.bam.channel
        m_c = branch.expand(torch.relu(branch.bn(branch.reduce(x.mean(dim=(2, 3), keepdim=True)))))
        m_s = self.bam.spatial.body(x)
        return x + x * torch.sigmoid(m_c + m_s)


#: The benchmark's cases, one entry per module; Part II chapters add theirs here.
def _timm_non_local(c: int) -> nn.Module:
    return _timm_layers().NonLocalAttn(c, rd_channels=c // 2, use_scale=True)


def _timm_global_context(c: int) -> nn.Module:
    return _timm_layers().GlobalContext(c, fuse_add=True, fuse_scale=False, rd_channels=bottleneck_width(c, 16, 8))


def _timm_coord(c: int) -> nn.Module:
    from timm.layers.coord_attn import CoordAttn  # not re-exported by timm.layers

    return CoordAttn(c, rd_channels=bottleneck_width(c, 32))


def _timm_split(c: int) -> nn.Module:
    # norm_layer as in timm's ResNeSt: without it SplitAttn has no batch norms at all, and
    # the comparison would time a unit with two fewer layers than ours.
    return _timm_layers().SplitAttn(c, c, radix=2, groups=1, rd_ratio=0.25, rd_divisor=8, norm_layer=nn.BatchNorm2d)


class PlainSimAM(nn.Module):
    """SimAM as the authors' code computes it, in plain PyTorch (variance over h*w - 1)."""

    def __init__(self, e_lambda: float = 1e-4) -> None:
        super().__init__()
        self.e_lambda = e_lambda

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)
        v = d.sum(dim=(2, 3), keepdim=True) / (x.shape[2] * x.shape[3] - 1)
        return x * torch.sigmoid(d / (4 * (v + self.e_lambda)) + 0.5)


class PlainTriplet(nn.Module):
    """Triplet attention as the authors' code computes it: for each branch, permute (and copy)
    the whole map, Z-pool, 7x7 conv, batch norm, sigmoid, rescale, permute back; average."""

    ORDERS = ((0, 2, 1, 3), (0, 3, 2, 1), (0, 1, 2, 3))

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.gates = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False),
                          nn.BatchNorm2d(1, momentum=0.01), nn.Sigmoid()) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        for gate, order in zip(self.gates, self.ORDERS):
            u = x.permute(order).contiguous()
            z = torch.cat([u.amax(dim=1, keepdim=True), u.mean(dim=1, keepdim=True)], dim=1)
            out.append((u * gate(z)).permute(order))
        return sum(out) / len(out)


CASES: list[Case] = [
    Case("SE", lambda c: SE(c, reduction=16), _timm("SEModule", rd_ratio=1 / 16, rd_divisor=8)),
    Case("SE-Var-1", lambda c: SEVar1(c), lambda c: PlainGate(), "PyTorch"),
    Case("SE-Var-2", lambda c: SEVar2(c), lambda c: PlainGate(nn.Conv2d(c, c, 1, groups=c, bias=False)), "PyTorch"),
    Case("SE-Var-3", lambda c: SEVar3(c), _timm("EffectiveSEModule", gate_layer="sigmoid")),
    Case("ECA", lambda c: ECA(c), _timm("EcaModule")),
    Case("CBAM", lambda c: CBAM(c, reduction=16, batch_norm=True), _timm_cbam),
    Case("BAM", lambda c: BAM(c), PlainBAM, "PyTorch"),
    Case("GE-θ- global", lambda c: GatherExcite(c, "global"), _timm("GatherExcite", extent=0, use_mlp=False)),
    Case("GE-θ- e=8", lambda c: GatherExcite(c, 8), _timm("GatherExcite", extent=8, use_mlp=False)),
    Case("GE-θ e=8", lambda c: GatherExcite(c, 8, param_gather=True),
         lambda c: timm_gather_excite_learned(c, 8, None)),
    Case("GE-θ+ e=8", lambda c: GatherExcite(c, 8, param_gather=True, param_excite=True),
         lambda c: timm_gather_excite_learned(c, 8, bottleneck_width(c, 16))),
    Case("SK", lambda c: SelectiveKernel(c, c, num_branches=2, groups=32, reduction=16, min_width=32), _timm_sk),
    # Part II
    Case("Non-local", lambda c: NonLocal(c, reduction=2, scale=c**-0.5), _timm_non_local),
    Case("GC", lambda c: GlobalContext(c), _timm_global_context),
    Case("CA", lambda c: CoordinateAttention(c, bias=False), _timm_coord),
    Case("Split-Attention", lambda c: SplitAttention(c, c, radix=2, groups=1), _timm_split),
    Case("SimAM", lambda c: SimAM(), lambda c: PlainSimAM(), "PyTorch"),
    Case("Triplet", lambda c: TripletAttention(), lambda c: PlainTriplet(), "PyTorch"),
]


def activation_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """Bytes that ``module(x)`` keeps for a training step: its output plus every tensor
    autograd saves for the backward pass (each storage once; ``x`` itself not counted)."""
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


def _step(module: nn.Module, x: torch.Tensor, mode: str, amp: bool) -> Callable[[], None]:
    """One pass of ``module`` on ``x``: forward + backward (``"train"``) or forward
    without gradients (``"eval"``). The incoming gradient is made once, outside."""
    device_type = x.device.type
    if mode == "eval":
        def infer() -> None:
            with torch.no_grad(), torch.autocast(device_type, enabled=amp):
                module(x)
        return infer

    grad = torch.ones_like(x)

    def train() -> None:
        with torch.autocast(device_type, enabled=amp):
            out = module(x)
        out.backward(grad)
        x.grad = None
        for parameter in module.parameters():  # keep the .grad buffers: zero, not free
            if parameter.grad is not None:
                parameter.grad.zero_()

    return train


def pass_peak(module: nn.Module, x: torch.Tensor, mode: str = "train", amp: bool = False) -> int:
    """Peak bytes allocated during one pass (see :func:`common.peak_bytes`), after a pass
    that creates the parameters' ``.grad`` buffers (so they are not counted)."""
    step = _step(module, x, mode, amp)
    step()
    return peak_bytes(step)


def top_operators(module: nn.Module, x: torch.Tensor, mode: str = "train", count: int = 4,
                  amp: bool = False) -> list[tuple[str, float]]:
    """The ``count`` operators that take most of one pass, as ``(name, share of the
    pass's CPU time)``, measured with ``torch.profiler``."""
    step = _step(module, x, mode, amp)
    step()  # warm-up
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        step()
    events = profile.key_averages()
    total = sum(event.self_cpu_time_total for event in events) or 1.0
    ranked = sorted(events, key=lambda event: event.self_cpu_time_total, reverse=True)[:count]
    return [(event.key, event.self_cpu_time_total / total) for event in ranked]


def selected_cases(names: list[str] | None) -> list[Case]:
    """The cases named in ``names`` (all for ``None``); unknown names raise ``ValueError``."""
    if names is None:
        return list(CASES)
    unknown = sorted(set(names) - {case.name for case in CASES})
    if unknown:
        raise ValueError(f"unknown module(s) {unknown}; the benchmark has {[case.name for case in CASES]}")
    return [case for case in CASES if case.name in names]


def run(batch: int = 16, stages: list[tuple[int, int]] | None = None, device: str = "cpu",
        warmup: int = 3, repeats: int = 10, amp: bool = False, formats: tuple[str, ...] = FORMATS,
        modes: tuple[str, ...] = MODES, seed: int = 0, modules: list[str] | None = None,
        profile: bool = False, min_seconds: float = 0.0, memory: bool = True,
        progress: bool = False) -> list[dict]:
    """One row (a dict) per case, shape, memory format and mode.

    Times are medians over the rounds (``repeats`` at least, more until each module has
    run ``min_seconds``), ``ratio`` is the median of the ratios ours/reference (one per
    two rounds, see :func:`ratio_stats`)
    and ``ratio_iqr`` their IQR. ``*_peak`` is :func:`pass_peak` and ``*_saved``
    :func:`activation_bytes` (training only), both in units of the input's size. Where
    there is no reference its fields are ``None``. With ``profile``, rows whose ratio is
    above :data:`TARGET` get ``ours_top`` and ``reference_top`` (:func:`top_operators`).
    ``progress`` shows a progress bar (on stderr), one step per row.
    """
    stages = stages or RESNET50_STAGES
    rows = []
    cases = selected_cases(modules)
    grid = [(case, channels, size, memory_format, mode) for case in cases for channels, size in stages
            for memory_format in formats for mode in modes]
    bar = tqdm(grid, desc="module benchmark", unit="row", disable=not progress, file=sys.stderr)
    for case, channels, size, memory_format, mode in bar:
        bar.set_postfix_str(f"{case.name} {channels}x{size}² {memory_format} {mode}", refresh=False)
        layout = layout_of(memory_format)
        torch.manual_seed(seed)
        x = torch.randn(batch, channels, size, size, device=device).to(memory_format=layout)
        x.requires_grad_(mode == "train")
        factories = {"ours": case.ours, "reference": case.reference}
        built = {label: factory(channels).to(device).to(memory_format=layout).train(mode == "train")
                 for label, factory in factories.items() if factory is not None}
        steps = {label: _step(module, x, mode, amp) for label, module in built.items()}
        times = interleaved_times(steps, warmup, repeats, min_seconds, device_type=x.device.type)
        row = {"module": case.name, "reference": case.reference_name if case.reference else None,
               "channels": channels, "size": size, "batch": batch, "format": memory_format,
               "mode": mode, "rounds": len(times["ours"])}
        size_bytes = x.numel() * x.element_size()
        for label in factories:
            if label not in built:
                for field in ("ms", "iqr_ms", "peak", "saved"):
                    row[f"{label}_{field}"] = None
                continue
            median, iqr = median_iqr(times[label])
            row[f"{label}_ms"], row[f"{label}_iqr_ms"] = median * 1e3, iqr * 1e3
            row[f"{label}_peak"] = (pass_peak(built[label], x, mode, amp) / size_bytes
                                    if memory and device == "cpu" else None)
            row[f"{label}_saved"] = (activation_bytes(built[label], x) / size_bytes
                                     if memory and mode == "train" else None)
        if "reference" in built:
            row["ratio"], row["ratio_iqr"] = ratio_stats(times["ours"], times["reference"])
        else:
            row["ratio"] = row["ratio_iqr"] = None
        if profile and row["ratio"] is not None and row["ratio"] > TARGET:
            for label, module in built.items():
                row[f"{label}_top"] = top_operators(module, x, mode, amp=amp)
        rows.append(row)
    return rows


def _where(row: dict) -> str:
    return f"{row['channels']}x{row['size']}² {row['format']} {row['mode']}"


def summarize(rows: list[dict]) -> list[str]:
    """One line per module, computed from the rows only: how many of its rows meet
    :data:`TARGET` (median ratio), where it is missed, and how its peak memory compares."""
    lines = []
    for name in dict.fromkeys(row["module"] for row in rows):
        mine = [row for row in rows if row["module"] == name]
        compared = [row for row in mine if row["ratio"] is not None]
        if not compared:
            lines.append(f"{name}: timed alone (no reference)")
            continue
        above = [row for row in compared if row["ratio"] > TARGET]
        worst = max(compared, key=lambda row: row["ratio"])
        text = (f"{name} vs {compared[0]['reference']}: ratio <= {TARGET} in {len(compared) - len(above)}/"
                f"{len(compared)} rows, median of medians {statistics.median(r['ratio'] for r in compared):.2f}, "
                f"worst {worst['ratio']:.2f} ± {worst['ratio_iqr']:.2f} ({_where(worst)})")
        if above:
            text += "; above at " + ", ".join(f"{_where(r)} {r['ratio']:.2f}" for r in above)
        memory = [row for row in compared if row["ours_peak"] is not None and row["reference_peak"] is not None]
        if memory:
            more = [row for row in memory if row["ours_peak"] > row["reference_peak"] * 1.001]
            text += f"; peak memory <= reference in {len(memory) - len(more)}/{len(memory)} rows"
            if more:
                text += " (more at " + ", ".join(f"{_where(r)} {r['ours_peak']:.2f} vs {r['reference_peak']:.2f}"
                                                  for r in more) + ")"
        lines.append(text)
    return lines


def _number(value: float | None, width: int, digits: int = 2) -> str:
    return f"{value:>{width}.{digits}f}" if value is not None else f"{'—':>{width}}"


def format_table(rows: list[dict]) -> str:
    """The printed table, then one summary line per module (:func:`summarize`)."""
    header = (f"{'module':<13} {'ref':<7} {'c':>5} {'hw':>3} {'format':<13} {'mode':<5} {'ours ms':>8} "
              f"{'ref ms':>8} {'ratio':>6} {'±IQR':>5} {'peak':>5} {'ref':>5} {'saved':>5} {'ref':>5}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['module']:<13} {r['reference'] or '—':<7} {r['channels']:>5} {r['size']:>3} {r['format']:<13} "
            f"{r['mode']:<5} {_number(r['ours_ms'], 8, 3)} {_number(r['reference_ms'], 8, 3)} "
            f"{_number(r['ratio'], 6)} {_number(r['ratio_iqr'], 5)} {_number(r['ours_peak'], 5)} "
            f"{_number(r['reference_peak'], 5)} {_number(r['ours_saved'], 5)} {_number(r['reference_saved'], 5)}"
        )
    counts = sorted({r["rounds"] for r in rows})
    rounds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    lines.append(f"times: median over {rounds} rounds, ours and the reference timed in alternation; ratio: median "
                 "(± IQR) of the ratios ours/reference, one per two rounds (one in each order); "
                 "train = forward+backward, eval = forward without gradients; peak: most bytes allocated at once during the pass, saved: output + tensors "
                 "kept for backward, both in units of the input's size (floors: peak 2.0 train, 1.0 eval; saved 1.0)")
    lines.extend(summarize(rows))
    for r in rows:
        for label in ("ours", "reference"):
            if r.get(f"{label}_top"):
                shares = ", ".join(f"{name} {share:.0%}" for name, share in r[f"{label}_top"])
                lines.append(f"profile {r['module']} {_where(r)} {label}: {shares}")
    return "\n".join(lines)
