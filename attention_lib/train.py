# Hand-written support module (not generated from a notebook).
"""Train an attention-equipped backbone on a mini-ImageNet dataset.

One configuration (:class:`TrainConfig`) serves the command line and the notebooks'
papermill ``parameters`` cells::

    python -m attention_lib.train --arch resnet50 --attention se --dataset imagenette \\
        --data-root data --epochs 20 --output-dir runs/resnet50-se
    torchrun --nproc_per_node 4 -m attention_lib.train ...      # several GPUs or nodes

Every epoch ends with a checkpoint (``checkpoint.pt``) and an updated metrics file
(``metrics.json``: per-epoch loss, top-1/top-5, throughput, peak memory, and the run's
command, hardware, library versions, commit and date). Starting the same command
again resumes from the last finished epoch, and the run ends exactly as an
uninterrupted one would (same seed, same data order, same random augmentations).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

__all__ = ["TrainConfig", "train", "notebook_config", "should_train", "main", "parse_args"]


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults describe a real Imagenette run."""

    arch: str = "resnet50"  # see attention_lib.models.ARCHS
    attention: str | None = None  # None, "se", "eca", "cbam", "bam", "ge", "sk"
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
    progress: bool = True  # tqdm progress bars
    smoke: bool = False  # mark the metrics as a smoke run: never a result

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        positive_ints = ["image_size", "epochs", "batch_size"]
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("warmup_epochs", "num_workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if self.max_steps_per_epoch is not None and (not isinstance(self.max_steps_per_epoch, int)
                                                     or self.max_steps_per_epoch < 1):
            raise ValueError(f"max_steps_per_epoch must be None or a positive int, got {self.max_steps_per_epoch!r}")
        for name in ("lr", "momentum", "weight_decay", "label_smoothing"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.lr == 0:
            raise ValueError("lr must be > 0")
        if self.label_smoothing >= 1:
            raise ValueError(f"label_smoothing must be < 1, got {self.label_smoothing}")
        if not isinstance(self.attention_kwargs, dict):
            raise ValueError(f"attention_kwargs must be a dict, got {type(self.attention_kwargs).__name__}")


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
        raise ValueError(f"device={config.device!r} was asked for, but CUDA is not available")
    return device


def _hardware(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": str(device), "cpu": platform.processor() or platform.machine(),
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy

        state["numpy"] = numpy.random.get_state()
    except ImportError:  # pragma: no cover
        pass
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy

        numpy.random.set_state(state["numpy"])


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    write(temporary)
    os.replace(temporary, path)


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


# --- the run -----------------------------------------------------------------------


def train(config: TrainConfig, on_step: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run (or resume) training and return the metrics that were written to ``metrics.json``.

    Args:
        config: the run's settings.
        on_step: optional callback ``on_step(epoch, step)`` after every optimiser step
            (used by the tests to interrupt a run; handy for custom logging).
    """
    from tqdm.auto import tqdm

    from attention_lib.data import build_datasets
    from attention_lib.models import create_model

    config.validate()
    rank, world, local_rank = _distributed()
    device = _device(config, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats(device)
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    checkpoint_path, metrics_path = output / "checkpoint.pt", output / "metrics.json"
    amp = config.amp and device.type == "cuda"

    torch.manual_seed(config.seed)
    random.seed(config.seed)
    train_set, val_set, num_classes = build_datasets(
        config.dataset, config.data_root, config.image_size,
        download=config.download and rank == 0, imagenette_size=config.imagenette_size)
    model = create_model(config.arch, config.attention, num_classes=num_classes,
                         image_size=config.image_size, **config.attention_kwargs).to(device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)

    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    metrics: dict[str, Any] = {
        "config": dataclasses.asdict(config), "command": [sys.executable, *sys.argv],
        "hardware": _hardware(device), "world_size": world, "amp": amp,
        "torch": torch.__version__, "commit": _commit(),
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "smoke": config.smoke, "epochs": [], "finished": False,
    }
    start_epoch = 0
    if config.resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        start_epoch = state["epoch"]
        metrics["epochs"] = state["history"]
        metrics["resumed_from_epoch"] = start_epoch
        if rank == 0:
            print(f"resuming from {checkpoint_path} after epoch {start_epoch}")

    network = torch.compile(model) if config.compile else model
    if world > 1:
        network = nn.parallel.DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)

    train_sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    val_sampler = DistributedSampler(val_set, num_replicas=world, rank=rank, shuffle=False)
    loader_options = dict(batch_size=config.batch_size, num_workers=config.num_workers,
                          pin_memory=device.type == "cuda", persistent_workers=False)
    train_loader = DataLoader(train_set, sampler=train_sampler, drop_last=len(train_set) >= config.batch_size * world,
                              **loader_options)
    val_loader = DataLoader(val_set, sampler=val_sampler, **loader_options)
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

        network.eval()
        totals = torch.zeros(4, device=device, dtype=torch.float64)  # loss sum, top-1, top-5, count
        with torch.no_grad():
            for images, labels in val_loader:
                images = images.to(device, non_blocking=True).to(memory_format=memory_format)
                labels = labels.to(device, non_blocking=True)
                with torch.autocast(device.type, enabled=amp):
                    logits = network(images)
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
            "images_per_second": float(train_totals[1]) / train_seconds,
            "epoch_seconds": time.perf_counter() - started,
            "peak_memory_mb": _peak_memory_mb(device),
            "lr": optimizer.param_groups[0]["lr"],
        }
        metrics["epochs"].append(record)
        metrics["finished"] = epoch + 1 == config.epochs
        if rank == 0:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                     "rng": _rng_state(), "epoch": epoch + 1, "history": metrics["epochs"],
                     "config": dataclasses.asdict(config)}
            _atomic_write(checkpoint_path, lambda path: torch.save(state, path))
            _atomic_write(metrics_path, lambda path: path.write_text(json.dumps(metrics, indent=2)))
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

    In smoke mode the run is made tiny and honest: a small dataset in the ImageFolder
    layout is generated from scikit-image photos in a temporary folder, the backbone
    becomes ResNet-18 (MobileNetV2 stays), and each of two epochs takes two steps. The
    run's metrics are marked ``smoke`` and are never a result. An ``output_dir`` that is
    not absolute is replaced by the temporary folder, so smoke runs leave nothing behind.
    """
    import tempfile

    from attention_lib.data import make_image_tree

    config = TrainConfig(**options)
    if not config.output_dir or config.output_dir == TrainConfig.output_dir:
        config.output_dir = f"runs/{config.arch}-{config.attention or 'none'}"
    if smoke:
        scratch = Path(tempfile.mkdtemp(prefix="attention-smoke-"))
        make_image_tree(scratch / "data", "folder", classes=3, per_class=4, size=40, seed=config.seed)
        config = dataclasses.replace(
            config, arch=config.arch if config.arch == "mobilenet_v2" else "resnet18", dataset="folder",
            data_root=str(scratch / "data"), image_size=32, epochs=2, batch_size=4, num_workers=0,
            max_steps_per_epoch=2, lr=min(config.lr, 0.01), smoke=True, progress=False,
            output_dir=config.output_dir if os.path.isabs(config.output_dir) else str(scratch / "run"))
        print("SMOKE RUN - not a result: 2 steps per epoch on a dataset generated from photos")
    config.validate()
    return config


def should_train(config: TrainConfig, run_training: bool | None = None) -> bool:
    """Whether a notebook should start ``config``'s run, and say why not.

    ``run_training=None`` (the default) trains in smoke mode or when a GPU is present;
    ``True`` forces a run (slow on a CPU), ``False`` skips it.
    """
    if run_training is None:
        run_training = config.smoke or torch.cuda.is_available()
        if not run_training:
            print("No GPU here, so the mini-ImageNet run is skipped (it would take many hours on a CPU). "
                  "Open this notebook in Colab with a GPU runtime, or set run_training = True.")
    return bool(run_training)


# --- command line --------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train a backbone with an attention module (attention_lib).")
    defaults = TrainConfig()
    for item in dataclasses.fields(TrainConfig):
        flag = "--" + item.name.replace("_", "-")
        default = getattr(defaults, item.name)
        if item.name == "attention_kwargs":
            parser.add_argument(flag, type=json.loads, default={}, help="JSON object, e.g. '{\"reduction\": 8}'")
        elif isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif item.name in ("attention", "max_steps_per_epoch"):
            kind = int if item.name == "max_steps_per_epoch" else str
            parser.add_argument(flag, type=kind, default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default)
    return parser


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from command-line arguments."""
    args = _parser().parse_args(argv)
    config = TrainConfig(**vars(args))
    if config.attention in ("", "none", "None"):
        config.attention = None
    return config


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        config.validate()
    except ValueError as error:
        _parser().error(str(error))
    train(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
