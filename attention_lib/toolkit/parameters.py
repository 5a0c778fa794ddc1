# Hand-written support module (not generated from a notebook).
"""Check a chapter's papermill parameters before anything runs, and report every bad one at once.

Each chapter starts with a ``parameters`` cell (papermill injects values after it) and
then calls :func:`check_parameters` with the cell's names: the parameters every chapter
shares (``smoke``, ``seed``, ``photo``, ``pretrained_weights``, ``imagenette_*`` and the
``run_*`` options of the mini-ImageNet run) are checked by the rules below, the
chapter's own by the rules it passes. A mistyped value stops the chapter at once, in
smoke mode too, with one :class:`ParameterError` that names every bad parameter and
what was expected.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from attention_lib.photos import PHOTOS
from attention_lib.train import ConfigError, TrainConfig, make_config
from attention_lib.weights.load import WEIGHT_MODES

__all__ = ["ParameterError", "Rule", "check_parameters", "run_options", "boolean", "natural", "positive_int",
           "odd_int", "number", "one_of", "list_of", "text"]

#: A rule returns ``None`` for a good value, else what was expected ("a positive int").
Rule = Callable[[Any], "str | None"]


class ParameterError(ValueError):
    """One or more notebook parameters are invalid; the message names every one of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid notebook parameters (papermill -p NAME VALUE):\n  " + "\n  ".join(problems))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "True or False"


def natural(value: Any) -> str | None:
    return None if _is_int(value) and value >= 0 else "an int >= 0"


def positive_int(value: Any) -> str | None:
    return None if _is_int(value) and value >= 1 else "a positive int"


def odd_int(value: Any) -> str | None:
    return None if _is_int(value) and value >= 1 and value % 2 == 1 else "an odd positive int"


def text(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "a non-empty string"


def number(low: float | None = None, high: float | None = None, low_open: bool = False) -> Rule:
    """A finite number within ``[low, high]`` (``(low, high]`` with ``low_open``)."""

    def rule(value: Any) -> str | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value <= high
        lower = low if low is not None else "-inf"
        upper = high if high is not None else "inf"
        bounds = f"{'(' if low_open else '['}{lower}, {upper}]"
        return None if ok else f"a number in {bounds}"
    return rule


def one_of(choices: Iterable[Any]) -> Rule:
    choices = tuple(choices)

    def rule(value: Any) -> str | None:
        return None if value in choices else "one of " + ", ".join(map(repr, choices))
    return rule


def list_of(item: Rule, minimum: int = 1) -> Rule:
    """A list (or tuple) of at least ``minimum`` items, each obeying ``item``."""

    def rule(value: Any) -> str | None:
        if not isinstance(value, (list, tuple)) or len(value) < minimum:
            return f"a list of at least {minimum} item(s)"
        bad = [entry for entry in value if item(entry) is not None]
        return None if not bad else f"a list whose items are each {item(bad[0])}"
    return rule


#: The parameters every chapter may have, and their rules.
COMMON: dict[str, Rule] = {
    "smoke": boolean,
    "seed": natural,
    "photo": one_of(PHOTOS),
    "pretrained_weights": one_of(WEIGHT_MODES),
    "imagenette_root": text,
    "imagenette_download": boolean,
    "run_training": lambda value: None if value is None or isinstance(value, bool) else "None, True or False",
}

_RUN_PREFIX = "run_"
_TRAIN_FIELDS = frozenset(item.name for item in dataclasses.fields(TrainConfig))


def run_options(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The mini-ImageNet run's options from a chapter's ``run_*`` parameters, ``None`` ones left out
    (so that :class:`~attention_lib.train.TrainConfig`'s defaults apply: they are written once).

    ``run_NAME`` is an option when ``NAME`` is a field of :class:`~attention_lib.train.TrainConfig`;
    the chapter's ``seed`` seeds the run too, unless ``run_seed`` is given.
    """
    options = {name[len(_RUN_PREFIX):]: value for name, value in namespace.items()
               if name.startswith(_RUN_PREFIX) and name[len(_RUN_PREFIX):] in _TRAIN_FIELDS and value is not None}
    if "seed" not in options and isinstance(namespace.get("seed"), int):
        options["seed"] = namespace["seed"]
    return options


def check_parameters(namespace: Mapping[str, Any], **rules: Rule) -> None:
    """Check a chapter's parameters: the common ones found in ``namespace`` and ``rules``' names.

    Args:
        namespace: the chapter's variables (``globals()`` after the parameters cell).
        **rules: the chapter's own parameters and their rules, e.g.
            ``reduction=positive_int``; each name must exist in ``namespace``.

    Raises:
        ParameterError: every invalid parameter, each with what was expected. The
            ``run_*`` parameters are checked as :class:`~attention_lib.train.TrainConfig`
            fields, exactly as the training command line checks them.
    """
    problems = []
    checked = {name: rule for name, rule in COMMON.items() if name in namespace}
    for name, rule in rules.items():
        if name not in namespace:
            problems.append(f"{name}: the chapter checks a parameter that its parameters cell does not define")
            continue
        checked[name] = rule
    for name, rule in checked.items():
        expected = rule(namespace[name])
        if expected is not None:
            problems.append(f"{name} must be {expected}, got {namespace[name]!r}")
    options = run_options(namespace)
    if "run_seed" not in namespace:
        options.pop("seed", None)  # the chapter's own seed, checked above
    if options or "run_training" in namespace:
        try:
            make_config(**options).validate()
        except ConfigError as error:
            problems += [f"run_{problem}" for problem in error.problems]
    if problems:
        raise ParameterError(problems)
