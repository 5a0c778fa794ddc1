# Hand-written support module (not generated from a notebook).
"""Train an attention-equipped backbone on a mini-ImageNet dataset.

One configuration (:class:`TrainConfig`) serves the command line and the notebooks'
papermill ``parameters`` cells::

    python -m attention_lib.train --arch resnet50 --attention se --dataset imagenette \\
        --data-root data --epochs 20 --output-dir runs/resnet50-se
    torchrun --nproc_per_node 4 -m attention_lib.train ...      # several GPUs or nodes

Every parameter is checked before any data or model is built, and every problem is
reported at once (:meth:`TrainConfig.problems`). Every epoch ends with a checkpoint
(:mod:`attention_lib.checkpoint`) and an updated metrics file (``metrics.json``:
per-epoch loss, top-1/top-5, throughput, peak memory, and the run's command, hardware,
library versions, commit and date). Starting the same command again resumes from the
last finished epoch, and the run ends exactly as an uninterrupted one would (same seed,
same data order, same random augmentations); ``metrics.json`` is rewritten from the
checkpoint on every resume, so it always says what the checkpoint holds. A resume with a
changed configuration is refused (:func:`attention_lib.checkpoint.check_resume`).
Validation counts every image once, also when several processes share the work.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import json
import math
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm.auto import tqdm

from attention_lib import checkpoint, provenance
from attention_lib.data import DATASETS, IMAGENETTE_SIZES, build_datasets, make_image_tree
from attention_lib.models import ARCHS, ATTENTIONS, attention_arguments, create_model

__all__ = ["ConfigError", "TrainConfig", "train", "notebook_config", "main", "parse_args", "ShardSampler",
           "METRICS_FILE"]

#: The metrics file a run writes into its output folder.
METRICS_FILE = "metrics.json"


class ConfigError(ValueError):
    """One or more training parameters are invalid; the message lists every one of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid training parameters: " + "; ".join(self.problems))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults describe a real Imagenette run."""

    arch: str = "resnet50"  # see attention_lib.models.ARCHS
    attention: str | None = None  # None or a name of attention_lib.models.ATTENTIONS
    attention_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the attention module
    dataset: str = "imagenette"  # "imagenette", "tiny-imagenet" or "folder"
    data_root: str = "data"
    imagenette_size: str = "160px"  # "160px", "320px" or "full"
    download: bool = True  # Imagenette only
    image_size: int = 128
    epochs: int = 20
    batch_size: int = 64  # per process
    lr: float = 0.1  # peak learning rate of SGD with Nesterov momentum
    momentum: float = 0.9
    weight_decay: float = 5e-5
    warmup_epochs: int = 1  # linear warm-up, then cosine decay to zero
    label_smoothing: float = 0.1
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    channels_last: bool = True
    compile: bool = False  # torch.compile the model
    seed: int = 0
    output_dir: str = "runs/default"
    num_workers: int = 4
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    max_steps_per_epoch: int | None = None  # cap the steps of each epoch (smoke runs)
    resume: bool = True  # continue from output_dir/checkpoint.pt when it exists
    allow_config_change: bool = False  # resume even though the configuration changed
    progress: bool = True  # tqdm progress bars
    smoke: bool = False  # mark the metrics as a smoke run: never a result

    def problems(self) -> list[str]:
        """One line per invalid field, naming it and what was expected (empty when valid)."""
        found: list[str] = []

        def expect(ok: bool, name: str, what: str) -> None:
            if not ok:
                found.append(f"{name} must be {what}, got {getattr(self, name)!r}")

        expect(self.arch in ARCHS, "arch", f"one of {', '.join(ARCHS)}")
        expect(self.attention in ATTENTIONS, "attention", "None or one of " + ", ".join(map(str, ATTENTIONS[1:])))
        if not isinstance(self.attention_kwargs, dict):
            found.append(f"attention_kwargs must be a dict, got {type(self.attention_kwargs).__name__}")
        elif self.attention_kwargs and self.attention is None:
            found.append(f"attention_kwargs {sorted(self.attention_kwargs)} were given but attention is None")
        elif self.attention in ATTENTIONS[1:]:
            accepted = attention_arguments(self.attention)
            unknown = sorted(set(self.attention_kwargs) - set(accepted))
            if unknown:
                found.append(f"attention_kwargs {unknown} are not arguments of attention={self.attention!r}, "
                             f"which accepts: {', '.join(accepted)}")
        if self.attention == "sk" and self.arch == "mobilenet_v2":
            found.append("attention 'sk' replaces the 3x3 convolutions of ResNet/ResNeXt blocks; "
                         "it is not defined for arch 'mobilenet_v2'")
        expect(self.dataset in DATASETS, "dataset", f"one of {', '.join(DATASETS)}")
        expect(self.imagenette_size in IMAGENETTE_SIZES, "imagenette_size", f"one of {', '.join(IMAGENETTE_SIZES)}")
        expect(_is_int(self.image_size) and self.image_size >= 32, "image_size", "an int >= 32")
        for name in ("epochs", "batch_size"):
            expect(_is_int(getattr(self, name)) and getattr(self, name) >= 1, name, "a positive int")
        for name in ("warmup_epochs", "num_workers", "seed"):
            expect(_is_int(getattr(self, name)) and getattr(self, name) >= 0, name, "an int >= 0")
        if _is_int(self.warmup_epochs) and _is_int(self.epochs) and self.warmup_epochs > self.epochs >= 1:
            found.append(f"warmup_epochs must be <= epochs ({self.epochs}), got {self.warmup_epochs}")
        steps = self.max_steps_per_epoch
        expect(steps is None or (_is_int(steps) and steps >= 1), "max_steps_per_epoch", "None or a positive int")
        expect(_is_number(self.lr) and self.lr > 0, "lr", "a finite number > 0")
        expect(_is_number(self.momentum) and 0 <= self.momentum < 1, "momentum", "a number in [0, 1)")
        expect(_is_number(self.weight_decay) and self.weight_decay >= 0, "weight_decay", "a finite number >= 0")
        expect(_is_number(self.label_smoothing) and 0 <= self.label_smoothing < 1, "label_smoothing",
               "a number in [0, 1)")
        for name in ("download", "amp", "channels_last", "compile", "resume", "allow_config_change", "progress",
                     "smoke"):
            expect(isinstance(getattr(self, name), bool), name, "True or False")
        for name in ("data_root", "output_dir"):
            expect(isinstance(getattr(self, name), str) and getattr(self, name) != "", name, "a non-empty path")
        try:
            torch.device(self.device) if self.device != "auto" else None
        except (RuntimeError, TypeError):
            found.append(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        return found

    def validate(self) -> None:
        """Raise :class:`ConfigError` listing every invalid field."""
        found = self.problems()
        if found:
            raise ConfigError(found)


def make_config(**options: Any) -> TrainConfig:
    """A :class:`TrainConfig` from keyword options; an unknown option is a :class:`ConfigError`."""
    names = {item.name for item in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ConfigError([f"{name} is not a training parameter (they are: {', '.join(sorted(names))})"
                           for name in unknown])
    return TrainConfig(**options)


# --- helpers -----------------------------------------------------------------------


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment, or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def _device(config: TrainConfig, local_rank: int) -> torch.device:
    if config.device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError([f"device {config.device!r} was asked for, but CUDA is not available"])
    return device


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up for `warmup_epochs`, then cosine decay to zero."""
    warmup = config.warmup_epochs * steps_per_epoch
    total = config.epochs * steps_per_epoch
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * progress))


def _topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> list[int]:
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top == labels[:, None]
    return [int(hits[:, :k].any(dim=1).sum()) for k in ks]


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, rank + 2 world, ...`` of a dataset: every sample once.

    PyTorch's ``DistributedSampler`` pads the last round with repeated samples so that
    every process gets the same number; for validation those repeats would be counted
    twice. Here the shards simply differ in length by at most one.
    """

    def __init__(self, length: int, rank: int, world: int) -> None:
        self.length, self.rank, self.world = length, rank, world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world))


def _write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Write ``metrics.json`` atomically (a run killed meanwhile leaves the previous one)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(metrics, indent=2))
    os.replace(temporary, path)


# --- the run -----------------------------------------------------------------------


def train(config: TrainConfig, on_step: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run (or resume) training and return the metrics that were written to ``metrics.json``.

    Args:
        config: the run's settings.
        on_step: optional callback ``on_step(epoch, step)`` after every optimiser step
            (used by the tests to interrupt a run; handy for custom logging).

    Raises:
        ConfigError: invalid parameters (all listed), before anything is built.
        attention_lib.checkpoint.CheckpointError: the checkpoint to resume from is damaged.
        attention_lib.checkpoint.ResumeError: it was written with another configuration.
        FileNotFoundError: the dataset is not where ``data_root`` says.
    """
    config.validate()
    rank, world, local_rank = _distributed()
    device = _device(config, local_rank)
    output = Path(config.output_dir)
    checkpoint_file, metrics_path = output / checkpoint.FILENAME, output / METRICS_FILE
    settings = dataclasses.asdict(config)
    amp = config.amp and device.type == "cuda"

    metrics: dict[str, Any] = {
        "config": settings, "command": [sys.executable, *sys.argv], "hardware": provenance.hardware(device),
        "world_size": world, "amp": amp, "torch": torch.__version__, "commit": provenance.commit(),
        "started": provenance.now(), "smoke": config.smoke, "epochs": [], "finished": False,
    }
    resumed: checkpoint.Checkpoint | None = None
    if config.resume and checkpoint_file.exists():
        resumed = checkpoint.load(checkpoint_file, map_location="cpu")
        checkpoint.check_resume(resumed, settings, allow_config_change=config.allow_config_change)
        metrics["epochs"] = list(resumed.history)
        metrics["resumed_from_epoch"] = resumed.epoch
        metrics["finished"] = resumed.epoch >= config.epochs
        if rank == 0:
            # The checkpoint is the truth: a run killed between writing it and the metrics
            # file must not leave an older metrics file behind.
            _write_metrics(metrics_path, metrics)
            print(f"resuming from {checkpoint_file} after epoch {resumed.epoch}"
                  + (" (already finished)" if metrics["finished"] else ""))
        if metrics["finished"]:
            return metrics

    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats(device)
    output.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(config.seed)
    random.seed(config.seed)
    train_set, val_set, num_classes = build_datasets(
        config.dataset, config.data_root, config.image_size,
        download=config.download and rank == 0, imagenette_size=config.imagenette_size)
    if resumed is not None and resumed.num_classes != num_classes:
        raise checkpoint.ResumeError(f"cannot resume from {checkpoint_file}: it was trained for {resumed.num_classes} "
                                     f"classes, but the dataset at {config.data_root} has {num_classes}")
    model = create_model(config.arch, config.attention, num_classes=num_classes,
                         image_size=config.image_size, **config.attention_kwargs).to(device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)

    decay, no_decay = [], []
    for parameter in model.parameters():
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    start_epoch = 0
    if resumed is not None:
        model.load_state_dict(resumed.model)
        optimizer.load_state_dict(resumed.optimizer)
        scaler.load_state_dict(resumed.scaler)
        checkpoint.set_rng_state(resumed.rng)
        start_epoch = resumed.epoch

    evaluated = torch.compile(model) if config.compile else model
    network = evaluated
    if world > 1:
        network = nn.parallel.DistributedDataParallel(evaluated,
                                                      device_ids=[device.index] if device.type == "cuda" else None)

    train_sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    loader_options = dict(batch_size=config.batch_size, num_workers=config.num_workers,
                          pin_memory=device.type == "cuda", persistent_workers=False)
    train_loader = DataLoader(train_set, sampler=train_sampler, drop_last=len(train_set) >= config.batch_size * world,
                              **loader_options)
    val_loader = DataLoader(val_set, sampler=ShardSampler(len(val_set), rank, world), **loader_options)
    steps_per_epoch = len(train_loader)
    if config.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    for epoch in range(start_epoch, config.epochs):
        train_sampler.set_epoch(epoch)
        network.train()
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        seen = 0
        bar = tqdm(train_loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=not config.progress or rank != 0, leave=False)
        for step, (images, labels) in enumerate(bar):
            if step >= steps_per_epoch:
                break
            global_step = epoch * steps_per_epoch + step
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(config, global_step, steps_per_epoch)
            images = images.to(device, non_blocking=True).to(memory_format=memory_format)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=amp):
                loss = criterion(network(images), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.detach() * labels.shape[0]
            seen += labels.shape[0]
            if rank == 0 and config.progress:
                bar.set_postfix(loss=f"{loss.item():.3f}")
            if on_step is not None:
                on_step(epoch, step)
        bar.close()
        train_seconds = time.perf_counter() - started

        # Validation runs the model without DistributedDataParallel: the shards differ in length
        # by one image, and DDP's forward pass would wait for a partner on the longer one.
        evaluated.eval()
        totals = torch.zeros(4, device=device, dtype=torch.float64)  # loss sum, top-1, top-5, count
        with torch.no_grad():
            for images, labels in val_loader:
                images = images.to(device, non_blocking=True).to(memory_format=memory_format)
                labels = labels.to(device, non_blocking=True)
                with torch.autocast(device.type, enabled=amp):
                    logits = evaluated(images)
                top1, top5 = _topk_correct(logits.float(), labels)
                totals += torch.tensor([float(criterion(logits.float(), labels)) * labels.shape[0], top1, top5,
                                        labels.shape[0]], device=device, dtype=torch.float64)
        train_totals = torch.tensor([float(loss_sum), seen], device=device, dtype=torch.float64)
        if world > 1:
            dist.all_reduce(totals)
            dist.all_reduce(train_totals)
        record = {
            "epoch": epoch + 1,
            "train_loss": float(train_totals[0] / max(1.0, float(train_totals[1]))),
            "val_loss": float(totals[0] / totals[3]),
            "top1": float(totals[1] / totals[3]),
            "top5": float(totals[2] / totals[3]),
            "val_images": int(totals[3]),
            "images_per_second": float(train_totals[1]) / train_seconds,
            "epoch_seconds": time.perf_counter() - started,
            "peak_memory_mb": _peak_memory_mb(device),
            "lr": optimizer.param_groups[0]["lr"],
        }
        metrics["epochs"].append(record)
        metrics["finished"] = epoch + 1 == config.epochs
        if rank == 0:
            checkpoint.save(checkpoint_file, model=model.state_dict(), optimizer=optimizer.state_dict(),
                            scaler=scaler.state_dict(), rng=checkpoint.rng_state(), epoch=epoch + 1,
                            num_classes=num_classes, config=settings, history=metrics["epochs"])
            _write_metrics(metrics_path, metrics)
            tag = " (smoke run - not a result)" if config.smoke else ""
            print(f"epoch {epoch + 1}/{config.epochs}: train loss {record['train_loss']:.4f}, "
                  f"val loss {record['val_loss']:.4f}, top-1 {record['top1']:.4f}, top-5 {record['top5']:.4f}, "
                  f"{record['images_per_second']:.1f} img/s{tag}")
        if world > 1:
            dist.barrier()

    if world > 1 and dist.is_initialized():
        dist.destroy_process_group()
    return metrics


# --- notebooks -----------------------------------------------------------------------


def notebook_config(smoke: bool = False, **options: Any) -> TrainConfig:
    """The :class:`TrainConfig` a notebook's parameters describe, adjusted for smoke mode.

    Every parameter is checked first, as given, so that a mistyped value fails in smoke
    mode too. In smoke mode the run is then made tiny and honest: a small dataset in the
    ImageFolder layout is generated from scikit-image photos in a temporary folder, the
    backbone becomes ResNet-18 (MobileNetV2 stays), and each of two epochs takes two
    steps. The run's metrics are marked ``smoke`` and are never a result. An
    ``output_dir`` that is not absolute is replaced by the temporary folder, which is
    removed when the Python process ends: smoke runs leave nothing behind.
    """
    if not isinstance(smoke, bool):
        raise ConfigError([f"smoke must be True or False, got {smoke!r}"])
    config = make_config(**options)
    if not config.output_dir or config.output_dir == TrainConfig.output_dir:
        config.output_dir = f"runs/{config.arch}-{config.attention or 'none'}"
    config.validate()
    if smoke:
        scratch = Path(tempfile.mkdtemp(prefix="attention-smoke-"))
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        make_image_tree(scratch / "data", "folder", classes=3, per_class=4, size=40, seed=config.seed)
        config = dataclasses.replace(
            config, arch=config.arch if config.arch == "mobilenet_v2" else "resnet18", dataset="folder",
            data_root=str(scratch / "data"), image_size=32, epochs=2, batch_size=4, num_workers=0,
            max_steps_per_epoch=2, lr=min(config.lr, 0.01), warmup_epochs=min(config.warmup_epochs, 2), smoke=True,
            progress=False, output_dir=config.output_dir if os.path.isabs(config.output_dir) else str(scratch / "run"))
        print("SMOKE RUN - not a result: 2 steps per epoch on a dataset generated from photos")
    return config


# --- command line --------------------------------------------------------------------

_CHOICES: dict[str, tuple[str, ...]] = {
    "arch": ARCHS, "attention": ("none", *ATTENTIONS[1:]), "dataset": DATASETS,
    "imagenette_size": tuple(IMAGENETTE_SIZES),
}


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object such as '{{\"reduction\": 8}}', got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m attention_lib.train",
                                     description="Train a backbone with an attention module (attention_lib).")
    defaults = TrainConfig()
    for item in dataclasses.fields(TrainConfig):
        flag = "--" + item.name.replace("_", "-")
        default = getattr(defaults, item.name)
        if item.name == "attention_kwargs":
            parser.add_argument(flag, type=_json_object, default={},
                                help="JSON object of the attention's arguments, e.g. '{\"reduction\": 8}'")
        elif isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif item.name in _CHOICES:
            shown = "none" if default is None else default
            parser.add_argument(flag, choices=_CHOICES[item.name], default=shown,
                                help=f"one of: {', '.join(_CHOICES[item.name])} (default {shown})")
        elif item.name == "max_steps_per_epoch":
            parser.add_argument(flag, type=int, default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=f"default {default}")
    return parser


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from command-line arguments (not yet validated)."""
    args = _parser().parse_args(argv)
    config = TrainConfig(**vars(args))
    if config.attention == "none":
        config.attention = None
    return config


def main(argv: list[str] | None = None) -> int:
    """``python -m attention_lib.train``: user errors end with one line on stderr and exit code 2."""
    parser = _parser()
    config = parse_args(argv)
    try:
        config.validate()
        train(config)
    except (ConfigError, checkpoint.CheckpointError, checkpoint.ResumeError, FileNotFoundError) as error:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(error).split())}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
