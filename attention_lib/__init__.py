# Hand-written support module (not generated from a notebook).
"""attention_lib: the attention mechanisms of the book *Attention in Vision*.

Every mechanism lives in the module named after its chapter, generated from that
chapter's notebook (``notebooks/01_squeeze_excitation.ipynb`` ->
``attention_lib/squeeze_excitation.py``); the names below are re-exported for
convenience::

    >>> import torch
    >>> from attention_lib import SE
    >>> SE(64)(torch.randn(2, 64, 8, 8)).shape
    torch.Size([2, 64, 8, 8])

The rest of the library, by what each part does:

* :mod:`~attention_lib.primitives`: the speed layer the mechanisms share (pooling and
  rescaling without full-size temporaries, the bottleneck width);
* :mod:`~attention_lib.mechanisms`: the registry of every mechanism;
* :mod:`~attention_lib.models`: :func:`create_model`, backbones with attention placed as
  the papers place it; :mod:`~attention_lib.recorder`: :class:`AttentionRecorder`;
  :mod:`~attention_lib.costs`: parameters, FLOPs and time;
* :mod:`~attention_lib.data`, :mod:`~attention_lib.train`, :mod:`~attention_lib.checkpoint`:
  mini-ImageNet datasets, training (``python -m attention_lib.train``) and its checkpoint;
* :mod:`~attention_lib.weights`: published ImageNet weights mapped onto our modules
  (:func:`pretrained_model`);
* :mod:`~attention_lib.analysis`, :mod:`~attention_lib.evaluate`,
  :mod:`~attention_lib.figures`: what trained attention does, the Imagenette check of
  published weights, and plots;
* :mod:`~attention_lib.toolkit`: what every chapter calls instead of copying.

``import attention_lib`` loads torch and the mechanisms only; the backbones (torchvision)
and the weights registry are imported the first time one of their names is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from attention_lib.bam import BAM, BAMChannelBranch, BAMSpatialBranch
from attention_lib.cbam import CBAM, ChannelAttention, SpatialAttention
from attention_lib.efficient_channel_attention import ECA, SEVar1, SEVar2, SEVar3, eca_kernel_size
from attention_lib.gather_excite import GatherExcite
from attention_lib.primitives import bottleneck_width
from attention_lib.selective_kernel import SelectiveKernel, SKBranch, same_padding
from attention_lib.squeeze_excitation import SE

# Part II, "Beyond the article".
from attention_lib.non_local import NonLocal
from attention_lib.global_context import GlobalContext
from attention_lib.coordinate_attention import CoordinateAttention
from attention_lib.split_attention import SplitAttention
from attention_lib.simam import SimAM
from attention_lib.triplet_attention import TripletAttention, TripletGate

# Names whose modules import torchvision or the weights registry: imported on first use.
_LAZY = {
    "create_model": "attention_lib.models",
    "AttentionMap": "attention_lib.recorder",
    "AttentionRecorder": "attention_lib.recorder",
    "pretrained_model": "attention_lib.weights",
}

__all__ = [
    "SE", "bottleneck_width",
    "SEVar1", "SEVar2", "SEVar3", "ECA", "eca_kernel_size",
    "ChannelAttention", "SpatialAttention", "CBAM",
    "BAMChannelBranch", "BAMSpatialBranch", "BAM",
    "GatherExcite",
    "SKBranch", "SelectiveKernel", "same_padding",
    "NonLocal", "GlobalContext", "CoordinateAttention", "SplitAttention", "SimAM", "TripletAttention", "TripletGate",
    *_LAZY,
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'attention_lib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
