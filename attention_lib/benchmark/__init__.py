# Hand-written support module (not generated from a notebook).
"""Benchmarks: our attention modules against timm's, and what attention costs a network.

Two modes, one command (``make benchmark ARGS=...`` or ``python -m attention_lib.benchmark``):

- module mode (:mod:`attention_lib.benchmark.modules`, the default): every module against
  timm's equivalent (plain PyTorch where timm has none) at ResNet-50's four stage shapes,
  contiguous and channels-last, training pass and inference pass, time ratio and peak
  memory;
- whole-model mode (``--models``, :mod:`attention_lib.benchmark.whole_model`): training
  step and inference of ``create_model(arch, attention)`` for every attention, against the
  plain backbone and timm's corresponding model, as overhead percentages;
- call overhead (``--call-overhead``, :mod:`attention_lib.benchmark.call_overhead`): what
  one inference call costs besides its kernels, on a small map, with warm caches and
  with caches just flushed (as inside a network).

Usage::

    python -m attention_lib.benchmark                                # all modules, 1 thread
    python -m attention_lib.benchmark --modules SE,ECA --formats channels_last --modes eval
    python -m attention_lib.benchmark --profile                     # top operators where ours/ref > 1
    python -m attention_lib.benchmark --batch 4 --stages 256x28,512x14,1024x7,2048x4  # the 112 px stages
    python -m attention_lib.benchmark --call-overhead               # per-call cost, warm and cold
    python -m attention_lib.benchmark --json book/results/benchmark_cpu.json
    python -m attention_lib.benchmark --models --json book/results/whole_model_cpu.json
    python -m attention_lib.benchmark --models --quick              # a minute: a smoke check, not a result

Every JSON file says how it was made: the command, the exact CPU model, threads and bound
CPUs, date, commit (and any uncommitted changes under ``attention_lib/``), library
versions and the load average before and after. One thread (the default) is much less
noisy than two on a small machine shared with other jobs. timm is needed only here.
"""

from attention_lib.benchmark.common import interleaved_times, median_iqr, peak_bytes, provenance, ratio_stats
from attention_lib.benchmark.modules import (
    CASES, FORMATS, MODES, QUICK_STAGES, RESNET50_STAGES, TARGET, Case, activation_bytes, format_table, pass_peak,
    run, summarize, timm_gather_excite_learned, timm_gather_excite_theta_plus, top_operators,
)
from attention_lib.benchmark.whole_model import TIMM_MODELS, run_models, timm_model

__all__ = ["Case", "CASES", "FORMATS", "MODES", "QUICK_STAGES", "RESNET50_STAGES", "TARGET", "TIMM_MODELS",
           "activation_bytes", "format_table", "interleaved_times", "median_iqr", "pass_peak", "peak_bytes",
           "provenance", "ratio_stats", "run", "run_models", "summarize", "timm_gather_excite_learned",
           "timm_gather_excite_theta_plus", "timm_model", "top_operators"]
