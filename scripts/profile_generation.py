#!/usr/bin/env python
"""Where a `generate` call spends its time: hf_longctx against HF's BART at the speed benchmark's size.

    python scripts/profile_generation.py --encoding learned     # batch 8, source 512, 64 new tokens, 1 thread

For each model, one warm-up call, then one call under torch.profiler (the sum of the ops' own CPU time: the
compute) and one under cProfile (the Python around the ops: total time minus the time inside builtins, which is
where torch ops run). Same models and inputs as `scripts/bench_speed.py`.
"""

import cProfile
import pstats
import time
from dataclasses import dataclass

import torch
from bench_speed import SIZES, build_model, time_generation
from torch.profiler import ProfilerActivity, profile
from transformers import HfArgumentParser


@dataclass
class Arguments:
    encoding: str = "learned"
    batch_size: int = 8
    source_length: int = 512
    new_tokens: int = 64
    threads: int = 1


def main():
    (args,) = HfArgumentParser(Arguments).parse_args_into_dataclasses()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    source = torch.randint(2, SIZES["vocab_size"], (args.batch_size, args.source_length))
    print(f"generate: batch {args.batch_size}, source {args.source_length}, {args.new_tokens} new tokens")
    print("| model | wall s | op time ms (torch.profiler) | Python ms (cProfile) | Python per step ms |")
    print("|---|---:|---:|---:|---:|")
    for name in ("bart", args.encoding):
        model = build_model(name, max(1024, args.source_length)).eval()
        time_generation(model, source, args.new_tokens, iters=0)  # warm-up
        start = time.perf_counter()
        time_generation(model, source, args.new_tokens, iters=0)
        wall = time.perf_counter() - start
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            time_generation(model, source, args.new_tokens, iters=0)
        op_ms = sum(event.self_cpu_time_total for event in profiler.key_averages()) / 1e3
        python = cProfile.Profile()
        python.enable()
        time_generation(model, source, args.new_tokens, iters=0)
        python.disable()
        stats = pstats.Stats(python)
        builtin = sum(entry[2] for key, entry in stats.stats.items() if key[0] == "~")
        python_ms = (stats.total_tt - builtin) * 1e3
        print(f"| {name} | {wall:.3f} | {op_ms:.0f} | {python_ms:.0f} | {python_ms / args.new_tokens:.2f} |")


if __name__ == "__main__":
    main()
