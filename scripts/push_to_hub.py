#!/usr/bin/env python
"""Push a trained model folder to the Hugging Face hub (the installed console command is `hf-longctx-push`).

    python scripts/push_to_hub.py --folder runs/demo --repo_id you/longctx-alibi-passkey --dry_run   # no network
    python scripts/push_to_hub.py --folder runs/demo --repo_id you/longctx-alibi-passkey --private
    python scripts/push_to_hub.py --help

The folder is checked first (model.safetensors, config.json with `auto_map` for AutoConfig / AutoModel /
AutoModelForSeq2SeqLM and the modeling files it names, tokenizer, generation_config.json, README.md model card);
every missing piece is named. Its top-level files, without checkpoints and pickles, are copied to a staging folder,
the model card is pointed at the repo id, and the copy is checked again: that folder is exactly what is uploaded.
`--dry_run` stops there and prints the files; otherwise the repository is created if needed and the staging folder
uploaded (log in with `hf auth login` or set HF_TOKEN; HF_HUB_OFFLINE must be unset).
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # see scripts/train.py; no offline default here: pushing needs the hub

# The arguments and main live in the library (`hf_longctx.cli`), shared with the console command.
from hf_longctx import cli  # noqa: E402

parse_args, main = cli.parse_push_args, cli.push_main

if __name__ == "__main__":
    main()
