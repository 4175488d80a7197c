#!/usr/bin/env python
"""Train a LongCtx model on a synthetic task and measure exact match at longer inputs.

    python scripts/train.py --output_dir runs/demo        # the embedded demo (about 3-5 min on 2 CPU cores)
    hf-longctx-train --output_dir runs/demo               # the same, as the installed console command
    python scripts/train.py config.yaml                   # every argument from one .json/.yaml file
    python scripts/train.py --help                        # ModelArguments, DataArguments, Seq2SeqTrainingArguments

    python scripts/train.py --output_dir runs/demo --save_strategy steps --save_steps 500    # safetensors checkpoints
    python scripts/train.py --output_dir runs/demo --save_strategy steps --save_steps 500 --resume_from_checkpoint last
    torchrun --nproc_per_node 2 scripts/train.py --output_dir runs/ddp    # data parallel (gloo on CPU), batch per process

The demo: a d_model-64, 2+2-layer ALiBi model trained on passkey retrieval at 16-64 tokens, evaluated with greedy
decoding at 64, 256, 1024 and 2048 tokens (up to 32x the longest training input; 2048 takes the
query-chunked attention path). `output_dir` receives the model folder (loadable with
`AutoModelForSeq2SeqLM.from_pretrained`) with its model card README.md, `results.json` and `results.md`.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is built locally; never reach for the hub
# One OpenMP thread unless told otherwise: the demo model's ops are tiny (a second thread gains ~30%), and on a
# shared machine a busy neighbour makes multi-threaded spin-waits 10-50x slower. Export OMP_NUM_THREADS to change.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The arguments, defaults and main live in the library (`hf_longctx.cli`), shared with the console command.
from hf_longctx import cli  # noqa: E402

DEMO_DEFAULTS, parse_args, main = cli.DEMO_DEFAULTS, cli.parse_train_args, cli.train_main


if __name__ == "__main__":
    main()
