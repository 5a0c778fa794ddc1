# Hand-written support module (not generated from a notebook).
"""The training checkpoint: the one owner of its format.

``python -m attention_lib.train`` writes ``checkpoint.pt`` into its output folder after
every epoch; a rerun of the same command resumes from it, and the chapters read the
trained model out of it. Everything that writes or reads that file goes through this
module:

* :func:`save` writes it atomically (a run killed while saving leaves the previous
  checkpoint intact): the model, optimiser, gradient scaler and random-number states,
  the finished epochs and their metrics, the run's configuration, the number of classes
  and the format version.
* :func:`load` reads it back, refusing a damaged, empty, truncated or foreign file with
  a :class:`CheckpointError` that names the file and the two ways out (delete it, or
  start afresh with ``--no-resume``).
* :func:`config_changes` lists how a new configuration differs from the stored one;
  :func:`check_resume` refuses a resume whose configuration changed in anything that
  changes what the run computes (``epochs`` may grow; see :data:`MAY_CHANGE_ON_RESUME`).
* :func:`load_model` rebuilds the trained network for analysis, with its number of
  classes read from the file, never guessed.

The file holds only tensors and plain Python values, so it is read with
``torch.load(..., weights_only=True)``: loading a checkpoint never runs code from it.
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy
import torch
from torch import nn

from attention_lib.data import IMAGENET_MEAN, IMAGENET_STD
from attention_lib.models import create_model

__all__ = ["FILENAME", "FORMAT", "VERSION", "MAY_CHANGE_ON_RESUME", "CheckpointError", "ResumeError",
           "Checkpoint", "checkpoint_path", "save", "load", "config_changes", "check_resume", "rng_state",
           "set_rng_state", "load_model"]

#: The file a run writes into its output folder.
FILENAME = "checkpoint.pt"
#: What the ``format`` entry of every checkpoint says, and the current format version.
FORMAT = "attention_lib.train checkpoint"
VERSION = 2

#: Configuration fields that say where and how a run executes, not what it computes: a
#: resume may change them. ``epochs`` may grow (the run continues; the learning-rate
#: schedule then stretches to the new length), but not shrink below the epochs done.
MAY_CHANGE_ON_RESUME = frozenset({"epochs", "output_dir", "data_root", "download", "num_workers", "progress",
                                  "resume", "device", "compile", "allow_config_change"})

_KEYS = ("format", "version", "epoch", "num_classes", "config", "history", "model", "optimizer", "scaler", "rng")


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged, or not a checkpoint of attention_lib.train."""


class ResumeError(ValueError):
    """A resume was asked for with a configuration that differs from the checkpoint's."""


@dataclass
class Checkpoint:
    """The contents of one checkpoint file.

    Attributes:
        path: the file it was read from (or written to).
        epoch: how many epochs are finished.
        num_classes: the size of the model's classifier.
        config: the run's configuration (the fields of ``attention_lib.train.TrainConfig``).
        history: one metrics record per finished epoch.
        model: the model's state dict.
        optimizer, scaler: their state dicts (for resuming).
        rng: the random-number states at the end of the last finished epoch (:func:`rng_state`).
        version: the format version the file was written with.
    """

    path: Path
    epoch: int
    num_classes: int
    config: dict[str, Any]
    history: list[dict[str, Any]]
    model: dict[str, torch.Tensor] = field(repr=False)
    optimizer: dict[str, Any] = field(repr=False)
    scaler: dict[str, Any] = field(repr=False)
    rng: dict[str, Any] = field(repr=False)
    version: int = VERSION

    @property
    def finished(self) -> bool:
        """Whether every epoch the stored configuration asked for is done."""
        return self.epoch >= int(self.config.get("epochs", 0))


def checkpoint_path(path: str | os.PathLike) -> Path:
    """The checkpoint file itself for ``path``: a checkpoint file, or a run's output folder."""
    path = Path(path).expanduser()
    return path / FILENAME if path.is_dir() else path


def _way_out(path: Path) -> str:
    return (f"Delete {path} to start the run afresh, or pass --no-resume (resume=False in a notebook) to "
            "train from scratch and overwrite it.")


def save(path: str | os.PathLike, *, model: Mapping[str, torch.Tensor], optimizer: Mapping[str, Any],
         scaler: Mapping[str, Any], rng: Mapping[str, Any], epoch: int, num_classes: int,
         config: Mapping[str, Any], history: list[dict[str, Any]]) -> Path:
    """Write a checkpoint atomically: to a temporary file, then renamed over ``path``.

    Returns the path written. A process killed while saving leaves the previous file
    (or none) in place, never a half-written one.
    """
    path = checkpoint_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "version": VERSION, "epoch": int(epoch), "num_classes": int(num_classes),
             "config": dict(config), "history": list(history), "model": dict(model), "optimizer": dict(optimizer),
             "scaler": dict(scaler), "rng": dict(rng)}
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)
    return path


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and check a checkpoint written by :func:`save`.

    Args:
        path: the checkpoint file, or a run's output folder that holds one.
        map_location: where the tensors go (as for ``torch.load``).

    Raises:
        FileNotFoundError: there is no checkpoint at ``path``.
        CheckpointError: the file is empty, truncated, not a checkpoint at all, a checkpoint
            of another program, or of an older format; the message names the file and
            says how to go on.
    """
    path = checkpoint_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no file at {path}; expected the {FILENAME} that "
                                "python -m attention_lib.train writes into its output_dir")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes). {_way_out(path)}")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of a damaged file; we say more
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many kinds for a damaged file; all mean the same
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {path} cannot be read: it is damaged, truncated or not a PyTorch "
                              f"checkpoint ({type(error).__name__}: {reason}). {_way_out(path)}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        what = (f"a {type(state).__name__}" if not isinstance(state, dict)
                else f"a dict with the keys {sorted(map(str, state))[:8]}")
        raise CheckpointError(f"checkpoint {path} is not a checkpoint of attention_lib.train: it holds {what}, "
                              f"not the format {FORMAT!r}. {_way_out(path)}")
    if state.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {state.get('version')!r}; this attention_lib "
                              f"reads version {VERSION}. {_way_out(path)}")
    missing = [key for key in _KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the entries {missing}. {_way_out(path)}")
    return Checkpoint(path=path, epoch=state["epoch"], num_classes=state["num_classes"], config=state["config"],
                      history=state["history"], model=state["model"], optimizer=state["optimizer"],
                      scaler=state["scaler"], rng=state["rng"], version=state["version"])


def config_changes(stored: Mapping[str, Any], current: Mapping[str, Any],
                   may_change: frozenset[str] = MAY_CHANGE_ON_RESUME) -> list[str]:
    """One line per field that differs between two configurations, except ``may_change``."""
    changes = []
    for name in sorted(set(stored) | set(current)):
        if name in may_change:
            continue
        before, after = stored.get(name, "<absent>"), current.get(name, "<absent>")
        if before != after:
            changes.append(f"{name}: {before!r} in the checkpoint, {after!r} now")
    return changes


def check_resume(checkpoint: Checkpoint, current: Mapping[str, Any], allow_config_change: bool = False) -> None:
    """Refuse to resume ``checkpoint`` with the configuration ``current`` when that would mix two runs.

    Raises:
        ResumeError: a field outside :data:`MAY_CHANGE_ON_RESUME` differs (unless
            ``allow_config_change``), or ``current`` asks for fewer epochs than are done.
    """
    changes = config_changes(checkpoint.config, current)
    if changes and not allow_config_change:
        raise ResumeError(
            f"cannot resume from {checkpoint.path}: the configuration differs from the one it was trained with:\n  "
            + "\n  ".join(changes)
            + "\nUse the same settings to resume, another output_dir (or --no-resume) to start a new run, or "
              "--allow-config-change to continue this one with the new settings anyway.")
    epochs = current.get("epochs")
    if isinstance(epochs, int) and epochs < checkpoint.epoch:
        raise ResumeError(f"cannot resume from {checkpoint.path}: it has {checkpoint.epoch} finished epochs, "
                          f"more than epochs={epochs}. Ask for at least {checkpoint.epoch} epochs, or use another "
                          "output_dir (or --no-resume) for a shorter run.")


def rng_state() -> dict[str, Any]:
    """The random-number states that a resumed run must restore (tensors and plain values only)."""
    version, keys, position = random.getstate()[:3]
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": [version, list(keys), position]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    name, numpy_keys, numpy_position, has_gauss, cached = numpy.random.get_state()
    state["numpy"] = [name, [int(k) for k in numpy_keys], int(numpy_position), int(has_gauss), float(cached)]
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    version, keys, position = state["python"]
    random.setstate((version, tuple(keys), position))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        name, keys, position, has_gauss, cached = state["numpy"]
        numpy.random.set_state((name, numpy.array(keys, dtype=numpy.uint32), position, has_gauss, cached))


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """The trained network of an ``attention_lib.train`` run, from its checkpoint, in eval mode.

    ``model.run_info`` holds the run's configuration, finished epochs and last validation
    top-1; ``model.pretrained_cfg`` the preprocessing it was evaluated with.

    Raises:
        FileNotFoundError, CheckpointError: as :func:`load`.
    """
    checkpoint = load(path, map_location=map_location)
    config = checkpoint.config
    model = create_model(config["arch"], config["attention"], num_classes=checkpoint.num_classes,
                         image_size=config["image_size"], **config["attention_kwargs"])
    model.load_state_dict(checkpoint.model)
    history = checkpoint.history
    smoke = bool(config.get("smoke"))
    model.run_info = {"config": config, "epochs": len(history), "smoke": smoke,
                      "top1": history[-1]["top1"] if history else None, "path": str(checkpoint.path),
                      "num_classes": checkpoint.num_classes}
    size = config["image_size"]
    model.pretrained_cfg = {"name": f"{config['arch']}-{config['attention']} ({checkpoint.path})",
                            "source": "checkpoint", "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                            "input_size": (3, size, size), "crop_pct": 7 / 8, "interpolation": "bilinear",
                            "random": False, "smoke": smoke}
    return model.eval()
