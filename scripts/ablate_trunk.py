#!/usr/bin/env python
"""Trunk ablation (issue "Learn what T5 learns"): steps to 0.99 in distribution per variant, lr and seed.

    python scripts/ablate_trunk.py --variants t5 default/alibi t5trunk/alibi --learning_rates 2e-3 1e-3 --seeds 42 1 2

Rows already in `output_dir/rows/` are skipped, so a sweep can be split over two processes (one per core) or
resumed. The table is `output_dir/results.md`; see `hf_longctx/bench/ablation.py` for the variants.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers import HfArgumentParser  # noqa: E402

from hf_longctx.bench.ablation import AblationArguments, run_ablation  # noqa: E402

if __name__ == "__main__":
    (args,) = HfArgumentParser(AblationArguments).parse_args_into_dataclasses()
    run_ablation(args)
