#!/usr/bin/env python
"""Train a LongCtx model on real text: T5 span corruption on a text column, or source -> target columns.

    # denoising on the shipped public-domain corpus (The Devil's Dictionary, data/README.md); about 1 min on 1 core
    python scripts/train_text.py --text_file data/devils_dictionary.txt --output_dir runs/text
    # source -> target columns of a JSON lines / CSV file: definition -> headword (a reverse dictionary)
    python scripts/train_text.py --text_file data/devils_dictionary.jsonl \\
        --source_column definition --target_column word --output_dir runs/reverse-dictionary
    # a datasets name (needs the hub) or a local folder of data files
    python scripts/train_text.py --dataset_name wikitext --dataset_config_name wikitext-2-raw-v1 --output_dir runs/wt2
    python scripts/train_text.py config.yaml     # every argument from one .json/.yaml file
    hf-longctx-train-text --text_file data/devils_dictionary.txt    # the installed console command
    python scripts/train_text.py --help          # ModelArguments, TextDataArguments, Seq2SeqTrainingArguments

Without `--tokenizer_name` a byte-level BPE of `--tokenizer_vocab_size` tokens is trained on the text. `output_dir`
receives the model folder (loadable with `AutoModelForSeq2SeqLM` + `AutoTokenizer`) with its model card README.md,
and `results.json`.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # unset it (HF_HUB_OFFLINE=0) to load a dataset from the hub
os.environ.setdefault("OMP_NUM_THREADS", "1")  # see scripts/train.py
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The arguments, defaults and main live in the library (`hf_longctx.cli`), shared with the console command.
from hf_longctx import cli  # noqa: E402

TEXT_DEMO_DEFAULTS, parse_args, main = cli.TEXT_DEMO_DEFAULTS, cli.parse_train_text_args, cli.train_text_main


if __name__ == "__main__":
    main()
