#!/usr/bin/env python
"""Extend the context of a trained hf_longctx model folder, optionally fine-tune at the new length, save it.

    python scripts/extend_context.py --model runs/rope --output_dir runs/rope-yarn4x --target_length 256 \\
        --method yarn --trained_length 64
    python scripts/extend_context.py --model runs/learned --output_dir runs/learned-copy --target_length 1024 \\
        --method copy --finetune_steps 200          # then a short fine-tune on passkey at the target length

Methods per encoding are each encoding class's `extension_methods` (`hf_longctx/positions.py`; `--help` lists
them). With `--finetune_steps`, training runs through the library's `train()` (Seq2SeqTrainer) on `--task` with
sources of target_length / 2 .. target_length tokens, and evaluates at `--eval_lengths`; without it the extended
model is saved and evaluated as is when `--eval_lengths` is given. The installed console command is
`hf-longctx-extend`.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The arguments and main live in the library (`hf_longctx.cli`), shared with the console command.
from hf_longctx.cli import extend_main  # noqa: E402

if __name__ == "__main__":
    extend_main()
