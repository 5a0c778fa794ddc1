# Hand-written support module (not generated from a notebook).
"""Where a number comes from: the machine, the code and the date of a measurement.

Every result the book shows (a training run, a benchmark, a top-1 of published weights)
is stored with a :func:`record` of the command, hardware, library versions, commit and
date that produced it, so that any figure can be traced to the run that made it.
:func:`weights_label` and :func:`is_result` say where a *model's* weights come from, and
whether its outputs may be presented as findings at all.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

__all__ = ["cpu_model", "hardware", "commit", "now", "record", "weights_label", "is_result"]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device | str | None = None) -> dict[str, Any]:
    """The machine a measurement ran on: CPU model, core count, threads, and the GPU if used."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    info: dict[str, Any] = {"device": str(device), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                            "torch_threads": torch.get_num_threads()}
    if device.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def commit() -> str | None:
    """The git commit of this checkout (``None`` outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def now() -> str:
    """The current UTC time, ISO 8601, to the second."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def record(command: list[str] | None = None, device: torch.device | str | None = None) -> dict[str, Any]:
    """Command, hardware, versions, commit and date: what every stored result carries."""
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "torchvision": torchvision.__version__}
    return {"command": command if command is not None else [sys.executable, *sys.argv],
            "hardware": hardware(device), "versions": versions, "commit": commit(), "date": now()}


def weights_label(model: nn.Module) -> str:
    """Where a model's weights come from, for titles and printed results."""
    cfg = getattr(model, "pretrained_cfg", None)
    if cfg is None:
        return "untrained model (random initialisation): not a result"
    if cfg.get("random"):
        return f"{cfg['name']} architecture with RANDOM WEIGHTS (code-path test): not a result"
    if cfg.get("source") == "checkpoint":
        info = model.run_info
        smoke = " - SMOKE RUN, not a result" if info["smoke"] else ""
        return (f"{cfg['name']}, trained by attention_lib.train on {info['config']['dataset']} "
                f"for {info['epochs']} epoch(s){smoke}")
    return f"{cfg['name']} ({cfg['source']}, ImageNet-1k weights)"


def is_result(model: nn.Module) -> bool:
    """Whether a model's outputs may be shown as findings (real trained weights, no smoke run)."""
    cfg = getattr(model, "pretrained_cfg", None)
    return bool(cfg) and not cfg.get("random") and not cfg.get("smoke")
