# Hand-written support module (not generated from a notebook).
"""What the module and whole-model benchmarks share: timing in alternation, robust
statistics, peak memory, thread control and the provenance written with every result."""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

__all__ = ["layout_of", "interleaved_times", "median_iqr", "ratio_stats", "RATIOS_PER_TWO_ROUNDS", "peak_bytes", "set_threads", "keep_freed_memory",
           "hardware", "provenance", "load_average"]

ROOT = Path(__file__).resolve().parents[2]


def layout_of(memory_format: str) -> torch.memory_format:
    """PyTorch's memory format for one of the benchmark's format names ("contiguous", "channels_last")."""
    return torch.channels_last if memory_format == "channels_last" else torch.contiguous_format


def _seconds(step: Callable[[], object], device_type: str) -> float:
    if device_type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device_type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved_times(steps: dict[str, Callable[[], object]], warmup: int, repeats: int,
                      min_seconds: float = 0.0, max_rounds: int | None = None, device_type: str = "cpu",
                      done: Callable[[dict[str, list[float]]], bool] | None = None) -> dict[str, list[float]]:
    """Seconds per call of each step, timed in alternation.

    Every step runs ``warmup`` times, then each round runs every step once, the order
    reversed on every other round (A B C, C B A, A B C, ...), so that slow phases of a
    shared machine fall on all steps alike and the ratio of two steps in one round is
    robust to load. After ``repeats`` rounds, rounds go on while some step has run for
    less than ``min_seconds`` in total or ``done(times)`` is false, up to ``max_rounds``
    (default ``100 * repeats``).
    """
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {label: [] for label in steps}
    labels = list(steps)
    limit = max_rounds if max_rounds is not None else 100 * repeats
    rounds = 0
    while rounds < limit:
        if rounds >= repeats and min(sum(t) for t in times.values()) >= min_seconds and (done is None or done(times)):
            break
        for label in labels if rounds % 2 == 0 else reversed(labels):
            times[label].append(_seconds(steps[label], device_type))
        rounds += 1
    return times


def median_iqr(values: Sequence[float]) -> tuple[float, float]:
    """Median and interquartile range (0 for fewer than two values)."""
    if len(values) < 2:
        return float(values[0]), 0.0
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return float(q2), float(q3 - q1)


#: ``meta["ratios"]`` of a result whose ratios :func:`ratio_stats` formed per two rounds
#: (results without the key used one ratio per round).
RATIOS_PER_TWO_ROUNDS = "two rounds"


def ratio_stats(numerator: Sequence[float], denominator: Sequence[float]) -> tuple[float, float]:
    """Median and IQR of the ratios ``numerator / denominator``, one per two rounds.

    Both were timed in the same round, next to each other, so each ratio sees the same
    load. :func:`interleaved_times` runs the two in one order, then in the other, and the
    position in a round can cost by itself: on this project's CPU, multiplying a 12.8 MB
    map ran about 8 % slower when it came first, whichever module it belonged to. The
    per-round ratios then alternate around the truth and their median can land anywhere
    between. The geometric mean of the ratios of rounds 2k and 2k + 1, one in each order,
    cancels that cost; the median of those is what the benchmark judges by. A last,
    unpaired round is dropped (kept when it is the only one).
    """
    ratios = [a / b for a, b in zip(numerator, denominator)]
    if len(ratios) < 2:
        return median_iqr(ratios)
    return median_iqr([(ratios[i] * ratios[i + 1]) ** 0.5 for i in range(0, len(ratios) - 1, 2)])


def peak_bytes(step: Callable[[], object]) -> int:
    """Largest number of CPU bytes allocated at once while ``step()`` runs, above what
    was allocated before it started (PyTorch's allocations, from its profiler's memory
    events: every temporary of the forward and the backward pass counts)."""
    from torch.autograd.profiler import DeviceType

    cpu_kinds = {DeviceType.CPU, DeviceType.MKLDNN, DeviceType.IDEEP}
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [event for event in prof.profiler.kineto_results.events()
              if event.name() == "[memory]" and event.device_type() in cpu_kinds]
    events.sort(key=lambda event: event.start_ns())
    current = peak = 0
    for event in events:
        current += event.nbytes()
        peak = max(peak, current)
    return peak


def set_threads(threads: int, pin: bool = False) -> list[int] | None:
    """Use ``threads`` intra-op threads; with ``pin``, also bind the process to that many
    of the CPUs it may run on (the first ones). Returns the CPUs it is bound to."""
    torch.set_num_threads(threads)
    if not hasattr(os, "sched_getaffinity"):  # pragma: no cover - not on every platform
        return None
    if pin:
        cpus = sorted(os.sched_getaffinity(0))[:threads]
        os.sched_setaffinity(0, cpus)
    return sorted(os.sched_getaffinity(0))


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt's parameter numbers (glibc's malloc.h)


def keep_freed_memory() -> str:
    """Make glibc's malloc keep the memory this process frees, and say what was done.

    By default glibc hands blocks above 32 MB (a ResNet stage's map at batch 16 is 51 MB)
    straight to the operating system, which maps and zeroes them page by page on first
    touch, and it returns freed memory to the system; whether a tensor's memory is fresh
    then depends on everything the process allocated before. On this project's CPU a
    product writing such a fresh output took about 20 ms against 1-5 ms in reused memory,
    so a module and a reference with the same kernels could differ several times over.
    With every block from the heap (``M_MMAP_MAX`` 0) and no trimming, each timed pass
    after the warm-up reuses memory: the rows measure the modules, not the page faults.
    Elsewhere (no glibc) nothing changes, and the returned text says so.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "system default (no glibc mallopt)"
    if mallopt(_M_MMAP_MAX, 0) != 1 or mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) != 1:
        return "system default (mallopt refused)"
    return "glibc keeps freed memory (M_MMAP_MAX=0, M_TRIM_THRESHOLD=2^31-1)"


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (other jobs on the machine), where known."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - not on every platform
        return None


def _cpuinfo() -> dict[str, str]:
    """The first processor's entries of /proc/cpuinfo (empty where there is none)."""
    entries: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                entries[key.strip()] = value.strip()
    except OSError:
        pass
    return entries


def hardware(device: str = "cpu") -> dict:
    """The CPU as exactly as the machine reports it: the model name from /proc/cpuinfo and,
    because a virtual machine may report only a family name (\"AMD EPYC\"), the vendor,
    family, model and stepping numbers, cache size, vector extensions and hypervisor flag;
    the core count; for CUDA, the GPU."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    result = {"cpu": info.get("model name") or platform.processor() or platform.machine(),
              "vendor": info.get("vendor_id"), "family": info.get("cpu family"), "model": info.get("model"),
              "stepping": info.get("stepping"), "cache": info.get("cache size"),
              "vector_extensions": sorted(flag for flag in flags if flag.startswith(("avx", "amx", "fma"))),
              "virtual_machine": "hypervisor" in flags,
              "logical_cpus": os.cpu_count(), "machine": platform.machine(), "system": platform.system()}
    if device.startswith("cuda"):
        result["gpu"] = torch.cuda.get_device_name()
    return result


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def provenance(command: str, device: str = "cpu") -> dict:
    """What a committed result must say about itself: command, hardware, date, commit.

    ``dirty`` lists the files under ``attention_lib/`` that differ from the commit: a
    result is reproducible from the commit only when that list is empty.
    """
    try:
        import timm

        timm_version = timm.__version__
    except ImportError:  # pragma: no cover - the benchmark needs timm anyway
        timm_version = None
    dirty = _git("status", "--porcelain", "--", "attention_lib")
    return {
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "HEAD"),
        "dirty": [line[3:] for line in dirty.splitlines()] if dirty else [],
        "hardware": hardware(device),
        "device": device,
        "threads": torch.get_num_threads(),
        "cpus_bound": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__, "timm": timm_version, "python": platform.python_version(),
    }
