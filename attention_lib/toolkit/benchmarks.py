# Hand-written support module (not generated from a notebook).
"""Chapter 07's view of the committed benchmark results (``book/results/*.json``).

The JSON files are written by ``python -m attention_lib.benchmark`` (module mode) and
``python -m attention_lib.benchmark --models`` (whole-model mode); nothing here measures.

- :func:`load_results`: read one file and check that it is a benchmark result;
- :func:`committed_result`: the same, or a note on the page saying how to make the file;
- :func:`provenance_text`: the sentence that says how, where and when it was measured;
- :func:`whole_model_table` and :func:`overhead_figure`: the whole-model overheads, as an
  HTML table and as a plot (overhead % per mechanism, median with its IQR);
- :func:`module_ratio_table`: the module benchmark's ratios ours / reference;
- :func:`call_overhead_table`: the per-call cost of each module's inference, warm and with
  flushed caches (``--call-overhead``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from IPython.display import display

from attention_lib.benchmark.common import RATIOS_PER_TWO_ROUNDS

from attention_lib.toolkit.display import Table, callout, table

__all__ = ["load_results", "committed_result", "provenance_text", "whole_model_table", "overhead_figure", "module_ratio_table",
           "call_overhead_table"]

_KINDS = ("modules", "whole_model", "call_overhead")


def load_results(path: str | Path, kind: str | None = None) -> dict:
    """The benchmark result stored at ``path``; ``kind`` ("modules", "whole_model" or
    "call_overhead"), if given, must match the file's.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a benchmark result, or of the other kind.
    """
    path = Path(path)
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("kind") not in _KINDS or "rows" not in data or "meta" not in data:
        raise ValueError(f"{path} is not a result of python -m attention_lib.benchmark (no kind/meta/rows)")
    if kind is not None and data["kind"] != kind:
        raise ValueError(f"{path} holds a {data['kind']!r} benchmark, expected {kind!r}")
    return data


def committed_result(path: str | Path, kind: str, args: str, missing: str) -> dict | None:
    """The benchmark result committed at ``path`` (:func:`load_results`), or ``None`` after
    displaying a note titled ``missing`` that gives the command which makes the file:
    ``make benchmark ARGS='<args> --json <path>'`` (``args`` may be empty)."""
    path = Path(path)
    try:
        return load_results(path, kind=kind)
    except (FileNotFoundError, ValueError) as error:
        command = f"make benchmark ARGS='{args + ' ' if args else ''}--json {path.as_posix().removeprefix('../')}'"
        display(callout("note", missing, f"{error}. Run `{command}` on a quiet machine and commit the file: "
                                          "this section then shows it."))
        return None


def provenance_text(result: dict) -> str:
    """One sentence of provenance: command, CPU, threads, date, commit, versions, load, allocator."""
    meta = result["meta"]
    commit = (meta.get("commit") or "unknown")[:10]
    if meta.get("dirty"):
        commit += " with uncommitted changes"
    load = meta.get("load_average_before")
    cpu = meta["hardware"]
    name = cpu["cpu"] + (f" (family {cpu['family']}, model {cpu['model']})" if cpu.get("family") else "")
    return (f"Measured with `{meta['command']}` on {name} ({meta['threads']} thread"
            f"{'s' if meta['threads'] != 1 else ''}), {meta['date'][:10]}, commit {commit}, "
            f"PyTorch {meta['torch']}, timm {meta['timm']}"
            + (f", load average {load[0]:.2f} before the run" if load else "")
            + (f"; allocator: {meta['allocator']}" if meta.get("allocator") else "") + ".")


def _ratios(meta: dict) -> str:
    """How the result's ratios were formed: per round, or (since the setting was recorded)
    per two rounds, one in each order."""
    if meta.get("ratios") == RATIOS_PER_TWO_ROUNDS:
        return "ratios of each two rounds, one in each order"
    return "per-round ratios"


def _percent(median: float | None, iqr: float | None) -> str:
    if median is None:
        return "–"
    return f"{100 * median:+.1f} % ± {100 * iqr:.1f}"


def whole_model_table(result: dict, mode: str = "train") -> Table:
    """Per attention: our model's time and overhead over our plain backbone, and timm's
    corresponding model's overhead over timm's, per memory format, for ``mode``
    ("train": a training step; "eval": inference)."""
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
    if result.get("kind") != "whole_model":
        raise ValueError("whole_model_table needs a whole-model result (python -m attention_lib.benchmark --models)")
    rows = [row for row in result["rows"] if row["mode"] == mode]
    formats = list(dict.fromkeys(row["format"] for row in rows))
    attentions = list(dict.fromkeys(row["attention"] for row in rows if row["family"] == "ours"))
    lookup = {(row["family"], row["attention"], row["format"]): row for row in rows}
    records = []
    for attention in attentions:
        record = {"attention": attention or "none (plain backbone)"}
        added = next((row.get("flops_added") for row in rows
                      if row["family"] == "ours" and row["attention"] == attention), None)
        record["FLOPs added"] = "–" if added is None else f"{100 * added:+.1f} %"
        for memory_format in formats:
            ours, theirs = lookup.get(("ours", attention, memory_format)), lookup.get(("timm", attention, memory_format))
            label = "channels-last" if memory_format == "channels_last" else "contiguous"
            record[f"ours, {label} (ms)"] = 1e3 * ours["seconds"] if ours else None
            record[f"overhead, {label}"] = _percent(ours["overhead"], ours["overhead_iqr"]) if ours else "–"
            record[f"timm's overhead, {label}"] = (_percent(theirs["overhead"], theirs["overhead_iqr"])
                                                  if theirs else "–")
        records.append(record)
    meta = result["meta"]
    what = "training step (forward, loss, backward)" if mode == "train" else "inference (eval mode, no gradients)"
    caption = (f"{meta['arch']}, {what}, batch {meta['batch']} at {meta['image_size']} px: median time and "
               f"overhead over the plain backbone (median ± IQR of the {_ratios(meta)}, "
               f"{_rounds(rows)} rounds), next to the forward FLOPs the attention adds (convolutions and "
               f"matrix products, PyTorch's counter; – where the result predates that column). "
               f"{provenance_text(result)}")
    return table(pd.DataFrame(records), caption, formats={column: "{:.1f}" for column in records[0]
                                                           if column.endswith("(ms)")} if records else None)


def _rounds(rows: list[dict]) -> str:
    counts = sorted({row["rounds"] for row in rows})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def overhead_figure(result: dict, mode: str = "train"):
    """A matplotlib figure: overhead % per mechanism (median, with its IQR as an error
    bar), ours and timm's side by side, one panel per memory format."""
    import matplotlib.pyplot as plt

    if result.get("kind") != "whole_model":
        raise ValueError("overhead_figure needs a whole-model result (python -m attention_lib.benchmark --models)")
    rows = [row for row in result["rows"] if row["mode"] == mode and row["overhead"] is not None]
    formats = list(dict.fromkeys(row["format"] for row in rows))
    attentions = list(dict.fromkeys(row["attention"] for row in rows if row["family"] == "ours"))
    figure, axes = plt.subplots(1, len(formats), figsize=(5.2 * len(formats), 0.45 * len(attentions) + 1.6),
                                sharey=True, squeeze=False)
    for axis, memory_format in zip(axes[0], formats):
        for offset, (owner, color) in enumerate((("ours", "tab:blue"), ("timm", "tab:orange"))):
            mine = {row["attention"]: row for row in rows if row["family"] == owner and row["format"] == memory_format}
            positions = [i + (offset - 0.5) * 0.38 for i, name in enumerate(attentions) if name in mine]
            values = [100 * mine[name]["overhead"] for name in attentions if name in mine]
            spreads = [50 * mine[name]["overhead_iqr"] for name in attentions if name in mine]
            if values:
                axis.barh(positions, values, height=0.36, xerr=spreads, color=color, capsize=2,
                          label="ours" if owner == "ours" else "timm")
        axis.axvline(0, color="black", linewidth=0.8)
        axis.set_title(memory_format.replace("_", "-"))
        axis.set_xlabel("overhead over the plain backbone (%)")
        axis.legend(loc="lower right", fontsize=8)
    axes[0][0].set_yticks(range(len(attentions)), attentions)
    axes[0][0].invert_yaxis()
    what = "training step" if mode == "train" else "inference"
    figure.suptitle(f"{result['meta']['arch']}, {what}: median overhead, bars ± half the IQR", fontsize=10)
    figure.tight_layout()
    return figure


def module_ratio_table(result: dict, mode: str = "train") -> Table:
    """The module benchmark's ratios ours / reference (median ± IQR) for ``mode``, one row
    per module, one column per stage shape and memory format, and a last column with the
    largest ratio of our peak memory to the reference's over those shapes and formats."""
    if result.get("kind") != "modules":
        raise ValueError("module_ratio_table needs a module result (python -m attention_lib.benchmark)")
    rows = [row for row in result["rows"] if row["mode"] == mode]
    records: dict[str, dict] = {}
    for row in rows:
        record = records.setdefault(row["module"], {"module": row["module"], "against": row["reference"] or "–"})
        short = "cl" if row["format"] == "channels_last" else "nchw"
        column = f"{row['channels']}×{row['size']}² {short}"
        record[column] = "–" if row["ratio"] is None else f"{row['ratio']:.2f} ± {row['ratio_iqr']:.2f}"
    for name, record in records.items():
        memory = [row["ours_peak"] / row["reference_peak"] for row in rows if row["module"] == name
                  and row.get("ours_peak") is not None and row.get("reference_peak")]
        record["peak memory (worst)"] = f"{max(memory):.2f}" if memory else "–"
    meta = result["meta"]
    what = "forward + backward" if mode == "train" else "inference forward (eval, no gradients)"
    caption = (f"Time of ours / time of the reference, {what}, batch {meta['batch']}, median ± IQR of "
               f"{_ratios(meta)} (below 1: ours is faster; nchw = contiguous, cl = channels-last); peak "
               f"memory: the largest ratio of our peak bytes to the reference's (at most 1: never more). "
               f"{provenance_text(result)}")
    return table(pd.DataFrame(list(records.values())), caption)


def _microseconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def call_overhead_table(result: dict) -> Table:
    """The per-call cost of each module's inference (``--call-overhead``): microseconds with
    caches just flushed and warm, ours and the reference's, and their ratios (median ± IQR)."""
    if result.get("kind") != "call_overhead":
        raise ValueError("call_overhead_table needs a call-overhead result "
                         "(python -m attention_lib.benchmark --call-overhead)")
    records = []
    for row in result["rows"]:
        record = {"module": row["module"], "against": row["reference"] or "–",
                  "format": "cl" if row["format"] == "channels_last" else "nchw"}
        for kind in ("cold", "warm"):
            record[f"{kind}: ours (µs)"] = _microseconds(row[f"ours_{kind}_us"])
            record[f"{kind}: reference (µs)"] = _microseconds(row[f"reference_{kind}_us"])
            ratio, iqr = row[f"{kind}_ratio"], row[f"{kind}_ratio_iqr"]
            record[f"{kind}: ours / reference"] = "–" if ratio is None else f"{ratio:.2f} ± {iqr:.2f}"
        records.append(record)
    first = result["rows"][0] if result["rows"] else {}
    shape = (f"a ({first['batch']}, {first['channels']}, {first['size']}, {first['size']}) map"
             if first else "a small map")
    flushed = f"{first['flush_bytes'] / 2**20:g} MB" if first else "a buffer larger than the caches"
    caption = (f"Time of one inference call (eval, no gradients) on {shape}, in microseconds, median of "
               f"{first.get('rounds', '?')} rounds; cold: right after copying {flushed}, which evicts the "
               f"module's code and data from the CPU's caches; warm: the same call again at once; ours / "
               f"reference: median ± IQR of the {_ratios(result['meta'])} (nchw = contiguous, cl = "
               f"channels-last). {provenance_text(result)}")
    return table(pd.DataFrame(records), caption)
