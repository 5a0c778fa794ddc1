# Hand-written support module (not generated from a notebook).
"""Whole-model benchmark: what attention costs a whole network.

For every attention ``create_model`` can place, the benchmark times a training step
(forward, cross-entropy loss, backward; no optimizer update) and an inference pass
(eval mode, no gradients) of ``create_model(arch, attention)``, next to the plain
backbone ``create_model(arch)`` and, where timm has one, timm's corresponding model
and timm's plain backbone. Every model runs once per round, the order reversed on every
other round, so that a slow phase of the machine falls on all of them; the overhead of
an attention is ``time(with attention) / time(plain backbone) - 1`` from the median of
the ratios of the two times, one per two rounds as in :func:`ratio_stats` (ours against
our backbone, timm's against timm's), with its IQR. Rounds go
on until every ratio's IQR is below ``target_iqr`` (5 % of the median) or ``max_rounds``
or the time budget is reached. Both memory formats are measured, one after the other.

timm's corresponding models (``TIMM_MODELS``), for ResNets:

- plain: timm's model of the same name (``resnet50``: the same ResNet-50 v1.5);
- se: ``block_args=dict(attn_layer="se")`` (timm's ``seresnet50``);
- eca: ``attn_layer="eca"``; cbam: timm's ``CbamModule`` with MLP biases, as ours;
- ge: timm's ``GatherExcite`` with a global extent and no MLP (GE-θ⁻, our default);
  timm 1.0.31's ``attn_layer="ge"`` fails to build (its default ``use_mlp=True``
  raises ``TypeError``);
- sk: no corresponding timm model (timm's ``skresnet50`` splits the input channels
  between the branches and uses other widths), so none is timed;
- bam and the Part II mechanisms: none listed yet. Adding one is one entry
  ``TIMM_MODELS["gc"] = ("block_args", {"attn_layer": "gc"})`` (keyword arguments of
  ``timm.create_model`` for the same architecture) or ``("model", "<timm name>")``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from attention_lib.benchmark.common import layout_of, median_iqr, ratio_stats
from attention_lib.costs import model_flops
from attention_lib.mechanisms import placeable
from attention_lib.models import create_model

__all__ = ["TIMM_MODELS", "timm_model", "run_models"]


def _timm_layer(name: str, **kwargs) -> Callable:
    import timm.layers

    layer = getattr(timm.layers, name, None)
    if layer is None:  # CbamModule is not re-exported by timm.layers
        from timm.layers import cbam

        layer = getattr(cbam, name)
    return partial(layer, **kwargs)


#: attention -> how to build timm's corresponding model of the same architecture:
#: ("block_args", kwargs for the blocks' attention) or ("model", a timm model name).
TIMM_MODELS: dict[str | None, tuple[str, object]] = {
    None: ("block_args", None),
    "se": ("block_args", {"attn_layer": "se"}),
    "eca": ("block_args", {"attn_layer": "eca"}),
    "cbam": ("block_args", {"attn_layer": lambda: _timm_layer("CbamModule", mlp_bias=True)}),
    "ge": ("block_args", {"attn_layer": lambda: _timm_layer("GatherExcite", extent=0, use_mlp=False)}),
}


def timm_model(arch: str, attention: str | None) -> nn.Module | None:
    """timm's model corresponding to ``create_model(arch, attention)``, or ``None``."""
    if attention not in TIMM_MODELS or arch.startswith("mobilenet"):
        return None
    import timm

    kind, value = TIMM_MODELS[attention]
    if kind == "model":
        return timm.create_model(value)
    if value is None:
        return timm.create_model(arch)
    block_args = {key: (item() if callable(item) and not isinstance(item, type) else item)
                  for key, item in value.items()}
    return timm.create_model(arch, block_args=block_args)


def _train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        F.cross_entropy(model(x), y).backward()
        model.zero_grad(set_to_none=True)
    return step


def _eval_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad():
            model(x)
    return step


def run_models(arch: str = "resnet50", attentions: list[str] | None = None, batch: int = 4, image_size: int = 112,
               formats: tuple[str, ...] = ("contiguous", "channels_last"), warmup: int = 1, min_rounds: int = 15,
               max_rounds: int = 30, target_iqr: float = 0.05, max_minutes: float | None = None, timm: bool = True,
               seed: int = 0, log: Callable[[str], None] | None = None) -> dict:
    """Time every model; returns ``{"models": [...], "rows": [...]}`` (see the module doc).

    One row per model, memory format and mode ("train", "eval"): median seconds and IQR,
    images per second, the forward FLOPs per image (``flops``, convolutions and matrix
    products as PyTorch's counter counts them), and for an attention the overhead against
    its own family's plain backbone (``overhead`` and ``overhead_iqr``, fractions: 0.10 is
    +10 %) next to the FLOPs it adds (``flops_added``, a fraction of the backbone's). ``max_minutes``
    bounds the whole run: each format gets an equal share, and rounds stop when it is
    spent, even below ``min_rounds`` (the row says how many rounds it has).

    The IQR of a few rounds is not to be trusted, hence ``min_rounds=15``: on the 2-core
    machine this book is built on, two runs that stopped after 5 and 8 rounds with every
    IQR below 5 % gave the same code's overheads up to 6.5 points apart, and runs of 30
    rounds put the IQRs at 2-13 points.
    """
    log = log or (lambda text: None)
    attentions = list(placeable()) if attentions is None else attentions
    torch.manual_seed(seed)
    models: dict[str, nn.Module] = {"ours plain": create_model(arch, None, image_size=image_size)}
    family = {"ours plain": ("ours", None)}
    skipped = []
    for attention in attentions:
        models[f"ours {attention}"] = create_model(arch, attention, image_size=image_size)
        family[f"ours {attention}"] = ("ours", attention)
    if timm:
        for attention in [None, *attentions]:
            built = timm_model(arch, attention)
            if built is None:
                skipped.append({"attention": attention, "family": "timm", "reason": "no corresponding timm model"})
                continue
            label = f"timm {attention or 'plain'}"
            models[label], family[label] = built, ("timm", attention)
    flops = {label: model_flops(model, image_size) for label, model in models.items()}
    plain_flops = {owner: flops[label] for label, (owner, attention) in family.items() if attention is None}
    x = torch.randn(batch, 3, image_size, image_size)
    y = torch.randint(0, 1000, (batch,))
    rows = []
    start = time.perf_counter()
    for index, memory_format in enumerate(formats):
        layout = layout_of(memory_format)
        xf = x.to(memory_format=layout)
        steps = {}
        for label, model in models.items():
            model.to(memory_format=layout)
            steps[(label, "train")] = _train_step(model.train(), xf, y)
        eval_steps = {(label, "eval"): _eval_step(model, xf) for label, model in models.items()}
        deadline = None if max_minutes is None else start + max_minutes * 60 * (index + 1) / len(formats)
        times = {key: [] for key in [*steps, *eval_steps]}
        for _ in range(warmup):
            for step in steps.values():
                step()
            for model in models.values():
                model.eval()
            for step in eval_steps.values():
                step()
            for model in models.values():
                model.train()
        rounds = 0
        while rounds < max_rounds:
            if deadline is not None and time.perf_counter() > deadline and rounds >= 1:
                break
            order = list(models) if rounds % 2 == 0 else list(reversed(models))
            for label in order:
                models[label].train()
                times[(label, "train")].append(_timed(steps[(label, "train")]))
                models[label].eval()
                times[(label, "eval")].append(_timed(eval_steps[(label, "eval")]))
            rounds += 1
            spreads = _overheads(times, family)
            worst = max((iqr / (1 + median) for median, iqr in spreads.values()), default=0.0)
            log(f"{memory_format}: round {rounds}, worst relative IQR of the overheads {worst:.3f}, "
                f"{time.perf_counter() - start:.0f} s")
            if rounds >= min_rounds and worst < target_iqr:
                break
        overheads = _overheads(times, family)
        for (label, mode), values in times.items():
            owner, attention = family[label]
            median, iqr = median_iqr(values)
            overhead = overheads.get((label, mode))
            rows.append({"model": label, "family": owner, "attention": attention, "format": memory_format,
                         "mode": mode, "rounds": len(values), "seconds": median, "iqr_seconds": iqr,
                         "images_per_second": batch / median, "flops": flops[label],
                         "flops_added": (flops[label] / plain_flops[owner] - 1
                                         if attention is not None and owner in plain_flops else None),
                         "overhead": overhead[0] if overhead else None,
                         "overhead_iqr": overhead[1] if overhead else None})
    return {"arch": arch, "batch": batch, "image_size": image_size, "target_iqr": target_iqr,
            "elapsed_seconds": round(time.perf_counter() - start, 1), "skipped": skipped, "rows": rows}


def _timed(step: Callable[[], None]) -> float:
    begin = time.perf_counter()
    step()
    return time.perf_counter() - begin


def _overheads(times: dict, family: dict) -> dict:
    """(label, mode) -> (median, IQR) of time / time of the same family's plain backbone - 1."""
    plains = {owner: label for label, (owner, attention) in family.items() if attention is None}
    result = {}
    for (label, mode), values in times.items():
        owner, attention = family[label]
        if attention is None or owner not in plains or not values:
            continue
        base = times[(plains[owner], mode)]
        median, iqr = ratio_stats(values, base)
        result[(label, mode)] = (median - 1, iqr)
    return result
