# Hand-written support module (not generated from a notebook).
"""The registry of the book's attention mechanisms: one line per mechanism.

Each :class:`Mechanism` says where its module comes from (chapter, paper), how
:func:`~attention_lib.models.create_model` places it in a backbone, how to switch it off
for an ablation, and which configurations are worth exercising (``variants``). Everything
that must know "all the mechanisms" reads this list: ``create_model`` and its error
messages, the training command line's choices, the attention recorder, the ablation, the
comparison, and the shared contract test (``tests/test_contract.py``), so a new
mechanism gets all of them by adding its line here.

A variant is a builder ``(channels, (height, width)) -> module``: the spatial size of
the input it will see is passed because a global learned gather (GE-θ) needs it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from attention_lib.bam import BAM
from attention_lib.cbam import CBAM, ChannelAttention, SpatialAttention
from attention_lib.coordinate_attention import CoordinateAttention
from attention_lib.efficient_channel_attention import ECA, SEVar1, SEVar2, SEVar3
from attention_lib.gather_excite import GatherExcite
from attention_lib.global_context import GlobalContext
from attention_lib.non_local import NonLocal
from attention_lib.selective_kernel import SelectiveKernel
from attention_lib.simam import SimAM
from attention_lib.split_attention import SplitAttention
from attention_lib.squeeze_excitation import SE
from attention_lib.triplet_attention import TripletAttention

__all__ = ["Builder", "Mechanism", "MECHANISMS", "PLACEMENTS", "INVERTED_RESIDUAL", "ABLATIONS", "mechanism", "placeable",
           "mechanism_of", "ablation_of"]

#: ``(channels, (height, width)) -> module``.
Builder = Callable[[int, tuple[int, int]], nn.Module]

#: How create_model places a mechanism: on every residual branch before the addition
#: (``"block"``), after every stage but the last (``"stage"``), instead of the 3x3
#: convolution of every block (``"conv"``), or as a block of its own inserted before the
#: last residual block of a stage (``"before last block"``, e.g. a Non-local block).
#: ``None``: a building block, not placed.
PLACEMENTS = ("block", "stage", "conv", "before last block", None)
#: Where a ``"block"`` mechanism goes in MobileNetV2's inverted residual blocks: at the end
#: of the residual branch of the blocks that have a shortcut (``"residual end"``, as SE and
#: CBAM), or after the depthwise convolution's activation of every block
#: (``"after depthwise"``, on the expanded width, as Coordinate Attention).
INVERTED_RESIDUAL = ("residual end", "after depthwise")
#: How an ablation switches a module off: pass its input through unchanged, or (for a
#: module that must still combine several branches) give every branch the same weight.
ABLATIONS = ("identity", "equal branches")


@dataclass(frozen=True)
class Mechanism:
    """One attention mechanism of the book.

    Attributes:
        name: its name in ``create_model(arch, attention=name)`` and on the command line.
        module: the class (generated from the chapter's ``# export`` cells).
        chapter: the notebook that derives it.
        paper: the paper that proposed it.
        placement: one of :data:`PLACEMENTS`.
        ablation: one of :data:`ABLATIONS`.
        stages: the ResNet stages (1 = ``layer1`` ... 4 = ``layer4``) where a ``"block"`` or
            ``"before last block"`` mechanism is placed; ``None``: every stage.
        inverted_residual: one of :data:`INVERTED_RESIDUAL` (``"block"`` placement in
            MobileNetV2).
        defaults: keyword arguments ``create_model`` passes unless the caller gives
            them (the configuration of the paper's networks where it differs from the
            module's defaults).
        variants: label -> builder of the configurations worth exercising; the default is
            the module with its default arguments.
    """

    name: str
    module: type[nn.Module]
    chapter: str
    paper: str
    placement: str | None = "block"
    ablation: str = "identity"
    variants: Mapping[str, Builder] = field(default_factory=dict)
    stages: tuple[int, ...] | None = None
    inverted_residual: str = "residual end"
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if self.stages is not None and (not self.stages or not set(self.stages) <= {1, 2, 3, 4}):
            raise ValueError(f"stages must be None or a non-empty tuple of 1..4, got {self.stages!r}")
        if self.inverted_residual not in INVERTED_RESIDUAL:
            raise ValueError(f"inverted_residual must be one of {INVERTED_RESIDUAL}, got {self.inverted_residual!r}")
        if self.ablation not in ABLATIONS:
            raise ValueError(f"ablation must be one of {ABLATIONS}, got {self.ablation!r}")
        if not self.variants:
            module = self.module
            parameters = list(inspect.signature(module.__init__).parameters.values())[1:]
            takes_channels = bool(parameters) and parameters[0].name in ("channels", "in_channels")
            object.__setattr__(self, "variants", {self.module.__name__: (lambda c, s: module(c)) if takes_channels
                                                  else (lambda c, s: module())})


MECHANISMS: tuple[Mechanism, ...] = (
    Mechanism("se", SE, "01_squeeze_excitation", "Hu et al., CVPR 2018"),
    Mechanism("se_var1", SEVar1, "02_efficient_channel_attention", "Wang et al., CVPR 2020", placement=None),
    Mechanism("se_var2", SEVar2, "02_efficient_channel_attention", "Wang et al., CVPR 2020", placement=None),
    Mechanism("se_var3", SEVar3, "02_efficient_channel_attention", "Wang et al., CVPR 2020", placement=None),
    Mechanism("eca", ECA, "02_efficient_channel_attention", "Wang et al., CVPR 2020",
              variants={"ECA": lambda c, s: ECA(c), "ECA k=3": lambda c, s: ECA(c, kernel_size=3)}),
    Mechanism("channel_attention", ChannelAttention, "03_cbam", "Woo et al., ECCV 2018", placement=None),
    Mechanism("spatial_attention", SpatialAttention, "03_cbam", "Woo et al., ECCV 2018", placement=None,
              variants={"SpatialAttention": lambda c, s: SpatialAttention(),
                        "SpatialAttention without BN": lambda c, s: SpatialAttention(batch_norm=False)}),
    Mechanism("cbam", CBAM, "03_cbam", "Woo et al., ECCV 2018"),
    Mechanism("bam", BAM, "04_bam", "Park et al., BMVC 2018", placement="stage",
              variants={"BAM": lambda c, s: BAM(c), "BAM product": lambda c, s: BAM(c, combine="product")}),
    Mechanism("ge", GatherExcite, "05_gather_excite", "Hu et al., NeurIPS 2018",
              variants={"GE-θ- global": lambda c, s: GatherExcite(c),
                        "GE-θ- e=4": lambda c, s: GatherExcite(c, 4),
                        "GE-θ e=4": lambda c, s: GatherExcite(c, 4, param_gather=True),
                        "GE-θ global": lambda c, s: GatherExcite(c, param_gather=True, spatial_size=s),
                        "GE-θ+ global": lambda c, s: GatherExcite(c, param_gather=True, param_excite=True,
                                                                  spatial_size=s)}),
    Mechanism("sk", SelectiveKernel, "06_selective_kernel", "Li et al., CVPR 2019", placement="conv",
              ablation="equal branches"),
    # Part II, "Beyond the article": one line per chapter, in chapter order.
    Mechanism("nl", NonLocal, "09_non_local", "Wang et al., CVPR 2018", placement="before last block", stages=(3,),
              variants={"NL embedded Gaussian": lambda c, s: NonLocal(c),
                        "NL embedded Gaussian, gamma=1": lambda c, s: NonLocal(c, zero_init=False),
                        "NL dot product, gamma=1": lambda c, s: NonLocal(c, variant="dot_product", zero_init=False),
                        "NL Gaussian, gamma=1": lambda c, s: NonLocal(c, variant="gaussian", zero_init=False),
                        "NL subsample 2, gamma=1": lambda c, s: NonLocal(c, subsample=2, zero_init=False)}),
    Mechanism("gc", GlobalContext, "10_global_context", "Cao et al., ICCVW 2019", stages=(2, 3, 4),
              defaults={"reduction": 16},
              variants={"GC add": lambda c, s: GlobalContext(c, zero_init=False),
                        "GC scale": lambda c, s: GlobalContext(c, fusion="scale", zero_init=False),
                        "GC average pooling": lambda c, s: GlobalContext(c, pooling="average", zero_init=False),
                        "GC without LayerNorm": lambda c, s: GlobalContext(c, layer_norm=False, zero_init=False)}),
    Mechanism("ca", CoordinateAttention, "11_coordinate_attention", "Hou et al., CVPR 2021",
              inverted_residual="after depthwise",
              variants={"CoordinateAttention": lambda c, s: CoordinateAttention(c),
                        "CA without gate biases (timm)": lambda c, s: CoordinateAttention(c, bias=False),
                        "CA r=4": lambda c, s: CoordinateAttention(c, reduction=4)}),
    Mechanism("splat", SplitAttention, "12_split_attention", "Zhang et al., CVPRW 2022", placement="conv",
              ablation="equal branches",
              variants={"SplitAttention": lambda c, s: SplitAttention(c),
                        "SplitAttention radix 1": lambda c, s: SplitAttention(c, radix=1),
                        "SplitAttention K=2, R=4": lambda c, s: SplitAttention(c, groups=2, radix=4, min_width=8)}),
    Mechanism("simam", SimAM, "13_simam", "Yang et al., ICML 2021", inverted_residual="after depthwise",
              variants={"SimAM": lambda c, s: SimAM(), "SimAM λ=0.1": lambda c, s: SimAM(e_lambda=0.1)}),
    Mechanism("triplet", TripletAttention, "14_triplet_attention", "Misra et al., WACV 2021",
              variants={"TripletAttention": lambda c, s: TripletAttention(),
                        "TripletAttention no_spatial": lambda c, s: TripletAttention(no_spatial=True),
                        "TripletAttention k=3": lambda c, s: TripletAttention(kernel_size=3)}),
)

_BY_NAME = {m.name: m for m in MECHANISMS}
_BY_CLASS_NAME = {m.module.__name__: m for m in MECHANISMS}


def mechanism(name: str) -> Mechanism:
    """The mechanism called ``name``; a ValueError listing the names otherwise."""
    if name not in _BY_NAME:
        raise ValueError(f"attention must be one of {', '.join(_BY_NAME)}; got {name!r}")
    return _BY_NAME[name]


def placeable() -> tuple[str, ...]:
    """The names ``create_model`` can place in a backbone, in the book's order."""
    return tuple(m.name for m in MECHANISMS if m.placement is not None)


def mechanism_of(module: nn.Module) -> Mechanism | None:
    """The mechanism ``module`` is an instance of, or ``None``.

    Also recognises the same classes defined in a chapter's notebook (the code that
    ``make export`` copies into the package): same class name, an ``attention`` method.
    """
    for entry in MECHANISMS:
        if isinstance(module, entry.module):
            return entry
    entry = _BY_CLASS_NAME.get(type(module).__name__)
    if entry is not None and callable(getattr(module, "attention", None)):
        return entry
    return None


def ablation_of(module: nn.Module) -> str:
    """How :func:`attention_lib.analysis.ablate_attention` switches ``module`` off."""
    entry = mechanism_of(module)
    if entry is None:
        raise ValueError(f"{type(module).__name__} is not one of attention_lib's attention modules")
    return entry.ablation
