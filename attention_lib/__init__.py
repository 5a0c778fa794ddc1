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
"""

from attention_lib.squeeze_excitation import SE, bottleneck_width

__all__ = ["SE", "bottleneck_width"]
__version__ = "0.1.0"
