# Hand-written support module (not generated from a notebook).
"""Command line of :mod:`attention_lib.benchmark` (``python -m attention_lib.benchmark --help``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from attention_lib.benchmark.call_overhead import call_overhead, format_overhead_table
from attention_lib.benchmark.common import RATIOS_PER_TWO_ROUNDS, keep_freed_memory, load_average, provenance, \
    set_threads
from attention_lib.benchmark.modules import FORMATS, MODES, QUICK_STAGES, RESNET50_STAGES, format_table, run, \
    selected_cases
from attention_lib.benchmark.whole_model import run_models


def _names(text: str | None) -> list[str] | None:
    return [name.strip() for name in text.split(",") if name.strip()] if text else None


def _stages(text: str) -> list[tuple[int, int]]:
    """``"256x28,512x14"`` as ``[(256, 28), (512, 14)]``: channels and map size of each stage."""
    stages = []
    for item in _names(text) or []:
        channels, sep, size = item.lower().partition("x")
        if not (sep and channels.isdigit() and size.isdigit() and int(channels) > 0 and int(size) > 0):
            raise argparse.ArgumentTypeError(
                f"--stages must be channels x size pairs such as 256x28,512x14, got {item!r} in {text!r}")
        stages.append((int(channels), int(size)))
    if not stages:
        raise argparse.ArgumentTypeError(f"--stages must name at least one stage such as 256x28, got {text!r}")
    return stages


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m attention_lib.benchmark",
                                description="attention_lib against timm: modules (default) or whole models")
    p.add_argument("--models", action="store_true", help="whole-model mode (default: module mode)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: far less noisy on a busy machine)")
    p.add_argument("--no-pin", action="store_true", help="do not bind the process to --threads CPUs")
    p.add_argument("--allocator", choices=("keep", "system"), default="keep",
                   help="keep: glibc keeps freed memory, so no timed pass waits for fresh pages "
                        "(default); system: the allocator as it comes")
    p.add_argument("--formats", default=",".join(FORMATS), help="contiguous,channels_last (default both)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 16 modules, 4 whole models)")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the rows and their provenance to PATH")
    p.add_argument("--quick", action="store_true", help="small shapes, few rounds: checks the code, not a result")
    module = p.add_argument_group("module mode")
    module.add_argument("--modules", default=None, help="comma-separated case names, e.g. SE,CBAM (default: all)")
    module.add_argument("--modes", default=",".join(MODES), help="train,eval (default both)")
    module.add_argument("--stages", type=_stages, default=None, metavar="CxS,...",
                        help="channels x map size of each shape, e.g. 256x28,512x14,1024x7,2048x4 (ResNet-50's "
                             "stages at 112 px, the whole-model mode's); default its stages at 224 px")
    module.add_argument("--warmup", type=int, default=3)
    module.add_argument("--repeats", type=int, default=10, help="rounds at least")
    module.add_argument("--min-time", type=float, default=1.0,
                        help="go on until each module has run this many seconds (default 1)")
    module.add_argument("--amp", action="store_true", help="autocast (bfloat16 on CPU, float16 on CUDA)")
    module.add_argument("--no-memory", action="store_true", help="skip the memory columns")
    module.add_argument("--profile", action="store_true", help="top operators of the rows where ours/ref > 1")
    module.add_argument("--call-overhead", action="store_true",
                        help="instead of the table: the per-call time of each module's inference on a small map, "
                             "warm and with flushed caches (attention_lib.benchmark.call_overhead)")
    whole = p.add_argument_group("whole-model mode")
    whole.add_argument("--arch", default="resnet50")
    whole.add_argument("--attentions", default=None, help="comma-separated (default: every placeable attention)")
    whole.add_argument("--image-size", type=int, default=112)
    whole.add_argument("--min-rounds", type=int, default=15,
                       help="rounds before the IQR may stop the run (default 15: the IQR of fewer is not to be trusted)")
    whole.add_argument("--max-rounds", type=int, default=30)
    whole.add_argument("--target-iqr", type=float, default=0.05, help="stop when every overhead's IQR is below this")
    whole.add_argument("--max-minutes", type=float, default=None, help="time budget of the whole run")
    whole.add_argument("--no-timm", action="store_true", help="skip timm's models")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    argv = list(argv) if argv is not None else sys.argv[1:]
    formats = tuple(_names(args.formats) or ())
    if not formats or set(formats) - set(FORMATS):
        p.error(f"--formats must name some of {FORMATS}, got {args.formats!r}")
    if args.threads < 1:
        p.error("--threads must be >= 1")
    if args.batch is not None and args.batch < 1:
        p.error("--batch must be >= 1")
    if args.call_overhead and (args.models or args.device != "cpu"):
        p.error("--call-overhead measures modules on the CPU: leave out --models and --device")
    if not args.models:
        try:
            selected_cases(_names(args.modules))
        except ValueError as error:
            p.error(str(error))
    cpus = set_threads(args.threads, pin=not args.no_pin)
    allocator = keep_freed_memory() if args.allocator == "keep" else "system default"
    before = load_average()
    meta = provenance("python -m attention_lib.benchmark " + " ".join(argv), args.device)
    meta.update({"load_average_before": before, "formats": list(formats), "allocator": allocator,
                 "ratios": RATIOS_PER_TWO_ROUNDS})
    print(f"threads={torch.get_num_threads()} cpus={cpus} cpu={meta['hardware']['cpu']!r} "
          f"torch={meta['torch']} timm={meta['timm']} load average={before}\nallocator: {allocator}", flush=True)
    if args.call_overhead:
        batch, rounds = args.batch or 2, 3 if args.quick else 200
        rows = call_overhead(_names(args.modules), formats, batch=batch, rounds=rounds, warmup=1 if args.quick else 10)
        meta.update({"batch": batch, "rounds": rounds})
        print(format_overhead_table(rows))
    elif args.models:
        if args.quick:
            options = dict(batch=2, image_size=64, min_rounds=2, max_rounds=2, warmup=1)
        else:
            options = dict(batch=args.batch or 4, image_size=args.image_size, min_rounds=args.min_rounds,
                           max_rounds=args.max_rounds, max_minutes=args.max_minutes)
        result = run_models(args.arch, _names(args.attentions), formats=formats, target_iqr=args.target_iqr,
                            timm=not args.no_timm, log=lambda text: print(text, flush=True), **options)
        meta.update({key: result.pop(key) for key in ("arch", "batch", "image_size", "target_iqr",
                                                      "elapsed_seconds", "skipped")})
        rows = result["rows"]
        for row in rows:
            overhead = "" if row["overhead"] is None else \
                f"  overhead {100 * row['overhead']:+.1f} % ± {100 * row['overhead_iqr']:.1f}"
            print(f"{row['model']:<16} {row['format']:<13} {row['mode']:<5} {1e3 * row['seconds']:9.1f} ms "
                  f"± {1e3 * row['iqr_seconds']:.1f} ({row['rounds']} rounds){overhead}")
    else:
        modes = tuple(_names(args.modes) or ())
        if not modes or set(modes) - set(MODES):
            p.error(f"--modes must name some of {MODES}, got {args.modes!r}")
        if args.batch is None:
            args.batch = 2 if args.quick else 16
        stages = args.stages or (QUICK_STAGES if args.quick else RESNET50_STAGES)
        rows = run(args.batch, stages, args.device,
                   1 if args.quick else args.warmup, 2 if args.quick else args.repeats, args.amp, formats, modes,
                   modules=_names(args.modules), profile=args.profile,
                   min_seconds=0.0 if args.quick else args.min_time, memory=not args.no_memory,
                   progress=True)
        meta.update({"batch": args.batch, "stages": [list(stage) for stage in stages], "warmup": args.warmup,
                     "repeats": args.repeats, "min_time_s": args.min_time,
                     "amp": args.amp, "modes": list(modes)})
        print(format_table(rows))
    meta["load_average_after"] = load_average()
    print(f"load average before/after: {before}/{meta['load_average_after']}")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        kind = "call_overhead" if args.call_overhead else "whole_model" if args.models else "modules"
        path.write_text(json.dumps({"kind": kind, "meta": meta, "rows": rows}, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
