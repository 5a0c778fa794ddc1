# Hand-written support module (not generated from a notebook).
"""Attention-equipped torchvision backbones, placed as the papers place them.

``create_model(arch, attention, num_classes, **attention_kwargs)`` builds one of
torchvision's ResNet-18/34/50/101, ResNeXt-50 32×4d or MobileNetV2 and inserts an
attention module from this library:

* ``"se"``, ``"eca"``, ``"cbam"``, ``"ge"``: in every residual block, on the residual
  branch after the last batch norm and before the addition with the shortcut (for
  MobileNetV2, after the projection's batch norm of every inverted residual block);
* ``"bam"``: after stages 1, 2 and 3 only (for MobileNetV2, at the ends of the 56×56,
  28×28 and 14×14 stages, before each down-sampling block);
* ``"sk"``: replaces the 3×3 convolution of every block (its batch norm moves into the
  SK branches), e.g. SKNet-50 from ResNeXt-50; ResNets and ResNeXt only;
* the mechanisms of Part II as their papers place them: each one's ``placement``,
  ``stages``, ``inverted_residual`` and ``defaults`` in :mod:`attention_lib.mechanisms`
  say where (every block of some stages only, a block of its own before the last block
  of a stage, after MobileNetV2's depthwise convolution, instead of the 3×3 convolution).

Where each mechanism goes is its ``placement`` in :mod:`attention_lib.mechanisms`. The
keyword arguments for the attention modules are checked against what that mechanism
accepts before anything is built. :mod:`attention_lib.recorder` reads the attention maps
out of the result; :mod:`attention_lib.costs` counts its parameters and FLOPs.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Iterator

import torch
import torchvision
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck

from attention_lib.mechanisms import mechanism, placeable

__all__ = ["ARCHS", "ATTENTIONS", "create_model", "attention_arguments"]

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnext50_32x4d", "mobilenet_v2")
#: ``None`` (the plain backbone) and every mechanism create_model can place.
ATTENTIONS = (None, *placeable())

# Arguments that create_model sets itself for each placement (from the layer it attaches to).
_SET_BY_PLACEMENT = {"block": {"channels"}, "stage": {"channels"}, "before last block": {"channels"},
                     "conv": {"in_channels", "out_channels", "stride"}}


def attention_arguments(attention: str) -> tuple[str, ...]:
    """The keyword arguments ``create_model(arch, attention, **kwargs)`` accepts for ``attention``."""
    entry = mechanism(attention)
    parameters = inspect.signature(entry.module.__init__).parameters
    return tuple(name for name in parameters
                 if name != "self" and name not in _SET_BY_PLACEMENT[entry.placement]
                 and parameters[name].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))


def _residual_blocks(model: nn.Module) -> Iterator[nn.Module]:
    for module in model.modules():
        if isinstance(module, (BasicBlock, Bottleneck)) or (isinstance(module, InvertedResidual)
                                                               and module.use_res_connect):
            yield module


def _last_norm(block: nn.Module) -> tuple[nn.Module, str, nn.BatchNorm2d]:
    """(parent, attribute name, BN) of the batch norm that ends a block's residual branch."""
    if isinstance(block, Bottleneck):
        return block, "bn3", block.bn3
    if isinstance(block, BasicBlock):
        return block, "bn2", block.bn2
    index = str(len(block.conv) - 1)  # InvertedResidual: conv = [..., project conv, BN]
    return block.conv, index, block.conv[-1]


def _spatial_sizes(model: nn.Module, norms: list[nn.Module], image_size: int) -> dict[int, tuple[int, int]]:
    """Output (h, w) of each module in ``norms`` for an input of ``image_size`` pixels."""
    sizes: dict[int, tuple[int, int]] = {}

    def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        sizes[id(module)] = tuple(output.shape[-2:])  # a hook must return None: it would replace the output

    hooks = [norm.register_forward_hook(record) for norm in norms]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size))
    model.train(was_training)
    for hook in hooks:
        hook.remove()
    return sizes


def _build(factory: type[nn.Module], channels: int, options: dict) -> nn.Module:
    """``factory(channels, **options)``, or ``factory(**options)`` for a module that adapts to
    any channel count (it has no ``channels`` argument, e.g. SimAM)."""
    if "channels" in inspect.signature(factory.__init__).parameters:
        return factory(channels, **options)
    return factory(**options)


def _in_stages(model: nn.Module, stages: tuple[int, ...] | None) -> set[int] | None:
    """ids of the residual blocks of the ResNet ``stages`` (None: no restriction)."""
    if stages is None or not isinstance(model, torchvision.models.ResNet):
        return None
    return {id(block) for i in stages for block in getattr(model, f"layer{i}")}


def _add_block_attention(model: nn.Module, attention: str, image_size: int, kwargs: dict) -> None:
    entry = mechanism(attention)
    if isinstance(model, torchvision.models.MobileNetV2) and entry.inverted_residual == "after depthwise":
        for block in model.features:
            if isinstance(block, InvertedResidual):
                index = len(block.conv) - 3  # conv = [expand (if any), depthwise, project conv, BN]
                depthwise = block.conv[index]
                module = _build(entry.module, depthwise[0].out_channels, dict(kwargs))
                block.conv[index] = nn.Sequential(OrderedDict(depthwise=depthwise, attention=module))
        return
    chosen = _in_stages(model, entry.stages)
    places = [_last_norm(block) for block in _residual_blocks(model) if chosen is None or id(block) in chosen]
    sizes = _spatial_sizes(model, [norm for _, _, norm in places], image_size) if attention == "ge" else {}
    for parent, name, norm in places:
        options = dict(kwargs)
        if attention == "ge":
            options.setdefault("spatial_size", sizes[id(norm)])
        module = _build(entry.module, norm.num_features, options)
        setattr(parent, name, nn.Sequential(OrderedDict(norm=norm, attention=module)))


def _add_stage_attention(model: nn.Module, attention: str, kwargs: dict) -> None:
    factory = mechanism(attention).module
    if isinstance(model, torchvision.models.ResNet):
        for name in ("layer1", "layer2", "layer3"):
            stage = getattr(model, name)
            channels = _last_norm(stage[-1])[2].num_features
            setattr(model, name, nn.Sequential(OrderedDict(blocks=stage, bam=_build(factory, channels, kwargs))))
        return
    # MobileNetV2: a BAM before every stride-2 block but the first (112 -> 56) one.
    features = list(model.features)
    downsampling = [i for i, m in enumerate(features) if isinstance(m, InvertedResidual) and m.stride == 2][1:]
    layers: list[nn.Module] = []
    for i, module in enumerate(features):
        if i in downsampling:
            layers.append(_build(factory, features[i - 1].out_channels, kwargs))
        layers.append(module)
    model.features = nn.Sequential(*layers)


def _add_before_last_block(model: nn.Module, attention: str, kwargs: dict) -> None:
    """Insert the module, as a block of its own, before the last residual block of each chosen stage.

    The stage keeps its block names ("0", "1", ...); the inserted module is called
    ``attention`` (e.g. ``layer3.non_local``), so ``stage[-1]`` is still the last block.
    """
    entry = mechanism(attention)
    for i in entry.stages or (1, 2, 3, 4):
        stage = getattr(model, f"layer{i}")
        named = list(stage.named_children())
        channels = _last_norm(named[-2][1] if len(named) > 1 else named[-1][1])[2].num_features
        module = _build(entry.module, channels, dict(kwargs))
        setattr(model, f"layer{i}", nn.Sequential(OrderedDict([*named[:-1], (attention, module), named[-1]])))


def _add_conv_attention(model: nn.Module, attention: str, kwargs: dict) -> None:
    factory = mechanism(attention).module
    for block in _residual_blocks(model):
        name, norm_name = ("conv2", "bn2") if isinstance(block, Bottleneck) else ("conv1", "bn1")
        conv: nn.Conv2d = getattr(block, name)
        options = {"groups": conv.groups, **kwargs}
        setattr(block, name, factory(conv.in_channels, conv.out_channels, stride=conv.stride[0], **options))
        setattr(block, norm_name, nn.Identity())  # the replacement normalises and activates its own output


def create_model(arch: str, attention: str | None = None, num_classes: int = 1000, image_size: int = 224,
                 **attention_kwargs) -> nn.Module:
    """Build a torchvision backbone with attention placed as in its paper (randomly initialised).

    Args:
        arch: one of :data:`ARCHS`.
        attention: one of :data:`ATTENTIONS` (``None`` for the plain backbone).
        num_classes: size of the classifier.
        image_size: input size the model is built for; only a Gather-Excite with a
            parameterised global gather depends on it (its kernels cover whole maps).
        **attention_kwargs: passed to every attention module (e.g. ``reduction=8``).

    Raises:
        ValueError: unknown ``arch`` or ``attention`` (the message lists the valid
            names), keyword arguments without an attention or that the attention does
            not accept (the message lists those it accepts), or a combination that is
            not defined (SK on MobileNetV2). All of these are found before anything is
            built; a bad *value* is reported by the attention module itself.
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}; got {arch!r}")
    if attention not in ATTENTIONS:
        valid = ", ".join(repr(a) for a in ATTENTIONS)
        raise ValueError(f"attention must be one of {valid}; got {attention!r}")
    if attention is None and attention_kwargs:
        raise ValueError(f"attention_kwargs {sorted(attention_kwargs)} were given but attention is None")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"image_size must be an int >= 32, got {image_size!r}")
    if attention is not None:
        accepted = attention_arguments(attention)
        unknown = sorted(set(attention_kwargs) - set(accepted))
        if unknown:
            raise ValueError(f"attention_kwargs {unknown} are not arguments of {mechanism(attention).module.__name__} "
                             f"(attention={attention!r}); it accepts: {', '.join(accepted)}")
        if mechanism(attention).placement == "conv" and arch == "mobilenet_v2":
            raise ValueError(f"attention={attention!r} replaces the 3x3 convolutions of ResNet/ResNeXt blocks; "
                             "it is not defined for mobilenet_v2")
        if mechanism(attention).placement == "before last block" and arch == "mobilenet_v2":
            raise ValueError(f"attention={attention!r} is inserted before the last block of ResNet stages; "
                             "it is not defined for mobilenet_v2")
    model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    placement = mechanism(attention).placement if attention is not None else None
    if attention is not None:
        attention_kwargs = {**mechanism(attention).defaults, **attention_kwargs}
    if placement == "block":
        _add_block_attention(model, attention, image_size, attention_kwargs)
    elif placement == "stage":
        _add_stage_attention(model, attention, attention_kwargs)
    elif placement == "conv":
        _add_conv_attention(model, attention, attention_kwargs)
    elif placement == "before last block":
        _add_before_last_block(model, attention, attention_kwargs)
    return model
