# Hand-written support module (not generated from a notebook).
"""The sections every mechanism chapter has: trained attention, and a mini-ImageNet run.

* :func:`trained_attention` gives a :class:`TrainedAttention`: the chapter's published
  ImageNet network mapped onto our modules (:func:`attention_lib.weights.load_trained`),
  with one call each to draw its attention on a photo, compare its top-5 with the
  attention switched off, and repeat the SE paper's per-class measurement on Imagenette.
  Where the weights cannot be downloaded (offline, as in CI) or do not exist, every call
  does nothing and the section shows one box saying why.
* :func:`mini_imagenet_section` is the "Train it on a mini-ImageNet" section in one call:
  it checks the run's parameters, trains (on a GPU, or when asked; in smoke mode a tiny
  run that exercises the code and shows nothing), resumes after a disconnect, draws the
  run's learning curves and attention, shows a committed real run from ``book/results/``,
  or says that none is recorded, what the run costs and the command that makes it.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display
from torch import nn

from attention_lib.analysis import ablate_attention, photo_batch, pick_layers, predict_top_k
from attention_lib.checkpoint import load_model
from attention_lib.costs import model_flops
from attention_lib.evaluate import ImagenetteResult, evaluate_imagenette
from attention_lib.figures import plot_attention, plot_class_attention, plot_learning_curves, plot_spread_by_depth
from attention_lib.models import create_model
from attention_lib.provenance import weights_label
from attention_lib.recorder import AttentionRecorder
from attention_lib.toolkit.display import Callout, callout, table
from attention_lib.train import TrainConfig, notebook_config, train
from attention_lib.weights import load_trained, reason

__all__ = ["RESULTS", "IMAGENETTE_TRAIN_IMAGES", "show_attention", "top5_table", "top5_markdown",
           "imagenette_report", "TrainedAttention", "trained_attention", "no_published_weights", "should_train",
           "recorded_run", "mini_imagenet_section"]

#: Where real runs are committed (present in a checkout of the repository, not on Colab).
RESULTS = Path(__file__).resolve().parents[2] / "book" / "results"
#: Training images of torchvision's Imagenette (any size).
IMAGENETTE_TRAIN_IMAGES = 9469
#: The four photos of the top-5 tables.
TOP5_PHOTOS = ("chelsea", "coffee", "rocket", "astronaut")


# ----------------------------------------------------------------------------- trained attention

def show_attention(model: nn.Module, photo: str = "chelsea", layers: Sequence[str] | None = None,
                   count: int = 4, kinds: Sequence[str] | None = None):
    """Record a model's attention on one real photo and draw it with :func:`~attention_lib.figures.plot_attention`.

    Args:
        model: from :func:`~attention_lib.weights.load_trained` or :func:`~attention_lib.checkpoint.load_model`.
        photo: a scikit-image photo (:data:`attention_lib.photos.PHOTOS`).
        layers: names of the maps to draw (default: ``count`` maps spread over the depth).
        kinds: draw only maps of these kinds (e.g. ``("spatial",)`` for CBAM's spatial step).

    Returns:
        The figure, or ``None`` for the model of a smoke run (it is not drawn: not a result).
    """
    batch, crops = photo_batch(model, [photo])
    with torch.no_grad(), AttentionRecorder(model) as recorder:
        model(batch.to(next(model.parameters()).device))
    recorded = {name: item for name, item in recorder.named.items() if kinds is None or item.kind in kinds}
    if not recorded:
        raise ValueError(f"the model records no attention map of the kinds {kinds}")
    maps = {name: recorded[name] for name in layers} if layers else pick_layers(recorded, count)
    if (getattr(model, "pretrained_cfg", None) or {}).get("smoke"):
        return None  # the weights of a smoke run are not a result: recorded (the code ran), never drawn
    return plot_attention(maps, image=crops[0], title=f"{photo}: {weights_label(model)}")


def _top5(model: nn.Module, photos: Sequence[str]) -> tuple[list, list]:
    batch, _ = photo_batch(model, photos)
    batch = batch.to(next(model.parameters()).device)
    before = predict_top_k(model, batch)
    with ablate_attention(model):
        after = predict_top_k(model, batch)
    return before, after


def top5_markdown(model: nn.Module, photos: Sequence[str] = TOP5_PHOTOS) -> str:
    """A Markdown table of the top-5 ImageNet classes of real photos, with the attention
    working and switched off (:func:`~attention_lib.analysis.ablate_attention`)."""
    before, after = _top5(model, photos)

    def cell(row: list[tuple[str, float]]) -> str:
        return "<br>".join(f"{name} ({p:.1%})" for name, p in row)

    lines = [f"Top-5 of {weights_label(model)}", "",
             "| photo | attention on | attention switched off |", "|---|---|---|"]
    lines += [f"| {photo} | {cell(b)} | {cell(a)} |" for photo, b, a in zip(photos, before, after)]
    return "\n".join(lines)


def top5_table(model: nn.Module, photos: Sequence[str] = TOP5_PHOTOS):
    """:func:`top5_markdown` as an HTML table."""
    before, after = _top5(model, photos)

    def cell(row: list[tuple[str, float]]) -> str:
        return "; ".join(f"{name} ({p:.1%})" for name, p in row)

    frame = pd.DataFrame({"photo": list(photos), "top-5, attention on": [cell(b) for b in before],
                          "top-5, attention switched off": [cell(a) for a in after]})
    return table(frame, f"Top-5 ImageNet classes of {weights_label(model)}, with every attention module working "
                        "and switched off (our experiment, not a paper's).")


def imagenette_report(model: nn.Module, root: str | Path = "data", download: bool = True,
                      per_class: int | None = None, progress: bool = True) -> ImagenetteResult | None:
    """:func:`~attention_lib.evaluate.evaluate_imagenette`, printing the top-1 with its provenance,
    or ``None`` (said why) when Imagenette is neither on disk nor downloadable."""
    try:
        result = evaluate_imagenette(model, root, download=download, per_class=per_class, progress=progress)
    except (OSError, RuntimeError) as error:  # no folder, or the download failed
        print(f"Imagenette's validation split is not available here, so the per-class statistics are "
              f"skipped.\nReason: {type(error).__name__}: {error}")
        return None
    subset = f"the first {per_class} images of each class" if per_class else "all images"
    print(f"{weights_label(model)}\ntop-1 on Imagenette's validation split ({subset}, {result.images} images): "
          f"{result.top1:.1%} among ImageNet's 1000 classes (chance: 0.1%), {result.top1_among_10:.1%} among "
          "Imagenette's 10")
    return result


class TrainedAttention:
    """A published ImageNet network with the chapter's mechanism, or the reason there is none.

    Every method does nothing (returns ``None``) when :attr:`model` is ``None``, so a
    chapter's cells need no ``if``; displaying the object shows what was loaded, or one
    box saying why nothing was.
    """

    def __init__(self, name: str, model: nn.Module | None, message: str) -> None:
        self.name, self.model, self.message = name, model, message

    @property
    def available(self) -> bool:
        return self.model is not None

    def _repr_html_(self) -> str:
        if self.available:
            return f"<p>{self.message}</p>"
        return callout("note", "Published weights not loaded here", self.message)._repr_html_()

    def __repr__(self) -> str:
        return self.message

    def show(self, photo: str = "chelsea", **options: Any) -> None:
        """Draw the attention of four modules (spread over the depth) for one photo; see :func:`show_attention`."""
        if self.model is not None:
            show_attention(self.model, photo, **options)
            plt.show()

    def top5(self, photos: Sequence[str] = TOP5_PHOTOS):
        """Top-5 on real photos with the attention working and switched off, as a table."""
        return None if self.model is None else top5_table(self.model, photos)

    def per_class(self, root: str | Path = "data", download: bool = True, per_class: int | None = None,
                  progress: bool = True) -> ImagenetteResult | None:
        """Top-1 on Imagenette's validation photos, and the attention weights averaged per class:
        heat maps of four modules and the spread across classes for every module."""
        if self.model is None:
            return None
        result = imagenette_report(self.model, root, download=download, per_class=per_class, progress=progress)
        if result is not None and result.per_class:
            label = weights_label(self.model)
            # Branch weights (SK) are (classes, branches, channels): show the last branch's share.
            tables = {name: table[:, -1] if table.dim() == 3 else table for name, table in result.per_class.items()}
            what = "weight of the last branch" if any(t.dim() == 3 for t in result.per_class.values()) else "weight"
            plot_class_attention(pick_layers(tables), result.class_names,
                                 title=f"Mean attention {what} per Imagenette class: {label}")
            plot_spread_by_depth(tables, title=f"How much each module's weights depend on the class\n{label}")
            plt.show()
        return result


def trained_attention(name: str, weights: str = "auto") -> TrainedAttention:
    """Load the published network ``name`` (a key of :data:`attention_lib.weights.PRETRAINED`)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        model = load_trained(name, weights=weights)
    message = " ".join(printed.getvalue().split()) or f"{name} not loaded."
    return TrainedAttention(name, model, message)


def no_published_weights(attention: str, trained_here: str = "its digits networks and the mini-ImageNet run below"
                         ) -> Callout:
    """The box of a chapter whose mechanism has no published ImageNet weights, with the reason.

    Args:
        attention: the mechanism's name in ``create_model``.
        trained_here: where the chapter's trained maps come from instead.
    """
    return callout("note", "No published ImageNet weights",
                   reason(attention) + f"\n\nThe trained maps of this chapter come from {trained_here}.")


# ----------------------------------------------------------------------------- the mini-ImageNet run

def should_train(config: TrainConfig, run_training: bool | None = None) -> bool:
    """Whether a notebook should start ``config``'s run.

    ``run_training=None`` (the default) trains in smoke mode or when a GPU is present;
    ``True`` forces a run (slow on a CPU), ``False`` skips it.
    """
    if run_training is None:
        return config.smoke or torch.cuda.is_available()
    return bool(run_training)


def recorded_run(arch: str, attention: str | None, results_dir: Path = RESULTS) -> dict[str, Any] | None:
    """The committed metrics of a finished real run of ``arch`` with ``attention``, or ``None``."""
    path = Path(results_dir) / f"{arch}-{attention or 'none'}.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    return metrics if metrics.get("finished") and not metrics.get("smoke") else None


def _run_cost(config: TrainConfig) -> str:
    """The arithmetic of a run, computed (not measured): forward FLOPs per image x 3 (forward and
    backward) x training images x epochs."""
    model = create_model(config.arch, config.attention, num_classes=10, image_size=config.image_size,
                         **config.attention_kwargs)
    total = model_flops(model, config.image_size) * 3 * IMAGENETTE_TRAIN_IMAGES * config.epochs
    mantissa, exponent = f"{total:.1e}".split("e")
    superscript = str(int(exponent)).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{mantissa} × 10{superscript}"


def _run_table(metrics: dict[str, Any]):
    config, last = metrics["config"], metrics["epochs"][-1]
    hardware = metrics["hardware"].get("gpu", metrics["hardware"]["cpu"])
    frame = pd.DataFrame([{"run": f"{config['arch']} + {config['attention'] or 'no attention'}",
                           "epochs": last["epoch"], "top-1": last["top1"], "top-5": last["top5"],
                           "images/s": last["images_per_second"], "hardware": hardware,
                           "date": metrics["started"][:10]}])
    command = " ".join(metrics["command"][1:])
    return table(frame, f"Our run on {config['dataset']}, validation accuracy after the last epoch "
                        f"(command: {command}; commit {str(metrics.get('commit'))[:10]}).",
                 formats={"top-1": "{:.4f}", "top-5": "{:.4f}", "images/s": "{:.0f}"})


def mini_imagenet_section(attention: str, *, smoke: bool, photo: str = "chelsea", training: bool | None = None,
                          kinds: Sequence[str] | None = None, results_dir: Path = RESULTS,
                          **options: Any) -> dict[str, Any] | None:
    """The chapter's "Train it on a mini-ImageNet" section: run, resume, show, or say why not.

    Args:
        attention: the chapter's mechanism (a name of :data:`attention_lib.models.ATTENTIONS`).
        smoke: smoke mode (CI and the book build): a tiny run on generated data that
            exercises the code; nothing of it is shown.
        photo: the photo the trained attention is drawn on.
        training: ``None`` trains on a GPU (and in smoke mode), ``True`` forces it, ``False`` skips.
        kinds: which kinds of attention maps to draw (default: all).
        results_dir: where committed real runs are looked for.
        **options: :class:`~attention_lib.train.TrainConfig` fields (the chapter's ``run_*``
            parameters); the others keep the library's defaults.

    Returns:
        The metrics of the run trained now (``None`` when none was).
    """
    config = notebook_config(smoke=False, attention=attention, **options)  # every parameter checked first
    metrics = None
    if smoke:
        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet):
            smoke_config = notebook_config(smoke=True, attention=attention, **options)
            if should_train(smoke_config, training):
                train(smoke_config)
                show_attention(load_model(smoke_config.output_dir), photo, kinds=kinds)  # the code path; draws nothing
        shutil.rmtree(Path(smoke_config.data_root).parent, ignore_errors=True)
    elif should_train(config, training):
        metrics = train(config)
        display(_run_table(metrics))
        plot_learning_curves(metrics)
        plt.show()
        show_attention(load_model(config.output_dir), photo, kinds=kinds)
        plt.show()
        return metrics
    recorded = recorded_run(config.arch, attention, results_dir)
    if recorded is not None:
        display(_run_table(recorded))
        plot_learning_curves(recorded)
        plt.show()
        return metrics
    flops = _run_cost(config)
    display(callout(
        "tip", "Run it on a GPU",
        f"No mini-ImageNet run of {config.arch} with {attention} is recorded in this book yet. "
        f"{config.epochs} epochs on Imagenette ({IMAGENETTE_TRAIN_IMAGES:,} training images at {config.image_size} "
        f"pixels) are about {flops} floating-point operations: a job for a GPU. Open this "
        "chapter in Colab with a GPU runtime and run it: this section trains the network, resumes after a "
        "disconnect, and draws the learning curves and the trained attention here. From a terminal:"
        f"\n\n`python -m attention_lib.train --arch {config.arch} --attention {attention} "
        f"--dataset {config.dataset} --epochs {config.epochs} --output-dir {config.output_dir}`"))
    return metrics
