# Hand-written support module (not generated from a notebook).
"""Per-call cost of each module: what a forward costs besides its kernels, warm and cold.

On ResNet-50's stage shapes the module table times kernels. On a small map what is left
is the cost of reaching them: Python, PyTorch's dispatch, module calls. On a CPU that
cost depends on what the caches hold. Timed in a loop, the same call runs again and again
on warm caches; inside a network a module runs after layers that have streamed megabytes
through them, so its Python code and data, and PyTorch's dispatch code, come back from
memory. On this project's CPU a module's inference call on a ``(2, 64, 8, 8)`` map cost
up to an order of magnitude more cold than warm, and two modules with the same kernels
differed in that cost by tens of microseconds: a few percent of a pass over a 1 ms map,
the margin by which such modules' rows in the module table move.

:func:`call_overhead` times each case's inference call on a small map, ours and the
reference in alternation, each call twice per round: cold, just after a copy of
:data:`FLUSH_BYTES` bytes (larger than the CPU's caches) has evicted everything else from
them, then warm, just after that cold call. ``python -m attention_lib.benchmark
--call-overhead`` prints the table.
"""

from __future__ import annotations

import time

import torch

from attention_lib.benchmark.common import layout_of, median_iqr, ratio_stats
from attention_lib.benchmark.modules import FORMATS, _number, selected_cases

__all__ = ["FLUSH_BYTES", "call_overhead", "format_overhead_table"]

#: Bytes copied before each cold call: larger than the last-level cache of the CPUs this
#: project runs on (32 MB), so that the copy leaves nothing else in it.
FLUSH_BYTES = 64 * 2**20


def call_overhead(modules: list[str] | None = None, formats: tuple[str, ...] = FORMATS, batch: int = 2,
                  channels: int = 64, size: int = 8, rounds: int = 200, warmup: int = 10,
                  flush_bytes: int = FLUSH_BYTES) -> list[dict]:
    """One row per case and memory format: the per-call time of ours and the reference.

    Each round times every module twice, cold (after copying ``flush_bytes`` bytes) and
    warm (right after that cold call), the order of the modules reversed on every other
    round. Times are medians in microseconds with their IQRs; ``cold_ratio`` and
    ``warm_ratio`` are ours / reference (median and IQR of the ratios, one per two rounds,
    as in the module table). Eval mode, no gradients, on the CPU.
    """
    if rounds < 1 or warmup < 0 or flush_bytes < 4:
        raise ValueError(f"rounds must be >= 1, warmup >= 0 and flush_bytes >= 4, got rounds={rounds}, "
                         f"warmup={warmup}, flush_bytes={flush_bytes}")
    source, target = torch.empty(flush_bytes // 4), torch.empty(flush_bytes // 4)  # float32: 4 bytes each
    source.fill_(1.0)
    rows = []
    for case in selected_cases(modules):
        for memory_format in formats:
            layout = layout_of(memory_format)
            torch.manual_seed(0)
            x = torch.randn(batch, channels, size, size).contiguous(memory_format=layout)
            built = {"ours": case.ours(channels)}
            if case.reference is not None:
                built["reference"] = case.reference(channels)
            for module in built.values():
                module.eval().to(memory_format=layout)
            times = {name: {"cold": [], "warm": []} for name in built}
            order = list(built.items())
            with torch.no_grad():
                for _ in range(warmup):
                    for module in built.values():
                        module(x)
                for round_ in range(rounds):
                    for name, module in order if round_ % 2 == 0 else reversed(order):
                        target.copy_(source)  # evicts the module's code and data from the caches
                        start = time.perf_counter()
                        module(x)
                        cold = time.perf_counter()
                        module(x)
                        warm = time.perf_counter()
                        times[name]["cold"].append(cold - start)
                        times[name]["warm"].append(warm - cold)
            row = {"module": case.name, "reference": case.reference_name if "reference" in built else None,
                   "format": memory_format, "batch": batch, "channels": channels, "size": size, "rounds": rounds,
                   "flush_bytes": flush_bytes}
            for name in ("ours", "reference"):
                for kind in ("cold", "warm"):
                    median, iqr = median_iqr(times[name][kind]) if name in times else (None, None)
                    row[f"{name}_{kind}_us"] = None if median is None else 1e6 * median
                    row[f"{name}_{kind}_iqr_us"] = None if iqr is None else 1e6 * iqr
            for kind in ("cold", "warm"):
                ratio, iqr = ratio_stats(times["ours"][kind], times["reference"][kind]) if "reference" in times \
                    else (None, None)
                row[f"{kind}_ratio"], row[f"{kind}_ratio_iqr"] = ratio, iqr
            rows.append(row)
    return rows


def format_overhead_table(rows: list[dict]) -> str:
    """The rows of :func:`call_overhead` as a text table, with one line saying how it was measured."""
    lines = [f"{'module':<16} {'ref':<8} {'format':<14} {'ours cold':>10} {'ref cold':>10} {'ratio':>6} {'±IQR':>5} "
             f"{'ours warm':>10} {'ref warm':>10} {'ratio':>6}"]
    for row in rows:
        lines.append(
            f"{row['module']:<16} {row['reference'] or '—':<8} {row['format']:<14} "
            f"{_number(row['ours_cold_us'], 10, 1)} {_number(row['reference_cold_us'], 10, 1)} "
            f"{_number(row['cold_ratio'], 6)} {_number(row['cold_ratio_iqr'], 5)} "
            f"{_number(row['ours_warm_us'], 10, 1)} {_number(row['reference_warm_us'], 10, 1)} "
            f"{_number(row['warm_ratio'], 6)}")
    if rows:
        first = rows[0]
        lines.append(f"microseconds per inference call on a ({first['batch']}, {first['channels']}, {first['size']}, "
                     f"{first['size']}) map, median over {first['rounds']} rounds; cold: right after copying "
                     f"{first['flush_bytes'] / 2**20:g} MB, which evicts the module's code and data from the caches; warm: "
                     "the same call again at once; ratio: ours / reference (median of the ratios, one per two rounds)")
    return "\n".join(lines)
