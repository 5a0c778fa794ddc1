# Hand-written support module (not generated from a notebook).
"""Train one backbone once per attention mechanism, with the same settings, and collect the results.

    python -m attention_lib.compare --arch resnet50 --epochs 20 --data-root data   # real runs (GPU)
    python -m attention_lib.compare --smoke                                          # a minute on a CPU

Each run is an ordinary :func:`attention_lib.train.train` run whose checkpoint and
``metrics.json`` go to ``--runs-dir/<arch>-<attention>/``, so an interrupted comparison
resumes where it stopped. Finished real runs are copied to
``book/results/<arch>-<attention>.json``, which the comparison chapter reads; smoke runs
never are.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from attention_lib.models import ATTENTIONS
from attention_lib.train import METRICS_FILE, ConfigError, notebook_config, train

__all__ = ["ATTENTION_NAMES", "run_comparison", "main"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "book" / "results"
#: "none" (the plain backbone) and every mechanism create_model places.
ATTENTION_NAMES = ("none", *ATTENTIONS[1:])


def run_comparison(attentions: list[str], runs_dir: Path, parameters: dict[str, Any], smoke: bool,
                   results_dir: Path | None = RESULTS) -> dict[str, dict[str, Any]]:
    """Train ``parameters`` once per attention; return ``{name: metrics}``.

    Args:
        attentions: names from :data:`ATTENTION_NAMES`.
        runs_dir: where each run's folder goes.
        parameters: :class:`~attention_lib.train.TrainConfig` fields shared by every run.
        smoke: tiny runs on generated data (never results).
        results_dir: where finished real runs are copied (``None``: nowhere).

    Raises:
        ConfigError: an unknown attention or an invalid parameter, before anything runs.
    """
    unknown = [name for name in attentions if name not in ATTENTION_NAMES]
    if unknown:
        raise ConfigError([f"unknown attention {name!r}; choose from {', '.join(ATTENTION_NAMES)}" for name in unknown])
    configs = {}
    for name in attentions:  # every configuration is checked before the first run starts
        arch = parameters.get("arch", "resnet50")
        configs[name] = notebook_config(smoke=smoke, **{**parameters, "attention": None if name == "none" else name,
                                                        "output_dir": str(Path(runs_dir).resolve() / f"{arch}-{name}")})
    collected = {}
    for name, config in configs.items():
        started = time.perf_counter()
        metrics = train(config)
        collected[name] = metrics
        last = metrics["epochs"][-1]
        tag = "smoke run - not a result" if smoke else "real run"
        print(f"{config.arch}-{name}: top-1 {last['top1']:.4f} after {last['epoch']} epochs "
              f"({time.perf_counter() - started:.0f} s, {tag})", flush=True)
        if not smoke and results_dir is not None and metrics.get("finished"):
            results_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(config.output_dir) / METRICS_FILE, results_dir / f"{config.arch}-{name}.json")
    return collected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attention_lib.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--attentions", nargs="+", default=list(ATTENTION_NAMES), choices=ATTENTION_NAMES)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--dataset", default="imagenette")
    parser.add_argument("--data-root", default=str(ROOT / "data"))
    parser.add_argument("--epochs", type=int, default=None, help="default: attention_lib.train's")
    parser.add_argument("--batch-size", type=int, default=None, help="default: attention_lib.train's")
    parser.add_argument("--image-size", type=int, default=None, help="default: attention_lib.train's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs-dir", type=Path, default=None, help="default: runs/ (a temporary folder with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="tiny runs on generated data: never results")
    args = parser.parse_args(argv)
    parameters = {"arch": args.arch, "dataset": args.dataset, "data_root": args.data_root, "seed": args.seed,
                  "progress": not args.smoke}
    parameters.update({key: value for key, value in (("epochs", args.epochs), ("batch_size", args.batch_size),
                                                      ("image_size", args.image_size)) if value is not None})
    try:
        if args.smoke:
            with tempfile.TemporaryDirectory() as folder:
                run_comparison(args.attentions, args.runs_dir or Path(folder), parameters, smoke=True,
                               results_dir=None)
            print("smoke run - not a result")
        else:
            run_comparison(args.attentions, args.runs_dir or ROOT / "runs", parameters, smoke=False)
    except ConfigError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
