# Hand-written support module (not generated from a notebook).
"""Read the attention weights out of any model, with forward hooks, as named maps.

:class:`AttentionRecorder` hooks every attention module of a model (any mechanism of
:mod:`attention_lib.mechanisms`, wherever it sits) and keeps what its ``attention()``
method computes for the input it saw, as :class:`AttentionMap` s: tensors whose
dimensions are named (``("batch", "channel")``, ``("batch", "height", "width")``, ...),
so that a plot or a statistic can ask for channel weights or a spatial map whatever the
mechanism.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attention_lib.mechanisms import mechanism_of

__all__ = ["is_attention_module", "attention_modules", "AttentionMap", "AttentionRecorder"]


def is_attention_module(module: nn.Module) -> bool:
    """Whether ``module`` is one of this library's attention modules.

    Also true for the same classes defined in a chapter's notebook (the code that
    ``make export`` copies into the package): same name, same ``attention`` method.
    """
    return mechanism_of(module) is not None


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The attention modules of ``model`` (outermost only), with their qualified names."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if is_attention_module(module) and not any(name.startswith(prefix + ".") for prefix, _ in found):
            found.append((name, module))
    return found


@dataclass(frozen=True)
class AttentionMap:
    """One attention module's weights for a batch, with its dimensions named.

    Attributes:
        name: the module's qualified name in the model (``"layer4.2.bn3.attention"``);
            CBAM gives two maps, ``"<name>.channel"`` and ``"<name>.spatial"``.
        module: the module's class name (``"SE"``, ``"CBAM"``, ...).
        tensor: the weights with size-1 spatial dimensions dropped.
        dims: one name per dimension of ``tensor``: ``"batch"``, ``"channel"``,
            ``"branch"``, ``"height"``, ``"width"``, and ``"query"`` for a map that gives
            every query position its own weights over the ``(height, width)`` positions
            (Non-local).
    """

    name: str
    module: str
    tensor: torch.Tensor
    dims: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.dims) != self.tensor.dim():
            raise ValueError(f"dims {self.dims} name {len(self.dims)} dimensions, but the tensor has "
                             f"{self.tensor.dim()} (shape {tuple(self.tensor.shape)})")

    @property
    def kind(self) -> str:
        """``"channel"`` (one weight per channel), ``"spatial"`` (one per pixel),
        ``"channel-spatial"`` (one per channel and pixel), ``"branch"`` (one per branch
        and channel) or ``"position"`` (one spatial map per query position)."""
        if "query" in self.dims:
            return "position"
        if "branch" in self.dims:
            return "branch"
        if "channel" in self.dims:
            return "channel-spatial" if "height" in self.dims else "channel"
        return "spatial"

    def size(self, dim: str) -> int:
        """The size of the dimension called ``dim``."""
        if dim not in self.dims:
            raise ValueError(f"{self.name} has no dimension {dim!r}; its dims are {self.dims}")
        return self.tensor.shape[self.dims.index(dim)]

    def channel_weights(self) -> torch.Tensor:
        """Per-channel weights: ``(batch, channel)``, averaged over pixels for
        channel-spatial maps; ``(batch, branch, channel)`` for branch weights."""
        if self.kind in ("spatial", "position"):
            raise ValueError(f"{self.name} ({self.module}) is a {self.kind} map: it has no per-channel weights")
        return self.tensor.mean(dim=(-2, -1)) if self.kind == "channel-spatial" else self.tensor

    def spatial_map(self) -> torch.Tensor:
        """Per-pixel weights ``(batch, height, width)``, averaged over channels for
        channel-spatial maps and over query positions for position maps."""
        if self.kind == "spatial":
            return self.tensor
        if self.kind == "position":
            return self.tensor.mean(dim=self.dims.index("query"))
        if self.kind == "channel-spatial":
            return self.tensor.mean(dim=1)
        raise ValueError(f"{self.name} ({self.module}) has one weight per channel: it has no spatial map")


def _named_maps(name: str, module: nn.Module, x: torch.Tensor, weights: torch.Tensor) -> list[AttentionMap]:
    """The :class:`AttentionMap` s of one module, for its input ``x`` and ``weights = module.attention(x)``.

    A module can name its own maps: a method ``named_maps(x, weights)`` returning
    ``(suffix, tensor, dims)`` triples (suffix ``""`` for a map named after the module
    itself). The mechanisms of Part II do; those of Part I are read here.
    """
    kind = type(module).__name__
    if callable(getattr(module, "named_maps", None)):
        return [AttentionMap(f"{name}.{suffix}" if suffix else name, kind, tensor, tuple(dims))
                for suffix, tensor, dims in module.named_maps(x, weights)]
    if kind == "CBAM":  # weights is the spatial map; the channel step is computed here
        channel = module.channel.attention(x)
        return [AttentionMap(f"{name}.channel", kind, channel.flatten(1), ("batch", "channel")),
                AttentionMap(f"{name}.spatial", kind, weights[:, 0], ("batch", "height", "width"))]
    if kind == "SelectiveKernel":  # (n, m, c, 1, 1)
        return [AttentionMap(name, kind, weights.flatten(2), ("batch", "branch", "channel"))]
    if weights.shape[-2:] == (1, 1):  # SE, ECA, global GE
        return [AttentionMap(name, kind, weights.flatten(1), ("batch", "channel"))]
    if kind == "SpatialAttention":  # (n, 1, h, w): one weight per pixel
        return [AttentionMap(name, kind, weights[:, 0], ("batch", "height", "width"))]
    return [AttentionMap(name, kind, weights, ("batch", "channel", "height", "width"))]  # BAM, local GE


class AttentionRecorder:
    """Record the attention weights of every attention module during forward passes.

    Use as a context manager; after a forward pass, ``recorder.named`` maps names to
    :class:`AttentionMap` s (tensors with named dimensions, for any of this library's
    modules), and ``recorder.maps`` maps each module's qualified name to the raw tensor
    its ``attention()`` method returns (for CBAM: the spatial map; for SK: the branch
    weights)::

        with AttentionRecorder(model) as recorder:
            model(images)
        recorder.maps["layer4.2.bn3.attention"].shape   # (n, c, 1, 1) for SE
        recorder.named["layer4.2.bn3.attention"].dims   # ("batch", "channel")

    Args:
        model: any model containing this library's attention modules.
        named: also build :attr:`named` (a little extra work for CBAM).
    """

    def __init__(self, model: nn.Module, named: bool = True) -> None:
        self.modules = attention_modules(model)
        if not self.modules:
            raise ValueError("the model contains no attention_lib attention module")
        self.record_named = named
        self.maps: dict[str, torch.Tensor] = {}
        self.named: dict[str, AttentionMap] = {}
        self._handles: list = []

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            with torch.no_grad():
                x = inputs[0].detach()
                self.maps[name] = weights = module.attention(x).detach()
                if self.record_named:
                    for item in _named_maps(name, module, x, weights):
                        self.named[item.name] = item
        return hook

    def __enter__(self) -> AttentionRecorder:
        self.maps, self.named = {}, {}
        self._handles = [module.register_forward_hook(self._hook(name)) for name, module in self.modules]
        return self

    def __exit__(self, *exc_info) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

