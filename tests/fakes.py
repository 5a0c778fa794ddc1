"""Small stand-ins shared by the tests: a classifier with a known answer, and Imagenette on disk."""

import torch
from torch import nn


class ConstantClassifier(nn.Module):
    """Always predicts ImageNet class ``index`` (and records nothing)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index
        self.pretrained_cfg = {"name": "constant", "source": "test", "mean": (0.5,) * 3, "std": (0.5,) * 3,
                               "input_size": (3, 32, 32), "crop_pct": 0.875, "interpolation": "bilinear"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 1000)
        logits[:, self.index] = 1.0
        return logits
