# Hand-written support module (not generated from a notebook).
"""Rebuild a torchvision ResNet's stem and shortcuts to match a published backbone variant.

timm's ECA-ResNets use ResNet-D/T (a deep 3x3 stem, average-pool shortcut projections)
and its 'legacy' SENets use Caffe's ResNet (stride on the first 1x1 convolution, a
ceil-mode stem max-pool). :func:`build_model` gives our model of a published name,
``create_model(arch, attention)`` with the backbone adapted as its
:class:`~attention_lib.weights.registry.Backbone` says; the attention modules and their
placement never change.
"""

from __future__ import annotations

from collections import OrderedDict

import torchvision
from torch import nn
from torchvision.models.resnet import Bottleneck

from attention_lib.mechanisms import mechanism
from attention_lib.models import create_model
from attention_lib.weights.registry import Backbone, parse

__all__ = ["adapt_backbone", "build_model", "insert_after_3x3"]


def adapt_backbone(model: nn.Module, backbone: Backbone) -> None:
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
    if not backbone.stem_pool:  # the stem's last 3x3 convolution takes the max-pool's stride
        if backbone.stem == "plain":  # pragma: no cover - registry invariant
            raise ValueError("stem_pool=False needs a deep stem")
        model.conv1[6].stride = (2, 2)
        model.maxpool = nn.Identity()
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
    entry, _ = parse(name)
    if entry.backbone.attention_site == "after 3x3":
        model = create_model(entry.arch, None)
        insert_after_3x3(model, entry.attention, **entry.kwargs)
    else:
        model = create_model(entry.arch, entry.attention, **entry.kwargs)
    adapt_backbone(model, entry.backbone)
    return model


def insert_after_3x3(model: nn.Module, attention: str, **kwargs) -> None:
    """Put one ``attention`` module before the last 1x1 convolution of every bottleneck (in place).

    torchvision's bottleneck applies ``conv3`` to ``relu(bn2(conv2(.)))``, so replacing
    ``conv3`` by ``Sequential(attention=module, conv=conv3)`` puts the module exactly after
    the 3x3 convolution's ReLU, on the bottleneck width (timm's ByobNet placement).
    """
    module = mechanism(attention).module
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            if not isinstance(block, Bottleneck):  # pragma: no cover - registry invariant
                raise TypeError(f"attention after the 3x3 convolution needs bottlenecks, got {type(block).__name__}")
            block.conv3 = nn.Sequential(OrderedDict(
                attention=module(block.conv3.in_channels, **kwargs), conv=block.conv3))

