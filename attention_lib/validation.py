# Hand-written support module (not generated from a notebook).
"""Argument and input checks shared by every attention module.

Each check raises an error whose message names the offending argument and says
what was expected, so a wrong channel count or a bad hyperparameter is caught
where the module is built or called rather than deep inside a convolution.
"""

from __future__ import annotations

import numbers

import torch

__all__ = ["check_int", "check_bool", "check_feature_map", "check_batch_statistics", "broadcasts_to"]


def check_int(value: object, name: str, minimum: int | None = 1) -> int:
    """Return ``value`` if it is an integer no smaller than ``minimum``.

    Args:
        value: the argument to check.
        name: the argument's name, used in the error message.
        minimum: smallest accepted value, or ``None`` for no bound.

    Raises:
        TypeError: ``value`` is not an integer (``bool`` and ``float`` are refused).
        ValueError: ``value`` is smaller than ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_bool(value: object, name: str) -> bool:
    """Return ``value`` if it is a ``bool``; raise TypeError naming ``name`` otherwise."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def broadcasts_to(shape: tuple[int, ...], *shapes: tuple[int, ...]) -> bool:
    """Whether ``shapes`` broadcast together with ``shape`` to ``shape`` itself (so nothing grows)."""
    try:
        return torch.broadcast_shapes(shape, *shapes) == shape
    except RuntimeError:  # shapes that do not broadcast at all
        return False


def check_feature_map(x: torch.Tensor, channels: int, module: str) -> None:
    """Check that ``x`` is a 4-D ``(batch, channels, height, width)`` tensor.

    Args:
        x: the module's input.
        channels: the channel count the module was built for.
        module: the module's name, used in the error message.

    Raises:
        TypeError: ``x`` is not a tensor.
        ValueError: ``x`` is not 4-D or has another number of channels.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{module}: input x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"{module}: input x must be 4-D (batch, channels, height, width), "
            f"got {x.dim()}-D with shape {tuple(x.shape)}"
        )
    if x.shape[1] != channels:
        raise ValueError(
            f"{module}: input x must have {channels} channels (the module's `channels`), "
            f"got {x.shape[1]} in shape {tuple(x.shape)}"
        )


def check_batch_statistics(training: bool, x: torch.Tensor, values: int, module: str) -> None:
    """Refuse a training-mode batch norm that would see one value per channel.

    Args:
        training: whether the module is in training mode.
        x: the module's input (for the message).
        values: how many values per channel the batch norm would average over
            (batch size times the pixels of the map it normalises).
        module: the module's name, used in the message.

    Raises:
        ValueError: ``training`` and ``values == 1``: batch statistics of one value are
            undefined, and PyTorch's own error would not name the module.
    """
    if training and values == 1:
        raise ValueError(
            f"{module}: batch norm in training mode needs more than one value per channel, "
            f"got input of shape {tuple(x.shape)}; use a batch of at least 2 images "
            "or call .eval() to use the running statistics"
        )
