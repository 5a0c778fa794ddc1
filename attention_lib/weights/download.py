# Hand-written support module (not generated from a notebook).
"""Download published weights (timm, torchvision), use a cached copy, fail fast offline.

:func:`fetch_published_state_dict` is the only function of the library that touches the
network for weights. It reads a cached copy without any network access when an earlier
download left one; otherwise it checks that the host can be reached (so that an offline
machine fails in milliseconds, not after a minute of retries) and downloads through timm
or torchvision. Whatever the downloads print goes to stdout (:func:`output_to_stdout`):
in a book build, anything on stderr is a warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from attention_lib.weights.registry import PretrainedEntry, import_timm, parse, torchvision_weights

__all__ = ["published_model", "fetch_published_state_dict", "host_reachable", "output_to_stdout"]

_DOWNLOAD_LOGGERS = ("huggingface_hub", "timm", "torch.hub", "torchvision")


@contextlib.contextmanager
def output_to_stdout() -> Iterator[None]:
    """Send what downloads print (progress bars, warnings, the libraries' log messages) to
    stdout while the block runs. In a book build, anything on stderr is a Sphinx warning,
    and huggingface_hub logs through a handler that holds on to the original stderr."""

    def show_on_stdout(message, category, filename, lineno, file=None, line=None) -> None:
        sys.stdout.write(warnings.formatwarning(message, category, filename, lineno, line))

    saved = []
    for name in _DOWNLOAD_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate))
        logger.handlers = [logging.StreamHandler(sys.stdout)]
        logger.propagate = False
    try:
        with contextlib.redirect_stderr(sys.stdout), warnings.catch_warnings():
            warnings.showwarning = show_on_stdout
            yield
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers, logger.propagate = handlers, propagate


def published_model(name: str, pretrained: bool = False) -> nn.Module:
    """The published architecture itself (timm's or torchvision's model).

    With ``pretrained=False`` (the default) it is randomly initialised and nothing is
    downloaded: the tests use it to prove the mapping. With ``pretrained=True`` the
    weights are downloaded (see :func:`fetch_published_state_dict` for the errors).
    """
    entry, tag = parse(name)
    model = _published_architecture(entry)
    if pretrained:
        model.load_state_dict(fetch_published_state_dict(f"{entry.name}.{tag}"))
    return model


def _published_architecture(entry: PretrainedEntry) -> nn.Module:
    if entry.source == "timm":
        return import_timm().create_model(entry.name, pretrained=False)
    return torchvision.models.get_model(entry.name, weights=None)


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "could not download" (OSError covers URLError, timeouts,
    connection errors, requests' errors and huggingface_hub's LocalEntryNotFoundError)."""
    errors: list[type[BaseException]] = [OSError]
    try:
        import httpx  # what huggingface_hub downloads with (optional: timm's dependency)
        errors.append(httpx.HTTPError)
    except ImportError:  # pragma: no cover
        pass
    try:
        from huggingface_hub.errors import HfHubHTTPError
        errors.append(HfHubHTTPError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _fetch_timm(model_name: str, file: str | None = None) -> dict[str, torch.Tensor]:
    """timm's ``model_name`` (``"base.tag"``) with its published weights, as a state dict:
    downloaded, or read from ``file`` (a cached copy) without touching the network."""
    options = {"pretrained_cfg_overlay": {"file": file}} if file else {}
    return import_timm().create_model(model_name, pretrained=True, **options).state_dict()


def _fetch_torchvision(weights) -> dict[str, torch.Tensor]:
    """Download a torchvision weights enum member's state dict (torch hub's cache first)."""
    return weights.get_state_dict(progress=True, check_hash=True)


def _cached_file(entry: PretrainedEntry, tag: str) -> str | None:
    """The local copy of the published weights, when an earlier download left one."""
    if entry.source == "torchvision":
        url = torchvision_weights(entry, tag).url
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
        return str(path) if path.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache  # optional: timm's dependency
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return None
    hub_id = import_timm().models.get_pretrained_cfg(f"{entry.name}.{tag}").hf_hub_id
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename)
        if isinstance(found, str):
            return found
    return None


def host_reachable(host: str, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to ``host``:443 opens (assumed yes behind a proxy).

    Checked before a download so that an offline machine fails in milliseconds, instead
    of waiting for the download libraries' retries (about a minute for the hub)."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


_HOSTS = {"timm": "huggingface.co", "torchvision": "download.pytorch.org"}


def fetch_published_state_dict(name: str) -> dict[str, torch.Tensor]:
    """Download the published weights of ``name`` (``"base"`` or ``"base.tag"``).

    The only function here that touches the network. Downloads are cached by timm
    (Hugging Face hub cache) or torchvision (``$TORCH_HOME``); a cached copy is used
    without any network access.

    Raises:
        RuntimeError: the weights could not be downloaded (offline, blocked, server
            error); the message names the model and says how to proceed.
    """
    entry, tag = parse(name)
    full = f"{entry.name}.{tag}"
    host = _HOSTS[entry.source]
    where = f"{host} (through timm)" if entry.source == "timm" else host

    def failure(reason: str) -> RuntimeError:
        return RuntimeError(
            f"the pretrained weights of {full!r} ({entry.source}) could not be downloaded from {where}: "
            f"{reason}. Downloading needs an internet connection the first time (the file is cached "
            f"afterwards). Offline, build the model with attention_lib.weights.build_model({entry.name!r}) "
            f"and load a state dict you already have with load_published_state_dict(model, {entry.name!r}, "
            f"state_dict).")

    cached = _cached_file(entry, tag)
    if cached is None and not host_reachable(host):
        raise failure(f"cannot connect to {host}")
    try:
        if entry.source == "timm":
            return _fetch_timm(full, file=cached)
        return _fetch_torchvision(torchvision_weights(entry, tag))
    except _network_errors() as error:
        raise failure(f"{type(error).__name__}: {error}") from error

