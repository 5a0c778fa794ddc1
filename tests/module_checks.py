"""Checks shared by the tests of every attention module."""

import torch


def assert_same_in_channels_last(module: torch.nn.Module, x: torch.Tensor, atol: float) -> None:
    """``module`` gives the same result on a channels-last copy of ``x``, and keeps that layout."""
    y = module(x)
    y_cl = module(x.to(memory_format=torch.channels_last))
    assert torch.allclose(y, y_cl, atol=atol)
    assert y_cl.is_contiguous(memory_format=torch.channels_last)
