# Hand-written support module (not generated from a notebook).
"""Published ImageNet weights in this library's models.

:func:`pretrained_model` builds the model of :func:`attention_lib.create_model` that
computes the same function as a published ImageNet classifier, downloads the published
weights (through timm or torchvision, and only when it is called) and copies them in
through an explicit state-dict mapping. The result is an ordinary ``create_model``
network whose attention modules are this library's own from-scratch :class:`~attention_lib.SE`,
:class:`~attention_lib.ECA` and :class:`~attention_lib.SelectiveKernel`, carrying trained
weights::

    >>> from attention_lib.pretrained import pretrained_model
    >>> model = pretrained_model("seresnet50")  # doctest: +SKIP (downloads once, then cached)
    >>> se = model.layer4[2].bn3.attention      # doctest: +SKIP (attention_lib.SE, trained weights)

Every supported name is a key of :data:`PRETRAINED` (the published model's own name, with
an optional weight tag: ``"seresnet50.ra2_in1k"``). How faithful the match is, is stated
per name (:attr:`PretrainedEntry.fidelity`):

* ``"exact"``: ``create_model(arch, attention)`` unchanged; every published parameter has
  exactly one counterpart of the same shape.
* ``"backbone variant"``: the published network's *backbone* differs from torchvision's
  (ResNet-D/T deep stem and average-pool shortcuts; Caffe-style ResNet); the model is
  ``create_model(arch, attention)`` with its stem/shortcuts rebuilt to match (see
  :class:`Backbone`). Attention modules and their placement are unchanged.
* ``"embedded"``: the published attention module is a special case of ours, reproduced
  exactly by zero-filling some of our weights (timm's split-input SK in skresnet18/34).

:func:`availability` says, for every ``(arch, attention)`` of :data:`~attention_lib.models.ARCHS`
x :data:`~attention_lib.models.ATTENTIONS`, which names exist, and why the others have no
public weights. ``tests/test_pretrained.py`` proves every mapping offline: it builds each
published architecture with *random* weights, maps them onto ours and requires the same
logits.

A published state dict whose names or shapes do not fit raises :class:`WeightMappingError`
naming every offending key; a failed download raises :class:`RuntimeError` naming the
model. timm is needed only for timm's names (``pip install timm``).
"""

from __future__ import annotations

import os
import re
import socket
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import Bottleneck

from attention_lib.models import ARCHS, ATTENTIONS, create_model

__all__ = [
    "Backbone", "PretrainedEntry", "PRETRAINED", "NOT_SUPPORTED", "AVAILABILITY", "WeightMappingError",
    "availability", "availability_markdown", "pretrained_model", "build_model", "published_model",
    "fetch_published_state_dict", "map_state_dict", "load_published_state_dict", "data_config",
]


# ----------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class Backbone:
    """How the published backbone departs from torchvision's ResNet (all ``False``/plain: none).

    Attributes:
        stem: ``"plain"`` (one 7x7 convolution, torchvision), ``"deep"`` (three 3x3
            convolutions of widths 32, 32, 64: ResNet-D) or ``"deep_tiered"`` (24, 32, 64:
            timm's ResNet-T).
        avg_down: shortcut projections average-pool (2x2, stride 2) before a stride-1 1x1
            convolution, instead of a stride-2 1x1 convolution (ResNet-D).
        ceil_pool: the stem's max pooling is Caffe's (3x3, stride 2, no padding, ceil mode)
            instead of torchvision's (padding 1): same output size, shifted windows.
        stride_in_1x1: a bottleneck's stride sits on its first 1x1 convolution (Caffe
            ResNet "v1") instead of its 3x3 convolution (torchvision "v1.5").
    """

    stem: str = "plain"
    avg_down: bool = False
    ceil_pool: bool = False
    stride_in_1x1: bool = False

    def describe(self) -> str:
        """One line saying how this backbone differs from torchvision's."""
        parts = []
        if self.stem == "deep":
            parts.append("deep 3x3 stem (32, 32, 64)")
        elif self.stem == "deep_tiered":
            parts.append("tiered deep 3x3 stem (24, 32, 64)")
        if self.avg_down:
            parts.append("average-pool shortcut projections")
        if self.ceil_pool:
            parts.append("Caffe stem max-pool (no padding, ceil mode)")
        if self.stride_in_1x1:
            parts.append("stride on the first 1x1 convolution (ResNet v1)")
        return "; ".join(parts) if parts else "torchvision backbone, unchanged"


@dataclass(frozen=True)
class PretrainedEntry:
    """One published ImageNet model that maps onto this library's models.

    Attributes:
        name: the published model's name, the key of :data:`PRETRAINED`.
        arch, attention: the ``create_model`` arguments of the model we build.
        source: ``"timm"`` or ``"torchvision"``.
        tags: the published weight tags (timm) or weight enum members (torchvision);
            the first is the default.
        layout: which renaming rules map the published state dict onto ours.
        fidelity: ``"exact"``, ``"backbone variant"`` or ``"embedded"`` (module docstring).
        attention_kwargs: passed to ``create_model`` so that widths match the published model.
        backbone: how the published backbone differs from torchvision's.
        split_input: timm's split-input SK (each branch sees its own slice of the input
            channels); embedded into ours by zero-filling the other slices.
        notes: what else a user should know.
    """

    name: str
    arch: str
    attention: str | None
    source: str
    tags: tuple[str, ...]
    layout: str
    fidelity: str
    attention_kwargs: tuple[tuple[str, Any], ...] = ()
    backbone: Backbone = Backbone()
    split_input: bool = False
    notes: str = ""

    @property
    def kwargs(self) -> dict[str, Any]:
        """``attention_kwargs`` as a dict."""
        return dict(self.attention_kwargs)


_TV_WEIGHTS = {  # torchvision builder -> (weights enum class name, members, default first)
    "resnet18": ("ResNet18_Weights", ("IMAGENET1K_V1",)),
    "resnet34": ("ResNet34_Weights", ("IMAGENET1K_V1",)),
    "resnet50": ("ResNet50_Weights", ("IMAGENET1K_V2", "IMAGENET1K_V1")),
    "resnet101": ("ResNet101_Weights", ("IMAGENET1K_V2", "IMAGENET1K_V1")),
    "resnext50_32x4d": ("ResNeXt50_32X4D_Weights", ("IMAGENET1K_V2", "IMAGENET1K_V1")),
    "mobilenet_v2": ("MobileNet_V2_Weights", ("IMAGENET1K_V2", "IMAGENET1K_V1")),
}

_SK_NOTE = ("timm's SK-ResNet-18/34 split the input channels between the two branches "
            "(split_input=True): branch i convolves only the i-th half of the input. That is a "
            "special case of our SelectiveKernel (every branch sees every input channel), so the "
            "weights are embedded exactly by zero-filling the other half of each branch kernel: "
            "same logits, but our model stores twice the branch-kernel parameters (half of them "
            "zero), and fine-tuning would fill them in (it then stops being split-input).")
_LEGACY_NOTE = ("timm's 'legacy' SENet port (Cadene's pretrained-models layout, converted from the "
                "SENet authors' Caffe release for SE-ResNet-50/101).")

PRETRAINED: dict[str, PretrainedEntry] = {e.name: e for e in [
    # Plain torchvision backbones: the baselines, with torchvision's own weights.
    *[PretrainedEntry(arch, arch, None, "torchvision", members, "torchvision", "exact",
                      notes="torchvision's weights for the backbone without attention (the baseline).")
      for arch, (_, members) in _TV_WEIGHTS.items()],
    # SE
    PretrainedEntry("seresnet50", "resnet50", "se", "timm", ("a1_in1k", "a2_in1k", "a3_in1k", "ra2_in1k"),
                    "timm_resnet", "exact",
                    notes="timm's SE-ResNet-50: torchvision's ResNet-50 v1.5 with an SE after bn3 of every "
                          "bottleneck; SE hidden width c // 16 (16..128, timm rounds to multiples of 8), "
                          "biased 1x1 convolutions, ReLU, sigmoid."),
    PretrainedEntry("seresnext50_32x4d", "resnext50_32x4d", "se", "timm", ("racm_in1k", "gluon_in1k"),
                    "timm_resnet", "exact",
                    notes="timm's SE-ResNeXt-50 32x4d: torchvision's ResNeXt-50 with SE after bn3."),
    PretrainedEntry("legacy_seresnet50", "resnet50", "se", "timm", ("in1k",), "legacy_senet", "backbone variant",
                    backbone=Backbone(ceil_pool=True, stride_in_1x1=True), notes=_LEGACY_NOTE),
    PretrainedEntry("legacy_seresnet101", "resnet101", "se", "timm", ("in1k",), "legacy_senet",
                    "backbone variant", backbone=Backbone(ceil_pool=True, stride_in_1x1=True), notes=_LEGACY_NOTE),
    PretrainedEntry("legacy_seresnext50_32x4d", "resnext50_32x4d", "se", "timm", ("in1k",), "legacy_senet",
                    "backbone variant", backbone=Backbone(ceil_pool=True),
                    notes="timm's 'legacy' SENet layout of SE-ResNeXt-50 32x4d (stride on the 3x3 "
                          "convolution as in torchvision; only the stem max-pool differs)."),
    # ECA: timm's ECA-ResNets all have deep stems and average-pool shortcuts.
    PretrainedEntry("ecaresnet50d", "resnet50", "eca", "timm", ("miil_in1k",), "timm_resnet", "backbone variant",
                    backbone=Backbone(stem="deep", avg_down=True),
                    notes="ECA-ResNet-50-D; ECA kernel sizes from eq. 3.5 (5, 5, 5, 7 by stage), as ours."),
    PretrainedEntry("ecaresnet50t", "resnet50", "eca", "timm", ("ra2_in1k", "a1_in1k", "a2_in1k", "a3_in1k"),
                    "timm_resnet", "backbone variant", backbone=Backbone(stem="deep_tiered", avg_down=True),
                    notes="ECA-ResNet-50-T (tiered deep stem); the ra2_in1k weights were trained at 256 px."),
    PretrainedEntry("ecaresnet101d", "resnet101", "eca", "timm", ("miil_in1k",), "timm_resnet",
                    "backbone variant", backbone=Backbone(stem="deep", avg_down=True),
                    notes="ECA-ResNet-101-D."),
    # SK
    PretrainedEntry("skresnext50_32x4d", "resnext50_32x4d", "sk", "timm", ("ra_in1k",), "timm_sknet", "exact",
                    attention_kwargs=(("reduction", 16), ("min_width", 32)),
                    notes="timm's SKNet-50 (SK on ResNeXt-50 32x4d, as in the SK paper): two 3x3 branches "
                          "with dilations 1 and 2, full input to both, fuse width max(c // 16, 32)."),
    PretrainedEntry("skresnet18", "resnet18", "sk", "timm", ("ra_in1k",), "timm_sknet", "embedded",
                    attention_kwargs=(("reduction", 8), ("min_width", 16)), split_input=True, notes=_SK_NOTE),
    PretrainedEntry("skresnet34", "resnet34", "sk", "timm", ("ra_in1k",), "timm_sknet", "embedded",
                    attention_kwargs=(("reduction", 8), ("min_width", 16)), split_input=True, notes=_SK_NOTE),
]}

#: Published models that were checked and do *not* map onto our models, with the reason
#: (:func:`pretrained_model` raises it). Keys ending in ``*`` are prefixes.
NOT_SUPPORTED: dict[str, str] = {
    "legacy_seresnet18": "its SEResNetBlock applies a ReLU to the residual branch before the SE (bn2 -> ReLU "
                         "-> SE -> add); ours puts SE directly after bn2, so the function differs (it also has "
                         "a Caffe ceil-mode stem max-pool and an SE width of c // 16 = 4 for 64 channels).",
    "legacy_seresnet34": "same block as legacy_seresnet18: a ReLU before the SE on the residual branch.",
    "seresnet18": "timm registers it untrained: there are no published weights.",
    "seresnet34": "timm registers it untrained: there are no published weights.",
    "seresnet101": "timm registers it untrained: there are no published weights (use legacy_seresnet101).",
    "skresnet50": "timm registers it untrained: there are no published weights.",
    "skresnet50d": "timm registers it untrained: there are no published weights.",
    "ecaresnet50d_pruned": "channel-pruned: its layer widths differ from ResNet-50's.",
    "ecaresnet101d_pruned": "channel-pruned: its layer widths differ from ResNet-101's.",
    "ecaresnetlight": "a 1-1-11-3 bottleneck network, not one of our architectures.",
    "ecaresnet26t": "a 26-layer (2-2-2-2 bottleneck) network, not one of our architectures.",
    "mobilenet_v3_*": "torchvision's MobileNetV3 SE uses a hard-sigmoid gate, a width of "
                      "make_divisible(expanded // 4, 8) and sits after the depthwise convolution, inside the "
                      "expanded block; ours uses a sigmoid, c // r and sits after the block's last BN, and "
                      "MobileNetV3 is not one of our backbones.",
    "mobilenetv3_*": "timm's MobileNetV3: same reasons as torchvision's mobilenet_v3_* (hard-sigmoid gate, "
                     "SE after the depthwise convolution, a backbone we do not build).",
    "efficientnet_*": "EfficientNet's SE uses SiLU (not ReLU), a width of (block input) // 4 and sits after "
                      "the depthwise convolution; EfficientNet is not one of our backbones.",
    "regnet_y_*": "RegNetY's SE (ReLU, sigmoid, biases: the same function as ours) sits after the grouped 3x3 "
                  "convolution with width round(0.25 x block input width), not after the last BN with "
                  "c // r; RegNet is not one of our backbones.",
    "gernet_*": "GENet here means GPU-Efficient Networks, not Gather-Excite.",
    "gcresnet*": "Global Context attention (GCNet), not one of this book's mechanisms.",
}

_KINDS = {"exact": 0, "backbone variant": 1, "embedded": 2}
_NONE_REASONS = {
    "cbam": "No CBAM network has ImageNet weights in timm or torchvision (timm implements a CBAM layer but "
            "registers no pretrained CBAM model); this library fetches weights only through those two.",
    "bam": "No BAM network has ImageNet weights in timm or torchvision (neither implements BAM).",
    "ge": "timm implements Gather-Excite (attn_layer='ge') but publishes no ImageNet weights for a GE "
          "network (timm's gernet_* are GPU-Efficient Networks; gcresnet* use Global Context attention); "
          "torchvision has none.",
}
_CELL_REASONS: dict[tuple[str, str | None], str] = {
    ("resnet18", "se"): "timm's seresnet18 is untrained; legacy_seresnet18 has weights but a ReLU before the "
                        "SE on the residual branch, so it is a different function.",
    ("resnet34", "se"): "timm's seresnet34 is untrained; legacy_seresnet34 has weights but a ReLU before the "
                        "SE on the residual branch, so it is a different function.",
    ("resnet50", "se"): "seresnet50 is exactly create_model('resnet50', 'se'); legacy_seresnet50 (the SENet "
                        "authors' weights, converted) needs the Caffe backbone variant.",
    ("resnet101", "se"): "timm's seresnet101 is untrained; legacy_seresnet101 (the SENet authors' weights, "
                         "converted) maps with the Caffe backbone variant (stride on the first 1x1 convolution, "
                         "ceil-mode stem max-pool).",
    ("resnext50_32x4d", "se"): "seresnext50_32x4d is exactly create_model('resnext50_32x4d', 'se'); "
                               "legacy_seresnext50_32x4d differs only in the stem max-pool.",
    ("mobilenet_v2", "se"): "No MobileNetV2 with SE has public weights. torchvision's SE networks "
                            "(MobileNetV3, EfficientNet, RegNetY) are other backbones with SE inside the "
                            "block (after the depthwise/grouped convolution), and MobileNetV3/EfficientNet "
                            "use a hard-sigmoid gate or SiLU; see NOT_SUPPORTED.",
    ("resnet18", "eca"): "No basic-block ECA-ResNet-18 weights in timm or torchvision (timm's ECA-ResNets "
                         "are bottleneck networks).",
    ("resnet34", "eca"): "No basic-block ECA-ResNet-34 weights in timm or torchvision (timm's ECA-ResNets "
                         "are bottleneck networks).",
    ("resnet50", "eca"): "Only ResNet-D/T backbones (deep stem, average-pool shortcuts) have ECA weights in "
                         "timm, so the plain-stem create_model('resnet50', 'eca') has none; ecaresnet50d/t "
                         "give our ECA modules in that backbone variant. (The ECA authors' plain-stem "
                         "ECA-Net50 'k3557' uses fixed per-stage kernel sizes and is distributed through "
                         "file-sharing links, not through timm or torchvision.)",
    ("resnet101", "eca"): "Only the ResNet-101-D backbone has ECA weights in timm: ecaresnet101d, as a "
                          "backbone variant; the plain-stem create_model('resnet101', 'eca') has none.",
    ("resnext50_32x4d", "eca"): "No ECA-ResNeXt-50 weights in timm or torchvision (timm's eca_resnext26ts "
                                "is a different 26-layer network).",
    ("mobilenet_v2", "eca"): "No ECA-MobileNetV2 weights in timm or torchvision (the ECA authors' own "
                             "checkpoint is shared through a file-sharing link, outside both).",
    ("resnet18", "sk"): "skresnet18 embeds exactly: timm's split-input SK is our SK with zero-filled "
                        "kernel blocks (see the entry's notes).",
    ("resnet34", "sk"): "skresnet34 embeds exactly: timm's split-input SK is our SK with zero-filled "
                        "kernel blocks (see the entry's notes).",
    ("resnet50", "sk"): "timm's skresnet50 and skresnet50d are registered untrained: no public weights.",
    ("resnet101", "sk"): "No SK-ResNet-101 weights in timm or torchvision.",
    ("resnext50_32x4d", "sk"): "skresnext50_32x4d (SKNet-50 of the SK paper) is exactly "
                               "create_model('resnext50_32x4d', 'sk').",
    ("mobilenet_v2", "sk"): "create_model does not define SK on MobileNetV2 (SK replaces the 3x3 convolution "
                            "of ResNet/ResNeXt blocks).",
}


def _build_availability() -> dict[tuple[str, str | None], dict[str, Any]]:
    table: dict[tuple[str, str | None], dict[str, Any]] = {}
    for arch in ARCHS:
        for attention in ATTENTIONS:
            entries = [e for e in PRETRAINED.values() if (e.arch, e.attention) == (arch, attention)]
            entries.sort(key=lambda e: _KINDS[e.fidelity])
            if attention is None:
                reason = f"torchvision's ImageNet weights for {arch} (no attention): exact."
            elif (arch, attention) in _CELL_REASONS:
                reason = _CELL_REASONS[(arch, attention)]
            else:
                reason = _NONE_REASONS[attention]
            if arch == "mobilenet_v2" and attention == "sk":
                status = "undefined"
            else:
                status = entries[0].fidelity if entries else "none"
            table[(arch, attention)] = {
                "status": status,
                "names": tuple(e.name for e in entries),
                "sources": tuple(f"{e.source}:{e.name}" for e in entries),
                "reason": reason,
            }
    return table


#: ``(arch, attention) -> {"status", "names", "sources", "reason"}`` for every cell of
#: ARCHS x ATTENTIONS. ``status`` is the best fidelity available (``"exact"``,
#: ``"backbone variant"``, ``"embedded"``), ``"none"`` (no public weights) or
#: ``"undefined"`` (create_model does not build the combination).
AVAILABILITY: dict[tuple[str, str | None], dict[str, Any]] = _build_availability()


def availability() -> dict[tuple[str, str | None], dict[str, Any]]:
    """A copy of :data:`AVAILABILITY`: which ``(arch, attention)`` have public weights, and why."""
    return {cell: dict(row) for cell, row in AVAILABILITY.items()}


def availability_markdown() -> str:
    """:data:`AVAILABILITY` as a Markdown table (for the book)."""
    lines = ["| arch | attention | status | pretrained names | reason |", "|---|---|---|---|---|"]
    for (arch, attention), row in AVAILABILITY.items():
        names = ", ".join(f"`{n}`" for n in row["names"]) or "-"
        lines.append(f"| {arch} | {attention or 'none'} | {row['status']} | {names} | {row['reason']} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- names

def _parse(name: str) -> tuple[PretrainedEntry, str]:
    """(entry, tag) for ``"base"`` or ``"base.tag"``; a clear ValueError otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__} {name!r}")
    base, _, tag = name.partition(".")
    if base not in PRETRAINED:
        for key, reason in NOT_SUPPORTED.items():
            if base == key or (key.endswith("*") and base.startswith(key[:-1])):
                raise ValueError(f"{base!r} has published weights that do not map onto attention_lib's "
                                 f"models: {reason}")
        raise ValueError(f"no published weights are mapped for {base!r}; supported names: "
                         f"{', '.join(PRETRAINED)}")
    entry = PRETRAINED[base]
    tag = tag or entry.tags[0]
    if tag not in entry.tags:
        raise ValueError(f"{base!r} has no weights tagged {tag!r}; tags: {', '.join(entry.tags)}")
    return entry, tag


def _import_timm():
    try:
        import timm
    except ImportError as error:  # pragma: no cover - timm is in the [test] extra
        raise ImportError("timm's published models need timm: pip install timm") from error
    return timm


def _tv_weights(entry: PretrainedEntry, tag: str):
    enum_name = _TV_WEIGHTS[entry.name][0]
    return getattr(torchvision.models, enum_name)[tag]


# ----------------------------------------------------------------------------- our models

def _adapt_backbone(model: nn.Module, backbone: Backbone) -> None:
    """Rebuild the stem/shortcuts of a torchvision ResNet built by create_model (in place)."""
    if backbone == Backbone():
        return
    if not isinstance(model, torchvision.models.ResNet):  # pragma: no cover - registry invariant
        raise TypeError(f"backbone variants apply to ResNets, got {type(model).__name__}")
    if backbone.stem != "plain":
        first, second = (24, 32) if backbone.stem == "deep_tiered" else (32, 32)
        out = model.conv1.out_channels
        model.conv1 = nn.Sequential(  # indices match timm's: conv1.0, .1, .3, .4, .6
            nn.Conv2d(3, first, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(first), nn.ReLU(inplace=True),
            nn.Conv2d(first, second, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(second),
            nn.ReLU(inplace=True),
            nn.Conv2d(second, out, 3, stride=1, padding=1, bias=False),
        )
    if backbone.ceil_pool:
        model.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            if backbone.stride_in_1x1 and isinstance(block, Bottleneck) and block.conv2.stride != (1, 1):
                block.conv1.stride, block.conv2.stride = block.conv2.stride, (1, 1)
            if backbone.avg_down and block.downsample is not None:
                conv, norm = block.downsample
                stride = conv.stride[0]
                conv.stride = (1, 1)
                pool = (nn.Identity() if stride == 1
                        else nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False))
                block.downsample = nn.Sequential(pool, conv, norm)


def build_model(name: str) -> nn.Module:
    """Our model for a published ``name``, randomly initialised (nothing is downloaded).

    ``create_model(entry.arch, entry.attention, **entry.kwargs)``, with its backbone
    adapted for ``"backbone variant"`` entries. Load a published state dict into it with
    :func:`load_published_state_dict`.
    """
    entry, _ = _parse(name)
    model = create_model(entry.arch, entry.attention, **entry.kwargs)
    _adapt_backbone(model, entry.backbone)
    return model


# ----------------------------------------------------------------------------- published models

def published_model(name: str, pretrained: bool = False) -> nn.Module:
    """The published architecture itself (timm's or torchvision's model).

    With ``pretrained=False`` (the default) it is randomly initialised and nothing is
    downloaded: the tests use it to prove the mapping. With ``pretrained=True`` the
    weights are downloaded (see :func:`fetch_published_state_dict` for the errors).
    """
    entry, tag = _parse(name)
    model = _published_architecture(entry)
    if pretrained:
        model.load_state_dict(fetch_published_state_dict(f"{entry.name}.{tag}"))
    return model


def _published_architecture(entry: PretrainedEntry) -> nn.Module:
    if entry.source == "timm":
        return _import_timm().create_model(entry.name, pretrained=False)
    return torchvision.models.get_model(entry.name, weights=None)


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "could not download" (OSError covers URLError, timeouts,
    connection errors, requests' errors and huggingface_hub's LocalEntryNotFoundError)."""
    errors: list[type[BaseException]] = [OSError]
    try:
        import httpx
        errors.append(httpx.HTTPError)
    except ImportError:  # pragma: no cover
        pass
    try:
        from huggingface_hub.errors import HfHubHTTPError
        errors.append(HfHubHTTPError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _fetch_timm(model_name: str, file: str | None = None) -> dict[str, torch.Tensor]:
    """timm's ``model_name`` (``"base.tag"``) with its published weights, as a state dict:
    downloaded, or read from ``file`` (a cached copy) without touching the network."""
    options = {"pretrained_cfg_overlay": {"file": file}} if file else {}
    return _import_timm().create_model(model_name, pretrained=True, **options).state_dict()


def _fetch_torchvision(weights) -> dict[str, torch.Tensor]:
    """Download a torchvision weights enum member's state dict (torch hub's cache first)."""
    return weights.get_state_dict(progress=True, check_hash=True)


def _cached_file(entry: PretrainedEntry, tag: str) -> str | None:
    """The local copy of the published weights, when an earlier download left one."""
    if entry.source == "torchvision":
        from urllib.parse import urlparse

        url = _tv_weights(entry, tag).url
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
        return str(path) if path.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return None
    hub_id = _import_timm().models.get_pretrained_cfg(f"{entry.name}.{tag}").hf_hub_id
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename)
        if isinstance(found, str):
            return found
    return None


def _host_reachable(host: str, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to ``host``:443 opens (assumed yes behind a proxy).

    Checked before a download so that an offline machine fails in milliseconds, instead
    of waiting for the download libraries' retries (about a minute for the hub)."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


_HOSTS = {"timm": "huggingface.co", "torchvision": "download.pytorch.org"}


def fetch_published_state_dict(name: str) -> dict[str, torch.Tensor]:
    """Download the published weights of ``name`` (``"base"`` or ``"base.tag"``).

    The only function here that touches the network. Downloads are cached by timm
    (Hugging Face hub cache) or torchvision (``$TORCH_HOME``); a cached copy is used
    without any network access.

    Raises:
        RuntimeError: the weights could not be downloaded (offline, blocked, server
            error); the message names the model and says how to proceed.
    """
    entry, tag = _parse(name)
    full = f"{entry.name}.{tag}"
    host = _HOSTS[entry.source]
    where = f"{host} (through timm)" if entry.source == "timm" else host

    def failure(reason: str) -> RuntimeError:
        return RuntimeError(
            f"the pretrained weights of {full!r} ({entry.source}) could not be downloaded from {where}: "
            f"{reason}. Downloading needs an internet connection the first time (the file is cached "
            f"afterwards). Offline, build the model with attention_lib.pretrained.build_model({entry.name!r}) "
            f"and load a state dict you already have with load_published_state_dict(model, {entry.name!r}, "
            f"state_dict).")

    cached = _cached_file(entry, tag)
    if cached is None and not _host_reachable(host):
        raise failure(f"cannot connect to {host}")
    try:
        if entry.source == "timm":
            return _fetch_timm(full, file=cached)
        return _fetch_torchvision(_tv_weights(entry, tag))
    except _network_errors() as error:
        raise failure(f"{type(error).__name__}: {error}") from error


# ----------------------------------------------------------------------------- mapping

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
    else:  # pragma: no cover - registry invariant
        raise ValueError(f"unknown layout {entry.layout!r}")
    return [(re.compile(pattern), replacement) for pattern, replacement in rules]


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
    entry, _ = _parse(name)
    rules = _rules(entry)
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    origin: dict[str, str] = {}
    for key, tensor in state_dict.items():
        new = key
        for pattern, replacement in rules:
            new, count = pattern.subn(replacement, key, count=1)
            if count:
                break
        if entry.split_input:
            tensor = _embed_split_input(new, tensor)
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
    entry, _ = _parse(name)
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


# ----------------------------------------------------------------------------- the user's entry point

def data_config(name: str) -> dict[str, Any]:
    """Preprocessing the published weights expect: mean, std, input size, crop, interpolation.

    Read from timm's or torchvision's metadata; nothing is downloaded.
    """
    entry, tag = _parse(name)
    full = f"{entry.name}.{tag}"
    if entry.source == "timm":
        cfg = _import_timm().models.get_pretrained_cfg(full)
        return {"name": full, "source": "timm", "mean": tuple(cfg.mean), "std": tuple(cfg.std),
                "input_size": tuple(cfg.input_size), "crop_pct": cfg.crop_pct,
                "interpolation": cfg.interpolation}
    transform = _tv_weights(entry, tag).transforms()
    crop, resize = transform.crop_size[0], transform.resize_size[0]
    return {"name": full, "source": "torchvision", "mean": tuple(transform.mean), "std": tuple(transform.std),
            "input_size": (3, crop, crop), "crop_pct": crop / resize,
            "interpolation": transform.interpolation.value}


def pretrained_model(name: str) -> nn.Module:
    """Our model carrying the published ImageNet weights of ``name``, in eval mode.

    Downloads the published weights (timm or torchvision; cached after the first time),
    builds :func:`build_model` ``(name)`` and loads the weights through the checked
    mapping. ``model.pretrained_cfg`` holds :func:`data_config` (the preprocessing the
    weights expect) and the entry. Call ``.train()`` to fine-tune.

    Args:
        name: a key of :data:`PRETRAINED`, optionally with a weight tag
            (``"seresnet50.ra2_in1k"``, ``"resnet50.IMAGENET1K_V1"``).

    Raises:
        ValueError: unknown name (the message lists the supported ones), a published
            model known not to map (the message says why), or an unknown tag.
        RuntimeError: the weights could not be downloaded.
        WeightMappingError: the downloaded weights do not fit (names the keys).
    """
    entry, tag = _parse(name)
    state_dict = fetch_published_state_dict(f"{entry.name}.{tag}")
    model = load_published_state_dict(build_model(entry.name), entry.name, state_dict)
    model.pretrained_cfg = {**data_config(f"{entry.name}.{tag}"), "fidelity": entry.fidelity,
                            "backbone": entry.backbone.describe(), "notes": entry.notes}
    return model.eval()
