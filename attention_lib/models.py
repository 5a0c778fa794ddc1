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
  SK branches), e.g. SKNet-50 from ResNeXt-50; ResNets and ResNeXt only.

:class:`AttentionRecorder` reads the attention maps out of any model that contains
this library's modules, through forward hooks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torchvision
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck

from attention_lib.bam import BAM
from attention_lib.cbam import CBAM
from attention_lib.efficient_channel_attention import ECA
from attention_lib.gather_excite import GatherExcite
from attention_lib.selective_kernel import SelectiveKernel
from attention_lib.squeeze_excitation import SE

__all__ = ["ARCHS", "ATTENTIONS", "create_model", "attention_modules", "is_attention_module", "AttentionMap",
           "AttentionRecorder", "count_parameters", "count_flops"]

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnext50_32x4d", "mobilenet_v2")
ATTENTIONS = (None, "se", "eca", "cbam", "bam", "ge", "sk")
ATTENTION_TYPES = (SE, ECA, CBAM, BAM, GatherExcite, SelectiveKernel)
_ATTENTION_NAMES = frozenset(kind.__name__ for kind in ATTENTION_TYPES)


def is_attention_module(module: nn.Module) -> bool:
    """Whether ``module`` is one of this library's attention modules.

    Also true for the same classes defined in a chapter's notebook (the code that
    ``make export`` copies into the package): same name, same ``attention`` method.
    """
    return isinstance(module, ATTENTION_TYPES) or (
        type(module).__name__ in _ATTENTION_NAMES and callable(getattr(module, "attention", None)))

_BLOCK_ATTENTION: dict[str, Callable[..., nn.Module]] = {"se": SE, "eca": ECA, "cbam": CBAM, "ge": GatherExcite}


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


def _add_block_attention(model: nn.Module, attention: str, image_size: int, kwargs: dict) -> None:
    factory = _BLOCK_ATTENTION[attention]
    places = [_last_norm(block) for block in _residual_blocks(model)]
    sizes = _spatial_sizes(model, [norm for _, _, norm in places], image_size) if attention == "ge" else {}
    for parent, name, norm in places:
        options = dict(kwargs)
        if attention == "ge":
            options.setdefault("spatial_size", sizes[id(norm)])
        module = factory(norm.num_features, **options)
        setattr(parent, name, nn.Sequential(OrderedDict(norm=norm, attention=module)))


def _add_bam(model: nn.Module, kwargs: dict) -> None:
    if isinstance(model, torchvision.models.ResNet):
        for name in ("layer1", "layer2", "layer3"):
            stage = getattr(model, name)
            channels = _last_norm(stage[-1])[2].num_features
            setattr(model, name, nn.Sequential(OrderedDict(blocks=stage, bam=BAM(channels, **kwargs))))
        return
    # MobileNetV2: a BAM before every stride-2 block but the first (112 -> 56) one.
    features = list(model.features)
    downsampling = [i for i, m in enumerate(features) if isinstance(m, InvertedResidual) and m.stride == 2][1:]
    layers: list[nn.Module] = []
    for i, module in enumerate(features):
        if i in downsampling:
            layers.append(BAM(features[i - 1].out_channels, **kwargs))
        layers.append(module)
    model.features = nn.Sequential(*layers)


def _add_sk(model: nn.Module, kwargs: dict) -> None:
    if not isinstance(model, torchvision.models.ResNet):
        raise ValueError("attention='sk' replaces the 3x3 convolutions of ResNet/ResNeXt blocks; "
                         f"it is not defined for {type(model).__name__}")
    for block in _residual_blocks(model):
        name, norm_name = ("conv2", "bn2") if isinstance(block, Bottleneck) else ("conv1", "bn1")
        conv: nn.Conv2d = getattr(block, name)
        options = {"groups": conv.groups, **kwargs}
        sk = SelectiveKernel(conv.in_channels, conv.out_channels, stride=conv.stride[0], **options)
        setattr(block, name, sk)
        setattr(block, norm_name, nn.Identity())  # each SK branch has its own BN and ReLU


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
            names), keyword arguments without an attention, or a combination that is
            not defined (SK on MobileNetV2).
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
    model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    if attention in _BLOCK_ATTENTION:
        _add_block_attention(model, attention, image_size, attention_kwargs)
    elif attention == "bam":
        _add_bam(model, attention_kwargs)
    elif attention == "sk":
        _add_sk(model, attention_kwargs)
    return model


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
            ``"branch"``, ``"height"``, ``"width"``.
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
        ``"channel-spatial"`` (one per channel and pixel) or ``"branch"`` (one per branch
        and channel)."""
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
        if self.kind == "spatial":
            raise ValueError(f"{self.name} ({self.module}) is a spatial map: it has no per-channel weights")
        return self.tensor.mean(dim=(-2, -1)) if self.kind == "channel-spatial" else self.tensor

    def spatial_map(self) -> torch.Tensor:
        """Per-pixel weights ``(batch, height, width)``, averaged over channels for
        channel-spatial maps."""
        if self.kind == "spatial":
            return self.tensor
        if self.kind == "channel-spatial":
            return self.tensor.mean(dim=1)
        raise ValueError(f"{self.name} ({self.module}) has one weight per channel: it has no spatial map")


def _named_maps(name: str, module: nn.Module, x: torch.Tensor, weights: torch.Tensor) -> list[AttentionMap]:
    """The :class:`AttentionMap` s of one module, for its input ``x`` and ``weights = module.attention(x)``."""
    kind = type(module).__name__
    if kind == "CBAM":  # weights is the spatial map; the channel step is computed here
        channel = module.channel.attention(x)
        return [AttentionMap(f"{name}.channel", kind, channel.flatten(1), ("batch", "channel")),
                AttentionMap(f"{name}.spatial", kind, weights[:, 0], ("batch", "height", "width"))]
    if kind == "SelectiveKernel":  # (n, m, c, 1, 1)
        return [AttentionMap(name, kind, weights.flatten(2), ("batch", "branch", "channel"))]
    if weights.shape[-2:] == (1, 1):  # SE, ECA, global GE
        return [AttentionMap(name, kind, weights.flatten(1), ("batch", "channel"))]
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


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: nn.Module, image_size: int = 224) -> int:
    """Floating-point operations of one forward pass on one image, counted by PyTorch's
    ``FlopCounterMode`` (convolutions and matrix products; one multiply-add = 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, image_size, image_size))
    model.train(was_training)
    return counter.get_total_flops()
