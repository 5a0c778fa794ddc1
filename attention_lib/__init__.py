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

Backbones with attention placed as in the papers come from :func:`create_model`
(``attention_lib.models``), whose :class:`AttentionRecorder` reads every module's weights
as :class:`AttentionMap` s (tensors with named dimensions); published ImageNet weights
from :func:`pretrained_model` (``attention_lib.pretrained``); what trained attention
does from ``attention_lib.trained``; training from ``python -m attention_lib.train``.
"""

from attention_lib.bam import BAM, BAMChannelBranch, BAMSpatialBranch
from attention_lib.cbam import CBAM, ChannelAttention, SpatialAttention
from attention_lib.efficient_channel_attention import ECA, SEVar1, SEVar2, SEVar3, eca_kernel_size
from attention_lib.gather_excite import GatherExcite
from attention_lib.models import AttentionMap, AttentionRecorder, create_model
from attention_lib.pretrained import pretrained_model
from attention_lib.selective_kernel import SelectiveKernel, SKBranch, same_padding
from attention_lib.squeeze_excitation import SE, bottleneck_width

__all__ = [
    "SE", "bottleneck_width",
    "SEVar1", "SEVar2", "SEVar3", "ECA", "eca_kernel_size",
    "ChannelAttention", "SpatialAttention", "CBAM",
    "BAMChannelBranch", "BAMSpatialBranch", "BAM",
    "GatherExcite",
    "SKBranch", "SelectiveKernel", "same_padding",
    "create_model", "AttentionMap", "AttentionRecorder", "pretrained_model",
]
__version__ = "0.1.0"
