# Hand-written support module (not generated from a notebook).
"""The registry of published ImageNet models that map onto this library's models.

Every supported name is a key of :data:`PRETRAINED` (the published model's own name,
with an optional weight tag: ``"seresnet50.ra2_in1k"``). How faithful the match is, is
stated per name (:attr:`PretrainedEntry.fidelity`):

* ``"exact"``: ``create_model(arch, attention)`` unchanged; every published parameter has
  exactly one counterpart of the same shape.
* ``"backbone variant"``: the published network's *backbone* differs from torchvision's
  (ResNet-D/T deep stem and average-pool shortcuts; Caffe-style ResNet); the model is
  ``create_model(arch, attention)`` with its stem/shortcuts rebuilt to match (see
  :class:`Backbone` and :mod:`attention_lib.weights.backbone`). Attention modules are
  unchanged, and so is their placement unless :attr:`Backbone.attention_site` says
  otherwise (timm's gcresnet50t: inside the bottleneck, after the 3x3 convolution).
* ``"embedded"``: the published attention module is a special case of ours, reproduced
  exactly by zero-filling some of our weights (timm's split-input SK in skresnet18/34).

:data:`NOT_SUPPORTED` records published models that were checked and do *not* map, with
the reason; :func:`parse` turns a user's name into its entry and tag, or says why not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torchvision

__all__ = ["Backbone", "PretrainedEntry", "PRETRAINED", "NOT_SUPPORTED", "parse", "import_timm",
           "torchvision_weights", "data_config"]


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
        stem_pool: the stem ends with torchvision's max-pool; ``False``: no max-pool, the
            last convolution of a deep stem has stride 2 instead (timm's ByobNet ``"tiered"``
            stem with ``stem_pool=''``).
        attention_site: ``"block"``: where ``create_model`` places the attention;
            ``"after 3x3"``: one module in every bottleneck of every stage, between the 3x3
            convolution's ReLU and the last 1x1 convolution, on the bottleneck width (timm's
            ByobNet ``attn_layer`` with ``attn_last=False``).
    """

    stem: str = "plain"
    avg_down: bool = False
    ceil_pool: bool = False
    stride_in_1x1: bool = False
    stem_pool: bool = True
    attention_site: str = "block"

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
        if not self.stem_pool:
            parts.append("no stem max-pool (stride-2 last stem convolution)")
        if self.attention_site == "after 3x3":
            parts.append("attention after the 3x3 convolution of every bottleneck, all stages")
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
    # Split-Attention (ResNeSt)
    PretrainedEntry("resnest50d", "resnet50", "splat", "timm", ("in1k",), "timm_resnest", "backbone variant",
                    attention_kwargs=(("avd", True),), backbone=Backbone(stem="deep", avg_down=True),
                    notes="The authors' ResNeSt-50 (ported by timm): Split-Attention with radix 2, cardinality 1, "
                          "bottleneck width max(2c/4, 32), in a ResNet-50-D (deep stem, average-pool shortcuts); "
                          "avd=True: the three strided units convolve at stride 1 and average-pool (3x3, padding 1) "
                          "afterwards."),
    # Global Context: timm's ByobNet GC-ResNet-50-T.
    PretrainedEntry("gcresnet50t", "resnet50", "gc", "timm", ("ra2_in1k",), "timm_byobnet", "backbone variant",
                    attention_kwargs=(("reduction", 8), ("eps", 1e-6)),
                    backbone=Backbone(stem="deep_tiered", stem_pool=False, attention_site="after 3x3"),
                    notes="timm's GC-ResNet-50-T (a ByobNet): tiered 3x3 stem (24, 32, 64) without max-pool, plain "
                          "strided 1x1 shortcuts, and a GC block (addition, d = c/8, LayerNorm eps 1e-6) after the "
                          "3x3 convolution of all 16 bottlenecks; the paper puts it after bn3 in stages 2-4 "
                          "(create_model's placement). Trained at 256 px."),
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
    "gcresnet*": "timm's other GC-ResNets (gcresnet33ts: a 33-layer SiLU ByobNet) are not one of our "
                 "architectures; gcresnet50t maps.",
    "gcresnext*": "timm's GC-ResNeXts (gcresnext26ts, gcresnext50ts) use SiLU activations (ours ReLU) and GC "
                  "after the grouped 3x3 convolution.",
}


def parse(name: str) -> tuple[PretrainedEntry, str]:
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


def import_timm():
    """timm, or an ImportError saying how to install it (only timm's names need it)."""
    try:
        import timm
    except ImportError as error:  # pragma: no cover - timm is in the [test] extra
        raise ImportError("timm's published models need timm: pip install timm") from error
    return timm


def torchvision_weights(entry: PretrainedEntry, tag: str):
    """The torchvision weights enum member of a torchvision entry (``ResNet50_Weights.IMAGENET1K_V2``)."""
    enum_name = _TV_WEIGHTS[entry.name][0]
    return getattr(torchvision.models, enum_name)[tag]


def data_config(name: str) -> dict[str, Any]:
    """Preprocessing the published weights expect: mean, std, input size, crop, interpolation.

    Read from timm's or torchvision's metadata; nothing is downloaded.
    """
    entry, tag = parse(name)
    full = f"{entry.name}.{tag}"
    if entry.source == "timm":
        cfg = import_timm().models.get_pretrained_cfg(full)
        return {"name": full, "source": "timm", "mean": tuple(cfg.mean), "std": tuple(cfg.std),
                "input_size": tuple(cfg.input_size), "crop_pct": cfg.crop_pct,
                "interpolation": cfg.interpolation}
    transform = torchvision_weights(entry, tag).transforms()
    crop, resize = transform.crop_size[0], transform.resize_size[0]
    return {"name": full, "source": "torchvision", "mean": tuple(transform.mean), "std": tuple(transform.std),
            "input_size": (3, crop, crop), "crop_pct": crop / resize,
            "interpolation": transform.interpolation.value}

