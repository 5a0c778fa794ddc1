# Hand-written support module (not generated from a notebook).
"""Our model with published ImageNet weights: :func:`pretrained_model` and :func:`load_trained`.

:func:`pretrained_model` downloads (or reads from the cache) the published weights of a
name, builds our model for it and loads the weights through the checked mapping; it
raises when anything fails. :func:`load_trained` is the chapters' entry point: it returns
``None`` with a sentence saying why when the weights cannot be downloaded (offline, as in
CI), so a section shows nothing rather than something misleading, and it can map a
*randomly initialised* published architecture instead (``weights="random"``), which runs
every line of a section offline and labels every output "not a result".
"""

from __future__ import annotations

from torch import nn

from attention_lib.provenance import weights_label
from attention_lib.weights.backbone import build_model
from attention_lib.weights.download import fetch_published_state_dict, output_to_stdout, published_model
from attention_lib.weights.mapping import load_published_state_dict
from attention_lib.weights.registry import data_config, parse

__all__ = ["WEIGHT_MODES", "pretrained_model", "load_trained"]

#: ``load_trained(weights=...)``: download the published weights when possible, skip, or
#: map a randomly initialised published model (code-path tests only: never a result).
WEIGHT_MODES = ("auto", "off", "random")


def pretrained_model(name: str) -> nn.Module:
    """Our model carrying the published ImageNet weights of ``name``, in eval mode.

    Downloads the published weights (timm or torchvision; cached after the first time),
    builds :func:`~attention_lib.weights.build_model` ``(name)`` and loads the weights
    through the checked mapping. ``model.pretrained_cfg`` holds
    :func:`~attention_lib.weights.data_config` (the preprocessing the weights expect) and
    the entry. Call ``.train()`` to fine-tune.

    Args:
        name: a key of :data:`~attention_lib.weights.PRETRAINED`, optionally with a weight
            tag (``"seresnet50.ra2_in1k"``, ``"resnet50.IMAGENET1K_V1"``).

    Raises:
        ValueError: unknown name (the message lists the supported ones), a published
            model known not to map (the message says why), or an unknown tag.
        RuntimeError: the weights could not be downloaded.
        WeightMappingError: the downloaded weights do not fit (names the keys).
    """
    entry, tag = parse(name)
    state_dict = fetch_published_state_dict(f"{entry.name}.{tag}")
    model = load_published_state_dict(build_model(entry.name), entry.name, state_dict)
    model.pretrained_cfg = {**data_config(f"{entry.name}.{tag}"), "fidelity": entry.fidelity,
                            "backbone": entry.backbone.describe(), "notes": entry.notes}
    return model.eval()


def load_trained(name: str, weights: str = "auto") -> nn.Module | None:
    """Our model carrying the published ImageNet weights of ``name``, or ``None`` (said why).

    Args:
        name: a key of :data:`~attention_lib.weights.PRETRAINED` (``"seresnet50"``).
        weights: ``"auto"`` downloads the weights (cached after the first time) and
            returns ``None`` with a printed explanation when that fails; ``"off"``
            returns ``None``; ``"random"`` returns the mapped model of a randomly
            initialised published network (nothing is downloaded; for tests of the code
            path: its outputs mean nothing).

    Returns:
        The model in eval mode, with ``model.pretrained_cfg`` (the preprocessing the
        weights expect, and ``"random": True`` for random weights), or ``None``.
    """
    if weights not in WEIGHT_MODES:
        raise ValueError(f"weights must be one of {WEIGHT_MODES}, got {weights!r}")
    entry, _ = parse(name)
    if weights == "off":
        print(f"weights='off': the trained {name} is not loaded, and this section shows nothing.")
        return None
    if weights == "random":
        model = build_model(entry.name)
        load_published_state_dict(model, entry.name, published_model(name).state_dict())
        model.pretrained_cfg = {**data_config(name), "random": True}
        print(f"RANDOM WEIGHTS: {name}'s architecture, randomly initialised and mapped onto ours. This runs "
              "the code of this section; its numbers and pictures mean nothing: not a result.")
        return model.eval()
    try:
        with output_to_stdout():  # download progress and messages: see output_to_stdout
            model = pretrained_model(name)
    except (RuntimeError, ImportError) as error:
        print(f"The published ImageNet weights of {name} are not available here, so this section shows "
              f"nothing (it runs wherever they can be downloaded: Colab, the online book).\nReason: {error}")
        return None
    model.pretrained_cfg["random"] = False
    print(f"Loaded {weights_label(model)}.")
    return model
