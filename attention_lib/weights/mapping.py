# Hand-written support module (not generated from a notebook).
"""Rename a published state dict into our modules' names, check it, and load it.

Each published layout (timm's ResNet family, timm's 'legacy' SENet port, timm's SKNet,
torchvision) has renaming rules from its keys to ours; :func:`load_published_state_dict`
requires every key of our model to receive exactly one published tensor of the same
shape, and names every offending key in a :class:`WeightMappingError` otherwise.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn

from attention_lib.weights.registry import PretrainedEntry, parse

__all__ = ["WeightMappingError", "map_state_dict", "load_published_state_dict"]


class WeightMappingError(ValueError):
    """A published state dict does not fit our model; the message names every offending key.

    Attributes:
        missing: our keys that no published key maps to.
        unexpected: ``(published key, mapped key)`` pairs with no counterpart in our model.
        mismatched: ``(our key, published shape, our shape)`` triples.
    """

    def __init__(self, name: str, missing: list[str], unexpected: list[tuple[str, str]],
                 mismatched: list[tuple[str, tuple, tuple]]) -> None:
        self.name, self.missing, self.unexpected, self.mismatched = name, missing, unexpected, mismatched
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) (in our model, not in the published weights): "
                         + _listing(repr(k) for k in missing))
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) (published, no counterpart in our model): "
                         + _listing(f"{src!r} (mapped to {dst!r})" for src, dst in unexpected))
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatch(es): "
                         + _listing(f"{k!r}: published {tuple(a)} vs ours {tuple(b)}" for k, a, b in mismatched))
        super().__init__(f"the published weights of {name!r} do not fit our model: " + "; ".join(parts))


def _listing(items, limit: int = 12) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _rules(entry: PretrainedEntry) -> list[tuple[re.Pattern, str]]:
    """Renaming rules, published key -> our key; the first matching rule applies."""
    basic = entry.arch in ("resnet18", "resnet34")
    last = "bn2" if basic else "bn3"  # the norm that create_model wraps as (norm, attention)
    sk = "conv1" if basic else "conv2"  # the convolution that SK replaces
    block = r"^(layer\d+\.\d+)\."
    if entry.layout == "torchvision":
        rules: list[tuple[str, str]] = []
    elif entry.layout in ("timm_resnet", "legacy_senet"):
        se = "se" if entry.layout == "timm_resnet" else "se_module"
        rules = [
            (block + se + r"\.fc1\.", rf"\1.{last}.attention.reduce."),
            (block + se + r"\.fc2\.", rf"\1.{last}.attention.expand."),
            (block + se + r"\.conv\.", rf"\1.{last}.attention.conv."),  # ECA's 1-D convolution
            (block + last + r"\.", rf"\1.{last}.norm."),
        ]
        if entry.layout == "legacy_senet":
            rules += [(r"^layer0\.conv1\.", "conv1."), (r"^layer0\.bn1\.", "bn1."), (r"^last_linear\.", "fc.")]
    elif entry.layout == "timm_sknet":
        rules = [
            (block + sk + r"\.paths\.(\d+)\.conv\.", rf"\1.{sk}.branches.\2.0."),
            (block + sk + r"\.paths\.(\d+)\.bn\.", rf"\1.{sk}.branches.\2.1."),
            (block + sk + r"\.attn\.fc_reduce\.", rf"\1.{sk}.reduce."),
            (block + sk + r"\.attn\.bn\.", rf"\1.{sk}.bn."),
            (block + sk + r"\.attn\.fc_select\.", rf"\1.{sk}.select."),
            (block + r"conv(\d)\.conv\.", r"\1.conv\2."),  # timm's ConvNormAct -> torchvision's conv, bn
            (block + r"conv(\d)\.bn\.", r"\1.bn\2."),
        ]
    elif entry.layout == "timm_resnest":  # timm's SplitAttn -> our SplitAttention (same conv, other names)
        rules = [
            (block + r"conv2\.bn0\.", r"\1.conv2.norm."),
            (block + r"conv2\.fc1\.", r"\1.conv2.reduce."),
            (block + r"conv2\.bn1\.", r"\1.conv2.reduce_norm."),
            (block + r"conv2\.fc2\.", r"\1.conv2.expand."),
        ]
    elif entry.layout == "timm_byobnet":  # timm's ByobNet ResNet (gcresnet50t): stem.convN, stages.S.B
        rules = [(r"^stem\.conv1\.conv\.", "conv1.0."), (r"^stem\.conv1\.bn\.", "conv1.1."),
                 (r"^stem\.conv2\.conv\.", "conv1.3."), (r"^stem\.conv2\.bn\.", "conv1.4."),
                 (r"^stem\.conv3\.conv\.", "conv1.6."), (r"^stem\.conv3\.bn\.", "bn1."), (r"^head\.fc\.", "fc.")]
        parts = [("conv1_1x1.conv", "conv1"), ("conv1_1x1.bn", "bn1"), ("conv2_kxk.conv", "conv2"),
                 ("conv2_kxk.bn", "bn2"), ("conv3_1x1.conv", "conv3.conv"), ("conv3_1x1.bn", "bn3"),
                 ("shortcut.conv", "downsample.0"), ("shortcut.bn", "downsample.1"),
                 ("attn.conv_attn", "conv3.attention.key"), ("attn.mlp_add.fc1", "conv3.attention.reduce"),
                 ("attn.mlp_add.norm", "conv3.attention.norm"), ("attn.mlp_add.fc2", "conv3.attention.expand")]
        for stage in range(4):  # stages.0 -> layer1 ...
            rules += [(rf"^stages\.{stage}\.(\d+)\." + re.escape(theirs) + r"\.", rf"layer{stage + 1}.\1.{ours}.")
                      for theirs, ours in parts]
    else:  # pragma: no cover - registry invariant
        raise ValueError(f"unknown layout {entry.layout!r}")
    return [(re.compile(pattern), replacement) for pattern, replacement in rules]


_LAYER_NORM = re.compile(r"\.attention\.norm\.(weight|bias)$")


_BRANCH_KERNEL = re.compile(r"\.branches\.(\d+)\.0\.weight$")


def _embed_split_input(key: str, tensor: torch.Tensor, num_branches: int = 2) -> torch.Tensor:
    """timm's split-input branch kernel (out, in/m, k, k) -> ours (out, in, k, k), zeros elsewhere."""
    match = _BRANCH_KERNEL.search(key)
    if match is None:
        return tensor
    i, width = int(match.group(1)), tensor.shape[1]
    full = tensor.new_zeros(tensor.shape[0], width * num_branches, *tensor.shape[2:])
    full[:, i * width:(i + 1) * width] = tensor
    return full


def map_state_dict(name: str, state_dict: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Rename (and, for split-input SK, embed) a published state dict into our names.

    Only renames; :func:`load_published_state_dict` checks the result against a model.

    Raises:
        WeightMappingError: two published keys map to the same name of ours.
    """
    return _map_with_origin(name, state_dict)[0]


def _map_with_origin(name: str, state_dict: Mapping[str, torch.Tensor]
                     ) -> tuple[OrderedDict[str, torch.Tensor], dict[str, str]]:
    """:func:`map_state_dict`, plus our key -> published key (for error messages)."""
    entry, _ = parse(name)
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of parameter names to tensors (a model's state_dict()), "
                        f"got {type(state_dict).__name__}")
    rules = _rules(entry)
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    origin: dict[str, str] = {}
    for key, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"state_dict[{key!r}] must be a torch.Tensor (the published weights of {entry.name!r}), "
                            f"got {type(tensor).__name__}")
        new = key
        for pattern, replacement in rules:
            new, count = pattern.subn(replacement, key, count=1)
            if count:
                break
        if entry.split_input:
            tensor = _embed_split_input(new, tensor)
        if entry.layout == "timm_byobnet" and _LAYER_NORM.search(new):
            tensor = tensor.reshape(-1, 1, 1)  # timm's LayerNorm2d (d,) -> our LayerNorm([d, 1, 1])
        if new in mapped:
            raise WeightMappingError(entry.name, [], [(origin[new], new), (key, new)], [])
        mapped[new] = tensor
        origin[new] = key
    return mapped, origin


def load_published_state_dict(model: nn.Module, name: str, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Map a published state dict of ``name`` onto ``model`` (from :func:`build_model`) and load it.

    Every key of ours must receive exactly one published tensor of the same shape.

    Raises:
        WeightMappingError: missing keys, unexpected keys or shape mismatches, all named.
    """
    entry, _ = parse(name)
    mapped, origin = _map_with_origin(name, state_dict)
    ours = model.state_dict()
    missing = [k for k in ours if k not in mapped]
    unexpected = [(origin.get(k, k), k) for k in mapped if k not in ours]
    mismatched = [(k, tuple(mapped[k].shape), tuple(ours[k].shape)) for k in mapped
                  if k in ours and mapped[k].shape != ours[k].shape]
    if missing or unexpected or mismatched:
        raise WeightMappingError(entry.name, missing, unexpected, mismatched)
    model.load_state_dict(mapped, strict=True)
    return model

