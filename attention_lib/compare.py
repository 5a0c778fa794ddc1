# Hand-written support module (not generated from a notebook).
"""Run the training notebook once per attention type with papermill and collect the results.

    python -m attention_lib.compare --arch resnet50 --epochs 20 --data-root data   # real runs (GPU)
    python -m attention_lib.compare --smoke                                          # under a minute on CPU

Each run executes ``notebooks/08_training.ipynb`` with its parameters injected, writes
its checkpoint and ``metrics.json`` under ``--runs-dir/<arch>-<attention>/`` (so an
interrupted comparison resumes where it stopped), and keeps the executed notebook
next to them. Real runs are copied to ``book/results/<arch>-<attention>.json``, which
the comparison chapter reads; smoke runs never are.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["ATTENTION_NAMES", "run_comparison", "main"]

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "08_training.ipynb"
RESULTS = ROOT / "book" / "results"
ATTENTION_NAMES = ("none", "se", "eca", "cbam", "bam", "ge", "sk")


class _SmokeLineFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("smoke" in message and ("Unable to parse" in message or "unknown parameter" in message))


def run_comparison(attentions: list[str], runs_dir: Path, parameters: dict, smoke: bool,
                   results_dir: Path | None = RESULTS) -> dict[str, dict]:
    """Execute the training notebook for each attention; return ``{name: metrics}``."""
    import papermill

    # papermill cannot infer the smoke switch (it reads an environment variable) and warns
    # about it on every run; the injected value still applies. Other warnings stay visible.
    for name in ("papermill", "papermill.translators"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _SmokeLineFilter) for f in logger.filters):
            logger.addFilter(_SmokeLineFilter())
    unknown = [name for name in attentions if name not in ATTENTION_NAMES]
    if unknown:
        raise ValueError(f"unknown attention {unknown}; choose from {', '.join(ATTENTION_NAMES)}")
    runs_dir.mkdir(parents=True, exist_ok=True)
    collected = {}
    for name in attentions:
        arch = parameters.get("arch", "resnet50")
        run_dir = runs_dir / f"{arch}-{name}"
        run_dir.mkdir(parents=True, exist_ok=True)
        injected = {**parameters, "attention": None if name == "none" else name,
                    "output_dir": str(run_dir), "smoke": smoke}
        started = time.perf_counter()
        papermill.execute_notebook(str(NOTEBOOK), str(run_dir / "training.ipynb"), parameters=injected,
                                   kernel_name="python3", cwd=str(NOTEBOOK.parent), progress_bar=False)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        collected[name] = metrics
        last = metrics["epochs"][-1]
        tag = "smoke run - not a result" if smoke else "real run"
        print(f"{arch}-{name}: top-1 {last['top1']:.4f} after {last['epoch']} epochs "
              f"({time.perf_counter() - started:.0f} s, {tag})", flush=True)
        if not smoke and results_dir is not None and metrics.get("finished"):
            results_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run_dir / "metrics.json", results_dir / f"{arch}-{name}.json")
    return collected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attentions", nargs="+", default=list(ATTENTION_NAMES), choices=ATTENTION_NAMES)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--dataset", default="imagenette")
    parser.add_argument("--data-root", default=str(ROOT / "data"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs-dir", type=Path, default=None, help="default: runs/ (a temporary folder with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="tiny runs on generated data: never results")
    args = parser.parse_args(argv)
    parameters = {"arch": args.arch, "dataset": args.dataset, "data_root": args.data_root, "epochs": args.epochs,
                  "batch_size": args.batch_size, "image_size": args.image_size, "seed": args.seed}
    if args.smoke:
        with tempfile.TemporaryDirectory() as folder:
            run_comparison(args.attentions, args.runs_dir or Path(folder), parameters, smoke=True, results_dir=None)
        print("smoke run - not a result")
    else:
        run_comparison(args.attentions, args.runs_dir or ROOT / "runs", parameters, smoke=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
