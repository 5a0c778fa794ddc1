# Hand-written support module (not generated from a notebook).
"""Which backbone and attention pairs have published ImageNet weights, and why the others do not.

:data:`AVAILABILITY` answers, for every ``(arch, attention)`` of
:data:`~attention_lib.models.ARCHS` x :data:`~attention_lib.models.ATTENTIONS`, which
published names carry weights for it (:mod:`attention_lib.weights.registry`) and, where
none do, the reason as the book prints it.
"""

from __future__ import annotations

from typing import Any

from attention_lib.models import ARCHS, ATTENTIONS
from attention_lib.weights.registry import PRETRAINED

__all__ = ["AVAILABILITY", "availability", "availability_markdown", "reason"]

_KINDS = {"exact": 0, "backbone variant": 1, "embedded": 2}
_NONE_REASONS = {
    "ca": "No Coordinate Attention network has ImageNet weights in timm or torchvision: timm implements the "
          "layer (timm.layers.coord_attn.CoordAttn, attn_layer='coord') but registers no model that uses it. "
          "The authors publish a MobileNetV2-CA checkpoint (mbv2_ca.pth) in their GitHub repository, "
          "outside both; its network also differs from create_model('mobilenet_v2', 'ca') (no CA in the "
          "first inverted residual block, a bias before each CA's batch norm).",
    "gc": "timm's gcresnet50t (ImageNet-1k) maps exactly onto our GlobalContext modules, but only in a "
          "variant of ResNet-50: a tiered deep stem without max-pooling, and GC blocks after the 3x3 convolution "
          "of every bottleneck in all four stages (d = c/8), where create_model('resnet50', 'gc') follows the "
          "paper (after bn3, stages 2-4, r = 16); that placement has no published weights. timm's gcresnext50ts "
          "is a ResNeXt-50 32x4d with SiLU activations (ours use ReLU), so it does not map.",
    "cbam": "No CBAM network has ImageNet weights in timm or torchvision (timm implements a CBAM layer but "
            "registers no pretrained CBAM model); this library fetches weights only through those two.",
    "bam": "No BAM network has ImageNet weights in timm or torchvision (neither implements BAM).",
    "splat": "The published ResNeSt networks are bottleneck ResNet-D networks; only ResNeSt-50 (resnest50d) has "
             "the depths and widths of one of our backbones (timm's resnest14d/26d have other depths, "
             "resnest101e/200e/269e a 64-wide stem, the _4s2x40d/_1s4x24d variants other widths), and "
             "Split-Attention replaces the 3x3 convolution of ResNet/ResNeXt blocks, so it is not defined "
             "for MobileNetV2.",
    "simam": "No SimAM network has ImageNet weights in timm or torchvision (neither implements SimAM; timm "
             "1.0.31 has no SimAM layer). The authors' checkpoints (official ResNets with SimAM after the 3x3 "
             "convolution, not create_model's placement) are shared through Baidu and Google Drive links.",
    "triplet": "No triplet-attention network has ImageNet weights in timm or torchvision (neither implements "
               "triplet attention; timm 1.0.31 has no such layer). The authors' ResNet and MobileNetV2 "
               "checkpoints are shared through Google Drive links, outside both.",
    "nl": "No Non-local ResNet has ImageNet weights in timm or torchvision: timm implements the block (timm.layers.NonLocalAttn, attn_layer='nl') but registers no model that uses it, and the paper's own networks (Kinetics video models, COCO Mask R-CNN) are Caffe2 checkpoints of other architectures.",
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
    ("resnet50", "splat"): "resnest50d (the authors' ResNeSt-50) maps onto create_model('resnet50', 'splat', "
                           "avd=True) in the ResNet-D backbone variant (deep stem, average-pool shortcuts).",
    ("resnet101", "splat"): "timm's resnest101e has a 64-wide deep stem (stem_width=64) and 256 x 256 training; "
                            "its body is ResNet-101's, but the stem is not one of our backbone variants.",
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


def reason(attention: str, arch: str = "resnet50") -> str:
    """Why ``attention`` on ``arch`` has (or has no) published weights, as the book prints it."""
    if (arch, attention) not in AVAILABILITY:
        raise ValueError(f"(arch, attention) must be one of the create_model combinations, got {(arch, attention)!r}")
    return AVAILABILITY[(arch, attention)]["reason"]
