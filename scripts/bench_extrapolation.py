#!/usr/bin/env python
"""Length-extrapolation benchmark: every position encoding trained on passkey at 16-64 tokens, exact match to 2048.

    python scripts/bench_extrapolation.py                                   # the full protocol (see hf_longctx/bench/extrapolation.py)
    python scripts/bench_extrapolation.py --randomized rope sinusoidal      # + randomized position training rows
    python scripts/bench_extrapolation.py --encodings alibi --steps 20 --num_eval 4 --lengths 32 128 \
        --second_task None --output_dir /tmp/smoke --work_dir /tmp/smoke/runs   # smoke version (CI, < 60 s)

Writes results.json, results.md, accuracy_vs_length*.png and depth_heatmap.png under --output_dir
(default runs/extrapolation-results; the committed results/extrapolation was written with --output_dir, and a folder
that holds results is refused without --resume); trained model folders go to --work_dir (default runs/extrapolation).
`--resume` keeps the rows already in results.json and runs the rest. Plots need matplotlib (`pip install .[bench]`).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is built locally
os.environ.setdefault("OMP_NUM_THREADS", "1")  # the machine is shared; tiny ops gain little from a second thread
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import shlex  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402
from transformers import HfArgumentParser  # noqa: E402
from transformers.utils import logging  # noqa: E402

from hf_longctx.bench.extrapolation import BenchArguments, run_benchmark  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    (args,) = HfArgumentParser(BenchArguments).parse_args_into_dataclasses(args=argv)
    if args.second_task in ("None", "none", ""):
        args.second_task = None
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    logging.set_verbosity_warning()
    command = "python scripts/bench_extrapolation.py " + " ".join(shlex.quote(a) for a in argv)
    return run_benchmark(args, command=command.strip())


if __name__ == "__main__":
    main()
